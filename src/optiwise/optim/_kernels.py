"""Update math of optiwise's optimizers, as functions over lists of tensors.

Each algorithm has a per-tensor function (``*_single_tensor``: a loop over the tensors, the
reference path) and, where it pays, a multi-tensor one (``*_multi_tensor``: torch's
``_foreach_*`` ops over the whole list). Both update ``params`` and the state tensors in
place and give the same results; the optimizer classes pick one (see
``OptiwiseOptimizer._use_foreach``). Hyperparameters arrive as plain floats, already taken
from the param group; ``maximize`` means the gradients are negated before use.

``*_fused`` functions are the same updates written for the compiler (see ``_fused.py``):
over lists of tensors, with every number that may change between steps given as a 0-dim
tensor, precomputed on the host as the per-tensor path computes it (e.g.
``decay = 1 - lr * weight_decay``), and all-zero inputs mapped to zeros. ``maximize`` enters
as ``sign`` (-1 or 1, a number like the others), so that maximizing shares the compiled
graph. They agree with the per-tensor functions to rounding: ``m + w (g - m)`` for
``lerp`` (Inductor would compile a slower per-element choice of formula), and a division by
a scalar (a bias correction) as a multiplication by its reciprocal (a division per element
costs as much as the memory traffic of a compute-heavy update).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

# the dtype of trust ratios (and of the fused path's scalars) for tensors of a dtype
from optiwise.optim._fused import _opmath as _ratio_dtype

__all__ = [
    "PackedMaps",
    "QuantMap",
    "adamw8bit_hparams",
    "adamw8bit_single_tensor",
    "adamw_fused",
    "adamw_multi_tensor",
    "adamw_single_tensor",
    "dequantize_blockwise",
    "dynamic_map",
    "lamb_fused_apply",
    "lamb_fused_norms",
    "lamb_multi_tensor",
    "lamb_single_tensor",
    "lars_fused_apply",
    "lars_fused_norms",
    "lars_multi_tensor",
    "lars_single_tensor",
    "lion8bit_hparams",
    "lion8bit_single_tensor",
    "lion_fused",
    "lion_multi_tensor",
    "lion_single_tensor",
    "lookahead_sync_fused",
    "lookahead_sync_multi_tensor",
    "lookahead_sync_single_tensor",
    "make_quant_map",
    "packed_codes",
    "packed_lut",
    "packed_maps",
    "quant_map",
    "quantize_blockwise_",
    "schedule_free_adamw_fused",
    "schedule_free_adamw_multi_tensor",
    "schedule_free_adamw_single_tensor",
    "sophiag_fused",
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


def adamw_multi_tensor(
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
    """:func:`adamw_single_tensor` with ``_foreach`` ops, the same op for op (same results)."""
    if not params:
        return
    gs = torch._foreach_neg(grads) if maximize else grads
    if weight_decay != 0:
        torch._foreach_mul_(params, 1 - lr * weight_decay)
    torch._foreach_lerp_(exp_avgs, gs, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, gs, gs, value=1 - beta2)
    denoms = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denoms, [(1 - beta2**step) ** 0.5 for step in steps])
    torch._foreach_add_(denoms, eps)
    torch._foreach_addcdiv_(params, exp_avgs, denoms, [-lr / (1 - beta1**step) for step in steps])


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
    sign: Tensor,
) -> None:
    """:func:`lion_single_tensor` for the compiler: ``decay = 1 - lr wd``,
    ``neg_lr = -lr``, ``weight1 = 1 - b1``, ``weight2 = 1 - b2``, ``sign = -1`` to
    maximize (else 1)."""
    for param, grad, m in zip(params, grads, exp_avgs, strict=True):
        g = grad * sign
        # lerp written out: Inductor's lerp picks its formula per element, twice as slow
        d = g - m
        param.mul_(decay).add_(torch.sign(m + weight1 * d) * neg_lr)
        m.add_(weight2 * d)


# --------------------------------------------------------------------------------------------
# LAMB (You et al. 2020)
# --------------------------------------------------------------------------------------------


def _norm(x: Tensor) -> Tensor:
    """The 2-norm of ``x`` accumulated in float64, rounded once to fp32 (float64 for float64
    ``x``): an fp32 sum drifts on large tensors (torch's fp32 norm of 24 M normal values
    is off by about 1e-3 relative), and the fused path's norms are accurate to fp32."""
    return torch.linalg.vector_norm(x, dtype=torch.float64).to(_ratio_dtype(x.dtype))


