"""Stepper: each feature against a hand-written loop doing the same thing."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from optiwise import Stepper, StepResult
from optiwise.optim import ScheduleFreeAdamW
from optiwise.train import has_train_eval_modes

Batch = tuple[Tensor, Tensor]


def mlp(norm: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(6, 16)]
    if norm:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.ReLU(), nn.Linear(16, 3)]
    return nn.Sequential(*layers)


def batches(n: int, size: int = 8, seed: int = 1) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 6, generator=g), torch.randint(0, 3, (size,), generator=g))
        for _ in range(n)
    ]


def loss_of(model: nn.Module, batch: Batch) -> Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def copy_of(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


def max_diff(a: nn.Module, b: nn.Module) -> float:
    return max(
        (p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def optimizer_tensors(opt: torch.optim.Optimizer) -> list[Tensor]:
    return [
        v.clone()
        for s in opt.state_dict()["state"].values()
        for v in s.values()
        if isinstance(v, Tensor)
    ]


def feed(stepper: Stepper, model: nn.Module, data: list[Batch]) -> list[StepResult]:
    """Feed ``data`` as micro-batches under the stepper's autocast; close the last window."""
    results = []
    for batch in data:
        with stepper.autocast():
            loss = loss_of(model, batch)
        r = stepper.backward(loss)
        if r is not None:
            results.append(r)
    r = stepper.flush()
    if r is not None:
        results.append(r)
    return results


# ------------------------------------------------------------------------------------------
# Accumulation
# ------------------------------------------------------------------------------------------


def hand_accumulate(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: list[Batch],
    n: int,
    last_divisor: Callable[[int], int],
) -> None:
    for start in range(0, len(data), n):
        window = data[start : start + n]
        opt.zero_grad()
        divisor = n if len(window) == n else last_divisor(len(window))
        for batch in window:
            (loss_of(model, batch) / divisor).backward()
        opt.step()


def test_accumulation_matches_hand_loop_with_short_last_window() -> None:
    data = batches(7)  # windows of 3, 3 and 1
    model = mlp()
    ref, ref_wrong = copy_of(model), copy_of(model)
    stepper = Stepper(torch.optim.SGD(model.parameters(), lr=0.5), model=model, accumulation=3)
    seen = []
    for batch in data:
        r = stepper.backward(loss_of(model, batch))
        seen.append(None if r is None else r.micro_batches)
    assert seen == [None, None, 3, None, None, 3, None]
    assert stepper.pending == 1
    last = stepper.flush()
    assert last is not None and last.stepped and last.micro_batches == 1 and last.step == 3
    assert stepper.flush() is None
    assert (stepper.step_count, stepper.micro_batch_count, stepper.pending) == (3, 7, 0)

    # The last window is averaged over its real size (1), not over 3.
    hand_accumulate(ref, torch.optim.SGD(ref.parameters(), lr=0.5), data, 3, lambda k: k)
    for p, q in zip(model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    opt_wrong = torch.optim.SGD(ref_wrong.parameters(), lr=0.5)
    hand_accumulate(ref_wrong, opt_wrong, data, 3, lambda k: 3)
    assert max_diff(model, ref_wrong) > 1e-3


def test_full_windows_are_bit_identical_to_hand_loop() -> None:
    data = batches(6)
    model = mlp()
    ref = copy_of(model)
    stepper = Stepper(torch.optim.AdamW(model.parameters(), lr=1e-2), accumulation=2)
    results = feed(stepper, model, data)
    assert [r.step for r in results] == [1, 2, 3]
    hand_accumulate(ref, torch.optim.AdamW(ref.parameters(), lr=1e-2), data, 2, lambda k: k)
    assert_same_state(model, ref)


def test_gradients_from_outside_a_window_are_not_accumulated() -> None:
    data = batches(2)
    model = mlp()
    ref = copy_of(model)
    stepper = Stepper(torch.optim.SGD(model.parameters(), lr=0.1))
    loss_of(model, data[0]).backward()  # stale gradients, e.g. from a probe
    stepper.backward(loss_of(model, data[1]))
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    loss_of(ref, data[1]).backward()
    opt.step()
    assert_same_state(model, ref)
    assert all(p.grad is None for p in model.parameters())


# ------------------------------------------------------------------------------------------
# Clipping and the reported norm
# ------------------------------------------------------------------------------------------


def test_clip_by_norm_matches_hand_loop_and_reports_pre_clip_norm() -> None:
    data = batches(4)
    model = mlp()
    ref = copy_of(model)
    stepper = Stepper(torch.optim.SGD(model.parameters(), lr=0.3), clip_norm=0.05)
    results = feed(stepper, model, data)

    opt = torch.optim.SGD(ref.parameters(), lr=0.3)
    norms = []
    for batch in data:
        opt.zero_grad()
        loss_of(ref, batch).backward()
        norms.append(torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.05).item())
        opt.step()
    assert_same_state(model, ref)
    assert [r.grad_norm for r in results] == pytest.approx(norms, rel=1e-6)
    assert min(norms) > 0.05  # clipping was active


