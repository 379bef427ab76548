from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import optiwise
from optiwise import knowledge
from optiwise.tune import TuneResult, plan_rungs, trial_warmup, tune
from optiwise.tune.search import Trial, _vertex


def _data(n: int = 1024, batch: int = 32) -> tuple[list[Any], list[Any]]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=gen)
    w = torch.randn(6, 1, generator=gen)
    y = torch.tanh(x @ w) + 0.1 * torch.randn(n, 1, generator=gen)
    cut = 3 * n // 4
    train = [(x[i : i + batch], y[i : i + batch]) for i in range(0, cut, batch)]
    val = [(x[i : i + 64], y[i : i + 64]) for i in range(cut, n, 64)]
    return train, val


def make_mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 1))


@pytest.fixture(scope="module")
def small() -> TuneResult:
    train, val = _data()
    return tune(make_mlp, train, loss_fn=F.mse_loss, val_data=val, total_steps=1000)


def test_budget_is_never_exceeded_and_counted_exactly(small: TuneResult) -> None:
    assert small.budget_steps == 1000
    assert 0 < small.spent_steps <= small.budget_steps
    trial_steps = sum(t.spent for t in small.trials)
    # the rest is the range test, at most its planned steps
    plan = plan_rungs(1000, 1000)
    assert 0 <= small.spent_steps - trial_steps <= plan.range_steps
    assert plan.steps() <= 1000


def test_result_has_rows_fit_and_recipe(small: TuneResult) -> None:
    rows = small.rows
    assert {"lr", "optimizer", "steps", "score", "diverged"} <= set(rows[0])
    rungs = sorted({t.rung for t in small.trials})
    assert rungs == list(range(len(rungs))) and len(rungs) >= 2
    # later rungs train longer
    steps = [next(t.steps for t in small.trials if t.rung == r) for r in rungs]
    assert steps == sorted(steps) and steps[-1] == 3 * steps[-2]
    fit = small.fits[small.optimizer]
    assert math.isclose(small.lr, fit.lr(1000))
    lo, hi = knowledge.TUNE_HORIZON_EXPONENT_RANGE.value
    assert lo <= fit.slope <= hi
    assert small.recipe.hparams["lr"] == small.lr
    assert small.recipe.choices["optimizer.lr"].source == "optiwise.tune"
    # the chosen LR is a sensible Adam LR for this task, not the grid's edge
    lrs = [t.lr for t in small.trials if t.rung == 0]
    assert min(lrs) < small.lr < max(lrs)
    assert "tuned peak LR" in small.summary()