def _norms(xs: Sequence[Tensor]) -> Tensor:
    """:func:`_norm` of each of ``xs``, stacked."""
    norms = torch._foreach_norm(list(xs), dtype=torch.float64)
    return torch.stack(norms).to(_ratio_dtype(xs[0].dtype))


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
        g = (-grad if maximize else grad).to(m.dtype)  # float32 moments of half parameters
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
                    _norm(param),
                    _norm(update),
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
    if any(g.dtype != m.dtype for g, m in zip(gs, exp_avgs, strict=True)):
        gs = [g.to(m.dtype) for g, m in zip(gs, exp_avgs, strict=True)]  # half parameters
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
            _norms(params),
            _norms(updates),
            max_weight_norm,
            max_trust_ratio,
        )
        torch._foreach_mul_(updates, list(ratios.unbind()))
    torch._foreach_add_(params, updates, alpha=-lr)


def _square_sum(x: Tensor) -> Tensor:
    """Sum of squares over the last dimension, in fp32 for half-precision ``x``."""
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return (x * x).sum(-1)


def lamb_fused_norms(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    weight1: Tensor,
    beta2: Tensor,
    weight2: Tensor,
    inv_bias1: Tensor,
    inv_bias2_sqrt: Tensor,
    eps: Tensor,
    weight_decay: Tensor,
    sign: Tensor,
) -> list[Tensor]:
    """First pass of :func:`lamb_single_tensor` for :class:`~optiwise.optim._fused.FusedPasses`:
    per row, ``[sum(u^2), sum(w^2)]`` with the step's update ``u``, computed from the new
    moments without storing them (reads ``w, g, m, v``; :func:`lamb_fused_apply` stores
    them). ``weight1 = 1 - b1``, ``weight2 = 1 - b2``, ``inv_bias1 = 1 / (1 - b1^t)``,
    ``inv_bias2_sqrt = 1 / sqrt(1 - b2^t)`` (1 without bias correction), ``sign = -1`` to
    maximize.

    Storing the moments in this pass instead would save the second read of ``g`` (40 bytes
    per fp32 parameter in all instead of 44), but Inductor keeps such stores and row sums
    in separate loops, which costs more than it saves.
    """
    out = []
    for param, grad, m, v in zip(params, grads, exp_avgs, exp_avg_sqs, strict=True):
        g = grad * sign
        m_new = m + weight1 * (g - m)
        v_new = v * beta2 + weight2 * g * g
        u = m_new * inv_bias1 / (v_new.sqrt() * inv_bias2_sqrt + eps) + weight_decay * param
        out.append(torch.stack([_square_sum(u), _square_sum(param)], -1))
    return out


def lamb_fused_apply(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    ratio: list[Tensor],
    weight1: Tensor,
    beta2: Tensor,
    weight2: Tensor,
    inv_bias1: Tensor,
    inv_bias2_sqrt: Tensor,
    eps: Tensor,
    weight_decay: Tensor,
    neg_lr: Tensor,
    sign: Tensor,
) -> None:
    """Second pass: the new moments, stored, and ``w <- w - lr r u`` with the trust ratio
    ``r`` per row."""
    for param, grad, m, v, r in zip(params, grads, exp_avgs, exp_avg_sqs, ratio, strict=True):
        g = grad * sign
        m.add_(weight1 * (g - m))
        v.mul_(beta2).add_(weight2 * g * g)
        u = m * inv_bias1 / (v.sqrt() * inv_bias2_sqrt + eps) + weight_decay * param
        param.add_(neg_lr * (u * r))


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
                    _norm(param),
                    _norm(g),
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
            _norms(params),
            _norms(gs),
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


def lars_fused_norms(
    params: list[Tensor], grads: list[Tensor], *momentum_buffers: list[Tensor]
) -> list[Tensor]:
    """First pass of :func:`lars_single_tensor` for
    :class:`~optiwise.optim._fused.FusedPasses`: ``[sum(w^2), sum(g^2)]`` per row; the
    momentum buffers are not read. (``view_as`` tells the compiler that ``w`` and ``g`` have
    one shape, so that it sums both in one loop, reading two streams at once.)"""
    return [
        torch.stack([_square_sum(p), _square_sum(g.view_as(p))], -1)
        for p, g in zip(params, grads, strict=True)
    ]


