from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import pytest
import torch
from torch.optim import lr_scheduler as tls

from optiwise import create_scheduler, lr_curve
from optiwise.schedules import MAX_CURVE_STEPS, SCHEDULES, lr_samples, resolve_warmup

BASES = (0.1, 0.025)  # two param groups with different base LRs
T, W = 40, 6


def make_opt() -> torch.optim.Optimizer:
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
    return torch.optim.SGD(
        [{"params": [a], "lr": BASES[0]}, {"params": [b], "lr": BASES[1]}], lr=1.0
    )


def run(
    sched_fn: Callable[[torch.optim.Optimizer], tls.LRScheduler],
    steps: int = T,
) -> list[list[float]]:
    opt = make_opt()
    sched = sched_fn(opt)
    seen = []
    for _ in range(steps):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return seen


def warm(t: int, w: int) -> float:
    return (t + 1) / w


def cos_form(t: int, r: float = 0.0) -> float:
    if t < W:
        return warm(t, W)
    p = min(1.0, (t - W) / (T - W))
    return r + (1 - r) * (1 + math.cos(math.pi * p)) / 2


def lin_form(t: int, r: float = 0.0) -> float:
    if t < W:
        return warm(t, W)
    p = min(1.0, (t - W) / (T - W))
    return r + (1 - r) * (1 - p)


def poly_form(t: int, power: float, r: float) -> float:
    if t < W:
        return warm(t, W)
    p = min(1.0, (t - W) / (T - W))
    return r + (1 - r) * (1 - p) ** power


def wsd_form(t: int, d: int, shape: str, r: float) -> float:
    if t < W:
        return warm(t, W)
    if t < T - d:
        return 1.0
    p = min(1.0, (t - (T - d)) / d)
    f = {"linear": 1 - p, "cosine": (1 + math.cos(math.pi * p)) / 2, "1-sqrt": 1 - math.sqrt(p)}[
        shape
    ]
    return r + (1 - r) * f


def isqrt_form(t: int) -> float:
    return warm(t, W) if t < W else math.sqrt(W / t)


CASES: list[tuple[str, dict, Callable[[int], float]]] = [
    ("warmup_cosine", {}, lambda t: cos_form(t)),
    ("warmup_cosine", {"min_lr_ratio": 0.1}, lambda t: cos_form(t, 0.1)),
    ("warmup_linear", {}, lambda t: lin_form(t)),
    ("warmup_linear", {"min_lr_ratio": 0.2}, lambda t: lin_form(t, 0.2)),
    ("warmup_poly", {"power": 2.0, "min_lr_ratio": 0.05}, lambda t: poly_form(t, 2.0, 0.05)),
    ("wsd", {"decay": 10}, lambda t: wsd_form(t, 10, "linear", 0.0)),
    (
        "wsd",
        {"decay": 0.25, "cooldown": "cosine", "min_lr_ratio": 0.1},
        lambda t: wsd_form(t, 10, "cosine", 0.1),
    ),
    ("wsd", {"decay": 10, "cooldown": "1-sqrt"}, lambda t: wsd_form(t, 10, "1-sqrt", 0.0)),
    ("inverse_sqrt", {}, isqrt_form),
    ("warmup_constant", {}, lambda t: warm(t, W) if t < W else 1.0),
]


@pytest.mark.parametrize("name, kwargs, form", CASES)
def test_closed_form_every_step_every_group(
    name: str, kwargs: dict, form: Callable[[int], float]
) -> None:
    seen = run(lambda o: create_scheduler(name, o, total_steps=T, warmup=W, **kwargs), steps=T + 5)
    for t, lrs in enumerate(seen):
        for base, lr in zip(BASES, lrs, strict=True):
            assert lr == pytest.approx(base * form(t), rel=1e-12, abs=1e-15), (t, lr)


def test_after_total_steps_stays_at_floor() -> None:
    seen = run(
        lambda o: create_scheduler("warmup_cosine", o, total_steps=T, warmup=W, min_lr_ratio=0.1),
        steps=T + 20,
    )
    assert seen[-1][0] == pytest.approx(BASES[0] * 0.1)


