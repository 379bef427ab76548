"""The optimizers every conformance check runs on: optiwise's adaptation of torch's
OptimizerInfo table (torch/testing/_internal/common_optimizers.py), whose invariants
tests/optim/test_conformance.py checks.

Each :class:`Case` builds an optimizer as ``case.make(params, **overrides)``; add one per
optimizer (and per distinct code path, e.g. a variant with weight decay) and name the
registry entries it covers in ``registered``: every name of
:func:`optiwise.optim.list_optimizers` must be covered (test_every_registered_optimizer_has_a_case).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from optiwise.optim import (
    LAMB,
    LARS,
    AdamW8bit,
    Lion,
    Lion8bit,
    Lookahead,
    ScheduleFreeAdamW,
    SophiaG,
    _native,
)
from optiwise.optim.multi import MultiOptimizer
from optiwise.optim.muon import MuonAdamW
from optiwise.optim.prodigy import Prodigy
from optiwise.optim.soap import SOAP
from optiwise.optim.sparse import SparseAdamAdamW
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
    separate_groups: param groups step as separate optimizers would (not so when an
        estimate is shared across groups, as Prodigy's).
    complex: complex parameters step as their ``torch.view_as_real`` views would (True),
        are refused with a ValueError naming them (False), or the check does not apply
        (None: the optimizer routes tensors by shape, which the real view changes, or it
        is torch's own and refuses them with torch's error).
    registered: the registry names (:func:`optiwise.optim.list_optimizers`) this case
        covers.
    dense: the optimizer steps on dense gradients (SparseAdam takes sparse ones only: the
        checks on dense gradients skip, test_sparse_only_optimizer covers it).
    groups: the optimizer takes several param groups (LBFGS takes one).
    own: optiwise's own optimizer or wrapper (torch's own keep torch's conventions: they
        add ``differentiable`` to ``defaults`` when copied, may accept sparse gradients).
    sparse_ok: the optimizer steps on sparse gradients too (torch's SGD, Adagrad).
    needs_closure: ``step()`` needs a closure (LBFGS, which calls it several times).
    lazy_state: state appears on a parameter's first step (torch's Adagrad makes it in
        ``__init__``).
    lr_message: the start of the error for a bad LR.
    fills_older_keys: loading a state dict without ``maximize``/``foreach`` fills them
        (torch 2.13's Adafactor does not).
    hooks_once: step hooks run once per step (not so for a test subclass whose ``step``
        calls its base's: torch wraps every class's ``step`` with the hooks).
    """

    name: str
    make: Callable[..., Optimizer]
    foreach: bool = True
    maximize: bool = True
    strict_load: bool = True
    bad_lr: dict[str, Any] = field(default_factory=lambda: {"lr": -1.0})
    rtol: float = 1e-6
    separate_groups: bool = True
    complex: bool | None = True
    registered: tuple[str, ...] = ()
    dense: bool = True
    groups: bool = True
    own: bool = True
    sparse_ok: bool = False
    needs_closure: bool = False
    lazy_state: bool = True
    lr_message: str = "Invalid learning rate"
    fills_older_keys: bool = True
    hooks_once: bool = True


CASES: list[Case] = [
    # torch's own AdamW keeps the harness honest about what torch's conventions are.
    Case(
        "torch_adamw",
        lambda params, **kw: torch.optim.AdamW(params, **{"lr": 1e-2, **kw}),
        strict_load=False,
        registered=("adamw",),
    ),
    Case("demo_momentum", lambda params, **kw: DemoMomentum(params, **{"lr": 1e-2, **kw})),
]

# optiwise's own optimizers ------------------------------------------------------------------

