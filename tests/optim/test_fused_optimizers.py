"""Each optimizer's fused path against its per-tensor path: the same results after 100 steps
(fp32), fp32 math rounded once (bf16 parameters), the same state dict and resumable on the
other path, and no recompilation when a scheduler changes hyperparameters every step.

Compiled graphs are shared with the other tests of the process (one per update, dtype and
flags), so only the first test of each optimizer compiles."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from optiwise.optim import LAMB, LARS, Lion, Lookahead, ScheduleFreeAdamW, SophiaG
from optiwise.optim._fused import FLAT_NUMEL
from tests.optim.fused_helpers import (
    assert_rel_close,
    compiles,
    graphs,
    model,
    params_of,
    reload,
    state_tensors,
    states,
    train,
)

pytestmark = compiles

Make = Callable[..., torch.optim.Optimizer]


def _lookahead_lion(params: Any, **kw: Any) -> torch.optim.Optimizer:
    """Lookahead (k=3) around Lion; ``fused`` chooses both paths."""
    fused = kw.pop("fused", None)
    inner = Lion(params, lr=1e-3, weight_decay=0.1, fused=fused, **kw)
    return Lookahead(inner, k=3, alpha=0.5, fused=fused)


class SophiaGSteadyHessian(SophiaG):
    """SophiaG refreshing its Hessian EMA before every 3rd step from fixed random estimates
    in [0.1, 1.1]. (With estimates near 0, ``m / max(rho h, eps)`` turns the last bit of
    ``m`` into a visible step: the per-tensor path, which computes ``lerp`` with a fused
    multiply-add, and the compiled one, which rounds twice, then drift apart at 1e-6 within
    a few steps, as any two roundings would.)"""

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._run_closure(closure)
        params = [p for group in self.param_groups for p in group["params"]]
        state = self.state.get(params[0])
        t = state["step"] if state else 0
        if t % 3 == 0:
            g = torch.Generator().manual_seed(t)
            estimates = {p: torch.rand(p.shape, generator=g).to(p.dtype) + 0.1 for p in params}
            self.update_hessian(estimates)
        super().step()
        return loss


#: Each optimizer with hyperparameters that exercise its whole update (weight decay, trust
#: ratios, Hessian refreshes, warmup).
OPTIMIZERS: dict[str, Make] = {
    "lion": lambda ps, **kw: Lion(ps, lr=1e-3, weight_decay=0.1, **kw),
    "sophiag": lambda ps, **kw: SophiaGSteadyHessian(
        ps, lr=1e-2, rho=0.05, weight_decay=0.01, **kw
    ),
    "schedule_free_adamw": lambda ps, **kw: ScheduleFreeAdamW(
        ps, lr=1e-2, warmup_steps=5, weight_decay=0.01, **kw
    ),
    "lamb": lambda ps, **kw: LAMB(ps, lr=1e-2, weight_decay=0.01, **kw),
    "lars": lambda ps, **kw: LARS(ps, lr=1.0, weight_decay=1e-4, trust_coefficient=0.02, **kw),
    "lookahead_lion": _lookahead_lion,
}
NAMES = list(OPTIMIZERS)


def _step_on_fixed_gradients(opt: torch.optim.Optimizer, net: nn.Module, t: int) -> None:
    """One step on gradients of a fixed random stream (step ``t``), whatever the weights;
    bf16 values, so that fp32 and bf16 parameters get the same gradients."""
    g = torch.Generator().manual_seed(1000 + t)
    for p in net.parameters():
        p.grad = (torch.randn(p.shape, generator=g) * 1e-2).bfloat16().to(p.dtype)
    opt.step()


@pytest.mark.parametrize("name", NAMES)
def test_fused_matches_per_tensor_after_100_steps(name: str) -> None:
    """The two paths on the same 100 gradients agree within 1e-6 relative. (On gradients
    of the model's own loss the paths would drift apart as any two roundings do: changing
    the initial weights by one unit in the last place moves the per-tensor path itself by
    1e-6 to 1e-2 relative after 100 steps, depending on the optimizer.)"""
    make = OPTIMIZERS[name]
    a, b = model(), model()
    fused, ref = make(a.parameters(), fused=True), make(b.parameters(), fused=False)
    for t in range(100):
        _step_on_fixed_gradients(fused, a, t)
        _step_on_fixed_gradients(ref, b, t)
    assert_rel_close(params_of(a), params_of(b))
    assert_rel_close(state_tensors(fused), state_tensors(ref))


def _copy_state(src: torch.optim.Optimizer, dst: torch.optim.Optimizer) -> None:
    """Copy ``src``'s parameters and state into ``dst``'s (same layout, any dtype)."""
    if isinstance(src, Lookahead) and isinstance(dst, Lookahead):
        _copy_state(src.optimizer, dst.optimizer)
        dst.lookahead_step = src.lookahead_step
    for group_s, group_d in zip(src.param_groups, dst.param_groups, strict=True):
        for p, q in zip(group_s["params"], group_d["params"], strict=True):
            q.data.copy_(p.data)
            for key, value in src.state.get(p, {}).items():
                if isinstance(value, Tensor) and value.numel() > 1:
                    if key in dst.state[q]:
                        dst.state[q][key].copy_(value)
                    else:
                        dst.state[q][key] = value.to(q.dtype)
                else:
                    dst.state[q][key] = copy.deepcopy(value)


#: For bf16, SophiaG without refreshes inside step(): the eager refresh rounds after every
#: op; the test refreshes between steps instead.
BF16 = {**OPTIMIZERS, "sophiag": lambda ps, **kw: SophiaG(ps, lr=1e-2, rho=0.05, **kw)}
READS_BACK = {"lars", "lookahead_lion"}
#: Optimizers that keep float32 state for half-precision parameters.
FLOAT32_STATE = {"lamb"}


@pytest.mark.parametrize("name", NAMES)
def test_bf16_fused_is_fp32_math_rounded_once(name: str) -> None:
    """From the same values, a fused step on bf16 parameters and state equals the fused
    step in fp32 rounded to bf16: the update is computed in fp32 and rounded once (the
    per-tensor path rounds after every op). Where a step reads back a value it has just
    stored (LARS's momentum; Lookahead's sync, the inner step's parameters), it reads it
    rounded to bf16, as the per-tensor path does: within one bf16 unit. LAMB keeps float32
    state for bf16 parameters: the fp32 run's state exactly."""
    make = BF16[name]
    low, high = model().bfloat16(), model().float()
    fused, ref = make(low.parameters(), fused=True), make(high.parameters(), fused=True)
    for t in range(8):
        if name == "sophiag" and t % 3 == 1:
            fused.update_hessian(batch_size=32)  # type: ignore[attr-defined]
        _copy_state(fused, ref)
        _step_on_fixed_gradients(fused, low, t)
        _step_on_fixed_gradients(ref, high, t)
        got = params_of(low) + state_tensors(fused)
        want = params_of(high) + state_tensors(ref)
        state_dtype = torch.float32 if name in FLOAT32_STATE else torch.bfloat16
        assert [x.dtype for x in got] == [torch.bfloat16] * len(params_of(low)) + [
            state_dtype
        ] * len(state_tensors(fused))
        for x, y in zip(got, want, strict=True):
            if name in READS_BACK:
                # one bf16 unit of the values read back (near 0, where the result cancels,
                # of the tensor's scale)
                scale = 2**-8 * y.abs().max().item()
                torch.testing.assert_close(x, y.bfloat16(), rtol=2**-7, atol=scale)
            else:
                assert torch.equal(x, y.to(x.dtype))


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_is_the_same_on_both_paths(name: str) -> None:
    make = OPTIMIZERS[name]
    a, b = model(), model()
    fused, ref = make(a.parameters(), fused=True), make(b.parameters(), fused=False)
    train(a, fused, range(10))
    train(b, ref, range(10))
    sa, sb = fused.state_dict(), ref.state_dict()
    assert sa.keys() == sb.keys()
    assert [{k: v for k, v in g.items() if k != "params"} for g in sa["param_groups"]] == [
        {k: (True if k == "fused" else v) for k, v in g.items() if k != "params"}
        for g in sb["param_groups"]
    ]
    assert sa["state"].keys() == sb["state"].keys()
    for i, state in sa["state"].items():
        assert state.keys() == sb["state"][i].keys()
        for key, x in state.items():
            y = sb["state"][i][key]
            if isinstance(x, Tensor):
                assert (x.shape, x.dtype, x.device) == (y.shape, y.dtype, y.device)
            else:
                assert type(x) is type(y)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("first", "then"), [(True, False), (False, True), (True, True)])
