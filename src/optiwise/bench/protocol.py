"""The comparison protocol: per-optimizer LR tuning, the best LR re-run over fresh seeds,
the same fully decayed schedule for everyone, and every run recorded in a :class:`Store`.

For each optimizer:

1. **Tuning** (seed 0).  Either a log grid of ``lr_grid`` LRs spaced by ``grid_factor``
   (half a decade) and centred on the optimizer's knowledge default for the workload's task
   family and batch size (when the best LR lands on an edge of the grid, the grid grows by
   one point on that side, up to ``max_extensions`` times), or ``trials`` Optuna TPE trials
   over the same span, log-uniform.
2. **Selection**: the tuning run with the best final validation metric (``select="metric"``)
   or the fewest steps to the target (``select="steps"``); diverged runs rank last.
3. **Final runs**: the selected LR re-run with seeds ``1..seeds`` (fresh seeds: the tuning
   seed is not reused, so the winner's luck on seed 0 does not count twice).

Every run uses the workload's step budget and a warmup + cosine schedule decayed to zero
(the warmup is the task family's fraction from :mod:`optiwise.knowledge`).  Optimizers
with ``train()``/``eval()`` methods (schedule-free) get a constant LR after the warmup and
have those methods called around training and evaluation; optimizers with an
``update_hessian()`` method (Sophia) get a Hessian-estimate step every
``knowledge.get_info("sophiag").extra["hessian_interval"]`` steps on the workload's
sampled-label loss.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from torch import Tensor
from torch.optim import Optimizer

from optiwise import knowledge
from optiwise._progress import Progress
from optiwise.bench.store import RunRecord, Store
from optiwise.bench.workloads import Problem, Target, Workload, get_workload
from optiwise.optim.registry import (
    canonical_name,
    create_optimizer,
    get_spec,
    resolve_optimizer,
)
from optiwise.schedules import create_scheduler
from optiwise.train import Stepper, has_train_eval_modes

__all__ = [
    "DIVERGENCE_FACTOR",
    "GRID_FACTOR",
    "PROTOCOL_VERSION",
    "OptimizerResult",
    "RunResult",
    "SweepConfig",
    "SweepResult",
    "Task",
    "center_lr",
    "check_optimizers",
    "grid_lrs",
    "load_sweep",
    "plan",
    "run_sweep",
    "train_problem",
    "train_run",
]

#: Spacing of the LR grid: half a decade, so the best LR is within a factor 1.8 of a point.
GRID_FACTOR = 10**0.5
#: A run whose validation loss exceeds this multiple of its initial one has diverged.
DIVERGENCE_FACTOR = 100.0
#: Bumped when a change makes old stored runs incomparable with new ones.
PROTOCOL_VERSION = 1

Select = Literal["metric", "steps"]


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    """Everything recorded about one training run.

    Curves are sampled at the evaluation steps ``steps``, starting with step 0 before
    training (``train_loss`` is the mean training loss since the previous evaluation, NaN
    at step 0).  ``steps_to_target`` and ``time_to_target`` (training seconds, evaluation
    excluded) are ``None`` when the target was never reached.  A diverged run (a
    non-finite loss, or a validation loss above ``DIVERGENCE_FACTOR`` times the initial
    one) stops there, with NaN final values.
    """

    optimizer: str
    lr: float
    seed: int
    budget: int
    steps: list[int]
    train_loss: list[float]
    val_loss: list[float]
    metric: list[float]
    final_val_loss: float
    final_metric: float
    best_metric: float
    steps_to_target: int | None
    time_to_target: float | None
    train_time: float
    eval_time: float
    diverged: bool
    schedule: str
    hparams: dict[str, Any]
    data_source: str
    trajectory: list[list[float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        """Inverse of :meth:`to_dict`."""
        return cls(**dict(data))


def _json_value(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    if isinstance(value, Tensor):
        return value.tolist()
    return repr(value)


def _hessian_step(problem: Problem, optimizer: Optimizer, batch: Any) -> None:
    """Sophia-style Hessian estimate: gradient of the sampled-label loss, then the
    optimizer's ``update_hessian()``."""
    assert problem.sampled_loss is not None
    optimizer.zero_grad(set_to_none=True)
    problem.sampled_loss(problem.model, batch).backward()
    optimizer.update_hessian()  # type: ignore[attr-defined]
    optimizer.zero_grad(set_to_none=True)