# Lion, LAMB, LARS
CASES += [
    Case(
        "lion",
        lambda params, **kw: Lion(params, **{"lr": 1e-3, "weight_decay": 0.1, **kw}),
        registered=("lion",),
    ),
    Case(
        "lamb",
        lambda params, **kw: LAMB(params, **{"lr": 1e-2, "weight_decay": 0.01, **kw}),
        registered=("lamb",),
    ),
    Case(
        "lamb_v3_clamped",
        lambda params, **kw: LAMB(
            params,
            **{
                "lr": 1e-2,
                "weight_decay": 0.01,
                "bias_correction": False,
                "max_weight_norm": 1.0,
                "max_trust_ratio": 0.5,
                **kw,
            },
        ),
    ),
    Case(
        "lamb_exclude_no_decay",
        lambda params, **kw: LAMB(params, **{"lr": 1e-2, "exclude_no_decay": True, **kw}),
    ),
    Case(
        "lars",
        lambda params, **kw: LARS(
            params, **{"lr": 1.0, "weight_decay": 1e-4, "trust_coefficient": 0.02, **kw}
        ),
        registered=("lars",),
    ),
    Case(
        "lars_nesterov",
        lambda params, **kw: LARS(
            params,
            **{"lr": 1.0, "weight_decay": 1e-4, "trust_coefficient": 0.02, "nesterov": True, **kw},
        ),
    ),
    # weight_decay 0: every group is excluded from the adaptation (plain momentum SGD)
    Case("lars_excluded", lambda params, **kw: LARS(params, **{"lr": 0.1, **kw})),
]

# SophiaG, schedule-free AdamW


class SophiaGRefreshing(SophiaG):
    """SophiaG that refreshes its Hessian EMA from ``.grad`` (``update_hessian(batch_size=B)``)
    before every ``every``-th step (the 1st, the ``every + 1``-th, ...), so that checks
    driving only ``step()`` cover the Hessian path."""

    def __init__(self, params: Any, *, every: int = 3, batch_size: int = 32, **kw: Any) -> None:
        super().__init__(params, **kw)
        self.every, self.batch_size = every, batch_size

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "every": self.every, "batch_size": self.batch_size}

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._run_closure(closure)
        with_grad = [p for g in self.param_groups for p in g["params"] if p.grad is not None]
        state = self.state.get(with_grad[0]) if with_grad else None
        if (state["step"] if state else 0) % self.every == 0:
            self.update_hessian(batch_size=self.batch_size)
        super().step()
        return loss


CASES += [
    Case(
        "sophiag",
        lambda params, **kw: SophiaG(params, **{"lr": 1e-2, **kw}),
        registered=("sophiag",),
    ),
    Case(
        "sophiag_hessian",
        lambda params, **kw: SophiaGRefreshing(
            params, **{"lr": 1e-2, "rho": 0.05, "weight_decay": 0.01, **kw}
        ),
        hooks_once=False,
    ),
    Case(
        "schedule_free_adamw",
        lambda params, **kw: ScheduleFreeAdamW(params, **{"lr": 1e-2, "warmup_steps": 5, **kw}),
        registered=("schedule_free_adamw",),
    ),
    Case(
        "schedule_free_adamw_paper",
        lambda params, **kw: ScheduleFreeAdamW(
            params,
            **{"lr": 1e-2, "bias_correction": "lr", "r": 1.0, "weight_decay": 0.0, **kw},
        ),
    ),
]

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
    Case(
        "adamw8bit_fp32_state",
        lambda ps, **kw: AdamW8bit(ps, **{"lr": 1e-2, **kw}),
        complex=False,
        registered=("adamw8bit",),
    ),
    Case(
        "adamw8bit_8bit_state",
        lambda ps, **kw: AdamW8bit(ps, **{"lr": 1e-2, **_Q, **kw}),
        complex=False,
    ),
    Case(
        "adamw8bit_8bit_state_wd",
        lambda ps, **kw: AdamW8bit(ps, **{"lr": 1e-2, "weight_decay": 0.1, **_Q, **kw}),
        complex=False,
    ),
    Case(
        "lion8bit_fp32_state",
        lambda ps, **kw: Lion8bit(ps, **{"lr": 1e-3, **kw}),
        complex=False,
        registered=("lion8bit",),
    ),
    Case(
        "lion8bit_8bit_state",
        lambda ps, **kw: Lion8bit(ps, **{"lr": 1e-3, **_Q, **kw}),
        complex=False,
    ),
    Case(
        "lookahead_torch_adamw",
        _lookahead(lambda ps, **kw: torch.optim.AdamW(ps, **{"lr": 1e-2, **kw})),
    ),
    Case(
        "lookahead_adamw8bit",
        _lookahead(lambda ps, **kw: AdamW8bit(ps, **{"lr": 1e-2, **_Q, **kw})),
        complex=False,
    ),
]

