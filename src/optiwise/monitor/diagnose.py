"""Diagnosis of a recorded run: what is wrong, with the evidence and the fix to try.

Each check reads the series of a :class:`~optiwise.monitor.log.RunLog` and may report one
:class:`~optiwise.Finding` whose ``cause`` is a key of :data:`CAUSES`. The findings come in
the order to fix them, the debugging order of the seeds' optimizer guide: the learning rate
first, then numerics, the batch size, the gradients, and the optimizer (or training length)
last. A finding that another one explains (a NaN after the loss diverged at too high an LR;
anything measured on gradients that were never cleared) is kept, marked as a consequence, and
lowered to ``info``: fixing the cause is the first thing to try. Every threshold is a fact of
:mod:`optiwise.knowledge`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from optiwise import knowledge as K
from optiwise._findings import Finding, Severity
from optiwise.monitor.log import RunLog, load_log

__all__ = ["CAUSES", "Cause", "diagnose", "diagnose_log"]


@dataclass(frozen=True)
class Cause:
    """One documented cause: its stable code, the debugging step it belongs to, what it
    looks like in a recorded run, and why it matters."""

    name: str
    code: str
    step: str
    symptom: str
    why: str


def _c(name: str, code: str, step: str, symptom: str, why: str) -> Cause:
    return Cause(name, code, step, symptom, why)


#: The causes a diagnosis can name, in the order they are fixed (LR, numerics, batch size,
#: gradients, optimizer). ``missing_zero_grad`` shares the linter's code OW501.
CAUSES: dict[str, Cause] = {
    c.name: c
    for c in (
        _c(
            "lr_too_high",
            "OW801",
            "learning rate",
            "the loss diverges, or oscillates while steps move the weights by over 1% a step",
            "too large a step overshoots the minimum along the sharp directions; everything "
            "else (NaN, spikes, overfitting noise) follows from it",
        ),
        _c(
            "warmup_missing",
            "OW802",
            "learning rate",
            "the run starts at its peak LR and the loss blows up in the first steps, then recovers",
            "Adam's first updates are large (its second moment is not estimated yet) and "
            "transformers' early layers are fragile; a linear warmup removes the blow-up "
            "(Liu et al. 2020; Xiong et al. 2020)",
        ),
        _c(
            "lr_too_low",
            "OW803",
            "learning rate",
            "the loss hardly falls and every step moves the weights by under 1e-4 of their norm",
            "the run spends its budget crawling; the LR, not the model, limits progress",
        ),
        _c(
            "non_finite",
            "OW804",
            "numerics",
            "NaN/Inf losses or gradients, or fp16 steps skipped by the GradScaler",
            "a non-finite value poisons the weights and the optimizer state; skipped fp16 steps "
            "are training steps lost",
        ),
        _c(
            "exploding_gradients",
            "OW805",
            "numerics",
            "the gradient norm jumps 20x or more above its neighbouring steps",
            "one exploding step can undo many good ones; clipping the global norm bounds it "
            "(Pascanu et al. 2013)",
        ),
        _c(
            "batch_too_small",
            "OW806",
            "batch size",
            "the loss is dominated by step-to-step noise",
            "gradient noise falls as 1/sqrt(batch): a noisy loss means noisy steps, which need a "
            "lower LR or a larger batch",
        ),
        _c(
            "missing_zero_grad",
            "OW501",
            "gradients",
            "the gradients are still there, uncleared, when the next backward pass adds to them",
            "every step then uses the sum of all past gradients",
        ),
        _c(
            "dead_parameters",
            "OW807",
            "gradients",
            "parameters that never get a gradient, have a zero one, or are not in the optimizer",
            "they never train: a frozen layer, a module left out of the forward pass or out of "
            "the optimizer",
        ),
        _c(
            "vanishing_gradients",
            "OW808",
            "gradients",
            "a weight matrix's gradient is 1000x smaller than the largest layer's",
            "the early layers hardly learn; normalization, residual connections or ReLU-family "
            "activations restore the gradient flow (Glorot & Bengio 2010; He et al. 2016)",
        ),
        _c(
            "plateau",
            "OW809",
            "optimizer",
            "the smoothed loss has not improved by 1% over the last half of the run",
            "at a constant LR the weights bounce at the noise level the LR sets; a decay "
            "lets them settle lower",
        ),
        _c(
            "overfitting",
            "OW810",
            "optimizer",
            "the validation loss rises above its best while the training loss keeps falling",
            "the model memorizes the training set; more regularization or an earlier stop "
            "gives a better model",
        ),
    )
}
_ORDER = {name: i for i, name in enumerate(CAUSES)}

#: Which causes explain which others, checked in this order: a finding explained by an
#: earlier, unexplained finding becomes its consequence.
_EXPLAINS: dict[str, tuple[str, ...]] = {
    "missing_zero_grad": tuple(c for c in CAUSES if c != "missing_zero_grad"),
    "lr_too_high": (
        "non_finite",
        "exploding_gradients",
        "batch_too_small",
        "plateau",
        "overfitting",
        "warmup_missing",
    ),
    "lr_too_low": ("plateau", "vanishing_gradients"),
    "warmup_missing": ("non_finite", "batch_too_small", "plateau", "vanishing_gradients"),
    "exploding_gradients": ("non_finite", "batch_too_small", "plateau"),
    "non_finite": ("plateau", "batch_too_small"),
}


# --------------------------------------------------------------------------------------------
# Series helpers
# --------------------------------------------------------------------------------------------


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing running median (NaN where the window holds no finite value)."""
    n = len(values)
    if n == 0:
        return values
    w = max(1, min(window, n))
    padded = np.concatenate([np.full(w - 1, np.nan), values])
    view = np.lib.stride_tricks.sliding_window_view(padded, w)
    out = np.full(n, np.nan)
    ok = np.isfinite(view).any(axis=1)
    if ok.any():
        out[ok] = np.nanmedian(view[ok], axis=1)
    return out


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _lr_text(lr: float) -> str:
    return f"{lr:.2g}"


