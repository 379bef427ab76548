"""Muon for a whole model: hidden matrices to ``torch.optim.Muon``, the rest to AdamW."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from optiwise.optim import _dtensor
from optiwise.optim._validation import validate_hparams
from optiwise.optim.multi import MultiOptimizer, split_param_groups
from optiwise.params import _EMBEDDING_TYPES, _WEIGHT_LAYER_TYPES, _owners

__all__ = ["MuonAdamW", "hidden_matrices"]

#: Decides whether ``param``, owned by ``module`` as ``attribute``, is a hidden matrix.
HiddenRule = Callable[[nn.Module, str, Tensor], bool]

# Keller Jordan's quintic Newton-Schulz coefficients, torch.optim.Muon's defaults.
_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def hidden_matrices(model: nn.Module, rule: HiddenRule | None = None) -> set[int]:
    """``id`` of every parameter of ``model`` that Muon should train: a hidden matrix.

    By default (decided by module type and shape, as :mod:`optiwise.params` decides weight
    decay): a 2-D weight of a standard weight layer (Linear, MultiheadAttention, RNN, ...)
    that no embedding shares (tied output heads stay out) and that is not the output head,
    the last Linear in the model's module order. Embeddings, norms, biases, class and
    position tokens, convolution filters (4-D; ``torch.optim.Muon`` takes 2-D only) and the
    head go to AdamW. ``rule(module, attribute, param) -> bool`` replaces the default.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"hidden_matrices needs an nn.Module, got {type(model).__name__}")
    owners = _owners(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    head = {id(p) for p in linears[-1].parameters(recurse=False)} if linears else set()
    hidden: set[int] = set()
    for _, p in model.named_parameters():
        uses = owners[id(p)]
        if rule is not None:
            chosen = all(rule(module, attr, p) for _, module, attr in uses)
        else:
            chosen = (
                p.ndim == 2
                and id(p) not in head
                and all(isinstance(m, _WEIGHT_LAYER_TYPES) for _, m, _ in uses)
                and not any(isinstance(m, _EMBEDDING_TYPES) for _, m, _ in uses)
            )
        if chosen:
            if p.ndim != 2:
                raise ValueError(
                    f"the hidden rule chose a parameter of shape {tuple(p.shape)}; "
                    "torch.optim.Muon takes 2-D matrices only"
                )
            hidden.add(id(p))
    return hidden


class MuonAdamW(MultiOptimizer):
    """Muon on a model's hidden matrices and AdamW on everything else, as one optimizer,
    with Muon's update scaled to AdamW's RMS so that AdamW's LR and weight decay transfer.

    Muon (Jordan et al. 2024, 'Muon: An optimizer for hidden layers in neural networks')
    orthogonalizes each hidden matrix's momentum; with ``adjust_lr_fn="match_rms_adamw"``
    (Liu et al. 2025, 'Muon is Scalable for LLM Training') the step of an ``A x B`` matrix
    is, per torch.optim.Muon::

        B_t = momentum * B_{t-1} + (1 - momentum) * g          (an EMA, as torch's code)
        U = NS5(g + momentum * (B_t - g))   (Nesterov; NS5: 5 Newton-Schulz iterations)
        W = W * (1 - lr * weight_decay) - lr * 0.2 * sqrt(max(A, B)) * U

    The orthogonal ``U`` has an RMS of about ``1 / sqrt(max(A, B))``, so the scaled update
    has an RMS of about 0.2, that of a typical AdamW update: one LR and one weight decay for
    both parts. Embeddings, the output head, norms, biases and convolution filters get
    ``torch.optim.AdamW`` with the same ``lr`` and ``weight_decay`` (see
    :func:`hidden_matrices`).

    The children are ``torch.optim.Muon`` (``"muon"``) and ``torch.optim.AdamW``
    (``"adamw"``), both unchanged; see :class:`~optiwise.optim.multi.MultiOptimizer` for
    ``param_groups``, ``state`` and ``state_dict``. Each param group given is split in two,
    keeping its keys (``lr``, ``weight_decay``, ``param_names``, ...). ``maximize`` is not
    offered: torch's Muon has none.

    Parameters
    ----------
    params:
        Parameters or param-group dicts (as :func:`optiwise.param_groups` returns).
    lr, weight_decay:
        AdamW's LR and decoupled weight decay, used by both parts.
    momentum, nesterov, ns_steps, ns_coefficients, muon_eps:
        Muon's momentum, Nesterov switch, Newton-Schulz iterations and coefficients, and
        the epsilon of its normalisation.
    betas, eps, foreach:
        AdamW's.
    adjust_lr_fn:
        ``"match_rms_adamw"`` (default) or ``"original"`` (Jordan's
        ``sqrt(max(1, A/B))``, whose LRs are ~0.02, not AdamW's).
    model:
        The model the parameters belong to: hidden matrices are found by module type and
        shape. Without it every 2-D tensor goes to Muon, embeddings and the head included.
    hidden:
        ``(module, attribute, param) -> bool`` choosing the Muon parameters instead of the
        default rule (needs ``model``).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        weight_decay: float = 0.01,
        *,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        ns_coefficients: tuple[float, float, float] = _NS_COEFFICIENTS,
        muon_eps: float = 1e-7,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        adjust_lr_fn: str = "match_rms_adamw",
        foreach: bool | None = None,
        model: nn.Module | None = None,
        hidden: HiddenRule | None = None,
    ) -> None:
        validate_hparams(
            {
                "lr": lr,
                "betas": betas,
                "weight_decay": weight_decay,
                "eps": eps,
                "momentum": momentum,
            }
        )
        if adjust_lr_fn not in ("match_rms_adamw", "original"):
            raise ValueError(
                f"Invalid adjust_lr_fn: {adjust_lr_fn!r} (use 'match_rms_adamw' to reuse "
                "AdamW's LR and weight decay, or 'original' for Muon's own LR scale)"
            )
        if hidden is not None and model is None:
            raise ValueError("hidden= needs model=: the rule is applied to the model's modules")
        chosen = hidden_matrices(model, hidden) if model is not None else None
        muon_groups, adamw_groups = split_param_groups(
            params,
            (lambda p: p.ndim == 2) if chosen is None else (lambda p: id(p) in chosen),
            "MuonAdamW",
        )
        children: dict[str, Optimizer] = {}
        if any(_dtensor.any_dtensor(g["params"]) for g in muon_groups):
            raise ValueError(
                "MuonAdamW does not support DTensor parameters (FSDP2 fully_shard, tensor "
                "parallelism): torch.optim.Muon orthogonalizes whole matrices, and each rank "
                "holds a shard; train under DDP, or pick an elementwise optimizer (adamw, "
                "lion, lamb, adamw8bit) for FSDP2"
            )
        if muon_groups:
            children["muon"] = torch.optim.Muon(
                muon_groups,
                lr=lr,  # type: ignore[arg-type]  # torch's Muon steps with a tensor LR too
                weight_decay=weight_decay,
                momentum=momentum,
                nesterov=nesterov,
                ns_coefficients=ns_coefficients,
                eps=muon_eps,
                ns_steps=ns_steps,
                adjust_lr_fn=adjust_lr_fn,
            )
        if adamw_groups:
            children["adamw"] = torch.optim.AdamW(
                adamw_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                foreach=foreach,
            )  # fmt: skip
        super().__init__(children)
        self.defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            ns_coefficients=ns_coefficients,
            muon_eps=muon_eps,
            betas=tuple(betas),
            eps=eps,
            adjust_lr_fn=adjust_lr_fn,
            foreach=foreach,
        )
