"""Schedule-free AdamW (Defazio et al. 2024, "The Road Less Scheduled")."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import torch

from optiwise.optim._base import OptiwiseOptimizer, StateKind
from optiwise.optim._fused import check_fused_args
from optiwise.optim._kernels import (
    schedule_free_adamw_fused,
    schedule_free_adamw_multi_tensor,
    schedule_free_adamw_single_tensor,
)
from optiwise.optim._validation import check_positive, check_range, validate_hparams

__all__ = ["ScheduleFreeAdamW"]

BiasCorrection = Literal["denominator", "lr"]


class ScheduleFreeAdamW(OptiwiseOptimizer):
    r"""Schedule-free AdamW: no LR schedule, an averaged iterate for evaluation (Defazio et
    al. 2024, "The Road Less Scheduled", Algorithm 1).

    Three sequences per parameter: ``z`` takes AdamW-style steps, ``x`` is a weighted
    average of the ``z`` iterates (the point to evaluate), and gradients are taken at their
    interpolation ``y = (1 - b1) z + b1 x``. With ``v`` an EMA of ``g^2`` and step ``t``::

        lr_t = lr * min(1, t / warmup_steps)
        z <- z - lr_t (g / (sqrt(v / (1 - b2^t)) + eps) + wd y)
        c  = w_t / sum_{i<=t} w_i,   w_t = t^r * max_{i<=t}(lr_i)^weight_lr_power
        x <- (1 - c) x + c z
        y  = b1 x + (1 - b1) z

    Weight decay is evaluated at ``y`` (as in the reference implementation). Only ``y``
    (in the parameters) and ``z`` are stored: ``x = (y - (1 - b1) z) / b1``.

    ``bias_correction="denominator"`` (default) is the published ``schedulefree``
    package's ``AdamWScheduleFree`` (version >= 1.3). ``bias_correction="lr"`` is the
    paper's Algorithm 1 (and the package's ``AdamWScheduleFreePaper``): the Adam bias
    correction scales the LR instead, ``lr_t = lr min(1, t / warmup_steps)
    sqrt(1 - b2^t)`` with denominator ``sqrt(v) + eps``, so the averaging weights and the
    decay also see it.

    Modes: parameters hold ``y`` in train mode (the initial mode, as for ``nn.Module``)
    and ``x`` in eval mode. Call :meth:`train` before training steps and :meth:`eval`
    before evaluating or saving the weights for inference; both are idempotent, and
    :meth:`step` in eval mode raises. ``state_dict()`` records the mode (per param group,
    ``train_mode``) and ``load_state_dict`` restores it, so save and load the model's
    state together with the optimizer's.

    Differences from the ``schedulefree`` package, all deliberate:

    - counters (``step``, ``weight_sum``, ``lr_max``) are per parameter, as torch keeps
      ``step``: a parameter that first receives a gradient later starts its own warmup,
      bias correction and average (the package counts per param group, so such a
      parameter gets an un-warmed-up second moment with a near-1 bias correction). When
      every parameter gets a gradient every step, the results are the same;
    - ``.grad`` is left unchanged (the package divides it in place);
    - the package starts in eval mode (``train_mode=False``); this class starts in train
      mode, like ``nn.Module``, so it can be stepped without calling :meth:`train`;
    - ``betas[0]`` must be > 0: ``x`` is recovered from ``y`` and ``z`` by dividing by it.

    Parameters
    ----------
    params:
        Parameters or param-group dicts.
    lr:
        Peak learning rate.
    betas:
        ``(b1, b2)``: interpolation weight between ``x`` and ``z``, and the second-moment
        EMA rate.
    eps:
        Added to the denominator.
    weight_decay:
        Decoupled weight decay, evaluated at ``y``.
    warmup_steps:
        Linear LR warmup length in steps (0: none).
    r:
        Polynomial weighting of the average, ``w_t ∝ t^r``.
    weight_lr_power:
        The average weights ``w_t ∝ max lr^weight_lr_power`` (2 in the paper).
    bias_correction:
        ``"denominator"`` (the package default) or ``"lr"`` (the paper), see above.
    maximize:
        Maximize the objective.
    foreach:
        Use the multi-tensor path (``_foreach`` ops).
    fused:
        Use the compiled one-pass path (see docs/performance.md).
        ``None`` (with ``foreach=None``) picks it on CPU and CUDA for groups of at least
        2^20 elements, else the multi-tensor path on CUDA and the per-tensor path on CPU.

    State
    -----
    ``z``: the base sequence; ``exp_avg_sq``: second-moment EMA ``v``; ``step`` (int);
    ``weight_sum`` (float): sum of the averaging weights so far; ``lr_max`` (float): the
    largest scheduled LR so far.
    """

    state_keys: ClassVar[Mapping[str, StateKind]] = {
        "z": "param",
        "exp_avg_sq": "param",
        "step": "scalar",
        "weight_sum": "scalar",
        "lr_max": "scalar",
    }
    counter_types: ClassVar[Mapping[str, type]] = {
        "step": int,
        "weight_sum": float,
        "lr_max": float,
    }

    def __init__(
        self,
        params: Any,
        lr: float = 2.5e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        warmup_steps: int = 0,
        *,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        bias_correction: BiasCorrection = "denominator",
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        validate_hparams({"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        check_fused_args(fused, foreach)
        check_range("beta parameter at index 0", betas[0], 0.0, 1.0, low_open=True)
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"Invalid warmup_steps: {warmup_steps!r} (must be an int >= 0)")
        check_positive("r", r, allow_zero=True)
        check_positive("weight_lr_power", weight_lr_power, allow_zero=True)
        if bias_correction not in ("denominator", "lr"):
            raise ValueError(
                f"Invalid bias_correction: {bias_correction!r} (must be 'denominator', the "
                "schedulefree package's default, or 'lr', the paper's Algorithm 1)"
            )
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            r=r,
            weight_lr_power=weight_lr_power,
            bias_correction=bias_correction,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
            train_mode=True,
        )
        super().__init__(params, defaults)

    # ----------------------------------------------------------------------------------------
    # Modes
    # ----------------------------------------------------------------------------------------

    @property
    def training(self) -> bool:
        """Whether the parameters hold ``y`` (train mode) rather than ``x`` (eval mode)."""
        return all(group["train_mode"] for group in self.param_groups)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group; it joins in the optimizer's current mode."""
        mode = self.training if getattr(self, "param_groups", None) else True
        param_group = dict(param_group)
        param_group["train_mode"] = mode
        super().add_param_group(param_group)

    @torch.no_grad()
    def _switch(self, to_train: bool) -> None:
        for group in self.param_groups:
            if group["train_mode"] == to_train:
                continue
            beta1 = group["betas"][0]
            # y = lerp(x, z, 1 - b1);  x = lerp(y, z, 1 - 1 / b1)
            weight = 1 - beta1 if to_train else 1 - 1 / beta1
            for p in group["params"]:
                state = self.state.get(p)
                if state and "z" in state:
                    p.lerp_(state["z"].to(p.device), weight)
            group["train_mode"] = to_train

    def train(self) -> None:
        """Put ``y`` in the parameters (for training steps); no-op in train mode."""
        self._switch(True)

    def eval(self) -> None:
        """Put the average ``x`` in the parameters (for evaluation); no-op in eval mode."""
        self._switch(False)

    def validate_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Also check that every saved param group records its mode as a bool."""
        super().validate_state_dict(state_dict)
        for g, group in enumerate(state_dict["param_groups"]):
            if not isinstance(group["train_mode"], bool):
                raise ValueError(
                    f"cannot load state dict into ScheduleFreeAdamW: param group {g} has "
                    f"train_mode={group['train_mode']!r}, expected True or False"
                )

    # ----------------------------------------------------------------------------------------
    # Step
    # ----------------------------------------------------------------------------------------

    @staticmethod
    def _advance(state: dict[str, Any], group: Mapping[str, Any]) -> tuple[float, float, float]:
        """Advance a parameter's counters; return ``(lr_t, ckp1, bias_correction2)``."""
        beta2 = group["betas"][1]
        t = int(state["step"]) + 1
        warmup = group["warmup_steps"]
        lr = float(group["lr"]) * (t / warmup if t < warmup else 1.0)
        bc2 = 1 - beta2**t
        if group["bias_correction"] == "lr":
            lr *= math.sqrt(bc2)
            bc2 = 1.0
        lr_max = max(lr, float(state["lr_max"]))
        weight = (t ** group["r"]) * (lr_max ** group["weight_lr_power"])
        weight_sum = float(state["weight_sum"]) + weight
        ckp1 = weight / weight_sum if weight_sum != 0 else 0.0
        state["step"], state["lr_max"], state["weight_sum"] = t, lr_max, weight_sum
        return lr, ckp1, bc2

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One schedule-free AdamW step (train mode only; see the class docstring)."""
        if not self.training:
            raise RuntimeError(
                "ScheduleFreeAdamW.step() called in eval mode, where the parameters hold the "
                "averaged x; call optimizer.train() before training (and optimizer.eval() "
                "before evaluating)"
            )
        loss = self._run_closure(closure)
        for group in self.param_groups:
            params, grads = self._params_with_grads(group)
            # Parameters share their scalars unless they started at different steps.
            buckets: dict[tuple[float, float, float], list[int]] = {}
            for i, p in enumerate(params):
                state = self.state[p]
                if not state:
                    state["z"] = p.detach().clone(memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["step"] = 0
                    state["weight_sum"] = 0.0
                    state["lr_max"] = -1.0
                buckets.setdefault(self._advance(state, group), []).append(i)
            beta1, beta2 = group["betas"]
            if self._use_fused(group, params, schedule_free_adamw_fused):
                for (lr, ckp1, bc2), idx in buckets.items():
                    ps = [params[i] for i in idx]
                    self._fused_step(
                        schedule_free_adamw_fused, group, ps, [grads[i] for i in idx],
                        [[self.state[p]["z"] for p in ps],
                         [self.state[p]["exp_avg_sq"] for p in ps]],
                        ["z", "exp_avg_sq"],
                        # parameters that started later step apart, each subset with its cache
                        cache_key=None if len(buckets) == 1 else (id(group), idx[0], len(idx)),
                        beta2=beta2, weight2=1 - beta2, inv_bias_correction2=1 / bc2,
                        eps=group["eps"], weight_decay=group["weight_decay"], ckp1=ckp1,
                        y_step=lr * (beta1 * (1 - ckp1) - 1), neg_lr=-lr,
                        sign=-1.0 if group["maximize"] else 1.0,
                    )  # fmt: skip
                continue
            fn = (
                schedule_free_adamw_multi_tensor
                if self._use_foreach(group["foreach"], params)
                else schedule_free_adamw_single_tensor
            )
            real = self._real_views  # complex tensors as (real, imaginary) pairs
            for (lr, ckp1, bc2), idx in buckets.items():
                ps = [params[i] for i in idx]
                fn(
                    real(ps),
                    real([grads[i] for i in idx]),
                    real([self.state[p]["z"] for p in ps]),
                    real([self.state[p]["exp_avg_sq"] for p in ps]),
                    lr=lr,
                    ckp1=ckp1,
                    beta1=beta1,
                    beta2=beta2,
                    bias_correction2=bc2,
                    eps=group["eps"],
                    weight_decay=group["weight_decay"],
                    maximize=group["maximize"],
                )
        return loss
