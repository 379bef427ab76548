"""Learning-rate schedules torch lacks, and one factory over torch's and ours.

All of optiwise's schedules are :class:`torch.optim.lr_scheduler.LRScheduler` subclasses
that compute the LR in closed form from the step count, so they compose with SequentialLR
and ChainedScheduler and resume exactly from ``state_dict()``.

Conventions, with ``t`` the index of the optimizer step about to run (0 before the first
``scheduler.step()``), ``T`` the total steps, ``W`` the warmup steps, ``r`` the
``min_lr_ratio`` and ``base`` each param group's initial LR:

- warmup: ``factor(t) = (t + 1) / W`` for ``t < W`` (the first step already moves, the
  ``W``-th runs at the peak);
- decay progress after warmup: ``p = (t - W) / (T - W)`` clamped to [0, 1];
- ``lr = base * (r + (1 - r) * shape(p))``: the floor is a fraction of each group's own LR.

After ``T`` steps the LR stays at the floor.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from torch.optim import Optimizer
from torch.optim import lr_scheduler as tls

__all__ = [
    "MAX_CURVE_STEPS",
    "SCHEDULES",
    "ConstantWithWarmup",
    "InverseSqrtWithWarmup",
    "LinearWarmupCosine",
    "LinearWarmupLinear",
    "PolynomialWithWarmup",
    "WarmupStableDecay",
    "create_scheduler",
    "lr_curve",
    "lr_samples",
    "plot_schedule",
    "resolve_warmup",
]

Cooldown = Literal["linear", "cosine", "1-sqrt"]


def resolve_warmup(warmup: int | float, total_steps: int | None) -> int:
    """Warmup steps from ``warmup``: an int is a step count, a float in [0, 1) a fraction of
    ``total_steps`` (rounded to the nearest step)."""
    if isinstance(warmup, bool) or not isinstance(warmup, (int, float)):
        raise ValueError(
            f"Invalid warmup: {warmup!r} (an int number of steps or a float "
            "fraction of total_steps in [0, 1))"
        )
    if isinstance(warmup, float):
        if not 0.0 <= warmup < 1.0:
            raise ValueError(
                f"Invalid warmup fraction: {warmup} (must be in [0, 1); give an "
                "int for a number of steps)"
            )
        if total_steps is None:
            raise ValueError(
                f"warmup={warmup} is a fraction of total_steps, but total_steps was not given"
            )
        return round(warmup * total_steps)
    if warmup < 0:
        raise ValueError(f"Invalid warmup: {warmup} steps (must be >= 0)")
    return warmup


def _check_total(total_steps: int) -> None:
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"Invalid total_steps: {total_steps!r} (must be an int >= 1)")


def _check_ratio(min_lr_ratio: float) -> None:
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"Invalid min_lr_ratio: {min_lr_ratio} (must be in [0, 1])")


def _check_warmup(warmup_steps: int, total_steps: int, allow_full: bool = False) -> None:
    if warmup_steps > total_steps or (warmup_steps == total_steps and not allow_full):
        raise ValueError(
            f"warmup of {warmup_steps} steps does not fit a run of {total_steps} steps "
            "(the warmup must be shorter than the run; lower warmup or raise total_steps)"
        )


class _FactorSchedule(tls.LRScheduler):
    """Base class: ``lr = base_lr * factor(t)`` in closed form."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        raise NotImplementedError

    def get_lr(self) -> list[float]:  # type: ignore[override]
        f = self.factor(self.last_epoch)
        return [float(base) * f for base in self.base_lrs]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()


