"""A minimal optimizer on optiwise's base class, used to test the base and the harness."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optiwise.optim._base import OptiwiseOptimizer, StateKind
from optiwise.optim._validation import check_range, validate_hparams


def _single(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    *,
    lr: float,
    momentum: float,
    maximize: bool,
) -> None:
    for p, g, b in zip(params, grads, bufs, strict=True):
        g = -g if maximize else g
        b.mul_(momentum).add_(g)
        p.add_(b, alpha=-lr)


def _multi(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    *,
    lr: float,
    momentum: float,
    maximize: bool,
) -> None:
    if maximize:
        grads = torch._foreach_neg(grads)
    torch._foreach_mul_(bufs, momentum)
    torch._foreach_add_(bufs, grads)
    torch._foreach_add_(params, bufs, alpha=-lr)


class DemoMomentum(OptiwiseOptimizer):
    """Heavy-ball momentum: ``b = mu b + g; p -= lr b``. State: ``momentum_buffer``."""

    state_keys: ClassVar[Mapping[str, StateKind]] = {"momentum_buffer": "param"}

    def __init__(
        self,
        params: Any,
        lr: float = 1e-2,
        momentum: float = 0.9,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
    ) -> None:
        validate_hparams({"lr": lr})
        check_range("momentum", momentum, 0.0, 1.0)
        super().__init__(params, dict(lr=lr, momentum=momentum, maximize=maximize, foreach=foreach))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._run_closure(closure)
        for group in self.param_groups:
            params, grads = self._params_with_grads(group)
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(state["momentum_buffer"])
            fn = _multi if self._use_foreach(group["foreach"], params) else _single
            fn(
                params,
                grads,
                bufs,
                lr=float(group["lr"]),
                momentum=group["momentum"],
                maximize=group["maximize"],
            )
        return loss
