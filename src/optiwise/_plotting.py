"""Matplotlib helpers: headless figures saved atomically as PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from optiwise._io import atomic_path

__all__ = ["new_figure", "save_figure"]


def new_figure(width: float = 7.0, height: float = 4.0) -> tuple[Any, Any]:
    """A (figure, axes) pair on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    return fig, ax


def save_figure(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``path`` as PNG, atomically; returns the path."""
    target = Path(path)
    if target.suffix.lower() != ".png":
        raise ValueError(f"plot path {str(target)!r} must end in .png")
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png")
    return target


def new_grid(rows: int, cols: int, width: float, height: float) -> tuple[Any, list[Any]]:
    """A (figure, axes) pair with a ``rows`` x ``cols`` grid of axes (row by row) on the
    non-interactive Agg backend; ``width`` and ``height`` are the whole figure's, in inches."""
    fig, _ = new_figure(width, height)
    fig.clear()
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(rows * cols)]
    return fig, axes
