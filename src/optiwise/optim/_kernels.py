"""Update math of optiwise's optimizers, as functions over lists of tensors.

Each algorithm has a per-tensor function (``*_single_tensor``: a loop over the tensors, the
reference path) and, where it pays, a multi-tensor one (``*_multi_tensor``: torch's
``_foreach_*`` ops over the whole list). Both update ``params`` and the state tensors in
place and give the same results; the optimizer classes pick one (see
``OptiwiseOptimizer._use_foreach``). Hyperparameters arrive as plain floats, already taken
from the param group; ``maximize`` means the gradients are negated before use.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "adamw_single_tensor",
    "lamb_multi_tensor",
    "lamb_single_tensor",
    "lars_multi_tensor",
    "lars_single_tensor",
    "lion_multi_tensor",
    "lion_single_tensor",
    "schedule_free_adamw_multi_tensor",
    "schedule_free_adamw_single_tensor",
    "sophiag_hessian_multi_tensor",
    "sophiag_hessian_single_tensor",
    "sophiag_multi_tensor",
    "sophiag_single_tensor",
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


# --------------------------------------------------------------------------------------------
# LAMB (You et al. 2020)
# --------------------------------------------------------------------------------------------


def _lamb_trust_ratio(
    w_norm: Tensor, u_norm: Tensor, max_weight_norm: float | None, max_trust_ratio: float | None
) -> Tensor:
    """``phi(||w||) / ||u||``, 1 where either norm is 0; elementwise over stacked norms."""
    if max_weight_norm is not None:
        w_norm = w_norm.clamp(max=max_weight_norm)
    ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
    if max_trust_ratio is not None:
        ratio = ratio.clamp(max=max_trust_ratio)
    return ratio


def _bias_corrections(beta1: float, beta2: float, step: int) -> tuple[float, float]:
    """``(1 - b1^t, sqrt(1 - b2^t))``."""
    return 1 - beta1**step, (1 - beta2**step) ** 0.5


def lamb_single_tensor(
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
    bias_correction: bool,
    adapt: bool,
    max_weight_norm: float | None,
    max_trust_ratio: float | None,
    maximize: bool,
) -> None:
    """One LAMB step per tensor; ``steps[i]`` is tensor i's step count after this step.

    ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
    ``u = m_hat / (sqrt(v_hat) + eps) + wd w`` (``m_hat = m / (1 - b1^t)``,
    ``v_hat = v / (1 - b2^t)``, or ``m``, ``v`` without ``bias_correction``);
    ``r = min(||w||, max_weight_norm) / ||u||`` (1 where either norm is 0, at most
    ``max_trust_ratio``; 1 when not ``adapt``); ``w <- w - lr r u``.
    """
    for param, grad, m, v, step in zip(params, grads, exp_avgs, exp_avg_sqs, steps, strict=True):
        g = -grad if maximize else grad
        m.lerp_(g, 1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        if bias_correction:
            bias1, bias2_sqrt = _bias_corrections(beta1, beta2, step)
            update = m.div(v.sqrt().div_(bias2_sqrt).add_(eps)).div_(bias1)
        else:
            update = m.div(v.sqrt().add_(eps))
        if weight_decay != 0:
            update.add_(param, alpha=weight_decay)
        if adapt:
            update.mul_(
                _lamb_trust_ratio(
                    torch.linalg.vector_norm(param),
                    torch.linalg.vector_norm(update),
                    max_weight_norm,
                    max_trust_ratio,
                )
            )
        param.add_(update, alpha=-lr)


def lamb_multi_tensor(
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
    bias_correction: bool,
    adapt: bool,
    max_weight_norm: float | None,
    max_trust_ratio: float | None,
    maximize: bool,
) -> None:
    """:func:`lamb_single_tensor` with ``_foreach`` ops over the whole list."""
    if not params:
        return
    gs = torch._foreach_neg(grads) if maximize else grads
    torch._foreach_lerp_(exp_avgs, gs, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, gs, gs, value=1 - beta2)
    denoms = torch._foreach_sqrt(exp_avg_sqs)
    if bias_correction:
        corrections = [_bias_corrections(beta1, beta2, step) for step in steps]
        torch._foreach_div_(denoms, [c[1] for c in corrections])
        torch._foreach_add_(denoms, eps)
        updates = torch._foreach_div(exp_avgs, denoms)
        torch._foreach_div_(updates, [c[0] for c in corrections])
    else:
        torch._foreach_add_(denoms, eps)
        updates = torch._foreach_div(exp_avgs, denoms)
    del denoms
    if weight_decay != 0:
        torch._foreach_add_(updates, params, alpha=weight_decay)
    if adapt:
        ratios = _lamb_trust_ratio(
            torch.stack(torch._foreach_norm(params)),
            torch.stack(torch._foreach_norm(updates)),
            max_weight_norm,
            max_trust_ratio,
        )
        torch._foreach_mul_(updates, list(ratios.unbind()))
    torch._foreach_add_(params, updates, alpha=-lr)


# --------------------------------------------------------------------------------------------
# LARS (You et al. 2017)
# --------------------------------------------------------------------------------------------


def _lars_trust_ratio(
    w_norm: Tensor, g_norm: Tensor, trust_coefficient: float, weight_decay: float, eps: float
) -> Tensor:
    """``eta ||w|| / (||g|| + wd ||w|| + eps)``, 1 where either norm is 0; elementwise."""
    ratio = trust_coefficient * w_norm / (g_norm + weight_decay * w_norm + eps)
    return torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))


def lars_single_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor] | None,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    trust_coefficient: float,
    eps: float,
    nesterov: bool,
    adapt: bool,
    maximize: bool,
) -> None:
    """One LARS step per tensor, in the paper's form (the LR inside the velocity).

    ``u = r (g + wd w)`` with the trust ratio ``r = eta ||w|| / (||g|| + wd ||w|| + eps)``
    (1 where ``||w||`` or ``||g||`` is 0, or when not ``adapt``); ``v <- mu v + lr u``;
    ``w <- w - v`` (Nesterov: ``w <- w - (mu v + lr u)``). ``momentum_buffers`` is None
    when ``momentum == 0``: then ``w <- w - lr u``.
    """
    for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
        g = -grad if maximize else grad
        update = g.add(param, alpha=weight_decay) if adapt or weight_decay != 0 else g
        if adapt:
            update.mul_(
                _lars_trust_ratio(
                    torch.linalg.vector_norm(param),
                    torch.linalg.vector_norm(g),
                    trust_coefficient,
                    weight_decay,
                    eps,
                )
            )
        if momentum_buffers is None:
            param.add_(update, alpha=-lr)
            continue
        buf = momentum_buffers[i]
        buf.mul_(momentum).add_(update, alpha=lr)
        if nesterov:
            param.add_(buf, alpha=-momentum).add_(update, alpha=-lr)
        else:
            param.sub_(buf)


def lars_multi_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor] | None,
    *,
    lr: float,
    momentum: float,
    weight_decay: float,
    trust_coefficient: float,
    eps: float,
    nesterov: bool,
    adapt: bool,
    maximize: bool,
) -> None:
    """:func:`lars_single_tensor` with ``_foreach`` ops over the whole list."""
    if not params:
        return
    gs = torch._foreach_neg(grads) if maximize else grads
    updates = list(gs)
    if adapt or weight_decay != 0:
        updates = list(torch._foreach_add(gs, params, alpha=weight_decay))
    if adapt:
        ratios = _lars_trust_ratio(
            torch.stack(torch._foreach_norm(params)),
            torch.stack(torch._foreach_norm(gs)),
            trust_coefficient,
            weight_decay,
            eps,
        )
        torch._foreach_mul_(updates, list(ratios.unbind()))
    if momentum_buffers is None:
        torch._foreach_add_(params, updates, alpha=-lr)
        return
    torch._foreach_mul_(momentum_buffers, momentum)
    torch._foreach_add_(momentum_buffers, updates, alpha=lr)
    if nesterov:
        torch._foreach_add_(params, momentum_buffers, alpha=-momentum)
        torch._foreach_add_(params, updates, alpha=-lr)
    else:
        torch._foreach_sub_(params, momentum_buffers)


# --------------------------------------------------------------------------------------------
# SophiaG (Liu et al. 2023)
# --------------------------------------------------------------------------------------------


def sophiag_single_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    hessians: list[Tensor],
    *,
    lr: float,
    beta1: float,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """One SophiaG step per tensor (the Hessian EMA ``h`` is refreshed separately).

    ``w <- w (1 - lr wd)``; ``m <- b1 m + (1 - b1) g``;
    ``w <- w - lr clamp(m / max(rho h, eps), -1, 1)``.
    """
    for param, grad, m, h in zip(params, grads, exp_avgs, hessians, strict=True):
        g = -grad if maximize else grad
        if weight_decay != 0:
            param.mul_(1 - lr * weight_decay)
        m.lerp_(g, 1 - beta1)
        denom = torch.mul(h, rho).clamp_(min=eps)
        ratio = torch.div(m, denom).clamp_(-1.0, 1.0)
        param.add_(ratio, alpha=-lr)


def sophiag_multi_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    hessians: list[Tensor],
    *,
    lr: float,
    beta1: float,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """:func:`sophiag_single_tensor` with ``_foreach`` ops over the whole list."""
    if not params:
        return
    gs = torch._foreach_neg(grads) if maximize else grads
    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_lerp_(exp_avgs, gs, 1 - beta1)
    denoms = torch._foreach_mul(hessians, rho)
    torch._foreach_clamp_min_(denoms, eps)
    ratios = torch._foreach_div(exp_avgs, denoms)
    torch._foreach_clamp_min_(ratios, -1.0)
    torch._foreach_clamp_max_(ratios, 1.0)
    torch._foreach_add_(params, ratios, alpha=-lr)


def sophiag_hessian_single_tensor(
    hessians: list[Tensor],
    estimates: list[Tensor],
    *,
    beta2: float,
    square_scale: float | None = None,
) -> None:
    """Refresh the Hessian EMA per tensor.

    ``h <- b2 h + (1 - b2) e`` for diagonal Hessian estimates ``e``; with ``square_scale=B``
    the ``e`` are gradients of the sampled-label loss and ``h <- b2 h + (1 - b2) B e^2``
    (the Gauss-Newton-Bartlett estimate).
    """
    for h, e in zip(hessians, estimates, strict=True):
        h.mul_(beta2)
        if square_scale is None:
            h.add_(e, alpha=1 - beta2)
        else:
            h.addcmul_(e, e, value=(1 - beta2) * square_scale)


def sophiag_hessian_multi_tensor(
    hessians: list[Tensor],
    estimates: list[Tensor],
    *,
    beta2: float,
    square_scale: float | None = None,
) -> None:
    """:func:`sophiag_hessian_single_tensor` with ``_foreach`` ops."""
    if not hessians:
        return
    torch._foreach_mul_(hessians, beta2)
    if square_scale is None:
        torch._foreach_add_(hessians, estimates, alpha=1 - beta2)
    else:
        torch._foreach_addcmul_(hessians, estimates, estimates, value=(1 - beta2) * square_scale)


# --------------------------------------------------------------------------------------------
# Schedule-free AdamW (Defazio et al. 2024)
# --------------------------------------------------------------------------------------------


def schedule_free_adamw_single_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    lr: float,
    ckp1: float,
    beta1: float,
    beta2: float,
    bias_correction2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """One schedule-free AdamW step per tensor; ``params`` hold ``y`` and are updated to the
    next ``y`` without storing ``x``.

    ``v <- b2 v + (1 - b2) g^2``; ``u = g / (sqrt(v / bc2) + eps) + wd y``;
    ``z' = z - lr u``; ``x' = (1 - c) x + c z'``; ``y' = b1 x' + (1 - b1) z'``, computed as
    ``y' = lerp(y, z, c) + lr (b1 (1 - c) - 1) u`` (``c`` is ``ckp1``, the averaging weight).
    """
    for y, grad, z, v in zip(params, grads, zs, exp_avg_sqs, strict=True):
        g = -grad if maximize else grad
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        denom = v.div(bias_correction2).sqrt_().add_(eps)
        u = torch.div(g, denom)
        if weight_decay != 0:
            u.add_(y, alpha=weight_decay)
        y.lerp_(z, ckp1)
        y.add_(u, alpha=lr * (beta1 * (1 - ckp1) - 1))
        z.sub_(u, alpha=lr)


def schedule_free_adamw_multi_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    lr: float,
    ckp1: float,
    beta1: float,
    beta2: float,
    bias_correction2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """:func:`schedule_free_adamw_single_tensor` with ``_foreach`` ops over the whole list."""
    if not params:
        return
    gs = torch._foreach_neg(grads) if maximize else grads
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, gs, gs, value=1 - beta2)
    denoms = torch._foreach_div(exp_avg_sqs, bias_correction2)
    torch._foreach_sqrt_(denoms)
    torch._foreach_add_(denoms, eps)
    us = torch._foreach_div(gs, denoms)
    if weight_decay != 0:
        torch._foreach_add_(us, params, alpha=weight_decay)
    torch._foreach_lerp_(params, zs, ckp1)
    torch._foreach_add_(params, us, alpha=lr * (beta1 * (1 - ckp1) - 1))
    torch._foreach_sub_(zs, us, alpha=lr)


# --------------------------------------------------------------------------------------------
# Lookahead (Zhang et al. 2019)
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# 8-bit block-wise quantization (Dettmers et al. 2022)
# --------------------------------------------------------------------------------------------
