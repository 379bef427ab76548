"""How much memory an optimizer's state actually takes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from torch import Tensor
from torch.optim import Optimizer

__all__ = ["StateBytes", "state_bytes"]


@dataclass(frozen=True)
class StateBytes:
    """Bytes of optimizer state, in total and per parameter tensor.

    Attributes
    ----------
    total:
        Bytes of every tensor in the optimizer's state (and in wrapped optimizers' state).
    per_param:
        Bytes of state per parameter tensor, in the order of
        ``[p for g in optimizer.param_groups for p in g["params"]]``.
    numels:
        Elements of each of those parameters.
    """

    total: int
    per_param: tuple[int, ...]
    numels: tuple[int, ...]

    @property
    def bytes_per_element(self) -> float:
        """``total`` divided by the number of parameter elements."""
        n = sum(self.numels)
        return self.total / n if n else 0.0

    def element_ratio(self, index: int) -> float:
        """Bytes of state per element of parameter ``index``."""
        return self.per_param[index] / self.numels[index] if self.numels[index] else 0.0


def _tensors(value: Any) -> Iterator[Tensor]:
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)


def _optimizers(optimizer: Optimizer) -> Iterator[Optimizer]:
    """``optimizer`` and the optimizers it wraps (``.optimizer``, as Lookahead has)."""
    seen: set[int] = set()
    current: Any = optimizer
    while isinstance(current, Optimizer) and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__dict__.get("optimizer")


def state_bytes(optimizer: Optimizer) -> StateBytes:
    """The actual bytes of ``optimizer``'s state.

    Counts every tensor in ``optimizer.state`` (nested dicts, lists and tuples included) as
    ``numel * element_size``, once even when it appears twice, and the state of wrapped
    optimizers (an ``optimizer`` attribute, as :class:`~optiwise.optim.Lookahead` and the
    published Lookahead implementations have). Python numbers (e.g. an int step counter) hold
    no tensor memory and count 0.

    Examples
    --------
    >>> import torch
    >>> p = torch.nn.Parameter(torch.zeros(1000))
    >>> opt = torch.optim.AdamW([p])
    >>> p.grad = torch.ones(1000); opt.step()
    >>> state_bytes(opt).bytes_per_element  # exp_avg, exp_avg_sq and a 4-byte step
    8.004
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    per_param = dict.fromkeys(map(id, params), 0)
    seen: set[tuple[int, int, Any]] = set()
    total = 0
    for opt in _optimizers(optimizer):
        for key, value in opt.state.items():
            for t in _tensors(value):
                ident = (t.data_ptr(), t.numel(), t.dtype)
                if t.numel() and ident in seen:
                    continue
                seen.add(ident)
                nbytes = t.numel() * t.element_size()
                total += nbytes
                if id(key) in per_param:
                    per_param[id(key)] += nbytes
    return StateBytes(
        total=total,
        per_param=tuple(per_param[id(p)] for p in params),
        numels=tuple(p.numel() for p in params),
    )