TORCH_CASES: list[tuple[str, dict, Callable[[int], float]]] = [
    ("step", {"step_size": 7, "gamma": 0.5}, lambda s: 0.5 ** (s // 7)),
    (
        "multistep",
        {"milestones": [5, 20], "gamma": 0.1},
        lambda s: 0.1 ** sum(s >= m for m in (5, 20)),
    ),
    ("exponential", {"gamma": 0.9}, lambda s: 0.9**s),
    ("cosine", {}, lambda s: (1 + math.cos(math.pi * s / (T - W))) / 2),
    ("polynomial", {"power": 2.0}, lambda s: (1 - min(s, T - W) / (T - W)) ** 2),
    (
        "cosine_restarts",
        {"T_0": 10, "T_mult": 1},
        lambda s: (1 + math.cos(math.pi * (s % 10) / 10)) / 2,
    ),
]


@pytest.mark.parametrize("warmup", [0, W])
@pytest.mark.parametrize("name, kwargs, form", TORCH_CASES)
def test_torch_schedules_with_and_without_warmup(
    name: str, kwargs: dict, form: Callable[[int], float], warmup: int
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "step before optimizer.step" warnings
        seen = run(lambda o: create_scheduler(name, o, total_steps=T, warmup=warmup, **kwargs))
    for t, lrs in enumerate(seen):
        expected = warm(t, warmup) if t < warmup else form(t - warmup)
        if name in ("cosine", "polynomial") and not warmup:
            total = T
            s = t
            expected = (
                (1 + math.cos(math.pi * s / total)) / 2
                if name == "cosine"
                else (1 - min(s, total) / total) ** 2
            )
        for base, lr in zip(BASES, lrs, strict=True):
            assert lr == pytest.approx(base * expected, rel=1e-9, abs=1e-15), (t, lr)


def test_onecycle_uses_group_lrs_as_peaks_and_warmup_as_pct_start() -> None:
    opt = make_opt()
    sched = create_scheduler("onecycle", opt, total_steps=T, warmup=10)
    assert isinstance(sched, tls.OneCycleLR)
    lrs = []
    for _ in range(T):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = max(range(T), key=lambda i: lrs[i])
    assert lrs[peak] == pytest.approx(BASES[0])
    assert peak == 9  # pct_start * total_steps - 1


def test_plateau_reduces_on_metric_and_refuses_warmup() -> None:
    opt = make_opt()
    sched = create_scheduler("plateau", opt, factor=0.5, patience=0)
    sched.step(1.0)
    sched.step(2.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(BASES[0] / 2)
    with pytest.raises(ValueError, match="takes no warmup"):
        create_scheduler("plateau", make_opt(), warmup=3)


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("warmup_cosine", {"min_lr_ratio": 0.1}),
        ("warmup_linear", {}),
        ("wsd", {"decay": 8}),
        ("warmup_poly", {"power": 0.5}),
        ("inverse_sqrt", {}),
        ("warmup_constant", {}),
        ("cosine", {}),
        ("step", {"step_size": 5}),
        ("onecycle", {}),
        ("cosine_restarts", {"T_0": 7, "T_mult": 2}),
    ],
)
def test_resume_gives_exactly_the_uninterrupted_lrs(name: str, kwargs: dict) -> None:
    warmup = 0 if name == "onecycle" else W
    full = run(lambda o: create_scheduler(name, o, total_steps=T, warmup=warmup, **kwargs))

    opt = make_opt()
    sched = create_scheduler(name, opt, total_steps=T, warmup=warmup, **kwargs)
    first = []
    for _ in range(17):
        first.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    opt_state, sched_state = opt.state_dict(), sched.state_dict()

    opt2 = make_opt()
    sched2 = create_scheduler(name, opt2, total_steps=T, warmup=warmup, **kwargs)
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(sched_state)
    rest = []
    for _ in range(T - 17):
        rest.append([g["lr"] for g in opt2.param_groups])
        opt2.step()
        sched2.step()
    assert first + rest == full  # exact equality, not approx


def test_our_schedules_compose_with_sequential_lr() -> None:
    opt = make_opt()
    a = create_scheduler("warmup_constant", opt, warmup=4)
    b = tls.ExponentialLR(opt, gamma=0.5)
    seq = tls.SequentialLR(opt, [a, b], milestones=[4])
    lrs = []
    for _ in range(7):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        seq.step()
    assert lrs == pytest.approx([0.1 * f for f in (0.25, 0.5, 0.75, 1.0, 1.0, 0.5, 0.25)])


def test_warmup_as_fraction() -> None:
    assert resolve_warmup(0.1, 1000) == 100
    assert resolve_warmup(25, 1000) == 25
    a = lr_curve("warmup_cosine", total_steps=200, warmup=0.05)
    b = lr_curve("warmup_cosine", total_steps=200, warmup=10)
    assert a == b


def test_lr_curve_covers_every_name() -> None:
    for name in SCHEDULES:
        kwargs: dict = {}
        if name == "step":
            kwargs = {"step_size": 10}
        elif name == "multistep":
            kwargs = {"milestones": [10]}
        elif name == "exponential":
            kwargs = {"gamma": 0.99}
        elif name == "cosine_restarts":
            kwargs = {"T_0": 10}
        lrs = lr_curve(name, total_steps=50, lr=0.5, **kwargs)
        assert len(lrs) == 50 and max(lrs) <= 0.5 + 1e-12 and min(lrs) >= 0


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda o: create_scheduler("warmup_cosine", o, total_steps=10, warmup=10),
            "warmup of 10 steps does not fit a run of 10",
        ),
        (
            lambda o: create_scheduler("warmup_cosine", o, total_steps=10, warmup=1.5),
            "Invalid warmup fraction: 1.5",
        ),
        (
            lambda o: create_scheduler("warmup_cosine", o, total_steps=10, warmup=-1),
            "Invalid warmup: -1",
        ),
        (lambda o: create_scheduler("warmup_cosine", o), "needs total_steps"),
        (lambda o: create_scheduler("warmup_cosine", o, total_steps=0), "Invalid total_steps: 0"),
        (
            lambda o: create_scheduler("warmup_cosine", o, total_steps=10, min_lr_ratio=2),
            "Invalid min_lr_ratio: 2",
        ),
        (
            lambda o: create_scheduler("wsd", o, total_steps=10, warmup=5, decay=6),
            r"warmup \(5\) \+ decay \(6\)",
        ),
        (lambda o: create_scheduler("wsd", o, total_steps=10, cooldown="exp"), "Invalid cooldown"),
        (lambda o: create_scheduler("warmup_poly", o, total_steps=10, power=0), "Invalid power"),
        (lambda o: create_scheduler("cosinus", o, total_steps=10), "did you mean 'cosine'"),
    ],
)
def test_bad_input(call: Callable, match: str) -> None:
    opt = make_opt()
    with pytest.raises(ValueError, match=match):
        call(opt)
    assert [g["lr"] for g in opt.param_groups] == list(BASES)