def _workload_hparams(workload: Workload, name: str) -> dict[str, Any]:
    """The workload's fixed hyperparameters that optimizer ``name`` takes."""
    if not workload.hparams:
        return {}
    accepted = resolve_optimizer(name, task=workload.task).hparams
    return {k: v for k, v in workload.hparams.items() if k in accepted}


def _build_optimizer(workload: Workload, problem: Problem, name: str, lr: float) -> Optimizer:
    return create_optimizer(
        name, problem.model, lr=lr, task=workload.task, **_workload_hparams(workload, name)
    )


def _needs_hessian(optimizer: Optimizer) -> bool:
    return callable(getattr(optimizer, "update_hessian", None))


def _check_budget(budget: Any) -> int:
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"Invalid budget: {budget!r} (must be an int >= 1 step)")
    return budget


def _optimizer_hparams(optimizer: Optimizer) -> dict[str, Any]:
    """The hyperparameters ``optimizer`` was built with, JSON-ready: the registry's record
    when it was built by :func:`optiwise.create_optimizer`, else its ``defaults``."""
    spec = get_spec(optimizer)
    source = spec.hparams if spec is not None else optimizer.defaults
    return {k: _json_value(v) for k, v in source.items()}


def train_run(
    workload: Workload,
    optimizer: str,
    lr: float,
    seed: int,
    *,
    budget: int | None = None,
    limit: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
    on_eval: Callable[[int, Mapping[str, float]], None] | None = None,
) -> RunResult:
    """Train ``workload`` with ``optimizer`` at peak LR ``lr`` for ``budget`` steps.

    Parameters
    ----------
    workload:
        What to train.
    optimizer:
        Registry name; hyperparameters other than the LR are the knowledge defaults for the
        workload's task family (plus the workload's own fixed ones, e.g. no weight decay on
        the toys).
    lr:
        Peak learning rate of the schedule.
    seed:
        Seeds the initialization and the batch order.
    budget:
        Optimizer steps (default: the workload's budget).
    limit:
        Training examples to use (default: all).
    on_step, on_eval:
        Called after every step with the step count and the step's training loss, and after
        every evaluation with the step count and the evaluation's values.
    """
    budget = _check_budget(workload.budget if budget is None else budget)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"Invalid learning rate: {lr!r} (must be a positive number)")
    problem = workload.build(seed, limit)
    opt = _build_optimizer(workload, problem, optimizer, lr)
    warmup = round(knowledge.task_info(workload.task).warmup_fraction.value * budget)
    warmup = min(warmup, budget - 1)
    if has_train_eval_modes(opt):
        schedule = "warmup_constant"
        scheduler = create_scheduler(schedule, opt, total_steps=budget, warmup=warmup)
    else:
        schedule = "warmup_cosine"
        scheduler = create_scheduler(
            schedule, opt, total_steps=budget, warmup=warmup, min_lr_ratio=0.0
        )
    if _needs_hessian(opt) and problem.sampled_loss is None:
        raise ValueError(
            f"{optimizer} needs a sampled-label loss for its Hessian estimate, which "
            f"workload {workload.name!r} does not have; leave {optimizer} out"
        )
    return train_problem(
        workload,
        problem,
        Stepper(opt, scheduler, model=problem.model),
        name=optimizer,
        lr=lr,
        seed=seed,
        budget=budget,
        schedule=schedule,
        on_step=on_step,
        on_eval=on_eval,
    )


