"""A recorded run as plain data, and its files: a long CSV, TensorBoard events, ``meta.json``.

A :class:`RunLog` is a set of scalar series (``tag -> (steps, values)``) plus ``meta``: what
the monitor knew about the run (optimizer, parameter names, parameters that never got a
gradient). The CSV has one row per value, ``step,tag,value``, appended and flushed as the run
goes, so a killed run leaves every row written so far; ``meta.json`` beside it is replaced
atomically. :func:`load_log` reads either form back.

Tags: ``loss``, ``lr/<group>``, ``grad_norm``, ``nonfinite_grads``, ``skipped``,
``amp_scale``, ``grad_missing``, ``grads_not_cleared``, ``grad_norm/<param>``,
``update_ratio/<param>`` and ``val/<metric>``.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optiwise._io import atomic_write_text

__all__ = ["CSV_NAME", "META_NAME", "RunLog", "load_log"]

#: File names inside a monitor's ``log_dir``.
CSV_NAME = "monitor.csv"
META_NAME = "meta.json"
_HEADER = ("step", "tag", "value")


@dataclass
class RunLog:
    """Scalar series of one run and what is known about it.

    Attributes
    ----------
    series:
        ``tag -> (steps, values)``, steps increasing.
    meta:
        Plain data about the run: ``optimizer`` (registry name or class name),
        ``param_names``, ``never_grad`` (parameters in the optimizer that never got a
        gradient), ``not_in_optimizer`` (trainable parameters the optimizer does not hold),
        ``clip_norm``, ``batch_size``, ``every``, ``detail_every``.
    """

    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, tag: str, step: int, value: float) -> None:
        """Append one value."""
        steps, values = self.series.setdefault(tag, ([], []))
        steps.append(int(step))
        values.append(float(value))

    def get(self, tag: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of ``tag`` as arrays (empty when the tag is absent)."""
        steps, values = self.series.get(tag, ([], []))
        return np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=np.float64)

    def tags(self, prefix: str = "") -> list[str]:
        """Tags starting with ``prefix``, sorted."""
        return sorted(t for t in self.series if t.startswith(prefix))

    def per_param(self, kind: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``param name -> (steps, values)`` of ``kind/<param>`` tags (``grad_norm``,
        ``update_ratio``), in the run's parameter order where it is known."""
        prefix = kind + "/"
        names = [t[len(prefix) :] for t in self.tags(prefix)]
        order = {n: i for i, n in enumerate(self.meta.get("param_names", []))}
        names.sort(key=lambda n: (order.get(n, len(order)), n))
        return {n: self.get(prefix + n) for n in names}

    @property
    def last_step(self) -> int:
        """The last step recorded (0 for an empty log)."""
        steps, _ = self.get("loss")
        return int(steps[-1]) if len(steps) else 0

    def rows(self) -> Iterator[tuple[int, str, float]]:
        """Every value as ``(step, tag, value)``, by tag then step."""
        for tag in self.tags():
            steps, values = self.series[tag]
            for s, v in zip(steps, values, strict=False):
                yield s, tag, v

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the whole log as a CSV (and ``meta.json`` beside it), atomically."""
        target = Path(path)
        lines = [",".join(_HEADER)]
        lines += [f"{s},{_quote(t)},{_fmt(v)}" for s, t, v in self.rows()]
        atomic_write_text(target, "\n".join(lines) + "\n")
        atomic_write_text(target.with_name(META_NAME), json.dumps(self.meta, indent=2) + "\n")
        return target


def _fmt(value: float) -> str:
    return repr(float(value))


def _quote(tag: str) -> str:
    return f'"{tag}"' if any(c in tag for c in ',"\n') else tag


def format_rows(rows: Iterable[tuple[int, str, float]]) -> str:
    """CSV text of ``rows`` (no header)."""
    return "".join(f"{s},{_quote(t)},{_fmt(v)}\n" for s, t, v in rows)


def csv_header() -> str:
    """The CSV's header line."""
    return ",".join(_HEADER) + "\n"


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / META_NAME
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); delete it or rewrite it") from None
    return meta if isinstance(meta, dict) else {}


def _read_csv(path: Path) -> RunLog:
    log = RunLog(meta=_read_meta(path.parent))
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != _HEADER:
            raise ValueError(
                f"{path} is not a monitor CSV: its header is {header!r}, expected "
                f"{','.join(_HEADER)!r} (written by optiwise.Monitor)"
            )
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != 3:  # a row cut short by a killed run: the ones before it count
                continue
            try:
                step, value = int(row[0]), float(row[2])
            except ValueError:
                raise ValueError(f"{path}:{n}: bad row {row!r} (expected step,tag,value)") from None
            log.add(row[1], step, value)
    _sort(log)
    return log


def _sort(log: RunLog) -> None:
    for tag, (steps, values) in list(log.series.items()):
        if any(b < a for a, b in itertools.pairwise(steps)):
            pairs = sorted(zip(steps, values, strict=False), key=lambda p: p[0])
            log.series[tag] = ([p[0] for p in pairs], [p[1] for p in pairs])


def _read_tensorboard(folder: Path) -> RunLog:
    try:
        from tensorboard.backend.event_processing.event_accumulator import (
            EventAccumulator,
        )
    except ImportError:
        raise ValueError(
            f"reading the TensorBoard folder {folder} needs tensorboard: pip install tensorboard "
            f"(or point at the run's {CSV_NAME})"
        ) from None
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    log = RunLog(meta=_read_meta(folder))
    for tag in acc.Tags().get("scalars", []):
        for event in acc.Scalars(tag):
            log.add(tag, event.step, event.value)
    _sort(log)
    return log


def load_log(path: str | os.PathLike[str]) -> RunLog:
    """Read a recorded run: a monitor CSV, a folder holding one, or a TensorBoard folder.

    ``meta.json`` in the same folder is read when present.
    """
    p = Path(path)
    if p.is_file():
        if p.suffix.lower() != ".csv":
            raise ValueError(
                f"{p} is not a CSV; pass the monitor's {CSV_NAME} or its TensorBoard folder"
            )
        return _read_csv(p)
    if p.is_dir():
        if (p / CSV_NAME).is_file():
            return _read_csv(p / CSV_NAME)
        if any(p.glob("events.out.tfevents.*")):
            return _read_tensorboard(p)
        raise ValueError(
            f"{p} holds neither {CSV_NAME} nor TensorBoard event files (events.out.tfevents.*)"
        )
    raise ValueError(f"{p} does not exist; pass a monitor CSV or a TensorBoard folder")


def finite(values: np.ndarray) -> np.ndarray:
    """The finite entries of ``values``."""
    return values[np.isfinite(values)]


def is_finite(value: float) -> bool:
    """Whether ``value`` is a finite float."""
    return math.isfinite(value)
