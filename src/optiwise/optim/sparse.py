"""SparseAdam on a model's sparse embedding tables, AdamW on everything else."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from optiwise.optim._validation import validate_hparams
from optiwise.optim.multi import MultiOptimizer

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
        items = list(params)
        if not items:
            raise ValueError("SparseAdamAdamW got an empty parameter list")
        groups = items if isinstance(items[0], dict) else [{"params": items}]
        sparse = sparse_tables(model)
        sparse_groups: list[dict[str, Any]] = []
        dense_groups: list[dict[str, Any]] = []
        for group in groups:
            to_sparse, to_dense = self._split(group, sparse)
            sparse_groups += to_sparse
            dense_groups += to_dense
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

    @staticmethod
    def _split(
        group: dict[str, Any], sparse: set[int]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``group`` as (its sparse part, its dense part), each a list of 0 or 1 groups."""
        raw = group["params"]
        params = [raw] if isinstance(raw, Tensor) else list(raw)
        names = group.get("param_names")
        aligned = isinstance(names, list) and len(names) == len(params)
        extra = {k: v for k, v in group.items() if k not in ("params", "param_names")}
        parts: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
        for to_sparse, out in ((True, parts[0]), (False, parts[1])):
            picked = [i for i, p in enumerate(params) if (id(p) in sparse) == to_sparse]
            if not picked:
                continue
            part = {**extra, "params": [params[i] for i in picked]}
            if aligned:
                part["param_names"] = [names[i] for i in picked]  # type: ignore[index]
            out.append(part)
        return parts
