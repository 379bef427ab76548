"""The benchmark report: ``index.md``, PNG plots, ``runs.csv`` and ``summary.json``.

The report is built in a temporary folder beside the destination and renamed into place
when complete, so a crash never leaves a half-written report: the folder holds either the
previous report or the new one.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optiwise._io import atomic_dir, atomic_write_text
from optiwise._plotting import save_figure
from optiwise._version import __version__
from optiwise.bench.protocol import PROTOCOL_VERSION, RunResult, SweepResult
from optiwise.bench.scoring import (
    TAU_MAX,
    Measure,
    OptimizerScore,
    performance_profile,
    profile_area,
    score_sweep,
)
from optiwise.bench.toys import ToyFunction

__all__ = ["check_out_dir", "runs_table", "write_report"]

_CSV_COLUMNS = (
    "workload",
    "study",
    "key",
    "optimizer",
    "phase",
    "lr",
    "seed",
    "budget",
    "final_val_loss",
    "final_metric",
    "best_metric",
    "steps_to_target",
    "time_to_target",
    "train_time",
    "eval_time",
    "diverged",
    "schedule",
    "data_source",
    "worker",
    "started",
    "finished",
)


def check_out_dir(out: str | os.PathLike[str]) -> Path:
    """``out`` as a Path, or a ValueError when it (or a folder it would be made in) exists
    and is not a folder."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"report folder {str(path)!r} is a file; choose another --out folder")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(
                    f"report folder {str(path)!r} cannot be made: {str(parent)!r} is a file; "
                    "choose another --out folder"
                )
            break
    return path


# --------------------------------------------------------------------------------------------
# Formatting
# --------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "never"
    return f"{value:.{digits}g}"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


def runs_table(sweeps: Sequence[SweepResult]) -> str:
    """Every recorded run of ``sweeps`` as CSV text (one row per run, done runs only)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for sweep in sweeps:
        for rec in sweep.records:
            if rec.result is None:
                continue
            r = RunResult.from_dict(rec.result)
            writer.writerow(
                [
                    sweep.workload.name,
                    rec.study,
                    rec.key,
                    rec.optimizer,
                    rec.phase,
                    f"{rec.lr:.6g}",
                    rec.seed,
                    r.budget,
                    r.final_val_loss,
                    r.final_metric,
                    r.best_metric,
                    "" if r.steps_to_target is None else r.steps_to_target,
                    "" if r.time_to_target is None else f"{r.time_to_target:.4f}",
                    f"{r.train_time:.4f}",
                    f"{r.eval_time:.4f}",
                    int(r.diverged),
                    r.schedule,
                    r.data_source,
                    rec.worker,
                    _dt.datetime.fromtimestamp(rec.started, _dt.timezone.utc).isoformat(),
                    ""
                    if rec.finished is None
                    else _dt.datetime.fromtimestamp(rec.finished, _dt.timezone.utc).isoformat(),
                ]
            )
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def _figure(ncols: int = 1, width: float = 6.0, height: float = 4.0) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), dpi=110)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _colors(names: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {n: cmap(i % 10) for i, n in enumerate(names)}


def _band(runs: Sequence[RunResult], field: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps, mean and std over seeds of a curve (diverged seeds pad with NaN)."""
    longest = max(runs, key=lambda r: len(r.steps))
    steps = np.asarray(longest.steps, dtype=float)
    table = np.full((len(runs), len(steps)), np.nan)
    for i, r in enumerate(runs):
        values = np.asarray(getattr(r, field), dtype=float)
        table[i, : len(values)] = values
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        mean = np.nanmean(table, axis=0)
        std = np.nanstd(table, axis=0)
    return steps, mean, std


