"""The LR range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks").

:func:`find_lr` trains the model for ``num_steps`` optimizer steps while the LR grows from
``start_lr`` to ``end_lr`` (exponentially by default), one LR per optimizer step, records
the loss, smooths it with a bias-corrected exponential moving average, and stops once the
smoothed loss passes ``4x`` its best or a loss turns non-finite.  It then reads several
suggestions off the curve, confirms the most promising LRs with a few very short training
runs, and puts every piece of state back exactly as it was: parameters and buffers,
gradients, optimizer state, scheduler, GradScaler, RNG states (torch, numpy, python, data
loader generators) and every module's train/eval mode.

Every suggested LR is the *peak* LR of a linear-warmup + cosine schedule; each suggestion
also gives the matching constant LR (``knowledge.LR_CONSTANT_OF_PEAK`` of the peak).

Data are batches of ``(inputs, targets)``; the loss of a batch is
``loss_fn(model(inputs), targets)``.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer

from optiwise import knowledge
from optiwise._progress import Progress
from optiwise.optim.registry import canonical_name, create_optimizer, registry_name

__all__ = [
    "DATA_SOURCES",
    "SUGGESTION_RULES",
    "Confirmation",
    "DataSource",
    "LRFinderResult",
    "Suggestion",
    "best_lr",
    "ema_smooth",
    "find_lr",
    "horizon_exponent_value",
    "register_data_source",
    "suggest_fastai_steep",
    "suggest_minimum",
    "suggest_steepest",
    "suggest_valley",
    "sweep_range",
    "synthetic_regression",
    "trial_warmup",
]

LossFn = Callable[[Any, Any], torch.Tensor]
StopReason = Literal["completed", "diverged", "non-finite", "amp-skipped"]

# --------------------------------------------------------------------------------------------
# Suggestion rules on a finished curve
# --------------------------------------------------------------------------------------------


def _curve(lrs: Sequence[float], losses: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(lrs, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(
            f"lrs and losses must be 1-D sequences of the same length, got {x.shape} and {y.shape}"
        )
    if len(x) < 3:
        raise ValueError(f"a curve needs at least 3 points, got {len(x)}")
    if not (np.all(np.isfinite(x)) and np.all(x > 0)):
        raise ValueError("lrs must be finite and > 0")
    if np.any(np.diff(x) <= 0):
        raise ValueError("lrs must increase strictly")
    if not np.all(np.isfinite(y)):
        raise ValueError("losses must be finite; cut the curve before its first NaN/inf")
    return x, y


def ema_smooth(losses: Sequence[float], beta: float | None = None) -> list[float]:
    """Bias-corrected exponential moving average of ``losses``.

    ``avg_t = beta * avg_{t-1} + (1 - beta) * loss_t``, reported as
    ``avg_t / (1 - beta ** (t + 1))`` so the first values are not pulled towards zero.
    ``beta`` defaults to ``knowledge.LR_FINDER_SMOOTHING``.
    """
    beta = knowledge.LR_FINDER_SMOOTHING.value if beta is None else beta
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"Invalid smoothing: {beta!r} (must be in [0, 1))")
    avg, out = 0.0, []
    for t, loss in enumerate(losses):
        avg = beta * avg + (1.0 - beta) * float(loss)
        out.append(avg / (1.0 - beta ** (t + 1)))
    return out


def suggest_minimum(lrs: Sequence[float], losses: Sequence[float], divisor: float = 10.0) -> float:
    """The LR at the lowest loss, divided by ``divisor`` (fastai's ``minimum``: min/10)."""
    x, y = _curve(lrs, losses)
    return float(x[int(np.argmin(y))] / divisor)


def suggest_steepest(
    lrs: Sequence[float],
    losses: Sequence[float],
    skip_start: int = 10,
    skip_end: int = 1,
) -> float:
    """The LR of the steepest descent of the loss (torch-lr-finder's and Lightning's rule).

    The first ``skip_start`` and last ``skip_end`` points are left out (Lightning's
    defaults); the slope is ``numpy.gradient`` of the loss over the steps, which for an
    exponential sweep is the slope in log-LR.  When the curve is too short to skip, all of
    it is used.
    """
    x, y = _curve(lrs, losses)
    if len(x) - skip_start - skip_end < 3:
        skip_start, skip_end = 0, 0
    stop = len(x) - skip_end
    i = int(np.argmin(np.gradient(y[skip_start:stop])))
    return float(x[skip_start + i])


def _fastai_window(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fastai reads its suggestions off the curve without its first tenth and last 5 points."""
    lo, hi = len(x) // 10, len(x) - 5
    if hi - lo < 3:
        return x, y
    return x[lo:hi], y[lo:hi]


def suggest_fastai_steep(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's ``steep``: the LR where the finite-difference slope in log-LR is steepest."""
    x, y = _fastai_window(*_curve(lrs, losses))
    slope = np.diff(y) / np.diff(np.log(x))
    return float(x[int(np.argmin(slope))])


def suggest_valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's ``valley``: the middle of the longest falling stretch of the curve.

    The stretch is the longest strictly decreasing subsequence of the losses, measured from
    its start to its end; the suggestion is the point halfway along it (fastai's
    ``start + len/3 + len/6``).
    """
    x, y = _fastai_window(*_curve(lrs, losses))
    n = len(y)
    run = [1] * n  # length of the longest decreasing subsequence ending at i
    end = 0
    for i in range(1, n):
        for j in range(i):
            if y[i] < y[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
        if run[end] < run[i]:
            end = i
    start = end - run[end]
    third = (end - start) / 3
    idx = start + int(third) + int(third / 2)
    return float(x[max(0, min(idx, n - 1))])


SUGGESTION_RULES: Mapping[str, Callable[[Sequence[float], Sequence[float]], float]] = (
    MappingProxyType(
        {
            "steepest": suggest_steepest,
            "fastai_steep": suggest_fastai_steep,
            "valley": suggest_valley,
            "minimum": suggest_minimum,
        }
    )
)
"""The classic curve-only rules, by name; each takes ``(lrs, smoothed_losses)``."""

_RULE_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "steepest": "steepest descent of the smoothed loss (torch-lr-finder, Lightning)",
        "fastai_steep": "steepest finite-difference slope in log-LR (fastai 'steep')",
        "valley": "middle of the longest falling stretch (fastai 'valley')",
        "minimum": "LR at the lowest smoothed loss / 10 (fastai 'minimum')",
    }
)


def _centered_curve(losses: Sequence[float]) -> np.ndarray:
    """A lag-free smoothing of the raw losses: running median, then a centred mean.

    The EMA of the range test lags behind the LR; for locating the minimum a centred window
    (about 5% of the points, at least 3) is used instead.
    """
    y = np.asarray(losses, dtype=np.float64)
    n = len(y)
    half = max(1, n // 40)
    med = np.array([np.median(y[max(0, i - half) : i + half + 1]) for i in range(n)])
    return np.array([med[max(0, i - half) : i + half + 1].mean() for i in range(n)])


def _anchor(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The LR at the minimum of the lag-free smoothed curve: where confirmation starts."""
    return float(lrs[int(np.argmin(_centered_curve(losses)))])


_HALF_DECADE = math.sqrt(10.0)


def trial_warmup(planned: int, total_steps: int, steps: int) -> int:
    """Warmup steps of a ``steps``-step trial of a run of ``total_steps`` steps whose warmup
    is ``planned`` steps: the planned warmup when it fits in a quarter of the trial, else a
    quarter of it; never below ``knowledge.TUNE_WARMUP_FLOOR`` (or the planned warmup, when
    that is shorter), never more than half the trial.  No warmup stays none."""
    _check_int("planned", planned, 0, "warmup steps of the planned run")
    _check_int("total_steps", total_steps, 1, "optimizer steps of the planned run")
    _check_int("steps", steps, 1, "optimizer steps of the trial")
    if planned == 0:
        return 0
    floor = min(knowledge.TUNE_WARMUP_FLOOR.value, planned)
    return max(0, min(planned, max(floor, steps // 4), steps // 2))


def horizon_exponent_value(value: float | None) -> float:
    """The horizon exponent ``b`` of ``lr* ~ steps^b`` to use: ``value``, or
    ``knowledge.TUNE_HORIZON_EXPONENT`` when None; a ValueError unless finite and <= 0."""
    exponent = knowledge.TUNE_HORIZON_EXPONENT.value if value is None else value
    if (
        isinstance(exponent, bool)
        or not isinstance(exponent, (int, float))
        or not math.isfinite(exponent)
        or exponent > 0
    ):
        raise ValueError(
            f"Invalid horizon_exponent: {value!r} (the slope of log LR* against log steps: a "
            "finite number <= 0, e.g. -0.5; longer runs never want higher LRs)"
        )
    return float(exponent)


def best_lr(lrs: Sequence[float], scores: Sequence[float]) -> float | None:
    """The best LR of a set of short runs (lower score is better; non-finite = diverged): a
    parabola in log-LR through the best run and its two neighbours, kept between them; the
    best run's LR on an edge; None when every run diverged."""
    ok = sorted((lr, sc) for lr, sc in zip(lrs, scores, strict=True) if math.isfinite(sc))
    if not ok:
        return None
    i = min(range(len(ok)), key=lambda j: (ok[j][1], ok[j][0]))
    if i == 0 or i == len(ok) - 1:
        return ok[i][0]
    x = [math.log(ok[j][0]) for j in (i - 1, i, i + 1)]
    y = [ok[j][1] for j in (i - 1, i, i + 1)]
    d1, d2 = (y[1] - y[0]) / (x[1] - x[0]), (y[2] - y[1]) / (x[2] - x[1])
    curv = (d2 - d1) / (x[2] - x[0])
    if not curv > 0:
        return ok[i][0]
    xv = 0.5 * (x[0] + x[1]) - d1 / (2 * curv)  # the parabola's vertex
    return math.exp(min(max(xv, x[0]), x[2]))


def _search(anchor: float, budget: int, run: Callable[[float], Confirmation]) -> list[Confirmation]:
    """Confirm LRs around ``anchor`` with at most ``budget`` short runs.

    First the anchor and half a decade below and above it; then, while runs are left, one
    more half-decade step beyond an edge that scored best (the best is not bracketed yet),
    or, once it is bracketed, one quarter-decade point between the best and its better
    neighbour.  Returns the runs sorted by LR.
    """
    done: dict[float, Confirmation] = {}

    def visit(lr: float) -> None:
        if lr not in done:
            done[lr] = run(lr)

    for lr in (anchor, anchor / _HALF_DECADE, anchor * _HALF_DECADE)[:budget]:
        visit(lr)
    while len(done) < budget:
        tried = sorted(done)
        ok = [done[lr] for lr in tried if not done[lr].diverged]
        if not ok:
            visit(tried[0] / _HALF_DECADE)
            continue
        best = min(ok, key=lambda c: (c.score, c.lr))
        i = tried.index(best.lr)
        if i == len(tried) - 1:
            visit(best.lr * _HALF_DECADE)
        elif i == 0:
            visit(best.lr / _HALF_DECADE)
        else:
            below, above = done[tried[i - 1]], done[tried[i + 1]]
            other = below if (below.score, below.lr) <= (above.score, above.lr) else above
            if max(other.lr, best.lr) / min(other.lr, best.lr) < _HALF_DECADE * 0.99:
                break  # already refined to a quarter decade
            visit(math.sqrt(best.lr * other.lr))
    return [done[lr] for lr in sorted(done)]


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    """One suggested LR.

    Attributes
    ----------
    name:
        The rule (``confirmed``, ``steepest``, ``fastai_steep``, ``valley``, ``minimum``).
    lr:
        The peak LR of a linear-warmup + cosine schedule (the LR of the largest param
        group; the others keep their ratios, see ``LRFinderResult.group_scales``).
    constant_lr:
        The LR to use instead when training at a constant LR.
    reason:
        How the rule picked it.
    """

    name: str
    lr: float
    constant_lr: float
    reason: str

    @property
    def peak_lr(self) -> float:
        """The peak LR of a warmup + cosine schedule (same as :attr:`lr`)."""
        return self.lr


@dataclass(frozen=True)
class Confirmation:
    """One short warmup + cosine training run at a candidate peak LR."""

    lr: float
    score: float
    steps: int
    diverged: bool


@dataclass(frozen=True)
class LRFinderResult:
    """What the LR range test measured and suggests.

    Attributes
    ----------
    lrs, losses, smoothed:
        The LR of every recorded optimizer step (largest param group), its raw loss (mean
        over the accumulated micro-batches) and the bias-corrected EMA of the losses.
    optimizer:
        Registry name of the optimizer, when known.
    start_lr, end_lr, num_steps, mode:
        The sweep as configured.
    stop_reason:
        ``completed``, ``diverged`` (smoothed loss above 4x its best), ``non-finite`` or
        ``amp-skipped`` (the GradScaler skipped every step).
    skipped_steps:
        Optimizer steps the GradScaler skipped (they did not advance the sweep).
    group_scales:
        Each param group's LR as a fraction of the largest one; the sweep kept them.
    suggestions:
        Every suggestion by name, the recommended one included.
    recommended:
        The suggestion to use (``confirmed`` when short confirmation runs were made).
    confirmations:
        The short runs behind the recommendation, lowest LR first.
    score:
        What the confirmation runs were scored on: ``val_loss`` or ``train_loss``.
    """

    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]
    optimizer: str | None
    start_lr: float
    end_lr: float
    num_steps: int
    mode: str
    stop_reason: StopReason
    skipped_steps: int
    group_scales: tuple[float, ...]
    suggestions: Mapping[str, Suggestion]
    recommended: Suggestion
    confirmations: tuple[Confirmation, ...] = ()
    score: str = "train_loss"

    def lrs_for(self, lr: float) -> list[float]:
        """Per-group LRs for a suggested ``lr`` (the group ratios of the sweep)."""
        return [lr * s for s in self.group_scales]

    def summary(self) -> str:
        """A short human-readable report."""
        rec = self.recommended
        what = f"{self.optimizer} " if self.optimizer else ""
        lines = [
            f"LR range test: {what}{len(self.lrs)} steps from {self.lrs[0]:.3g} to "
            f"{self.lrs[-1]:.3g} ({self.mode}, {self.stop_reason})",
            f"recommended: peak LR {rec.lr:.3g} for warmup + cosine, or constant LR "
            f"{rec.constant_lr:.3g} ({rec.name}: {rec.reason})",
            "",
            f"{'rule':<14}{'peak LR':>10}{'constant LR':>13}  how",
        ]
        for s in self.suggestions.values():
            lines.append(f"{s.name:<14}{s.lr:>10.3g}{s.constant_lr:>13.3g}  {s.reason}")
        if self.confirmations:
            lines.append("")
            lines.append(f"confirmation runs ({self.confirmations[0].steps} steps each):")
            best = min(self.confirmations, key=lambda c: (c.score, c.lr))
            for c in self.confirmations:
                shown = "diverged" if c.diverged else f"{self.score} {c.score:.4g}"
                mark = "  <- best" if c is best and not c.diverged else ""
                lines.append(f"  peak LR {c.lr:<10.3g}{shown}{mark}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready; non-finite numbers become ``None``)."""

        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "optimizer": self.optimizer,
            "start_lr": self.start_lr,
            "end_lr": self.end_lr,
            "num_steps": self.num_steps,
            "mode": self.mode,
            "stop_reason": self.stop_reason,
            "skipped_steps": self.skipped_steps,
            "group_scales": list(self.group_scales),
            "lrs": list(self.lrs),
            "losses": [num(v) for v in self.losses],
            "smoothed": [num(v) for v in self.smoothed],
            "recommended": self.recommended.name,
            "suggestions": {
                k: {"lr": s.lr, "constant_lr": s.constant_lr, "reason": s.reason}
                for k, s in self.suggestions.items()
            },
            "score": self.score,
            "confirmations": [
                {"lr": c.lr, "score": num(c.score), "steps": c.steps, "diverged": c.diverged}
                for c in self.confirmations
            ],
        }

    def plot(self, path: str | Path) -> Path:
        """Write the loss-vs-LR curve with the suggestions to a PNG at ``path``."""
        from optiwise._plotting import new_figure, save_figure

        fig, ax = new_figure(7.5, 4.5)
        lrs = np.asarray(self.lrs)
        raw = np.asarray(self.losses, dtype=np.float64)
        smooth = np.asarray(self.smoothed, dtype=np.float64)
        ax.plot(lrs, raw, color="tab:blue", alpha=0.25, linewidth=1.0, label="loss")
        ax.plot(lrs, smooth, color="tab:blue", linewidth=2.0, label="smoothed loss")
        colors = {
            "steepest": "tab:orange",
            "fastai_steep": "tab:olive",
            "valley": "tab:green",
            "minimum": "tab:purple",
        }
        for name, s in self.suggestions.items():
            if name == self.recommended.name:
                continue
            y = float(np.interp(np.log(s.lr), np.log(lrs), smooth))
            ax.plot(
                [s.lr],
                [y],
                "o",
                color=colors.get(name, "tab:gray"),
                markersize=7,
                label=f"{name} {s.lr:.2g}",
            )
        rec = self.recommended
        ax.axvline(
            rec.lr,
            color="tab:red",
            linestyle="--",
            linewidth=1.5,
            label=f"recommended {rec.lr:.2g} (constant {rec.constant_lr:.2g})",
        )
        finite = smooth[np.isfinite(smooth)]
        if len(finite):
            low = float(min(finite.min(), np.nanmin(np.where(np.isfinite(raw), raw, np.nan))))
            high = float(max(finite[0], min(finite.max(), 2.0 * finite[0])))
            pad = 0.05 * max(high - low, 1e-12)
            ax.set_ylim(low - pad, high + pad)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (peak of the largest param group)")
        ax.set_ylabel("training loss")
        what = f" ({self.optimizer})" if self.optimizer else ""
        ax.set_title(f"LR range test{what}: {len(self.lrs)} steps, {self.stop_reason}")
        ax.grid(alpha=0.3, which="both")
        handles, labels = ax.get_legend_handles_labels()
        if self.confirmations:
            ax2 = ax.twinx()
            ok = [c for c in self.confirmations if not c.diverged]
            if ok:
                ax2.plot(
                    [c.lr for c in ok],
                    [c.score for c in ok],
                    "x-",
                    color="black",
                    alpha=0.7,
                    label=f"confirmation runs ({self.score}, right axis)",
                )
            ax2.set_ylabel(f"{self.score} after {self.confirmations[0].steps} steps")
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        ax.legend(handles, labels, fontsize=8, loc="best")
        return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# Saving and restoring everything the test touches
# --------------------------------------------------------------------------------------------


def _generators(data: Any) -> list[torch.Generator]:
    """torch.Generators a DataLoader (or its samplers) draws from."""
    found: list[torch.Generator] = []
    candidates = [
        getattr(data, "generator", None),
        getattr(getattr(data, "sampler", None), "generator", None),
        getattr(getattr(getattr(data, "batch_sampler", None), "sampler", None), "generator", None),
    ]
    for g in candidates:
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


class _Snapshot:
    """Everything :func:`find_lr` may change, copied so it can be put back exactly."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        scheduler: Any,
        scaler: Any,
        data: Sequence[Any],
    ) -> None:
        self.model = model
        # Parameters and buffers: where each lives, the tensor object, and a copy of it.
        self.slots: list[tuple[dict[str, Any], str, torch.Tensor]] = []
        self.values: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.grads: dict[int, tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]] = {}
        for module in model.modules():
            for table in (module._parameters, module._buffers):
                for key, t in table.items():
                    if t is None:
                        continue
                    self.slots.append((table, key, t))
                    self._record(t)
        for group in optimizer.param_groups:
            for p in group["params"]:
                self._record(p)
        self.modes = [(m, m.training) for m in model.modules()]
        self.optimizer = optimizer
        self.opt_state = copy.deepcopy(optimizer.state_dict())
        self.opt_groups = list(optimizer.param_groups)
        self.opt_called = optimizer.__dict__.get("_opt_called", _MISSING)
        self.scheduler = scheduler
        self.sched_state = copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None
        self.scaler = scaler
        self.scaler_state = copy.deepcopy(scaler.state_dict()) if scaler is not None else None
        # A GradScaler creates its scale tensor lazily, at its first use; keep it unborn.
        self.scaler_lazy = scaler is not None and getattr(scaler, "_scale", 0) is None
        self.rng = _RNGState(data)

    def _record(self, t: torch.Tensor) -> None:
        if id(t) in self.values:
            return
        self.values[id(t)] = (t, t.detach().clone())
        if isinstance(t, nn.Parameter) or t.requires_grad:
            g = t.grad
            self.grads[id(t)] = (t, g, None if g is None else g.detach().clone())

    def restore_model(self) -> None:
        for table, key, t in self.slots:
            if table.get(key) is not t:
                table[key] = t
        with torch.no_grad():
            for t, saved in self.values.values():
                if t.shape == saved.shape and t.dtype == saved.dtype:
                    t.copy_(saved)
                else:
                    t.data = saved.clone()
            for t, g, saved_g in self.grads.values():
                if g is None or saved_g is None:
                    t.grad = None
                    continue
                if g.shape == saved_g.shape:
                    g.copy_(saved_g)
                else:  # pragma: no cover - a gradient cannot change shape in place
                    g.data = saved_g.clone()
                t.grad = g
        for m, mode in self.modes:
            m.training = mode

    def restore_optimizer(self) -> None:
        opt = self.optimizer
        opt.load_state_dict(copy.deepcopy(self.opt_state))
        # load_state_dict builds new group dicts; keep the original objects (others may hold
        # references to them) with the restored contents.
        for i, (old, new) in enumerate(zip(self.opt_groups, opt.param_groups, strict=True)):
            if old is not new:
                old.clear()
                old.update(new)
                opt.param_groups[i] = old
        if self.opt_called is _MISSING:
            opt.__dict__.pop("_opt_called", None)
        else:
            opt.__dict__["_opt_called"] = self.opt_called

    def restore(self) -> None:
        """Put everything back as it was when the snapshot was taken."""
        self.restore_model()
        self.restore_optimizer()
        if self.scheduler is not None:
            self.scheduler.load_state_dict(copy.deepcopy(self.sched_state))
        if self.scaler is not None:
            self.scaler.load_state_dict(copy.deepcopy(self.scaler_state))
            if self.scaler_lazy:
                self.scaler._scale = None
                self.scaler._growth_tracker = None
        self.rng.restore()


_MISSING = object()


class _RNGState:
    """torch (CPU and CUDA), numpy and python RNG states, plus data-loader generators."""

    def __init__(self, data: Sequence[Any]) -> None:
        self.torch = torch.get_rng_state()
        self.cuda = (
            torch.cuda.get_rng_state_all()
            if torch.cuda.is_available() and torch.cuda.is_initialized()
            else None
        )
        self.numpy = np.random.get_state()
        self.python = random.getstate()
        self.generators = [(g, g.get_state()) for d in data for g in _generators(d)]

    def restore(self) -> None:
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        np.random.set_state(self.numpy)
        random.setstate(self.python)
        for g, state in self.generators:
            g.set_state(state)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


class _Batches:
    """Batches of the user's data.

    Re-iterable data (a list, a DataLoader) is iterated afresh and cycled; the object itself
    is never advanced.  A one-shot iterator is pulled lazily, one batch at a time, never
    beyond the batches actually used, and what was pulled is kept to be reused.
    """

    def __init__(self, data: Any, label: str) -> None:
        if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
            raise ValueError(
                f"{label} must be an iterable of (inputs, targets) batches (a DataLoader, "
                f"a list, ...), got {type(data).__name__}"
            )
        self.data = data
        self.label = label
        self.one_shot = isinstance(data, Iterator)
        self.source: Iterator[Any] = data if isinstance(data, Iterator) else iter(())
        self.cache: list[Any] = []
        self.exhausted = False

    def _empty(self) -> ValueError:
        return ValueError(f"{self.label} is empty: pass at least one (inputs, targets) batch")

    def stream(self) -> Iterator[Any]:
        """An endless stream of batches, from the first one."""
        if not self.one_shot:
            while True:
                seen = False
                for batch in self.data:
                    seen = True
                    yield batch
                if not seen:
                    raise self._empty()
        i = 0
        while True:
            if i < len(self.cache):
                yield self.cache[i]
                i += 1
                continue
            if not self.exhausted:
                try:
                    batch = next(self.source)
                except StopIteration:
                    self.exhausted = True
                else:
                    self.cache.append(batch)
                    continue
            if not self.cache:
                raise self._empty()
            i = 0

    def first(self, n: int) -> list[Any]:
        """The first ``n`` batches (fewer when the data are shorter), pulled only that far."""
        if not self.one_shot:
            return list(itertools.islice(iter(self.data), n))
        while len(self.cache) < n and not self.exhausted:
            try:
                self.cache.append(next(self.source))
            except StopIteration:
                self.exhausted = True
        return self.cache[:n]

    def once(self) -> Iterator[Any]:
        """Every batch once (a one-shot iterator is drained into the cache the first time)."""
        if not self.one_shot:
            yield from self.data
            return
        while not self.exhausted:
            try:
                self.cache.append(next(self.source))
            except StopIteration:
                self.exhausted = True
        yield from self.cache


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, tuple):
        return tuple(_to_device(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to_device(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


# --------------------------------------------------------------------------------------------
# Training steps
# --------------------------------------------------------------------------------------------


@dataclass
class _Trainer:
    """Runs optimizer steps at a given LR with accumulation and AMP."""

    model: nn.Module
    loss_fn: LossFn
    optimizer: Optimizer
    accumulation: int
    device: torch.device
    amp_dtype: torch.dtype | None
    scaler: Any
    scales: list[float]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def loss(self, batch: Any) -> torch.Tensor:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(
                "each batch must be an (inputs, targets) pair; got "
                f"{type(batch).__name__}"
                + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            )
        inputs, targets = _to_device(batch, self.device)
        with self.autocast():
            loss = self.loss_fn(self.model(inputs), targets)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("loss_fn must return a single-element tensor (a scalar loss)")
        return loss.float().reshape(())

    def set_lr(self, lr: float) -> None:
        for group, scale in zip(self.optimizer.param_groups, self.scales, strict=True):
            value = lr * scale
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(value)
            else:
                group["lr"] = value

    def step(self, lr: float, batches: Iterator[Any]) -> tuple[float, bool]:
        """One optimizer step at ``lr``; returns (mean loss, skipped by the scaler).

        A non-finite loss returns at once, before any parameter moves.
        """
        self.set_lr(lr)
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(self.accumulation):
            loss = self.loss(next(batches))
            value = float(loss.detach())
            if not math.isfinite(value):
                self.optimizer.zero_grad(set_to_none=True)
                return value, False
            scaled = loss / self.accumulation
            if self.scaler is not None:
                scaled = self.scaler.scale(scaled)
            scaled.backward()
            total += value / self.accumulation
        if self.scaler is None:
            self.optimizer.step()
            return total, False
        before = float(self.scaler.get_scale())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return total, float(self.scaler.get_scale()) < before

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Any]) -> float:
        """Mean loss over ``batches`` in eval mode."""
        self.model.eval()
        total, count = 0.0, 0
        for batch in batches:
            total += float(self.loss(batch))
            count += 1
        self.model.train()
        if count == 0:
            raise ValueError("val_data is empty: pass at least one (inputs, targets) batch")
        return total / count


# --------------------------------------------------------------------------------------------
# find_lr
# --------------------------------------------------------------------------------------------


def sweep_range(optimizer: str, task: str | None = None) -> tuple[float, float]:
    """The default sweep for a registered optimizer: its typical LR range from
    :mod:`optiwise.knowledge`, widened by ``knowledge.LR_FINDER_WIDEN`` at each end."""
    lo, hi = knowledge.lr_range(canonical_name(optimizer), task).value
    widen = knowledge.LR_FINDER_WIDEN.value
    return lo / widen, hi * widen


def _check_int(label: str, value: Any, minimum: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"Invalid {label}: {value!r} (must be an int >= {minimum}; {hint})")


def _check_lr(label: str, value: Any) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ValueError(f"Invalid {label}: {value!r} (must be a finite number > 0)")


def _amp_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    if amp is False or amp is None:
        return None
    if amp is True:
        return torch.bfloat16 if device.type == "cpu" else torch.float16
    if isinstance(amp, str) and amp.lower() in ("bf16", "bfloat16"):
        return torch.bfloat16
    if isinstance(amp, str) and amp.lower() in ("fp16", "float16", "half"):
        return torch.float16
    raise ValueError(
        f"Invalid amp: {amp!r} (use False, True (bf16 on CPU, fp16 on CUDA), 'bf16' or 'fp16')"
    )


def _sweep_lrs(start: float, end: float, n: int, mode: str) -> list[float]:
    if mode == "exp":
        return [start * (end / start) ** (i / (n - 1)) for i in range(n)]
    return [start + (end - start) * i / (n - 1) for i in range(n)]


def _progress(total: int, enabled: bool, desc: str) -> Progress:
    return Progress(total, desc, enabled=enabled, leave=False)


def find_lr(
    model: nn.Module,
    loss_fn: LossFn,
    data: Iterable[Any],
    optimizer: str | Optimizer = "adamw",
    *,
    start_lr: float | None = None,
    end_lr: float | None = None,
    num_steps: int = 100,
    mode: Literal["exp", "linear"] = "exp",
    accumulation: int = 1,
    amp: bool | str = False,
    val_data: Iterable[Any] | None = None,
    task: str | None = None,
    optimizer_kwargs: Mapping[str, Any] | None = None,
    scheduler: Any = None,
    scaler: Any = None,
    smoothing: float | None = None,
    confirm: int = 4,
    confirm_steps: int | None = None,
    total_steps: int | None = None,
    horizon_exponent: float | None = None,
    progress: bool = False,
) -> LRFinderResult:
    """Run the LR range test and suggest an LR; leave everything as it was.

    Parameters
    ----------
    model:
        The model; it is trained during the test and restored afterwards.
    loss_fn:
        ``loss_fn(model(inputs), targets) -> scalar tensor``.
    data:
        Training batches of ``(inputs, targets)``: a DataLoader, a list, or a one-shot
        iterator (pulled only as far as the test needs, never further).  Cycled when short.
    optimizer:
        A registry name (built with :func:`optiwise.create_optimizer` for ``task`` with
        ``optimizer_kwargs``) or an existing optimizer, whose state is restored afterwards.
    start_lr, end_lr:
        The sweep (LR of the largest param group; the others keep their ratios).  Default:
        the optimizer's LR range in :mod:`optiwise.knowledge` widened by
        ``knowledge.LR_FINDER_WIDEN`` (:func:`sweep_range`).
    num_steps:
        Optimizer steps in the sweep (>= 10), one LR each.
    mode:
        ``"exp"`` (geometric steps) or ``"linear"``.
    accumulation:
        Micro-batches per optimizer step; the loss is averaged over them.
    amp:
        Mixed precision: ``True`` is bf16 autocast on CPU and fp16 with a GradScaler on CUDA;
        ``"bf16"`` or ``"fp16"`` choose.  Steps the GradScaler skips do not advance the sweep.
    val_data:
        Batches to score the confirmation runs on (eval mode).  Without it they are scored
        on their training loss over their last quarter.
    task:
        Task family for the default range and the optimizer's defaults.
    scheduler, scaler:
        Your scheduler and GradScaler, restored afterwards (the sweep never steps the
        scheduler; it uses the scaler for fp16).
    smoothing:
        EMA factor beta in [0, 1); default ``knowledge.LR_FINDER_SMOOTHING``.
    confirm:
        How many candidate LRs to confirm with short warmup + cosine runs (0: none, the
        recommendation is then the curve's ``minimum`` rule... see ``recommended``).
    confirm_steps:
        Optimizer steps of each confirmation run; default ``num_steps // 2``.  The extra
        cost is ``confirm * confirm_steps`` optimizer steps.
    total_steps:
        Optimizer steps of the planned run (each ``accumulation`` micro-batches; nothing
        is multiplied behind your back).  With it, the confirmation runs warm up as
        :func:`optiwise.tune` trials do (:func:`trial_warmup` of the planned run's warmup)
        and the recommendation is the confirmations' best LR (:func:`best_lr`) moved to the
        run's length by ``knowledge.TUNE_HORIZON_EXPONENT``; without it, a quarter decade
        below the best confirmation (``knowledge.LR_FINDER_BACKOFF``).
    horizon_exponent:
        The slope ``b`` of ``lr* ~ steps^b`` that moves the confirmations' best LR to
        ``total_steps``; default ``knowledge.TUNE_HORIZON_EXPONENT``.  Finite and <= 0.
    progress:
        Show a progress bar on stderr.

    Returns
    -------
    LRFinderResult
        The curve, the suggestions, the recommended LR and :meth:`LRFinderResult.plot`.
        Confirmation runs are scored on at most ``knowledge.TUNE_VAL_BATCHES`` validation
        batches, the same ones for every run.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_int("num_steps", num_steps, 10, "a range test needs at least 10 steps")
    _check_int("accumulation", accumulation, 1, "the number of micro-batches per step")
    _check_int("confirm", confirm, 0, "the number of candidate LRs to confirm; 0 for none")
    if confirm_steps is None:
        confirm_steps = max(10, num_steps // 2)
    _check_int("confirm_steps", confirm_steps, 2, "optimizer steps per confirmation run")
    if total_steps is not None:
        _check_int("total_steps", total_steps, 1, "optimizer steps of the planned run")
    exponent = horizon_exponent_value(horizon_exponent)
    if mode not in ("exp", "linear"):
        raise ValueError(f"Invalid mode: {mode!r} (use 'exp' or 'linear')")
    beta = knowledge.LR_FINDER_SMOOTHING.value if smoothing is None else smoothing
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta < 1.0:
        raise ValueError(f"Invalid smoothing: {smoothing!r} (must be in [0, 1))")
    params = list(model.parameters())
    if not params:
        raise ValueError(f"{type(model).__name__} has no parameters to train")
    device = params[0].device
    amp_dtype = _amp_dtype(amp, device)

    # Which optimizer, and its registry name for the default range.
    kwargs = dict(optimizer_kwargs or {})
    if isinstance(optimizer, Optimizer):
        if kwargs:
            raise ValueError("optimizer_kwargs only apply when optimizer is a registry name")
        name = registry_name(optimizer)
    elif isinstance(optimizer, str):
        name = canonical_name(optimizer)
        if "lr" in kwargs:
            raise ValueError("optimizer_kwargs must not set 'lr': the sweep sets it")
    else:
        raise ValueError(
            "optimizer must be a registry name (e.g. 'adamw') or a torch.optim.Optimizer, "
            f"got {type(optimizer).__name__}"
        )
    if start_lr is None or end_lr is None:
        if name is None:
            raise ValueError(
                f"no LR range is known for {type(optimizer).__name__}; pass start_lr and end_lr"
            )
        lo, hi = sweep_range(name, task)
        start_lr = lo if start_lr is None else start_lr
        end_lr = hi if end_lr is None else end_lr
    _check_lr("start_lr", start_lr)
    _check_lr("end_lr", end_lr)
    if start_lr >= end_lr:
        raise ValueError(f"Invalid LR range: start_lr={start_lr!r} must be below end_lr={end_lr!r}")
    batches = _Batches(data, "data")
    val_batches = _Batches(val_data, "val_data") if val_data is not None else None
    if scaler is not None and not hasattr(scaler, "scale"):
        raise ValueError(f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}")

    if isinstance(optimizer, Optimizer):
        opt = optimizer
    else:  # building it reads the model, changes nothing
        opt = create_optimizer(optimizer, model, lr=start_lr, task=task, **kwargs)
    base = [float(g["lr"]) for g in opt.param_groups]
    top = max(base)
    if not top > 0:
        raise ValueError("every param group has LR 0; give at least one group an LR > 0")

    snapshot = _Snapshot(model, opt, scheduler, scaler, [data, val_data])
    try:
        own_scaler = scaler
        if amp_dtype == torch.float16 and own_scaler is None:
            own_scaler = torch.amp.GradScaler(device.type)
        trainer = _Trainer(
            model,
            loss_fn,
            opt,
            accumulation,
            device,
            amp_dtype,
            own_scaler,
            [b / top for b in base],
        )
        lrs, losses, smoothed, stop, skipped = _sweep(
            trainer, batches, _sweep_lrs(start_lr, end_lr, num_steps, mode), beta, progress
        )
        snapshot.restore()
        suggestions = _suggest(lrs, smoothed)
        confirmations: list[Confirmation] = []
        if confirm > 0:
            bar = _progress(confirm * confirm_steps, progress, "LR confirmation runs")

            def run(lr: float) -> Confirmation:
                snapshot.restore()
                return _confirm_run(
                    trainer, batches, val_batches, lr, confirm_steps, total_steps, bar
                )

            with bar:
                confirmations = _search(_anchor(lrs, losses), confirm, run)
            recommended = _pick(
                confirmations, suggestions, val_batches is not None, total_steps, exponent
            )
            suggestions = {"confirmed": recommended, **suggestions}
        else:
            recommended = suggestions["minimum"]
    finally:
        snapshot.restore()
    return LRFinderResult(
        lrs=tuple(lrs),
        losses=tuple(losses),
        smoothed=tuple(smoothed),
        optimizer=name,
        start_lr=float(start_lr),
        end_lr=float(end_lr),
        num_steps=num_steps,
        mode=mode,
        stop_reason=stop,
        skipped_steps=skipped,
        group_scales=tuple(trainer.scales),
        suggestions=MappingProxyType(suggestions),
        recommended=recommended,
        confirmations=tuple(confirmations),
        score="val_loss" if val_batches is not None else "train_loss",
    )


def _sweep(
    trainer: _Trainer,
    batches: _Batches,
    schedule: list[float],
    beta: float,
    progress: bool,
) -> tuple[list[float], list[float], list[float], StopReason, int]:
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    stop: StopReason = "completed"
    skipped = 0
    avg, best = 0.0, math.inf
    threshold = knowledge.LR_FINDER_DIVERGE.value
    stream = batches.stream()
    trainer.model.train()
    with _progress(len(schedule), progress, "LR range test") as bar:
        i = 0
        while i < len(schedule):
            lr = schedule[i]
            loss, was_skipped = trainer.step(lr, stream)
            if not math.isfinite(loss):
                if not lrs:
                    raise ValueError(
                        f"the loss is {loss} at the first step (lr={lr:.3g}), before any "
                        "update: check the model, the loss function and the data"
                    )
                stop = "non-finite"
                break
            if was_skipped:
                skipped += 1
                if skipped > len(schedule):
                    stop = "amp-skipped"
                    break
                continue
            lrs.append(lr)
            losses.append(loss)
            avg = beta * avg + (1.0 - beta) * loss
            value = avg / (1.0 - beta ** len(losses))
            smoothed.append(value)
            bar.update(1)
            best = min(best, value)
            if value > best + (threshold - 1.0) * abs(best):
                stop = "diverged"
                break
            i += 1
    if len(lrs) < 5:
        raise ValueError(
            f"the loss diverged after {len(lrs)} steps of the sweep (at lr={schedule[i]:.3g}); "
            "lower start_lr"
        )
    return lrs, losses, smoothed, stop, skipped


def _constant(lr: float) -> float:
    return lr * knowledge.LR_CONSTANT_OF_PEAK.value


def _suggest(lrs: list[float], smoothed: list[float]) -> dict[str, Suggestion]:
    out: dict[str, Suggestion] = {}
    for rule, fn in SUGGESTION_RULES.items():
        lr = fn(lrs, smoothed)
        out[rule] = Suggestion(rule, lr, _constant(lr), _RULE_REASONS[rule])
    return out


def _confirm_warmup(steps: int, total_steps: int | None) -> int:
    """Warmup of a confirmation run: a :func:`trial_warmup` of the planned run's warmup
    (``knowledge.SCHEDULE_WARMUP_FRACTION`` of it), or, without a planned run, that fraction
    of the confirmation raised to ``knowledge.TUNE_WARMUP_FLOOR`` steps (at most half)."""
    frac = knowledge.SCHEDULE_WARMUP_FRACTION.value
    if total_steps is None:
        planned = max(round(frac * steps), knowledge.TUNE_WARMUP_FLOOR.value)
        return trial_warmup(planned, steps, steps)
    return trial_warmup(max(1, round(frac * total_steps)), total_steps, steps)


def _confirm_run(
    trainer: _Trainer,
    batches: _Batches,
    val_batches: _Batches | None,
    peak: float,
    steps: int,
    total_steps: int | None,
    bar: Any,
) -> Confirmation:
    from optiwise.schedules import lr_curve

    factors = lr_curve(
        "warmup_cosine",
        total_steps=steps,
        warmup=_confirm_warmup(steps, total_steps),
        min_lr_ratio=0.0,
    )
    stream = batches.stream()
    trainer.model.train()
    losses: list[float] = []
    for t in range(steps):
        loss, _ = trainer.step(peak * factors[t], stream)
        bar.update(1)
        if not math.isfinite(loss):
            bar.update(steps - t - 1)
            return Confirmation(peak, math.inf, steps, True)
        losses.append(loss)
    if val_batches is not None:
        score = trainer.evaluate(val_batches.first(knowledge.TUNE_VAL_BATCHES.value))
    else:
        tail = losses[-max(1, steps // 4) :]
        score = sum(tail) / len(tail)
    if not math.isfinite(score):
        return Confirmation(peak, math.inf, steps, True)
    return Confirmation(peak, score, steps, False)


def _pick(
    runs: list[Confirmation],
    suggestions: Mapping[str, Suggestion],
    on_val: bool,
    total_steps: int | None = None,
    exponent: float | None = None,
) -> Suggestion:
    ok = [c for c in runs if not c.diverged]
    if not ok:
        fallback = suggestions["minimum"]
        below = min(c.lr for c in runs) / _HALF_DECADE
        return Suggestion(
            "confirmed",
            below,
            _constant(below),
            "every confirmation run diverged; half a decade below the lowest candidate "
            f"(minimum rule: {fallback.lr:.3g})",
        )
    what = "validation loss" if on_val else "final training loss"
    steps = runs[0].steps
    if total_steps is not None:
        top = best_lr([c.lr for c in runs], [c.score for c in runs])
        assert top is not None
        slope = horizon_exponent_value(exponent)
        lr = top * (max(total_steps, steps) / steps) ** slope
        return Suggestion(
            "confirmed",
            lr,
            _constant(lr),
            f"the best {what} of {len(runs)} {steps}-step warmup + cosine runs, at "
            f"{top:.3g}, moved to the planned {total_steps} steps (LR ~ steps^{slope:.2f}: "
            "longer runs want lower LRs)",
        )
    best = min(ok, key=lambda c: (c.score, c.lr))
    lr = best.lr * knowledge.LR_FINDER_BACKOFF.value
    return Suggestion(
        "confirmed",
        lr,
        _constant(lr),
        f"a quarter decade below {best.lr:.3g}, the lowest {what} of {len(runs)} short "
        "warmup + cosine runs around the curve's minimum (longer runs want lower LRs; "
        "pass total_steps to move it to the planned run's length instead)",
    )


# --------------------------------------------------------------------------------------------
# Data sources for the command line
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSource:
    """Training and validation batches with their loss, for ``optiwise find-lr``.

    Attributes
    ----------
    train, val:
        Batches of ``(inputs, targets)``; ``val`` may be ``None``.
    loss_fn:
        ``loss_fn(model(inputs), targets) -> scalar tensor``.
    description:
        One line: what the data are.
    model:
        The model the batches are for: the one the factory was given, or the source's own
        when it was given ``None`` and has one (the benchmark workloads do).
    task:
        The task family whose optimizer defaults and LR range fit the data, when known.
    """

    train: Iterable[Any]
    val: Iterable[Any] | None
    loss_fn: LossFn
    description: str
    model: nn.Module | None = None
    task: str | None = None


DataSourceFactory = Callable[..., DataSource]
_DATA_SOURCES: dict[str, DataSourceFactory] = {}
DATA_SOURCES: Mapping[str, DataSourceFactory] = MappingProxyType(_DATA_SOURCES)
"""Named data sources: ``factory(model, **kwargs) -> DataSource``.  ``synthetic`` is always
there; importing :mod:`optiwise.bench` adds the benchmark's real workloads by name."""


def register_data_source(name: str, factory: DataSourceFactory) -> None:
    """Make ``factory(model, **kwargs) -> DataSource`` available under ``name``.

    ``model`` is the model to test, or ``None`` for a source that builds its own (it puts
    it in :attr:`DataSource.model`).
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"Invalid data source name: {name!r} (must be a non-empty string)")
    if not callable(factory):
        raise ValueError(f"data source {name!r}: factory must be callable, got {factory!r}")
    _DATA_SOURCES[name] = factory


def _linear_shapes(model: nn.Module) -> tuple[int | None, int | None]:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        return None, None
    return linears[0].in_features, linears[-1].out_features


def synthetic_regression(
    model: nn.Module | None,
    *,
    features: int | None = None,
    outputs: int | None = None,
    samples: int = 2048,
    val_samples: int = 512,
    batch_size: int = 64,
    noise: float = 0.1,
    seed: int = 0,
) -> DataSource:
    """A regression task from a random two-layer teacher network, with an MSE loss.

    ``features`` and ``outputs`` default to the model's first and last ``nn.Linear``.  The
    data come from their own seeded generator; the global RNG is not touched.
    """
    in_f, out_f = _linear_shapes(model) if model is not None else (None, None)
    features = features if features is not None else in_f
    outputs = outputs if outputs is not None else out_f
    if features is None or outputs is None:
        if model is None:
            raise ValueError(
                "the synthetic regression task is sized from a model, and none was given: "
                "pass the model (or features and outputs)"
            )
        raise ValueError(
            f"cannot tell the input/output sizes of {type(model).__name__} (it has no "
            "nn.Linear); pass features and outputs"
        )
    for label, v in (
        ("features", features),
        ("outputs", outputs),
        ("samples", samples),
        ("val_samples", val_samples),
        ("batch_size", batch_size),
    ):
        _check_int(label, v, 1, "of the synthetic regression task")
    gen = torch.Generator().manual_seed(seed)
    hidden = 32
    w1 = torch.randn(features, hidden, generator=gen) / math.sqrt(features)
    w2 = torch.randn(hidden, outputs, generator=gen) / math.sqrt(hidden)

    def make(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        x = torch.randn(n, features, generator=gen)
        y = torch.tanh(x @ w1) @ w2 + noise * torch.randn(n, outputs, generator=gen)
        return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, n, batch_size)]

    train, val = make(samples), make(val_samples)
    return DataSource(
        train,
        val,
        nn.MSELoss(),
        f"synthetic regression: {samples} samples of {features} features -> {outputs} "
        f"outputs (random tanh teacher, noise {noise}), batch {batch_size}",
        model=model,
    )


register_data_source("synthetic", synthetic_regression)
