"""A Lion optimizer wired to the fused path through the base class's hooks, as optiwise's
optimizer classes opt in; the fused-path tests drive it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch

from optiwise.optim._base import OptiwiseOptimizer, StateKind
from optiwise.optim._fused import check_fused_args
from optiwise.optim._kernels import lion_fused, lion_multi_tensor, lion_single_tensor
from optiwise.optim._validation import check_positive, validate_hparams


class FusedLion(OptiwiseOptimizer):
    """Lion (Chen et al. 2023) with ``fused``: state ``exp_avg``."""

    state_keys: ClassVar[Mapping[str, StateKind]] = {"exp_avg": "param"}
    #: The compiled update (a test may swap in a copy with a compile cache of its own).
    update: ClassVar[Callable[..., None]] = staticmethod(lion_fused)

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        check_positive("learning rate", lr)
        validate_hparams({"betas": betas, "weight_decay": weight_decay})
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
        loss = self._run_closure(closure)
        for group in self.param_groups:
            params, grads = self._params_with_grads(group)
            exp_avgs = []
            for p in params:
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p)
                exp_avgs.append(state["exp_avg"])
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            if self._use_fused(group, params, self.update):
                self._fused_step(
                    self.update, group, params, grads, [exp_avgs], ["exp_avg"],
                    decay=1 - lr * wd, neg_lr=-lr, weight1=1 - beta1, weight2=1 - beta2,
                    maximize=group["maximize"],
                )  # fmt: skip
                continue
            fn = lion_multi_tensor if self._use_foreach(group["foreach"], params) else (
                lion_single_tensor
            )  # fmt: skip
            fn(
                params, grads, exp_avgs, lr=lr, beta1=beta1, beta2=beta2, weight_decay=wd,
                maximize=group["maximize"],
            )  # fmt: skip
        return loss