@contextlib.contextmanager
def _quiet_nan_warnings() -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _plot_curves(sweep: SweepResult, colors: dict[str, Any], path: Path) -> bool:
    parts = [p for p in sweep.optimizers if p.finals]
    if not parts:
        return False
    w = sweep.workload
    toy = w.toy is not None
    fig, axes = _figure(1 if toy else 2)
    for p in parts:
        c = colors[p.optimizer]
        label = f"{p.optimizer} (lr {p.best_lr:.3g})"
        steps, mean, std = _band(p.finals, "val_loss")
        axes[0].plot(steps, mean, color=c, label=label)
        axes[0].fill_between(steps, mean - std, mean + std, color=c, alpha=0.2, linewidth=0)
        if not toy:
            tsteps, tmean, _ = _band(p.finals, "train_loss")
            axes[0].plot(tsteps, tmean, color=c, linestyle=":", linewidth=1)
            msteps, mmean, mstd = _band(p.finals, "metric")
            axes[1].plot(msteps, mmean, color=c, label=label)
            axes[1].fill_between(
                msteps, mmean - mstd, mmean + mstd, color=c, alpha=0.2, linewidth=0
            )
    seeds = max(len(p.finals) for p in parts)
    axes[0].set_title(
        f"{w.name}: {'loss' if toy else 'validation loss (train dotted)'}, "
        f"mean ± std over {seeds} seed(s)"
    )
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss")
    if toy:
        axes[0].set_yscale("log")
        axes[0].axhline(w.target.value, color="grey", linestyle="--", linewidth=1)
    else:
        axes[1].set_title(f"validation {w.metric}")
        axes[1].set_xlabel("step")
        axes[1].set_ylabel(w.metric)
        axes[1].axhline(w.target.value, color="grey", linestyle="--", linewidth=1, label="target")
        axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    save_figure(fig, path)
    return True


