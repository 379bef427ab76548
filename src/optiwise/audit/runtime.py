"""The runtime audit: checks live optimizer, scheduler and model objects for the known
mistakes, against the facts in :mod:`optiwise.knowledge`.

:func:`audit` returns :class:`~optiwise.audit.findings.Finding` objects with the codes shared
with the script linter.  :func:`optimizer_from_expression` and
:func:`scheduler_from_expression` build the objects from call expressions such as
``"AdamW(lr=3e-4, weight_decay=0.01)"`` without evaluating code (literal arguments only).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim import lr_scheduler as tls

from optiwise import knowledge
from optiwise.advisor.inspect import FAMILIES, ModelProfile, family_task, inspect_model
from optiwise.audit.findings import Finding, Severity, make_finding
from optiwise.optim.registry import identify_optimizer
from optiwise.params import _owners, is_no_decay
from optiwise.train import has_train_eval_modes

__all__ = [
    "audit",
    "identify_optimizer",
    "optimizer_from_expression",
    "scheduler_from_expression",
    "warmup_of",
]

_TRANSFORMER_FAMILIES = (
    "language_transformer",
    "vision_transformer",
    "causal_lm",
    "translation",
    "causal_transformer",
    "seq2seq_transformer",
)
_COUPLED_ADAM = ("adam", "nadam", "radam", "adamax")
_SEVERITY_ORDER = {s: s.rank for s in Severity}


# --------------------------------------------------------------------------------------------
# What is this optimizer / schedule
# --------------------------------------------------------------------------------------------


def _knowledge_name(name: str) -> str:
    """Lookahead shares its inner optimizer's LR facts."""
    return name.removeprefix("lookahead_")


def warmup_of(scheduler: Any, optimizer: Optimizer | None = None) -> int | None:
    """Warmup steps of ``scheduler`` (0: none), or None when it cannot be told.

    Knows optiwise's schedules, LinearLR, ConstantLR, OneCycleLR, CyclicLR, LambdaLR,
    SequentialLR and ChainedScheduler; torch's decaying schedules have no warmup.  An
    optimizer with its own ``warmup_steps`` (schedule-free) counts too.
    """
    own = 0
    if optimizer is not None:
        own = int(optimizer.defaults.get("warmup_steps", 0) or 0)
    scheduled = _scheduler_warmup(scheduler)
    if scheduled is None:
        return own or None
    return max(own, scheduled)


def _scheduler_warmup(s: Any) -> int | None:
    if s is None:
        return 0
    ours = getattr(s, "warmup_steps", None)
    if isinstance(ours, int) and s.__class__.__module__ == "optiwise.schedules":
        return ours
    if isinstance(s, tls.LinearLR):
        return int(s.total_iters) if s.start_factor < s.end_factor else 0
    if isinstance(s, tls.ConstantLR):
        return int(s.total_iters) if s.factor < 1 else 0
    if isinstance(s, tls.OneCycleLR):
        return int(s._schedule_phases[0]["end_step"]) + 1
    if isinstance(s, tls.CyclicLR):
        return int(s.total_size * s.step_ratio)
    if isinstance(s, tls.SequentialLR):
        first = _scheduler_warmup(s._schedulers[0])
        return s._milestones[0] if first and s._milestones else first
    if isinstance(s, tls.ChainedScheduler):
        values = [_scheduler_warmup(c) for c in s._schedulers]
        if any(v for v in values):
            return max(v for v in values if v is not None)
        return None if any(v is None for v in values) else 0
    if isinstance(s, tls.LambdaLR):
        f = s.lr_lambdas[0]
        try:
            steps = 0
            while steps < 1_000_000 and f(steps + 1) > f(steps):
                steps += 1
        except Exception:
            return None
        return steps
    if isinstance(
        s,
        (
            tls.StepLR,
            tls.MultiStepLR,
            tls.ExponentialLR,
            tls.CosineAnnealingLR,
            tls.CosineAnnealingWarmRestarts,
            tls.PolynomialLR,
            tls.ReduceLROnPlateau,
        ),
    ):
        return 0
    return None


