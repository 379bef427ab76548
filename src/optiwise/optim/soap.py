"""SOAP: Adam in the eigenbasis of Shampoo's preconditioner (Vyas et al. 2024)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optiwise.optim import _dtensor
from optiwise.optim._base import OptiwiseOptimizer, StateKind
from optiwise.optim._validation import check_range, validate_hparams

__all__ = ["SOAP", "soap_init_single_tensor", "soap_single_tensor"]

#: A per-dimension factor (L, R, ... or their eigenbases); ``[]`` where a dimension is left
#: unrotated (larger than ``max_precond_dim``, or a 1-D tensor without ``precondition_1d``).
Factors = list[Any]


def _kept(mats: Factors) -> Iterable[tuple[int, Tensor]]:
    return ((i, m) for i, m in enumerate(mats) if isinstance(m, Tensor))


def _project(x: Tensor, bases: Factors, *, back: bool = False) -> Tensor:
    """``x`` in the eigenbases (``Q_L^T X Q_R`` for a matrix) or, with ``back``, out of them
    (``Q_L X Q_R^T``): one contraction per dimension, cycling the dimensions."""
    for q in bases:
        if isinstance(q, Tensor):
            x = torch.tensordot(x, q, dims=[[0], [1 if back else 0]])
        else:
            x = x.permute([*range(1, x.dim()), 0])
    return x


def _accumulate(grad: Tensor, factors: Factors, beta: float) -> None:
    """``L = beta L + (1 - beta) G G^T`` per dimension (``G^T G`` for the second, ...)."""
    if grad.dim() == 1:
        for _, f in _kept(factors):
            f.lerp_((grad.unsqueeze(1) @ grad.unsqueeze(0)).to(f.dtype), 1 - beta)
        return
    for i, f in _kept(factors):
        others = [*itertools.chain(range(i), range(i + 1, grad.dim()))]
        f.lerp_(torch.tensordot(grad, grad, dims=[others, others]).to(f.dtype), 1 - beta)


def _eigenbases(factors: Factors) -> Factors:
    """Eigenvectors of each factor, by descending eigenvalue."""
    out: Factors = []
    for f in factors:
        if not isinstance(f, Tensor):
            out.append([])
            continue
        eye = torch.eye(f.shape[0], device=f.device, dtype=f.dtype)
        _, q = torch.linalg.eigh(f + 1e-30 * eye)
        out.append(torch.flip(q, dims=[1]))
    return out


def _power_step(factors: Factors, bases: Factors, exp_avg_sq: Tensor) -> tuple[Factors, Tensor]:
    """One power iteration and QR per factor (Vyas et al. 2024, Algorithm 4): the new bases,
    ordered by the estimated eigenvalues, and ``exp_avg_sq`` re-ordered to follow them."""
    out: Factors = []
    for i, f in enumerate(factors):
        q = bases[i]
        if not isinstance(f, Tensor) or not isinstance(q, Tensor):
            out.append([])
            continue
        product = f @ q
        order = torch.argsort((q * product).sum(dim=0), descending=True)
        exp_avg_sq = exp_avg_sq.index_select(i, order)
        power = product.index_select(1, order)
        # QR has no half-precision kernels; float64 stays float64
        wide = power.float() if power.dtype in (torch.float16, torch.bfloat16) else power
        out.append(torch.linalg.qr(wide)[0].to(power.dtype))
    return out, exp_avg_sq


def soap_init_single_tensor(
    grads: list[Tensor],
    states: list[dict[str, Any]],
    *,
    shampoo_beta: float,
    max_precond_dim: int,
    precondition_1d: bool,
) -> None:
    """A tensor's first gradient: zero moments, the factors from it and their eigenbases
    (no update: the projection never uses the gradient that built it)."""
    for g, state in zip(grads, states, strict=True):
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(g)
        state["exp_avg_sq"] = torch.zeros_like(g)
        rotate = g.dim() > 1 or precondition_1d
        state["GG"] = [
            torch.zeros(n, n, device=g.device, dtype=g.dtype)
            if rotate and n <= max_precond_dim
            else []
            for n in g.shape
        ]
        _accumulate(g, state["GG"], shampoo_beta)
        state["Q"] = _eigenbases(state["GG"])


def soap_single_tensor(
    params: list[Tensor],
    grads: list[Tensor],
    states: list[dict[str, Any]],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    shampoo_beta: float,
    eps: float,
    weight_decay: float,
    precondition_frequency: int,
    correct_bias: bool,
    normalize_grads: bool,
) -> None:
    """One SOAP step per tensor (its state already initialised)."""
    for p, g, state in zip(params, grads, states, strict=True):
        state["step"] += 1
        t = state["step"]
        bases = state["Q"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        projected = _project(g, bases)
        exp_avg.lerp_(g, 1 - beta1)
        exp_avg_sq.lerp_(projected.square(), 1 - beta2)
        denom = exp_avg_sq.sqrt().add_(eps)
        update = _project(_project(exp_avg, bases) / denom, bases, back=True)
        if normalize_grads:
            update.div_(update.square().mean().sqrt_().add_(eps))
        step_size = lr
        if correct_bias:
            step_size *= math.sqrt(1 - math.pow(beta2, t)) / (1 - math.pow(beta1, t))
        p.add_(update, alpha=-step_size)
        if weight_decay != 0:
            p.mul_(1 - weight_decay * lr)
        _accumulate(g, state["GG"], shampoo_beta)
        if t % precondition_frequency == 0:
            state["Q"], state["exp_avg_sq"] = _power_step(state["GG"], bases, exp_avg_sq)


class SOAP(OptiwiseOptimizer):
    """SOAP (Vyas et al. 2024, 'SOAP: Improving and Stabilizing Shampoo using Adam'):
    Adam run in the eigenbasis of Shampoo's preconditioner, refreshed every few steps.

    For a matrix ``W`` with gradient ``G`` (each dimension of an n-D tensor has its own
    factor; 1-D tensors, and dimensions above ``max_precond_dim``, stay unrotated)::

        G' = Q_L^T G Q_R                        M = beta1 M + (1 - beta1) G
        V = beta2 V + (1 - beta2) G'^2          N = Q_L (Q_L^T M Q_R / (sqrt(V) + eps)) Q_R^T
        W = W - lr_t N,  then  W = W (1 - lr weight_decay)
        L = b L + (1 - b) G G^T,  R = b R + (1 - b) G^T G     (b = shampoo_beta)
        every precondition_frequency steps: Q_L = QR(L Q_L), Q_R = QR(R Q_R)

    with ``lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t)``. The first gradient only builds
    ``L``, ``R`` and their eigenvectors (``eigh``); the power-iteration refresh orders the new
    bases by estimated eigenvalue and re-orders ``V`` with them. As the authors' code
    (without ``merge_dims``): identical to ``pytorch_optimizer.SOAP``, a port of it.

    Parameters
    ----------
    params:
        Parameters or param-group dicts.
    lr:
        Learning rate (> 0).
    betas:
        Adam's ``(beta1, beta2)`` in [0, 1).
    shampoo_beta:
        Decay of the factors ``L``, ``R`` in [0, 1); ``None`` is ``beta2``.
    eps:
        Added to ``sqrt(V)``.
    weight_decay:
        Decoupled weight decay (>= 0), applied after the update.
    precondition_frequency:
        Steps between eigenbasis refreshes (an int >= 1).
    max_precond_dim:
        Dimensions larger than this are not rotated (their factor would cost n^2).
    precondition_1d:
        Rotate 1-D tensors too (a full n x n factor each).
    correct_bias:
        Adam's bias correction of the step.
    normalize_grads:
        Divide each update by its RMS.
    maximize:
        Maximize the objective.

    State
    -----
    ``exp_avg`` (in the parameter's space), ``exp_avg_sq`` (in the rotated space), ``GG``
    (the factors, one per dimension or ``[]``), ``Q`` (their eigenbases) and ``step``
    (updates done; the first gradient makes none).
    """

    state_keys: ClassVar[Mapping[str, StateKind]] = {
        "step": "scalar",
        "exp_avg": "param",
        "exp_avg_sq": "param",
        "GG": "any",
        "Q": "any",
    }
    counter_types: ClassVar[Mapping[str, type]] = {"step": int}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 3e-3,
        betas: tuple[float, float] = (0.95, 0.95),
        shampoo_beta: float | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.01,
        precondition_frequency: int = 10,
        max_precond_dim: int = 10000,
        precondition_1d: bool = False,
        correct_bias: bool = True,
        normalize_grads: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        validate_hparams({"lr": lr, "betas": betas, "weight_decay": weight_decay, "eps": eps})
        if shampoo_beta is not None:
            check_range("shampoo_beta", shampoo_beta, 0.0, 1.0)
        for label, value in (
            ("precondition_frequency", precondition_frequency),
            ("max_precond_dim", max_precond_dim),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Invalid {label}: {value!r} (must be an integer >= 1)")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            shampoo_beta=shampoo_beta,
            eps=eps,
            weight_decay=weight_decay,
            precondition_frequency=precondition_frequency,
            max_precond_dim=max_precond_dim,
            precondition_1d=precondition_1d,
            correct_bias=correct_bias,
            normalize_grads=normalize_grads,
            maximize=maximize,
        )
        super().__init__(params, defaults)
        if any(_dtensor.any_dtensor(g["params"]) for g in self.param_groups):
            raise ValueError(
                "SOAP does not support DTensor parameters (FSDP2 fully_shard, tensor "
                "parallelism): its preconditioner takes eigenvectors of whole matrices, and "
                "each rank holds a shard; train under DDP, or pick an elementwise optimizer "
                "(adamw, lion, lamb, adamw8bit) for FSDP2"
            )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; ``closure`` re-evaluates the loss."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            params, grads = self._params_with_grads(group)
            self._refuse_complex(params, "its preconditioner's eigenbasis is real")
            if group["maximize"]:
                grads = [-g for g in grads]
            beta1, beta2 = group["betas"]
            shampoo_beta = beta2 if group["shampoo_beta"] is None else group["shampoo_beta"]
            new = [i for i, p in enumerate(params) if "step" not in self.state[p]]
            soap_init_single_tensor(
                [grads[i] for i in new], [self.state[params[i]] for i in new],
                shampoo_beta=shampoo_beta, max_precond_dim=group["max_precond_dim"],
                precondition_1d=group["precondition_1d"],
            )  # fmt: skip
            skip = set(new)
            keep = [i for i in range(len(params)) if i not in skip]
            soap_single_tensor(
                [params[i] for i in keep], [grads[i] for i in keep],
                [self.state[params[i]] for i in keep], lr=float(group["lr"]), beta1=beta1,
                beta2=beta2, shampoo_beta=shampoo_beta, eps=group["eps"],
                weight_decay=group["weight_decay"],
                precondition_frequency=group["precondition_frequency"],
                correct_bias=group["correct_bias"], normalize_grads=group["normalize_grads"],
            )  # fmt: skip
        return loss

    def _check_param_state(self, index: int, param: Tensor, state: Mapping[str, Any]) -> None:
        super()._check_param_state(index, param, state)
        for key in ("GG", "Q"):
            mats = state.get(key)
            if mats is None:
                continue
            sizes = param.shape if param.dim() > 1 else param.shape[:1]
            ok = isinstance(mats, (list, tuple)) and len(mats) == len(sizes)
            ok = ok and all(
                (isinstance(m, Tensor) and m.shape == (n, n)) or (not isinstance(m, Tensor))
                for m, n in zip(mats, sizes, strict=False)
            )
            if not ok:
                raise ValueError(
                    f"cannot load state dict into SOAP: state {key!r} of parameter #{index} "
                    f"does not fit a parameter of shape {tuple(param.shape)} (one n x n "
                    "factor per dimension)"
                )
