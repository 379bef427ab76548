"""Prodigy: Adam with a learning rate estimated on-line (Mishchenko & Defazio 2023)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optiwise.optim import _dtensor
from optiwise.optim._base import OptiwiseOptimizer, StateKind
from optiwise.optim._validation import check_positive, check_range, validate_hparams

__all__ = ["Prodigy", "prodigy_apply", "prodigy_estimate"]

#: Param-group keys holding the D estimate, shared by every group (as in ``prodigyopt``).
ESTIMATE_KEYS = ("d", "d_max", "d_numerator", "k")


def prodigy_estimate(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor] | None,
    exp_avg_sqs: list[Tensor],
    s: list[Tensor],
    p0: list[Tensor],
    *,
    d: float,
    d0: float,
    dlr: float,
    beta1: float,
    beta2: float,
    beta3: float,
    safeguard_warmup: bool,
    numerator: Tensor,
    denominator: Tensor,
) -> None:
    """First pass over one group: update the moments and ``s``, and add this group's parts
    of the D estimate's numerator ``sum (d/d0) dlr <g, p0 - p>`` and denominator
    ``sum ||s||_1`` to the float64 0-dim ``numerator`` and ``denominator`` (in place, one
    tensor after the other, as a Python float would add them)."""
    scale = d / d0
    s_alpha = scale * (d if safeguard_warmup else dlr)
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        numerator.add_(torch.dot(g.flatten(), (p0[i] - p).flatten()).double() * (scale * dlr))
        if exp_avgs is not None:
            exp_avgs[i].mul_(beta1).add_(g, alpha=d * (1 - beta1))
        exp_avg_sqs[i].mul_(beta2).addcmul_(g, g, value=d * d * (1 - beta2))
        s[i].mul_(beta3).add_(g, alpha=s_alpha)
        denominator.add_(s[i].abs().sum().double())


def prodigy_apply(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor] | None,
    exp_avg_sqs: list[Tensor],
    *,
    d: float,
    dlr: float,
    eps: float,
    decoupled_decay: float,
) -> None:
    """Second pass: ``p -= dlr * m / (sqrt(v) + d eps)`` (``dlr * d * g`` in place of
    ``dlr * m`` without a first moment), after the decoupled decay ``p -= decay * dlr * p``."""
    for i, p in enumerate(params):
        denom = exp_avg_sqs[i].sqrt().add_(d * eps)
        if decoupled_decay != 0:
            p.add_(p, alpha=-decoupled_decay * dlr)
        if exp_avgs is not None:
            p.addcdiv_(exp_avgs[i], denom, value=-dlr)
        else:
            p.addcdiv_(grads[i], denom, value=-dlr * d)


class Prodigy(OptiwiseOptimizer):
    """Prodigy (Mishchenko & Defazio 2023, 'Prodigy: An Expeditiously Adaptive
    Parameter-Free Learner'): Adam whose step size is an estimate ``d`` of the distance
    from the initial weights to the solution, grown from ``d0`` as training goes.

    Per step ``k``, with ``beta3 = sqrt(beta2)`` by default, ``x0`` the initial weights and
    ``dlr = d_k * lr`` (times Adam's bias correction with ``use_bias_correction``)::

        m = beta1 m + (1 - beta1) d_k g            v = beta2 v + (1 - beta2) d_k^2 g^2
        r = beta3 r + (d_k / d0) dlr <g, x0 - x>   s = beta3 s + (d_k / d0) dlr g
        d_{k+1} = max(d_k, d_coef * r / ||s||_1)   (at most d_k * growth_rate)
        x = x - dlr * m / (sqrt(v) + d_{k+1} eps)  (after x -= weight_decay * dlr * x)

    (the paper's ``(1 - beta3)`` and ``d0`` factors cancel in ``r / ||s||_1``). Identical to
    ``prodigyopt.Prodigy`` (without ``slice_p``, FSDP detection or its lr restriction); the
    sums are kept as float64 tensors, so a step does not wait for the device per tensor.

    ``lr`` multiplies the estimated step: leave it at 1 (``d_coef`` in 0.5-2 is the gentler
    knob). Groups may have their own ``lr`` (a schedule, LR multipliers): each group steps
    with ``d * lr``, the estimate is shared. ``d``, ``d_max``, ``d_numerator`` and ``k``
    live in every param group (as in ``prodigyopt``), so ``state_dict()`` carries them.

    Parameters
    ----------
    params:
        Parameters or param-group dicts.
    lr:
        Multiplier of the estimated step (> 0), usually 1.
    betas:
        Adam's ``(beta1, beta2)`` in [0, 1); ``beta1 = 0`` keeps no first moment.
    beta3:
        Decay of ``r`` and ``s`` in [0, 1); ``None`` is ``sqrt(beta2)``.
    eps:
        Added to ``sqrt(v)``, scaled by ``d``.
    weight_decay:
        Weight decay (>= 0): decoupled, ``x -= weight_decay * dlr * x``, when ``decouple``
        (the default), else added to the gradient.
    use_bias_correction:
        Multiply the step by Adam's ``sqrt(1 - beta2^k) / (1 - beta1^k)``.
    safeguard_warmup:
        Leave ``lr`` out of ``s`` (for runs with an LR warmup, where a small early ``lr``
        would inflate the estimate).
    d0:
        Initial estimate (> 0).
    d_coef:
        Multiplier of the estimate (> 0).
    growth_rate:
        Largest factor ``d`` may grow by per step (> 1 or ``inf``).
    maximize:
        Maximize the objective.

    State
    -----
    ``exp_avg`` (when ``beta1 > 0``) and ``exp_avg_sq``: Adam's moments of ``d g``; ``s``:
    the weighted gradient sum; ``p0``: the weights before the first step; ``step``.
    """

    state_keys: ClassVar[Mapping[str, StateKind]] = {
        "exp_avg": "param",
        "exp_avg_sq": "param",
        "s": "param",
        "p0": "param",
        "step": "scalar",
    }
    counter_types: ClassVar[Mapping[str, type]] = {"step": int}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decouple: bool = True,
        use_bias_correction: bool = False,
        safeguard_warmup: bool = False,
        d0: float = 1e-6,
        d_coef: float = 1.0,
        growth_rate: float = math.inf,
        *,
        maximize: bool = False,
    ) -> None:
        validate_hparams({"lr": lr, "betas": betas, "weight_decay": weight_decay, "eps": eps})
        if beta3 is not None:
            check_range("beta3", beta3, 0.0, 1.0, high_open=True)
        check_positive("d0", d0)
        check_positive("d_coef", d_coef)
        if not isinstance(growth_rate, (int, float)) or not growth_rate > 1:
            raise ValueError(f"Invalid growth_rate: {growth_rate!r} (must be > 1, or inf)")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            beta3=beta3,
            eps=eps,
            weight_decay=weight_decay,
            decouple=decouple,
            use_bias_correction=use_bias_correction,
            safeguard_warmup=safeguard_warmup,
            d0=d0,
            d_coef=d_coef,
            growth_rate=growth_rate,
            maximize=maximize,
            d=d0,
            d_max=d0,
            d_numerator=0.0,
            k=0,
        )
        super().__init__(params, defaults)

    def _init_state(self, params: list[Tensor], beta1: float) -> None:
        for p in params:
            state = self.state[p]
            if "step" not in state:
                state["step"] = 0
                state["s"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["p0"] = p.detach().clone(memory_format=torch.preserve_format)
                if beta1 > 0:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` re-evaluates the loss."""
        loss = self._run_closure(closure)
        first = self.param_groups[0]
        beta1, beta2 = first["betas"]
        beta3 = first["beta3"] if first["beta3"] is not None else math.sqrt(beta2)
        k, d, d_max = first["k"], first["d"], first["d_max"]
        bias = (
            math.sqrt(1 - beta2 ** (k + 1)) / (1 - beta1 ** (k + 1))
            if first["use_bias_correction"]
            else 1.0
        )
        device = first["params"][0].device
        numerator = torch.zeros((), dtype=torch.float64, device=device)
        denominator = torch.zeros((), dtype=torch.float64, device=device)
        work: list[tuple[dict[str, Any], list[Tensor], list[Tensor]]] = []
        for group in self.param_groups:
            params, grads = self._params_with_grads(group)
            if group["maximize"]:
                grads = [-g for g in grads]
            if group["weight_decay"] != 0 and not group["decouple"]:
                grads = [
                    g.add(p, alpha=group["weight_decay"])
                    for p, g in zip(params, grads, strict=True)
                ]
            self._init_state(params, beta1)
            work.append((group, params, grads))
            if float(group["lr"]) <= 0 or not params:
                continue
            if _dtensor.any_dtensor(params):
                self._sharded_estimate(
                    group, params, grads, d=d, dlr=d * float(group["lr"]) * bias, beta1=beta1,
                    beta2=beta2, beta3=beta3, numerator=numerator, denominator=denominator,
                )  # fmt: skip
                continue
            real = self._real_views  # complex tensors as (real, imaginary) pairs
            prodigy_estimate(
                real(params), real(grads), self._exp_avgs(params, beta1),
                real([self.state[p]["exp_avg_sq"] for p in params]),
                real([self.state[p]["s"] for p in params]),
                real([self.state[p]["p0"] for p in params]),
                d=d, d0=group["d0"], dlr=d * float(group["lr"]) * bias, beta1=beta1, beta2=beta2,
                beta3=beta3, safeguard_warmup=group["safeguard_warmup"],
                numerator=numerator, denominator=denominator,
            )  # fmt: skip
        d_denom = denominator.item()
        if d_denom == 0:  # no gradient yet (or all zero): nothing to estimate or step
            return loss
        d_step = d  # the step uses the estimate it started with, eps the new one
        d_numerator = first["d_numerator"] * beta3 + numerator.item()
        d_hat = first["d_coef"] * d_numerator / d_denom
        if d == first["d0"]:
            d = max(d, d_hat)
        d_max = max(d_max, d_hat)
        d = min(d_max, d * first["growth_rate"])
        for group, params, grads in work:
            group.update(d=d, d_max=d_max, d_numerator=d_numerator, k=k + 1)
            for p in params:
                self.state[p]["step"] += 1
            real = self._real_views
            prodigy_apply(
                real(params), real(grads), self._exp_avgs(params, beta1),
                real([self.state[p]["exp_avg_sq"] for p in params]),
                d=d, dlr=d_step * float(group["lr"]) * bias, eps=group["eps"],
                decoupled_decay=group["weight_decay"] if group["decouple"] else 0.0,
            )  # fmt: skip
        return loss

    def _sharded_estimate(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        *,
        numerator: Tensor,
        denominator: Tensor,
        **hparams: Any,
    ) -> None:
        """:func:`prodigy_estimate` for DTensor parameters (FSDP2): each rank updates its
        shards and sums its part of each tensor's dot product and ``||s||_1``; the parts are
        all-reduced, so every rank gets the same ``d`` (equal to one process's to rounding:
        the shards' sums are added in another order)."""
        sums = torch.zeros((len(params), 2), dtype=torch.float64, device=numerator.device)
        exp_avgs = self._exp_avgs(params, hparams["beta1"])
        local_grads = _dtensor.local_grads(params, grads)
        for i, (p, g) in enumerate(zip(params, local_grads, strict=True)):
            state = self.state[p]
            prodigy_estimate(
                [_dtensor.local(p)], [g],
                None if exp_avgs is None else [_dtensor.local(exp_avgs[i])],
                [_dtensor.local(state["exp_avg_sq"])], [_dtensor.local(state["s"])],
                [_dtensor.local(state["p0"])], d0=group["d0"],
                safeguard_warmup=group["safeguard_warmup"], numerator=sums[i, 0],
                denominator=sums[i, 1], **hparams,
            )  # fmt: skip
        _dtensor.all_reduce_sums(params, sums)
        numerator.add_(sums[:, 0].sum())
        denominator.add_(sums[:, 1].sum())

    def _exp_avgs(self, params: list[Tensor], beta1: float) -> list[Tensor] | None:
        if beta1 == 0:
            return None
        return self._real_views([self.state[p]["exp_avg"] for p in params])