@dataclass
class _Run:
    """What every check needs, computed once."""

    log: RunLog
    steps: np.ndarray
    loss: np.ndarray
    smooth: np.ndarray
    first_bad: int | None  # index of the first non-finite loss
    lr: float  # the LR of group 0 at the end of the run (the largest group LR)
    peak_lr: float
    ratio_steps: np.ndarray
    ratio: np.ndarray  # per detailed step: median update ratio over weight matrices

    @property
    def n(self) -> int:
        return len(self.loss)

    @property
    def good(self) -> slice:
        """Indices before the first non-finite loss."""
        return slice(0, self.first_bad if self.first_bad is not None else self.n)


def _weight_names(log: RunLog, kind: str) -> list[str]:
    names = list(log.per_param(kind))
    ndim = dict(zip(log.meta.get("param_names", []), log.meta.get("param_ndim", []), strict=False))
    matrices = [n for n in names if ndim.get(n, 2) >= 2]
    return matrices or names


def _prepare(log: RunLog) -> _Run | None:
    steps, loss = log.get("loss")
    if len(loss) == 0:
        return None
    bad = np.flatnonzero(~np.isfinite(loss))
    first_bad = int(bad[0]) if len(bad) else None
    window = int(K.LOSS_SMOOTHING_WINDOW.value)
    smooth = _smooth(loss, window)
    lrs = [log.get(t)[1] for t in log.tags("lr/")]
    lr = max((float(v[-1]) for v in lrs if len(v)), default=float("nan"))
    peak = max((float(np.nanmax(v)) for v in lrs if len(v)), default=float("nan"))
    per = log.per_param("update_ratio")
    names = _weight_names(log, "update_ratio")
    table: dict[int, list[float]] = {}
    for name in names:
        for s, v in zip(*per[name], strict=False):
            table.setdefault(int(s), []).append(float(v))
    rsteps = np.asarray(sorted(table), dtype=np.int64)
    ratio = np.asarray(
        [
            float(np.median(finite))
            if (finite := [v for v in table[s] if math.isfinite(v)])
            else np.nan
            for s in rsteps
        ]
    )
    return _Run(log, steps, loss, smooth, first_bad, lr, peak, rsteps, ratio)


def _ratio_median(run: _Run, after: int = 0) -> float:
    """Median update ratio over the detailed steps after step ``after``, before the first
    non-finite loss."""
    limit = run.steps[run.first_bad] if run.first_bad is not None else np.inf
    keep = (run.ratio_steps > after) & (run.ratio_steps < limit) & np.isfinite(run.ratio)
    return float(np.median(run.ratio[keep])) if keep.any() else float("nan")


def _optimizer_lr_facts(log: RunLog) -> tuple[str | None, float | None, tuple[float, float] | None]:
    """(knowledge name, default LR, LR range) of the run's optimizer, when known."""
    name = log.meta.get("optimizer")
    if not isinstance(name, str):
        return None, None, None
    try:
        d = K.defaults(name.removeprefix(K.LOOKAHEAD_PREFIX))
    except ValueError:
        return None, None, None
    lr = d.hparams["lr"].value
    return name, float(lr) if isinstance(lr, (int, float)) else None, tuple(d.lr_range.value)  # type: ignore[return-value]