def _schedule_length(s: Any) -> tuple[int, str] | None:
    """Steps a per-step schedule is built for, and its name (None: not a fixed length)."""
    if isinstance(s, tls.OneCycleLR):
        return int(s.total_steps), "OneCycleLR"
    total = getattr(s, "total_steps", None)
    if isinstance(total, int) and s.__class__.__module__ == "optiwise.schedules":
        return total, type(s).__name__
    if isinstance(s, tls.SequentialLR) and s._milestones:
        last = _schedule_length(s._schedulers[-1])
        if last is not None:
            return s._milestones[-1] + last[0], f"SequentialLR(... {last[1]})"
    return None


# --------------------------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------------------------


def _lr(group: dict[str, Any]) -> float:
    value = group.get("initial_lr", group["lr"])
    value = float(value.item()) if isinstance(value, torch.Tensor) else float(value)
    scale = float(group.get("lr_scale", 1.0)) or 1.0
    return value / scale


def _task(family: str | None, profile: ModelProfile | None) -> tuple[str, bool]:
    """The knowledge task to judge against, and whether the model is a transformer."""
    if family is None:
        fam = profile.family if profile is not None else None
        task = family_task(fam) if fam is not None else "general"
    elif family in FAMILIES:
        fam, task = family, family_task(family)
    elif family in knowledge.TASKS:
        fam, task = (profile.family if profile is not None else None), family
    else:
        raise knowledge._unknown("family", family, list(FAMILIES) + list(knowledge.TASKS))
    transformer = task in _TRANSFORMER_FAMILIES or fam in _TRANSFORMER_FAMILIES
    return task, transformer