def test_clip_by_value_matches_hand_loop() -> None:
    data = batches(3)
    model = mlp()
    ref = copy_of(model)
    stepper = Stepper(torch.optim.SGD(model.parameters(), lr=0.3), clip_value=0.01)
    results = feed(stepper, model, data)
    opt = torch.optim.SGD(ref.parameters(), lr=0.3)
    clipped_any = False
    for batch in data:
        opt.zero_grad()
        loss_of(ref, batch).backward()
        clipped_any |= any(p.grad.abs().max() > 0.01 for p in ref.parameters())
        torch.nn.utils.clip_grad_value_(ref.parameters(), 0.01)
        opt.step()
    assert clipped_any
    assert_same_state(model, ref)
    assert all(r.grad_norm > 0 for r in results)


# ------------------------------------------------------------------------------------------
# Mixed precision
# ------------------------------------------------------------------------------------------


def test_bf16_autocast_on_cpu_matches_hand_loop() -> None:
    data = batches(4)
    model = mlp()
    ref, initial = copy_of(model), copy_of(model)
    stepper = Stepper(torch.optim.AdamW(model.parameters(), lr=1e-2), amp="bf16", accumulation=2)
    assert stepper.scaler is None
    with stepper.autocast():
        assert model(data[0][0]).dtype == torch.bfloat16
    feed(stepper, model, data)
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-2)
    for start in (0, 2):
        opt.zero_grad()
        for batch in data[start : start + 2]:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_of(ref, batch)
            (loss / 2).backward()
        opt.step()
    assert_same_state(model, ref)
    assert max_diff(model, initial) > 0  # it trained


def test_fp16_with_grad_scaler_clips_after_unscaling() -> None:
    # torch supports float16 autocast and GradScaler on CPU: the CUDA path, testable here.
    data = batches(4)
    model = mlp()
    ref = copy_of(model)
    stepper = Stepper(torch.optim.SGD(model.parameters(), lr=0.3), amp="fp16", clip_norm=0.05)
    assert isinstance(stepper.scaler, torch.amp.GradScaler)
    results = feed(stepper, model, data)

    opt = torch.optim.SGD(ref.parameters(), lr=0.3)
    scaler = torch.amp.GradScaler("cpu")
    norms = []
    for batch in data:
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = loss_of(ref, batch)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        norms.append(torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.05).item())
        scaler.step(opt)
        scaler.update()
    assert_same_state(model, ref)
    assert [r.grad_norm for r in results] == pytest.approx(norms, rel=1e-6)
    assert max(norms) < 100  # unscaled (the loss scale is 65536)
    assert all(r.scale == 65536.0 for r in results)


def test_fp16_skipped_steps_do_not_advance_scheduler() -> None:
    data = batches(6)
    model = mlp()
    ref = copy_of(model)

    def parts(m: nn.Module) -> tuple[Any, Any, torch.amp.GradScaler]:
        opt = torch.optim.SGD(m.parameters(), lr=0.2, momentum=0.9)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
        # A scale this large overflows float16 gradients until it has backed off.
        return opt, sched, torch.amp.GradScaler("cpu", init_scale=2.0**20)

    opt, sched, scaler = parts(model)
    stepper = Stepper(opt, sched, model=model, amp="fp16", scaler=scaler)
    results = feed(stepper, model, data)
    skipped = [r for r in results if not r.stepped]
    assert skipped and len(skipped) < len(results)
    assert stepper.nonfinite_count == len(skipped)
    assert sched.last_epoch == stepper.step_count == len(results) - len(skipped)
    assert all(r.nonfinite_param is not None for r in skipped)

    ropt, rsched, rscaler = parts(ref)
    for batch in data:
        ropt.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss = loss_of(ref, batch)
        rscaler.scale(loss).backward()
        rscaler.unscale_(ropt)
        before = rscaler.get_scale()
        rscaler.step(ropt)
        rscaler.update()
        if rscaler.get_scale() >= before:  # the classic "did the scaler skip?" test
            rsched.step()
    assert_same_state(model, ref)
    assert rsched.last_epoch == sched.last_epoch
    assert rscaler.get_scale() == scaler.get_scale()