def train_problem(
    workload: Workload,
    problem: Problem,
    stepper: Stepper,
    *,
    name: str,
    lr: float,
    seed: int,
    budget: int,
    schedule: str,
    eval_every: int | None = None,
    on_step: Callable[[int, float], None] | None = None,
    on_eval: Callable[[int, Mapping[str, float]], None] | None = None,
) -> RunResult:
    """Train ``problem`` (built from ``workload``) with a ready :class:`~optiwise.Stepper`
    for ``budget`` optimizer steps, evaluating as the protocol does; the loop behind
    :func:`train_run`, for setups the protocol does not build itself (a recipe's optimizer,
    scheduler and stepper, or a plain torch optimizer).

    Each optimizer step takes ``stepper.accumulation`` batches, each loss computed under
    ``stepper.autocast()``; evaluation runs inside ``stepper.evaluate()`` (on the EMA model
    when the stepper keeps one).  A step whose loss or gradients are not finite, or a
    validation loss above ``DIVERGENCE_FACTOR`` times the initial one, ends the run as
    diverged.

    Parameters
    ----------
    name, lr, schedule:
        Recorded in the result: the optimizer's name, its peak LR and the schedule's name.
    seed:
        The seed ``problem`` was built with (recorded).
    eval_every:
        Evaluate every this many steps (and after the last); default the workload's.
    on_step, on_eval:
        As for :func:`train_run`.
    """
    budget = _check_budget(budget)
    every = workload.eval_every if eval_every is None else _positive_int("eval_every", eval_every)
    if stepper.model is not problem.model:
        raise ValueError("the stepper must be built with model=problem.model")
    model, opt = problem.model, stepper.optimizer
    hessian_every = 0
    if _needs_hessian(opt) and problem.sampled_loss is not None:
        hessian_every = int(knowledge.get_info("sophiag").extra["hessian_interval"].value)
    use_ema = stepper.ema_model is not None

    target = workload.target
    steps: list[int] = []
    train_loss: list[float] = []
    val_loss: list[float] = []
    metric: list[float] = []
    trajectory = [list(problem.position())] if problem.position is not None else None
    train_time = eval_time = 0.0
    window_sum, window_n = 0.0, 0
    steps_to_target: int | None = None
    time_to_target: float | None = None
    diverged = False

    def evaluate(step: int) -> bool:
        nonlocal eval_time, steps_to_target, time_to_target, window_sum, window_n
        t0 = time.perf_counter()
        with stepper.evaluate(ema=use_ema) as net:
            values = problem.evaluate(net)
        eval_time += time.perf_counter() - t0
        steps.append(step)
        train_loss.append(window_sum / window_n if window_n else math.nan)
        window_sum, window_n = 0.0, 0
        val_loss.append(values["val_loss"])
        metric.append(values[target.metric])
        if steps_to_target is None and target.reached(values[target.metric]):
            steps_to_target, time_to_target = step, train_time
        if on_eval is not None:
            on_eval(step, values)
        finite = math.isfinite(values["val_loss"]) and math.isfinite(values[target.metric])
        return finite and values["val_loss"] <= blow_up

    blow_up = math.inf
    evaluate(0)
    if math.isfinite(val_loss[0]) and val_loss[0] > 0:
        blow_up = DIVERGENCE_FACTOR * val_loss[0]
    model.train()
    for step in range(1, budget + 1):
        t0 = time.perf_counter()
        loss, stepped, batch = 0.0, True, None
        for _ in range(stepper.accumulation):
            batch = problem.next_batch()
            with stepper.autocast():
                micro = problem.loss(model, batch)
            result = stepper.backward(micro)
            loss += float(micro.detach()) / stepper.accumulation
            if result is not None:
                stepped = result.stepped
        finite = math.isfinite(loss) and stepped
        if hessian_every and step % hessian_every == 0 and finite:
            _hessian_step(problem, opt, batch)
        train_time += time.perf_counter() - t0
        if trajectory is not None and problem.position is not None:
            trajectory.append(list(problem.position()))
        if on_step is not None:
            on_step(step, loss)
        if not finite:
            diverged = True
            window_sum, window_n = math.nan, 1
            evaluate(step)
            break
        window_sum += loss
        window_n += 1
        if (step % every == 0 or step == budget) and not evaluate(step):
            diverged = True
            break

    finite_metric = [m for m in metric if math.isfinite(m)]
    best = (max if target.higher_is_better else min)(finite_metric) if finite_metric else math.nan
    return RunResult(
        optimizer=name,
        lr=float(lr),
        seed=seed,
        budget=budget,
        steps=steps,
        train_loss=train_loss,
        val_loss=val_loss,
        metric=metric,
        final_val_loss=math.nan if diverged else val_loss[-1],
        final_metric=math.nan if diverged else metric[-1],
        best_metric=best,
        steps_to_target=steps_to_target,
        time_to_target=time_to_target,
        train_time=train_time,
        eval_time=eval_time,
        diverged=diverged,
        schedule=schedule,
        hparams=_optimizer_hparams(opt),
        data_source=problem.data_source,
        trajectory=trajectory,
    )