def audit(
    optimizer: Optimizer,
    *,
    model: nn.Module | None = None,
    scheduler: Any = None,
    batch_size: int | None = None,
    family: str | None = None,
    total_steps: int | None = None,
) -> list[Finding]:
    """Check a live training setup for the known optimizer and schedule mistakes.

    Parameters
    ----------
    optimizer:
        The optimizer (any ``torch.optim.Optimizer``).
    model:
        The model: enables the weight-decay-on-bias/norm/embedding check and tells the
        family when ``family`` is not given.
    scheduler:
        The LR scheduler, if any.
    batch_size:
        Samples per optimizer step (after accumulation, over all processes).
    family:
        A model family (``vision_cnn``, ``language_transformer``, ...) or a knowledge task
        family (``fine_tuning``, ``gan``, ``rl_policy``, ...) to judge against.
    total_steps:
        Optimizer steps in the run: checks that a fixed-length schedule matches it.

    Returns
    -------
    list of Finding
        Worst first.
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"audit needs a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if batch_size is not None and (
        not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1
    ):
        raise ValueError(f"Invalid batch size: {batch_size!r} (must be a positive integer)")
    if total_steps is not None and (
        not isinstance(total_steps, int) or isinstance(total_steps, bool) or total_steps < 1
    ):
        raise ValueError(f"Invalid total_steps: {total_steps!r} (must be an integer >= 1)")
    profile = inspect_model(model) if model is not None else None
    task, transformer = _task(family, profile)
    name = identify_optimizer(optimizer)
    ctx = _Context(optimizer, model, scheduler, batch_size, task, transformer, name, total_steps)
    findings: list[Finding] = []
    for check in _CHECKS:
        findings.extend(check(ctx))
    return sorted(findings, key=lambda f: (_SEVERITY_ORDER[f.severity], f.code))


class _Context:
    def __init__(
        self,
        optimizer: Optimizer,
        model: nn.Module | None,
        scheduler: Any,
        batch_size: int | None,
        task: str,
        transformer: bool,
        name: str | None,
        total_steps: int | None,
    ) -> None:
        self.optimizer = optimizer
        self.model = model
        self.scheduler = scheduler
        self.batch_size = batch_size
        self.task = task
        self.transformer = transformer
        self.name = name
        self.total_steps = total_steps
        self.groups = optimizer.param_groups
        self.info: knowledge.OptimizerInfo | None = None
        self.defaults: knowledge.Defaults | None = None
        if name is not None:
            try:
                self.info = knowledge.get_info(_knowledge_name(name))
                self.defaults = knowledge.defaults(_knowledge_name(name), task)
            except ValueError:
                self.info = self.defaults = None
        self.lr = max(_lr(g) for g in self.groups) if self.groups else 0.0
        self.warmup = warmup_of(scheduler, optimizer)

    @property
    def label(self) -> str:
        return self.info.display if self.info is not None else type(self.optimizer).__name__

    def batch_scale(self) -> float:
        """How the reference-batch LR scales to this batch (1 without a batch size)."""
        if self.batch_size is None or self.info is None or self.defaults is None:
            return 1.0
        return knowledge.scale_lr(
            1.0,
            self.batch_size,
            self.defaults.reference_batch.value,
            self.info.batch_scaling.value,
        )


Check = Callable[[_Context], list[Finding]]


def _coupled_decay(ctx: _Context) -> list[Finding]:
    if ctx.name not in _COUPLED_ADAM:
        return []
    decayed = [
        g["weight_decay"]
        for g in ctx.groups
        if g.get("weight_decay", 0) > 0 and not g.get("decoupled_weight_decay", False)
    ]
    if not decayed:
        return []
    return [
        make_finding(
            "OW101",
            f"{ctx.label} with weight_decay={max(decayed):g}: an L2 term rescaled by the "
            "adaptive denominator, not weight decay",
            data={"optimizer": ctx.name, "weight_decay": max(decayed)},
        )
    ]


def _lr_range(ctx: _Context) -> list[Finding]:
    if ctx.defaults is None:
        return []
    lo, hi = ctx.defaults.lr_range.value
    scale = ctx.batch_scale()
    factor = knowledge.LR_OUT_OF_RANGE_FACTOR.value
    low, high = lo * scale / factor, hi * scale * factor
    if low <= ctx.lr <= high:
        return []
    at = f" at batch {ctx.batch_size}" if ctx.batch_size is not None else ""
    return [
        make_finding(
            "OW201",
            f"lr={ctx.lr:.3g} is {'above' if ctx.lr > high else 'below'} {ctx.label}'s "
            f"typical range {lo * scale:.3g}..{hi * scale:.3g} for {ctx.task}{at} by more "
            f"than {factor:g}x ({ctx.defaults.lr_range.reason})",
            data={"lr": ctx.lr, "range": [lo * scale, hi * scale], "task": ctx.task},
        )
    ]


def _sgd_momentum(ctx: _Context) -> list[Finding]:
    if ctx.name == "sgd_momentum":
        momentum = ctx.groups[0]["momentum"]
        return [make_finding("OW102", f"SGD with momentum={momentum:g} and nesterov=False")]
    return []


def _sgd_without_momentum(ctx: _Context) -> list[Finding]:
    if ctx.name != "sgd_plain":
        return []
    if ctx.model is not None:
        layers = sum(1 for p in ctx.model.parameters() if p.requires_grad and p.ndim >= 2)
        if layers < 2:  # a linear model: plain SGD is a fine choice there
            return []
    return [
        make_finding(
            "OW105",
            f"SGD without momentum on a {ctx.task} model",
            data={"optimizer": ctx.name},
        )
    ]


def _constant_lr(ctx: _Context) -> list[Finding]:
    if ctx.scheduler is not None or ctx.total_steps is None or ctx.info is None:
        return []
    if has_train_eval_modes(ctx.optimizer):  # schedule-free: made to run without a schedule
        return []
    standard = knowledge.task_info(ctx.task).schedule
    if standard.value == "constant":
        return []
    return [
        make_finding(
            "OW307",
            f"{ctx.label} at a constant lr={ctx.lr:.3g} for all {ctx.total_steps} steps (no "
            f"scheduler); the standard schedule for {ctx.task} is {standard.value}: "
            f"{standard.reason}",
            data={"lr": ctx.lr, "total_steps": ctx.total_steps, "standard": standard.value},
        )
    ]


def _adam_on_transformer(ctx: _Context) -> list[Finding]:
    if ctx.transformer and ctx.name == "adam":
        return [make_finding("OW103", f"Adam (not AdamW) on a transformer ({ctx.task})")]
    return []


def _decay_on_no_decay(ctx: _Context) -> list[Finding]:
    if ctx.model is None:
        return []
    owners = _owners(ctx.model)
    names = {id(p): n for n, p in ctx.model.named_parameters()}
    hits: list[str] = []
    for group in ctx.groups:
        if not group.get("weight_decay", 0) > 0:
            continue
        for p in group["params"]:
            mods = owners.get(id(p), [])
            if any(is_no_decay(m, p) for _, m, _ in mods):
                hits.append(names.get(id(p), "?"))
    if not hits:
        return []
    shown = ", ".join(hits[:4]) + (", ..." if len(hits) > 4 else "")
    return [
        make_finding(
            "OW401",
            f"weight decay on {len(hits)} bias/normalization/embedding tensor(s): {shown}",
            data={"params": hits},
        )
    ]


def _transformer_warmup(ctx: _Context) -> list[Finding]:
    if ctx.transformer and ctx.warmup == 0:
        what = "no scheduler" if ctx.scheduler is None else type(ctx.scheduler).__name__
        return [make_finding("OW301", f"transformer ({ctx.task}) without LR warmup ({what})")]
    return []


def _lr_not_scaled(ctx: _Context) -> list[Finding]:
    if ctx.defaults is None or ctx.info is None or ctx.batch_size is None:
        return []
    ref_lr = float(ctx.defaults.hparams["lr"].value)
    scaled = ref_lr * ctx.batch_scale()
    factor = knowledge.LR_BATCH_MISMATCH_FACTOR.value
    moved = max(scaled / ref_lr, ref_lr / scaled)
    near_ref = max(ctx.lr / ref_lr, ref_lr / ctx.lr) < math.sqrt(factor)
    off = max(ctx.lr / scaled, scaled / ctx.lr)
    if moved < factor or not near_ref or off < factor:
        return []
    ref = ctx.defaults.reference_batch.value
    return [
        make_finding(
            "OW202",
            f"lr={ctx.lr:.3g} is {ctx.label}'s value for batch {ref}, but the batch is "
            f"{ctx.batch_size}: the {ctx.info.batch_scaling.value} rule gives {scaled:.3g}",
            data={"lr": ctx.lr, "scaled_lr": scaled, "reference_batch": ref},
        )
    ]


def _large_batch(ctx: _Context) -> list[Finding]:
    if ctx.batch_size is None:
        return []
    out: list[Finding] = []
    large = ctx.batch_size >= knowledge.LARGE_BATCH.value
    if large and (ctx.info is None or ctx.info.family.value != "layerwise"):
        out.append(
            make_finding(
                "OW104",
                f"batch {ctx.batch_size} (>= {knowledge.LARGE_BATCH.value}) with {ctx.label}",
            )
        )
    linear = ctx.info is not None and ctx.info.batch_scaling.value == "linear"
    needs = large or (linear and ctx.batch_size >= knowledge.WARMUP_BATCH.value)
    if needs and ctx.warmup == 0:
        out.append(
            make_finding(
                "OW306",
                f"batch {ctx.batch_size} with {ctx.label} and no warmup",
            )
        )
    return out


def _schedule_mismatch(ctx: _Context) -> list[Finding]:
    if ctx.total_steps is None:
        return []
    length = _schedule_length(ctx.scheduler)
    if length is None or length[0] == ctx.total_steps:
        return []
    return [
        make_finding(
            "OW302",
            f"{length[1]} is built for {length[0]} steps but the run has {ctx.total_steps} "
            "optimizer steps",
            data={"schedule_steps": length[0], "total_steps": ctx.total_steps},
        )
    ]


def _fp16_eps(ctx: _Context) -> list[Finding]:
    eps = [g["eps"] for g in ctx.groups if isinstance(g.get("eps"), (int, float))]
    if not eps or min(eps) >= knowledge.FP16_MIN_EPS.value:
        return []
    tensors = [p for g in ctx.groups for p in g["params"]]
    tensors += [
        v for s in ctx.optimizer.state.values() for v in s.values() if isinstance(v, torch.Tensor)
    ]
    if not any(t.dtype == torch.float16 for t in tensors):
        return []
    return [
        make_finding(
            "OW601",
            f"eps={min(eps):g} with fp16 parameters or optimizer state",
            data={"eps": min(eps)},
        )
    ]


def _resumed_without_state(ctx: _Context) -> list[Finding]:
    s = ctx.scheduler
    if s is None or getattr(s, "last_epoch", 0) <= 0 or ctx.optimizer.state:
        return []
    if ctx.info is not None and ctx.info.state_bytes.value == 0:
        return []
    return [
        make_finding(
            "OW701",
            f"the scheduler is at step {s.last_epoch} but {ctx.label} has no state: the run "
            "was resumed without loading the optimizer's state_dict",
            data={"scheduler_step": s.last_epoch},
        )
    ]


_CHECKS: tuple[Check, ...] = (
    _coupled_decay,
    _lr_range,
    _sgd_momentum,
    _sgd_without_momentum,
    _adam_on_transformer,
    _decay_on_no_decay,
    _transformer_warmup,
    _lr_not_scaled,
    _large_batch,
    _schedule_mismatch,
    _constant_lr,
    _fp16_eps,
    _resumed_without_state,
)


# --------------------------------------------------------------------------------------------
# Building objects from expressions (for the command line)
# --------------------------------------------------------------------------------------------


def _parse_call(expr: str, what: str, prefixes: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """``Name(key=literal, ...)`` -> (name, kwargs); nothing is evaluated but literals."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"cannot parse the {what} {expr!r}: {exc.msg}") from None
    node = tree.body
    if isinstance(node, (ast.Name, ast.Attribute)):
        node = ast.Call(func=node, args=[], keywords=[])
    if not isinstance(node, ast.Call):
        raise ValueError(f"the {what} must be a call like Name(key=value, ...), got {expr!r}")
    try:
        dotted = ast.unparse(node.func)
    except Exception:  # pragma: no cover - ast.unparse handles every expression node
        dotted = ""
    if not all(part.isidentifier() for part in dotted.split(".")):
        raise ValueError(f"the {what} must be called by name, got {ast.unparse(node.func)!r}")
    name = dotted
    for prefix in prefixes:
        if dotted.startswith(prefix + "."):
            name = dotted[len(prefix) + 1 :]
            break
    if "." in name:
        raise ValueError(f"unknown {what} {dotted!r}; use a torch or optiwise name")
    if node.args:
        raise ValueError(
            f"the {what} takes keyword arguments only (the parameters/optimizer are supplied), "
            f"got {expr!r}"
        )
    kwargs: dict[str, Any] = {}
    for kw in node.keywords:
        if kw.arg is None:
            raise ValueError(f"**kwargs are not allowed in the {what} {expr!r}")
        try:
            kwargs[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, SyntaxError, TypeError):
            raise ValueError(
                f"the value of {kw.arg} in the {what} must be a literal (number, string, "
                f"tuple, list, True/False/None), got {ast.unparse(kw.value)!r}"
            ) from None
    return name, kwargs