OURS = {
    "warmup_cosine": {"warmup": 7, "min_lr_ratio": 0.1},
    "warmup_linear": {"warmup": 0.1},
    "warmup_poly": {"warmup": 5, "power": 2.0},
    "wsd": {"warmup": 5, "decay": 0.3, "cooldown": "cosine"},
    "inverse_sqrt": {"warmup": 9},
    "warmup_constant": {"warmup": 4},
}


@pytest.mark.parametrize("name", sorted(OURS))
def test_closed_form_curve_equals_stepping_the_scheduler(name: str) -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
    sched = create_scheduler(name, opt, total_steps=120, **OURS[name])
    stepped = []
    for _ in range(120):
        stepped.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lr_curve(name, total_steps=120, lr=0.3, **OURS[name]) == pytest.approx(stepped)
    steps, lrs = lr_samples(name, total_steps=120, points=16, lr=0.3, **OURS[name])
    assert steps[0] == 0 and steps[-1] == 119 and len(steps) < 120
    assert lrs == pytest.approx([stepped[t] for t in steps])
    assert max(lrs) == pytest.approx(max(stepped))  # the warmup's end is always sampled


def test_samples_of_a_run_too_long_to_step_through() -> None:
    total, warm = 10**11, 5 * 10**9
    steps, lrs = lr_samples(
        "warmup_cosine", total_steps=total, warmup=0.05, min_lr_ratio=0.1, include=[total // 3]
    )
    assert steps == sorted(set(steps)) and steps[0] == 0 and steps[-1] == total - 1
    assert {warm - 1, warm, total // 3} <= set(steps) and len(steps) <= 2048 + 3
    assert max(lrs) == 1.0 and lrs[-1] == pytest.approx(0.1)
    p = (total // 3 - warm) / (total - warm)
    assert lrs[steps.index(total // 3)] == pytest.approx(
        0.1 + 0.9 * (1 + math.cos(math.pi * p)) / 2
    )
    wsd_steps, _ = lr_samples("wsd", total_steps=total, decay=0.2, points=10)
    assert {total - total // 5 - 1, total - total // 5} <= set(wsd_steps)


def test_long_runs_are_refused_with_the_value_where_they_cannot_be_sampled() -> None:
    with pytest.raises(
        ValueError, match=r"total_steps=100000000000 is too many for schedule 'cosine'"
    ):
        lr_samples("cosine", total_steps=10**11)
    with pytest.raises(ValueError, match=r"total_steps=1000001 is too many steps to list"):
        lr_curve("warmup_cosine", total_steps=MAX_CURVE_STEPS + 1)
    steps, lrs = lr_samples("cosine", total_steps=5000, points=50, warmup=100)
    full = lr_curve("cosine", total_steps=5000, warmup=100)
    assert len(steps) == 52 and lrs == pytest.approx([full[t] for t in steps])
    with pytest.raises(ValueError, match="Invalid step in include: 10"):
        lr_samples("warmup_cosine", total_steps=10, include=[10])
    with pytest.raises(ValueError, match="Invalid points: 1"):
        lr_samples("warmup_cosine", total_steps=10, points=1)