# ------------------------------------------------------------------------------------------
# Non-finite guard
# ------------------------------------------------------------------------------------------


def test_nonfinite_step_changes_nothing_and_names_first_bad_parameter() -> None:
    data = batches(4)
    model = mlp()
    ref = copy_of(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)
    stepper = Stepper(opt, sched, model=model, accumulation=2, ema_decay=0.5)

    feed(stepper, model, data[:2])  # one good step: the optimizer has state
    params_before = copy.deepcopy(model.state_dict())
    state_before = optimizer_tensors(opt)
    ema_before = copy.deepcopy(stepper.ema_model.state_dict())  # type: ignore[union-attr]
    lr_before = stepper.lrs

    # Only the last layer's weight gets a NaN gradient; "0.weight" comes first and is finite.
    poison = model[2].weight.sum() * float("nan")
    stepper.backward(loss_of(model, data[2]))
    r = stepper.backward(loss_of(model, data[3]) + poison)
    assert r is not None and not r.stepped and r.nonfinite_param == "2.weight"
    assert (stepper.nonfinite_count, stepper.last_nonfinite_param) == (1, "2.weight")
    assert stepper.step_count == 1 and sched.last_epoch == 1 and stepper.lrs == lr_before
    for k, v in params_before.items():
        assert torch.equal(model.state_dict()[k], v), k
    for a, b in zip(state_before, optimizer_tensors(opt), strict=True):
        assert torch.equal(a, b)
    for k, v in ema_before.items():
        assert torch.equal(stepper.ema_model.state_dict()[k], v), k  # type: ignore[union-attr]
    assert all(p.grad is None for p in model.parameters())

    # Training goes on as if the bad window had never happened.
    feed(stepper, model, data[:2])
    ropt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    rsched = torch.optim.lr_scheduler.StepLR(ropt, step_size=1, gamma=0.9)
    for _ in range(2):
        ropt.zero_grad()
        for batch in data[:2]:
            (loss_of(ref, batch) / 2).backward()
        ropt.step()
        rsched.step()
    assert_same_state(model, ref)


def test_nonfinite_name_without_model_uses_group_names() -> None:
    model = mlp()
    x, y = batches(1)[0]
    named = [
        {"params": [model[0].weight, model[0].bias], "param_names": ["w0", "b0"]},
        {"params": [model[2].weight, model[2].bias], "param_names": ["w2", "b2"]},
    ]
    stepper = Stepper(torch.optim.SGD(named, lr=0.1))
    r = stepper.backward(loss_of(model, (x, y)) + model[2].bias.sum() * float("inf"))
    assert r is not None and r.nonfinite_param == "b2"
    unnamed = [{"params": [model[0].weight, model[0].bias]}, {"params": [model[2].weight]}]
    stepper = Stepper(torch.optim.SGD(unnamed, lr=0.1))
    r = stepper.backward(loss_of(model, (x, y)) + model[2].weight.sum() * float("inf"))
    assert r is not None and r.nonfinite_param == "param_groups[1][0]"


# ------------------------------------------------------------------------------------------
# EMA and evaluation
# ------------------------------------------------------------------------------------------


def test_ema_equals_averaged_model_driven_by_hand() -> None:
    data = batches(6)
    model = mlp(norm=True)
    ref = copy_of(model)
    stepper = Stepper(torch.optim.SGD(model.parameters(), lr=0.2), model=model, ema_decay=0.8)
    assert isinstance(stepper.ema_model, AveragedModel)
    feed(stepper, model, data)

    opt = torch.optim.SGD(ref.parameters(), lr=0.2)
    ema = AveragedModel(ref, multi_avg_fn=get_ema_multi_avg_fn(0.8), use_buffers=True)
    for batch in data:
        opt.zero_grad()
        loss_of(ref, batch).backward()
        opt.step()
        ema.update_parameters(ref)
    assert_same_state(stepper.ema_model, ema)
    assert int(stepper.ema_model.n_averaged) == 6
    assert max_diff(stepper.ema_model.module, model) > 0  # it averages, it does not copy