def _finding(
    cause: str, severity: Severity, message: str, fix: str, data: dict[str, Any]
) -> Finding:
    c = CAUSES[cause]
    return Finding(
        code=c.code,
        severity=severity,
        message=message,
        fix=fix,
        why=c.why,
        data=data,
        cause=cause,
    )


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------


def _diverged(run: _Run) -> tuple[int, float] | None:
    """(index, factor) where the smoothed loss first exceeds LOSS_DIVERGE x its best so far
    (or the loss rose over 3 recorded steps in a row into a non-finite value)."""
    limit = float(K.LOSS_DIVERGE.value)
    good = run.smooth[run.good]
    best = np.fmin.accumulate(np.where(np.isfinite(good), good, np.inf))
    start = good[np.isfinite(good)][0] if np.isfinite(good).any() else np.inf
    # above 4x its best and above where it started: a loss near 0 that turns noisy is not it
    over = np.flatnonzero(np.isfinite(good) & (good > limit * best) & (good > start))
    if len(over):
        i = int(over[0])
        return i, float(good[i] / best[i])
    if run.first_bad is not None and run.first_bad >= 3:
        tail = run.loss[run.first_bad - 3 : run.first_bad]
        if np.all(np.diff(tail) > 0) and tail[-1] > 2 * tail[0]:
            return run.first_bad - 1, float(tail[-1] / run.loss[0])
    return None


def _lr_try_lower(run: _Run, factor: float) -> str:
    name, default, rng = _optimizer_lr_facts(run.log)
    target = run.peak_lr / factor
    text = f"lower the LR to {_lr_text(target)} ({_fmt(factor)}x lower)"
    if rng is not None and default is not None and run.peak_lr > rng[1]:
        text = (
            f"lower the LR to {_lr_text(default)}, {name}'s default (its typical range is "
            f"{_lr_text(rng[0])}-{_lr_text(rng[1])}; the run used {_lr_text(run.peak_lr)})"
        )
    return text + ", or run the LR range test (optiwise.find_lr)"


def _check_lr_too_high(run: _Run) -> Finding | None:
    div = _diverged(run)
    high = float(K.UPDATE_RATIO_HIGH.value)
    target = float(K.UPDATE_RATIO_TARGET.value)
    early_end = _early_end(run)
    ratio = _ratio_median(run, after=early_end)
    data: dict[str, Any] = {"peak_lr": run.peak_lr, "median_update_ratio": ratio}
    if div is not None:
        i, factor = div
        data.update(step=int(run.steps[i]), loss_factor=factor)
        if i < _index_of_step(run, early_end) and _recovered(run, i):
            return None  # an early blow-up the run recovered from: the warmup check's case
        severity = Severity.CRITICAL if run.first_bad is not None else Severity.MAJOR
        nan = (
            f"; the loss is NaN/Inf from step {int(run.steps[run.first_bad])}"
            if run.first_bad is not None
            else ""
        )
        return _finding(
            "lr_too_high",
            severity,
            f"the loss diverged at step {int(run.steps[i])} (smoothed loss {_fmt(factor)}x its "
            f"best) at LR {_lr_text(run.peak_lr)}{nan}",
            _lr_try_lower(run, 10.0),
            data,
        )
    name, _, rng = _optimizer_lr_facts(run.log)
    factor_out = float(K.LR_OUT_OF_RANGE_FACTOR.value)
    if rng is not None and run.peak_lr > factor_out * rng[1]:
        # the seeds' first check: an LR far above the optimizer's range, with any sign of it
        blow = _early_blowup(run)
        signs = []
        if blow is not None:
            signs.append(f"the loss blew up to {_fmt(blow[1])} at step {int(run.steps[blow[0]])}")
        if math.isfinite(ratio) and ratio > high:
            signs.append(f"steps move the weights by {_fmt(ratio)} of their norm")
        if _unstable(run, early_end):
            signs.append("the loss is unstable")
        if signs:
            data.update(lr_range=list(rng))
            return _finding(
                "lr_too_high",
                Severity.MAJOR,
                f"LR {_lr_text(run.peak_lr)} is {_fmt(run.peak_lr / rng[1])}x the top of "
                f"{name}'s typical range ({_lr_text(rng[0])}-{_lr_text(rng[1])}) and "
                + "; ".join(signs),
                _lr_try_lower(run, 10.0),
                data,
            )
    if math.isfinite(ratio) and ratio > high and _unstable(run, early_end):
        factor = min(100.0, max(3.0, ratio / target))
        return _finding(
            "lr_too_high",
            Severity.MAJOR,
            f"steps move the weights by {_fmt(ratio)} of their norm (median over the run after "
            f"step {early_end}; healthy is ~{_fmt(target)}) and the loss is unstable, at LR "
            f"{_lr_text(run.peak_lr)}",
            _lr_try_lower(run, factor),
            data,
        )
    return None


