"""The optimizers every conformance check runs on.

Each :class:`Case` builds an optimizer as ``case.make(params, **overrides)``; add one per
optimizer (and per distinct code path, e.g. a variant with weight decay).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim import Optimizer

from optiwise.optim import AdamW8bit, Lion8bit, Lookahead
from tests.optim.demo_optimizer import DemoMomentum


@dataclass(frozen=True)
class Case:
    """One optimizer configuration for the conformance checks.

    Attributes
    ----------
    name: test id.
    make: ``make(params, **overrides) -> Optimizer``.
    foreach: the optimizer has ``foreach`` True/False paths to compare.
    maximize: the optimizer accepts ``maximize``.
    strict_load: ``load_state_dict`` validates shapes and origin (optiwise's own).
    bad_lr: keyword arguments that must raise ``Invalid learning rate``.
    rtol: tolerance between the foreach and per-tensor paths.
    """

    name: str
    make: Callable[..., Optimizer]
    foreach: bool = True
    maximize: bool = True
    strict_load: bool = True
    bad_lr: dict[str, Any] = field(default_factory=lambda: {"lr": -1.0})
    rtol: float = 1e-6


CASES: list[Case] = [
    # torch's own AdamW keeps the harness honest about what torch's conventions are.
    Case(
        "torch_adamw",
        lambda params, **kw: torch.optim.AdamW(params, **{"lr": 1e-2, **kw}),
        strict_load=False,
    ),
    Case("demo_momentum", lambda params, **kw: DemoMomentum(params, **{"lr": 1e-2, **kw})),
]

# optiwise's own optimizers ------------------------------------------------------------------

# Lion, LAMB, LARS

# SophiaG, schedule-free AdamW

# 8-bit AdamW and Lion, Lookahead


def _lookahead(inner: Callable[..., Optimizer]) -> Callable[..., Optimizer]:
    """Lookahead (k=3, alpha=0.5) around ``inner(params, **kw)``; ``foreach`` goes to both."""

    def make(params: Any, **kw: Any) -> Optimizer:
        return Lookahead(inner(params, **kw), k=3, alpha=0.5, foreach=kw.get("foreach"))

    return make


# The conformance model's tensors have < 4096 elements: the default threshold exercises the
# fp32-state path, min_8bit_numel=0 with 64-element blocks the 8-bit path (full and partial
# blocks, tensors smaller than one block).
_Q = {"min_8bit_numel": 0, "block_size": 64}

CASES += [
    Case("adamw8bit_fp32_state", lambda ps, **kw: AdamW8bit(ps, **{"lr": 1e-2, **kw})),
    Case("adamw8bit_8bit_state", lambda ps, **kw: AdamW8bit(ps, **{"lr": 1e-2, **_Q, **kw})),
    Case(
        "adamw8bit_8bit_state_wd",
        lambda ps, **kw: AdamW8bit(ps, **{"lr": 1e-2, "weight_decay": 0.1, **_Q, **kw}),
    ),
    Case("lion8bit_fp32_state", lambda ps, **kw: Lion8bit(ps, **{"lr": 1e-3, **kw})),
    Case("lion8bit_8bit_state", lambda ps, **kw: Lion8bit(ps, **{"lr": 1e-3, **_Q, **kw})),
    Case(
        "lookahead_torch_adamw",
        _lookahead(lambda ps, **kw: torch.optim.AdamW(ps, **{"lr": 1e-2, **kw})),
    ),
    Case(
        "lookahead_adamw8bit",
        _lookahead(lambda ps, **kw: AdamW8bit(ps, **{"lr": 1e-2, **_Q, **kw})),
    ),
]
