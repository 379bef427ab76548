"""The main job behind ``optiwise demo``: a recipe against two naive setups, on real data.

On a benchmark workload (``fmnist-cnn`` by default):

1. :func:`optiwise.recommend` makes a recipe for the workload's model, batch and run length;
2. :func:`optiwise.audit` checks the recipe's objects and the two naive setups (Adam at
   1e-3 and SGD at 0.01 without momentum, both at a constant LR: ``knowledge.NAIVE_SETUPS``);
3. :func:`optiwise.find_lr` runs the LR range test with the recipe's optimizer, and
   :func:`optiwise.tune` chooses the recipe's peak LR by short trials that mirror the run
   (at most ``tune_budget`` times the run's steps);
4. the recipe is trained at the tuned LR (or, with ``tune_budget=None``, the range test's
   recommendation; ``Recipe.with_lr``, then ``Recipe.build``: optimizer, scheduler and
   :class:`~optiwise.Stepper`), and the naive setups on the same budget, data order and
   seed, all by the benchmark's own loop (:func:`optiwise.bench.protocol.train_problem`);
5. :func:`write_demo_report` writes the folder: ``index.md`` with the summary table, the
   recipe with its reasons, the audit findings and the plots.

With ``jobs=2`` the naive setups train in a second process while this one runs the range
test and the recipe, so both CPU cores work; every run is seeded, so the results do not
depend on ``jobs``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import math
import multiprocessing
import os
import queue as _queue
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optiwise import knowledge
from optiwise._io import atomic_dir, atomic_write_text
from optiwise._progress import Progress
from optiwise._version import __version__
from optiwise.advisor import Recipe, recommend
from optiwise.audit import Finding, audit
from optiwise.bench.protocol import RunResult, train_problem
from optiwise.bench.report import _colors, _md_table, _num, check_out_dir
from optiwise.bench.workloads import Problem, Workload, get_workload
from optiwise.lr_finder import LRFinderResult, find_lr
from optiwise.train import Stepper
from optiwise.tune import TuneResult, tune

__all__ = [
    "DEMO_BUDGET",
    "DemoConfig",
    "DemoResult",
    "SetupRun",
    "comparisons",
    "run_demo",
    "summary_rows",
    "write_demo_report",
]

#: Steps of each of the three training runs: about half an epoch of Fashion-MNIST at batch
#: 128, so that the three runs and the LR range test fit in a few minutes on two CPU cores.
DEMO_BUDGET = 250
#: Validation examples that score the range test's confirmation runs.
_LR_VAL_EXAMPLES = 1024

Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoConfig:
    """What the demo trains, and how long.

    Attributes
    ----------
    workload:
        A workload with array data (``fmnist-cnn``, ``fmnist-mlp``, ``digits-mlp``,
        ``diabetes-mlp``).
    budget:
        Optimizer steps of each run (the same for the three setups).
    seed:
        Seeds the model's initialization and the batch order of every run.
    limit:
        Use at most this many examples of each split (for quick looks); ``None``: all.
    eval_every:
        Evaluate every this many steps (``None``: the workload's own interval).
    lr_steps:
        Steps of the LR range test's sweep (>= 10).
    lr_confirm:
        Candidate LRs the range test confirms with short training runs (>= 1).
    lr_confirm_steps:
        Steps of each confirmation run; default ``max(10, lr_steps // 2)``.
    jobs:
        1: everything in this process, one run after the other; 2: the naive setups train
        in a second process at the same time.
    tune_budget:
        :func:`optiwise.tune`'s budget as a fraction of ``budget`` (its steps, never
        exceeded); ``None``: no tuning, the recipe trains at the range test's LR.
    """

    workload: str = "fmnist-cnn"
    budget: int = DEMO_BUDGET
    seed: int = 0
    limit: int | None = None
    eval_every: int | None = 50
    lr_steps: int = 80
    lr_confirm: int = 3
    lr_confirm_steps: int | None = None
    jobs: int = 2
    tune_budget: float | None = 1.0

    def validated(self) -> DemoConfig:
        """A copy with the workload's canonical name; a ValueError naming the first bad
        value otherwise."""
        workload = get_workload(self.workload)
        if workload.toy is not None or workload.batch_size == 0:
            raise ValueError(f"the demo needs a workload with real data, not {workload.name!r}")
        _check_int("budget", self.budget, 1)
        _check_int("seed", self.seed, 0)
        for name in ("limit", "eval_every", "lr_confirm_steps"):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, 2 if name == "lr_confirm_steps" else 1)
        _check_int("lr_steps", self.lr_steps, 10)
        _check_int("lr_confirm", self.lr_confirm, 1)
        tb = self.tune_budget
        if tb is not None and (
            isinstance(tb, bool) or not isinstance(tb, (int, float)) or not 0 < tb < math.inf
        ):
            raise ValueError(f"Invalid tune_budget: {tb!r} (a fraction of budget > 0, or None)")
        if tb is not None:
            from optiwise.tune import plan_rungs

            try:
                plan_rungs(math.floor(tb * self.budget + 1e-9), self.budget)
            except ValueError as exc:
                raise ValueError(
                    f"tune_budget={tb} of a {self.budget}-step run: {exc}; or pass "
                    "tune_budget=None (--tune-budget 0) to train at the range test's LR"
                ) from None
        if self.jobs not in (1, 2):
            raise ValueError(f"Invalid jobs: {self.jobs!r} (use 1 or 2 processes)")
        return replace(self, workload=workload.name)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Invalid {name}: {value!r} (must be an int >= {minimum})")


@dataclass(frozen=True)
class SetupRun:
    """One trained setup.

    Attributes
    ----------
    key:
        ``recipe`` or the naive setup's registry name (``adam``, ``sgd_plain``).
    title:
        The optimizer, its (peak) LR and the schedule, in a few words.
    code:
        How it was built, as code.
    result:
        The run, as the benchmark records it.
    step_losses, step_lrs:
        Training loss and LR (largest param group) of every optimizer step.
    findings:
        :func:`optiwise.audit` of the setup's optimizer and scheduler.
    """

    key: str
    title: str
    code: str
    result: RunResult
    step_losses: list[float]
    step_lrs: list[float]
    findings: list[Finding] = field(default_factory=list)

    @property
    def best_val_loss(self) -> float:
        """Lowest validation loss of the run (NaN when none was finite)."""
        finite = [v for v in self.result.val_loss if math.isfinite(v)]
        return min(finite) if finite else math.nan


@dataclass(frozen=True)
class DemoResult:
    """Everything the demo did; :func:`write_demo_report` writes it.

    ``advised`` is the advisor's recipe and ``advised_findings`` the audit of what it
    builds; ``recipe`` is the recipe as trained (its LR set from the range test), whose
    audit is in its run's ``findings``.  ``lr_val_examples`` validation examples scored
    the range test's confirmation runs.  ``runs`` holds the recipe's run first.
    ``wall_time`` and ``cpu_time`` (this process and its worker) cover the whole demo;
    ``load`` is the machine's 1-minute load average at the start and at the end.
    ``tuned`` is :func:`optiwise.tune`'s result (None with ``tune_budget=None``).
    """

    config: DemoConfig
    workload: Workload
    data_source: str
    advised: Recipe
    advised_findings: list[Finding]
    recipe: Recipe
    lr_test: LRFinderResult
    runs: list[SetupRun]
    lr_val_examples: int
    wall_time: float
    cpu_time: float
    threads: int
    load: tuple[float, float]
    tuned: TuneResult | None = None

    def run(self, key: str) -> SetupRun:
        """The run of setup ``key``."""
        for r in self.runs:
            if r.key == key:
                return r
        raise ValueError(f"no run {key!r}; runs: {', '.join(r.key for r in self.runs)}")


# --------------------------------------------------------------------------------------------
# The setups
# --------------------------------------------------------------------------------------------


def _naive_code(key: str) -> str:
    spec = knowledge.NAIVE_SETUPS[key].value
    args = ", ".join(f"{k}={v!r}" for k, v in spec.items() if k != "optimizer")
    return f"torch.optim.{spec['optimizer']}(model.parameters(), {args})  # no scheduler"


def _naive_optimizer(key: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    spec = dict(knowledge.NAIVE_SETUPS[key].value)
    cls = getattr(torch.optim, spec.pop("optimizer"))
    optimizer: torch.optim.Optimizer = cls(model.parameters(), **spec)
    return optimizer


def _audit_args(workload: Workload, budget: int, accumulation: int = 1) -> dict[str, Any]:
    return {"batch_size": workload.batch_size * accumulation, "total_steps": budget}


class _Recorder:
    """Per-step training loss and LR of one run, forwarded to a progress callback."""

    def __init__(self, stepper: Stepper, tick: Callable[[], None]) -> None:
        self.stepper = stepper
        self.tick = tick
        self.losses: list[float] = []
        self.lrs: list[float] = []

    def __call__(self, step: int, loss: float) -> None:
        self.losses.append(loss)
        last = self.stepper.last_result
        self.lrs.append(max(last.lrs) if last is not None else math.nan)
        self.tick()


def _train_naive(
    workload: Workload, cfg: DemoConfig, key: str, tick: Callable[[], None]
) -> tuple[RunResult, list[float], list[float]]:
    problem = workload.build(cfg.seed, cfg.limit)
    optimizer = _naive_optimizer(key, problem.model)
    stepper = Stepper(optimizer, None, model=problem.model)
    record = _Recorder(stepper, tick)
    result = train_problem(
        workload,
        problem,
        stepper,
        name=key,
        lr=float(knowledge.NAIVE_SETUPS[key].value["lr"]),
        seed=cfg.seed,
        budget=cfg.budget,
        schedule="constant",
        eval_every=cfg.eval_every,
        on_step=record,
    )
    return result, record.losses, record.lrs


def _naive_worker(cfg: DemoConfig, threads: int, messages: Any) -> None:
    """The second process: train the naive setups, reporting each step and each result."""
    try:
        torch.set_num_threads(threads)
        workload = get_workload(cfg.workload)
        for key in knowledge.NAIVE_SETUPS:
            result, losses, lrs = _train_naive(
                workload, cfg, key, functools.partial(messages.put, ("step", key))
            )
            messages.put(("run", key, result.to_dict(), losses, lrs))
    except BaseException as exc:  # reported to the parent, which raises it
        messages.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        messages.put(("done",))


class _Worker:
    """The naive setups in a second (spawned) process, or in this one (``jobs=1``).

    The process reports every step, each finished run, and an error; :meth:`poll` handles
    what has arrived and raises as soon as the process has failed or died.
    """

    def __init__(self, cfg: DemoConfig, tick: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.tick = tick
        self.runs: dict[str, tuple[RunResult, list[float], list[float]]] = {}
        self.proc: Any = None
        self.messages: Any = None
        self.finished = False

    def start(self) -> None:
        if self.cfg.jobs < 2:
            return
        ctx = multiprocessing.get_context("spawn")
        self.messages = ctx.Queue()
        self.proc = ctx.Process(
            target=_naive_worker,
            args=(self.cfg, torch.get_num_threads(), self.messages),
            name="optiwise-demo-naive",
            daemon=True,
        )
        self.proc.start()

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "step":
            self.tick(message[1])
        elif kind == "run":
            _, key, result, losses, lrs = message
            self.runs[key] = (RunResult.from_dict(result), losses, lrs)
        elif kind == "error":
            raise RuntimeError(f"training the naive setups failed: {message[1]}")
        else:
            self.finished = True

    def poll(self, wait: float = 0.0) -> None:
        """Handle the messages that have arrived (waiting up to ``wait`` seconds for one);
        a RuntimeError when the process failed or died before finishing."""
        if self.messages is None or self.finished:
            return
        alive = self.proc.is_alive()  # before reading: a dead process sent all it could
        timeout: float | None = wait if wait > 0 else None
        while not self.finished:
            try:
                message = self.messages.get(timeout is not None, timeout)
            except _queue.Empty:
                break
            timeout = None
            self._handle(message)
        if not alive and not self.finished:
            raise RuntimeError(
                "training the naive setups failed: the worker process exited with code "
                f"{self.proc.exitcode} (with jobs=2, call run_demo from under "
                "`if __name__ == '__main__':`)"
            )

    def finish(self, workload: Workload) -> dict[str, tuple[RunResult, list[float], list[float]]]:
        """Wait for the worker's runs (or, with ``jobs=1``, train the setups here)."""
        if self.proc is None:
            for key in knowledge.NAIVE_SETUPS:
                self.runs[key] = _train_naive(
                    workload, self.cfg, key, functools.partial(self.tick, key)
                )
            return self.runs
        while not self.finished:
            self.poll(wait=1.0)
        self.proc.join(timeout=10)
        return self.runs

    def stop(self) -> None:
        """End the worker process if it is still running."""
        if self.proc is not None and self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=10)


