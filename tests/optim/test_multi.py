"""MultiOptimizer: the same as stepping its children by hand, schedulers and the Stepper on
it, state_dict resume, and clear errors on overlapping parameters and bad input."""

from __future__ import annotations

import copy
import io
import pickle
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as tls

from optiwise import Stepper
from optiwise.optim import Lion, Lookahead, state_bytes
from optiwise.optim.multi import MultiOptimizer, split_param_groups
from tests.optim.harness import random_batch, small_mlp


def split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """2-D weights and the rest."""
    params = list(model.parameters())
    return [p for p in params if p.ndim == 2], [p for p in params if p.ndim != 2]


def make(model: nn.Module) -> MultiOptimizer:
    mats, rest = split(model)
    return MultiOptimizer(
        {
            "lion": Lion(mats, lr=1e-3, weight_decay=0.1),
            "adamw": torch.optim.AdamW(rest, lr=1e-2, weight_decay=0.01),
        }
    )


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: range) -> None:
    for t in steps:
        opt.zero_grad(set_to_none=True)
        x, y = random_batch(t)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_equals_stepping_the_children_by_hand() -> None:
    model, ref = small_mlp(), small_mlp()
    train(model, make(model), range(20))
    mats, rest = split(ref)
    lion = Lion(mats, lr=1e-3, weight_decay=0.1)
    adamw = torch.optim.AdamW(rest, lr=1e-2, weight_decay=0.01)
    for t in range(20):
        lion.zero_grad(set_to_none=True)
        adamw.zero_grad(set_to_none=True)
        x, y = random_batch(t)
        nn.functional.cross_entropy(ref(x), y).backward()
        lion.step()
        adamw.step()
    assert same(model, ref)


def test_a_sequence_of_children_is_named_by_position() -> None:
    model = small_mlp()
    mats, rest = split(model)
    opt = MultiOptimizer([torch.optim.SGD(mats, lr=0.1), torch.optim.SGD(rest, lr=0.2)])
    assert list(opt.optimizers) == ["0", "1"]
    assert "'0': SGD" in repr(opt)


def test_closure_is_evaluated_once_and_its_loss_returned() -> None:
    model = small_mlp()
    opt = make(model)
    calls: list[bool] = []

    def closure() -> torch.Tensor:
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        x, y = random_batch(0)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    before = [p.detach().clone() for p in model.parameters()]
    loss = opt.step(closure)
    assert calls == [True] and isinstance(loss, torch.Tensor)
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_param_groups_are_the_childrens_dicts_and_a_scheduler_sets_them() -> None:
    model = small_mlp()
    opt = make(model)
    lion, adamw = opt.optimizers["lion"], opt.optimizers["adamw"]
    assert [id(g) for g in opt.param_groups] == [
        id(g) for g in lion.param_groups + adamw.param_groups
    ]
    sched = tls.StepLR(opt, step_size=1, gamma=0.5)
    train(model, opt, range(1))
    sched.step()
    assert lion.param_groups[0]["lr"] == pytest.approx(5e-4)
    assert adamw.param_groups[0]["lr"] == pytest.approx(5e-3)


def test_the_stepper_drives_it_like_any_optimizer() -> None:
    model, ref = small_mlp(), small_mlp()
    opt = make(model)
    stepper = Stepper(opt, scheduler=tls.LambdaLR(opt, lambda t: 1 / (1 + t)), clip_norm=1.0)
    ref_opt = make(ref)
    ref_sched = tls.LambdaLR(ref_opt, lambda t: 1 / (1 + t))
    for t in range(5):
        x, y = random_batch(t)
        stepper.backward(nn.functional.cross_entropy(model(x), y))
        ref_opt.zero_grad()
        nn.functional.cross_entropy(ref(x), y).backward()
        nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        ref_opt.step()
        ref_sched.step()
    assert stepper.step_count == 5 and same(model, ref)
    assert stepper.lrs == [g["lr"] for g in ref_opt.param_groups]