def lars_fused_apply(
    params: list[Tensor],
    grads: list[Tensor],
    *momentum_buffers: list[Tensor],
    ratio: list[Tensor],
    weight_decay: Tensor,
    lr: Tensor,
    neg_lr: Tensor,
    momentum: Tensor,
    neg_momentum: Tensor,
    sign: Tensor,
    nesterov: bool,
) -> None:
    """Second pass: ``u = r (g + wd w)`` with the trust ratio ``r`` per row (1
    without adaptation), then the momentum step of :func:`lars_single_tensor` (a plain
    ``w <- w - lr u`` without momentum buffers). ``sign = -1`` to maximize."""
    for i, (param, grad, r) in enumerate(zip(params, grads, ratio, strict=True)):
        u = (grad * sign + weight_decay * param) * r
        if not momentum_buffers:
            param.add_(neg_lr * u)
            continue
        buf = momentum_buffers[0][i]
        buf.mul_(momentum).add_(lr * u)
        if nesterov:
            param.add_(neg_momentum * buf).add_(neg_lr * u)
        else:
            param.sub_(buf)


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


def sophiag_fused(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    hessians: list[Tensor],
    *,
    decay: Tensor,
    weight1: Tensor,
    rho: Tensor,
    eps: Tensor,
    neg_lr: Tensor,
    sign: Tensor,
) -> None:
    """:func:`sophiag_single_tensor` for the compiler: ``decay = 1 - lr wd``,
    ``weight1 = 1 - b1``, ``neg_lr = -lr``, ``sign = -1`` to maximize (else 1)."""
    for param, grad, m, h in zip(params, grads, exp_avgs, hessians, strict=True):
        g = grad * sign
        m.add_(weight1 * (g - m))
        ratio = torch.clamp(m / torch.clamp(h * rho, min=eps), -1.0, 1.0)
        param.mul_(decay).add_(ratio * neg_lr)


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


def schedule_free_adamw_fused(
    params: list[Tensor],
    grads: list[Tensor],
    zs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    *,
    beta2: Tensor,
    weight2: Tensor,
    inv_bias_correction2: Tensor,
    eps: Tensor,
    weight_decay: Tensor,
    ckp1: Tensor,
    y_step: Tensor,
    neg_lr: Tensor,
    sign: Tensor,
) -> None:
    """:func:`schedule_free_adamw_single_tensor` for the compiler: ``weight2 = 1 - b2``,
    ``inv_bias_correction2 = 1 / bias_correction2``, ``y_step = lr (b1 (1 - c) - 1)``,
    ``neg_lr = -lr``, ``sign = -1`` to maximize (else 1)."""
    for y, grad, z, v in zip(params, grads, zs, exp_avg_sqs, strict=True):
        g = grad * sign
        v.mul_(beta2).add_(weight2 * g * g)
        u = g / ((v * inv_bias_correction2).sqrt() + eps) + weight_decay * y
        y_new = y + ckp1 * (z - y) + y_step * u
        z.add_(neg_lr * u)
        y.copy_(y_new)


# --------------------------------------------------------------------------------------------
# Lookahead (Zhang et al. 2019)
# --------------------------------------------------------------------------------------------


def lookahead_sync_single_tensor(
    params: list[Tensor], slow_params: list[Tensor], *, alpha: float
) -> None:
    """Lookahead's synchronisation per tensor: ``slow <- slow + alpha (fast - slow)``, then
    ``fast <- slow``. ``alpha = 1`` leaves the fast weights as they are."""
    for param, slow in zip(params, slow_params, strict=True):
        slow.lerp_(param, alpha)
        param.copy_(slow)


def lookahead_sync_multi_tensor(
    params: list[Tensor], slow_params: list[Tensor], *, alpha: float
) -> None:
    """:func:`lookahead_sync_single_tensor` with ``_foreach`` ops (same results)."""
    if not params:
        return
    torch._foreach_lerp_(slow_params, params, alpha)
    torch._foreach_copy_(params, slow_params)


def lookahead_sync_fused(params: list[Tensor], slow_params: list[Tensor], *, alpha: Tensor) -> None:
    """:func:`lookahead_sync_single_tensor` for the compiler, one pass per tensor (reads
    both, writes both); ``lerp``'s two formulas, chosen by ``alpha`` as torch does."""
    for param, slow in zip(params, slow_params, strict=True):
        d = param - slow
        new = torch.where(alpha < 0.5, slow + alpha * d, param - d * (1 - alpha))
        slow.copy_(new)
        param.copy_(new)