class _WarmupDecay(_FactorSchedule):
    """Linear warmup, then ``r + (1 - r) * shape(p)``."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        _check_total(total_steps)
        _check_ratio(min_lr_ratio)
        warmup_steps = resolve_warmup(warmup_steps, total_steps)
        _check_warmup(warmup_steps, total_steps)
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, last_epoch)

    def shape(self, progress: float) -> float:
        raise NotImplementedError

    def factor(self, step: int) -> float:
        w, total, r = self.warmup_steps, self.total_steps, self.min_lr_ratio
        if step < w:
            return (step + 1) / w
        progress = min(1.0, max(0.0, (step - w) / (total - w)))
        return r + (1.0 - r) * self.shape(progress)


class LinearWarmupCosine(_WarmupDecay):
    """Linear warmup, then cosine decay to ``min_lr_ratio * base``.

    ``shape(p) = (1 + cos(pi * p)) / 2`` (Loshchilov & Hutter 2017, without restarts).
    """

    def shape(self, progress: float) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * progress))


class LinearWarmupLinear(_WarmupDecay):
    """Linear warmup, then linear decay to ``min_lr_ratio * base``: ``shape(p) = 1 - p``
    (the BERT schedule)."""

    def shape(self, progress: float) -> float:
        return 1.0 - progress


class PolynomialWithWarmup(_WarmupDecay):
    """Linear warmup, then ``shape(p) = (1 - p) ** power``."""

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        power: float = 1.0,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if not power > 0:
            raise ValueError(f"Invalid power: {power} (must be > 0)")
        self.power = power
        super().__init__(optimizer, total_steps, warmup_steps, min_lr_ratio, last_epoch)

    def shape(self, progress: float) -> float:
        return (1.0 - progress) ** self.power


_COOLDOWNS: dict[str, Callable[[float], float]] = {
    "linear": lambda p: 1.0 - p,
    "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
    "1-sqrt": lambda p: 1.0 - math.sqrt(p),
}


class WarmupStableDecay(_FactorSchedule):
    """Warmup-stable-decay (trapezoidal): linear warmup over ``W`` steps, the peak LR until
    ``T - D``, then a cooldown over the last ``D`` steps to ``min_lr_ratio * base``.

    Cooldown shapes with ``p = (t - (T - D)) / D``: ``linear`` ``1 - p``, ``cosine``
    ``(1 + cos(pi p)) / 2``, ``1-sqrt`` ``1 - sqrt(p)`` (Hägele et al. 2024).  ``decay_steps``
    is an int step count or a float fraction of ``total_steps``.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        decay_steps: int | float = 0.2,
        cooldown: Cooldown = "linear",
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        _check_total(total_steps)
        _check_ratio(min_lr_ratio)
        warmup_steps = resolve_warmup(warmup_steps, total_steps)
        if isinstance(decay_steps, float):
            if not 0.0 < decay_steps <= 1.0:
                raise ValueError(f"Invalid decay fraction: {decay_steps} (must be in (0, 1])")
            decay_steps = round(decay_steps * total_steps)
        if isinstance(decay_steps, bool) or not isinstance(decay_steps, int) or decay_steps < 1:
            raise ValueError(f"Invalid decay_steps: {decay_steps!r} (must be >= 1 step)")
        if warmup_steps + decay_steps > total_steps:
            raise ValueError(
                f"warmup ({warmup_steps}) + decay ({decay_steps}) steps exceed the run of "
                f"{total_steps} steps; shorten one of them"
            )
        if cooldown not in _COOLDOWNS:
            raise ValueError(f"Invalid cooldown: {cooldown!r} (use one of {', '.join(_COOLDOWNS)})")
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.decay_steps = decay_steps
        self.cooldown = cooldown
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        start = self.total_steps - self.decay_steps
        if step < start:
            return 1.0
        progress = min(1.0, (step - start) / self.decay_steps)
        r = self.min_lr_ratio
        return r + (1.0 - r) * _COOLDOWNS[self.cooldown](progress)


