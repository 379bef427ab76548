"""Optimizers torch.optim lacks, and the registry over them and torch's own."""

from optiwise.optim.lamb import LAMB
from optiwise.optim.lars import LARS
from optiwise.optim.lion import Lion
from optiwise.optim.registry import (
    OptimizerSpec,
    RegistryEntry,
    canonical_name,
    create_optimizer,
    get_spec,
    list_optimizers,
    register_optimizer,
    resolve_optimizer,
)
from optiwise.optim.schedule_free import ScheduleFreeAdamW
from optiwise.optim.sophia import SophiaG, gnb_hessian, gnb_loss, hutchinson_hessian

__all__ = [
    "LAMB",
    "LARS",
    "Lion",
    "OptimizerSpec",
    "RegistryEntry",
    "ScheduleFreeAdamW",
    "SophiaG",
    "canonical_name",
    "create_optimizer",
    "get_spec",
    "gnb_hessian",
    "gnb_loss",
    "hutchinson_hessian",
    "list_optimizers",
    "register_optimizer",
    "resolve_optimizer",
]