def _index_of_step(run: _Run, step: int) -> int:
    return int(np.searchsorted(run.steps, step, side="right"))


def _early_end(run: _Run) -> int:
    """The last step of the run's early phase (WARMUP_EARLY_FRACTION of it)."""
    return int(run.steps[-1] * float(K.WARMUP_EARLY_FRACTION.value))


def _recovered(run: _Run, i: int) -> bool:
    """Whether the smoothed loss after index ``i`` falls back below the run's start."""
    after = run.smooth[i:][np.isfinite(run.smooth[i:])]
    start = run.smooth[min(run.n - 1, int(K.LOSS_SMOOTHING_WINDOW.value) - 1)]
    return run.first_bad is None and len(after) > 0 and float(after[-1]) < float(start)


def _last_smooth(run: _Run) -> float:
    s = run.smooth[np.isfinite(run.smooth)]
    return float(s[-1]) if len(s) else float("nan")


def _unstable(run: _Run, after: int) -> bool:
    """The loss after step ``after`` ends well above its best, or spikes far above it."""
    i0 = _index_of_step(run, after)
    s = run.smooth[i0:][np.isfinite(run.smooth[i0:])]
    raw = run.loss[i0:][np.isfinite(run.loss[i0:])]
    if len(s) < 3:
        return True
    best = float(np.min(s))
    return float(s[-1]) > (1 + 0.2) * best or float(np.max(raw)) > 2 * float(s[0])


def _early_blowup(run: _Run) -> tuple[int, float] | None:
    """(index, smoothed loss) of a loss blow-up in the run's early phase without a gradient
    explosion (clipping is the fix for those)."""
    early = _early_end(run)
    i_end = _index_of_step(run, early)
    if i_end < 3 or run.n < 10:
        return None
    start = float(run.loss[0])
    seg = run.smooth[:i_end]
    rise = float(K.WARMUP_RISE.value)
    peak_i = int(np.nanargmax(np.where(np.isfinite(seg), seg, -np.inf)))
    peak = float(seg[peak_i])
    if not math.isfinite(start):
        return None  # non-finite from the first step: the numerics check's case
    blew_up = math.isfinite(peak) and peak > rise * start
    if not blew_up:
        # the other form: a jump in the first window of steps after which the run is stuck
        w = int(K.LOSS_SMOOTHING_WINDOW.value)
        first = run.loss[:w]
        j = int(np.nanargmax(np.where(np.isfinite(first), first, -np.inf)))
        stuck = _last_smooth(run) >= (1 - float(K.MIN_PROGRESS.value)) * start
        if not (float(first[j]) > float(K.WARMUP_JUMP.value) * start and stuck):
            return None
        peak_i, peak = j, float(first[j])
    if _spikes(run.log, limit_step=early):
        return None
    return peak_i, peak


def _check_warmup(run: _Run) -> Finding | None:
    lr0 = [run.log.get(t)[1] for t in run.log.tags("lr/")]
    if not lr0 or not len(lr0[0]) or not math.isfinite(run.peak_lr) or run.peak_lr <= 0:
        return None
    first = max(float(v[0]) for v in lr0 if len(v))
    if first < 0.9 * run.peak_lr:
        return None  # the LR ramps up: there is a warmup
    blow = _early_blowup(run)
    if blow is None:
        return None
    peak_i, peak = blow
    start = float(run.loss[0])
    steps = run.steps[-1]
    warmup = max(
        int(K.TUNE_WARMUP_FLOOR.value), round(float(K.SCHEDULE_WARMUP_FRACTION.value) * steps)
    )
    return _finding(
        "warmup_missing",
        Severity.MAJOR,
        f"the run starts at its peak LR {_lr_text(run.peak_lr)} and the loss blows up early "
        f"(up to {_fmt(peak)} at step {int(run.steps[peak_i])}, from {_fmt(start)}), "
        + (
            "then recovers"
            if _recovered(run, peak_i)
            else f"and never recovers (smoothed loss {_fmt(_last_smooth(run))} at the end)"
        ),
        f"add a linear warmup of {warmup} steps "
        f"(optiwise.create_scheduler('warmup_cosine', optimizer, warmup={warmup}, "
        f"total_steps={steps}), {float(K.SCHEDULE_WARMUP_FRACTION.value):.0%} of the run)",
        {
            "peak_lr": run.peak_lr,
            "step": int(run.steps[peak_i]),
            "peak_loss": peak,
            "start_loss": start,
            "warmup_steps": warmup,
        },
    )


