"""Faults injected into small real runs on digits: the diagnosis must rank the injected cause
first, and a healthy run must get no major finding."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from optiwise.audit.findings import Severity
from optiwise.monitor import CAUSES, RunLog, diagnose_log
from tests.monitor.workloads import PixelRNN, RowTransformer, mlp, train


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """The runs in one torch thread: a fault's trajectory (when a loss blows up, where a
    gradient spikes) depends on the bits of every sum, which depend on the thread count;
    with two threads the 8-layer transformer without warmup spikes at step 28 instead of
    blowing up at step 3, and is diagnosed as exploding gradients."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _first(monitor: object) -> tuple[str | None, list[str]]:
    findings = monitor.diagnose()  # type: ignore[attr-defined]
    causes = [f"{f.cause}:{f.severity.value}" for f in findings]
    assert findings, "no finding at all"
    return findings[0].cause, causes


def _major(monitor: object) -> list[str]:
    return [
        f"{f.cause}: {f.message}"
        for f in monitor.diagnose()  # type: ignore[attr-defined]
        if f.severity.at_least(Severity.MAJOR)
    ]


def test_healthy_adam_run_has_no_major_finding() -> None:
    model = mlp()
    mon = train(model, torch.optim.Adam(model.parameters(), lr=1e-3), steps=300, val_every=50)
    assert _major(mon) == []


def test_healthy_sgd_run_has_no_major_finding() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    mon = train(model, opt, steps=300)
    assert _major(mon) == []


def test_lr_100x_too_high_is_ranked_first() -> None:
    model = mlp()
    mon = train(model, torch.optim.Adam(model.parameters(), lr=1e-1), steps=300, val_every=50)
    first, causes = _first(mon)
    assert first == "lr_too_high", causes
    f = mon.diagnose()[0]
    assert f.severity.at_least(Severity.MAJOR)
    assert "1e-03" in f.fix or "0.001" in f.fix, f.fix  # Adam's default LR from knowledge


def test_lr_divergence_to_nan_is_lr_first_then_numerics() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=10.0, momentum=0.9, nesterov=True)
    mon = train(model, opt, steps=60)
    findings = mon.diagnose()
    assert findings[0].cause == "lr_too_high", [f.cause for f in findings]
    assert findings[0].severity is Severity.CRITICAL
    nonfinite = [f for f in findings if f.cause == "non_finite"]
    assert nonfinite and nonfinite[0].data["consequence_of"] == "lr_too_high"


def test_lr_1000x_too_low_is_ranked_first() -> None:
    model = mlp()
    mon = train(model, torch.optim.Adam(model.parameters(), lr=1e-6), steps=200)
    first, causes = _first(mon)
    assert first == "lr_too_low", causes
    f = mon.diagnose()[0]
    assert f.data["median_update_ratio"] < 1e-4
    assert "0.001" in f.fix, f.fix


def test_missing_zero_grad_is_ranked_first() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    mon = train(model, opt, steps=200, zero_grad=False)
    first, causes = _first(mon)
    assert first == "missing_zero_grad", causes
    assert mon.diagnose()[0].code == "OW501"  # the linter's code for the same mistake


def test_fp16_overflow_is_ranked_first() -> None:
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    mon = train(model, opt, steps=200, scaler=scaler, inf_every=4)
    first, causes = _first(mon)
    assert first == "non_finite", causes
    f = mon.diagnose()[0]
    assert f.data["skipped"] >= 40
    assert "bf16" in f.fix


def test_exploding_rnn_without_clipping_is_ranked_first() -> None:
    model = PixelRNN()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    mon = train(model, opt, steps=120)
    first, causes = _first(mon)
    assert first == "exploding_gradients", causes
    assert "max_norm=1.0" in mon.diagnose()[0].fix


def test_frozen_layer_is_ranked_first() -> None:
    model = mlp()
    model[2].requires_grad_(False)  # the middle layer, still in the optimizer
    mon = train(model, torch.optim.Adam(model.parameters(), lr=1e-3), steps=150)
    first, causes = _first(mon)
    assert first == "dead_parameters", causes
    f = mon.diagnose()[0]
    assert set(f.data["never_grad"]) == {"2.weight", "2.bias"}