def test_evaluate_switches_modes_and_restores_them() -> None:
    model = mlp(norm=True)
    stepper = Stepper(torch.optim.SGD(model.parameters(), lr=0.1), model=model, ema_decay=0.9)
    model.train()
    with stepper.evaluate() as net:
        assert net is model and not model.training and not torch.is_grad_enabled()
        assert stepper.evaluating
        with torch.enable_grad():
            loss = loss_of(model, batches(1)[0])
        with pytest.raises(RuntimeError, match=r"inside stepper\.evaluate"):
            stepper.backward(loss)
    assert model.training and torch.is_grad_enabled() and not stepper.evaluating
    model.eval()
    with stepper.evaluate():
        pass
    assert not model.training  # restored to what it was
    with stepper.evaluate(ema=True) as net:
        assert net is stepper.ema_model and not net.training
    with pytest.raises(KeyError), stepper.evaluate():
        raise KeyError("boom")
    assert not stepper.evaluating


class AveragingSGD(torch.optim.Optimizer):
    """Test double of a schedule-free optimizer: SGD whose evaluation weights are the running
    mean of its iterates. ``train()`` / ``eval()`` swap the parameters between the two and
    are idempotent; stepping in eval mode is an error, as it is for schedule-free."""

    def __init__(self, params: Any, lr: float = 0.1) -> None:
        super().__init__(params, {"lr": lr})
        self.mode = "eval"  # like schedule-free: the caller must call train() first

    def _params(self) -> Iterator[Tensor]:
        for group in self.param_groups:
            yield from group["params"]

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        assert self.mode == "train", "stepped in eval mode"
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                p.add_(p.grad, alpha=-group["lr"])
                st = self.state[p]
                st["n"] = st.get("n", 0) + 1
                st.setdefault("mean", torch.zeros_like(p)).lerp_(p, 1 / st["n"])

    @torch.no_grad()
    def eval(self) -> None:
        if self.mode == "train":
            for p in self._params():
                st = self.state[p]
                st["train_value"] = p.clone()
                if "mean" in st:
                    p.copy_(st["mean"])
        self.mode = "eval"

    @torch.no_grad()
    def train(self) -> None:
        if self.mode == "eval":
            for p in self._params():
                if "train_value" in self.state[p]:
                    p.copy_(self.state[p].pop("train_value"))
        self.mode = "train"


def test_train_eval_optimizer_is_switched_around_evaluation() -> None:
    data = batches(3)
    model = mlp()
    opt = AveragingSGD(model.parameters(), lr=0.1)
    assert has_train_eval_modes(opt) and not has_train_eval_modes(
        torch.optim.SGD([nn.Parameter(torch.ones(1))])
    )
    stepper = Stepper(opt, model=model)
    assert opt.mode == "train"  # the stepper puts it in train mode
    feed(stepper, model, data)
    train_weights = copy.deepcopy(model.state_dict())
    with stepper.evaluate() as net:
        assert opt.mode == "eval"
        with stepper.evaluate():  # nested: still eval, and the outer block restores
            assert opt.mode == "eval"
        assert opt.mode == "eval"
        for name, p in net.named_parameters():
            assert torch.equal(p, opt.state[p]["mean"]), name
            assert not torch.equal(p, train_weights[name]), name
    assert opt.mode == "train"
    assert_same_state(model, _with_state(mlp(), train_weights))
    feed(stepper, model, data)  # stepping after evaluation works (train mode)
    assert stepper.step_count == 6


