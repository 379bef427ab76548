"""optiwise: how your weights move — optimizers, schedules, parameter groups, and the
knowledge to choose them."""

from optiwise import knowledge
from optiwise._version import __version__
from optiwise.lr_finder import LRFinderResult, find_lr
from optiwise.optim.registry import (
    OptimizerSpec,
    create_optimizer,
    get_spec,
    list_optimizers,
    resolve_optimizer,
)
from optiwise.params import param_groups
from optiwise.schedules import create_scheduler, lr_curve

__all__ = [
    "LRFinderResult",
    "OptimizerSpec",
    "__version__",
    "create_optimizer",
    "create_scheduler",
    "find_lr",
    "get_spec",
    "knowledge",
    "list_optimizers",
    "lr_curve",
    "param_groups",
    "resolve_optimizer",
]