def test_zero_grad_clears_every_child() -> None:
    model = small_mlp()
    opt = make(model)
    x, y = random_batch(0)
    nn.functional.cross_entropy(model(x), y).backward()
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_state_is_the_childrens_and_counts_in_state_bytes() -> None:
    model = small_mlp()
    opt = make(model)
    train(model, opt, range(1))
    lion, adamw = opt.optimizers["lion"], opt.optimizers["adamw"]
    for p in model.parameters():
        child = lion if p.ndim == 2 else adamw
        assert opt.state[p] is child.state[p]
    n_mats = sum(p.numel() for p in split(model)[0])
    n_rest = sum(p.numel() for p in split(model)[1])
    # Lion: one fp32 buffer; AdamW: two, plus a 4-byte step per tensor
    assert state_bytes(opt).total == 4 * n_mats + 8 * n_rest + 4 * len(split(model)[1])


@pytest.mark.parametrize("via_bytes", [False, True])
def test_state_dict_resume_is_bit_for_bit(via_bytes: bool) -> None:
    ref = small_mlp()
    ref_opt = make(ref)
    sched = tls.CosineAnnealingLR(ref_opt, T_max=30)
    for t in range(30):
        train(ref, ref_opt, range(t, t + 1))
        sched.step()

    model = small_mlp()
    opt = make(model)
    s1 = tls.CosineAnnealingLR(opt, T_max=30)
    for t in range(12):
        train(model, opt, range(t, t + 1))
        s1.step()
    saved = copy.deepcopy((model.state_dict(), opt.state_dict(), s1.state_dict()))
    if via_bytes:
        buffer = io.BytesIO()
        torch.save(saved, buffer)
        buffer.seek(0)
        saved = torch.load(buffer, weights_only=True)

    fresh = small_mlp(seed=5)
    fresh.load_state_dict(saved[0])
    opt2 = make(fresh)
    opt2.load_state_dict(saved[1])
    s2 = tls.CosineAnnealingLR(opt2, T_max=30)
    s2.load_state_dict(saved[2])
    for t in range(12, 30):
        train(fresh, opt2, range(t, t + 1))
        s2.step()
    assert same(fresh, ref)


def test_state_dict_is_shaped_like_a_single_optimizers() -> None:
    model = small_mlp()
    opt = make(model)
    train(model, opt, range(2))
    sd = opt.state_dict()
    n = len(list(model.parameters()))
    assert sorted(i for g in sd["param_groups"] for i in g["params"]) == list(range(n))
    assert sorted(sd["state"]) == list(range(n))
    assert set(sd["optimizers"]) == {"lion", "adamw"}
    flat = [p for g in opt.param_groups for p in g["params"]]
    for i, p in enumerate(flat):
        assert sd["state"][i] is opt.state[p]


@pytest.mark.parametrize("corrupt", ["names", "groups", "shape", "foreign"])
def test_bad_state_dict_rejected_and_nothing_loaded(corrupt: str) -> None:
    model = small_mlp()
    opt = make(model)
    train(model, opt, range(2))
    before = copy.deepcopy(opt.state_dict())
    bad: Any = copy.deepcopy(before)
    if corrupt == "names":
        bad["optimizers"] = {"adamw": bad["optimizers"]["adamw"], "lion": bad["optimizers"]["lion"]}
        match = r"holds optimizers \['adamw', 'lion'\]"
    elif corrupt == "groups":
        bad["optimizers"]["adamw"]["param_groups"] *= 2
        match = "optimizer 'adamw' has 2 param groups"
    elif corrupt == "shape":
        other = small_mlp(sizes=(10, 16, 32, 4))
        o = make(other)
        train(other, o, range(1))
        bad = o.state_dict()
        match = "shape"
    else:
        bad = torch.optim.AdamW(model.parameters()).state_dict()
        match = "another optimizer"
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(bad)
    after = opt.state_dict()
    for name in ("lion", "adamw"):
        for i, st in before["optimizers"][name]["state"].items():
            for key, value in st.items():
                assert torch.equal(
                    torch.as_tensor(after["optimizers"][name]["state"][i][key]),
                    torch.as_tensor(value),
                )


