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
        (None: the optimizer routes tensors by shape, which the real view changes).
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
CASES += [
    Case("lion", lambda params, **kw: Lion(params, **{"lr": 1e-3, "weight_decay": 0.1, **kw})),
    Case("lamb", lambda params, **kw: LAMB(params, **{"lr": 1e-2, "weight_decay": 0.01, **kw})),
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
    Case("sophiag", lambda params, **kw: SophiaG(params, **{"lr": 1e-2, **kw})),
    Case(
        "sophiag_hessian",
        lambda params, **kw: SophiaGRefreshing(
            params, **{"lr": 1e-2, "rho": 0.05, "weight_decay": 0.01, **kw}
        ),
    ),
    Case(
        "schedule_free_adamw",
        lambda params, **kw: ScheduleFreeAdamW(params, **{"lr": 1e-2, "warmup_steps": 5, **kw}),
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
    Case("lion8bit_fp32_state", lambda ps, **kw: Lion8bit(ps, **{"lr": 1e-3, **kw}), complex=False),
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


def _lion_and_adamw(params: Any, **kw: Any) -> Optimizer:
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
    children: dict[str, Optimizer] = {}
    if mats:
        children["lion"] = Lion(mats, **{"lr": 1e-3, "weight_decay": 0.1, **kw})
    if rest:
        children["adamw"] = torch.optim.AdamW(rest, **{"lr": 1e-2, **kw})
    return MultiOptimizer(children)


CASES += [Case("multi_lion_adamw", _lion_and_adamw, complex=None)]

# Muon + AdamW: torch's own children do not validate loaded shapes; torch's Muon has no
# maximize
CASES += [
    Case(
        "muon_adamw",
        lambda ps, **kw: MuonAdamW(ps, **{"lr": 1e-2, **kw}),
        maximize=False,
        strict_load=False,
        complex=None,
    )
]

# Prodigy: one code path (its estimate sums over every tensor)
CASES += [
    Case("prodigy", lambda ps, **kw: Prodigy(ps, **kw), foreach=False, separate_groups=False),
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
    )
]