def test_plot_writes_png(small: TuneResult, tmp_path: Path) -> None:
    out = small.plot(tmp_path / "tune.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plan_shapes_and_too_small_budget() -> None:
    floor = knowledge.TUNE_MIN_TRIAL_STEPS.value
    big = plan_rungs(10_000, 10_000)
    assert len(big.rungs) == 3 and big.range_steps == 100
    assert big.steps() <= 10_000 and big.rungs[-1][1] <= 10_000
    small = plan_rungs(200, 200)
    assert len(small.rungs) == 1 and small.rungs[0][1] >= floor
    mid = plan_rungs(300, 300)
    assert [n for n, _ in mid.rungs] == [4] and mid.extensions == 1
    assert mid.rungs[0][1] >= floor and mid.steps() <= 300
    with pytest.raises(ValueError, match="too small to tune"):
        plan_rungs(50, 1000)
    # a longer budget never plans trials longer than the run itself
    capped = plan_rungs(100_000, 900)
    assert capped.rungs[-1][1] <= 900


def test_trial_warmup_keeps_steps_with_a_floor() -> None:
    floor = knowledge.TUNE_WARMUP_FLOOR.value
    assert trial_warmup(100, 2000, 50) == max(floor, 12)  # never 2 steps (5% of 50)
    assert trial_warmup(100, 2000, 1000) == 100  # the planned warmup, in steps
    assert trial_warmup(0, 2000, 50) == 0
    assert trial_warmup(3, 100, 50) == 3
    assert trial_warmup(100, 2000, 12) == 6  # at most half the trial


def test_vertex_parabola_and_edges() -> None:
    def t(lr: float, score: float) -> Trial:
        return Trial(lr, "adamw", 10, score, False, 0, 0, 10)

    # symmetric around 1e-2 in log-LR
    v = _vertex([t(1e-3, 2.0), t(1e-2, 1.0), t(1e-1, 2.0)])
    assert v is not None and math.isclose(v, 1e-2, rel_tol=1e-9)
    assert _vertex([t(1e-3, 1.0), t(1e-2, 2.0)]) == 1e-3
    assert _vertex([Trial(1e-3, "adamw", 10, math.inf, True, 0, 0, 3)]) is None


def test_trials_mirror_the_recipe_clipping_and_warmup() -> None:
    train, val = _data(512)
    recipe = optiwise.recommend(family="vision_cnn", batch_size=32, total_steps=1000)
    seen: list[Any] = []

    def make(seed: int) -> nn.Module:
        return make_mlp(seed)

    orig = optiwise.Stepper.__init__

    def spy(self: Any, *args: Any, **kwargs: Any) -> None:
        orig(self, *args, **kwargs)
        seen.append((self.clip_norm, self.scheduler))

    mp = pytest.MonkeyPatch()
    mp.setattr(optiwise.Stepper, "__init__", spy)
    try:
        clipped = recipe.with_lr(0.05, reason="test")
        # a recipe with clipping: every trial's Stepper clips the same way
        from dataclasses import replace

        from optiwise.advisor.rules import Choice

        choices = {**clipped.choices, "clip_norm": Choice("clip_norm", 0.5, "t", "t", "t")}
        clipped = replace(clipped, choices=choices)
        res = tune(
            make,
            train,
            loss_fn=F.mse_loss,
            val_data=val,
            recipe=clipped,
            total_steps=1000,
            budget=0.5,
            range_test=False,
        )
    finally:
        mp.undo()
    assert res.optimizer == "sgd"
    assert seen and all(c == 0.5 for c, _ in seen)
    for t in res.trials:
        assert t.warmup == trial_warmup(recipe.warmup_steps or 0, 1000, t.steps)
        assert t.warmup >= min(knowledge.TUNE_WARMUP_FLOOR.value, recipe.warmup_steps or 0)
    assert res.spent_steps <= 500


def test_two_optimizers_share_the_budget() -> None:
    train, val = _data(512)
    res = tune(
        make_mlp,
        train,
        loss_fn=F.mse_loss,
        val_data=val,
        optimizer=["adamw", "sgd"],
        total_steps=800,
        budget=1.0,
    )
    assert {t.optimizer for t in res.trials} == {"adamw", "sgd"}
    assert res.optimizer in ("adamw", "sgd") and set(res.fits) == {"adamw", "sgd"}
    assert res.spent_steps <= 800
    assert res.recipe.optimizer == res.optimizer


def test_factory_returning_the_same_model_is_refused() -> None:
    train, val = _data(256)
    net = make_mlp(0)
    with pytest.raises(ValueError, match="same model"):
        tune(lambda s: net, train, loss_fn=F.mse_loss, val_data=val, total_steps=400)
    shared = nn.Linear(6, 1)
    with pytest.raises(ValueError, match="sharing its parameters"):
        tune(
            lambda s: nn.Sequential(shared),
            train,
            loss_fn=F.mse_loss,
            val_data=val,
            total_steps=400,
        )


def test_bad_scores_and_inputs_are_clear() -> None:
    train, val = _data(256)
    with pytest.raises(ValueError, match=r"val_data .* or evaluate"):
        tune(make_mlp, train, loss_fn=F.mse_loss, total_steps=400)
    with pytest.raises(ValueError, match="must return a number"):
        tune(make_mlp, train, loss_fn=F.mse_loss, evaluate=lambda m: "low", total_steps=400)
    with pytest.raises(ValueError, match="Invalid budget"):
        tune(make_mlp, train, loss_fn=F.mse_loss, val_data=val, total_steps=400, budget=0)
    with pytest.raises(ValueError, match="every trial diverged"):
        tune(
            make_mlp,
            train,
            loss_fn=F.mse_loss,
            evaluate=lambda m: math.nan,
            total_steps=400,
            range_test=False,
        )
    bad = [(x, y * math.nan) for x, y in train]
    with pytest.raises(ValueError, match="untrained model"):
        tune(make_mlp, bad, loss_fn=F.mse_loss, val_data=val, total_steps=400)


def test_diverged_trials_are_recorded_not_fatal() -> None:
    train, val = _data(512)
    recipe = optiwise.recommend(family="mlp", batch_size=32, total_steps=600)
    recipe = recipe.with_lr(3.0, reason="far too high, on purpose")
    res = tune(
        make_mlp,
        train,
        loss_fn=F.mse_loss,
        val_data=val,
        recipe=recipe,
        total_steps=600,
        range_test=False,
    )
    assert any(t.diverged for t in res.trials)
    assert all(t.score == math.inf for t in res.trials if t.diverged)
    assert math.isfinite(res.lr) and res.lr < 3.0


def test_val_scoring_draws_a_bounded_number_of_batches() -> None:
    train, _ = _data(512)
    pulled = 0

    def endless() -> Any:
        nonlocal pulled
        gen = torch.Generator().manual_seed(1)
        while True:
            pulled += 1
            x = torch.randn(16, 6, generator=gen)
            yield x, x[:, :1]

    tune(
        make_mlp,
        train,
        loss_fn=F.mse_loss,
        val_data=endless(),
        total_steps=200,
        val_batches=5,
    )
    assert pulled == 5


def test_interrupted_study_resumes_from_storage(tmp_path: Path) -> None:
    train, val = _data(512)
    db = tmp_path / "study.db"
    calls = 0

    def counting(seed: int) -> nn.Module:
        nonlocal calls
        calls += 1
        if stop and calls > 4:
            raise KeyboardInterrupt
        return make_mlp(seed)

    stop = True
    kwargs: dict[str, Any] = {
        "loss_fn": F.mse_loss,
        "val_data": val,
        "total_steps": 600,
        "storage": db,
    }
    with pytest.raises(KeyboardInterrupt):
        tune(counting, train, **kwargs)
    stop, calls = False, 0
    res = tune(counting, train, **kwargs)
    assert any(t.reused for t in res.trials)
    assert any("resumed" in n for n in res.notes)
    fresh = tune(make_mlp, train, **{**kwargs, "storage": None})
    assert math.isclose(res.lr, fresh.lr, rel_tol=1e-6)
    assert res.spent_steps == fresh.spent_steps
    # the fully finished study: nothing is trained again
    calls = 0
    again = tune(counting, train, **kwargs)
    assert all(t.reused for t in again.trials) and calls == 1  # the probe model only


def test_global_rng_is_restored() -> None:
    train, val = _data(256)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    tune(make_mlp, train, loss_fn=F.mse_loss, val_data=val, total_steps=200)
    assert torch.equal(torch.get_rng_state(), before)


def test_horizon_exponent_moves_a_one_rung_choice() -> None:
    train, val = _data(n=512)
    kwargs: dict[str, Any] = {"loss_fn": F.mse_loss, "val_data": val, "total_steps": 200}
    flat = tune(make_mlp, train, horizon_exponent=0.0, **kwargs)
    steep = tune(make_mlp, train, horizon_exponent=-0.8, **kwargs)
    fit = steep.fits[steep.optimizer]
    assert not fit.fitted and fit.slope == -0.8
    # the same trials; only the extrapolation to the 200-step run differs
    assert [t.score for t in flat.trials] == [t.score for t in steep.trials]
    h = fit.horizons[-1]
    assert flat.lr == pytest.approx(fit.best[-1])
    assert steep.lr == pytest.approx(fit.best[-1] * (200 / h) ** -0.8)
    for bad in (0.2, math.inf, False):
        with pytest.raises(ValueError, match="Invalid horizon_exponent"):
            tune(make_mlp, train, horizon_exponent=bad, **kwargs)


def test_edge_extensions_stay_within_the_budget() -> None:
    train, val = _data(n=512)
    # a prior a thousand times too low: the first rung's best sits on its upper edge
    recipe = optiwise.recommend(make_mlp(0), batch_size=32, total_steps=300)
    recipe = recipe.with_lr(float(recipe.hparams["lr"]) / 1000, reason="test: far too low")
    result = tune(
        make_mlp,
        train,
        loss_fn=F.mse_loss,
        val_data=val,
        recipe=recipe,
        total_steps=300,
        range_test=False,
    )
    assert result.spent_steps <= result.budget_steps == 300
    rung0 = [t for t in result.trials if t.rung == 0]
    plan = plan_rungs(300, 300)
    assert len(rung0) > plan.rungs[0][0]  # the grid grew past its edge
    assert max(t.lr for t in rung0) > float(recipe.hparams["lr"]) * 10
