"""optiwise: how your weights move — optimizers, schedules, parameter groups, and the
knowledge to choose them."""

from optiwise import knowledge
from optiwise._version import __version__
from optiwise.advisor import Recipe, inspect_model, recommend
from optiwise.audit import Finding, audit
from optiwise.checkpoint import load_checkpoint, save_checkpoint
from optiwise.lr_finder import LRFinderResult, find_lr
from optiwise.monitor import Monitor, diagnose
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
