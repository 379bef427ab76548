"""Every optimizer in tests/optim/cases.py behaves like torch's own (DESIGN.md conventions):
closure, maximize, foreach == per-tensor, params without grads skipped, sparse gradients
refused, param groups independent, state_dict resume bit-for-bit, bad loads rejected."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from tests.optim.cases import CASES, Case

IDS = [c.name for c in CASES]


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )


TEACHER = torch.randn(6, 3, generator=torch.Generator().manual_seed(7))


def batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A learnable task: labels from a fixed linear teacher."""
    x = torch.randn(32, 6, generator=torch.Generator().manual_seed(1000 + i))
    return x, (x @ TEACHER).argmax(dim=1)


def loss_of(model: nn.Module, i: int, sign: float = 1.0) -> torch.Tensor:
    x, y = batch(i)
    return sign * nn.functional.cross_entropy(model(x), y)


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: range, sign: float = 1.0) -> None:
    for i in steps:
        opt.zero_grad(set_to_none=True)
        loss_of(model, i, sign).backward()
        opt.step()


def same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.fixture(params=CASES, ids=IDS)
def case(request: pytest.FixtureRequest) -> Case:
    return request.param


def test_trains_and_changes_parameters(case: Case) -> None:
    model = mlp()
    start = copy.deepcopy(model)
    opt = case.make(model.parameters())
    first = loss_of(model, 0).item()
    train(model, opt, range(30))
    assert not same(model, start)
    assert loss_of(model, 0).item() < first


def test_closure_is_called_once_with_grad_and_its_loss_returned(case: Case) -> None:
    model = mlp()
    opt = case.make(model.parameters())
    calls = []

    def closure() -> torch.Tensor:
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = loss_of(model, 0)
        loss.backward()
        return loss

    out = opt.step(closure)
    assert calls == [True]
    assert isinstance(out, torch.Tensor) and out.item() == pytest.approx(loss_of(mlp(), 0).item())


def test_params_without_grad_are_skipped(case: Case) -> None:
    model = mlp()
    frozen = model[0].weight
    opt = case.make(model.parameters())
    before = frozen.detach().clone()
    for i in range(3):
        opt.zero_grad(set_to_none=True)
        loss_of(model, i).backward()
        frozen.grad = None
        opt.step()
    assert torch.equal(frozen, before)
    assert not opt.state.get(frozen)


def test_sparse_gradients_refused(case: Case) -> None:
    emb = nn.Embedding(10, 4, sparse=True)
    opt = case.make(emb.parameters())
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises((RuntimeError, ValueError), match=r"(?i)sparse"):
        opt.step()


def test_maximize_equals_minimizing_the_negated_loss(case: Case) -> None:
    if not case.maximize:
        pytest.skip(f"{case.name} has no maximize option")
    a, b = mlp(), mlp()
    train(a, case.make(a.parameters(), maximize=True), range(15), sign=-1.0)
    train(b, case.make(b.parameters()), range(15))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_foreach_and_per_tensor_paths_agree(case: Case) -> None:
    if not case.foreach:
        pytest.skip(f"{case.name} has a single code path")
    a, b = mlp(), mlp()
    train(a, case.make(a.parameters(), foreach=True), range(25))
    train(b, case.make(b.parameters(), foreach=False), range(25))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=case.rtol, atol=case.rtol * 1e-1)


def test_param_groups_behave_as_separate_optimizers(case: Case) -> None:
    if not case.separate_groups:
        pytest.skip(f"{case.name} shares an estimate across its param groups")
    joint = mlp()
    groups = [
        {"params": joint[0].parameters(), "lr": 3e-3},
        {"params": list(joint[2].parameters()) + list(joint[4].parameters())},
    ]
    opt = case.make(groups)
    assert opt.param_groups[0]["lr"] == 3e-3 and opt.param_groups[1]["lr"] != 3e-3
    split = mlp()
    first = case.make(split[0].parameters(), lr=3e-3)
    second = case.make(list(split[2].parameters()) + list(split[4].parameters()))
    for i in range(15):
        for o in (opt, first, second):
            o.zero_grad(set_to_none=True)
        loss_of(joint, i).backward()
        loss_of(split, i).backward()
        opt.step()
        first.step()
        second.step()
    for p, q in zip(joint.parameters(), split.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_state_dict_resume_is_bit_for_bit(case: Case) -> None:
    ref = mlp()
    train(ref, case.make(ref.parameters()), range(40))

    model = mlp()
    opt = case.make(model.parameters())
    train(model, opt, range(20))
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    del model, opt

    fresh = mlp(seed=123)  # a fresh model copy, different init, overwritten by the load
    fresh.load_state_dict(saved_model)
    opt2 = case.make(fresh.parameters())
    opt2.load_state_dict(saved_opt)
    train(fresh, opt2, range(20, 40))
    assert same(fresh, ref)


def test_invalid_learning_rate(case: Case) -> None:
    with pytest.raises(ValueError, match="Invalid learning rate"):
        case.make(mlp().parameters(), **case.bad_lr)


def _trained(case: Case) -> tuple[nn.Module, torch.optim.Optimizer]:
    model = mlp()
    opt = case.make(model.parameters())
    train(model, opt, range(3))
    return model, opt


@pytest.mark.parametrize("corrupt", ["shape", "other_optimizer", "group_count"])
def test_bad_state_dict_rejected_and_optimizer_unchanged(case: Case, corrupt: str) -> None:
    if not case.strict_load:
        pytest.skip(f"{case.name}: torch's own optimizers do not validate loaded state")
    _, opt = _trained(case)
    before = copy.deepcopy(opt.state_dict())
    if corrupt == "shape":
        other = nn.Sequential(
            nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)
        )
        o = case.make(other.parameters())
        train(other, o, range(2))
        bad = o.state_dict()
        match = "shape"
    elif corrupt == "other_optimizer":
        model = mlp()
        foreign = torch.optim.Adagrad(model.parameters(), lr=0.1)
        train(model, foreign, range(2))
        bad = foreign.state_dict()
        match = "another optimizer|does not use"
    else:
        bad = copy.deepcopy(before)
        bad["param_groups"] = bad["param_groups"] * 2
        match = "param groups"
    load: Callable[[], None] = lambda: opt.load_state_dict(bad)  # noqa: E731
    with pytest.raises(ValueError, match=match):
        load()
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    assert after["state"].keys() == before["state"].keys()
    for k, st in before["state"].items():
        for key, v in st.items():
            assert equal_state(after["state"][k][key], v), (k, key)


def equal_state(a: object, b: object) -> bool:
    """Equal state values: tensors, numbers, or lists of them (SOAP's factors)."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        if not isinstance(a, (list, tuple)) or not isinstance(b, (list, tuple)):
            return False
        return len(a) == len(b) and all(equal_state(x, y) for x, y in zip(a, b, strict=True))
    return torch.equal(torch.as_tensor(a), torch.as_tensor(b))