def test_schedule_free_adamw_evaluates_at_its_averaged_weights() -> None:
    data = batches(4)
    model = mlp()
    opt = ScheduleFreeAdamW(model.parameters(), lr=1e-2, warmup_steps=2)
    opt.eval()  # the stepper must put it back in train mode before stepping
    stepper = Stepper(opt, model=model)
    assert opt.training
    feed(stepper, model, data)
    y = copy.deepcopy(model.state_dict())
    with stepper.evaluate() as net:
        assert not opt.training
        x = {n: p.detach().clone() for n, p in net.named_parameters()}
    assert opt.training
    assert_same_state(model, _with_state(mlp(), y))  # back at the training point y
    # the weights seen inside evaluate() are the optimizer's own eval weights (x)
    opt.eval()
    for name, p in model.named_parameters():
        assert torch.equal(p, x[name]), name
        assert not torch.equal(p, y[name]), name
    opt.train()
    feed(stepper, model, data)
    assert stepper.step_count == 8


def _with_state(model: nn.Module, state: dict[str, Tensor]) -> nn.Module:
    model.load_state_dict(state)
    return model


# ------------------------------------------------------------------------------------------
# Logging, state and bad input
# ------------------------------------------------------------------------------------------


def test_per_group_lrs_and_step_count() -> None:
    model = mlp()
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.1}, {"params": model[2].parameters()}], lr=0.01
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    stepper = Stepper(opt, sched, model=model)
    assert stepper.lrs == [0.1, 0.01]
    results = feed(stepper, model, batches(2))
    assert [r.lrs for r in results] == [(0.1, 0.01), (0.05, 0.005)]  # the LR each step used
    assert stepper.lrs == [0.025, 0.0025] and stepper.step_count == 2


def test_state_dict_round_trip_and_mid_window_refusal() -> None:
    model = mlp()
    stepper = Stepper(torch.optim.SGD(model.parameters(), lr=0.1), accumulation=2)
    feed(stepper, model, batches(3))
    bad = loss_of(model, batches(1)[0]) + model[0].bias.sum() * float("nan")
    stepper.backward(bad)
    stepper.flush()
    state = stepper.state_dict()
    assert state == {
        "step_count": 2,
        "micro_batch_count": 4,
        "nonfinite_count": 1,
        "last_nonfinite_param": "param_groups[0][1]",
    }
    other = Stepper(torch.optim.SGD(model.parameters(), lr=0.1), accumulation=2)
    other.load_state_dict(state)
    assert other.state_dict() == state
    with pytest.raises(ValueError, match="step_count"):
        other.load_state_dict({**state, "step_count": -1})
    with pytest.raises(ValueError, match="expected keys"):
        other.load_state_dict({"step_count": 1})
    assert other.state_dict() == state
    stepper.backward(loss_of(model, batches(1)[0]))
    with pytest.raises(RuntimeError, match="accumulated"):
        stepper.state_dict()
    with pytest.raises(RuntimeError, match="accumulated"):
        stepper.load_state_dict(state)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"accumulation": 0}, "accumulation: 0"),
        ({"accumulation": 2.0}, "accumulation: 2.0"),
        ({"accumulation": True}, "accumulation: True"),
        ({"clip_norm": -1.0}, "clip_norm: -1.0"),
        ({"clip_value": 0.0}, "clip_value: 0.0"),
        ({"clip_norm": 1.0, "clip_value": 1.0}, "choose one"),
        ({"amp": "fp32"}, "amp: 'fp32'"),
        ({"amp": True}, "amp: True"),
        ({"ema_decay": 1.0}, "ema_decay: 1.0"),
        ({"ema_decay": 0.9, "model": None}, "needs the model"),
        ({"amp": "bf16", "scaler": torch.amp.GradScaler("cpu")}, "only used with amp='fp16'"),
        ({"model": nn.Linear(2, 2)}, "do not match"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    model = mlp()
    with pytest.raises(ValueError, match=match):
        Stepper(torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)


def test_bad_scheduler_and_loss_are_refused() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        Stepper(opt, plateau)
    other = torch.optim.SGD(mlp().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="another optimizer"):
        Stepper(opt, torch.optim.lr_scheduler.StepLR(other, 1))
    stepper = Stepper(opt)
    x, y = batches(1)[0]
    with pytest.raises(ValueError, match="scalar"):
        stepper.backward(F.cross_entropy(model(x), y, reduction="none"))
    with torch.no_grad():
        frozen = loss_of(model, (x, y))
    with pytest.raises(ValueError, match="does not require grad"):
        stepper.backward(frozen)
    with pytest.raises(ValueError, match="pass model="), stepper.evaluate():
        pass
    assert stepper.micro_batch_count == 0