def test_layer_left_out_of_the_optimizer_is_dead() -> None:
    model = mlp()
    params = [p for n, p in model.named_parameters() if not n.startswith("4.")]
    mon = train(model, torch.optim.Adam(params, lr=1e-3), steps=100)
    first, causes = _first(mon)
    assert first == "dead_parameters", causes
    assert set(mon.diagnose()[0].data["not_in_optimizer"]) == {"4.weight", "4.bias"}


@pytest.mark.parametrize(("layers", "lr"), [(6, 1e-2), (8, 5e-3)])
def test_no_warmup_on_a_transformer_is_ranked_first(layers: int, lr: float) -> None:
    model = RowTransformer(layers=layers, dim=64)
    mon = train(model, torch.optim.Adam(model.parameters(), lr=lr), steps=150, batch=32)
    first, causes = _first(mon)
    assert first == "warmup_missing", causes
    assert "warmup=10" in mon.diagnose()[0].fix


def test_the_same_transformer_with_warmup_is_healthy() -> None:
    model = RowTransformer(layers=8, dim=64)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    mon = train(model, opt, steps=150, batch=32, warmup=30)
    assert _major(mon) == []


def test_overfitting_on_a_tiny_training_set() -> None:
    model = mlp(hidden=128)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    mon = train(model, opt, steps=300, batch=32, train_subset=60, val_every=25)
    first, causes = _first(mon)
    assert first == "overfitting", causes
    f = mon.diagnose()[0]
    assert f.data["last_val"] > f.data["best_val"]


def test_every_cause_is_documented() -> None:
    assert {
        "lr_too_high",
        "lr_too_low",
        "warmup_missing",
        "non_finite",
        "exploding_gradients",
        "dead_parameters",
        "overfitting",
        "plateau",
        "batch_too_small",
        "vanishing_gradients",
        "missing_zero_grad",
    } <= set(CAUSES)
    steps = [c.step for c in CAUSES.values()]
    order = ["learning rate", "numerics", "batch size", "gradients", "optimizer"]
    assert steps == sorted(steps, key=order.index)  # the seeds' debugging order


def test_batch_of_two_is_too_noisy() -> None:
    model = mlp()
    mon = train(model, torch.optim.Adam(model.parameters(), lr=1e-3), steps=300, batch=2)
    first, causes = _first(mon)
    assert first == "batch_too_small", causes
    assert "raise the batch to 8" in mon.diagnose()[0].fix


def test_deep_sigmoid_stack_has_vanishing_gradients() -> None:
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = [torch.nn.Linear(64, 32), torch.nn.Sigmoid()]
    for _ in range(8):
        layers += [torch.nn.Linear(32, 32), torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(32, 10))
    mon = train(model, torch.optim.SGD(model.parameters(), lr=0.1), steps=100)
    causes = [f.cause for f in mon.diagnose()]
    assert "vanishing_gradients" in causes, causes
    f = next(f for f in mon.diagnose() if f.cause == "vanishing_gradients")
    assert f.data["worst"] == "0.weight"  # the first layer, farthest from the loss


def _curve(values: list[float], lr: float = 1e-3) -> RunLog:
    log = RunLog()
    for step, v in enumerate(values, start=1):
        log.add("loss", step, v)
        log.add("lr/0", step, lr)
    return log


def test_a_flat_second_half_is_a_plateau_and_a_falling_one_is_not() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.01, 300)
    falling = [2.3 - 1.1 * min(1.0, s / 100) + n for s, n in enumerate(noise)]
    findings = diagnose_log(_curve(falling, lr=0.02))
    assert [f.cause for f in findings] == ["plateau"]
    assert findings[0].data["since_step"] == 151
    assert "0.002" in findings[0].fix  # the LR cut 10x
    still = [2.3 * 0.997**s + n for s, n in enumerate(noise)]
    assert diagnose_log(_curve(still)) == []


def test_short_and_all_nan_logs() -> None:
    for n in (1, 2, 5):
        assert diagnose_log(_curve([2.0 / s for s in range(1, n + 1)])) == []
    findings = diagnose_log(_curve([float("nan")] * 30))
    assert [(f.cause, f.severity) for f in findings] == [("non_finite", Severity.CRITICAL)]
    assert findings[0].data["first_step"] == 1
