"""optiwise: how your weights move — optimizers, schedules, parameter groups, and the
knowledge to choose them.

The public names are imported on first use, so that ``optiwise lint`` (and anything else
that needs only the torch-free parts) starts without importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from optiwise import knowledge
from optiwise._version import __version__

if TYPE_CHECKING:
    from optiwise.advisor import Recipe, inspect_model, recommend
    from optiwise.audit import Finding, audit
    from optiwise.checkpoint import load_checkpoint, save_checkpoint
    from optiwise.lr_finder import LRFinderResult, find_lr
    from optiwise.monitor.diagnose import diagnose
    from optiwise.monitor.record import Monitor
    from optiwise.optim.memory import StateBytes, state_bytes
    from optiwise.optim.registry import (
        OptimizerSpec,
        create_optimizer,
        get_spec,
        list_optimizers,
        resolve_optimizer,
    )
    from optiwise.params import param_groups
    from optiwise.schedules import create_scheduler, lr_curve
    from optiwise.train import Stepper, StepResult
    from optiwise.tune import TuneResult, tune

_LAZY = {
    "Finding": "optiwise.audit",
    "LRFinderResult": "optiwise.lr_finder",
    "Monitor": "optiwise.monitor",
    "OptimizerSpec": "optiwise.optim.registry",
    "Recipe": "optiwise.advisor",
    "StateBytes": "optiwise.optim.memory",
    "StepResult": "optiwise.train",
    "Stepper": "optiwise.train",
    "TuneResult": "optiwise.tune",
    "audit": "optiwise.audit",
    "create_optimizer": "optiwise.optim.registry",
    "create_scheduler": "optiwise.schedules",
    "diagnose": "optiwise.monitor",
    "find_lr": "optiwise.lr_finder",
    "get_spec": "optiwise.optim.registry",
    "inspect_model": "optiwise.advisor",
    "list_optimizers": "optiwise.optim.registry",
    "load_checkpoint": "optiwise.checkpoint",
    "lr_curve": "optiwise.schedules",
    "param_groups": "optiwise.params",
    "recommend": "optiwise.advisor",
    "resolve_optimizer": "optiwise.optim.registry",
    "save_checkpoint": "optiwise.checkpoint",
    "state_bytes": "optiwise.optim.memory",
    "tune": "optiwise.tune",
}

__all__ = [
    "Finding",
    "LRFinderResult",
    "Monitor",
    "OptimizerSpec",
    "Recipe",
    "StateBytes",
    "StepResult",
    "Stepper",
    "TuneResult",
    "__version__",
    "audit",
    "create_optimizer",
    "create_scheduler",
    "diagnose",
    "find_lr",
    "get_spec",
    "inspect_model",
    "knowledge",
    "list_optimizers",
    "load_checkpoint",
    "lr_curve",
    "param_groups",
    "recommend",
    "resolve_optimizer",
    "save_checkpoint",
    "state_bytes",
    "tune",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'optiwise' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