# --------------------------------------------------------------------------------------------
# The sweep: configuration, plan, selection
# --------------------------------------------------------------------------------------------


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Invalid {name}: {value!r} (must be an int >= 1)")
    return value


@dataclass(frozen=True)
class SweepConfig:
    """What to compare, and how hard to tune.

    Attributes
    ----------
    workload:
        Workload name (:func:`optiwise.bench.list_workloads`).
    optimizers:
        Registry names (aliases allowed; canonicalized by :meth:`validated`).
    seeds:
        Final runs per optimizer at its best LR.
    lr_grid:
        Points of the LR grid (and, with ``trials``, the span the search covers:
        ``grid_factor ** ((lr_grid - 1) / 2)`` either side of the default).
    trials:
        Use this many Optuna TPE trials per optimizer instead of the grid.
    budget:
        Steps per run (default: the workload's).
    limit:
        Training examples per run (default: all); for quick runs.
    select:
        ``"metric"`` (best final validation metric) or ``"steps"`` (fewest steps to target).
    grid_factor:
        Ratio of neighbouring grid LRs.
    max_extensions:
        How many points the grid may grow on each side when the best LR is on its edge.
    """

    workload: str
    optimizers: tuple[str, ...]
    seeds: int = 3
    lr_grid: int = 7
    trials: int | None = None
    budget: int | None = None
    limit: int | None = None
    select: Select = "metric"
    grid_factor: float = GRID_FACTOR
    max_extensions: int = 2

    def validated(self) -> SweepConfig:
        """A copy with canonical names and the budget filled; a ValueError naming the
        first bad value otherwise."""
        workload = get_workload(self.workload)
        if isinstance(self.optimizers, str) or not self.optimizers:
            raise ValueError(
                f"Invalid optimizers: {self.optimizers!r} (give a sequence of names, "
                "e.g. ('sgd', 'adamw'))"
            )
        names: list[str] = []
        for name in self.optimizers:
            canonical = canonical_name(name)
            if canonical not in names:
                names.append(canonical)
        _positive_int("seeds", self.seeds)
        _positive_int("lr_grid", self.lr_grid)
        if self.trials is not None:
            _positive_int("trials", self.trials)
        budget = _positive_int("budget", workload.budget if self.budget is None else self.budget)
        if self.limit is not None:
            _positive_int("limit", self.limit)
        if self.select not in ("metric", "steps"):
            raise ValueError(f"Invalid select: {self.select!r} (use 'metric' or 'steps')")
        if not (isinstance(self.grid_factor, (int, float)) and self.grid_factor > 1):
            raise ValueError(f"Invalid grid_factor: {self.grid_factor!r} (must be > 1)")
        if isinstance(self.max_extensions, bool) or not isinstance(self.max_extensions, int):
            raise ValueError(f"Invalid max_extensions: {self.max_extensions!r} (must be an int)")
        if self.max_extensions < 0:
            raise ValueError(f"Invalid max_extensions: {self.max_extensions} (must be >= 0)")
        return replace(self, workload=workload.name, optimizers=tuple(names), budget=budget)

    def study(self, data: str) -> str:
        """The store's name for this sweep's runs on data set ``data``: workload, data,
        budget, data limit and protocol version.  Optimizers, seeds and search settings
        are not part of it: sweeps that differ only in those share their runs."""
        limit = "all" if self.limit is None else str(self.limit)
        return f"{self.workload}|data={data}|budget={self.budget}|limit={limit}|v{PROTOCOL_VERSION}"


@dataclass(frozen=True)
class Task:
    """A run the sweep still needs: its store key and what it trains (``lr`` is ``None``
    for a search trial whose LR is chosen when it starts)."""

    key: str
    optimizer: str
    phase: str
    lr: float | None
    seed: int
    trial: int | None = None


def center_lr(workload: Workload, optimizer: str) -> float:
    """The optimizer's knowledge default LR for the workload's task family, scaled to its
    batch size: the centre of the LR grid."""
    spec = resolve_optimizer(optimizer, task=workload.task, batch_size=workload.batch_size or None)
    return float(spec.hparams["lr"])


