"""The benchmark's real workloads as data sources of the LR range test.

Importing :mod:`optiwise.bench` registers every workload with real data under its name
(:func:`optiwise.lr_finder.register_data_source`), so ``optiwise find-lr --data fmnist-cnn``
runs the range test on that workload's batches and loss, with its model or yours.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from optiwise.bench.workloads import WORKLOADS, Workload, get_workload
from optiwise.lr_finder import DataSource, register_data_source

__all__ = ["workload_source"]

#: Validation examples per batch when scoring confirmation runs (evaluation only).
_VAL_CHUNK = 500


def _count(label: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        more = " or None" if allow_none else ""
        raise ValueError(f"Invalid {label}: {value!r} (must be a positive int{more})")


def _check_model_fits(model: nn.Module, work: Workload, batch: Any, criterion: Any) -> None:
    """One forward pass in eval mode (no statistics change), so a model that does not take
    the workload's batches fails with a clear error before the range test starts."""
    modes = [(m, m.training) for m in model.modules()]
    x, y = batch
    try:
        model.eval()
        with torch.no_grad():
            criterion(model(x), y)
    except Exception as exc:
        raise ValueError(
            f"the model does not fit {work.name}'s batches (inputs {tuple(x.shape)} "
            f"{x.dtype}, targets {tuple(y.shape)} {y.dtype}): {type(exc).__name__}: {exc}"
        ) from None
    finally:
        for m, mode in modes:
            m.training = mode


def workload_source(
    workload: str | Workload,
    model: nn.Module | None = None,
    *,
    seed: int = 0,
    batches: int = 100,
    val_limit: int | None = 1000,
    limit: int | None = None,
) -> DataSource:
    """A benchmark workload's data and loss as an LR range test :class:`DataSource`.

    Parameters
    ----------
    workload:
        A workload with real data (name or :class:`Workload`; not a toy).
    model:
        The model to test; ``None`` uses the workload's own model, initialized from
        ``seed`` (returned in ``DataSource.model``).
    seed:
        Seeds the batch order (and the workload's model).
    batches:
        Training batches taken from the workload's seeded stream, in order; the range
        test cycles them when it needs more.
    val_limit:
        Validation examples (sequences for the text workloads) to score the confirmation
        runs on; ``None`` for the whole validation split.
    limit:
        Training examples to draw from (as :meth:`Workload.build`); ``None`` for all.

    Notes
    -----
    The global torch RNG is left as it was.
    """
    work = get_workload(workload) if isinstance(workload, str) else workload
    if work.toy is not None or not work.data:
        raise ValueError(
            f"workload {work.name!r} has no data set (a toy function); use one of "
            f"{', '.join(n for n, w in WORKLOADS.items() if w.data)}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"Invalid seed: {seed!r} (must be an int)")
    _count("batches", batches)
    _count("val_limit", val_limit, allow_none=True)
    with torch.random.fork_rng(devices=[]):
        problem = work.build(seed, limit)
        train = [problem.next_batch() for _ in range(batches)]
    assert problem.criterion is not None and problem.val_data is not None
    x_val, y_val = (t[:val_limit] for t in problem.val_data)
    val = [
        (x_val[i : i + _VAL_CHUNK], y_val[i : i + _VAL_CHUNK])
        for i in range(0, len(y_val), _VAL_CHUNK)
    ]
    if model is None:
        model = problem.model
    else:
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        _check_model_fits(model, work, train[0], problem.criterion)
    return DataSource(
        train,
        val,
        problem.criterion,
        f"{work.name}: {work.description}; {batches} batches of {work.batch_size} from "
        f"{problem.data_source}; {len(y_val)} validation examples",
        model=model,
        task=work.task,
    )


def _register() -> None:
    for name, work in WORKLOADS.items():
        if work.data:
            register_data_source(name, functools.partial(workload_source, name))


_register()
