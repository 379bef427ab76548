"""Lion: evolved sign momentum (Chen et al. 2023)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optiwise.optim._base import OptiwiseOptimizer, StateKind
from optiwise.optim._fused import check_fused_args
from optiwise.optim._kernels import lion_fused, lion_multi_tensor, lion_single_tensor
from optiwise.optim._validation import validate_hparams

__all__ = ["Lion"]


class Lion(OptiwiseOptimizer):
    """Lion (EvoLved Sign Momentum), Chen et al. 2023, "Symbolic Discovery of Optimization
    Algorithms" (Program 1).

    Per tensor, with gradient ``g`` and momentum ``m``::

        c = beta1 * m + (1 - beta1) * g
        w = w * (1 - lr * weight_decay) - lr * sign(c)
        m = beta2 * m + (1 - beta2) * g

    The update has unit magnitude per coordinate, so Lion's LR is 3-10x below AdamW's and
    its decoupled weight decay 3-10x above (``lr * weight_decay`` is the decay strength).
    Identical to ``lion_pytorch.Lion`` with its default ``decoupled_weight_decay=False``.

    Parameters
    ----------
    params:
        Parameters or param-group dicts.
    lr:
        Learning rate (> 0; a 1-element tensor is read at each step, so changing it in
        place takes effect).
    betas:
        ``(beta1, beta2)`` in [0, 1): beta1 interpolates the update, beta2 the momentum.
    weight_decay:
        Decoupled weight decay (>= 0), multiplied by ``lr``.
    maximize:
        Maximize the objective (the gradient is negated).
    foreach:
        Use the multi-tensor path (``_foreach`` ops).
    fused:
        Use the compiled one-pass path (see docs/performance.md). With
        ``fused=None`` and ``foreach=None`` (the defaults) the step picks, per param group,
        the fused path on CPU and CUDA for groups of at least 2^20 elements, else the
        multi-tensor path on CUDA and the per-tensor path on CPU.

    State
    -----
    ``exp_avg``: the momentum ``m``, shaped like the parameter (on the fused path, a view
    into one buffer per group for tensors below 32768 elements).
    """

    state_keys: ClassVar[Mapping[str, StateKind]] = {"exp_avg": "param"}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        validate_hparams({"lr": lr, "betas": betas, "weight_decay": weight_decay})
        check_fused_args(fused, foreach)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            weight_decay=weight_decay,
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
            exp_avgs = self._state_buffers(params, "exp_avg")
            lr, wd = float(group["lr"]), group["weight_decay"]
            beta1, beta2 = group["betas"]
            if self._use_fused(group, params, lion_fused):
                self._fused_step(
                    lion_fused, group, params, grads, [exp_avgs], ["exp_avg"],
                    decay=1 - lr * wd, neg_lr=-lr, weight1=1 - beta1, weight2=1 - beta2,
                    sign=-1.0 if group["maximize"] else 1.0,
                )  # fmt: skip
                continue
            fn = (
                lion_multi_tensor
                if self._use_foreach(group["foreach"], params)
                else lion_single_tensor
            )
            real = self._real_views  # complex tensors as (real, imaginary) pairs
            fn(
                real(params), real(grads), real(exp_avgs), lr=lr, beta1=beta1, beta2=beta2,
                weight_decay=wd, maximize=group["maximize"],
            )  # fmt: skip
        return loss
