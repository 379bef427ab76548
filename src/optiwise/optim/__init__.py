"""Optimizers torch.optim lacks, and the registry over them and torch's own."""

from optiwise.optim.lookahead import Lookahead
from optiwise.optim.memory import StateBytes, state_bytes
from optiwise.optim.quantized import AdamW8bit, Lion8bit
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
    "AdamW8bit",
    "Lion8bit",
    "Lookahead",
    "OptimizerSpec",
    "RegistryEntry",
    "StateBytes",
    "canonical_name",
    "create_optimizer",
    "get_spec",
    "list_optimizers",
    "register_optimizer",
    "resolve_optimizer",
    "state_bytes",
]
