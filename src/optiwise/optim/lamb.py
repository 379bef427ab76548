"""LAMB: layer-wise adaptive moments for large batches (You et al. 2020)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch

from optiwise.optim._base import OptiwiseOptimizer, StateKind
from optiwise.optim._kernels import lamb_multi_tensor, lamb_single_tensor
from optiwise.optim._validation import check_positive, validate_hparams

__all__ = ["LAMB"]


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
        Learning rate (> 0); the step of a tensor is about ``lr * ||w||``.
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
        Use the multi-tensor path; ``None`` picks it on CUDA only.

    State
    -----
    ``step``: steps taken by the tensor (a 0-dim float32 CPU tensor, as torch's Adam);
    ``exp_avg``: the first moment ``m``; ``exp_avg_sq``: the second moment ``v``.
    """

    state_keys: ClassVar[Mapping[str, StateKind]] = {
        "step": "scalar",
        "exp_avg": "param",
        "exp_avg_sq": "param",
    }

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
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
    ) -> None:
        check_positive("learning rate", lr)
        validate_hparams({"betas": betas, "eps": eps, "weight_decay": weight_decay})
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
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` re-evaluates the loss."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            params, grads = self._params_with_grads(group)
            steps = []
            for p in params:
                state = self.state[p]
                if "step" not in state:
                    state["step"] = torch.tensor(0.0)
                state["step"] += 1
                steps.append(int(state["step"].item()))
            exp_avgs = self._state_buffers(params, "exp_avg")
            exp_avg_sqs = self._state_buffers(params, "exp_avg_sq")
            fn = (
                lamb_multi_tensor
                if self._use_foreach(group["foreach"], params)
                else lamb_single_tensor
            )
            beta1, beta2 = group["betas"]
            fn(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                steps,
                lr=group["lr"],
                beta1=beta1,
                beta2=beta2,
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                bias_correction=group["bias_correction"],
                adapt=not (group["exclude_no_decay"] and group["weight_decay"] == 0),
                max_weight_norm=group["max_weight_norm"],
                max_trust_ratio=group["max_trust_ratio"],
                maximize=group["maximize"],
            )
        return loss