# --------------------------------------------------------------------------------------------
# 8-bit block-wise quantization (Dettmers et al. 2022)
# --------------------------------------------------------------------------------------------
#
# A tensor's state is split into blocks of ``block_size`` consecutive elements (row-major
# order; the last block may be partial). Each block stores its absolute maximum as fp32 and
# every element as an 8-bit code: the index of the nearest value of a 256-entry map in
# [-1, 1] to ``x / absmax``. int8 codes index ``map[code + 128]`` (signed maps, for momenta),
# uint8 codes index ``map[code]`` (unsigned maps, for second moments). Dequantization is
# ``map[code] * absmax``, one fp32 multiply.
#
# Finding the nearest map value by binary search (torch.bucketize) costs ~80 ns per element
# on CPU. Instead a lookup table indexed by the sign, exponent and top 8 mantissa bits of the
# normalized value (``(bits >> 15) & 0x1FFFF``) gives the nearest value at the bucket's end
# nearest zero; the buckets are narrower than the map's steps, so at most one decision
# boundary lies inside a bucket and one comparison on each side makes the result exact
# (make_quant_map checks this). About 3x faster than bucketize, and the same result.

_LUT_SHIFT = 15
_LUT_MASK = 0x1FFFF
#: Smallest normal fp32 number (2^-126).
_NORMAL_MIN = float.fromhex("0x1p-126")
_MAPS: dict[tuple[bool, torch.device], QuantMap] = {}


class QuantMap(NamedTuple):
    """A quantization map prepared for :func:`quantize_blockwise_` (see
    :func:`make_quant_map`)."""

    #: The 256 map values, sorted, in [-1, 1] (fp32).
    values: Tensor
    #: ``[-inf, midpoints of consecutive values..., +inf]`` (257 entries).
    boundaries: Tensor
    #: Per bucket ``(float bits >> 15) & 0x1FFFF``: the nearest value's index at the bucket's
    #: end nearest zero (int32, 2^17 entries).
    lut: Tensor
    #: Index of the first positive value and of the last negative one (-1 if none).
    first_positive: int
    last_negative: int


def _bucket(x: Tensor) -> Tensor:
    """The lookup-table bucket of each fp32 element (int32)."""
    return x.view(torch.int32).bitwise_right_shift(_LUT_SHIFT).bitwise_and_(_LUT_MASK)


def make_quant_map(values: Tensor) -> QuantMap:
    """Prepare 256 sorted values in [-1, 1] as a :class:`QuantMap`.

    Raises a ValueError when the values are not 256 sorted finite numbers in [-1, 1], or
    when two decision boundaries (midpoints) fall in one lookup bucket (relative distance
    below 2^-8), where the table could not be exact.
    """
    values = values.detach().to(torch.float32).flatten().cpu()
    if (
        values.numel() != 256
        or not bool(torch.isfinite(values).all())
        or bool((values.abs() > 1).any())
        or bool((values[1:] < values[:-1]).any())
    ):
        raise ValueError("a quantization map needs 256 sorted finite values in [-1, 1]")
    mids = (values[1:] + values[:-1]) / 2
    mids = mids[torch.cat([torch.ones(1, dtype=torch.bool), mids[1:] != mids[:-1]])]
    if _bucket(mids).unique().numel() != mids.numel():
        raise ValueError(
            "quantization map values too close together for the lookup table (two decision "
            "boundaries within a relative distance of 2^-8)"
        )
    # Each bucket's end nearest zero: its bit pattern with the low 15 bits cleared.
    edges = torch.arange(_LUT_MASK + 1, dtype=torch.int64) << _LUT_SHIFT
    edges = torch.where(edges >= 2**31, edges - 2**32, edges).to(torch.int32).view(torch.float32)
    inf = torch.tensor([torch.inf])
    return QuantMap(
        values=values,
        boundaries=torch.cat([-inf, (values[1:] + values[:-1]) / 2, inf]),
        lut=torch.bucketize(edges, (values[1:] + values[:-1]) / 2, out_int32=True),
        first_positive=int((values <= 0).sum()),
        last_negative=int((values < 0).sum()) - 1,
    )


def dynamic_map(signed: bool) -> Tensor:
    """The dynamic tree map (Dettmers et al. 2022, section 2.3): 256 sorted fp32 values.

    A code's magnitude bits read as: ``E`` leading zeros pick the decade
    ``(10^-(E+1), 10^-E]``, the first one-bit ends the exponent, and the bits after it split
    that decade into equal steps. So precision is finest near the block's absmax (64 steps in
    ``(0.1, 1]`` signed, 128 unsigned) and the smallest non-zero magnitude is ``1e-6``
    (signed, 7 magnitude bits) or ``1e-7`` (unsigned, 8 bits). Each decade's values are its
    step end points, so ``1.0`` (the block's absmax itself) is exact, and ``0`` is exact.

    Signed maps hold 0, 127 positive values, their negatives and ``-1.0`` once more (for
    the unused int8 code -128); unsigned maps hold 0 and 255 positive values.
    """
    bits = 7 if signed else 8
    magnitudes = []
    for e in range(bits):
        steps = 2 ** (bits - 1 - e)
        j = torch.arange(1, steps + 1, dtype=torch.float64)
        magnitudes.append(10.0**-e * (0.1 + 0.9 * j / steps))
    pos = torch.cat(magnitudes).sort().values
    zero = torch.zeros(1, dtype=torch.float64)
    parts = [-pos[-1:], -pos.flip(0), zero, pos] if signed else [zero, pos]
    return torch.cat(parts).float()


