"""Optimizers torch.optim lacks, and the registry over them and torch's own."""

from optiwise.optim.lamb import LAMB
from optiwise.optim.lars import LARS
from optiwise.optim.lion import Lion
from optiwise.optim.lookahead import Lookahead
from optiwise.optim.memory import StateBytes, state_bytes
from optiwise.optim.multi import MultiOptimizer
from optiwise.optim.muon import MuonAdamW
from optiwise.optim.prodigy import Prodigy
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
from optiwise.optim.schedule_free import ScheduleFreeAdamW
from optiwise.optim.soap import SOAP
from optiwise.optim.sophia import SophiaG, gnb_hessian, gnb_loss, hutchinson_hessian
from optiwise.optim.sparse import SparseAdamAdamW

__all__ = [
    "LAMB",
    "LARS",
    "SOAP",
    "AdamW8bit",
    "Lion",
    "Lion8bit",
    "Lookahead",
    "MultiOptimizer",
    "MuonAdamW",
    "OptimizerSpec",
    "Prodigy",
    "RegistryEntry",
    "ScheduleFreeAdamW",
    "SophiaG",
    "SparseAdamAdamW",
    "StateBytes",
    "canonical_name",
    "create_optimizer",
    "get_spec",
    "gnb_hessian",
    "gnb_loss",
    "hutchinson_hessian",
    "list_optimizers",
    "register_optimizer",
    "resolve_optimizer",
    "state_bytes",
]