def optimizer_from_expression(expr: str, model: nn.Module) -> Optimizer:
    """Build an optimizer for ``model`` from ``"AdamW(lr=3e-4, weight_decay=0.01)"``.

    A ``torch.optim`` class name builds that class over ``model.parameters()`` exactly as
    written; any other name is an optiwise registry name, built with
    :func:`optiwise.create_optimizer` (parameter groups, knowledge-filled defaults).
    """
    from optiwise.optim.registry import create_optimizer

    name, kwargs = _parse_call(expr, "optimizer", ("torch.optim", "optim"))
    cls = getattr(torch.optim, name, None)
    try:
        if isinstance(cls, type) and issubclass(cls, Optimizer):
            return cls(model.parameters(), **kwargs)
        return create_optimizer(name, model, **kwargs)
    except TypeError as exc:
        raise ValueError(f"cannot build the optimizer {expr!r}: {exc}") from None


def scheduler_from_expression(expr: str, optimizer: Optimizer) -> Any:
    """Build a scheduler for ``optimizer`` from ``"OneCycleLR(max_lr=0.1, total_steps=1000)"``
    (a ``torch.optim.lr_scheduler`` class) or ``"warmup_cosine(total_steps=1000,
    warmup=100)"`` (an optiwise schedule name)."""
    from optiwise.schedules import create_scheduler

    name, kwargs = _parse_call(
        expr, "scheduler", ("torch.optim.lr_scheduler", "optim.lr_scheduler", "lr_scheduler")
    )
    cls = getattr(tls, name, None)
    try:
        if isinstance(cls, type) and issubclass(cls, (tls.LRScheduler, tls.ReduceLROnPlateau)):
            if name in ("LambdaLR", "MultiplicativeLR", "SequentialLR", "ChainedScheduler"):
                raise ValueError(
                    f"{name} needs functions or other schedulers and cannot be built from the "
                    "command line; audit it from Python with optiwise.audit"
                )
            return cls(optimizer, **kwargs)
        return create_scheduler(name, optimizer, **kwargs)
    except TypeError as exc:
        raise ValueError(f"cannot build the scheduler {expr!r}: {exc}") from None
