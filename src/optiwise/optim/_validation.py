"""Hyperparameter validation shared by the registry and optiwise's optimizers.

Messages follow torch's form (``Invalid learning rate: -1.0``) and add the valid range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

__all__ = [
    "check_positive",
    "check_power_of_two",
    "check_range",
    "validate_hparams",
]


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_unit(label: str, value: Any) -> None:
    if not _is_number(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"Invalid {label}: {value!r} (must be in [0, 1))")


def validate_hparams(hparams: Mapping[str, Any]) -> None:
    """Check the common hyperparameters, raising a ValueError naming the value and range.

    ``lr`` > 0 (a 0-dim tensor is allowed), ``betas`` two values in [0, 1), ``momentum``
    and ``alpha`` in [0, 1), ``weight_decay`` >= 0, ``eps`` >= 0.
    """
    if "lr" in hparams:
        lr = hparams["lr"]
        if isinstance(lr, torch.Tensor):
            if lr.numel() != 1:
                raise ValueError(
                    f"Invalid learning rate: a tensor LR must have one element, "
                    f"got shape {tuple(lr.shape)}"
                )
            lr = lr.item()
        if not _is_number(lr) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(
                f"Invalid learning rate: {hparams['lr']!r} (must be a finite number > 0)"
            )
    if "betas" in hparams:
        betas = hparams["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(
                f"Invalid betas: {betas!r} (must be a pair (beta1, beta2), each in [0, 1))"
            )
        for i, b in enumerate(betas):
            _check_unit(f"beta parameter at index {i}", b)
    for key in ("momentum", "alpha"):
        if key in hparams:
            _check_unit(key, hparams[key])
    if "weight_decay" in hparams:
        wd = hparams["weight_decay"]
        if not _is_number(wd) or not math.isfinite(wd) or wd < 0:
            raise ValueError(f"Invalid weight_decay value: {wd!r} (must be a finite number >= 0)")
    if "eps" in hparams:
        eps = hparams["eps"]
        values = eps if isinstance(eps, (tuple, list)) else (eps,)
        for e in values:
            if e is not None and (not _is_number(e) or not math.isfinite(e) or e < 0):
                raise ValueError(f"Invalid epsilon value: {eps!r} (must be >= 0)")


def check_positive(label: str, value: Any, *, allow_zero: bool = False) -> None:
    """Raise unless ``value`` is a finite number > 0 (>= 0 with ``allow_zero``)."""
    ok = _is_number(value) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"Invalid {label}: {value!r} (must be a finite number {bound})")


def check_range(
    label: str,
    value: Any,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = True,
) -> None:
    """Raise unless ``low <= value < high`` (bounds open or closed as given)."""
    ok = _is_number(value) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"Invalid {label}: {value!r} (must be in {interval})")


def check_power_of_two(label: str, value: Any) -> None:
    """Raise unless ``value`` is a positive power-of-two int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value & (value - 1):
        raise ValueError(f"Invalid {label}: {value!r} (must be a power of two, e.g. 256)")