def test_resume_on_either_path(name: str, first: bool, then: bool) -> None:
    """Resuming on the same path is bit for bit; on the other path, within 1e-6 relative
    of a run that never switched (the paths round differently)."""
    make = OPTIMIZERS[name]
    ref = model()
    train(ref, make(ref.parameters(), fused=first), range(30))

    net = model()
    opt = make(net.parameters(), fused=first)
    train(net, opt, range(15))
    saved, weights = reload(opt), copy.deepcopy(net.state_dict())
    fresh = model(seed=1)
    fresh.load_state_dict(weights)
    resumed = make(fresh.parameters(), fused=then)
    resumed.load_state_dict(saved)  # type: ignore[arg-type]
    assert resumed.param_groups[0]["fused"] is then  # the path is this run's choice
    train(fresh, resumed, range(15, 30))
    if first == then:
        assert all(map(torch.equal, params_of(fresh), params_of(ref)))
    else:
        assert_rel_close(params_of(fresh), params_of(ref))


def _schedule(opt: torch.optim.Optimizer) -> Callable[[], None]:
    """Besides the LR (a LambdaLR), change every other number of the update each step:
    weight decay, betas or momentum, and the trust coefficient."""

    def step() -> None:
        for group in opt.param_groups:
            group["weight_decay"] *= 1.01
            if "betas" in group:
                b1, b2 = group["betas"]
                group["betas"] = (b1 * 0.999, b2)
            if "momentum" in group:
                group["momentum"] *= 0.999
            if "trust_coefficient" in group:
                group["trust_coefficient"] *= 1.01

    return step


