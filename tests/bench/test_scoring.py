from __future__ import annotations

import math

import pytest

from optiwise.bench import get_workload
from optiwise.bench.protocol import OptimizerResult, SweepConfig, SweepResult
from optiwise.bench.scoring import (
    TAU_MAX,
    lr_sensitivity,
    performance_profile,
    profile_area,
    ratios_to_best,
    score_sweep,
)
from tests.bench.helpers import fake_result

INF = math.inf


def test_ratios_to_best() -> None:
    assert ratios_to_best({"a": 100.0, "b": 250.0, "c": INF}) == {"a": 1.0, "b": 2.5, "c": INF}
    nan = ratios_to_best({"a": INF, "b": INF})
    assert all(math.isnan(v) for v in nan.values())


def test_profile_area_is_the_exact_integral_of_the_step_function() -> None:
    # rho(tau) = 1/3 on [1, 2), 2/3 on [2, 4]: area = (1/3 * 1 + 2/3 * 2) / 3 = 5/9
    assert profile_area([1.0, 2.0, INF]) == pytest.approx(5 / 9)
    assert profile_area([1.0, 1.0]) == 1.0
    assert profile_area([INF, 5.0]) == 0.0
    assert math.isnan(profile_area([math.nan]))
    # numerical check of the closed form
    ratios = [1.0, 1.7, 3.2, INF]
    taus = [1 + i * (TAU_MAX - 1) / 30000 for i in range(30001)]
    table = {f"w{i}": {"x": r, "best": 1.0} for i, r in enumerate(ratios)}
    rho = performance_profile(table, taus)["x"]
    numeric = sum(rho[:-1]) * (TAU_MAX - 1) / 30000 / (TAU_MAX - 1)
    assert profile_area(ratios) == pytest.approx(numeric, abs=1e-3)
    with pytest.raises(ValueError, match="tau_max"):
        profile_area([1.0], tau_max=1.0)


def test_performance_profile_counts_workloads_within_tau() -> None:
    ratios = {
        "w1": {"a": 1.0, "b": 2.0},
        "w2": {"a": 3.0, "b": 1.0},
        "w3": {"a": math.nan, "b": math.nan},  # nobody reached the target: left out
        "w4": {"a": 1.0},  # b missing: counts as a failure
    }
    prof = performance_profile(ratios, [1.0, 2.0, 3.0])
    assert prof["a"] == pytest.approx([2 / 3, 2 / 3, 1.0])
    assert prof["b"] == pytest.approx([1 / 3, 2 / 3, 2 / 3])


def test_lr_sensitivity_width_in_decades() -> None:
    runs = [fake_result("sgd", lr, 0.1) for lr in (0.01, 0.1, 1.0, 10.0)]
    assert lr_sensitivity(runs, [False, True, True, False]) == (2, pytest.approx(1.0))
    count, width = lr_sensitivity(runs, [False] * 4)
    assert count == 0 and math.isnan(width)


def test_score_sweep_uses_medians_over_seeds() -> None:
    w = get_workload("digits-mlp")
    cfg = SweepConfig("digits-mlp", ("sgd", "adamw"), seeds=3).validated()
    sgd = OptimizerResult(
        "sgd",
        [fake_result("sgd", 0.1, 0.96, steps_to_target=100), fake_result("sgd", 1.0, math.nan)],
        0.1,
        [
            fake_result("sgd", 0.1, 0.96, seed=1, steps_to_target=100, time_to_target=2.0),
            fake_result("sgd", 0.1, 0.95, seed=2, steps_to_target=120, time_to_target=2.4),
            fake_result("sgd", 0.1, 0.94, seed=3),
        ],
    )
    adamw = OptimizerResult(
        "adamw",
        [fake_result("adamw", 1e-3, 0.97, steps_to_target=50)],
        1e-3,
        [
            fake_result("adamw", 1e-3, 0.97, seed=s, steps_to_target=st, time_to_target=t)
            for s, st, t in ((1, 50, 1.0), (2, 60, 1.5), (3, 400, 9.0))
        ],
    )
    sweep = SweepResult(cfg, w, "digits-mlp|fabricated", [sgd, adamw], True, [])
    s, a = score_sweep(sweep)
    assert s.steps_to_target == 120 and a.steps_to_target == 60  # median with a miss = inf
    assert s.ratio == pytest.approx(2.0) and a.ratio == 1.0
    assert s.reached == 2 and a.reached == 3 and s.seeds == 3
    assert s.final_metric == pytest.approx(0.95) and s.final_metric_std == pytest.approx(0.01)
    assert s.diverged_tuning == 1 and s.good_lrs == 1 and s.lr_width == 0.0
    s_time, _ = score_sweep(sweep, "time")
    assert s_time.ratio == pytest.approx(2.4 / 1.5)
    with pytest.raises(ValueError, match="measure"):
        score_sweep(sweep, "wallclock")  # type: ignore[arg-type]