def test_overlapping_parameters_are_refused_by_name() -> None:
    model = small_mlp()
    with pytest.raises(ValueError, match=r"\(32, 10\) float32 tensor belongs to both .*'a'.*'b'"):
        MultiOptimizer(
            {
                "a": torch.optim.SGD(model.parameters(), lr=0.1),
                "b": torch.optim.SGD([model[0].weight], lr=0.1),
            }
        )


@pytest.mark.parametrize(
    ("children", "error", "match"),
    [
        (lambda m: torch.optim.SGD(m.parameters(), lr=0.1), TypeError, "several optimizers"),
        (lambda m: {}, ValueError, "at least one"),
        (lambda m: {"a": m}, TypeError, "not a torch.optim.Optimizer"),
        (lambda m: {"a": torch.optim.LBFGS(m.parameters())}, ValueError, "LBFGS"),
    ],
)
def test_bad_children_are_refused(children: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        MultiOptimizer(children(small_mlp()))


def test_the_same_child_twice_is_refused() -> None:
    sgd = torch.optim.SGD(small_mlp().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="one object"):
        MultiOptimizer({"a": sgd, "b": sgd})


def test_add_param_group_goes_to_the_named_child() -> None:
    model = small_mlp()
    opt = make(model)
    extra = nn.Parameter(torch.randn(3))
    opt.add_param_group({"params": extra, "lr": 0.5, "optimizer": "adamw"})
    group = opt.optimizers["adamw"].param_groups[-1]
    assert group["params"] == [extra] and group["lr"] == 0.5 and "optimizer" not in group
    assert opt.param_groups[-1] is group
    with pytest.raises(ValueError, match=r"does not say which child.*\['adamw', 'lion'\]"):
        opt.add_param_group({"params": [nn.Parameter(torch.randn(3))]})
    with pytest.raises(ValueError, match="names no child"):
        opt.add_param_group({"params": [nn.Parameter(torch.randn(3))], "optimizer": "sgd"})
    with pytest.raises(ValueError, match="already belongs to optimizer 'lion'"):
        opt.add_param_group({"params": [model[0].weight], "optimizer": "adamw"})


def test_param_groups_and_state_cannot_be_replaced() -> None:
    opt = make(small_mlp())
    with pytest.raises(AttributeError, match="children's"):
        opt.param_groups = []
    with pytest.raises(AttributeError, match="children's"):
        opt.state = {}


def test_pickles_deep_copies_and_wraps_in_lookahead() -> None:
    model = small_mlp()
    opt = make(model)
    train(model, opt, range(3))
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        assert list(clone.optimizers) == ["lion", "adamw"]
        assert len(clone.state) == len(opt.state)
    a, b = small_mlp(), small_mlp()
    la = Lookahead(make(a), k=2)
    train(a, la, range(6))
    ref = make(b)
    ref_la = Lookahead(ref, k=2)
    train(b, ref_la, range(3))
    state = copy.deepcopy(ref_la.state_dict())
    resumed = Lookahead(make(b), k=2)
    resumed.load_state_dict(state)
    train(b, resumed, range(3, 6))
    assert same(a, b)


def test_split_param_groups_keeps_keys_and_splits_aligned_names() -> None:
    a, b, c = (nn.Parameter(torch.zeros(n, 2)) for n in (1, 2, 3))
    group = {"params": [a, b, c], "param_names": ["a", "b", "c"], "lr": 0.5}
    first, rest = split_param_groups([group], lambda p: p.shape[0] != 2, "X")
    assert first == [{"params": [a, c], "param_names": ["a", "c"], "lr": 0.5}]
    assert rest == [{"params": [b], "param_names": ["b"], "lr": 0.5}]
    # bare tensors are one group; a part with no tensor is left out
    assert split_param_groups([a, c], lambda p: True, "X") == ([{"params": [a, c]}], [])
    with pytest.raises(ValueError, match="X got an empty parameter list"):
        split_param_groups([], lambda p: True, "X")