def grid_lrs(center: float, points: int, factor: float = GRID_FACTOR) -> list[float]:
    """``points`` LRs spaced by ``factor`` in log space, centred on ``center``."""
    return [_grid_point(center, i - (points - 1) / 2, factor) for i in range(points)]


def _grid_point(center: float, offset: float, factor: float) -> float:
    return float(f"{center * factor**offset:.6g}")


def _lr_text(lr: float) -> str:
    return f"{lr:.6g}"


def _rank(result: RunResult, target: Target, select: Select) -> tuple[Any, ...]:
    """Sort key: smaller is better."""
    m = result.final_metric
    bad = not math.isfinite(m)
    quality = (bad, 0.0 if bad else (-m if target.higher_is_better else m))
    loss = result.final_val_loss if math.isfinite(result.final_val_loss) else math.inf
    if select == "steps":
        reached = result.steps_to_target is not None
        return (not reached, result.steps_to_target or 0, *quality, loss)
    return (*quality, loss)


def _best(results: Sequence[RunResult], target: Target, select: Select) -> RunResult:
    # Ties go to the smaller LR (the sort is stable and results come sorted by LR).
    return min(sorted(results, key=lambda r: r.lr), key=lambda r: _rank(r, target, select))


@dataclass(frozen=True)
class _Tuning:
    tasks: list[Task]
    runs: list[RunResult]  # finished tuning runs, sorted by LR
    complete: bool


def _grid_tuning(
    cfg: SweepConfig, opt: str, center: float, done: Mapping[str, RunResult], target: Target
) -> _Tuning:
    n = cfg.lr_grid
    offsets = [i - (n - 1) / 2 for i in range(n)]
    low = high = 0
    while True:
        points = [_grid_point(center, o, cfg.grid_factor) for o in offsets]
        keys = [f"tune|{opt}|lr={_lr_text(lr)}|seed=0" for lr in points]
        missing = [
            Task(k, opt, "tune", lr, 0) for k, lr in zip(keys, points, strict=True) if k not in done
        ]
        runs = sorted((done[k] for k in keys if k in done), key=lambda r: r.lr)
        if missing:
            return _Tuning(missing, runs, False)
        best = _best(runs, target, cfg.select)
        if best.lr == runs[0].lr and low < cfg.max_extensions and len(runs) > 1:
            offsets.insert(0, offsets[0] - 1)
            low += 1
        elif best.lr == runs[-1].lr and high < cfg.max_extensions and len(runs) > 1:
            offsets.append(offsets[-1] + 1)
            high += 1
        else:
            return _Tuning([], runs, True)


def _search_tuning(cfg: SweepConfig, opt: str, done: Mapping[str, RunResult]) -> _Tuning:
    assert cfg.trials is not None
    keys = [f"search|{opt}|trial={k}" for k in range(cfg.trials)]
    runs = sorted((done[k] for k in keys if k in done), key=lambda r: r.lr)
    missing = [Task(k, opt, "tune", None, 0, trial=i) for i, k in enumerate(keys) if k not in done]
    return _Tuning(missing, runs, not missing)


def _tuning(
    cfg: SweepConfig, workload: Workload, opt: str, done: Mapping[str, RunResult]
) -> _Tuning:
    if cfg.trials is None:
        return _grid_tuning(cfg, opt, center_lr(workload, opt), done, workload.target)
    return _search_tuning(cfg, opt, done)


def _final_keys(opt: str, lr: float, seeds: int) -> list[tuple[str, int]]:
    return [(f"final|{opt}|lr={_lr_text(lr)}|seed={s}", s) for s in range(1, seeds + 1)]


def plan(
    cfg: SweepConfig, workload: Workload, done: Mapping[str, RunResult]
) -> tuple[list[Task], bool]:
    """The runs still needed given the finished ones (``done``, by key), in the order to
    run them, and whether the sweep is complete.

    Final runs of an optimizer appear once its tuning is complete; a grid that grows at an
    edge adds its new point once the rest of the grid is done.
    """
    tasks: list[Task] = []
    complete = True
    for opt in cfg.optimizers:
        tuning = _tuning(cfg, workload, opt, done)
        tasks.extend(tuning.tasks)
        if not tuning.complete:
            complete = False
            continue
        best = _best(tuning.runs, workload.target, cfg.select)
        for key, seed in _final_keys(opt, best.lr, cfg.seeds):
            if key not in done:
                tasks.append(Task(key, opt, "final", best.lr, seed))
                complete = False
    return tasks, complete


