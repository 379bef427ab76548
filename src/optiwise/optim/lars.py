"""LARS: layer-wise adaptive rate scaling for large-batch SGD (You et al. 2017)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optiwise.optim._base import OptiwiseOptimizer, StateKind
from optiwise.optim._fused import check_fused_args
from optiwise.optim._kernels import (
    _lars_trust_ratio,
    _ratio_dtype,
    lars_fused_apply,
    lars_fused_norms,
    lars_multi_tensor,
    lars_single_tensor,
)
from optiwise.optim._validation import check_positive, validate_hparams

__all__ = ["LARS"]


class LARS(OptiwiseOptimizer):
    """LARS, You et al. 2017, "Large Batch Training of Convolutional Networks"
    (Algorithm 1 and eq. 6).

    Per tensor, with gradient ``g``::

        r = eta * ||w|| / (||g|| + weight_decay * ||w|| + eps)   (1 when ||w|| or ||g|| is 0)
        v = momentum * v + lr * r * (g + weight_decay * w)
        w = w - v                 (Nesterov: w = w - (momentum * v + lr * r * (g + wd * w)))

    ``eta`` is ``trust_coefficient``. Weight decay joins the gradient before the trust ratio
    and the momentum, and the LR sits inside the velocity, as in the paper's Algorithm 1; with
    a constant LR this is torch's SGD form ``v = mu v + u; w = w - lr v``, and when the LR
    changes the velocity keeps the step sizes it was built with instead of being rescaled.
    A tensor whose gradient is all zero takes plain SGD decay (``r = 1``).

    Groups whose ``weight_decay`` is 0 are excluded from the adaptation when
    ``exclude_no_decay`` is True (the default): they take plain momentum SGD, as biases and
    normalization parameters do in SimCLR, BYOL and ``torch_optimizer.LARS``. The no-decay
    group that :func:`optiwise.param_groups` (and ``create_optimizer`` given a model)
    builds is exactly that group. Set ``exclude_no_decay=False`` (for all groups or in one
    group's dict) to adapt every tensor, as the paper does.

    The published implementations differ: ``torch_optimizer.LARS`` and
    ``pytorch_optimizer.LARS`` keep the LR outside the velocity (the same steps at a constant
    LR); ``torch_optimizer.LARS`` also skips the weight decay of a tensor whose gradient or
    weight is all zero; ``pytorch_optimizer.LARS`` excludes every tensor of fewer than two
    dimensions whatever its group and has no eps.

    Parameters
    ----------
    params:
        Parameters or param-group dicts.
    lr:
        Global learning rate (> 0; a 1-element tensor is read at each step, so changing it
        in place takes effect).
    momentum:
        Momentum factor in [0, 1); 0 keeps no state.
    weight_decay:
        L2 penalty added to the gradient (>= 0).
    trust_coefficient:
        ``eta`` (> 0): the adapted step is about ``lr * eta * ||w||``.
    eps:
        Guard added to the trust ratio's denominator (>= 0).
    nesterov:
        Nesterov momentum (needs ``momentum > 0``).
    exclude_no_decay:
        Take plain momentum SGD on groups whose ``weight_decay`` is 0.
    maximize:
        Maximize the objective (the gradient is negated).
    foreach:
        Use the multi-tensor path (``_foreach`` ops).
    fused:
        Use the compiled path (see docs/performance.md): one pass over
        memory sums ``w^2`` and ``g^2`` per tensor, the trust ratios are computed on the
        device, a second pass applies the step (groups without adaptation skip the
        first). ``None`` (with ``foreach=None``) picks it on CPU and CUDA for groups of at
        least 2^20 elements, else the multi-tensor path on CUDA and the per-tensor path on
        CPU.

    State
    -----
    ``momentum_buffer``: the velocity ``v`` (it includes the LR), shaped like the parameter;
    absent while the group's ``momentum`` is 0.
    """

    state_keys: ClassVar[Mapping[str, StateKind]] = {"momentum_buffer": "param"}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 1e-3,
        eps: float = 1e-8,
        nesterov: bool = False,
        *,
        exclude_no_decay: bool = True,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        validate_hparams({"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eps": eps})
        check_fused_args(fused, foreach)
        check_positive("trust_coefficient", trust_coefficient)
        if nesterov and momentum == 0:
            raise ValueError(
                "Invalid nesterov=True with momentum 0: Nesterov momentum needs momentum > 0"
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            eps=eps,
            nesterov=nesterov,
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
            bufs = None
            if group["momentum"] != 0:
                bufs = self._state_buffers(params, "momentum_buffer")
            adapt = not (group["exclude_no_decay"] and group["weight_decay"] == 0)
            if self._use_fused(group, params, lars_fused_norms, lars_fused_apply):
                self._fused_lars(group, params, grads, bufs, adapt)
                continue
            fn = (
                lars_multi_tensor
                if self._use_foreach(group["foreach"], params)
                else lars_single_tensor
            )
            real = self._real_views  # complex tensors as (real, imaginary) pairs
            fn(
                real(params),
                real(grads),
                None if bufs is None else real(bufs),
                lr=float(group["lr"]),
                momentum=group["momentum"],
                weight_decay=group["weight_decay"],
                trust_coefficient=group["trust_coefficient"],
                eps=group["eps"],
                nesterov=group["nesterov"],
                adapt=adapt,
                maximize=group["maximize"],
            )
        return loss

    def _fused_lars(
        self,
        group: Mapping[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        bufs: list[Tensor] | None,
        adapt: bool,
    ) -> None:
        """The compiled passes: the norms (when adapting), then the step."""
        states, keys = ([bufs], ["momentum_buffer"]) if bufs is not None else ([], [])
        lr, momentum, wd = float(group["lr"]), group["momentum"], group["weight_decay"]
        with self._fused_passes(group, params, grads, states, keys) as passes:
            if adapt:
                sums = passes.run(lars_fused_norms)
                assert sums is not None
                # fp64 sums: their square roots rounded once, as torch.linalg.vector_norm's
                norms = sums.sqrt().to(_ratio_dtype(params[0].dtype))
                ratio = _lars_trust_ratio(
                    norms[:, 0], norms[:, 1], group["trust_coefficient"], wd, group["eps"]
                )
            else:
                ratio = torch.ones(
                    len(params), dtype=_ratio_dtype(params[0].dtype), device=params[0].device
                )
            passes.run(
                lars_fused_apply, per_tensor={"ratio": ratio}, weight_decay=wd, lr=lr,
                neg_lr=-lr, momentum=momentum, neg_momentum=-momentum,
                sign=-1.0 if group["maximize"] else 1.0, nesterov=group["nesterov"],
            )  # fmt: skip
