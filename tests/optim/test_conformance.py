"""Every optimizer in tests/optim/cases.py behaves like torch's own (DESIGN.md conventions):
closure, maximize, foreach == per-tensor, params without grads skipped, sparse gradients
refused, param groups independent, state_dict resume bit-for-bit, bad loads rejected.

With the invariants of torch's own battery (test/test_optim.py over the OptimizerInfo table
of torch/testing/_internal/common_optimizers.py), adapted: test_step_is_noop_when_params_
have_no_grad, test_load_nontensor_step, test_can_load_older_state_dict,
test_deepcopy_copies_all_public_attrs, test_complex, test_tensor_lr, test_step_pre_hook /
test_step_post_hook and test_compile. Every registered optimizer has a case; the checks
that torch's own optimizers do not meet by design are switched off per case, with the
reason, in cases.py."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim import Optimizer

from optiwise.optim import (
    LAMB,
    LARS,
    AdamW8bit,
    Lion,
    Lion8bit,
    Lookahead,
    ScheduleFreeAdamW,
    SophiaG,
    _kernels,
    list_optimizers,
)
from optiwise.optim._base import OptiwiseOptimizer
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
        if isinstance(opt, torch.optim.LBFGS):  # it re-evaluates the loss: closure only

            def closure(i: int = i) -> torch.Tensor:
                opt.zero_grad(set_to_none=True)
                loss = loss_of(model, i, sign)
                loss.backward()
                return loss

            opt.step(closure)
            continue
        opt.zero_grad(set_to_none=True)
        loss_of(model, i, sign).backward()
        opt.step()


def same(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


#: The checks that apply to an optimizer of sparse gradients only (SparseAdam).
SPARSE_ONLY_CHECKS = {"test_invalid_learning_rate"}


@pytest.fixture(params=CASES, ids=IDS)
def case(request: pytest.FixtureRequest) -> Case:
    case: Case = request.param
    if not case.dense and request.function.__name__ not in SPARSE_ONLY_CHECKS:
        pytest.skip(f"{case.name} steps on sparse gradients only")
    return case


def test_every_registered_optimizer_has_a_case() -> None:
    covered = {name for c in CASES for name in c.registered}
    missing = sorted(set(list_optimizers()) - covered)
    assert not missing, f"registered optimizers without a case in tests/optim/cases.py: {missing}"
    unknown = sorted(covered - set(list_optimizers()))
    assert not unknown, f"cases name optimizers the registry does not know: {unknown}"


def test_trains_and_changes_parameters(case: Case) -> None:
    model = mlp()
    start = copy.deepcopy(model)
    opt = case.make(model.parameters())
    first = loss_of(model, 0).item()
    train(model, opt, range(30))
    assert not same(model, start)
    assert loss_of(model, 0).item() < first


def test_closure_is_called_once_with_grad_and_its_loss_returned(case: Case) -> None:
    if case.needs_closure:
        pytest.skip(f"{case.name} calls its closure several times")
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
    if case.needs_closure:
        pytest.skip(f"{case.name} makes the gradients in its closure")
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
    if case.lazy_state:
        assert not opt.state.get(frozen)


def test_sparse_gradients_refused(case: Case) -> None:
    if case.sparse_ok:
        pytest.skip(f"{case.name} steps on sparse gradients")
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
    if not case.groups:
        pytest.skip(f"{case.name} takes a single param group")
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
    _resumed_equals_uninterrupted(case, lambda saved: None)


def test_invalid_learning_rate(case: Case) -> None:
    with pytest.raises(ValueError, match=case.lr_message):
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


# ---------------------------------------------------------------------------------------------
# Checkpoint compatibility (torch's test_load_nontensor_step, test_can_load_older_state_dict,
# test_deepcopy_copies_all_public_attrs)
# ---------------------------------------------------------------------------------------------


def _state_dicts(sd: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """``sd`` and the optimizers' state dicts nested in it (MultiOptimizer's children)."""
    if "state" in sd and "param_groups" in sd:
        yield sd
    for child in sd.get("optimizers", {}).values():
        yield from _state_dicts(child)


def _optimizers(opt: Optimizer) -> Iterator[Optimizer]:
    """``opt`` and the optimizers it wraps (Lookahead's inner, MultiOptimizer's children)."""
    yield opt
    if isinstance(opt.__dict__.get("optimizer"), Optimizer):
        yield from _optimizers(opt.__dict__["optimizer"])
    for child in getattr(opt, "optimizers", {}).values():
        yield from _optimizers(child)


def _resumed_equals_uninterrupted(
    case: Case, edit: Callable[[dict[str, Any]], None], steps: int = 20
) -> None:
    """Train ``steps`` steps, save, ``edit`` the saved state dict, load the model and the
    state dict into fresh ones and train ``steps`` more: bit for bit the uninterrupted run."""
    ref = mlp()
    train(ref, case.make(ref.parameters()), range(2 * steps))

    model = mlp()
    opt = case.make(model.parameters())
    train(model, opt, range(steps))
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    edit(saved_opt)
    del model, opt

    fresh = mlp(seed=123)  # a fresh model copy, different init, overwritten by the load
    fresh.load_state_dict(saved_model)
    opt2 = case.make(fresh.parameters())
    opt2.load_state_dict(saved_opt)
    train(fresh, opt2, range(steps, 2 * steps))
    assert same(fresh, ref)


def test_counters_load_as_numbers_or_tensors(case: Case) -> None:
    # a checkpoint may hold a counter as a number where the optimizer keeps a 0-dim tensor
    # (torch accepts a plain-number `step`) or as a 0-dim tensor where it keeps a number
    def flip(saved: dict[str, Any]) -> None:
        for sd in _state_dicts(saved):
            for state in sd["state"].values():
                for key, value in state.items():
                    if isinstance(value, torch.Tensor) and value.ndim == 0:
                        state[key] = value.item()
                    elif isinstance(value, (int, float)) and not isinstance(value, bool):
                        exact = torch.float32 if isinstance(value, int) else torch.float64
                        state[key] = torch.tensor(float(value), dtype=exact)

    _resumed_equals_uninterrupted(case, flip, steps=7)


def test_state_dict_lacking_later_added_options_loads_with_their_defaults(case: Case) -> None:
    # An older checkpoint lacks the options added since; their defaults are the behaviour
    # from before, so a state dict without the keys that hold their default value resumes
    # exactly (torch's optimizers setdefault such keys in __setstate__).
    if not case.fills_older_keys:
        pytest.skip(f"torch's {case.name} does not fill the keys it added")
    optional: dict[str, Any] = {"maximize": False, "foreach": None, "differentiable": False}
    for o in _optimizers(case.make(mlp().parameters())):
        if isinstance(o, OptiwiseOptimizer):
            optional.update(o.optional_group_keys())
    removed: set[str] = set()

    def strip(saved: dict[str, Any]) -> None:
        for sd in _state_dicts(saved):
            for group in sd["param_groups"]:
                for key, default in optional.items():
                    if key in group and group[key] == default and type(group[key]) is type(default):
                        del group[key]
                        removed.add(key)

    _resumed_equals_uninterrupted(case, strip, steps=7)
    assert "maximize" in removed or not case.maximize


def test_copies_keep_defaults_and_public_attributes(case: Case) -> None:
    model = mlp()
    opt = case.make(model.parameters())
    train(model, opt, range(2))
    keys = set(opt.defaults)
    opt.load_state_dict(opt.state_dict())
    if case.own:  # torch's own add "differentiable" to defaults
        assert set(opt.defaults) == keys
    for copied in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        if case.own:
            assert set(copied.defaults) == keys
        public = {k for k in vars(opt) if not k.startswith("_")}
        assert public <= set(vars(copied)), public - set(vars(copied))
        assert copied.param_groups[0].keys() == opt.param_groups[0].keys()


def test_tensor_lr_equals_float_lr(case: Case) -> None:
    # torch's optimizers take a 1-element tensor LR (test_tensor_lr; 2^-9 is exact in
    # float32); torch's own kernels take other code paths for it, hence the tolerance
    lr = 2.0**-9
    a, b = mlp(), mlp()
    train(a, case.make(a.parameters(), lr=lr), range(6))
    train(b, case.make(b.parameters(), lr=torch.tensor(lr)), range(6))
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"(?i)lr|learning rate"):
        case.make(mlp().parameters(), lr=torch.tensor([lr, lr]))


def test_complex_params_step_as_their_real_views(case: Case) -> None:
    # torch's test_complex: a complex parameter is its (real, imaginary) pairs
    if case.complex is None or case.needs_closure:
        pytest.skip(f"{case.name}: the complex check does not apply (see its case)")
    gen = torch.Generator().manual_seed(3)
    start = [torch.randn(4, 3, dtype=torch.complex64, generator=gen), torch.randn(3, generator=gen)]
    grads = [[torch.randn(t.shape, dtype=t.dtype, generator=gen) for t in start] for _ in range(5)]
    cplx = [nn.Parameter(t.clone()) for t in start]
    real = [
        nn.Parameter(torch.view_as_real(t).clone() if t.is_complex() else t.clone()) for t in start
    ]
    if case.complex is False:
        opt = case.make(cplx)
        cplx[0].grad, cplx[1].grad = grads[0]
        with pytest.raises(ValueError, match="complex"):
            opt.step()
        return
    opt_c, opt_r = case.make(cplx), case.make(real)
    for step_grads in grads:
        for p, q, g in zip(cplx, real, step_grads, strict=True):
            p.grad = g.clone()
            q.grad = torch.view_as_real(g).clone() if g.is_complex() else g.clone()
        opt_c.step()
        opt_r.step()
    torch.testing.assert_close(torch.view_as_real(cplx[0].detach()), real[0].detach())
    torch.testing.assert_close(cplx[1].detach(), real[1].detach())


@pytest.mark.parametrize("cls", [Lion, LAMB, LARS, SophiaG, ScheduleFreeAdamW])
def test_fused_true_refuses_complex_params_naming_the_way_out(cls: type[Optimizer]) -> None:
    p = nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(ValueError, match="complex64: pass fused=False"):
        opt = cls([p], fused=True)
        p.grad = torch.ones_like(p)
        opt.step()


def _lookahead_lion(params: Any) -> Optimizer:
    return Lookahead(Lion(params, lr=1e-2, weight_decay=0.1), k=2, alpha=0.5)


@pytest.mark.parametrize(
    "make",
    [
        _lookahead_lion,
        lambda ps: AdamW8bit(ps, lr=1e-2, min_8bit_numel=0, block_size=64),
        lambda ps: Lion8bit(ps, lr=1e-3, min_8bit_numel=0, block_size=64),
    ],
    ids=["lookahead_lion", "adamw8bit_8bit_state", "lion8bit_8bit_state"],
)
def test_compiled_step_equals_eager_step(
    make: Callable[[Any], Optimizer], monkeypatch: pytest.MonkeyPatch
) -> None:
    # torch.compile(opt.step) (torch's test_compile): Lookahead's counter and sync run
    # eagerly around the compiled inner step, the 8-bit kernels in graph breaks. The
    # compiled step goes first and builds the quantization maps itself (Inductor failed on
    # tracing that).
    monkeypatch.setattr(_kernels, "_MAPS", {})
    gen = torch.Generator().manual_seed(5)
    start = [
        torch.randn(8, 4, generator=gen),
        torch.randn(5, generator=gen),
        torch.randn(70, generator=gen),
    ]
    grads = [[torch.randn(t.shape, generator=gen) for t in start] for _ in range(5)]
    eager_params = [nn.Parameter(t.clone()) for t in start]
    compiled_params = [nn.Parameter(t.clone()) for t in start]
    eager, compiled = make(eager_params), make(compiled_params)
    torch._dynamo.reset()
    compiled_step = torch.compile(compiled.step)
    for step_grads in grads:
        for p, q, g in zip(eager_params, compiled_params, step_grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        compiled_step()
        eager.step()
    for p, q in zip(eager_params, compiled_params, strict=True):
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-7)
    if isinstance(eager, Lookahead):
        assert isinstance(compiled, Lookahead) and compiled.lookahead_step == 5
        for p, q in zip(eager_params, compiled_params, strict=True):
            torch.testing.assert_close(
                compiled.state[q]["slow_param"], eager.state[p]["slow_param"], rtol=1e-6, atol=1e-7
            )


def test_step_is_noop_when_no_param_has_a_grad(case: Case) -> None:
    # torch's test_step_is_noop_when_params_have_no_grad
    model = mlp()
    before = copy.deepcopy(model)
    opt = case.make(model.parameters())
    if isinstance(opt, torch.optim.LBFGS):
        pytest.skip("LBFGS steps with a closure, which makes the gradients")
    opt.step()
    opt.step()
    assert same(model, before)


def test_step_hooks_run_once_per_step_in_order(case: Case) -> None:
    # torch's test_step_pre_hook / test_step_post_hook
    if not case.hooks_once:
        pytest.skip(f"{case.name}: a test subclass whose step calls its base's")
    model = mlp()
    opt = case.make(model.parameters())
    calls: list[str] = []
    pre = opt.register_step_pre_hook(lambda o, args, kwargs: calls.append("pre"))
    post = opt.register_step_post_hook(lambda o, args, kwargs: calls.append("post"))
    train(model, opt, range(2))
    assert calls == ["pre", "post", "pre", "post"]
    pre.remove()
    post.remove()
    train(model, opt, range(2, 3))
    assert len(calls) == 4


@pytest.mark.parametrize("case", [c for c in CASES if not c.dense], ids=lambda c: c.name)
def test_sparse_only_optimizer_trains_and_resumes(case: Case) -> None:
    def run(emb: nn.Embedding, opt: Optimizer, steps: range) -> None:
        for i in steps:
            opt.zero_grad(set_to_none=True)
            ids = torch.tensor([i % 7, (3 * i) % 10, 2])
            emb(ids).pow(2).sum().backward()
            opt.step()

    torch.manual_seed(0)
    ref = nn.Embedding(10, 4, sparse=True)
    start = copy.deepcopy(ref)
    run(ref, case.make(ref.parameters()), range(10))
    assert ref.weight.pow(2).sum() < start.weight.pow(2).sum()
    emb = copy.deepcopy(start)
    opt = case.make(emb.parameters())
    run(emb, opt, range(5))
    opt2 = case.make(emb.parameters())
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    run(emb, opt2, range(5, 10))
    assert torch.equal(emb.weight, ref.weight)