def quant_map(signed: bool, device: torch.device) -> QuantMap:
    """The :class:`QuantMap` of :func:`dynamic_map` on ``device``, built once per device."""
    key = (signed, device)
    qmap = _MAPS.get(key)
    if qmap is None:
        cpu = make_quant_map(dynamic_map(signed))
        qmap = _MAPS[key] = cpu._replace(
            values=cpu.values.to(device),
            boundaries=cpu.boundaries.to(device),
            lut=cpu.lut.to(device),
        )
    return qmap


def _num_blocks(numel: int, block_size: int) -> int:
    return -(-numel // block_size)


def _split_blocks(flat: Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    """The full blocks of a 1-D tensor as a ``(n, block_size)`` view, and the partial tail."""
    full = flat.numel() // block_size * block_size
    return flat[:full].view(-1, block_size), flat[full:]


def _check_layout(codes: Tensor, absmax: Tensor, block_size: int) -> None:
    if codes.dtype not in (torch.int8, torch.uint8):
        raise ValueError(f"codes must be int8 or uint8, got {codes.dtype}")
    want = _num_blocks(codes.numel(), block_size)
    if absmax.dtype != torch.float32 or absmax.shape != (want,):
        raise ValueError(
            f"absmax must be a float32 tensor of shape ({want},) for {codes.numel()} elements "
            f"in blocks of {block_size}, got {absmax.dtype} {tuple(absmax.shape)}; was the "
            "block size changed after the state was created?"
        )


def _nearest(y: Tensor, qmap: QuantMap) -> Tensor:
    """Index of the map value nearest to each element of the 1-D fp32 ``y`` (ties go to the
    smaller value), as int32: what ``torch.bucketize`` on the midpoints gives."""
    idx = torch.index_select(qmap.lut, 0, _bucket(y))
    up = torch.gt(y, torch.index_select(qmap.boundaries, 0, idx + 1)).to(torch.int32)
    down = torch.le(y, torch.index_select(qmap.boundaries, 0, idx)).to(torch.int32)
    return idx.add_(up).sub_(down)


def _normalizers(absmax: Tensor) -> tuple[Tensor, Tensor]:
    """Per block ``(factor, divisor)``: a block is normalized as ``x * factor / divisor``.

    That is ``x * (1 / absmax)`` (one multiply per element, not a division: the fused step
    does the same), except where that reciprocal would lose precision (absmax below 2^-126 or
    above 2^126: ``x / absmax``) and in all-zero or non-finite blocks (absmax 0 or NaN: the
    values as they are). The result is within 1.5 units in the last place of ``x / absmax``.
    """
    scale = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    reciprocal = (scale >= _NORMAL_MIN) & (scale <= 1 / _NORMAL_MIN)
    one = torch.ones_like(scale)
    return torch.where(reciprocal, 1 / scale, one), torch.where(reciprocal, one, scale)


def _codes(y: Tensor, qmap: QuantMap, keep_nonzero: bool) -> Tensor:
    """The map index (int32, 0-255) each element of the 1-D fp32 ``y`` (already divided by
    its block's absmax) is stored as: :func:`_nearest`, and with ``keep_nonzero`` never the
    zero value for a non-zero element."""
    idx = _nearest(y, qmap)
    if keep_nonzero:  # integer max/min: faster than torch.where on CPU
        floor = torch.gt(y, 0).to(torch.int32).mul_(qmap.first_positive)
        idx = torch.maximum(idx, floor)
        if qmap.last_negative >= 0:
            ceiling = torch.lt(y, 0).to(torch.int32).mul_(qmap.last_negative - 255).add_(255)
            idx = torch.minimum(idx, ceiling)
    return idx


def quantize_blockwise_(
    x: Tensor,
    qmap: QuantMap,
    codes: Tensor,
    absmax: Tensor,
    block_size: int,
    *,
    keep_nonzero: bool = False,
) -> None:
    """Quantize ``x`` into ``codes`` (its shape, int8 or uint8) and ``absmax`` (fp32, one per
    block), in place.

    Each element gets the code of the map value nearest to ``x / absmax`` (ties go to the
    smaller value), the quotient computed as ``x * (1 / absmax)`` (see
    :func:`_normalizers`); an all-zero block stays exactly zero. ``keep_nonzero`` never rounds a
    non-zero element to zero but to the smallest non-zero value of its sign: used for Adam's
    second moment, where a zero would turn the step ``m / (sqrt(v) + eps)`` into ``m / eps``.
    A non-finite element makes its own block's absmax non-finite (that block dequantizes to
    non-finite values, as the fp32 state would be); other blocks are unaffected.
    """
    if codes.shape != x.shape:
        raise ValueError(f"codes shape {tuple(codes.shape)} != tensor shape {tuple(x.shape)}")
    _check_layout(codes, absmax, block_size)
    y = x.detach().reshape(-1).to(torch.float32, copy=True)
    body, tail = _split_blocks(y, block_size)
    n_full = body.shape[0]
    if n_full:
        absmax[:n_full] = body.abs().amax(dim=1)
    if tail.numel():
        absmax[n_full] = tail.abs().amax()
    factor, divisor = _normalizers(absmax)
    body.mul_(factor[:n_full, None]).div_(divisor[:n_full, None])
    tail.mul_(factor[n_full:]).div_(divisor[n_full:])
    idx = _codes(y, qmap, keep_nonzero)
    if codes.dtype == torch.int8:
        idx.sub_(128)
    codes.copy_(idx.view(x.shape))


def dequantize_blockwise(codes: Tensor, absmax: Tensor, qmap: QuantMap, block_size: int) -> Tensor:
    """A new fp32 tensor of ``codes``' shape: ``map[code] * absmax`` of each element's block."""
    _check_layout(codes, absmax, block_size)
    idx = codes.reshape(-1).to(torch.int32)
    if codes.dtype == torch.int8:
        idx.add_(128)
    out = torch.index_select(qmap.values, 0, idx)
    body, tail = _split_blocks(out, block_size)
    body.mul_(absmax[: body.shape[0], None])
    tail.mul_(absmax[body.shape[0] :])
    return out.view(codes.shape)


# The fused 8-bit steps (``_native.cpp``) requantize with one lookup per element instead of
# the lookup and two comparisons of :func:`_nearest`: within one bucket of the table the code
# changes at most once (make_quant_map checks that no bucket holds two decision boundaries),
# so a bucket's entry packs the code at its start, the code after the change and the low 15
# bits of the float where the change happens (2^15: never). The table is built from the
# reference quantizer itself (:func:`_codes`), so it gives the same code for every float.

_LOW_BITS = (1 << _LUT_SHIFT) - 1


class PackedMaps(NamedTuple):
    """The tables of the fused 8-bit steps on one device (see :func:`packed_maps`)."""

    #: The signed and unsigned dynamic maps' 256 values (fp32).
    signed_values: Tensor
    unsigned_values: Tensor
    #: :func:`packed_lut` of the signed map, and of the unsigned map with ``keep_nonzero``.
    signed_lut: Tensor
    unsigned_lut: Tensor


_PACKED: dict[torch.device, PackedMaps] = {}


def packed_codes(y: Tensor, table: Tensor) -> Tensor:
    """The map index (int32) of each element of the fp32 ``y`` through a :func:`packed_lut`
    table: one lookup, one comparison."""
    bits = y.reshape(-1).contiguous().view(torch.int32)
    entry = torch.index_select(table, 0, bits.bitwise_right_shift(_LUT_SHIFT) & _LUT_MASK)
    after = torch.ge(bits & _LOW_BITS, entry.bitwise_right_shift(16) & 0xFFFF)
    return torch.where(after, entry.bitwise_right_shift(8) & 0xFF, entry & 0xFF).view(y.shape)


def packed_lut(qmap: QuantMap, keep_nonzero: bool) -> Tensor:
    """A table (int32, 2^17 entries) that gives the codes ``quantize_blockwise_(...,
    keep_nonzero=keep_nonzero)`` stores, for every float, with one lookup (see
    :func:`packed_codes`; indices 0-255, the stored code is the index, minus 128 if signed).

    Entry ``k`` describes the floats whose bits ``>> 15`` are ``k`` (same sign, exponent and
    top 8 mantissa bits): bits 0-7 the code at the bucket's start, bits 8-15 the code from
    the change on, bits 16-31 the low 15 bits where it changes (2^15: it does not).

    The codes grow with the value and change only at the decision boundaries (and, with
    ``keep_nonzero``, right after ±0), so a bucket holding at most one of these changes its
    code at most once: a RuntimeError if one holds two (make_quant_map rules that out for
    the boundaries). The infinities' and NaNs' buckets hold ``_codes``' fixed results.
    """
    qmap = qmap._replace(
        values=qmap.values.cpu(), boundaries=qmap.boundaries.cpu(), lut=qmap.lut.cpu()
    )
    mids = qmap.boundaries[1:-1]
    mids = mids[torch.cat([torch.ones(1, dtype=torch.bool), mids[1:] != mids[:-1]])]
    changes = _bucket(mids).long()
    if keep_nonzero:  # +0 and -0 start their buckets
        changes = torch.cat([changes, torch.tensor([0, 1 << 16])])
    if int(torch.bincount(changes).max()) > 1:
        raise RuntimeError("quantization map: a lookup bucket holds two of its code's changes")
    buckets = torch.arange(_LUT_MASK + 1, dtype=torch.int64) << _LUT_SHIFT

    def floats(low: Tensor, where: Tensor = buckets) -> Tensor:
        raw = where | low
        return torch.where(raw >= 2**31, raw - 2**32, raw).to(torch.int32).view(torch.float32)

    def codes_at(low: Tensor, where: Tensor = buckets) -> Tensor:
        # what an 8-bit code stores (-inf, which no block's normalized values hold, gives -1)
        return _codes(floats(low, where), qmap, keep_nonzero) & 0xFF

    first = codes_at(torch.zeros_like(buckets))
    last = codes_at(torch.full_like(buckets, _LOW_BITS))
    change = torch.full_like(buckets, 1 << _LUT_SHIFT)
    # bisection, in the buckets whose code changes, for the first low bits that change it
    moving = (last != first).nonzero().flatten()
    lo, hi = torch.zeros_like(moving), torch.full_like(moving, _LOW_BITS)
    for _ in range(_LUT_SHIFT):
        mid = (lo + hi) // 2
        moved = codes_at(mid, buckets[moving]) != first[moving]
        hi = torch.where(moved, mid, hi)
        lo = torch.where(moved, lo, mid)
    change[moving] = hi
    packed = first.long() | (last.long() << 8) | (change << 16)
    table = torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)
    # the bucket's first and last floats, and both sides of each change, give the reference codes
    probes = [torch.zeros_like(buckets), torch.full_like(buckets, _LOW_BITS)]
    inside = change <= _LOW_BITS
    probes += [torch.where(inside, change, 0), torch.where(inside, change - 1, 0).clamp(min=0)]
    for low in probes:
        if not torch.equal(packed_codes(floats(low), table), codes_at(low)):
            raise RuntimeError("quantization map: the packed table differs from the codes")
    return table


def packed_maps(device: torch.device) -> PackedMaps:
    """The dynamic maps' values and :func:`packed_lut` tables on ``device``, built once."""
    maps = _PACKED.get(device)
    if maps is None:
        signed, unsigned = quant_map(True, device), quant_map(False, device)
        maps = _PACKED[device] = PackedMaps(
            signed_values=signed.values,
            unsigned_values=unsigned.values,
            signed_lut=packed_lut(signed, keep_nonzero=False).to(device),
            unsigned_lut=packed_lut(unsigned, keep_nonzero=True).to(device),
        )
    return maps


# The 8-bit updates are AdamW's and Lion's as adamw_fused and lion_fused write them (plain fp32
# operations in a fixed order, no fused multiply-add; AdamW multiplies by 1 / sqrt(1 - b2^t)
# instead of dividing by its inverse), on the dequantized moments, so that the fused 8-bit
# steps reproduce them bit for bit. These give their hyperparameters, computed on the host.


def adamw8bit_hparams(
    *, lr: float, beta1: float, beta2: float, eps: float, weight_decay: float, step: int
) -> dict[str, float]:
    """The numbers of the 8-bit AdamW update for step ``step`` (counted from 1)."""
    return {
        "decay": 1 - lr * weight_decay,
        "weight1": 1 - beta1,
        "beta2": beta2,
        "weight2": 1 - beta2,
        "inv_bias2_sqrt": 1 / (1 - beta2**step) ** 0.5,
        "eps": eps,
        "neg_step_size": -lr / (1 - beta1**step),
    }


def lion8bit_hparams(
    *, lr: float, beta1: float, beta2: float, weight_decay: float
) -> dict[str, float]:
    """The numbers of the 8-bit Lion update (the keyword arguments of :func:`lion_fused`
    other than ``sign``)."""
    return {
        "decay": 1 - lr * weight_decay,
        "neg_lr": -lr,
        "weight1": 1 - beta1,
        "weight2": 1 - beta2,
    }


def _sqrt_rn(x: Tensor) -> Tensor:
    """The square root rounded to nearest, as IEEE 754 defines it (and the fused 8-bit step
    computes it): torch's CPU float32 sqrt (MKL's vector sqrt) is one unit in the last place
    off for about 0.6% of inputs; through float64 the result is exact (the float64 root lies
    far closer to the true root than any float32 rounding boundary). CUDA's float32 sqrt is
    correctly rounded already."""
    if x.dtype == torch.float32 and x.device.type == "cpu":
        return x.double().sqrt_().to(torch.float32)
    return x.sqrt()


def _adamw_dequantized_(
    param: Tensor, grad: Tensor, m: Tensor, v: Tensor, s: dict[str, Tensor], maximize: bool
) -> None:
    """The 8-bit AdamW update of one tensor on its dequantized moments: :func:`adamw_fused`'s
    operations with ``sqrt(v) * inv_bias2_sqrt`` and a correctly rounded square root."""
    g = -grad if maximize else grad
    param.mul_(s["decay"])
    m.add_(s["weight1"] * (g - m))
    v.mul_(s["beta2"]).add_(s["weight2"] * g * g)
    param.add_(s["neg_step_size"] * m / (_sqrt_rn(v) * s["inv_bias2_sqrt"] + s["eps"]))


def _scalars(hparams: dict[str, float], dtype: torch.dtype) -> dict[str, Tensor]:
    """0-dim CPU tensors in the dtype torch computes ``dtype`` parameters in (float64 for
    float64, else float32: what a Python number becomes in their ops)."""
    opmath = torch.float64 if dtype == torch.float64 else torch.float32
    return {k: torch.tensor(v, dtype=opmath) for k, v in hparams.items()}


# Under torch.compile the 8-bit kernels run eagerly (a graph break): Inductor fails on the
# block-wise dequantization of several small tensors (torch 2.13: "pop from empty list"),
# and the kernels are the reference the fused C++ path is checked against bit for bit.
@torch.compiler.disable
def adamw8bit_single_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avg_codes: list[Tensor],
    exp_avg_absmax: list[Tensor],
    exp_avg_sq_codes: list[Tensor],
    exp_avg_sq_absmax: list[Tensor],
    steps: list[int],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
    block_size: int,
) -> None:
    """One AdamW step per tensor on block-wise 8-bit moments: dequantize the moments to fp32,
    update as :func:`adamw_fused` (uncompiled; see :func:`adamw8bit_hparams`),
    requantize (signed dynamic map for ``m``, unsigned with ``keep_nonzero`` for ``v``). One
    tensor's fp32 moments exist at a time."""
    for i, param in enumerate(params):
        signed, unsigned = quant_map(True, param.device), quant_map(False, param.device)
        m = dequantize_blockwise(exp_avg_codes[i], exp_avg_absmax[i], signed, block_size)
        v = dequantize_blockwise(exp_avg_sq_codes[i], exp_avg_sq_absmax[i], unsigned, block_size)
        hp = adamw8bit_hparams(
            lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay, step=steps[i]
        )
        _adamw_dequantized_(
            param, grads[i].to(torch.float32), m, v, _scalars(hp, param.dtype), maximize
        )
        quantize_blockwise_(m, signed, exp_avg_codes[i], exp_avg_absmax[i], block_size)
        quantize_blockwise_(
            v, unsigned, exp_avg_sq_codes[i], exp_avg_sq_absmax[i], block_size, keep_nonzero=True
        )


@torch.compiler.disable
def lion8bit_single_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avg_codes: list[Tensor],
    exp_avg_absmax: list[Tensor],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    weight_decay: float,
    maximize: bool,
    block_size: int,
) -> None:
    """One Lion step per tensor on a block-wise 8-bit momentum (signed dynamic map):
    dequantize, update with :func:`lion_fused` (uncompiled), requantize."""
    hp = lion8bit_hparams(lr=lr, beta1=beta1, beta2=beta2, weight_decay=weight_decay)
    for i, param in enumerate(params):
        signed = quant_map(True, param.device)
        m = dequantize_blockwise(exp_avg_codes[i], exp_avg_absmax[i], signed, block_size)
        lion_fused(
            [param], [grads[i].to(torch.float32)], [m],
            **_scalars({**hp, "sign": -1.0 if maximize else 1.0}, param.dtype),
        )  # fmt: skip
        quantize_blockwise_(m, signed, exp_avg_codes[i], exp_avg_absmax[i], block_size)