def _check_lr_too_low(run: _Run) -> Finding | None:
    ratio = _ratio_median(run)
    low = float(K.UPDATE_RATIO_LOW.value)
    if not math.isfinite(ratio) or ratio >= low:
        return None
    s = run.smooth[np.isfinite(run.smooth)]
    if len(s) < 2:
        return None
    progress = 1.0 - float(s[-1]) / float(s[0]) if s[0] > 0 else 0.0
    if progress >= float(K.MIN_PROGRESS.value):
        return None
    target = float(K.UPDATE_RATIO_TARGET.value)
    factor = float(10 ** round(math.log10(min(1000.0, max(3.0, target / ratio)))))
    name, default, rng = _optimizer_lr_facts(run.log)
    new = run.peak_lr * factor
    fix = f"raise the LR to {_lr_text(new)} ({_fmt(factor)}x higher)"
    if rng is not None and default is not None and run.peak_lr < rng[0]:
        fix = (
            f"raise the LR to {_lr_text(default)}, {name}'s default (its typical range is "
            f"{_lr_text(rng[0])}-{_lr_text(rng[1])}; the run used {_lr_text(run.peak_lr)})"
        )
    return _finding(
        "lr_too_low",
        Severity.MAJOR,
        f"steps move the weights by only {_fmt(ratio)} of their norm (healthy is "
        f"~{_fmt(target)}) and the loss fell by {progress:.1%} over {int(run.steps[-1])} steps, "
        f"at LR {_lr_text(run.peak_lr)}",
        fix + ", or run the LR range test (optiwise.find_lr)",
        {"peak_lr": run.peak_lr, "median_update_ratio": ratio, "progress": progress},
    )


def _check_non_finite(run: _Run) -> Finding | None:
    log = run.log
    s_steps, skipped = log.get("skipped")
    _, nonfinite = log.get("nonfinite_grads")
    amp = log.meta.get("amp") == "fp16" or len(log.get("amp_scale")[1]) > 0
    if amp:
        calib = int(K.AMP_CALIBRATION_STEPS.value)
        late = skipped[s_steps > calib]
        n_late = int(np.sum(late > 0))
        frac = n_late / len(late) if len(late) else 0.0
        _, scale = log.get("amp_scale")
        min_scale = float(np.nanmin(scale)) if len(scale) else float("nan")
        limit = float(K.AMP_MAX_SKIP_FRACTION.value)
        if frac > limit or (math.isfinite(min_scale) and min_scale < 1.0):
            first = int(s_steps[(s_steps > calib) & (skipped > 0)][0]) if n_late else calib
            return _finding(
                "non_finite",
                Severity.MAJOR,
                f"the GradScaler skipped {n_late} of {len(late)} steps after the first {calib} "
                f"({frac:.1%}; healthy is under {limit:.0%}), first at step {first}; lowest "
                f"loss scale {_fmt(min_scale)}: the gradients overflow fp16",
                f"train in {K.MIXED_PRECISION.value} autocast instead of fp16 (no loss scaling), "
                f"or clip the global gradient norm at {K.CLIP_NORM.value} and find the "
                "operation that overflows (softmax/log in fp16, a loss not in fp32)",
                {
                    "skipped": n_late,
                    "recorded": len(late),
                    "first_step": first,
                    "min_scale": min_scale,
                },
            )
    bad_loss = run.first_bad
    bad_grad = np.flatnonzero(nonfinite > 0)
    if bad_loss is None and not len(bad_grad):
        return None
    g_steps = log.get("nonfinite_grads")[0]
    candidates = [int(run.steps[bad_loss])] if bad_loss is not None else []
    candidates += [int(g_steps[bad_grad[0]])] if len(bad_grad) else []
    first = min(candidates)
    what = "loss" if bad_loss is not None and int(run.steps[bad_loss]) == first else "gradients"
    n_bad = int(np.sum(~np.isfinite(run.loss))) + int(np.sum(skipped > 0))
    return _finding(
        "non_finite",
        Severity.CRITICAL,
        f"non-finite values from step {first} (first in the {what}); {n_bad} recorded steps "
        "had a NaN/Inf loss or a skipped step",
        f"clip the global gradient norm at {K.CLIP_NORM.value} and lower the LR 10x (to "
        f"{_lr_text(run.peak_lr / 10)}); check the loss for log(0) or division by zero; "
        "optiwise.Stepper skips non-finite steps",
        {"first_step": first, "count": n_bad},
    )


