"""Budgeted LR tuning: short trials that mirror the planned run, successive halving over a
log-LR grid, and an LR extrapolated to the planned run's length.

:func:`tune` spends at most ``budget`` times the planned run's optimizer steps:

1. a short LR range test (:func:`optiwise.find_lr`, no confirmations) keeps the first grid
   below the LRs where the loss blows up, and moves it up when the curve's minimum lies
   far above the prior;
2. rung 0 trains a half-decade grid around the prior (the recipe's LR, from
   :mod:`optiwise.knowledge`) for ``h0`` steps each; every later rung trains a few LRs at a
   quarter decade or finer around the previous rung's best, for 3x as many steps;
3. each rung's best LR (a parabola through the best score and its neighbours in log-LR)
   is fitted against the trial length, ``log lr* = a + b log steps``, and extrapolated to
   ``total_steps``; with one rung the slope is ``knowledge.TUNE_HORIZON_EXPONENT``.

Every trial builds a fresh model with ``make_model(seed)`` and the recipe's optimizer,
parameter groups, clipping, AMP and EMA (:meth:`Recipe.build` and its
:class:`~optiwise.Stepper`), and the recipe's schedule compressed to the trial: same
shape, the warmup measured in steps (the planned warmup when it fits in a quarter of the
trial, never fewer than ``knowledge.TUNE_WARMUP_FLOOR`` steps).  Trials are Optuna trials
of one study (its pruner stops a trial whose training loss blows up); with ``storage`` the
study lives in a SQLite file or an RDB URL, and a second call with the same arguments
reuses every finished trial.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from optiwise import knowledge
from optiwise._progress import Progress
from optiwise.advisor.rules import Choice
from optiwise.lr_finder import best_lr, horizon_exponent_value, trial_warmup

if TYPE_CHECKING:
    from optiwise.advisor.recipe import Recipe

__all__ = ["HorizonFit", "Plan", "Trial", "TuneResult", "plan_rungs", "trial_warmup", "tune"]

LossFn = Callable[[Any, Any], torch.Tensor]

#: Each plan: the rungs' (LR count, trial length as a multiple of the first rung's), and
#: how many extra first-rung trials it reserves for a best LR on an edge of the grid; the
#: first that fits the budget is used.  (A two-rung plan of 4 + 3 trials at 1x and 2x for
#: budgets of a few hundred steps was measured worse than one rung: a slope fitted over a
#: factor of 2 in trial length is mostly noise; benchmarks/advice_quality.py.)
_RUNG_SHAPES: tuple[tuple[tuple[tuple[int, int], ...], int], ...] = (
    (((6, 1), (3, 3), (3, 9)), 2),
    (((6, 1), (3, 3)), 2),
    (((4, 1),), 1),
)
#: Log10 spacing of each rung's LRs: half a decade, then a quarter, then a fifth.
_SPACING = (0.5, 0.25, 0.2)
#: Most extra trials per rung past an edge that scores best.
_MAX_EXTENSIONS = 3
#: Most steps the range test takes, and its share of the budget.
_RANGE_STEPS, _RANGE_SHARE = 100, 0.1
_SOURCE = "optiwise.tune"


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One short training run at one peak LR.

    Attributes
    ----------
    lr:
        Peak LR of the trial's schedule (the largest param group's).
    optimizer:
        Registry name of the optimizer.
    steps:
        Optimizer steps the trial was planned for.
    score:
        Validation score at the end (lower is better); ``inf`` when it diverged.
    diverged:
        The loss or the score turned non-finite, or the pruner stopped the trial because
        its training loss passed ``knowledge.LR_FINDER_DIVERGE`` times the initial one.
    rung:
        Which rung of the successive halving it belongs to (0 first).
    warmup:
        Warmup steps of the trial's schedule.
    spent:
        Optimizer steps it actually took (fewer when it diverged early).
    reused:
        Taken from an earlier, interrupted or finished study in ``storage``.
    """

    lr: float
    optimizer: str
    steps: int
    score: float
    diverged: bool
    rung: int
    warmup: int
    spent: int
    reused: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready: ``score`` is None when it diverged)."""
        return {
            "lr": self.lr,
            "optimizer": self.optimizer,
            "steps": self.steps,
            "score": self.score if math.isfinite(self.score) else None,
            "diverged": self.diverged,
            "rung": self.rung,
            "warmup": self.warmup,
            "spent": self.spent,
            "reused": self.reused,
        }


@dataclass(frozen=True)
class HorizonFit:
    """The best LR of each rung against its trial length, and the power law through them.

    ``lr(steps) = best[-1] * (steps / horizons[-1]) ** slope``; ``fitted`` says whether the
    slope was fitted across rungs (else it is ``knowledge.TUNE_HORIZON_EXPONENT``).
    """

    horizons: tuple[int, ...]
    best: tuple[float, ...]
    slope: float
    fitted: bool

    def lr(self, steps: int) -> float:
        """The best peak LR predicted for a run of ``steps`` optimizer steps."""
        return self.best[-1] * (steps / self.horizons[-1]) ** self.slope


@dataclass(frozen=True)
class Plan:
    """How a budget is spent: range-test steps per optimizer and the rungs' (LR count,
    trial steps), plus up to ``extensions`` more first-rung trials."""

    range_steps: int
    rungs: tuple[tuple[int, int], ...]
    extensions: int

    def steps(self, optimizers: int = 1) -> int:
        """Most optimizer steps the plan spends for ``optimizers`` optimizers."""
        per = self.range_steps + sum(n * h for n, h in self.rungs)
        return optimizers * (per + self.extensions * self.rungs[0][1])


@dataclass(frozen=True)
class TuneResult:
    """What :func:`tune` tried and chose.

    Attributes
    ----------
    lr:
        The chosen peak LR for the planned run (largest param group; others keep their
        ratios).
    recipe:
        The recipe with that LR (and the chosen optimizer).
    trials:
        Every trial, in the order they ran.
    spent_steps:
        Optimizer steps of every trial and range test behind the result (reused ones
        included); never more than ``budget_steps``.
    budget_steps:
        The budget in optimizer steps (``budget * total_steps``, rounded down).
    total_steps:
        Optimizer steps of the planned run.
    optimizer:
        The chosen optimizer's registry name.
    fits:
        The horizon fit of each optimizer tried.
    notes:
        Things the caller should know (accumulation, a study resumed, an LR at an edge).
    study_name:
        The Optuna study's name (in ``storage`` when one was given).
    """

    lr: float
    recipe: Recipe
    trials: tuple[Trial, ...]
    spent_steps: int
    budget_steps: int
    total_steps: int
    optimizer: str
    fits: Mapping[str, HorizonFit]
    notes: tuple[str, ...]
    study_name: str

    @property
    def rows(self) -> list[dict[str, Any]]:
        """The trials as plain rows (lr, optimizer, steps, score, diverged, ...)."""
        return [t.to_dict() for t in self.trials]

    def table(self) -> str:
        """The trials as a text table, best of each rung marked."""
        best: dict[tuple[str, int], Trial] = {}
        for t in self.trials:
            key = (t.optimizer, t.rung)
            if not t.diverged and (key not in best or t.score < best[key].score):
                best[key] = t
        lines = [f"{'optimizer':<12}{'rung':>5}{'steps':>7}{'warmup':>7}{'peak LR':>11}  score"]
        for t in self.trials:
            shown = "diverged" if t.diverged else f"{t.score:.4g}"
            mark = "  <- best" if best.get((t.optimizer, t.rung)) is t else ""
            lines.append(
                f"{t.optimizer:<12}{t.rung:>5}{t.steps:>7}{t.warmup:>7}{t.lr:>11.3g}  {shown}{mark}"
            )
        return "\n".join(lines)

    def summary(self) -> str:
        """A short report: the choice, the fit, the cost and the trials."""
        fit = self.fits[self.optimizer]
        how = "fitted across rungs" if fit.fitted else "the horizon exponent, one rung"
        lines = [
            f"tuned peak LR {self.lr:.3g} for {self.optimizer}, {self.total_steps} steps",
            "  best LR per rung: "
            + ", ".join(
                f"{lr:.3g} at {h} steps" for h, lr in zip(fit.horizons, fit.best, strict=True)
            )
            + f"; slope {fit.slope:.2f} ({how})",
            f"  probe cost: {self.spent_steps} of {self.budget_steps} budgeted optimizer steps "
            f"({self.spent_steps / self.total_steps:.2f}x the planned run)",
            *(f"  note: {n}" for n in self.notes),
            "",
            self.table(),
        ]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        return {
            "lr": self.lr,
            "optimizer": self.optimizer,
            "total_steps": self.total_steps,
            "budget_steps": self.budget_steps,
            "spent_steps": self.spent_steps,
            "study_name": self.study_name,
            "fits": {
                k: {
                    "horizons": list(f.horizons),
                    "best": list(f.best),
                    "slope": f.slope,
                    "fitted": f.fitted,
                }
                for k, f in self.fits.items()
            },
            "notes": list(self.notes),
            "trials": self.rows,
            "recipe": self.recipe.to_dict(),
        }

    def plot(self, path: str | Path) -> Path:
        """Write a PNG: score against LR per rung (left), the best LR against the trial
        length with the fit extrapolated to the planned run (right)."""
        from optiwise._plotting import new_grid, save_figure

        fig, (ax, ax2) = new_grid(1, 2, 11.0, 4.2)
        colors = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")
        for ci, name in enumerate(self.fits):
            for rung in sorted({t.rung for t in self.trials if t.optimizer == name}):
                rows = sorted(
                    (t for t in self.trials if t.optimizer == name and t.rung == rung),
                    key=lambda t: t.lr,
                )
                ok = [t for t in rows if not t.diverged]
                color = colors[(rung + 3 * ci) % len(colors)]
                if ok:
                    ax.plot(
                        [t.lr for t in ok],
                        [t.score for t in ok],
                        "o-",
                        color=color,
                        label=f"{name} rung {rung} ({rows[0].steps} steps)",
                    )
                bad = [t for t in rows if t.diverged]
                if bad and ok:
                    top = max(t.score for t in ok)
                    ax.plot([t.lr for t in bad], [top] * len(bad), "x", color=color)
        ax.axvline(self.lr, color="black", linestyle="--", label=f"chosen {self.lr:.2g}")
        ax.set_xscale("log")
        ax.set_xlabel("peak learning rate")
        ax.set_ylabel("validation score (x: diverged)")
        ax.set_title("trials")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
        for ci, (name, fit) in enumerate(self.fits.items()):
            color = colors[(3 * ci) % len(colors)]
            ax2.plot(fit.horizons, fit.best, "o", color=color, label=f"{name}: best LR per rung")
            xs = [fit.horizons[0], self.total_steps]
            ax2.plot(
                xs,
                [fit.lr(int(x)) for x in xs],
                "--",
                color=color,
                label=f"{name}: slope {fit.slope:.2f}",
            )
        ax2.plot([self.total_steps], [self.lr], "*", color="black", markersize=12, label="chosen")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("optimizer steps")
        ax2.set_ylabel("best peak LR")
        ax2.set_title(f"horizon fit, extrapolated to {self.total_steps} steps")
        ax2.grid(alpha=0.3, which="both")
        ax2.legend(fontsize=7)
        return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------


def _check_int(label: str, value: Any, minimum: int, hint: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Invalid {label}: {value!r} (must be an int >= {minimum}; {hint})")
    return value


def plan_rungs(budget_steps: int, total_steps: int, optimizers: int = 1) -> Plan:
    """The rungs a budget of ``budget_steps`` optimizer steps affords for a planned run of
    ``total_steps`` steps and ``optimizers`` optimizers: three rungs when the first can be at
    least ``knowledge.TUNE_MIN_TRIAL_STEPS`` long, else two, else one; no trial is longer
    than the planned run.  A ValueError says how many steps are needed when even one rung
    does not fit."""
    _check_int("budget_steps", budget_steps, 1, "optimizer steps the probe may spend")
    _check_int("total_steps", total_steps, 1, "optimizer steps of the planned run")
    _check_int("optimizers", optimizers, 1, "how many optimizers are compared")
    floor = knowledge.TUNE_MIN_TRIAL_STEPS.value
    per = budget_steps // optimizers
    range_steps = min(_RANGE_STEPS, int(per * _RANGE_SHARE))
    if range_steps < floor:
        range_steps = 0
    for shape, extensions in _RUNG_SHAPES:
        units = sum(n * m for n, m in shape) + extensions
        for rs in (range_steps, 0):
            h0 = min((per - rs) // units, total_steps // shape[-1][1])
            if h0 >= floor:
                return Plan(rs, tuple((n, h0 * m) for n, m in shape), extensions)
    last, extensions = _RUNG_SHAPES[-1]
    units = last[0][0] + extensions
    raise ValueError(
        f"a budget of {budget_steps} optimizer steps is too small to tune "
        f"{optimizers} optimizer(s): it needs at least {optimizers * units * floor} "
        f"({units} trials of {floor} steps each, knowledge.TUNE_MIN_TRIAL_STEPS); raise "
        "budget or total_steps"
    )


# --------------------------------------------------------------------------------------------
# Data, models, scoring
# --------------------------------------------------------------------------------------------


def _inputs_size(batch: Any) -> int | None:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else None
    if isinstance(batch, (tuple, list)) and batch:
        return _inputs_size(batch[0])
    if isinstance(batch, Mapping) and batch:
        return _inputs_size(next(iter(batch.values())))
    return None


class _Models:
    """Calls ``make_model(seed)`` and refuses a model (or parameters) seen before."""

    def __init__(self, make_model: Callable[[int], nn.Module]) -> None:
        if not callable(make_model):
            raise ValueError(
                f"make_model must be a callable make_model(seed) -> nn.Module, got "
                f"{type(make_model).__name__}"
            )
        self.make = make_model
        self.last: nn.Module | None = None
        self.last_params: set[int] = set()

    def __call__(self, seed: int) -> nn.Module:
        model = self.make(seed)
        if not isinstance(model, nn.Module):
            raise ValueError(
                f"make_model({seed}) returned {type(model).__name__}, not an nn.Module"
            )
        if not any(True for _ in model.parameters()):
            raise ValueError(f"make_model({seed}) returned a model with no parameters")
        params = {id(p) for p in model.parameters()}
        if self.last is not None and (model is self.last or params & self.last_params):
            raise ValueError(
                "make_model returned the same model (or one sharing its parameters) twice: "
                "every trial trains a fresh model, so make_model(seed) must build a new one "
                "on each call (e.g. `lambda seed: Net()`, not `lambda seed: net`)"
            )
        self.last, self.last_params = model, params
        return model


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class _Scorer:
    """``evaluate(model)``, or the mean ``loss_fn`` over the first ``n`` validation batches
    (drawn once, the same batches for every trial)."""

    def __init__(
        self,
        loss_fn: LossFn,
        val_data: Iterable[Any] | None,
        evaluate: Callable[[nn.Module], float] | None,
        n: int,
    ) -> None:
        from optiwise.lr_finder import _Batches

        if val_data is None and evaluate is None:
            raise ValueError(
                "tune scores every trial on held-out data: pass val_data (batches scored with "
                "loss_fn) or evaluate (evaluate(model) -> float, lower is better)"
            )
        if val_data is not None and evaluate is not None:
            raise ValueError("give val_data or evaluate, not both")
        if evaluate is not None and not callable(evaluate):
            raise ValueError(f"evaluate must be callable, got {type(evaluate).__name__}")
        self.loss_fn = loss_fn
        self.evaluate = evaluate
        self.batches: list[Any] = []
        if val_data is not None and not isinstance(val_data, Iterator):
            self.batches = list(itertools.islice(iter(val_data), n))
            if not self.batches:
                raise ValueError("val_data is empty: pass at least one (inputs, targets) batch")
        elif val_data is not None:
            source = _Batches(val_data, "val_data").stream()
            first = next(source)
            self.batches.append(first)
            # a one-shot iterator or a short loader cycles: stop at its first repeat
            while len(self.batches) < n:
                batch = next(source)
                if batch is first:
                    break
                self.batches.append(batch)

    def __call__(self, model: nn.Module, autocast: Any) -> float:
        from optiwise.lr_finder import _to_device

        if self.evaluate is not None:
            value = self.evaluate(model)
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = float(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(
                    f"evaluate(model) must return a number (lower is better), got "
                    f"{type(value).__name__}"
                )
            return float(value)
        device = _device(model)
        total = 0.0
        for batch in self.batches:
            inputs, targets = _to_device(batch, device)
            with autocast():
                total += float(self.loss_fn(model(inputs), targets))
        return total / len(self.batches)


def _trial_recipe(recipe: Recipe, lr: float, steps: int) -> tuple[Recipe, int]:
    """``recipe`` for a ``steps``-step trial at peak LR ``lr``: the schedule compressed (the
    warmup by :func:`trial_warmup`), the EMA horizon scaled with the run; nothing else
    changes."""
    from optiwise.advisor.recipe import Recipe as _Recipe

    total = recipe.total_steps
    assert total is not None
    planned = recipe.warmup_steps or 0
    warm = trial_warmup(planned, total, steps)
    why = f"a {steps}-step trial of the planned {total}-step run"
    choices = dict(recipe.choices)
    choices["optimizer.lr"] = Choice("optimizer.lr", float(lr), "tune-trial", why, _SOURCE)
    if "schedule.warmup" in choices:
        choices["schedule.warmup"] = Choice("schedule.warmup", warm, "tune-trial", why, _SOURCE)
    decay = recipe.ema_decay
    if decay is not None:
        scaled = 1.0 - (1.0 - decay) * total / steps
        choices["ema_decay"] = Choice(
            "ema_decay", scaled if scaled > 0 else None, "tune-trial", why, _SOURCE
        )
    setup = replace(recipe.setup, total_steps=steps, epochs=None, steps_per_epoch=None)
    return _Recipe(setup, choices, recipe.given), warm


# --------------------------------------------------------------------------------------------
# Search helpers
# --------------------------------------------------------------------------------------------


def _vertex(trials: Sequence[Trial]) -> float | None:
    """The best LR of one rung (:func:`optiwise.lr_finder.best_lr` of its trials)."""
    return best_lr([t.lr for t in trials], [t.score for t in trials])


def _slope(horizons: Sequence[int], best: Sequence[float], prior: float) -> tuple[float, bool]:
    lo, hi = knowledge.TUNE_HORIZON_EXPONENT_RANGE.value
    if len(horizons) < 2:
        return prior, False
    xs = [math.log(h) for h in horizons]
    ys = [math.log(b) for b in best]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return min(max(slope, lo), hi), True


def _grid(center: float, n: int, spacing: float) -> list[float]:
    return [center * 10 ** (spacing * (i - (n - 1) / 2)) for i in range(n)]


def _key(name: str, rung: int, lr: float, steps: int) -> str:
    return f"{name}|{rung}|{lr:.6g}|{steps}"


def _fingerprint(parts: Mapping[str, Any]) -> str:
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _storage(storage: str | Path | None) -> Any:
    if storage is None:
        return None
    text = str(storage)
    if "://" in text:
        return text
    path = Path(text)
    if path.parent and not path.parent.exists():
        raise ValueError(f"storage {text!r}: the folder {str(path.parent)!r} does not exist")
    return f"sqlite:///{path.resolve()}"


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


# --------------------------------------------------------------------------------------------
# tune
# --------------------------------------------------------------------------------------------


class _Run:
    """State shared by the trials of one :func:`tune` call."""

    def __init__(
        self,
        models: _Models,
        train: Any,
        loss_fn: LossFn,
        scorer: _Scorer,
        seed: int,
        study: Any,
        bar: Progress,
    ) -> None:
        self.models = models
        self.train = train
        self.loss_fn = loss_fn
        self.scorer = scorer
        self.seed = seed
        self.study = study
        self.bar = bar
        self.trials: list[Trial] = []
        self.spent = 0
        self.done: dict[str, Any] = {}
        from optuna.trial import TrialState

        for ft in study.get_trials(deepcopy=False):
            key = ft.user_attrs.get("key")
            if key and ft.state in (TrialState.COMPLETE, TrialState.PRUNED):
                self.done[key] = ft

    def run(self, recipe: Recipe, name: str, rung: int, lr: float, steps: int) -> Trial:
        from optuna.trial import TrialState

        key = _key(name, rung, lr, steps)
        old = self.done.get(key)
        if old is not None:
            attrs = old.user_attrs
            t = Trial(
                lr,
                name,
                steps,
                math.inf if attrs["diverged"] else float(old.value),
                bool(attrs["diverged"]),
                rung,
                int(attrs["warmup"]),
                int(attrs["spent"]),
                reused=True,
            )
            self.bar.update(t.spent)
        else:
            self.study.enqueue_trial({"lr": lr}, user_attrs={"key": key})
            otrial = self.study.ask()
            otrial.suggest_float("lr", 1e-12, 1e6, log=True)
            t = self._train(recipe, name, rung, lr, steps, otrial)
            otrial.set_user_attr("diverged", t.diverged)
            otrial.set_user_attr("warmup", t.warmup)
            otrial.set_user_attr("spent", t.spent)
            otrial.set_user_attr("optimizer", name)
            otrial.set_user_attr("rung", rung)
            otrial.set_user_attr("steps", steps)
            if t.diverged:
                self.study.tell(otrial, state=TrialState.PRUNED)
            else:
                self.study.tell(otrial, t.score)
        self.spent += t.spent
        self.trials.append(t)
        return t

    def _train(
        self, recipe: Recipe, name: str, rung: int, lr: float, steps: int, otrial: Any
    ) -> Trial:
        from optiwise.lr_finder import _to_device

        trial_recipe, warm = _trial_recipe(recipe, lr, steps)
        torch.manual_seed(self.seed)
        model = self.models(self.seed)
        _, _, stepper = trial_recipe.build(model)
        device = _device(model)
        stream = self.train.stream()
        every = max(1, steps // 20)
        window, count, taken = 0.0, 0, 0
        diverged = False
        model.train()
        for step in range(1, steps + 1):
            loss_sum = 0.0
            for _ in range(stepper.accumulation):
                inputs, targets = _to_device(next(stream), device)
                with stepper.autocast():
                    loss = self.loss_fn(model(inputs), targets)
                value = float(loss.detach())
                if not math.isfinite(value):
                    diverged = True
                    break
                stepper.backward(loss)
                loss_sum += value / stepper.accumulation
            taken = step
            self.bar.update(1)
            if diverged:
                break
            window += loss_sum
            count += 1
            if step % every == 0 or step == steps:
                otrial.report(window / count, step)
                window, count = 0.0, 0
                if otrial.should_prune():
                    diverged = True
                    break
        self.bar.update(steps - taken)
        score = math.inf
        if not diverged:
            with stepper.evaluate(ema=stepper.ema_model is not None) as net:
                score = self.scorer(net, stepper.autocast)
            diverged = not math.isfinite(score)
        return Trial(lr, name, steps, math.inf if diverged else score, diverged, rung, warm, taken)


def tune(
    make_model: Callable[[int], nn.Module],
    train_data: Iterable[Any],
    *,
    loss_fn: LossFn,
    val_data: Iterable[Any] | None = None,
    evaluate: Callable[[nn.Module], float] | None = None,
    recipe: Recipe | None = None,
    optimizer: str | Sequence[str] | None = None,
    total_steps: int,
    budget: float = 1.0,
    seed: int = 0,
    storage: str | Path | None = None,
    val_batches: int | None = None,
    range_test: bool = True,
    horizon_exponent: float | None = None,
    progress: bool = False,
) -> TuneResult:
    """Choose the peak LR of a planned run by short trials that mirror it.

    Parameters
    ----------
    make_model:
        ``make_model(seed) -> nn.Module``: a fresh model on every call (each trial trains
        its own).
    train_data:
        Training batches of ``(inputs, targets)`` (a DataLoader, a list, or a one-shot
        iterator, pulled only as far as needed); every trial starts from the first batch.
    loss_fn:
        ``loss_fn(model(inputs), targets) -> scalar tensor``.
    val_data, evaluate:
        How a trial is scored (lower is better): the mean ``loss_fn`` over the first
        ``val_batches`` batches of ``val_data`` (the same ones for every trial), or
        ``evaluate(model) -> float``.  One of them is required.
    recipe:
        The planned run (:func:`optiwise.recommend`); default: a recipe for the model of
        ``make_model(seed)`` at the first batch's size and ``total_steps``.  Its run length
        must be ``total_steps``.
    optimizer:
        Registry name(s) to tune instead of the recipe's optimizer; with two names the
        budget is shared and the optimizer with the better last rung is chosen.
    total_steps:
        Optimizer steps of the planned run (each ``recipe.accumulation`` batches).
    budget:
        The probe's cost as a fraction of the planned run's optimizer steps (default 1.0);
        it is never exceeded.
    seed:
        Seed of every trial's model and of torch's RNG during the trial.
    storage:
        Where the Optuna study lives: a SQLite file path or an RDB URL
        (``postgresql://...``); a second call with the same arguments reuses every finished
        trial.  Default: in memory.
    val_batches:
        Validation batches that score a trial (default ``knowledge.TUNE_VAL_BATCHES``).
    range_test:
        Start with a short LR range test that keeps the first grid below the LRs where the
        loss blows up.
    horizon_exponent:
        The slope ``b`` of ``lr* ~ steps^b`` used when the rungs cannot fit their own
        (a one-rung plan) and to centre each later rung; default
        ``knowledge.TUNE_HORIZON_EXPONENT``.  Must be finite and <= 0.
    progress:
        Show a progress bar over the budget's steps on stderr.

    Returns
    -------
    TuneResult
        The chosen LR, the recipe with it, every trial and the horizon fit.
    """
    import optuna

    from optiwise.advisor.recipe import Recipe as _Recipe
    from optiwise.advisor.recipe import recommend
    from optiwise.lr_finder import _Batches, _RNGState
    from optiwise.lr_finder import _check_int as _lr_check

    _check_int("total_steps", total_steps, 1, "optimizer steps of the planned run")
    _check_int("seed", seed, 0, "seeds every trial's model")
    ok = isinstance(budget, (int, float)) and not isinstance(budget, bool)
    if not ok or not math.isfinite(budget) or budget <= 0:
        raise ValueError(
            f"Invalid budget: {budget!r} (a fraction of the planned run's optimizer steps, > 0)"
        )
    exponent = horizon_exponent_value(horizon_exponent)
    n_val = knowledge.TUNE_VAL_BATCHES.value if val_batches is None else val_batches
    _lr_check("val_batches", n_val, 1, "validation batches per trial score")
    budget_steps = math.floor(budget * total_steps + 1e-9)
    models = _Models(make_model)
    train = _Batches(train_data, "train_data")
    scorer = _Scorer(loss_fn, val_data, evaluate, n_val)
    rng = _RNGState([train_data, val_data])
    notes: list[str] = []
    try:
        torch.manual_seed(seed)
        probe = models(seed)
        first = next(train.stream())
        if recipe is None:
            size = _inputs_size(first)
            if size is None:
                raise ValueError(
                    "cannot tell the batch size from the first batch's inputs; pass a recipe "
                    "(optiwise.recommend(model, batch_size=..., total_steps=...))"
                )
            recipe = recommend(probe, batch_size=size, total_steps=total_steps)
        if not isinstance(recipe, _Recipe):
            raise ValueError(f"recipe must be an optiwise Recipe, got {type(recipe).__name__}")
        if recipe.total_steps != total_steps:
            raise ValueError(
                f"the recipe plans {recipe.total_steps} optimizer steps but total_steps is "
                f"{total_steps}: make the recipe with total_steps={total_steps}"
            )
        if recipe.accumulation > 1:
            notes.append(
                f"the recipe accumulates {recipe.accumulation} batches per optimizer step: "
                f"the planned {total_steps} steps see {recipe.accumulation * total_steps} "
                f"batches, and so does each trial per step"
            )
        names = [recipe.optimizer]
        if optimizer is not None:
            names = [optimizer] if isinstance(optimizer, str) else list(optimizer)
            if not names:
                raise ValueError("optimizer must name at least one optimizer")
        recipes = {}
        for n in names:
            r = recipe.with_optimizer(n, reason="tuned by optiwise.tune", source=_SOURCE)
            recipes[r.optimizer] = r
        plan = plan_rungs(budget_steps, total_steps, len(recipes))
        initial = _initial_loss(probe, loss_fn, first, recipe)
        if not range_test:
            plan = replace(plan, range_steps=0)
        upper = initial + (knowledge.LR_FINDER_DIVERGE.value - 1.0) * abs(initial)
        name = "optiwise-tune-" + _fingerprint(
            {
                "optimizers": sorted(recipes),
                "recipes": [r.to_dict() for r in recipes.values()],
                "total_steps": total_steps,
                "budget_steps": budget_steps,
                "seed": seed,
                "val_batches": n_val,
                "range_test": range_test,
                "horizon_exponent": exponent,
            }
        )
        with _quiet_optuna():
            study = optuna.create_study(
                study_name=name,
                storage=_storage(storage),
                load_if_exists=True,
                direction="minimize",
                sampler=optuna.samplers.TPESampler(seed=seed),
                pruner=optuna.pruners.ThresholdPruner(upper=upper),
            )
            if any(ft.user_attrs.get("key") for ft in study.get_trials(deepcopy=False)):
                notes.append(f"resumed study {name!r}: finished trials were reused")
            bar = Progress(plan.steps(len(recipes)), "tune", enabled=progress, leave=False)
            run = _Run(models, train, loss_fn, scorer, seed, study, bar)
            fits: dict[str, HorizonFit] = {}
            last: dict[str, float] = {}
            with bar:
                for opt_name, opt_recipe in recipes.items():
                    fits[opt_name] = _search(run, opt_recipe, opt_name, plan, exponent, notes)
                    final = [
                        t
                        for t in run.trials
                        if t.optimizer == opt_name
                        and t.rung == len(plan.rungs) - 1
                        and not t.diverged
                    ]
                    last[opt_name] = min((t.score for t in final), default=math.inf)
        live = {k: fits[k] for k in fits if math.isfinite(last[k])}
        if not live:
            lrs = sorted(t.lr for t in run.trials)
            raise ValueError(
                f"every trial diverged (peak LRs {lrs[0]:.3g} to {lrs[-1]:.3g}): check the "
                "loss and the data, or pass a recipe with a lower LR"
            )
        chosen = min(live, key=lambda k: last[k])
        fit = fits[chosen]
        lr = fit.lr(total_steps)
        reason = (
            f"optiwise.tune: best peak LR per rung {', '.join(f'{b:.3g}' for b in fit.best)} "
            f"at {', '.join(str(h) for h in fit.horizons)} steps, extrapolated to "
            f"{total_steps} steps with slope {fit.slope:.2f}"
        )
        if run.spent > budget_steps:  # pragma: no cover - the plan guarantees it
            raise RuntimeError(f"spent {run.spent} steps of a {budget_steps}-step budget")
        tuned = recipes[chosen].with_lr(lr, reason=reason, source=_SOURCE)
        return TuneResult(
            lr=lr,
            recipe=tuned,
            trials=tuple(run.trials),
            spent_steps=run.spent,
            budget_steps=budget_steps,
            total_steps=total_steps,
            optimizer=chosen,
            fits=fits,
            notes=tuple(notes),
            study_name=name,
        )
    finally:
        rng.restore()


def _initial_loss(model: nn.Module, loss_fn: LossFn, batch: Any, recipe: Recipe) -> float:
    """The loss of the untrained model on the first batch (no step is taken)."""
    from optiwise.lr_finder import _to_device

    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ValueError(
            f"each batch must be an (inputs, targets) pair; got {type(batch).__name__}"
        )
    inputs, targets = _to_device(batch, _device(model))
    with torch.no_grad():
        loss = loss_fn(model(inputs), targets)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError("loss_fn must return a single-element tensor (a scalar loss)")
    value = float(loss)
    if not math.isfinite(value):
        raise ValueError(
            f"the loss of the untrained model on the first batch is {value}: check the model, "
            "loss_fn and the data before tuning"
        )
    return value


def _range_test(run: _Run, recipe: Recipe, steps: int) -> tuple[float | None, float]:
    """(LR where the loss blew up or None, the curve's minimum) of a ``steps``-step range
    test; its steps count towards the budget.  Reused from the study when it is there."""
    from optiwise.lr_finder import _anchor, find_lr

    key = f"range_test|{recipe.optimizer}|{steps}"
    saved = run.study.user_attrs.get(key)
    if saved is None:
        torch.manual_seed(run.seed)
        model = run.models(run.seed)
        opt, _, _ = recipe.build(model)
        found = find_lr(
            model,
            run.loss_fn,
            run.train.data if not run.train.one_shot else list(run.train.cache),
            opt,
            num_steps=steps,
            accumulation=recipe.accumulation,
            amp=recipe.amp or False,
            task=recipe.task,
            confirm=0,
        )
        blew = found.lrs[-1] if found.stop_reason in ("diverged", "non-finite") else None
        saved = {
            "blew": blew,
            "anchor": _anchor(found.lrs, found.losses),
            "spent": len(found.lrs) + found.skipped_steps,
        }
        run.study.set_user_attr(key, saved)
    run.spent += int(saved["spent"])
    run.bar.update(int(saved["spent"]))
    run.bar.update(steps - int(saved["spent"]))
    return saved["blew"], saved["anchor"]


def _search(
    run: _Run,
    recipe: Recipe,
    name: str,
    plan: Plan,
    exponent: float,
    notes: list[str],
) -> HorizonFit:
    prior = float(recipe.hparams["lr"])
    center = prior
    n0 = plan.rungs[0][0]
    start = run.spent
    if plan.range_steps and not run.train.one_shot:
        blew, anchor = _range_test(run, recipe, plan.range_steps)
        half = 10**0.5
        for _ in range(2):
            top = _grid(center, n0, _SPACING[0])[-1]
            if blew is not None and top > blew * half:
                center /= half  # the top of the grid would blow up
            elif anchor > center * 10 and (blew is None or top * half < blew):
                center *= half  # the curve's minimum lies far above the prior
            else:
                break
    elif plan.range_steps:
        run.bar.update(plan.range_steps)
    horizons: list[int] = []
    best: list[float] = []
    cap = plan.steps(1)  # this optimizer's share of the budget
    later = [sum(n * h for n, h in plan.rungs[r + 1 :]) for r in range(len(plan.rungs))]

    def affordable(steps: int, rung: int, extra: int) -> bool:
        # a reserved extension of the first rung, or one the unspent budget still pays for
        reserved = rung == 0 and extra < plan.extensions
        return reserved or run.spent - start + steps + later[rung] <= cap

    for r, (n, h) in enumerate(plan.rungs):
        if r == 0:
            grid = _grid(center, n, _SPACING[0])
        else:
            slope, _ = _slope(horizons, best, exponent)
            grid = _grid(best[-1] * (h / horizons[-1]) ** slope, n, _SPACING[r])
        trials = [run.run(recipe, name, r, lr, h) for lr in grid]
        # grow the grid past an edge that scored best (the best is not bracketed yet)
        step = 10 ** _SPACING[r]
        for extra in range(_MAX_EXTENSIONS):
            ok = [t for t in trials if not t.diverged]
            lrs = sorted(t.lr for t in trials)
            if not ok:
                nxt = lrs[0] / step
            else:
                b = min(ok, key=lambda t: (t.score, t.lr))
                if b.lr == lrs[0]:
                    nxt = lrs[0] / step
                elif b.lr == lrs[-1]:
                    nxt = lrs[-1] * step
                else:
                    break
            if not affordable(h, r, extra):
                break
            trials.append(run.run(recipe, name, r, nxt, h))
        v = _vertex(trials)
        if v is None:
            if r == 0:
                notes.append(f"{name}: every first-rung trial diverged; the lowest LR is kept")
            v = min(t.lr for t in trials) / step
        horizons.append(h)
        best.append(v)
    slope, fitted = _slope(horizons, best, exponent)
    return HorizonFit(tuple(horizons), tuple(best), slope, fitted)
