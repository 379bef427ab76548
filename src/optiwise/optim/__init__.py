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

__all__ = [
    "LAMB",
    "LARS",
    "Lion",
    "OptimizerSpec",
    "RegistryEntry",
    "canonical_name",
    "create_optimizer",
    "get_spec",
    "list_optimizers",
    "register_optimizer",
    "resolve_optimizer",
]
