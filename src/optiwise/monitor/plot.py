"""The plot page of a recorded run: one PNG with loss, LR, gradient norms, update ratios,
per-parameter gradient norms and the numerics (non-finite gradients, fp16 loss scale)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from optiwise._plotting import new_grid, save_figure
from optiwise.monitor.log import RunLog

__all__ = ["plot_log"]

_MAX_LINES = 8  # per-parameter panels draw at most this many parameters, the largest first


def _pick(log: RunLog, kind: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    series = log.per_param(kind)
    if len(series) <= _MAX_LINES:
        return series
    numel = dict(
        zip(log.meta.get("param_names", []), log.meta.get("param_numel", []), strict=False)
    )
    keep = sorted(series, key=lambda n: -numel.get(n, 0))[:_MAX_LINES]
    return {n: series[n] for n in series if n in keep}


def _positive(values: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(values) & (values > 0), values, np.nan)


def plot_log(log: RunLog, path: str | os.PathLike[str]) -> Path:
    """Write the plot page of ``log`` to ``path`` (a .png); returns the path."""
    if not log.series:
        raise ValueError("the log is empty: record some steps before plotting")
    fig, axes = new_grid(2, 3, 15.0, 8.0)
    ax = axes[0]
    steps, loss = log.get("loss")
    ax.plot(steps, loss, lw=0.8, label="train loss")
    for tag in log.tags("val/"):
        s, v = log.get(tag)
        ax.plot(s, v, "o-", ms=3, label=tag)
    ax.set_title("loss")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)

    ax = axes[1]
    for tag in log.tags("lr/"):
        s, v = log.get(tag)
        ax.plot(s, v, label=f"group {tag[3:]}")
    ax.set_title("learning rate")
    ax.set_xlabel("step")
    if log.tags("lr/"):
        ax.legend(fontsize=7)

    ax = axes[2]
    s, v = log.get("grad_norm")
    ax.plot(s, _positive(v), lw=0.8)
    ax.set_yscale("log")
    ax.set_title("global gradient norm")
    ax.set_xlabel("step")

    for ax, kind, title in (
        (axes[3], "update_ratio", "update / parameter norm"),
        (axes[4], "grad_norm", "gradient norm per parameter"),
    ):
        series = _pick(log, kind)
        for name, (s, v) in series.items():
            ax.plot(s, _positive(v), lw=0.8, label=name)
        if series:
            ax.set_yscale("log")
            ax.legend(fontsize=6)
        ax.set_title(title)
        ax.set_xlabel("step")

    ax = axes[5]
    s, v = log.get("nonfinite_grads")
    ax.plot(s, v, lw=0.8, label="params with non-finite grad")
    s, v = log.get("skipped")
    ax.plot(s, np.cumsum(v) if len(v) else v, lw=0.8, label="skipped steps (total)")
    ax.set_title("numerics")
    ax.set_xlabel("step")
    s, v = log.get("amp_scale")
    if len(v):
        twin = ax.twinx()
        twin.plot(s, _positive(v), color="tab:red", lw=0.8, label="fp16 loss scale")
        twin.set_yscale("log")
        twin.legend(fontsize=7, loc="upper right")
    ax.legend(fontsize=7, loc="upper left")
    return save_figure(fig, path)
