from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import optiwise
from optiwise.optim.sparse import SparseAdamAdamW, sparse_tables


class Recommender(nn.Module):
    """Two sparse tables (one an EmbeddingBag), a dense embedding and an MLP tower."""

    def __init__(self) -> None:
        super().__init__()
        self.users = nn.Embedding(50, 8, sparse=True)
        self.items = nn.EmbeddingBag(60, 8, mode="sum", sparse=True)
        self.dense_emb = nn.Embedding(5, 8)
        self.tower = nn.Sequential(nn.Linear(24, 16), nn.ReLU(), nn.Linear(16, 1))

    def forward(self, users: torch.Tensor, items: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.users(users), self.items(items), self.dense_emb(ctx)], dim=1)
        return self.tower(x).squeeze(1)


def _batch(seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randint(0, 50, (16,), generator=g),
        torch.randint(0, 60, (16, 3), generator=g),
        torch.randint(0, 5, (16,), generator=g),
    )


def _loss(model: nn.Module, seed: int) -> torch.Tensor:
    return model(*_batch(seed)).pow(2).mean()


def test_sparse_tables_found_by_module_type() -> None:
    model = Recommender()
    assert sparse_tables(model) == {id(model.users.weight), id(model.items.weight)}
    with pytest.raises(TypeError, match=r"nn\.Module"):
        sparse_tables([1])  # type: ignore[arg-type]


def test_matches_sparse_adam_and_adamw_run_separately() -> None:
    torch.manual_seed(0)
    model = Recommender()
    reference = copy.deepcopy(model)
    opt = SparseAdamAdamW(model.parameters(), lr=1e-2, weight_decay=0.1, model=model)
    assert set(opt.optimizers) == {"sparse_adam", "adamw"}
    sparse_ref = torch.optim.SparseAdam([reference.users.weight, reference.items.weight], lr=1e-2)
    dense_ref = torch.optim.AdamW(
        [p for n, p in reference.named_parameters() if not n.startswith(("users", "items"))],
        lr=1e-2,
        weight_decay=0.1,
    )
    for step in range(3):
        opt.zero_grad()
        _loss(model, step).backward()
        opt.step()
        sparse_ref.zero_grad()
        dense_ref.zero_grad()
        _loss(reference, step).backward()
        sparse_ref.step()
        dense_ref.step()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)


def test_dense_adamw_alone_refuses_sparse_gradients() -> None:
    # The reason this optimizer exists: the naive recipe crashes at its first step.
    model = Recommender()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    _loss(model, 0).backward()
    with pytest.raises(RuntimeError, match=r"(?i)sparse"):
        opt.step()


def test_registry_builds_it_with_param_groups_and_resumes() -> None:
    torch.manual_seed(0)
    model = Recommender()
    opt = optiwise.create_optimizer("sparse_adam_adamw", model, task="recommendation")
    assert isinstance(opt, SparseAdamAdamW)
    sparse_ids = {id(p) for g in opt.optimizers["sparse_adam"].param_groups for p in g["params"]}
    assert sparse_ids == sparse_tables(model)
    for g in opt.optimizers["sparse_adam"].param_groups:
        assert g["weight_decay"] == 0.0
    _loss(model, 0).backward()
    opt.step()
    twin = copy.deepcopy(model)
    twin_opt = optiwise.create_optimizer("sparse_adam_adamw", twin, task="recommendation")
    twin_opt.load_state_dict(copy.deepcopy(opt.state_dict()))
    for m, o in ((model, opt), (twin, twin_opt)):
        o.zero_grad()
        _loss(m, 1).backward()
        o.step()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_bad_input() -> None:
    model = Recommender()
    with pytest.raises(ValueError, match="needs model="):
        SparseAdamAdamW(model.parameters())
    with pytest.raises(ValueError, match="Invalid learning rate"):
        SparseAdamAdamW(model.parameters(), lr=-1.0, model=model)
    with pytest.raises(ValueError, match="empty parameter list"):
        SparseAdamAdamW([], model=model)