# --------------------------------------------------------------------------------------------
# The LR range test
# --------------------------------------------------------------------------------------------


def _probe_data(
    workload: Workload, problem: Problem, cfg: DemoConfig, n_batches: int, tick: Callable[[], None]
) -> tuple[list[Any], list[Any], int, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """The first ``n_batches`` batches of the run's own data order, a slice of the
    validation set in batches (and its size), and the loss, counting training micro-batches
    through ``tick``."""
    assert problem.criterion is not None and problem.val_data is not None
    criterion = problem.criterion
    stream = workload.build(cfg.seed, cfg.limit).next_batch
    batches = [stream() for _ in range(n_batches)]
    x_val, y_val = problem.val_data
    n = min(len(y_val), _LR_VAL_EXAMPLES)
    size = workload.batch_size
    val = [(x_val[i : i + size], y_val[i : i + size]) for i in range(0, n, size)]

    def counted(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():  # a training micro-batch, not an evaluation
            tick()
        return criterion(outputs, targets)

    return batches, val, n, counted


def _tune(
    workload: Workload,
    problem: Problem,
    recipe: Recipe,
    cfg: DemoConfig,
    tick: Callable[[], None],
) -> TuneResult:
    """:func:`optiwise.tune` on the workload: each trial a fresh model of the workload from
    the run's seed, the run's first batches, the range test's validation slice."""
    assert cfg.tune_budget is not None
    batches, val, _, counted = _probe_data(
        workload, problem, cfg, cfg.budget * recipe.accumulation, tick
    )
    return tune(
        lambda seed: workload.build(seed, cfg.limit).model,
        batches,
        loss_fn=counted,
        val_data=val,
        recipe=recipe,
        total_steps=cfg.budget,
        budget=cfg.tune_budget,
        seed=cfg.seed,
    )


def _lr_test(
    workload: Workload,
    problem: Problem,
    recipe: Recipe,
    cfg: DemoConfig,
    tick: Callable[[], None],
) -> tuple[LRFinderResult, int]:
    """The range test with the recipe's optimizer on ``problem``'s model (restored after),
    on the first batches of the run's own data order and a slice of the validation set
    (the result, and how many validation examples)."""
    confirm_steps = cfg.lr_confirm_steps or max(10, cfg.lr_steps // 2)
    n_batches = max(cfg.lr_steps, confirm_steps) * recipe.accumulation
    batches, val, n, counted = _probe_data(workload, problem, cfg, n_batches, tick)

    optimizer, _, _ = recipe.build(problem.model)
    found = find_lr(
        problem.model,
        counted,
        batches,
        optimizer,
        num_steps=cfg.lr_steps,
        accumulation=recipe.accumulation,
        amp=recipe.amp or False,
        val_data=val,
        task=recipe.task,
        confirm=cfg.lr_confirm,
        confirm_steps=confirm_steps,
        total_steps=cfg.budget,
    )
    return found, n


# --------------------------------------------------------------------------------------------
# The demo
# --------------------------------------------------------------------------------------------


class _Tracker:
    """Progress over every training step of the demo: a bar when enabled, else a line
    through ``log`` at every tenth of the steps; stage lines through ``log`` either way."""

    def __init__(self, bar: bool, total: int, desc: str, log: Log | None) -> None:
        self.bar = Progress(total, desc, enabled=bar)
        self.log = log
        self.total = total
        self.done = 0
        self.start = time.perf_counter()

    def say(self, text: str) -> None:
        if self.log is None:
            return
        with self.bar.paused():
            self.log(text)

    def step(self) -> None:
        self.done += 1
        self.bar.update()
        tenth = max(1, self.total // 10)
        if not self.bar.active and self.done % tenth == 0 and self.done < self.total:
            self.say(
                f"  {100 * self.done / self.total:.0f}% of {self.total} training steps, "
                f"{time.perf_counter() - self.start:.0f} s"
            )

    def label(self, text: str) -> None:
        self.bar.label(text)

    def close(self) -> None:
        self.bar.close()


def _cpu_seconds() -> float:
    """CPU seconds of this process and its finished child processes (the worker)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows: this process only
        return time.process_time()
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - platforms without a load average
        return math.nan


def _codes(findings: Sequence[Finding]) -> str:
    return ", ".join(f"{f.severity.value} {f.code} {f.name}" for f in findings) or "no findings"


def _describe(r: RunResult, metric: str) -> str:
    if r.diverged:
        return f"diverged at step {r.steps[-1]}"
    return (
        f"final {metric} {r.final_metric:.4f}, best {r.best_metric:.4f}, "
        f"val loss {r.final_val_loss:.4f}, {r.train_time:.0f} s of training"
    )


def run_demo(
    config: DemoConfig | None = None, *, progress: bool = False, log: Log | None = None
) -> DemoResult:
    """Recommend, audit, range-test and train a recipe against two naive setups.

    Parameters
    ----------
    config:
        What to train (default: :class:`DemoConfig`'s defaults, the real demo).
    progress:
        Show a progress bar over every training step (range test included) on stderr.
    log:
        Called with a line of text at each stage (recipe, audits, LR, each finished run).

    Raises
    ------
    ValueError
        A bad configuration, or a workload without array data.
    optiwise.bench.DataUnavailableError
        The workload's data is not installed (the message says what to install).
    """
    cfg = (config or DemoConfig()).validated()
    start_wall, start_cpu, start_load = time.perf_counter(), _cpu_seconds(), _load()
    workload = get_workload(cfg.workload)
    problem = workload.build(cfg.seed, cfg.limit)
    if problem.criterion is None or problem.val_data is None:
        raise ValueError(f"the demo needs a workload with array data, not {workload.name!r}")
    advised = recommend(
        problem.model,
        batch_size=workload.batch_size,
        total_steps=cfg.budget,
        dataset_size=problem.train_size,
    )
    confirm_steps = cfg.lr_confirm_steps or max(10, cfg.lr_steps // 2)
    lr_steps = (cfg.lr_steps + cfg.lr_confirm * confirm_steps) * advised.accumulation
    tune_steps = 0
    if cfg.tune_budget is not None:
        tune_steps = math.floor(cfg.tune_budget * cfg.budget + 1e-9) * advised.accumulation
    lr_steps += tune_steps
    naive = list(knowledge.NAIVE_SETUPS)
    total = lr_steps + cfg.budget * (1 + len(naive))
    bar = _Tracker(progress, total, workload.name, log)
    say = bar.say
    try:
        say(f"data: {problem.data_source}")
        say(
            f"recipe: {knowledge.get_info(advised.optimizer).display} at lr "
            f"{advised.hparams['lr']:.3g}, {advised.schedule or 'constant LR'}, "
            f"{cfg.budget} steps of batch {advised.effective_batch_size}"
        )
        built = advised.build(problem.model)
        advised_findings = audit(
            built[0],
            model=problem.model,
            scheduler=built[1],
            **_audit_args(workload, cfg.budget, advised.accumulation),
        )
        say(f"audit of the recipe: {_codes(advised_findings)}")
        naive_findings = {
            key: audit(
                _naive_optimizer(key, problem.model),
                model=problem.model,
                **_audit_args(workload, cfg.budget),
            )
            for key in naive
        }
        for key, found in naive_findings.items():
            say(f"audit of {_naive_code(key)}: {_codes(found)}")
        worker = _Worker(cfg, lambda key: bar.step())

        def tick() -> None:
            bar.step()
            worker.poll()

        worker.start()
        try:
            bar.label("LR range test")
            lr_test, lr_val = _lr_test(workload, problem, advised, cfg, tick)
            rec = lr_test.recommended
            say(f"LR range test: peak LR {rec.lr:.3g} ({rec.name}: {rec.reason})")
            tuned = None
            if cfg.tune_budget is None:
                peak = float(f"{rec.lr:.3g}")
                recipe = advised.with_lr(
                    peak,
                    reason=f"the LR range test's recommendation to 3 digits ({rec.name}: "
                    f"{rec.reason}); the advisor's default was {advised.hparams['lr']:.3g}",
                    source="optiwise.find_lr",
                )
            else:
                bar.label("tune")
                tuned = _tune(workload, problem, advised, cfg, tick)
                for _ in range((tuned.budget_steps - tuned.spent_steps) * advised.accumulation):
                    tick()  # the budget the probe did not need
                say(
                    f"tune: peak LR {tuned.lr:.3g} from {len(tuned.trials)} trials, "
                    f"{tuned.spent_steps} of {tuned.budget_steps} budgeted steps"
                )
                peak = float(f"{tuned.lr:.3g}")
                recipe = advised.with_lr(
                    peak,
                    reason=f"optiwise.tune's LR to 3 digits ({len(tuned.trials)} trials, "
                    f"{tuned.spent_steps} steps); the advisor's default was "
                    f"{advised.hparams['lr']:.3g}",
                    source="optiwise.tune",
                )
            optimizer, scheduler, stepper = recipe.build(problem.model)
            findings = audit(
                optimizer,
                model=problem.model,
                scheduler=scheduler,
                **_audit_args(workload, cfg.budget, recipe.accumulation),
            )
            say(f"audit of the recipe at that LR: {_codes(findings)}")
            record = _Recorder(stepper, tick)
            bar.label("recipe" + (" + naive setups" if cfg.jobs > 1 else ""))
            result = train_problem(
                workload,
                problem,
                stepper,
                name=recipe.optimizer,
                lr=peak,
                seed=cfg.seed,
                budget=cfg.budget,
                schedule=recipe.schedule or "constant",
                eval_every=cfg.eval_every,
                on_step=record,
            )
            say(f"recipe: {_describe(result, workload.metric)}")
            runs = [
                SetupRun(
                    "recipe",
                    f"{knowledge.get_info(recipe.optimizer).display} {peak:.3g}, "
                    f"{recipe.schedule or 'constant'}",
                    recipe.to_code(),
                    result,
                    record.losses,
                    record.lrs,
                    findings,
                )
            ]
            bar.label("naive setups")
            for key, (res, losses, lrs) in worker.finish(workload).items():
                title = f"{knowledge.get_info(key).display} {res.lr:.3g}, constant"
                code = _naive_code(key)
                runs.append(SetupRun(key, title, code, res, losses, lrs, naive_findings[key]))
                say(f"{key}: {_describe(res, workload.metric)}")
        finally:
            worker.stop()
    finally:
        bar.close()
    return DemoResult(
        config=cfg,
        workload=workload,
        data_source=problem.data_source,
        advised=advised,
        advised_findings=advised_findings,
        recipe=recipe,
        lr_test=lr_test,
        runs=runs,
        lr_val_examples=lr_val,
        wall_time=time.perf_counter() - start_wall,
        cpu_time=_cpu_seconds() - start_cpu,
        threads=torch.get_num_threads(),
        load=(start_load, _load()),
        tuned=tuned,
    )


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------

SUMMARY_HEADER = (
    "setup",
    "optimizer, peak LR, schedule",
    "final val {metric}",
    "best val {metric}",
    "final val loss",
    "best val loss",
    "steps to {target}",
    "train s",
    "train s to target",
)


def _first_reach(run: RunResult, value: float, higher_is_better: bool) -> int | None:
    """The first evaluation step at which ``run``'s metric is at least as good as ``value``."""
    for step, metric in zip(run.steps, run.metric, strict=True):
        if math.isfinite(metric) and (metric >= value if higher_is_better else metric <= value):
            return step
    return None


def comparisons(result: DemoResult) -> list[str]:
    """One sentence per naive setup: when the recipe first matched its final metric."""
    w, recipe = result.workload, result.run("recipe").result
    lines = []
    for run in result.runs[1:]:
        final = run.result.final_metric
        if not math.isfinite(final):
            lines.append(f"{run.key} diverged; the recipe did not.")
            continue
        step = _first_reach(recipe, final, w.target.higher_is_better)
        reached = "never" if step is None else f"at step {step} of {recipe.budget}"
        lines.append(f"The recipe reached {run.key}'s final {w.metric} ({final:.4g}) {reached}.")
    return lines


def summary_rows(result: DemoResult) -> tuple[list[str], list[list[str]]]:
    """The summary table: a header and one row per setup (recipe first)."""
    w = result.workload
    header = [h.format(metric=w.metric, target=w.target.describe()) for h in SUMMARY_HEADER]
    rows = []
    for run in result.runs:
        r = run.result
        rows.append(
            [
                run.key,
                run.title,
                _num(r.final_metric),
                _num(r.best_metric),
                _num(r.final_val_loss),
                _num(run.best_val_loss),
                "never" if r.steps_to_target is None else str(r.steps_to_target),
                f"{r.train_time:.1f}",
                "-" if r.time_to_target is None else f"{r.time_to_target:.1f}",
            ]
        )
    return header, rows


def _ema(values: Sequence[float] | np.ndarray, beta: float = 0.9) -> np.ndarray:
    out, avg = [], 0.0
    for t, v in enumerate(values):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** (t + 1)))
    return np.asarray(out)


def _plot_curves(result: DemoResult, path: Path) -> None:
    from optiwise._plotting import new_grid, save_figure

    w = result.workload
    colors = _colors([r.key for r in result.runs])
    fig, (train_ax, val_ax, metric_ax, lr_ax) = new_grid(2, 2, 12.0, 7.5)
    for run in result.runs:
        c, r = colors[run.key], run.result
        label = f"{run.key}: {run.title}"
        steps = np.arange(1, len(run.step_losses) + 1)
        losses = np.asarray(run.step_losses, dtype=float)
        train_ax.plot(steps, losses, color=c, alpha=0.15, linewidth=0.8)
        train_ax.plot(steps, _ema(losses), color=c, linewidth=1.6, label=label)
        val_ax.plot(r.steps, r.val_loss, color=c, marker="o", markersize=3, label=label)
        metric_ax.plot(r.steps, r.metric, color=c, marker="o", markersize=3, label=label)
        lr_ax.plot(steps, run.step_lrs, color=c, linewidth=1.6, label=label)
    metric_ax.axhline(w.target.value, color="grey", linestyle="--", linewidth=1, label="target")
    later = [m for run in result.runs for m in run.result.metric[1:] if math.isfinite(m)]
    if later and w.target.higher_is_better and w.target.value <= 1.0:
        low = min(min(later), w.target.value)
        metric_ax.set_ylim(max(0.0, low - 0.05), min(1.0, max(max(later), w.target.value) + 0.02))
    start = [r.result.val_loss[0] for r in result.runs if math.isfinite(r.result.val_loss[0])]
    if start:
        for ax in (train_ax, val_ax):
            ax.set_ylim(0.0, 1.2 * max(start))
    for ax, title, ylabel in (
        (train_ax, "training loss (smoothed; raw faint)", "loss"),
        (val_ax, "validation loss", "loss"),
        (metric_ax, f"validation {w.metric}", w.metric),
        (lr_ax, "learning rate", "LR"),
    ):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    lr_ax.set_yscale("log")
    metric_ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"{w.name}: the recipe and two naive setups, {result.config.budget} steps of batch "
        f"{w.batch_size}, seed {result.config.seed}"
    )
    save_figure(fig, path)


def _findings_md(title: str, findings: Sequence[Finding]) -> list[str]:
    if not findings:
        return [f"{title}: no findings.", ""]
    lines = [f"{title}:", ""]
    for f in findings:
        lines.append(f"- {f.severity.value} **{f.code}** {f.name}: {f.message}")
        lines.append(f"  - fix: {f.fix}")
        lines.append(f"  - why: {f.why}")
    lines.append("")
    return lines


def _audit_md(result: DemoResult) -> list[str]:
    lines = _findings_md(
        f"**recipe** as advised (lr {result.advised.hparams['lr']:.3g}; the objects "
        "`recipe.build(model)` returns)",
        result.advised_findings,
    )
    trained = result.run("recipe")
    lines += _findings_md(
        f"**recipe** as trained (lr {trained.result.lr:.3g} from the LR range test)",
        trained.findings,
    )
    if trained.findings:
        lines += [
            "The audit judges an LR by rules of thumb from `optiwise.knowledge`; it cannot "
            "tell an LR measured by the range test from one chosen by mistake.",
            "",
        ]
    for run in result.runs:
        if run.key != "recipe":
            lines += _findings_md(f"**{run.key}** (`{run.code}`)", run.findings)
    return lines


def _tune_md(result: DemoResult) -> list[str]:
    tuned = result.tuned
    if tuned is None:
        return []
    cfg = result.config
    return [
        "## Tuning",
        "",
        f"`optiwise.tune` with the recipe, `total_steps={cfg.budget}`, "
        f"`budget={cfg.tune_budget}`: {len(tuned.trials)} trials that mirror the run (its "
        "optimizer, parameter groups, clipping and schedule, compressed, the warmup in steps), "
        f"{tuned.spent_steps} of {tuned.budget_steps} budgeted optimizer steps. The recipe "
        f"trains at its peak LR **{tuned.lr:.3g}**.",
        "",
        "```",
        tuned.summary(),
        "```",
        "",
        "![tune](tune.png)",
        "",
    ]


def _index(result: DemoResult, command: str | None) -> str:
    w, cfg, rec = result.workload, result.config, result.recipe
    header, rows = summary_rows(result)
    lt = result.lr_test
    chosen = lt.recommended
    tuned = result.tuned
    source = (
        f"the LR range test's recommendation, {chosen.lr:.3g} (below)"
        if tuned is None
        else f"`optiwise.tune`'s, {tuned.lr:.3g} (below)"
    )
    lines = [
        "# optiwise demo: a recipe against two naive setups",
        "",
        f"Generated {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by "
        f"optiwise {__version__}" + (f" (`{command}`)" if command else "") + ".",
        "",
        f"- workload: `{w.name}` — {w.description}; target {w.target.describe()}",
        f"- data: {result.data_source}"
        + (f" (limited to {cfg.limit} examples per split)" if cfg.limit else ""),
        f"- every setup: {cfg.budget} optimizer steps of batch {w.batch_size}, the same "
        f"initialization and batch order (seed {cfg.seed}); validation every "
        f"{cfg.eval_every or w.eval_every} steps",
        f"- took {result.wall_time:.0f} s wall-clock and {result.cpu_time:.0f} s of CPU "
        f"({cfg.jobs} process(es), {result.threads} torch thread(s) each); load average "
        f"{result.load[0]:.2f} at the start, {result.load[1]:.2f} at the end",
        "",
        "## Summary",
        "",
        _md_table(header, rows),
        "",
        *comparisons(result),
        "",
        "`train s` counts training only (evaluation excluded); `steps to` is the first "
        "evaluation at or past the target.",
        "",
        "![curves](curves.png)",
        "",
        "## The recipe",
        "",
        f"`optiwise.recommend(model, batch_size={w.batch_size}, total_steps={cfg.budget}, "
        f"dataset_size={result.advised.setup.dataset_size})` chose "
        f"{knowledge.get_info(rec.optimizer).display} with {rec.schedule or 'a constant LR'}; "
        f"its LR of {result.advised.hparams['lr']:.3g} was then replaced by {source}. "
        "Every choice with its rule and reason:",
        "",
        "```",
        rec.explain(),
        "```",
        "",
        "The same as code (`recipe.py`; `recipe.yaml` holds it as data):",
        "",
        "```python",
        rec.to_code().rstrip(),
        "```",
        "",
        "## LR range test",
        "",
        f"`optiwise.find_lr` with the recipe's optimizer (its parameter groups and "
        f"hyperparameters), {lt.num_steps} steps from {lt.start_lr:.3g} to {lt.end_lr:.3g}, "
        f"then {len(lt.confirmations)} short warmup + cosine confirmation runs scored on "
        f"{result.lr_val_examples} validation examples. Recommended: peak LR "
        f"**{chosen.lr:.3g}** ({chosen.name}: {chosen.reason}).",
        "",
        "```",
        lt.summary(),
        "```",
        "",
        "![LR range test](lr_finder.png)",
        "",
        *_tune_md(result),
        "## Audit",
        "",
        "`optiwise.audit(optimizer, model=model, scheduler=scheduler, "
        f"batch_size={w.batch_size}, total_steps={cfg.budget})` on each setup:",
        "",
    ]
    lines += _audit_md(result)
    lines += [
        "## Files",
        "",
        "- `curves.png`: training loss, validation loss and "
        f"{w.metric}, and the LR of every step, for the three setups",
        "- `lr_finder.png`: the LR range test",
        *(["- `tune.png`: the tuning trials and the horizon fit"] if tuned is not None else []),
        "- `recipe.txt`, `recipe.yaml`, `recipe.py`: the recipe as trained, explained, as "
        "data and as code",
        "- `summary.json`: the table, the findings, the runs' curves and the range test as data",
        "",
    ]
    return "\n".join(lines)


def _summary_json(result: DemoResult) -> dict[str, Any]:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    header, rows = summary_rows(result)
    return clean(
        {
            "optiwise": __version__,
            "workload": result.workload.name,
            "data_source": result.data_source,
            "config": result.config.__dict__,
            "wall_time": result.wall_time,
            "cpu_time": result.cpu_time,
            "threads": result.threads,
            "load": list(result.load),
            "summary": {"header": header, "rows": rows},
            "lr_test": result.lr_test.to_dict(),
            "tune": result.tuned.to_dict() if result.tuned is not None else None,
            "runs": [
                {
                    "key": run.key,
                    "title": run.title,
                    "code": run.code,
                    "result": run.result.to_dict(),
                    "step_losses": run.step_losses,
                    "step_lrs": run.step_lrs,
                    "findings": [f.to_dict() for f in run.findings],
                }
                for run in result.runs
            ],
        }
    )


def write_demo_report(
    result: DemoResult, out: str | os.PathLike[str], *, command: str | None = None
) -> Path:
    """Write the demo's report folder ``out`` (replacing a previous one as a whole: it is
    built beside it and renamed into place); returns the path of its ``index.md``."""
    target = check_out_dir(out)
    with atomic_dir(target) as tmp:
        result.lr_test.plot(tmp / "lr_finder.png")
        if result.tuned is not None:
            result.tuned.plot(tmp / "tune.png")
        _plot_curves(result, tmp / "curves.png")
        atomic_write_text(tmp / "recipe.txt", result.recipe.explain() + "\n")
        atomic_write_text(tmp / "recipe.yaml", result.recipe.to_yaml())
        atomic_write_text(tmp / "recipe.py", result.recipe.to_code())
        atomic_write_text(tmp / "summary.json", json.dumps(_summary_json(result), indent=2) + "\n")
        atomic_write_text(tmp / "index.md", _index(result, command))
    return target / "index.md"
