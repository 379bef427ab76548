from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch

import optiwise
from optiwise import knowledge
from optiwise.bench import SweepConfig, get_workload, open_store, run_sweep, train_run
from optiwise.bench import protocol as P
from optiwise.bench.protocol import RunResult, center_lr, grid_lrs, plan
from optiwise.bench.toys import quadratic
from tests.bench.helpers import HessianSGD, ScheduleFreeSGD, fake_result, register_fake

# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


def _reference_gd(lr: float, budget: int) -> list[float]:
    """Plain gradient descent on the ill-conditioned quadratic with the protocol's schedule
    (warmup_cosine to zero, the general task family's warmup), written independently."""
    warmup = round(knowledge.task_info("general").warmup_fraction.value * budget)
    lrs = optiwise.lr_curve(
        "warmup_cosine", total_steps=budget, lr=lr, warmup=warmup, min_lr_ratio=0.0
    )
    xy = torch.tensor([-3.0, 2.0], dtype=torch.float64, requires_grad=True)
    losses = [quadratic(xy[0], xy[1]).item()]
    for step_lr in lrs:
        (g,) = torch.autograd.grad(quadratic(xy[0], xy[1]), xy)
        with torch.no_grad():
            xy -= step_lr * g
        losses.append(quadratic(xy[0], xy[1]).item())
    return losses


def test_train_run_matches_independent_gradient_descent() -> None:
    w = get_workload("toy-ill-conditioned")
    result = train_run(w, "sgd_plain", 0.19, seed=0, budget=200)
    expected = _reference_gd(0.19, 200)
    assert result.steps == list(range(201))
    assert result.val_loss == pytest.approx(expected, rel=1e-9, abs=1e-15)
    first = next(i for i, v in enumerate(expected) if v <= 0.01)
    assert result.steps_to_target == first
    assert result.time_to_target is not None and 0 < result.time_to_target <= result.train_time
    assert result.final_metric == pytest.approx(expected[-1])
    assert result.schedule == "warmup_cosine" and not result.diverged
    assert result.hparams["momentum"] == 0.0 and result.hparams["weight_decay"] == 0.0
    assert result.trajectory is not None and len(result.trajectory) == 201
    assert result.trajectory[0] == [-3.0, 2.0]


def test_diverging_run_stops_and_is_marked() -> None:
    result = train_run(get_workload("toy-rosenbrock"), "sgd_plain", 3.0, seed=0, budget=200)
    assert result.diverged and len(result.steps) < 201
    assert math.isnan(result.final_metric) and math.isnan(result.final_val_loss)
    assert result.steps_to_target is None


def test_supervised_run_curves_and_determinism() -> None:
    w = get_workload("digits-mlp")
    a = train_run(w, "adamw", 3e-3, seed=1, budget=30, limit=300)
    b = train_run(w, "adamw", 3e-3, seed=1, budget=30, limit=300)
    c = train_run(w, "adamw", 3e-3, seed=2, budget=30, limit=300)
    assert a.steps == [0, 10, 20, 30]
    assert math.isnan(a.train_loss[0]) and all(math.isfinite(v) for v in a.train_loss[1:])
    assert a.val_loss[-1] < a.val_loss[0] and a.metric[-1] > a.metric[0]
    assert a.final_val_loss == b.final_val_loss and a.final_metric == b.final_metric
    assert a.final_val_loss != c.final_val_loss
    assert a.best_metric == max(a.metric) and a.trajectory is None
    assert a.data_source == "scikit-learn's bundled digits"
    assert RunResult.from_dict(a.to_dict()) == a


def test_train_run_refuses_bad_budget_and_lr() -> None:
    w = get_workload("toy-beale")
    with pytest.raises(ValueError, match="Invalid budget"):
        train_run(w, "sgd", 0.1, 0, budget=0)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        train_run(w, "sgd", -1.0, 0, budget=5)


def test_schedule_free_optimizers_get_a_constant_lr_and_mode_switches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register_fake(monkeypatch, "fake_schedule_free", ScheduleFreeSGD)
    built: list[ScheduleFreeSGD] = []
    original = P._build_optimizer

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        opt = original(*args, **kwargs)
        built.append(opt)
        return opt

    monkeypatch.setattr(P, "_build_optimizer", spy)
    result = train_run(
        get_workload("digits-mlp"), "fake_schedule_free", 0.05, 0, budget=30, limit=200
    )
    (opt,) = built
    assert result.schedule == "warmup_constant"
    assert opt.steps_in_eval_mode == 0
    # train mode from the start, eval mode for each evaluation and back to train after it
    assert opt.calls == ["train"] + ["eval", "train"] * len(result.steps)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)  # no decay after the warmup