def _spikes(log: RunLog, limit_step: float = math.inf) -> list[tuple[int, float]]:
    """(step, factor) of gradient norms GRAD_SPIKE x above the median of their neighbours."""
    steps, gn = log.get("grad_norm")
    if len(gn) < 5:
        return []
    w = int(K.LOSS_SMOOTHING_WINDOW.value)
    out = []
    limit = float(K.GRAD_SPIKE.value)
    for i in range(len(gn)):
        if steps[i] > limit_step or not math.isfinite(gn[i]):
            continue
        lo, hi = max(0, i - w), min(len(gn), i + w + 1)
        around = np.concatenate([gn[lo:i], gn[i + 1 : hi]])
        around = around[np.isfinite(around)]
        if len(around) < 3:
            continue
        med = float(np.median(around))
        if med > 0 and gn[i] > limit * med:
            out.append((int(steps[i]), float(gn[i] / med)))
    return out


def _check_exploding(run: _Run) -> Finding | None:
    spikes = _spikes(run.log)
    _, gn = run.log.get("grad_norm")
    if not spikes:
        return None
    worst = max(spikes, key=lambda p: p[1])
    clip = run.log.meta.get("clip_norm")
    med = float(np.nanmedian(gn[np.isfinite(gn)])) if np.isfinite(gn).any() else float("nan")
    if clip:
        fix = (
            f"the gradients are clipped at {clip}; lower the LR 3x (to "
            f"{_lr_text(run.peak_lr / 3)}) so a clipped step moves less"
        )
    else:
        fix = (
            f"clip the global gradient norm: torch.nn.utils.clip_grad_norm_(params, "
            f"max_norm={K.CLIP_NORM.value}) before optimizer.step() (or Stepper(clip_norm="
            f"{K.CLIP_NORM.value}))"
        )
    return _finding(
        "exploding_gradients",
        Severity.MAJOR,
        f"{len(spikes)} gradient-norm spike(s), the worst {_fmt(worst[1])}x its neighbours at "
        f"step {worst[0]} (median norm {_fmt(med)})",
        fix,
        {
            "spikes": [s for s, _ in spikes][:20],
            "worst_step": worst[0],
            "worst_factor": worst[1],
            "median_norm": med,
            "clip_norm": clip,
        },
    )


def _check_batch(run: _Run) -> Finding | None:
    half = run.n // 2
    loss, smooth = run.loss[half : run.good.stop], run.smooth[half : run.good.stop]
    ok = np.isfinite(loss) & np.isfinite(smooth) & (smooth > 0)
    if ok.sum() < 20:
        return None
    noise = float(np.median(np.abs(loss[ok] - smooth[ok]) / smooth[ok]))
    limit = float(K.LOSS_NOISE.value)
    batch = run.log.meta.get("batch_size")
    small = isinstance(batch, int) and batch < int(K.SMALL_BATCH.value)
    if noise <= limit and not (small and noise > limit / 2):
        return None
    k = int(K.BATCH_INCREASE.value)
    if isinstance(batch, int):
        fix = (
            f"raise the batch to {batch * k} (or accumulate {k} micro-batches: "
            f"Stepper(accumulation={k})); or lower the LR 2x"
        )
    else:
        fix = (
            f"raise the batch {k}x (or accumulate {k} micro-batches: Stepper(accumulation={k})); "
            "or lower the LR 2x"
        )
    return _finding(
        "batch_too_small",
        Severity.MEDIUM,
        f"the loss deviates by {noise:.0%} of its running median from step to step over the "
        f"last half of the run (noisy above {limit:.0%})"
        + (f"; batch size {batch}" if batch else ""),
        fix,
        {"noise": noise, "batch_size": batch},
    )


def _check_zero_grad(run: _Run) -> Finding | None:
    steps, flags = run.log.get("grads_not_cleared")
    if len(flags) < 2:
        return None
    frac = float(np.mean(flags > 0))
    if frac <= float(K.GRADS_NOT_CLEARED_FRACTION.value):
        return None
    first = int(steps[np.flatnonzero(flags > 0)[0]])
    return _finding(
        "missing_zero_grad",
        Severity.CRITICAL,
        f"the gradients were not cleared before the next backward pass after {frac:.0%} of "
        f"the checked steps (first after step {first}): they accumulate over the whole run",
        "call optimizer.zero_grad(set_to_none=True) once per step, before loss.backward()",
        {"fraction": frac, "checked": len(flags), "first_step": first},
    )