@pytest.mark.parametrize("name", NAMES)
def test_no_recompilation_when_hyperparameters_change_every_step(name: str) -> None:
    make = OPTIMIZERS[name]
    net = model()
    opt = make(net.parameters(), fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1 / math.sqrt(t + 1))
    change = _schedule(opt)
    train(net, opt, range(2), sched)  # compiles, unless another test did
    before = graphs()
    lrs = []
    with torch.compiler.set_stance("fail_on_recompile"):
        for i in range(2, 25):
            lrs.append(opt.param_groups[0]["lr"])
            change()
            train(net, opt, range(i, i + 1), sched)
    assert len(set(lrs)) == len(lrs)
    assert graphs() == before
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_the_model_has_large_and_small_tensors() -> None:
    sizes = [p.numel() for p in model().parameters()]
    assert max(sizes) >= FLAT_NUMEL > min(sizes)


# --------------------------------------------------------------------------------------------
# Per optimizer
# --------------------------------------------------------------------------------------------


def test_lamb_fused_needs_eps_above_zero() -> None:
    with pytest.raises(ValueError, match="eps > 0"):
        LAMB(model().parameters(), eps=0.0, fused=True)
    net = model()
    opt = LAMB(net.parameters(), eps=0.0)  # fused=None: takes the per-tensor path
    opt.param_groups[0]["fused"] = None
    train(net, opt, range(1))
    opt.param_groups[0]["fused"] = True
    with pytest.raises(ValueError, match="eps > 0"):
        train(net, opt, range(1, 2))


def _late_start(make: Make, late: Callable[[nn.Module], Tensor]) -> tuple[list, list, dict]:
    """12 steps on fixed gradients on both paths, the tensor ``late(model)`` without a
    gradient for the first 4: (fused params, per-tensor params, fused state dict)."""
    out = []
    for fused in (True, False):
        net = model()
        opt = make(net.parameters(), fused=fused)
        for t in range(12):
            g = torch.Generator().manual_seed(t)
            for p in net.parameters():
                p.grad = torch.randn(p.shape, generator=g) * 1e-2
            if t < 4:
                late(net).grad = None
            opt.step()
        out.append((net, opt))
    (a, fused_opt), (b, _) = out
    return params_of(a), params_of(b), states(fused_opt)


def test_lamb_tensors_at_different_steps_take_their_own_bias_correction() -> None:
    """A tensor that first gets a gradient later counts its own steps: the fused path
    runs it as a subset of its own, with its bias corrections."""
    got, want, state = _late_start(OPTIMIZERS["lamb"], lambda net: net[2].weight)
    assert {int(s["step"]) for s in state.values()} == {8, 12}
    assert_rel_close(got, want)


def test_schedule_free_parameters_that_start_later_step_apart() -> None:
    got, want, state = _late_start(OPTIMIZERS["schedule_free_adamw"], lambda net: net[0].bias)
    assert {s["step"] for s in state.values()} == {8, 12}
    assert_rel_close(got, want)


def test_lookahead_fused_sync_only_compiles_large_tensors(monkeypatch: pytest.MonkeyPatch) -> None:
    from optiwise.optim import _fused

    seen: list[list[int]] = []
    original = _fused.fused_map

    def spy(update: Any, tensors: Any, **kw: Any) -> Any:
        seen.append([t.numel() for t in tensors[0]])
        return original(update, tensors, **kw)

    monkeypatch.setattr(_fused, "fused_map", spy)
    net = model()
    train(net, _lookahead_lion(net.parameters(), fused=True), range(6))
    assert seen == [[34000], [34000]]  # every 3rd step, the one large weight


@pytest.mark.parametrize("name", NAMES)
def test_defaults_pick_the_fused_path_for_large_groups(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fused=None, foreach=None``: bit for bit the fused path when the group holds at least
    AUTO_MIN_NUMEL elements (lowered here to the test model's size), the per-tensor path on
    CPU below it."""
    from optiwise.optim import _fused

    make = OPTIMIZERS[name]
    size = sum(p.numel() for p in model().parameters())
    runs = {}
    for label, fused in (("fused", True), ("single", False)):
        net = model()
        train(net, make(net.parameters(), fused=fused), range(3))
        runs[label] = params_of(net)
    calls = []
    call_chunks = _fused._call_chunks
    monkeypatch.setattr(
        _fused, "_call_chunks", lambda *a, **kw: calls.append(1) or call_chunks(*a, **kw)
    )
    for threshold, want in ((size, "fused"), (size + 1, "single")):
        monkeypatch.setattr(_fused, "AUTO_MIN_NUMEL", threshold)
        calls.clear()
        net = model()
        train(net, make(net.parameters()), range(3))
        assert all(map(torch.equal, params_of(net), runs[want])), (threshold, want)
        assert bool(calls) is (want == "fused")  # compiled updates ran, or none did