# The fused 8-bit step (a C++ kernel compiled on first use, where a C++ compiler is found):
# fused=True, since fused=None leaves a model this small to the per-tensor path; no foreach
# comparison, as fused and foreach exclude each other.
if _native._compiler() is not None:
    _F = {"fused": True}
    CASES += [
        Case(
            "adamw8bit_fused_8bit_state",
            lambda ps, **kw: AdamW8bit(ps, **{"lr": 1e-2, "weight_decay": 0.1, **_Q, **_F, **kw}),
            foreach=False,
            complex=False,
        ),
        Case(
            "adamw8bit_fused_fp32_state",
            lambda ps, **kw: AdamW8bit(ps, **{"lr": 1e-2, **_F, **kw}),
            foreach=False,
            complex=False,
        ),
        Case(
            "lion8bit_fused_8bit_state",
            lambda ps, **kw: Lion8bit(ps, **{"lr": 1e-3, "weight_decay": 0.1, **_Q, **_F, **kw}),
            foreach=False,
            complex=False,
        ),
        Case(
            "lion8bit_fused_fp32_state",
            lambda ps, **kw: Lion8bit(ps, **{"lr": 1e-3, **_F, **kw}),
            foreach=False,
            complex=False,
        ),
    ]

# MultiOptimizer: Lion on the 2-D weights, AdamW on the rest, each group split by ndim


def _split_by_ndim(
    matrices: Callable[..., Optimizer], rest: Callable[..., Optimizer], name: str
) -> Callable[..., Optimizer]:
    """``MultiOptimizer({name: matrices(2-D groups), "adamw": rest(other groups)})``, each
    param group split by ``ndim`` (for optimizers of 2-D parameters only, on a model with
    biases)."""

    def make(params: Any, **kw: Any) -> Optimizer:
        mats, others = _ndim_groups(params)
        children: dict[str, Optimizer] = {}
        if mats:
            children[name] = matrices(mats, **kw)
        if others:
            children["adamw"] = rest(others, **kw)
        return MultiOptimizer(children)

    return make