def _check_dead(run: _Run) -> Finding | None:
    meta = run.log.meta
    never = list(meta.get("never_grad", []))
    outside = list(meta.get("not_in_optimizer", []))
    zero = []
    for name, (_, v) in run.log.per_param("grad_norm").items():
        if len(v) >= 2 and np.all(v[np.isfinite(v)] == 0) and np.isfinite(v).any():
            zero.append(name)
    if not (never or outside or zero):
        return None
    frozen = set(meta.get("frozen", []))
    parts = []
    if never:
        frozen_never = [n for n in never if n in frozen]
        parts.append(
            f"{len(never)} parameter(s) in the optimizer never got a gradient ("
            + ", ".join(never[:6])
            + (", ..." if len(never) > 6 else "")
            + ")"
            + (f", {len(frozen_never)} of them with requires_grad=False" if frozen_never else "")
        )
    if zero:
        parts.append(f"{len(zero)} always had a zero gradient ({', '.join(zero[:6])})")
    if outside:
        parts.append(
            f"{len(outside)} trainable parameter(s) are not in the optimizer ("
            + ", ".join(outside[:6])
            + ")"
        )
    fixes = []
    if never:
        fixes.append(
            "unfreeze them (requires_grad_(True)) if they should train, or leave them out of "
            "the optimizer if the freeze is meant; a module unused in forward() gets no "
            "gradient either"
        )
    if zero:
        fixes.append("check the activations feeding them (dead ReLUs, a detached input)")
    if outside:
        fixes.append("build the optimizer on model.parameters() (or optiwise.param_groups(model))")
    return _finding(
        "dead_parameters",
        Severity.MAJOR,
        "; ".join(parts),
        "; ".join(fixes),
        {"never_grad": never, "zero_grad": zero, "not_in_optimizer": outside},
    )


def _check_vanishing(run: _Run) -> Finding | None:
    per = run.log.per_param("grad_norm")
    names = _weight_names(run.log, "grad_norm")
    med = {}
    for n in names:
        v = per[n][1]
        v = v[np.isfinite(v)]
        if len(v):
            med[n] = float(np.median(v))
    positive = {n: m for n, m in med.items() if m > 0}
    if len(positive) < 2:
        return None
    top = max(positive.values())
    limit = float(K.VANISHING_RATIO.value)
    weak = [n for n, m in positive.items() if m < limit * top]
    if not weak:
        return None
    worst = min(weak, key=lambda n: positive[n])
    return _finding(
        "vanishing_gradients",
        Severity.MAJOR,
        f"{len(weak)} weight matrix(es) get a gradient under {limit:g}x the largest layer's "
        f"(worst {worst}: median {_fmt(positive[worst])} vs {_fmt(top)})",
        "add normalization (LayerNorm/BatchNorm) or residual connections, use ReLU/GELU "
        "instead of sigmoid/tanh with He initialization (nn.init.kaiming_normal_), or a "
        "layer-wise adaptive optimizer (LAMB/LARS)",
        {"weak": weak, "worst": worst, "worst_norm": positive[worst], "top_norm": top},
    )


def _check_plateau(run: _Run) -> Finding | None:
    s = run.smooth[run.good]
    steps = run.steps[run.good]
    ok = np.isfinite(s)
    s, steps = s[ok], steps[ok]
    if len(s) < 20:
        return None
    start_i = int(len(s) * (1 - float(K.PLATEAU_FRACTION.value)))
    best_before = float(np.min(s[: start_i + 1]))
    best_after = float(np.min(s[start_i:]))
    tol = float(K.PLATEAU_TOLERANCE.value)
    if best_after < (1 - tol) * best_before:
        return None
    if best_before < 0.05 * float(s[0]):
        return None  # converged: the loss is a small fraction of where it started
    factor = float(K.PLATEAU_LR_FACTOR.value)
    return _finding(
        "plateau",
        Severity.MEDIUM,
        f"the smoothed loss has not improved by {tol:.0%} since step {int(steps[start_i])} "
        f"(best {_fmt(best_before)}, started at {_fmt(float(s[0]))})",
        f"decay the LR: {_lr_text(run.lr * factor)} ({factor:g}x) from here, "
        f"ReduceLROnPlateau(factor={factor:g}) on the validation loss, or a cosine schedule",
        {"since_step": int(steps[start_i]), "best": best_before},
    )


