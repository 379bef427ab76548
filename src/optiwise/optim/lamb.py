"""LAMB: layer-wise adaptive moments for large batches (You et al. 2020)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optiwise.optim._base import OptiwiseOptimizer, StateKind
from optiwise.optim._fused import check_fused_args
from optiwise.optim._kernels import (
    _bias_corrections,
    _lamb_trust_ratio,
    _ratio_dtype,
    lamb_fused_apply,
    lamb_fused_norms,
    lamb_multi_tensor,
    lamb_single_tensor,
)
from optiwise.optim._validation import check_positive, validate_hparams

__all__ = ["LAMB"]

_NEEDS_EPS = (
    "fused=True needs eps > 0 (the fused step pads tensors with zeros, whose update "
    "0 / (0 + eps) must be 0): set eps > 0 or fused=False"
)


class LAMB(OptiwiseOptimizer):
    """LAMB, You et al. 2020, "Large Batch Optimization for Deep Learning: Training BERT in
    76 minutes" (ICLR 2020, arXiv v5, Algorithm 2).

    Per tensor, with gradient ``g`` at step ``t``::

        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        u = (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + eps) + weight_decay * w
        r = phi(||w||) / ||u||          (1 when either norm is 0)
        w = w - lr * r * u

    with ``phi(z) = min(z, max_weight_norm)`` (the identity by default) and ``r`` clipped to
    ``max_trust_ratio`` when that is set.

    Variant: Algorithm 2 of the paper's final version — bias-corrected moments, decoupled
    weight decay added to the update *before* the trust ratio, trust ratio on every tensor,
    no gradient pre-normalization, no eps in the ratio. The published implementations differ:

    - ``torch_optimizer.Lamb`` and ``pytorch_optimizer.Lamb`` follow the paper's v3: no bias
      correction of the moments, ``phi`` clamps ``||w||`` at 10 (``bias_correction=False,
      max_weight_norm=10`` reproduces ``torch_optimizer.Lamb``); their ``debias`` option
      rescales the step *after* the trust ratio, where the paper's correction is inside it.
      ``pytorch_optimizer.Lamb`` also always divides the step by ``1 - beta1**t`` after the
      ratio, decays the weights outside the trust ratio (AdamW-style) and adds eps to
      ``||u||``.
    - NVIDIA Apex ``FusedLAMB`` and timm's ``Lamb`` pre-normalize the gradients by their
      global norm (use ``torch.nn.utils.clip_grad_norm_(params, 1.0)`` before ``step()``)
      and apply the trust ratio only to tensors with weight decay (``exclude_no_decay=True``).

    Parameters
    ----------
    params:
        Parameters or param-group dicts.
    lr:
        Learning rate (> 0; a 1-element tensor is read at each step, so changing it in
        place takes effect); the step of a tensor is about ``lr * ||w||``.
    betas:
        ``(beta1, beta2)`` in [0, 1) for the first and second moments.
    eps:
        Added to ``sqrt(v_hat)`` (>= 0).
    weight_decay:
        Decoupled weight decay (>= 0), part of the update the trust ratio scales.
    bias_correction:
        Bias-correct the moments (the paper's Algorithm 2); False gives v3 of the paper.
    max_weight_norm:
        Upper clamp of ``||w||`` in the trust ratio (the paper's ``phi``); None: no clamp.
    max_trust_ratio:
        Upper clamp of the trust ratio (timm's ``trust_clip`` uses 1.0); None: no clamp.
    exclude_no_decay:
        Groups whose ``weight_decay`` is 0 (the no-decay group of
        :func:`optiwise.param_groups`: biases, norms) take the plain Adam step, ``r = 1``.
    maximize:
        Maximize the objective (the gradient is negated).
    foreach:
        Use the multi-tensor path (``_foreach`` ops).
    fused:
        Use the compiled path (see docs/performance.md): two passes over
        memory, the first updating the moments and summing ``u^2`` and ``w^2`` per tensor,
        the second applying ``lr r u`` with the trust ratio computed on the device in
        between. Needs ``eps > 0``. ``None`` (with ``foreach=None``) picks it on CPU and CUDA
        for groups of at least 2^20 elements and ``eps > 0``, else the multi-tensor path on
        CUDA and the per-tensor path on CPU.

    State
    -----
    ``step``: steps taken by the tensor (a 0-dim float32 CPU tensor, as torch's Adam);
    ``exp_avg``: the first moment ``m``; ``exp_avg_sq``: the second moment ``v``. The moments
    of float16 and bfloat16 parameters are float32 on every path (in float16,
    ``(1 - b2) g^2`` of a 1e-2 gradient underflows to 0 and the step would become
    ``m / eps``; in bfloat16, ``b2 v`` rounds to ``v``): 8 bytes per element.
    """

    state_keys: ClassVar[Mapping[str, StateKind]] = {
        "step": "scalar",
        "exp_avg": "param",
        "exp_avg_sq": "param",
    }
    counter_types: ClassVar[Mapping[str, type]] = {"step": Tensor}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        *,
        bias_correction: bool = True,
        max_weight_norm: float | None = None,
        max_trust_ratio: float | None = None,
        exclude_no_decay: bool = False,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        validate_hparams({"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        check_fused_args(fused, foreach)
        if fused and eps == 0:
            raise ValueError(_NEEDS_EPS)
        if max_weight_norm is not None:
            check_positive("max_weight_norm", max_weight_norm)
        if max_trust_ratio is not None:
            check_positive("max_trust_ratio", max_trust_ratio)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            bias_correction=bias_correction,
            max_weight_norm=max_weight_norm,
            max_trust_ratio=max_trust_ratio,
            exclude_no_decay=exclude_no_decay,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` re-evaluates the loss."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            params, grads = self._params_with_grads(group)
            counters = []
            for p in params:
                state = self.state[p]
                if "step" not in state:
                    state["step"] = torch.tensor(0.0)
                counters.append(state["step"])
            # one call for all counters (a model may have a thousand tensors)
            steps = []
            if counters:
                torch._foreach_add_(counters, 1.0)
                steps = [int(t) for t in torch.stack([c.cpu() for c in counters]).tolist()]
            # float32 moments for half-precision parameters: in float16, (1 - b2) g^2
            # underflows to 0 (the step becomes g / eps); in bfloat16, b2 v rounds to v
            exp_avgs = self._state_buffers(params, "exp_avg", half_as_float=True)
            exp_avg_sqs = self._state_buffers(params, "exp_avg_sq", half_as_float=True)
            fused = self._use_fused(group, params, lamb_fused_norms, lamb_fused_apply)
            if fused and self._fusable(group):
                self._fused_lamb(group, params, grads, exp_avgs, exp_avg_sqs, steps)
                continue
            fn = (
                lamb_multi_tensor
                if self._use_foreach(group["foreach"], params)
                else lamb_single_tensor
            )
            beta1, beta2 = group["betas"]
            real = self._real_views  # complex tensors as (real, imaginary) pairs
            fn(
                real(params),
                real(grads),
                real(exp_avgs),
                real(exp_avg_sqs),
                steps,
                lr=float(group["lr"]),
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                bias_correction=group["bias_correction"],
                adapt=self._adapts(group),
                max_weight_norm=group["max_weight_norm"],
                max_trust_ratio=group["max_trust_ratio"],
                maximize=group["maximize"],
            )
        return loss

    @staticmethod
    def _adapts(group: Mapping[str, Any]) -> bool:
        return not (group["exclude_no_decay"] and group["weight_decay"] == 0)

    @staticmethod
    def _fusable(group: Mapping[str, Any]) -> bool:
        """eps > 0: the fused passes pad tensors with zeros, whose update must be 0."""
        if group["eps"] > 0:
            return True
        if group.get("fused"):
            raise ValueError(_NEEDS_EPS)
        return False

    def _fused_lamb(
        self,
        group: Mapping[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        exp_avgs: list[Tensor],
        exp_avg_sqs: list[Tensor],
        steps: list[int],
    ) -> None:
        """The two compiled passes, per subset of tensors at the same step count."""
        beta1, beta2 = group["betas"]
        buckets: dict[int, list[int]] = {}
        for i, step in enumerate(steps):
            buckets.setdefault(step, []).append(i)
        for step, idx in buckets.items():
            every = len(idx) == len(params)
            ps = params if every else [params[i] for i in idx]
            bias1, bias2_sqrt = 1.0, 1.0
            if group["bias_correction"]:
                bias1, bias2_sqrt = _bias_corrections(beta1, beta2, step)
            hparams = dict(
                weight1=1 - beta1, beta2=beta2, weight2=1 - beta2, inv_bias1=1 / bias1,
                inv_bias2_sqrt=1 / bias2_sqrt, eps=group["eps"],
                weight_decay=group["weight_decay"], sign=-1.0 if group["maximize"] else 1.0,
            )  # fmt: skip
            with self._fused_passes(
                group, ps, grads if every else [grads[i] for i in idx],
                [exp_avgs if every else [exp_avgs[i] for i in idx],
                 exp_avg_sqs if every else [exp_avg_sqs[i] for i in idx]],
                ["exp_avg", "exp_avg_sq"],
                # tensors that started later step apart, each subset with its cache
                cache_key=None if every else (id(group), idx[0], len(idx)),
            ) as passes:  # fmt: skip
                sums = passes.run(lamb_fused_norms, **hparams)
                assert sums is not None
                if self._adapts(group):
                    # fp64 sums: their square roots rounded once, as vector_norm's
                    norms = sums.sqrt().to(_ratio_dtype(params[0].dtype))
                    ratio = _lamb_trust_ratio(
                        norms[:, 1], norms[:, 0], group["max_weight_norm"],
                        group["max_trust_ratio"],
                    )  # fmt: skip
                else:
                    ratio = torch.ones_like(sums[:, 0], dtype=_ratio_dtype(params[0].dtype))
                passes.run(
                    lamb_fused_apply, per_tensor={"ratio": ratio}, neg_lr=-float(group["lr"]),
                    **hparams,
                )  # fmt: skip