def test_hessian_optimizers_get_periodic_estimates(monkeypatch: pytest.MonkeyPatch) -> None:
    register_fake(monkeypatch, "fake_sophia", HessianSGD)
    built: list[HessianSGD] = []
    original = P._build_optimizer
    monkeypatch.setattr(
        P, "_build_optimizer", lambda *a, **k: built.append(original(*a, **k)) or built[-1]
    )
    train_run(get_workload("digits-mlp"), "fake_sophia", 0.05, 0, budget=25, limit=200)
    interval = knowledge.get_info("sophiag").extra["hessian_interval"].value
    assert built[0].hessian_calls == 25 // interval
    with pytest.raises(ValueError, match="sampled-label loss"):
        P.check_optimizers(get_workload("toy-beale"), ["fake_sophia"])


# --------------------------------------------------------------------------------------------
# Grid, plan and selection
# --------------------------------------------------------------------------------------------


def test_grid_is_centred_on_the_knowledge_default() -> None:
    w = get_workload("fmnist-cnn")
    center = center_lr(w, "sgd")
    d = knowledge.defaults("sgd", "vision_cnn")
    expected = knowledge.scale_lr(
        d.hparams["lr"].value, w.batch_size, d.reference_batch.value, "linear"
    )
    assert center == pytest.approx(expected)
    lrs = grid_lrs(center, 7)
    assert len(lrs) == 7 and lrs[3] == pytest.approx(center)
    assert math.prod(lrs) ** (1 / 7) == pytest.approx(center, rel=1e-5)
    for a, b in itertools.pairwise(lrs):
        assert b / a == pytest.approx(P.GRID_FACTOR, rel=1e-5)
    assert grid_lrs(1.0, 2) == pytest.approx([10**-0.25, 10**0.25], rel=1e-5)


def _cfg(**kw: object) -> SweepConfig:
    base: dict[str, object] = dict(workload="toy-beale", optimizers=("sgd",), seeds=2, lr_grid=3)
    base.update(kw)
    return SweepConfig(**base).validated()  # type: ignore[arg-type]


def _done_from(tasks: list[P.Task], metric: Mapping[float, float]) -> dict[str, RunResult]:
    return {t.key: fake_result(t.optimizer, t.lr or 0.0, metric[t.lr or 0.0]) for t in tasks}


def test_plan_tunes_then_runs_the_best_lr_over_fresh_seeds() -> None:
    cfg = _cfg()
    w = get_workload(cfg.workload)
    tasks, complete = plan(cfg, w, {})
    assert not complete and [t.phase for t in tasks] == ["tune"] * 3
    lrs = [t.lr for t in tasks]
    assert all(t.seed == 0 for t in tasks)
    # the middle LR is best: no extension, finals at the middle LR with seeds 1 and 2
    done = _done_from(tasks, {lrs[0]: 0.5, lrs[1]: 0.001, lrs[2]: 0.2})  # type: ignore[index]
    tasks2, complete = plan(cfg, w, done)
    assert not complete
    assert [(t.phase, t.lr, t.seed) for t in tasks2] == [("final", lrs[1], 1), ("final", lrs[1], 2)]
    done.update({t.key: fake_result("sgd", lrs[1], 0.001, seed=t.seed) for t in tasks2})  # type: ignore[arg-type]
    assert plan(cfg, w, done) == ([], True)


def test_plan_extends_the_grid_at_an_edge_up_to_the_limit() -> None:
    cfg = _cfg(max_extensions=2)
    w = get_workload(cfg.workload)
    tasks, _ = plan(cfg, w, {})
    done = _done_from(tasks, {t.lr: 1.0 / t.lr for t in tasks})  # type: ignore[operator,misc]
    # loss falls with the LR: the best is the largest, so the grid grows upwards
    for _ in range(2):
        more, _ = plan(cfg, w, done)
        assert len(more) == 1 and more[0].phase == "tune"
        assert more[0].lr == pytest.approx(
            max(r.lr for r in done.values()) * P.GRID_FACTOR, rel=1e-5
        )
        done.update(_done_from(more, {more[0].lr: 1.0 / more[0].lr}))  # type: ignore[operator,dict-item]
    finals, _ = plan(cfg, w, done)
    assert {t.phase for t in finals} == {"final"}
    assert finals[0].lr == max(r.lr for r in done.values())


