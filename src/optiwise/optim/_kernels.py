"""Update math of optiwise's optimizers, as functions over lists of tensors.

Each algorithm has a per-tensor function (``*_single_tensor``: a loop over the tensors, the
reference path) and, where it pays, a multi-tensor one (``*_multi_tensor``: torch's
``_foreach_*`` ops over the whole list). Both update ``params`` and the state tensors in
place and give the same results; the optimizer classes pick one (see
``OptiwiseOptimizer._use_foreach``). Hyperparameters arrive as plain floats, already taken
from the param group; ``maximize`` means the gradients are negated before use.

``*_fused`` functions are the same updates written for the compiler (see ``_fused.py``):
over lists of tensors, with every number that may change between steps given as a 0-dim
tensor, precomputed on the host exactly as the per-tensor path computes it (e.g.
``decay = 1 - lr * weight_decay``), and all-zero inputs mapped to zeros. They agree with the
per-tensor functions to rounding (e.g. ``m + w (g - m)`` for ``lerp``, which Inductor would
compile into a slower per-element choice of formula).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "adamw_fused",
    "adamw_single_tensor",
    "lion_fused",
    "lion_multi_tensor",
    "lion_single_tensor",
]


# --------------------------------------------------------------------------------------------
# AdamW (Loshchilov & Hutter 2019), as torch.optim.AdamW computes it; used by the 8-bit
# AdamW on its dequantized moments.
# --------------------------------------------------------------------------------------------


def adamw_single_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    steps: list[int],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """One AdamW step per tensor; ``steps[i]`` is tensor i's step count after this step.

    ``w <- w (1 - lr wd)``; ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
    ``w <- w - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
    """
    for param, grad, m, v, step in zip(params, grads, exp_avgs, exp_avg_sqs, steps, strict=True):
        g = -grad if maximize else grad
        if weight_decay != 0:
            param.mul_(1 - lr * weight_decay)
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        bias1 = 1 - beta1**step
        bias2_sqrt = (1 - beta2**step) ** 0.5
        denom = (v.sqrt() / bias2_sqrt).add_(eps)
        param.addcdiv_(m, denom, value=-lr / bias1)


def adamw_fused(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    decay: Tensor,
    weight1: Tensor,
    beta2: Tensor,
    weight2: Tensor,
    bias2_sqrt: Tensor,
    eps: Tensor,
    neg_step_size: Tensor,
    maximize: bool,
) -> None:
    """:func:`adamw_single_tensor` for the compiler, all tensors sharing one step count.

    ``decay = 1 - lr wd``, ``weight1 = 1 - b1``, ``weight2 = 1 - b2``,
    ``bias2_sqrt = sqrt(1 - b2^t)``, ``neg_step_size = -lr / (1 - b1^t)``.
    """
    for param, grad, m, v in zip(params, grads, exp_avgs, exp_avg_sqs, strict=True):
        g = -grad if maximize else grad
        param.mul_(decay)
        m.add_(weight1 * (g - m))
        v.mul_(beta2).add_(weight2 * g * g)
        param.add_(neg_step_size * m / (v.sqrt() / bias2_sqrt + eps))


# --------------------------------------------------------------------------------------------
# Lion (Chen et al. 2023)
# --------------------------------------------------------------------------------------------


def lion_single_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """One Lion step per tensor.

    ``c <- b1 m + (1 - b1) g``; ``w <- w (1 - lr wd) - lr sign(c)``;
    ``m <- b2 m + (1 - b2) g``.
    """
    for param, grad, m in zip(params, grads, exp_avgs, strict=True):
        g = -grad if maximize else grad
        if weight_decay != 0:
            param.mul_(1 - lr * weight_decay)
        update = torch.lerp(m, g, 1 - beta1).sign_()
        param.add_(update, alpha=-lr)
        m.lerp_(g, 1 - beta2)


def lion_multi_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """:func:`lion_single_tensor` with ``_foreach`` ops over the whole list."""
    if not params:
        return
    gs = torch._foreach_neg(grads) if maximize else grads
    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    updates = torch._foreach_lerp(exp_avgs, gs, 1 - beta1)
    torch._foreach_sign_(updates)
    torch._foreach_add_(params, updates, alpha=-lr)
    torch._foreach_lerp_(exp_avgs, gs, 1 - beta2)


def lion_fused(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    *,
    decay: Tensor,
    neg_lr: Tensor,
    weight1: Tensor,
    weight2: Tensor,
    maximize: bool,
) -> None:
    """:func:`lion_single_tensor` for the compiler: ``decay = 1 - lr wd``,
    ``neg_lr = -lr``, ``weight1 = 1 - b1``, ``weight2 = 1 - b2``."""
    for param, grad, m in zip(params, grads, exp_avgs, strict=True):
        g = -grad if maximize else grad
        # lerp written out: Inductor's lerp picks its formula per element, twice as slow
        d = g - m
        param.mul_(decay).add_(torch.sign(m + weight1 * d) * neg_lr)
        m.add_(weight2 * d)


# --------------------------------------------------------------------------------------------
# LAMB (You et al. 2020)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# LARS (You et al. 2017)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# SophiaG (Liu et al. 2023)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Schedule-free AdamW (Defazio et al. 2024)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Lookahead (Zhang et al. 2019)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# 8-bit block-wise quantization (Dettmers et al. 2022)
# --------------------------------------------------------------------------------------------