def _check_overfitting(run: _Run) -> Finding | None:
    vs, vl = run.log.get("val/loss")
    ok = np.isfinite(vl)
    vs, vl = vs[ok], vl[ok]
    if len(vl) < 4:
        return None
    i = int(np.argmin(vl))
    rise = float(K.OVERFIT_RISE.value)
    if i >= len(vl) - 2 or not np.all(vl[-2:] > (1 + rise) * vl[i]):
        return None
    at_best = _index_of_step(run, int(vs[i])) - 1
    train_then = float(run.smooth[max(0, at_best)])
    train_now = float(run.smooth[run.good.stop - 1])
    if not (math.isfinite(train_then) and train_now < (1 - rise) * train_then):
        return None  # the training loss did not keep falling: not overfitting
    k = float(K.WEIGHT_DECAY_STEP.value)
    wds = run.log.meta.get("weight_decay") or []
    wd = max((float(w) for w in wds), default=0.0)
    name, _, _ = _optimizer_lr_facts(run.log)
    if wd > 0:
        wd_text = f"raise weight decay {k:g}x to {wd * k:.2g}"
    else:
        default = 0.0
        if name is not None:
            with_default = K.defaults(name.removeprefix(K.LOOKAHEAD_PREFIX)).hparams
            fact = with_default.get("weight_decay")
            default = float(fact.value) if fact is not None and fact.value else 0.0
        wd_text = f"add weight decay {default or 0.01:g} (with AdamW, decoupled)"
    return _finding(
        "overfitting",
        Severity.MAJOR,
        f"the validation loss rose from {_fmt(float(vl[i]))} at step {int(vs[i])} to "
        f"{_fmt(float(vl[-1]))} at step {int(vs[-1])} while the training loss fell from "
        f"{_fmt(train_then)} to {_fmt(train_now)}",
        f"{wd_text}; stop at step {int(vs[i])} (keep the best checkpoint); more data or "
        "augmentation",
        {"best_step": int(vs[i]), "best_val": float(vl[i]), "last_val": float(vl[-1])},
    )


_CHECKS: tuple[Callable[[_Run], Finding | None], ...] = (
    _check_lr_too_high,
    _check_warmup,
    _check_lr_too_low,
    _check_non_finite,
    _check_exploding,
    _check_batch,
    _check_zero_grad,
    _check_dead,
    _check_vanishing,
    _check_plateau,
    _check_overfitting,
)


def _rank(findings: list[Finding]) -> list[Finding]:
    by_cause = {f.cause: f for f in findings}
    explained: dict[str, str] = {}
    for root, consequences in _EXPLAINS.items():
        if root not in by_cause or root in explained:
            continue
        for c in consequences:
            if c in by_cause and c not in explained:
                explained[c] = root
    out = []
    for f in findings:
        root_cause = explained.get(f.cause or "")
        if root_cause is not None:
            f = replace(
                f,
                severity=Severity.INFO,
                message=f"{f.message} (likely a consequence of {root_cause}: re-check after "
                "fixing it)",
                data={**f.data, "consequence_of": root_cause},
            )
        out.append(f)
    return sorted(out, key=lambda f: (f.severity.rank, _ORDER[f.cause or ""]))


def diagnose_log(log: RunLog) -> list[Finding]:
    """The findings of a recorded run, in the order to fix them (worst first; within a
    severity, the seeds' order: LR, numerics, batch size, gradients, optimizer)."""
    if not isinstance(log, RunLog):
        raise ValueError(f"Invalid log: {type(log).__name__} is not a RunLog (use load_log)")
    run = _prepare(log)
    if run is None:
        raise ValueError("the log has no loss values: record some steps (monitor.step(loss))")
    found = [f for check in _CHECKS if (f := check(run)) is not None]
    return _rank(found)


def diagnose(source: Any) -> list[Finding]:
    """Diagnose a run: a :class:`~optiwise.Monitor`, a :class:`RunLog`, or the path of a
    monitor CSV / a folder holding one / a TensorBoard folder.

    Returns
    -------
    list of Finding
        Each with ``cause`` (a key of :data:`CAUSES`), ``data`` (the evidence: steps and
        numbers) and ``fix`` (what to change, with the value to try).
    """
    from optiwise.monitor.record import Monitor

    if isinstance(source, Monitor):
        return source.diagnose()
    if isinstance(source, RunLog):
        return diagnose_log(source)
    if isinstance(source, (str, os.PathLike)):
        return diagnose_log(load_log(source))
    raise ValueError(
        f"Invalid source: {type(source).__name__}; pass a Monitor, a RunLog, or the path of a "
        "monitor CSV or TensorBoard folder"
    )