def test_diverged_runs_rank_last_and_ties_go_to_the_smaller_lr() -> None:
    cfg = _cfg(lr_grid=3, max_extensions=0)
    w = get_workload(cfg.workload)
    tasks, _ = plan(cfg, w, {})
    lrs = [t.lr for t in tasks]
    done = _done_from(tasks, {lrs[0]: math.nan, lrs[1]: 0.3, lrs[2]: 0.3})  # type: ignore[index]
    finals, _ = plan(cfg, w, done)
    assert finals[0].lr == lrs[1]


def test_select_by_steps_prefers_the_fastest_to_target() -> None:
    cfg = _cfg(select="steps", max_extensions=0)
    w = get_workload(cfg.workload)
    tasks, _ = plan(cfg, w, {})
    done = {
        tasks[0].key: fake_result("sgd", tasks[0].lr or 0, 0.001, steps_to_target=90),
        tasks[1].key: fake_result("sgd", tasks[1].lr or 0, 0.005, steps_to_target=40),
        tasks[2].key: fake_result("sgd", tasks[2].lr or 0, 0.0001),
    }
    finals, _ = plan(cfg, w, done)
    assert finals[0].lr == tasks[1].lr
    finals, _ = plan(_cfg(select="metric", max_extensions=0), w, done)
    assert finals[0].lr == tasks[2].lr


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"workload": "nope"}, "Unknown workload"),
        ({"optimizers": ("sgd", "adamz")}, "Unknown optimizer"),
        ({"optimizers": "sgd"}, "Invalid optimizers"),
        ({"seeds": 0}, "Invalid seeds"),
        ({"lr_grid": 0}, "Invalid lr_grid"),
        ({"trials": 0}, "Invalid trials"),
        ({"budget": -5}, "Invalid budget"),
        ({"select": "fastest"}, "Invalid select"),
        ({"grid_factor": 1.0}, "Invalid grid_factor"),
    ],
)
def test_bad_sweep_configs_are_refused(change: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _cfg(**change)


def test_config_canonicalizes_names_and_fills_the_budget() -> None:
    cfg = _cfg(optimizers=("NAG", "AdamW", "sgd"))
    assert cfg.optimizers == ("sgd", "adamw") and cfg.budget == get_workload("toy-beale").budget
    assert cfg.study("beale") == "toy-beale|data=beale|budget=1000|limit=all|v1"


# --------------------------------------------------------------------------------------------
# Sweeps, the store and resuming
# --------------------------------------------------------------------------------------------

TOY = dict(
    workload="toy-ill-conditioned", optimizers=("sgd", "adam"), seeds=2, lr_grid=3, budget=60
)


def test_sweep_tunes_each_optimizer_and_records_every_run(tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as store:
        result = run_sweep(SweepConfig(**TOY), store)  # type: ignore[arg-type]
        records = store.runs()
    assert result.complete
    assert result.study == "toy-ill-conditioned|data=ill-conditioned|budget=60|limit=all|v1"
    assert {r.study for r in records} == {result.study}
    keys = [r.key for r in records]
    assert len(keys) == len(set(keys)) and all(r.status == "done" for r in records)
    for part in result.optimizers:
        assert len(part.tuning) >= 3 and len(part.finals) == 2
        best = min(part.tuning, key=lambda r: r.final_metric)
        assert part.best_lr == best.lr
        assert [r.seed for r in part.finals] == [1, 2] and {r.lr for r in part.finals} == {best.lr}
    n_runs = sum(len(p.tuning) + len(p.finals) for p in result.optimizers)
    assert len(records) == n_runs


class _Interrupt:
    """A train_run wrapper that raises KeyboardInterrupt on call number ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.calls: list[tuple[str, float, int]] = []

    def __call__(self, workload, optimizer, lr, seed, **kw):  # type: ignore[no-untyped-def]
        self.calls.append((optimizer, lr, seed))
        if len(self.calls) == self.at:
            raise KeyboardInterrupt
        return _REAL_TRAIN_RUN(workload, optimizer, lr, seed, **kw)


_REAL_TRAIN_RUN = P.train_run


def test_interrupted_sweep_resumes_without_redoing_losing_or_duplicating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    cfg = SweepConfig(**TOY)  # type: ignore[arg-type]
    first = _Interrupt(at=5)
    monkeypatch.setattr(P, "train_run", first)
    with open_store(url) as store, pytest.raises(KeyboardInterrupt):
        run_sweep(cfg, store)
    with open_store(url) as store:
        before = store.runs()
    assert len(before) == 4 and all(r.status == "done" for r in before)  # the 5th was given back

    second = _Interrupt(at=0)
    monkeypatch.setattr(P, "train_run", second)
    with open_store(url) as store:
        result = run_sweep(cfg, store)
        after = store.runs()
    assert result.complete
    done_first = {(r.optimizer, r.lr, r.seed) for r in before}
    assert not done_first & set(second.calls)  # nothing finished was redone
    assert first.calls[4] == second.calls[0]  # the interrupted run is the first redone
    keys = [r.key for r in after]
    assert len(keys) == len(set(keys))  # nothing duplicated
    old = {r.key: (r.finished, r.result) for r in before}
    assert all(old[r.key] == (r.finished, r.result) for r in after if r.key in old)  # kept
    assert len(after) == len(before) + len(second.calls)  # nothing lost

    # an uninterrupted sweep of the same config gives the same selection and results
    with open_store(tmp_path / "fresh.db") as store:
        fresh = run_sweep(cfg, store)
    for a, b in zip(result.optimizers, fresh.optimizers, strict=True):
        assert a.best_lr == b.best_lr
        assert [r.final_val_loss for r in a.finals] == [r.final_val_loss for r in b.finals]


def test_new_optimizers_reuse_the_existing_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = tmp_path / "grow.db"
    with open_store(url) as store:
        run_sweep(SweepConfig(**{**TOY, "optimizers": ("sgd",)}), store)  # type: ignore[arg-type]
        n_sgd = len(store.runs())
    counter = _Interrupt(at=0)
    monkeypatch.setattr(P, "train_run", counter)
    with open_store(url) as store:
        run_sweep(SweepConfig(**TOY), store)  # type: ignore[arg-type]
        total = len(store.runs())
    assert {c[0] for c in counter.calls} == {"adam"}
    assert total == n_sgd + len(counter.calls)
    with open_store(url) as store:
        only_adam = P.load_sweep(SweepConfig(**{**TOY, "optimizers": ("adam",)}), store)  # type: ignore[arg-type]
    assert {r.optimizer for r in only_adam.records} == {"adam"}
    assert len(only_adam.records) == len(counter.calls)


def test_search_trials_with_optuna(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    cfg = SweepConfig(
        workload="toy-noisy-quadratic", optimizers=("sgd",), seeds=1, trials=4, budget=40
    )
    with open_store(tmp_path / "tpe.db") as store:
        result = run_sweep(cfg, store)
        records = store.runs()
    part = result.optimizers[0]
    assert len(part.tuning) == 4 and len(part.finals) == 1
    center = center_lr(get_workload("toy-noisy-quadratic"), "sgd")
    lrs = [r.lr for r in part.tuning]
    assert len(set(lrs)) == 4
    assert all(center / P.GRID_FACTOR**3 <= lr <= center * P.GRID_FACTOR**3 for lr in lrs)
    assert sorted(r.key for r in records if r.phase == "tune") == [
        f"search|sgd|trial={k}" for k in range(4)
    ]
    assert part.best_lr == min(part.tuning, key=lambda r: r.final_metric).lr


def test_runs_beat_the_store_heartbeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(tmp_path / "hb.db", stale_after=1e-9) as store:
        beats: list[bool] = []
        real = store.heartbeat
        monkeypatch.setattr(store, "heartbeat", lambda s, k: beats.append(real(s, k)))
        cfg = SweepConfig("toy-ill-conditioned", ("sgd",), seeds=1, lr_grid=1, budget=20)
        run_sweep(cfg, store)
    assert len(beats) == 40 and all(beats)  # every step of both runs, while owning the run


def test_progress_bar_counts_the_sweep_s_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("tqdm")
    cfg = SweepConfig("toy-ill-conditioned", ("sgd",), seeds=1, lr_grid=2, budget=30)
    with open_store(tmp_path / "p.db") as store:
        result = run_sweep(cfg, store, progress=True)
    runs = sum(len(p.tuning) + len(p.finals) for p in result.optimizers)
    err = capsys.readouterr().err
    assert "toy-ill-conditioned" in err and "100%" in err
    assert f"{runs * 30}/{runs * 30}" in err


# --------------------------------------------------------------------------------------------
# train_problem: a ready stepper
# --------------------------------------------------------------------------------------------


def test_train_problem_accumulates_windows_of_batches() -> None:
    w = get_workload("digits-mlp")
    problem = w.build(0, 200)
    opt = torch.optim.SGD(problem.model.parameters(), lr=0.1)
    stepper = optiwise.Stepper(opt, model=problem.model, accumulation=2)
    losses: list[float] = []
    result = P.train_problem(
        w,
        problem,
        stepper,
        name="sgd_plain",
        lr=0.1,
        seed=0,
        budget=6,
        schedule="constant",
        eval_every=3,
        on_step=lambda step, loss: losses.append(loss),
    )
    # independently: each step is one SGD step on the mean gradient of two batches
    ref = w.build(0, 200)
    ref_opt = torch.optim.SGD(ref.model.parameters(), lr=0.1)
    ref_losses = []
    for _ in range(6):
        ref_opt.zero_grad()
        batch_losses = [ref.loss(ref.model, ref.next_batch()) for _ in range(2)]
        (sum(batch_losses) / 2).backward()  # type: ignore[operator]
        ref_opt.step()
        ref_losses.append(sum(float(v.detach()) for v in batch_losses) / 2)
    assert stepper.step_count == 6 and stepper.micro_batch_count == 12
    assert losses == pytest.approx(ref_losses, rel=1e-6)
    assert result.steps == [0, 3, 6] and result.hparams["lr"] == 0.1
    for a, b in zip(problem.model.parameters(), ref.model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_train_problem_evaluates_the_ema_model() -> None:
    w = get_workload("digits-mlp")
    problem = w.build(0, 200)
    opt = torch.optim.SGD(problem.model.parameters(), lr=0.1)
    stepper = optiwise.Stepper(opt, model=problem.model, ema_decay=0.5)
    result = P.train_problem(
        w, problem, stepper, name="sgd_plain", lr=0.1, seed=0, budget=4, schedule="constant"
    )
    assert stepper.ema_model is not None
    ema_loss = problem.evaluate(stepper.ema_model.eval())["val_loss"]
    live_loss = problem.evaluate(problem.model.eval())["val_loss"]
    assert result.final_val_loss == pytest.approx(ema_loss) and ema_loss != live_loss


def test_train_problem_stops_on_non_finite_gradients_and_refuses_a_foreign_stepper() -> None:
    class InfGradient(torch.autograd.Function):
        """The identity, whose gradient is infinite."""

        @staticmethod
        def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return x.clone()

        @staticmethod
        def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return grad * math.inf

    w = get_workload("digits-mlp")
    problem = w.build(0, 200)
    base_loss = problem.loss

    def poisoned(model: torch.nn.Module, batch: object) -> torch.Tensor:
        loss = InfGradient.apply(base_loss(model, batch))
        assert math.isfinite(float(loss.detach()))  # a finite loss: only the gradients are not
        return loss

    problem.loss = poisoned
    before = [p.detach().clone() for p in problem.model.parameters()]
    opt = torch.optim.SGD(problem.model.parameters(), lr=0.1)
    stepper = optiwise.Stepper(opt, model=problem.model)
    result = P.train_problem(
        w, problem, stepper, name="sgd_plain", lr=0.1, seed=0, budget=5, schedule="constant"
    )
    assert result.diverged and result.steps == [0, 1] and math.isnan(result.final_metric)
    assert stepper.nonfinite_count == 1 and stepper.step_count == 0
    assert all(torch.equal(a, b) for a, b in zip(before, problem.model.parameters(), strict=True))
    other = w.build(0, 200)
    with pytest.raises(ValueError, match=r"model=problem\.model"):
        P.train_problem(w, other, stepper, name="x", lr=0.1, seed=0, budget=1, schedule="constant")