def _own_runs(cfg: SweepConfig, done: Mapping[str, RunResult]) -> int:
    """Finished runs of ``cfg``'s optimizers (the study may hold others)."""
    return sum(1 for key in done if key.split("|")[1] in cfg.optimizers)


def _estimated_runs(cfg: SweepConfig) -> int:
    per = (cfg.trials if cfg.trials is not None else cfg.lr_grid) + cfg.seeds
    return per * len(cfg.optimizers)


def _search_lr(
    cfg: SweepConfig, workload: Workload, opt: str, trial: int, history: Iterable[RunResult]
) -> float:
    """The LR of search trial ``trial``: Optuna's TPE given the finished trials, seeded by
    optimizer and trial index so a resumed search asks the same question again."""
    try:
        import optuna
    except ImportError:
        raise ValueError(
            "--trials uses Optuna, which is not installed: pip install 'optiwise[bench]'"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    center = center_lr(workload, opt)
    half = (cfg.lr_grid - 1) / 2 if cfg.lr_grid > 1 else 1.0
    dist = optuna.distributions.FloatDistribution(
        center / cfg.grid_factor**half, center * cfg.grid_factor**half, log=True
    )
    assert cfg.trials is not None
    sampler = optuna.samplers.TPESampler(
        seed=zlib.crc32(f"{opt}:{trial}".encode()), n_startup_trials=max(1, cfg.trials // 3)
    )
    study = optuna.create_study(
        direction="maximize" if workload.target.higher_is_better else "minimize", sampler=sampler
    )
    for run in history:
        lr = min(max(run.lr, dist.low), dist.high)
        if math.isfinite(run.final_metric):
            study.add_trial(
                optuna.trial.create_trial(
                    params={"lr": lr}, distributions={"lr": dist}, value=run.final_metric
                )
            )
        else:
            study.add_trial(
                optuna.trial.create_trial(
                    params={"lr": lr},
                    distributions={"lr": dist},
                    state=optuna.trial.TrialState.FAIL,
                )
            )
    return float(f"{study.ask({'lr': dist}).params['lr']:.6g}")


# --------------------------------------------------------------------------------------------
# Results of a sweep
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptimizerResult:
    """One optimizer's part of a sweep: its tuning runs (sorted by LR), the selected LR and
    the final runs over seeds (empty until they are done)."""

    optimizer: str
    tuning: list[RunResult]
    best_lr: float | None
    finals: list[RunResult]


@dataclass(frozen=True)
class SweepResult:
    """A sweep as recorded in the store (``study`` is its name there); ``records`` are the
    finished runs of its optimizers."""

    config: SweepConfig
    workload: Workload
    study: str
    optimizers: list[OptimizerResult]
    complete: bool
    records: list[RunRecord] = field(repr=False)


def _done_results(store: Store, study: str) -> tuple[dict[str, RunResult], list[RunRecord]]:
    records = store.runs(study, status="done")
    done = {r.key: RunResult.from_dict(r.result) for r in records if r.result is not None}
    return done, records


def load_sweep(config: SweepConfig, store: Store) -> SweepResult:
    """The sweep ``config`` as far as ``store`` has it (nothing is run)."""
    cfg = config.validated()
    workload = get_workload(cfg.workload)
    study = _study(cfg, workload)
    done, records = _done_results(store, study)
    _, complete = plan(cfg, workload, done)
    parts = []
    for opt in cfg.optimizers:
        tuning = _tuning(cfg, workload, opt, done)
        best_lr = finals = None
        if tuning.complete:
            best_lr = _best(tuning.runs, workload.target, cfg.select).lr
            finals = [done[k] for k, _ in _final_keys(opt, best_lr, cfg.seeds) if k in done]
        parts.append(OptimizerResult(opt, tuning.runs, best_lr, finals or []))
    ours = [r for r in records if r.optimizer in cfg.optimizers]
    return SweepResult(cfg, workload, study, parts, complete, ours)


# --------------------------------------------------------------------------------------------
# Running a sweep
# --------------------------------------------------------------------------------------------


def _study(cfg: SweepConfig, workload: Workload) -> str:
    """The study name of ``cfg``, with the data set the workload resolves to here."""
    return cfg.study(workload.build(0, cfg.limit).data_name)


def check_optimizers(
    workload: Workload, optimizers: Sequence[str], limit: int | None = None
) -> None:
    """Build every optimizer once on the workload's model, so a bad name, a rejected
    hyperparameter or a missing capability fails before any run starts."""
    problem = workload.build(0, limit)
    for name in optimizers:
        opt = _build_optimizer(workload, problem, name, center_lr(workload, name))
        if _needs_hessian(opt) and problem.sampled_loss is None:
            raise ValueError(
                f"{name} needs a sampled-label loss for its Hessian estimate, which "
                f"workload {workload.name!r} does not have; leave {name} out"
            )


def run_sweep(
    config: SweepConfig,
    store: Store,
    *,
    progress: bool = False,
    poll: float = 5.0,
    on_run: Callable[[Task, RunResult], None] | None = None,
) -> SweepResult:
    """Run (or resume) the sweep ``config``, recording every run in ``store``.

    Runs already done in the store are not repeated; runs another live worker is doing are
    left to it (this worker waits ``poll`` seconds and looks again).  Interrupting a run
    (Ctrl-C) gives it back to the store, so the next invocation redoes it and nothing else.

    Parameters
    ----------
    progress:
        Show a progress bar over the sweep's training steps.
    on_run:
        Called after each run this worker records.
    """
    cfg = config.validated()
    workload = get_workload(cfg.workload)
    assert cfg.budget is not None
    check_optimizers(workload, cfg.optimizers, cfg.limit)
    study = _study(cfg, workload)
    done, _ = _done_results(store, study)
    ours = _own_runs(cfg, done)
    total = max(_estimated_runs(cfg), ours)
    bar = Progress(total * cfg.budget, workload.name, enabled=progress, initial=ours * cfg.budget)
    try:
        while True:
            done, _ = _done_results(store, study)
            tasks, complete = plan(cfg, workload, done)
            bar.grow((_own_runs(cfg, done) + len(tasks)) * cfg.budget)
            if complete:
                break
            if not _run_next(cfg, workload, store, study, tasks, done, bar, on_run):
                bar.label(f"waiting for {len(tasks)} run(s) on other workers")
                time.sleep(poll)
    finally:
        bar.close()
    return load_sweep(cfg, store)


def _run_next(
    cfg: SweepConfig,
    workload: Workload,
    store: Store,
    study: str,
    tasks: Sequence[Task],
    done: Mapping[str, RunResult],
    bar: Progress,
    on_run: Callable[[Task, RunResult], None] | None,
) -> bool:
    """Claim and run the first task no one else is running; ``False`` if there is none."""
    for task in tasks:
        lr = task.lr
        if lr is None:
            assert task.trial is not None
            history = [r for k, r in done.items() if k.startswith(f"search|{task.optimizer}|")]
            lr = _search_lr(cfg, workload, task.optimizer, task.trial, history)
        if store.claim(
            study, task.key, optimizer=task.optimizer, phase=task.phase, lr=lr, seed=task.seed
        ):
            result = _execute(cfg, workload, store, study, task, lr, bar)
            if store.finish(study, task.key, result.to_dict()) and on_run is not None:
                on_run(task, result)
            return True
    return False


def _execute(
    cfg: SweepConfig,
    workload: Workload,
    store: Store,
    study: str,
    task: Task,
    lr: float,
    bar: Progress,
) -> RunResult:
    """Train a claimed task, beating the store's heartbeat; an exception or interrupt
    gives the run back to the store."""
    assert cfg.budget is not None
    bar.label(f"{task.phase} {task.optimizer} lr={lr:.3g} seed={task.seed}")
    last_beat = time.monotonic()
    shown = 0

    def on_step(step: int, loss: float) -> None:
        nonlocal shown, last_beat
        bar.update(1)
        shown = step
        if time.monotonic() - last_beat > store.stale_after / 4:
            store.heartbeat(study, task.key)
            last_beat = time.monotonic()

    try:
        result = train_run(
            workload,
            task.optimizer,
            lr,
            task.seed,
            budget=cfg.budget,
            limit=cfg.limit,
            on_step=on_step,
        )
    except BaseException:
        store.release(study, task.key)
        raise
    bar.update(cfg.budget - shown)  # a diverged run stops early
    return result