def _plot_lr(sweep: SweepResult, colors: dict[str, Any], path: Path) -> bool:
    parts = [p for p in sweep.optimizers if p.tuning]
    if not parts:
        return False
    w = sweep.workload
    fig, axes = _figure(1, width=7.0)
    ax = axes[0]
    finite = [r.final_metric for p in parts for r in p.tuning if math.isfinite(r.final_metric)]
    fail_y = (min(finite) if w.target.higher_is_better else max(finite)) if finite else 0.0
    for p in parts:
        c = colors[p.optimizer]
        lrs = [r.lr for r in p.tuning]
        ys = [r.final_metric for r in p.tuning]
        ax.plot(lrs, ys, marker="o", color=c, label=p.optimizer)
        bad = [lr for lr, y in zip(lrs, ys, strict=True) if not math.isfinite(y)]
        if bad:
            ax.scatter(bad, [fail_y] * len(bad), marker="x", color=c, s=50)
        if p.best_lr is not None:
            best = next(r for r in p.tuning if r.lr == p.best_lr)
            ax.scatter([best.lr], [best.final_metric], marker="*", s=180, color=c, zorder=5)
    ax.axhline(w.target.value, color="grey", linestyle="--", linewidth=1, label="target")
    ax.set_xscale("log")
    if w.toy is not None:
        ax.set_yscale("log")
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel(f"final validation {w.metric}")
    ax.set_title(f"{w.name}: LR sensitivity (seed 0; star = selected, x = diverged)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)
    return True


def _plot_profile(
    profile: dict[str, list[float]], taus: np.ndarray, colors: dict[str, Any], path: Path
) -> None:
    fig, axes = _figure(1, width=7.0)
    ax = axes[0]
    for o, rho in profile.items():
        ax.step(taus, rho, where="post", color=colors[o], label=o)
    ax.set_xlim(1, TAU_MAX)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tau (time to target / best time to target)")
    ax.set_ylabel("fraction of workloads within tau of the best")
    ax.set_title("performance profile")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def _plot_trajectories(
    sweep: SweepResult, toy: ToyFunction, colors: dict[str, Any], path: Path
) -> bool:
    paths = []
    for p in sweep.optimizers:
        run = next((r for r in p.finals if r.trajectory), None)
        if run is None:
            run = next((r for r in p.tuning if r.lr == p.best_lr and r.trajectory), None)
        if run is not None and run.trajectory:
            paths.append((p.optimizer, run))
    if not paths:
        return False
    import torch

    x0, x1, y0, y1 = toy.window
    xs = np.linspace(x0, x1, 300)
    ys = np.linspace(y0, y1, 300)
    gx, gy = np.meshgrid(xs, ys)
    with torch.no_grad():
        z = toy.fn(torch.from_numpy(gx), torch.from_numpy(gy)).numpy()
    fig, axes = _figure(1, width=7.0, height=5.5)
    ax = axes[0]
    levels = np.logspace(math.log10(max(z.min(), 1e-3)), math.log10(z.max()), 25)
    ax.contour(gx, gy, z, levels=levels, cmap="Greys", linewidths=0.6)
    for name, run in paths:
        t = np.asarray(run.trajectory, dtype=float)
        t = t[np.all(np.isfinite(t), axis=1)]
        ax.plot(
            t[:, 0], t[:, 1], color=colors[name], linewidth=1.2, label=f"{name} (lr {run.lr:.3g})"
        )
        ax.scatter(t[-1:, 0], t[-1:, 1], color=colors[name], s=20)
    ax.scatter([toy.start[0]], [toy.start[1]], color="black", marker="o", s=30, label="start")
    ax.scatter([toy.minimum[0]], [toy.minimum[1]], color="red", marker="*", s=120, label="minimum")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_title(f"{sweep.workload.name}: trajectories at the selected LR")
    ax.legend(fontsize=8, loc="best")
    save_figure(fig, path)
    return True


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def _score_rows(scores: Sequence[OptimizerScore], sweep: SweepResult) -> list[list[str]]:
    tuned = {p.optimizer: len(p.tuning) for p in sweep.optimizers}
    rows = []
    for s in scores:
        rows.append(
            [
                s.optimizer,
                _num(s.best_lr, 3),
                f"{_num(s.final_metric)} ± {_num(s.final_metric_std, 2)}",
                _num(s.best_metric),
                _num(s.final_val_loss),
                f"{s.reached}/{s.seeds}",
                _num(s.steps_to_target),
                _num(s.time_to_target, 3),
                _num(s.ratio, 3),
                f"{s.good_lrs}/{tuned[s.optimizer]}",
                _num(s.lr_width, 2),
                str(s.diverged_tuning),
            ]
        )
    return rows


def _workload_section(
    sweep: SweepResult, scores: Sequence[OptimizerScore], files: dict[str, str], measure: Measure
) -> str:
    w, cfg = sweep.workload, sweep.config
    sources = sorted({RunResult.from_dict(r.result).data_source for r in sweep.records if r.result})
    search = f"{cfg.trials} TPE trials" if cfg.trials else f"{cfg.lr_grid}-point grid"
    lines = [
        f"## {w.name}",
        "",
        f"{w.description}.",
        "",
        f"- data: {'; '.join(sources) or '-'}",
        f"- task family (optimizer defaults): `{w.task}`; batch size {w.batch_size or '-'}; "
        f"budget {cfg.budget} steps; evaluation every {w.eval_every} steps",
        f"- target: {w.target.describe()}; tuning: {search} at seed 0, selected by "
        f"{'final ' + w.metric if cfg.select == 'metric' else 'steps to target'}; "
        f"{cfg.seeds} final seed(s)",
        f"- runs recorded: {len(sweep.records)}{'' if sweep.complete else ' (sweep not complete)'}",
        "",
        _md_table(
            [
                "optimizer",
                "best LR",
                f"final {w.metric}",
                f"best {w.metric}",
                "final val loss",
                "reached",
                "steps to target",
                "train s to target",
                f"ratio ({measure})",
                "LRs reaching target",
                "LR width (decades)",
                "diverged (tuning)",
            ],
            _score_rows(scores, sweep),
        ),
        "",
    ]
    for title, name in (
        ("curves", "curves"),
        ("LR sensitivity", "lr"),
        ("trajectories", "trajectories"),
    ):
        if name in files:
            lines += [f"![{w.name} {title}]({files[name]})", ""]
    return "\n".join(lines)


def _score_dict(s: OptimizerScore) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in s.__dict__.items():
        out[k] = None if isinstance(v, float) and not math.isfinite(v) else v
    return out


def _build(
    sweeps: Sequence[SweepResult],
    folder: Path,
    measure: Measure,
    storage: str | None,
    command: str | None,
) -> None:
    names: list[str] = []
    for sweep in sweeps:
        for p in sweep.optimizers:
            if p.optimizer not in names:
                names.append(p.optimizer)
    colors = _colors(names)
    sections: list[str] = []
    ratios: dict[str, dict[str, float]] = {}
    summary: dict[str, Any] = {
        "optiwise": __version__,
        "protocol": PROTOCOL_VERSION,
        "measure": measure,
        "workloads": {},
    }
    for sweep in sweeps:
        w = sweep.workload
        scores = score_sweep(sweep, measure)
        ratios[w.name] = {s.optimizer: s.ratio for s in scores}
        files: dict[str, str] = {}
        slug = _slug(w.name)
        if _plot_curves(sweep, colors, folder / f"{slug}-curves.png"):
            files["curves"] = f"{slug}-curves.png"
        if _plot_lr(sweep, colors, folder / f"{slug}-lr.png"):
            files["lr"] = f"{slug}-lr.png"
        if w.toy is not None and _plot_trajectories(
            sweep, w.toy, colors, folder / f"{slug}-trajectories.png"
        ):
            files["trajectories"] = f"{slug}-trajectories.png"
        sections.append(_workload_section(sweep, scores, files, measure))
        summary["workloads"][w.name] = {
            "study": sweep.study,
            "target": w.target.describe(),
            "complete": sweep.complete,
            "scores": [_score_dict(s) for s in scores],
        }

    taus = np.linspace(1.0, TAU_MAX, 301)
    profile = performance_profile(ratios, taus.tolist())
    areas = {o: profile_area([ratios[w].get(o, math.inf) for w in ratios]) for o in names}
    summary["profile_area"] = {o: (None if math.isnan(a) else a) for o, a in areas.items()}
    head = [
        "# optiwise benchmark report",
        "",
        f"Generated {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by "
        f"optiwise {__version__} (protocol v{PROTOCOL_VERSION}).",
    ]
    if command:
        head += ["", f"Command: `{command}`"]
    if storage:
        head += ["", f"Store: `{storage}`"]
    head += [
        "",
        "Protocol: every optimizer tunes its own peak LR (a log grid centred on its "
        "knowledge default, or TPE trials) at seed 0; the selected LR is re-run over fresh "
        "seeds; every run uses the same step budget and a warmup + cosine schedule decayed "
        "to zero (schedule-free optimizers: constant after the warmup); the other "
        "hyperparameters are each optimizer's defaults for the task family.",
        "",
        "## Performance profile",
        "",
        f"Ratio of each optimizer's median {measure} to target to the best optimizer's, per "
        f"workload; the area under the profile over [1, {TAU_MAX:g}] (1 = fastest on every "
        "workload, 0 = never within "
        f"{TAU_MAX:g}x of the best).",
        "",
    ]
    have_profile = any(any(math.isfinite(v) for v in r.values()) for r in ratios.values())
    if have_profile:
        _plot_profile(profile, taus, colors, folder / "profile.png")
        rows = [
            [o, _num(areas[o], 3)] + [_num(ratios[w].get(o, math.inf), 3) for w in ratios]
            for o in sorted(names, key=lambda o: -(areas[o] if math.isfinite(areas[o]) else -1))
        ]
        head += [
            _md_table(["optimizer", "profile area", *[f"ratio {w}" for w in ratios]], rows),
            "",
            "![performance profile](profile.png)",
            "",
        ]
    else:
        head += ["No optimizer reached a target yet, so there is no profile.", ""]
    tail = [
        "## Files",
        "",
        "- `runs.csv`: every recorded run (tuning and final), one row each",
        "- `summary.json`: the scores above as data",
        "",
    ]
    text = "\n".join(head + sections + tail)
    atomic_write_text(folder / "index.md", text)
    atomic_write_text(folder / "runs.csv", runs_table(sweeps))
    atomic_write_text(folder / "summary.json", json.dumps(summary, indent=2) + "\n")


def write_report(
    sweeps: Sequence[SweepResult],
    out: str | os.PathLike[str],
    *,
    measure: Measure = "steps",
    storage: str | None = None,
    command: str | None = None,
) -> Path:
    """Write the report of ``sweeps`` to the folder ``out`` (replacing a previous report
    there as a whole); returns the path of ``index.md``.

    Parameters
    ----------
    sweeps:
        Results of :func:`optiwise.bench.run_sweep` / :func:`optiwise.bench.load_sweep`.
    measure:
        ``"steps"`` or ``"time"``: what "time to target" means in the ratios and profile.
    storage, command:
        Shown in the report's header when given.
    """
    if not sweeps:
        raise ValueError("no sweeps to report; run optiwise bench first")
    if measure not in ("steps", "time"):
        raise ValueError(f"Invalid measure: {measure!r} (use 'steps' or 'time')")
    target = check_out_dir(out)
    with atomic_dir(target) as tmp:
        _build(sweeps, tmp, measure, storage, command)
    return target / "index.md"
