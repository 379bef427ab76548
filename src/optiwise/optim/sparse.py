"""SparseAdam on a model's sparse embedding tables, AdamW on everything else."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from optiwise.optim._validation import validate_hparams
from optiwise.optim.multi import MultiOptimizer, split_param_groups

__all__ = ["SparseAdamAdamW", "sparse_tables"]


def sparse_tables(model: nn.Module) -> set[int]:
    """``id`` of every weight of an ``nn.Embedding`` / ``nn.EmbeddingBag`` built with
    ``sparse=True``: the tensors whose gradients are sparse."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"sparse_tables needs an nn.Module, got {type(model).__name__}")
    return {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse
    }


class SparseAdamAdamW(MultiOptimizer):
    """``torch.optim.SparseAdam`` on the sparse embedding tables, ``torch.optim.AdamW`` on
    the rest, as one optimizer with one LR.

    Dense optimizers refuse the sparse gradients of ``nn.Embedding(sparse=True)`` and
    ``nn.EmbeddingBag(sparse=True)``, and SparseAdam refuses dense ones; recommenders with
    large sparse tables need both.  SparseAdam updates the moments of the looked-up rows only
    (lazy Adam) and has no weight decay; AdamW's decoupled ``weight_decay`` applies to the
    dense part as each param group says.

    The children are ``"sparse_adam"`` and ``"adamw"`` (either is left out when it gets no
    parameter); see :class:`~optiwise.optim.multi.MultiOptimizer` for ``param_groups``,
    ``state`` and ``state_dict``.  Each param group given is split in two, keeping its keys.

    Parameters
    ----------
    params:
        Parameters or param-group dicts (as :func:`optiwise.param_groups` returns).
    lr, betas, eps:
        Shared by both parts.
    weight_decay:
        AdamW's decoupled weight decay (the sparse tables get none).
    model:
        The model the parameters belong to; the sparse tables are found by module type
        (:func:`sparse_tables`).  Without it, tensors are split by whether they already hold
        a sparse gradient, which needs a backward pass first: pass ``model``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        model: nn.Module | None = None,
    ) -> None:
        validate_hparams({"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        if model is None:
            raise ValueError(
                "SparseAdamAdamW needs model= to find the sparse embedding tables "
                "(nn.Embedding/EmbeddingBag with sparse=True)"
            )
        sparse = sparse_tables(model)
        sparse_groups, dense_groups = split_param_groups(
            params, lambda p: id(p) in sparse, "SparseAdamAdamW"
        )
        children: dict[str, Optimizer] = {}
        if sparse_groups:
            for g in sparse_groups:
                g["weight_decay"] = 0.0  # SparseAdam has none: say so in the group
            children["sparse_adam"] = torch.optim.SparseAdam(
                sparse_groups, lr=lr, betas=betas, eps=eps
            )
        if dense_groups:
            children["adamw"] = torch.optim.AdamW(
                dense_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay
            )
        super().__init__(children)
        self.defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