class InverseSqrtWithWarmup(_FactorSchedule):
    """Linear warmup, then ``sqrt(s / t)`` decay with timescale ``s = max(W, 1)``, i.e.
    ``lr = base * sqrt(s / max(t, s))`` after warmup (Vaswani et al. 2017), floored at
    ``min_lr_ratio * base``.  Needs no total step count."""

    def __init__(
        self,
        optimizer: Optimizer,
        warmup_steps: int = 0,
        min_lr_ratio: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        _check_ratio(min_lr_ratio)
        self.warmup_steps = resolve_warmup(warmup_steps, None)
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        scale = max(self.warmup_steps, 1)
        return max(self.min_lr_ratio, math.sqrt(scale / max(step, scale)))


class ConstantWithWarmup(_FactorSchedule):
    """Linear warmup, then the base LR for ever."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int = 0, last_epoch: int = -1) -> None:
        self.warmup_steps = resolve_warmup(warmup_steps, None)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return 1.0


# --------------------------------------------------------------------------------------------
# The factory
# --------------------------------------------------------------------------------------------

SCHEDULES: tuple[str, ...] = (
    "warmup_cosine",
    "warmup_linear",
    "wsd",
    "warmup_poly",
    "inverse_sqrt",
    "warmup_constant",
    "constant",
    "step",
    "multistep",
    "exponential",
    "cosine",
    "cosine_restarts",
    "onecycle",
    "plateau",
    "polynomial",
)
# Names whose schedule needs total_steps.
_NEEDS_TOTAL = {
    "warmup_cosine",
    "warmup_linear",
    "wsd",
    "warmup_poly",
    "cosine",
    "onecycle",
    "polynomial",
}
_ALIASES = {
    "cosine_warmup": "warmup_cosine",
    "linear": "warmup_linear",
    "linear_warmup": "warmup_linear",
    "warmup_stable_decay": "wsd",
    "trapezoidal": "wsd",
    "poly": "warmup_poly",
    "rsqrt": "inverse_sqrt",
    "one_cycle": "onecycle",
    "reduce_on_plateau": "plateau",
    "cosine_annealing": "cosine",
    "sgdr": "cosine_restarts",
}


def _canonical_schedule(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in SCHEDULES:
        from optiwise.knowledge import _unknown

        raise _unknown("schedule", name, list(SCHEDULES) + list(_ALIASES))
    return key


def _with_warmup(
    optimizer: Optimizer, warmup_steps: int, build: Callable[[], tls.LRScheduler]
) -> tls.LRScheduler:
    """Prefix torch scheduler ``build()`` with the ``(t + 1) / W`` linear warmup."""
    if warmup_steps <= 1:
        return build()
    warm = tls.LinearLR(
        optimizer, start_factor=1.0 / warmup_steps, end_factor=1.0, total_iters=warmup_steps - 1
    )
    return tls.SequentialLR(optimizer, [warm, build()], milestones=[warmup_steps])


def create_scheduler(
    name: str,
    optimizer: Optimizer,
    *,
    total_steps: int | None = None,
    warmup: int | float = 0,
    **kwargs: Any,
) -> tls.LRScheduler:
    """Build schedule ``name`` for ``optimizer``; step it once per optimizer step.

    optiwise's schedules: ``warmup_cosine``, ``warmup_linear``, ``wsd``, ``warmup_poly``,
    ``inverse_sqrt``, ``warmup_constant`` (``constant`` is an alias with no warmup), with
    ``min_lr_ratio`` (all but the constant ones), ``power`` (``warmup_poly``),
    ``decay`` / ``cooldown`` (``wsd``).

    torch's: ``step`` (``step_size``, ``gamma``), ``multistep`` (``milestones``, ``gamma``),
    ``exponential`` (``gamma``), ``cosine`` (``eta_min``; T_max is the steps after warmup),
    ``cosine_restarts`` (``T_0``, ``T_mult``, ``eta_min``), ``onecycle`` (``max_lr``
    defaults to each group's LR; warmup sets ``pct_start``), ``plateau`` (``mode``,
    ``factor``, ``patience``; no warmup), ``polynomial`` (``power``; total_iters is the steps
    after warmup).  A warmup before a torch schedule is the same ``(t + 1) / W`` linear ramp,
    joined with SequentialLR.

    Parameters
    ----------
    total_steps:
        Optimizer steps in the run (needed by the decaying schedules).
    warmup:
        Warmup as a number of steps (int) or a fraction of ``total_steps`` (float in [0, 1)).
    """
    key = _canonical_schedule(name)
    if key in _NEEDS_TOTAL:
        if total_steps is None:
            raise ValueError(
                f"schedule {key!r} needs total_steps (the number of optimizer steps in the run)"
            )
        _check_total(total_steps)
    elif total_steps is not None:
        _check_total(total_steps)
    w = resolve_warmup(warmup, total_steps)
    if total_steps is not None:
        _check_warmup(w, total_steps, allow_full=key in {"warmup_constant", "constant"})

    if key == "warmup_cosine":
        assert total_steps is not None
        return LinearWarmupCosine(optimizer, total_steps, w, **kwargs)
    if key == "warmup_linear":
        assert total_steps is not None
        return LinearWarmupLinear(optimizer, total_steps, w, **kwargs)
    if key == "warmup_poly":
        assert total_steps is not None
        return PolynomialWithWarmup(optimizer, total_steps, w, **kwargs)
    if key == "wsd":
        assert total_steps is not None
        if "decay" in kwargs:
            kwargs["decay_steps"] = kwargs.pop("decay")
        return WarmupStableDecay(optimizer, total_steps, w, **kwargs)
    if key == "inverse_sqrt":
        return InverseSqrtWithWarmup(optimizer, w, **kwargs)
    if key in ("warmup_constant", "constant"):
        return ConstantWithWarmup(optimizer, w, **kwargs)
    if key == "onecycle":
        assert total_steps is not None
        max_lr = kwargs.pop("max_lr", [g["lr"] for g in optimizer.param_groups])
        if w:
            kwargs.setdefault("pct_start", w / total_steps)
        return tls.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, **kwargs)
    if key == "plateau":
        if w:
            raise ValueError(
                "the 'plateau' schedule takes no warmup (ReduceLROnPlateau "
                "reacts to a metric); use warmup=0"
            )
        return tls.ReduceLROnPlateau(optimizer, **kwargs)

    after = (total_steps - w) if total_steps is not None else None

    def build() -> tls.LRScheduler:
        if key == "step":
            return tls.StepLR(optimizer, **kwargs)
        if key == "multistep":
            return tls.MultiStepLR(optimizer, **kwargs)
        if key == "exponential":
            return tls.ExponentialLR(optimizer, **kwargs)
        if key == "cosine":
            return tls.CosineAnnealingLR(optimizer, T_max=after, **kwargs)  # type: ignore[arg-type]
        if key == "cosine_restarts":
            return tls.CosineAnnealingWarmRestarts(optimizer, **kwargs)
        if key == "polynomial":
            return tls.PolynomialLR(optimizer, total_iters=after, **kwargs)  # type: ignore[arg-type]
        raise AssertionError(key)  # pragma: no cover

    return _with_warmup(optimizer, w, build)


MAX_CURVE_STEPS = 1_000_000
"""The most steps :func:`lr_curve` lists, and the most a torch scheduler is stepped through
for :func:`lr_samples` (about 10 s on one CPU core)."""


def _curve_scheduler(
    name: str, total_steps: int, lr: float, warmup: int | float, kwargs: dict[str, Any]
) -> tuple[Optimizer, tls.LRScheduler]:
    import torch

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    return opt, create_scheduler(name, opt, total_steps=total_steps, warmup=warmup, **kwargs)


def _stepped_lrs(
    opt: Optimizer, sched: tls.LRScheduler, wanted: list[int], name: str, total_steps: int
) -> list[float]:
    """The LR at each (sorted, distinct) step of ``wanted``, by stepping ``sched``."""
    last = wanted[-1] if wanted else -1
    if last >= MAX_CURVE_STEPS:
        raise ValueError(
            f"total_steps={total_steps} is too many for schedule {name!r}: torch's schedulers "
            f"have no closed form here, so step {last} means stepping through every step "
            f"before it (at most {MAX_CURVE_STEPS:,}); use one of optiwise's schedules "
            "(warmup_cosine, warmup_linear, wsd, warmup_poly, inverse_sqrt, warmup_constant), "
            "which any run length can be sampled from, or lower total_steps"
        )
    out: list[float] = []
    opt.step()  # once, so the scheduler's first step does not warn about the order
    want = iter(wanted)
    nxt = next(want, None)
    for step in range(last + 1):
        if step == nxt:
            out.append(float(opt.param_groups[0]["lr"]))
            nxt = next(want, None)
        if step < last:
            if isinstance(sched, tls.ReduceLROnPlateau):
                sched.step(1.0)
            else:
                sched.step()
    return out


def _lrs_at(
    opt: Optimizer, sched: tls.LRScheduler, steps: list[int], name: str, total_steps: int
) -> list[float]:
    if isinstance(sched, _FactorSchedule):  # closed form: any step, no stepping
        base = float(sched.base_lrs[0])
        return [base * sched.factor(t) for t in steps]
    return _stepped_lrs(opt, sched, steps, name, total_steps)


def lr_curve(
    name: str,
    *,
    total_steps: int,
    lr: float = 1.0,
    warmup: int | float = 0,
    **kwargs: Any,
) -> list[float]:
    """The LR of every step ``0 .. total_steps - 1`` that schedule ``name`` gives a single
    param group starting at ``lr`` (for previews and plots; nothing is trained).

    At most :data:`MAX_CURVE_STEPS` steps; :func:`lr_samples` previews longer runs.
    """
    opt, sched = _curve_scheduler(name, total_steps, lr, warmup, kwargs)
    if total_steps > MAX_CURVE_STEPS:
        raise ValueError(
            f"total_steps={total_steps} is too many steps to list every LR of (at most "
            f"{MAX_CURVE_STEPS:,}); use optiwise.schedules.lr_samples to sample the curve"
        )
    return _lrs_at(opt, sched, list(range(total_steps)), name, total_steps)


def _knots(sched: tls.LRScheduler, warmup: int) -> set[int]:
    """Steps where a schedule changes shape (warmup end, WSD cooldown start)."""
    knots: set[int] = set()
    if warmup:
        knots |= {warmup - 1, warmup}
    if isinstance(sched, WarmupStableDecay):
        start = sched.total_steps - sched.decay_steps
        knots |= {start - 1, start}
    return knots


def lr_samples(
    name: str,
    *,
    total_steps: int,
    points: int = 2048,
    include: Sequence[int] = (),
    lr: float = 1.0,
    warmup: int | float = 0,
    **kwargs: Any,
) -> tuple[list[int], list[float]]:
    """The LR of schedule ``name`` at ``points`` evenly spaced steps of a run of
    ``total_steps`` (every step of a shorter run), for previews of runs of any length.

    The first and last step, the steps where the schedule changes shape (the end of the
    warmup, the start of a WSD cooldown) and the steps in ``include`` are always sampled.
    optiwise's schedules are computed in closed form, for any ``total_steps``; torch's are
    stepped through, at most :data:`MAX_CURVE_STEPS` steps (a longer run is a ValueError
    naming it).

    Returns
    -------
    steps, lrs:
        The sampled steps, ascending, and the LR at each.
    """
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise ValueError(f"Invalid points: {points!r} (must be an int >= 2)")
    opt, sched = _curve_scheduler(name, total_steps, lr, warmup, kwargs)
    for t in include:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < total_steps:
            raise ValueError(f"Invalid step in include: {t!r} (must be in [0, {total_steps}))")
    if total_steps <= points:
        steps = list(range(total_steps))
    else:
        grid = {round(i * (total_steps - 1) / (points - 1)) for i in range(points)}
        knots = _knots(sched, resolve_warmup(warmup, total_steps))
        extra = {t for t in knots | set(include) if 0 <= t < total_steps}
        steps = sorted(grid | extra)
    return steps, _lrs_at(opt, sched, steps, name, total_steps)


def plot_schedule(
    name: str,
    path: str | os.PathLike[str],
    *,
    total_steps: int,
    lr: float = 1.0,
    warmup: int | float = 0,
    **kwargs: Any,
) -> Path:
    """Plot the LR of schedule ``name`` over a run of ``total_steps`` to a PNG at ``path``
    (atomically): every step up to 4096 steps, else 4096 samples (:func:`lr_samples`)."""
    from optiwise._plotting import new_figure, save_figure

    steps, lrs = lr_samples(
        name, total_steps=total_steps, points=4096, lr=lr, warmup=warmup, **kwargs
    )
    fig, ax = new_figure()
    ax.plot(steps, lrs, color="tab:blue", linewidth=1.8)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    details = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    ax.set_title(
        f"{name} (warmup={warmup}, total={total_steps}{', ' + details if details else ''})"
    )
    ax.grid(alpha=0.3)
    ax.set_xlim(0, max(1, total_steps - 1))
    ax.set_ylim(bottom=0)
    return save_figure(fig, path)
