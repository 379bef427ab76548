"""Scores of a sweep: per-workload summaries, the ratio of each optimizer's time to target
to the best one's, performance profiles and their area (as in the AlgoPerf benchmark,
Dahl et al. 2023), and LR sensitivity.

Time to target is the median over the final runs' seeds (infinite when the median seed
misses the target), measured in optimizer steps (``measure="steps"``, hardware-independent)
or training seconds (``measure="time"``).  For a workload ``w`` and optimizer ``o`` the
ratio is ``r(o, w) = t(o, w) / min_o' t(o', w)``; the performance profile is
``rho_o(tau) = |{w : r(o, w) <= tau}| / |W|`` and its area is the integral of ``rho_o``
over ``[1, tau_max]`` divided by ``tau_max - 1`` (1 for an optimizer that is fastest
everywhere, 0 for one that never comes within ``tau_max`` of the best).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from optiwise.bench.protocol import OptimizerResult, RunResult, SweepResult

__all__ = [
    "TAU_MAX",
    "OptimizerScore",
    "lr_sensitivity",
    "performance_profile",
    "profile_area",
    "ratios_to_best",
    "score_sweep",
]

#: AlgoPerf's upper limit of the performance profile: 4x slower than the best counts as
#: failing the workload.
TAU_MAX = 4.0

Measure = Literal["steps", "time"]


@dataclass(frozen=True)
class OptimizerScore:
    """One optimizer on one workload.

    Attributes
    ----------
    optimizer, best_lr:
        The optimizer and the LR its tuning selected.
    seeds:
        Final runs recorded.
    final_metric, final_metric_std:
        Mean and standard deviation over seeds of the final validation metric.
    best_metric:
        Mean over seeds of the best validation metric of each run.
    final_val_loss:
        Mean over seeds of the final validation loss.
    reached:
        Seeds that reached the target.
    steps_to_target, time_to_target:
        Median over seeds (``inf`` when the median seed missed the target).
    ratio:
        Time to target over the best optimizer's, in the sweep's measure (``inf`` when it
        missed, ``nan`` when no optimizer reached the target).
    diverged_tuning:
        Tuning runs that diverged.
    good_lrs, lr_width:
        Tuning LRs that reached the target, and the width in decades of the LR interval
        they span (``nan`` when none did).
    """

    optimizer: str
    best_lr: float | None
    seeds: int
    final_metric: float
    final_metric_std: float
    best_metric: float
    final_val_loss: float
    reached: int
    steps_to_target: float
    time_to_target: float
    ratio: float
    diverged_tuning: int
    good_lrs: int
    lr_width: float


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.nan


def _std(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.stdev(finite) if len(finite) > 1 else 0.0 if finite else math.nan


def _median_time(runs: Sequence[RunResult], measure: Measure) -> float:
    if not runs:
        return math.inf
    values = [(r.steps_to_target if measure == "steps" else r.time_to_target) for r in runs]
    return float(statistics.median(math.inf if v is None else float(v) for v in values))


def lr_sensitivity(
    tuning: Sequence[RunResult], target_reached: Sequence[bool]
) -> tuple[int, float]:
    """How forgiving the LR is: the number of tuning LRs that reached the target and the
    width (decades) of the LR interval between the smallest and largest of them."""
    good = [r.lr for r, ok in zip(tuning, target_reached, strict=True) if ok]
    if not good:
        return 0, math.nan
    return len(good), math.log10(max(good) / min(good))


def ratios_to_best(times: Mapping[str, float]) -> dict[str, float]:
    """``t / min(t)`` per optimizer; ``nan`` for all when no time is finite."""
    finite = [t for t in times.values() if math.isfinite(t)]
    if not finite:
        return {o: math.nan for o in times}
    best = max(min(finite), 1e-12)
    return {o: (t / best if math.isfinite(t) else math.inf) for o, t in times.items()}


def _score(part: OptimizerResult, ratio: float) -> OptimizerScore:
    finals = part.finals
    reached = [r.steps_to_target is not None for r in part.tuning]
    good, width = lr_sensitivity(part.tuning, reached)
    return OptimizerScore(
        optimizer=part.optimizer,
        best_lr=part.best_lr,
        seeds=len(finals),
        final_metric=_mean([r.final_metric for r in finals]),
        final_metric_std=_std([r.final_metric for r in finals]),
        best_metric=_mean([r.best_metric for r in finals]),
        final_val_loss=_mean([r.final_val_loss for r in finals]),
        reached=sum(r.steps_to_target is not None for r in finals),
        steps_to_target=_median_time(finals, "steps"),
        time_to_target=_median_time(finals, "time"),
        ratio=ratio,
        diverged_tuning=sum(r.diverged for r in part.tuning),
        good_lrs=good,
        lr_width=width,
    )


def score_sweep(sweep: SweepResult, measure: Measure = "steps") -> list[OptimizerScore]:
    """Scores of every optimizer of ``sweep`` (in the sweep's order)."""
    if measure not in ("steps", "time"):
        raise ValueError(f"Invalid measure: {measure!r} (use 'steps' or 'time')")
    times = {p.optimizer: _median_time(p.finals, measure) for p in sweep.optimizers}
    ratios = ratios_to_best(times)
    return [_score(p, ratios[p.optimizer]) for p in sweep.optimizers]


def performance_profile(
    ratios: Mapping[str, Mapping[str, float]], taus: Sequence[float]
) -> dict[str, list[float]]:
    """``rho_o(tau)`` for each optimizer ``o`` at each ``tau``.

    ``ratios[workload][optimizer]`` are the ratios to the best; workloads where no
    optimizer reached the target (all ``nan``) are left out.  An optimizer missing from a
    workload counts as failing it.
    """
    problems = [w for w, r in ratios.items() if any(math.isfinite(v) for v in r.values())]
    optimizers = sorted({o for r in ratios.values() for o in r})
    out: dict[str, list[float]] = {}
    for o in optimizers:
        rs = [ratios[w].get(o, math.inf) for w in problems]
        out[o] = [(sum(1 for r in rs if r <= tau) / len(rs)) if rs else math.nan for tau in taus]
    return out


def profile_area(ratios: Sequence[float], tau_max: float = TAU_MAX) -> float:
    """Normalized area under one optimizer's performance profile over ``[1, tau_max]``.

    With ``rho(tau)`` a step function, the area is exactly
    ``mean_w max(0, tau_max - r_w) / (tau_max - 1)``; ``nan`` ratios (no optimizer reached
    the target) are left out.
    """
    if not tau_max > 1:
        raise ValueError(f"Invalid tau_max: {tau_max} (must be > 1)")
    rs = [r for r in ratios if not math.isnan(r)]
    if not rs:
        return math.nan
    return sum(max(0.0, tau_max - max(r, 1.0)) for r in rs) / (len(rs) * (tau_max - 1.0))