def _ndim_groups(params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    items = list(params)
    groups = items if isinstance(items[0], dict) else [{"params": items}]
    mats: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for group in groups:
        ps = list(group["params"])
        extra = {k: v for k, v in group.items() if k != "params"}
        for bucket, chosen in (
            (mats, [p for p in ps if p.ndim == 2]),
            (rest, [p for p in ps if p.ndim != 2]),
        ):
            if chosen:
                bucket.append({**extra, "params": chosen})
    return mats, rest


def _adamw(ps: Any, **kw: Any) -> Optimizer:
    return torch.optim.AdamW(ps, **{"lr": 1e-2, **kw})


CASES += [
    Case(
        "multi_lion_adamw",
        _split_by_ndim(
            lambda ps, **kw: Lion(ps, **{"lr": 1e-3, "weight_decay": 0.1, **kw}), _adamw, "lion"
        ),
        complex=None,
    ),
    # torch's Muon takes 2-D parameters only; it has no maximize and no foreach=False path
    Case(
        "muon_2d_adamw",
        _split_by_ndim(lambda ps, **kw: torch.optim.Muon(ps, **{"lr": 1e-2, **kw}), _adamw, "muon"),
        maximize=False,
        foreach=False,
        strict_load=False,
        complex=None,
        registered=("muon_2d",),
        lr_message="Learning rate should be >= 0",
    ),
]

# Muon + AdamW: torch's own children do not validate loaded shapes; torch's Muon has no
# maximize
CASES += [
    Case(
        "muon_adamw",
        lambda ps, **kw: MuonAdamW(ps, **{"lr": 1e-2, **kw}),
        maximize=False,
        strict_load=False,
        complex=None,
        registered=("muon",),
    )
]

# SparseAdam on sparse tables + AdamW on the rest: the battery's model has no sparse table,
# so every tensor goes to the AdamW child (tests/optim/test_sparse*.py covers the split)
CASES += [
    Case(
        "sparse_adam_adamw",
        lambda ps, **kw: SparseAdamAdamW(ps, **{"lr": 1e-2, "model": nn.Module(), **kw}),
        maximize=False,
        foreach=False,
        strict_load=False,
        complex=None,
        registered=("sparse_adam_adamw",),
    )
]

# Prodigy: one code path (its estimate sums over every tensor)
CASES += [
    Case(
        "prodigy",
        lambda ps, **kw: Prodigy(ps, **kw),
        foreach=False,
        separate_groups=False,
        registered=("prodigy",),
    ),
    Case(
        "prodigy_wd_bias_correction",
        lambda ps, **kw: Prodigy(ps, **{"weight_decay": 0.01, "use_bias_correction": True, **kw}),
        foreach=False,
        separate_groups=False,
    ),
]

# SOAP: one code path (matrix work per tensor); frequent refreshes cover the QR path
CASES += [
    Case(
        "soap",
        lambda ps, **kw: SOAP(ps, **{"lr": 1e-2, "precondition_frequency": 3, **kw}),
        foreach=False,
        complex=False,
        registered=("soap",),
    )
]

# torch.optim's own optimizers (every registered name has a case): the checks they do not
# meet by torch's design are switched off below, each with its reason


def _torch(cls: Callable[..., Optimizer], lr: float, **fixed: Any) -> Callable[..., Optimizer]:
    def make(params: Any, **kw: Any) -> Optimizer:
        return cls(params, **{"lr": lr, **fixed, **kw})

    return make


_TORCH: dict[str, Any] = {"strict_load": False, "own": False}
_SPARSE_OK: dict[str, Any] = {**_TORCH, "sparse_ok": True}
CASES += [
    Case("sgd_nesterov", _torch(torch.optim.SGD, 1e-1, momentum=0.9, nesterov=True),
         registered=("sgd",), **_SPARSE_OK),
    Case("sgd_momentum", _torch(torch.optim.SGD, 1e-1, momentum=0.9),
         registered=("sgd_momentum",), **_SPARSE_OK),
    Case("sgd_plain", _torch(torch.optim.SGD, 1e-1), registered=("sgd_plain",), **_SPARSE_OK),
    Case("adam", _torch(torch.optim.Adam, 1e-2), registered=("adam",), **_TORCH),
    Case("nadam", _torch(torch.optim.NAdam, 1e-2), registered=("nadam",), **_TORCH),
    Case("radam", _torch(torch.optim.RAdam, 1e-2), registered=("radam",), **_TORCH),
    Case("adamax", _torch(torch.optim.Adamax, 1e-2), registered=("adamax",), **_TORCH),
    Case("rmsprop", _torch(torch.optim.RMSprop, 1e-3), registered=("rmsprop",), **_TORCH),
    Case("adagrad", _torch(torch.optim.Adagrad, 1e-1), registered=("adagrad",),
         lazy_state=False, **_SPARSE_OK),
    Case("adafactor", _torch(torch.optim.Adafactor, 1e-2), registered=("adafactor",),
         lr_message="Learning rate should be >= 0", fills_older_keys=False,
         complex=None, **_TORCH),  # torch raises RuntimeError for complex parameters
    Case("adadelta", _torch(torch.optim.Adadelta, 1.0), registered=("adadelta",), **_TORCH),
    Case("asgd", _torch(torch.optim.ASGD, 1e-1), registered=("asgd",), **_TORCH),
    Case("rprop", _torch(torch.optim.Rprop, 1e-3), registered=("rprop",), **_TORCH),
    Case("lbfgs", _torch(torch.optim.LBFGS, 1.0, max_iter=2, line_search_fn="strong_wolfe"),
         registered=("lbfgs",), foreach=False, maximize=False, groups=False,
         needs_closure=True, sparse_ok=True, **_TORCH),
    Case("sparse_adam", _torch(torch.optim.SparseAdam, 1e-2), registered=("sparse_adam",),
         dense=False, foreach=False, **_TORCH),
]  # fmt: skip
