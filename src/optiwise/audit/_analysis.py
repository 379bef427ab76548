"""The static rules of ``optiwise lint``, run over one parsed module.

The rules see objects only where the file itself says what they are: a constructor call
(``torch.optim.Adam(...)``, ``OneCycleLR(...)``, ``GradScaler()``, ``torch.load(...)``,
``optiwise.create_optimizer("adam", ...)``), a name or ``self.attr`` bound to one, a
function of the same file that returns one, or a parameter annotated with its type.
Values count when the file fixes them (see :mod:`optiwise.audit._resolve`).  Nothing is
reported about what cannot be resolved.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from optiwise import knowledge
from optiwise.audit import _api as api
from optiwise.audit._edits import (
    Edit,
    FixKind,
    ImportEdit,
    KeywordEdit,
    RenameCallee,
    ReplaceString,
)
from optiwise.audit._resolve import UNKNOWN, Binding, Resolver, Scope

__all__ = ["Raw", "analyze"]


@dataclass
class Raw:
    """A finding before it becomes a :class:`~optiwise.audit.findings.Finding`: code, the
    node it points at, message, and the fix it offers."""

    code: str
    node: ast.AST
    message: str
    fix_kind: FixKind | None = None
    edits: tuple[Edit, ...] = ()
    fix_text: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------
# What the qualified names mean
# ------------------------------------------------------------------------------------------

CREATE_OPTIMIZER = {
    "optiwise.create_optimizer",
    "optiwise.optim.create_optimizer",
    "optiwise.optim.registry.create_optimizer",
}
CREATE_SCHEDULER = {"optiwise.create_scheduler", "optiwise.schedules.create_scheduler"}
GRAD_SCALERS = {
    "torch.GradScaler",
    "torch.amp.GradScaler",
    "torch.amp.grad_scaler.GradScaler",
    "torch.cuda.amp.GradScaler",
    "torch.cuda.amp.grad_scaler.GradScaler",
    "torch.cpu.amp.GradScaler",
}
CLIP_FUNCTIONS = {
    f"torch.nn.utils{sub}.{fn}"
    for sub in ("", ".clip_grad")
    for fn in ("clip_grad_norm_", "clip_grad_norm", "clip_grad_value_")
}
TORCH_LOAD = {"torch.load", "torch.serialization.load"}
TORCH_SAVE = {"torch.save", "torch.serialization.save"}
LIGHTNING_MODULES = {
    f"{pkg}{mod}.LightningModule"
    for pkg in ("lightning", "lightning.pytorch", "pytorch_lightning")
    for mod in ("", ".core", ".core.module", ".core.lightning")
}
HF_SCHEDULE_PREFIXES = ("transformers.get_", "transformers.optimization.get_")
FP16_DTYPES = {"torch.float16", "torch.half"}
SET_DEFAULT_DTYPE = {"torch.set_default_dtype"}

# Schedules whose LR is a function of the optimizer step: they must step every batch.
PER_BATCH_TORCH = {"OneCycleLR", "CyclicLR"}
# Schedules that scale the LR by a user function: the base LR says little.
MULTIPLICATIVE_TORCH = {"LambdaLR", "MultiplicativeLR"}
# Schedules that set the LR themselves from max_lr/base_lr: the optimizer's lr is unused.
OVERRIDES_LR = {"OneCycleLR", "CyclicLR"}
# Arguments of epoch-sized schedules that give the schedule length.
LENGTH_ARGS = {"CosineAnnealingLR": "T_max", "PolynomialLR": "total_iters"}
# create_scheduler names that are not counted in optimizer steps (everything else is).
CREATE_SCHEDULER_NOT_PER_BATCH = {"plateau", "step", "multistep", "exponential", "cosine_restarts"}
# Optimizers whose weight_decay is an L2 term folded into the adaptive gradient.
COUPLED_DECAY = {"adam", "adamax", "nadam", "radam"}


def _optimizer_class(qualname: str | None) -> api.ClassInfo | None:
    return api.optimizer_class(qualname) if qualname else None


def _scheduler_class(qualname: str | None) -> api.ClassInfo | None:
    return api.scheduler_class(qualname) if qualname else None


def _canonical_optimizer(name: str) -> str | None:
    return api.canonical_optimizer(name)


def _canonical_schedule(name: str) -> str | None:
    return api.canonical_schedule(name)


def _fmt(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else repr(x)


# ------------------------------------------------------------------------------------------
# Objects the rules reason about
# ------------------------------------------------------------------------------------------


_CYCLE: Any = object()  # an expression met again while it is being resolved


@dataclass(frozen=True)
class Obj:
    """What an expression is, as far as the file tells."""

    tag: str  # "optimizer" | "scheduler" | "scaler" | "checkpoint"
    name: str | None = None  # optimizer display / scheduler class or schedule name
    per_batch: bool | None = None  # schedulers: must step every batch
    plateau: bool = False
    call: ast.Call | None = None


@dataclass
class OptimizerCall:
    """A resolved optimizer construction and its arguments."""

    call: ast.Call
    scope: Scope
    display: str
    candidates: tuple[str, ...]  # knowledge names it may be
    cls: api.ClassInfo | None  # torch/optiwise class, None for create_optimizer
    args: dict[str, ast.expr]
    defaults: dict[str, Any]
    opaque: bool  # *args / **kwargs: absent arguments are unknown
    task: str | None = None
    name_node: ast.expr | None = None  # create_optimizer: the name literal

    def value(self, resolver: Resolver, name: str) -> Any:
        if name in self.args:
            return resolver.const(self.args[name], self.scope)
        if self.opaque:
            return UNKNOWN
        return self.defaults.get(name, UNKNOWN)


@dataclass
class Event:
    """A call in a training loop that matters to the loop rules."""

    kind: str  # backward | opt_step | sched_step | zero_grad | clip | unscale
    node: ast.AST
    loops: tuple[ast.AST, ...]
    cond: bool  # inside an if/try/match below the innermost loop
    key: str | None = None  # the receiver (optimizer, scheduler or scaler) as dumped AST
    via_scaler: str | None = None  # opt_step through scaler.step(opt); backward on scaled
    obj: Obj | None = None
    site: tuple[int, int] | None = None  # inlined from a called function: the call's place

    @property
    def pos(self) -> tuple[int, int, int, int]:
        """Order in the unit: the call site first for events of a called function."""
        here = (getattr(self.node, "lineno", 0), getattr(self.node, "col_offset", 0))
        return (*self.site, *here) if self.site else (*here, 0, 0)


def _dump(expr: ast.AST) -> str:
    """A key for an expression, the same for loads and stores (``self.opt``)."""
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute):
        return f"{_dump(expr.value)}.{expr.attr}"
    return ast.dump(expr, annotate_fields=False, include_attributes=False)


def _text(expr: ast.AST) -> str:
    try:
        return ast.unparse(expr)
    except Exception:  # pragma: no cover
        return "..."


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _calls(node: ast.AST) -> Iterator[ast.Call]:
    """Calls in ``node`` without entering nested functions, lambdas or classes."""
    stack = [node]
    while stack:
        cur = stack.pop()
        if isinstance(cur, ast.Call):
            yield cur
        for child in ast.iter_child_nodes(cur):
            if not isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
            ):
                stack.append(child)


_STMT_LIST_FIELDS = ("body", "orelse", "finalbody", "handlers", "cases")


class Analyzer:
    """Runs every rule over one module."""

    def __init__(
        self, tree: ast.Module, *, strict: bool = False, base_dir: str | None = None
    ) -> None:
        self.tree = tree
        self.strict = strict
        self.r = Resolver(tree, base_dir)
        self.out: list[Raw] = []
        self._obj_cache: dict[int, Obj | None] = {}
        self._returns_cache: dict[int, Obj | None] = {}
        self._in_progress: set[int] = set()
        self._oc_cache: dict[int, OptimizerCall | None] = {}
        self._lr_overridden: set[int] = set()
        self._adamw_provider: dict[int, ast.ImportFrom] = {}
        self.all_calls = self.r.calls
        self.param_owners = {
            _dump(c.func.value)
            for c in self.all_calls
            if isinstance(c.func, ast.Attribute)
            and c.func.attr in ("parameters", "named_parameters")
        }
        self._inlining: set[int] = set()
        self.scaler_keys = self._duck_scalers()
        self.zero_grad_defs = self._zero_grad_defs()

    # ------------------------------------------------------------------ resolution

    def qual(self, expr: ast.expr) -> str | None:
        return self.r.qualname(expr)

    def obj(self, expr: ast.expr | None, scope: Scope | None = None, depth: int = 0) -> Obj | None:
        """What ``expr`` is (optimizer, scheduler, scaler, checkpoint), or None."""
        result = self._obj_or_cycle(expr, scope, depth)
        return result if isinstance(result, Obj) else None

    def _obj_or_cycle(self, expr: ast.expr | None, scope: Scope | None, depth: int) -> Any:
        """As :meth:`obj`, or ``_CYCLE`` for an expression already being resolved (``opt =
        accelerator.prepare(opt)`` refers to itself; that binding then decides nothing)."""
        if expr is None or depth > 8:
            return None
        key = id(expr)
        if key in self._obj_cache:
            return self._obj_cache[key]
        if key in self._in_progress:
            return _CYCLE
        self._in_progress.add(key)
        try:
            result = self._obj(expr, scope or self.r.scope_at(expr), depth)
        finally:
            self._in_progress.discard(key)
        self._obj_cache[key] = result
        return result

    def _obj(self, expr: ast.expr, scope: Scope, depth: int) -> Obj | None:
        if isinstance(expr, ast.Call):
            return self._call_obj(expr, scope, depth)
        if isinstance(expr, ast.Name):
            return self._merge(self._binding_obj(b, depth) for b in self.r.lookup(expr.id, scope))
        if isinstance(expr, ast.Attribute):
            values = self.r.self_attr_values(expr, scope)
            if values:
                return self._merge(
                    None if v is None else self._value_obj(v, s, depth) for v, s in values
                )
        return None

    def _value_obj(self, value: ast.expr, scope: Scope, depth: int) -> Obj | bool | None:
        if isinstance(value, ast.Constant) and value.value is None:
            return True  # a placeholder: does not decide what the name is
        result = self._obj_or_cycle(value, scope, depth + 1)
        return True if result is _CYCLE else result

    def _binding_obj(self, b: Binding, depth: int) -> Obj | bool | None:
        if b.kind == "assign" and b.value is not None:
            return self._value_obj(b.value, b.scope, depth)
        if b.kind == "param" and b.annotation is not None:
            return self._annotation_obj(b.annotation, b.scope)
        if b.kind == "param" and depth < 6:
            sites = self.r.call_site_args(b)
            if sites:
                return self._merge(self._value_obj(e, sc, depth + 1) for e, sc in sites)
        if b.kind == "unpack" and isinstance(b.value, ast.Call) and b.index is not None:
            passed = self._wrapped(b.value, b.scope, b.index)
            if passed is not None:
                return self._value_obj(passed, b.scope, depth)
        return None

    def _wrapper(self, call: ast.Call, scope: Scope) -> str | None:
        """ "same" for calls that return the objects they are given (accelerate's
        ``prepare``, Fabric's ``setup``), "deepspeed" for ``deepspeed.initialize``."""
        f = call.func
        if not isinstance(f, ast.Attribute):
            return None
        if self.r.qualname(f, scope) == "deepspeed.initialize":
            return "deepspeed"
        if f.attr not in _WRAPPER_METHODS:
            return None
        recv = f.value
        q = None
        if isinstance(recv, ast.Name):
            bs = self.r.lookup(recv.id, scope)
            if len(bs) == 1 and bs[0].kind == "assign" and isinstance(bs[0].value, ast.Call):
                q = self.r.qualname(bs[0].value.func, bs[0].scope)
        if q in _WRAPPER_CLASSES or "accelerator" in _text(recv).lower():
            return "same"
        if "fabric" in _text(recv).lower():
            return "same"
        return None

    def _wrapped(self, call: ast.Call, scope: Scope, index: int) -> ast.expr | None:
        """The argument that comes back at position ``index`` of a wrapper's result."""
        kind = self._wrapper(call, scope)
        if kind == "same":
            if any(isinstance(a, ast.Starred) for a in call.args[: index + 1]):
                return None
            return call.args[index] if index < len(call.args) else None
        if kind == "deepspeed":  # (engine, optimizer, dataloader, lr_scheduler)
            name = {1: "optimizer", 3: "lr_scheduler"}.get(index)
            for k in call.keywords:
                if k.arg == name:
                    return k.value
        return None

    @staticmethod
    def _merge(objs: Iterable[Obj | bool | None]) -> Obj | None:
        found: list[Obj] = []
        for o in objs:
            if o is True or o is _CYCLE:
                continue
            if o is None or o is False:
                return None
            assert isinstance(o, Obj)
            found.append(o)
        if not found or len({o.tag for o in found}) != 1:
            return None
        first = found[0]
        if all(o == first for o in found):
            return first
        same = {(o.name, o.per_batch, o.plateau) for o in found}
        if len(same) == 1:
            return Obj(first.tag, first.name, first.per_batch, first.plateau)
        return Obj(first.tag)

    def _annotation_obj(self, ann: ast.expr, scope: Scope) -> Obj | None:
        if isinstance(ann, ast.BinOp) and isinstance(ann.op, ast.BitOr):
            for side in (ann.left, ann.right):
                if not (isinstance(side, ast.Constant) and side.value is None):
                    return self._annotation_obj(side, scope)
        if isinstance(ann, ast.Subscript) and (self.r.qualname(ann.value, scope) or "").endswith(
            "Optional"
        ):
            return self._annotation_obj(ann.slice, scope)
        q = self.r.qualname(ann, scope)
        if not q:
            return None
        if q in GRAD_SCALERS:
            return Obj("scaler")
        if q in ("torch.optim.Optimizer", "torch.optim.optimizer.Optimizer"):
            return Obj("optimizer")
        ocls = _optimizer_class(q)
        if ocls is not None:
            return Obj("optimizer", ocls.name)
        cls = _scheduler_class(q)
        if cls is not None:
            return self._scheduler_obj(cls.name, None)
        return None

    def _scheduler_obj(self, name: str, call: ast.Call | None) -> Obj:
        per_batch: bool | None = True if name in PER_BATCH_TORCH else None
        return Obj("scheduler", name, per_batch, name == "ReduceLROnPlateau", call)

    def _call_obj(self, call: ast.Call, scope: Scope, depth: int) -> Obj | None:
        q = self.r.qualname(call.func, scope)
        if q:
            if q in CREATE_OPTIMIZER:
                oc = self.optimizer_call(call)
                return Obj("optimizer", oc.display if oc else None, call=call)
            if q in CREATE_SCHEDULER:
                name_node = call.args[0] if call.args else None
                name = self.r.const(name_node, scope)
                canon = _canonical_schedule(name) if isinstance(name, str) else None
                per_batch = None if canon is None else canon not in CREATE_SCHEDULER_NOT_PER_BATCH
                return Obj("scheduler", canon, per_batch, canon == "plateau", call)
            if q in GRAD_SCALERS:
                return Obj("scaler", call=call)
            if q in TORCH_LOAD:
                return Obj("checkpoint", call=call)
            if q.startswith(HF_SCHEDULE_PREFIXES) and "schedule" in q:
                return Obj("scheduler", q.rsplit(".", 1)[-1], True, False, call)
            if _optimizer_class(q) is not None:
                oc = self.optimizer_call(call)
                return Obj("optimizer", oc.display if oc else None, call=call)
            cls = _scheduler_class(q)
            if cls is not None:
                return self._scheduler_obj(cls.name, call)
        if isinstance(call.func, ast.Name):
            for b in self.r.lookup(call.func.id, scope):
                if b.kind == "def" and isinstance(b.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    return self._returns_obj(b.node, depth)
        if len(call.args) == 1 and self._wrapper(call, scope) == "same":
            inner = self._value_obj(call.args[0], scope, depth)  # opt = accelerator.prepare(opt)
            return _CYCLE if inner is True else inner  # type: ignore[return-value]
        return None

    def _returns_obj(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, depth: int) -> Obj | None:
        if id(fn) in self._returns_cache:
            return self._returns_cache[id(fn)]
        self._returns_cache[id(fn)] = None  # recursion guard
        fscope = self.r.scope_of_node[fn]
        values: list[Obj | bool | None] = []
        for stmt in self._own_statements(fn.body):
            if isinstance(stmt, ast.Return):
                values.append(
                    None if stmt.value is None else self._value_obj(stmt.value, fscope, depth)
                )
        result = self._merge(values) if values else None
        self._returns_cache[id(fn)] = result
        return result

    def _own_statements(self, body: Sequence[ast.stmt]) -> Iterator[ast.stmt]:
        """Statements of a body, nested blocks included, nested defs excluded."""
        for stmt in body:
            yield stmt
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            for name in _STMT_LIST_FIELDS:
                for child in getattr(stmt, name, ()) or ():
                    if isinstance(child, (ast.ExceptHandler, ast.match_case)):
                        yield from self._own_statements(child.body)
                    elif isinstance(child, ast.stmt):
                        yield from self._own_statements([child])

    # ------------------------------------------------------------------ optimizer calls

    def optimizer_call(self, call: ast.Call) -> OptimizerCall | None:
        """The optimizer built by ``call`` with its bound arguments, or None."""
        if id(call) not in self._oc_cache:
            self._oc_cache[id(call)] = self._optimizer_call(call)
        return self._oc_cache[id(call)]

    def _optimizer_call(self, call: ast.Call) -> OptimizerCall | None:
        scope = self.r.scope_at(call)
        q = self.r.qualname(call.func, scope)
        if not q:
            return None
        opaque = any(isinstance(a, ast.Starred) for a in call.args) or any(
            k.arg is None for k in call.keywords
        )
        if q in CREATE_OPTIMIZER:
            args = self._bind(call, api.create_optimizer_sig())
            name = self.r.const(args.get("name"), scope)
            canon = _canonical_optimizer(name) if isinstance(name, str) else None
            entry = api.registry_info(canon) if canon else None
            if canon is None or entry is None:
                return None
            task = self.r.const(args.get("task"), scope) if "task" in args else None
            if task is not None:
                try:
                    task = knowledge.check_task(task)  # a synonym: "ppo" is rl_policy
                except ValueError:
                    return None
            given = {
                k: self.r.const(v, scope)
                for k, v in args.items()
                if k not in ("name", "model_or_params", "task", "batch_size", "no_decay")
                and k not in ("layer_decay", "lr_mult", "group")
            }
            known = {k: v for k, v in given.items() if v is not UNKNOWN}
            if any(k in entry.fixed and entry.fixed[k] != v for k, v in known.items()):
                return None  # create_optimizer raises: the name pins another value
            if entry.accepted is not None and set(given) - entry.accepted:
                return None  # create_optimizer raises: an argument the optimizer lacks
            hparams = entry.defaults(task)
            if "nesterov" in hparams and hparams["nesterov"] and known.get("momentum", 1) == 0:
                hparams["nesterov"] = False  # as resolve_optimizer: Nesterov needs momentum
            hparams.update(known)
            return OptimizerCall(
                call,
                scope,
                entry.display,
                (canon,),
                None,
                args,
                {**hparams, **dict(entry.fixed)},
                opaque,
                task,
                args.get("name"),
            )
        cls = _optimizer_class(q)
        if cls is None:
            return None
        args = self._bind(call, cls.sig)
        defaults = dict(cls.sig.defaults)
        names = cls.registry
        oc = OptimizerCall(call, scope, cls.name, names, cls, args, defaults, opaque)
        if len(names) > 1:  # SGD: keep the registry variants its arguments allow
            fits = []
            for n in names:
                ok = True
                entry = api.registry_info(n)
                for k, v in (entry.fixed if entry else {}).items():
                    got = oc.value(self.r, k)
                    if got is not UNKNOWN and got != v:
                        ok = False
                if ok:
                    fits.append(n)
            oc.candidates = tuple(fits) or names
        return oc

    @staticmethod
    def _bind(call: ast.Call, sig: api.Sig | None) -> dict[str, ast.expr]:
        args: dict[str, ast.expr] = {}
        if sig is not None:
            for name, value in zip(sig.positional, call.args, strict=False):
                if isinstance(value, ast.Starred):
                    break
                args[name] = value
        for kw in call.keywords:
            if kw.arg is not None:
                args[kw.arg] = kw.value
        return args

    # ------------------------------------------------------------------ output helpers

    def add(self, code: str, node: ast.AST, message: str, **kwargs: Any) -> None:
        self.out.append(Raw(code, node, message, **kwargs))

    # ------------------------------------------------------------------ run

    def run(self) -> list[Raw]:
        """Every rule; a rule that fails on an unusual construct is skipped (its findings
        dropped) unless the analyzer is ``strict``, so one rule never hides the others."""
        self._guard(self._constructor_rules)
        for unit in self._units():
            self._guard(self.check_loops, unit)
        for check in self._file_rules():
            self._guard(check)
        return self.out

    def _file_rules(self) -> list[Callable[[], None]]:
        return [
            self.check_plateau,
            self.check_lightning,
            self.check_resume,
            self.check_schedule_presence,
            self.check_recreated_optimizer,
            self.check_resume_loads,
        ]

    def _guard(self, fn: Callable[..., None], *args: Any) -> None:
        mark = len(self.out)
        try:
            fn(*args)
        except (RecursionError, MemoryError):
            del self.out[mark:]
            if self.strict:
                raise
        except Exception:
            del self.out[mark:]
            if self.strict:
                raise

    def _constructor_rules(self) -> None:
        fp16 = self._fp16_modules()
        overrides = self._lr_overrides()
        for call in self.all_calls:
            if isinstance(call.func, (ast.Name, ast.Attribute)):
                oc = self.optimizer_call(call)
                if oc is not None:
                    self.check_optimizer(oc, fp16)
            if (
                isinstance(call.func, ast.Attribute)
                and call.func.attr == "add_param_group"
                and call.args
            ):
                self._check_added_group(call)
        for max_lr, oc in overrides:
            self._check_lr(oc, max_lr, "max_lr")

    # ------------------------------------------------------------------ constructor rules

    def check_optimizer(self, oc: OptimizerCall, fp16: tuple[set[str], bool]) -> None:
        self._check_coupled_decay(oc)
        self._check_nesterov(oc)
        self._check_lr(oc)
        self._check_whole_model_decay(oc)
        self._check_fp16_eps(oc, fp16)
        self._check_momentum(oc)

    def _check_momentum(self, oc: OptimizerCall) -> None:
        """OW106: beta2 < 0.9, beta1 or momentum > 0.99."""
        hi = knowledge.MAX_MOMENTUM.value
        lo2 = knowledge.MIN_BETA2.value
        betas = (
            oc.value(self.r, "betas") if ("betas" in oc.args or "betas" in oc.defaults) else None
        )
        if isinstance(betas, tuple) and len(betas) == 2 and all(_is_num(b) for b in betas):
            b1, b2 = betas
            node = oc.args.get("betas", oc.call)
            if b2 < lo2:
                self.add(
                    "OW106",
                    node,
                    f"{oc.display} beta2={_fmt(b2)} averages the squared gradients over about "
                    f"{max(1, round(1 / (1 - b2)))} steps: use 0.95-0.999 (0.98-0.999 for "
                    "transformers)",
                    data={"betas": list(betas)},
                )
            elif b1 > hi:
                self.add(
                    "OW106",
                    node,
                    f"{oc.display} beta1={_fmt(b1)} is above {hi:g}: use 0.9",
                    data={"betas": list(betas)},
                )
        if "momentum" in oc.args:
            m = oc.value(self.r, "momentum")
            if _is_num(m) and m > hi:
                self.add(
                    "OW106",
                    oc.args["momentum"],
                    f"{oc.display} momentum={_fmt(m)} is above {hi:g}: it averages over more "
                    f"than {round(1 / (1 - min(m, 0.9999)))} steps and overshoots; use 0.9",
                    data={"momentum": m},
                )

    def _groups(self, oc: OptimizerCall) -> list[ast.Dict]:
        """The param-group dicts of a construction (a list literal, or a name bound once to
        one); [] when the parameters are not given as such a list."""
        params = oc.args.get("params", oc.args.get("model_or_params"))
        if isinstance(params, ast.Name):
            bs = self.r.lookup(params.id, oc.scope)
            if len(bs) == 1 and bs[0].kind == "assign":
                params = bs[0].value
        if isinstance(params, (ast.List, ast.Tuple)):
            return [g for g in params.elts if isinstance(g, ast.Dict)]
        return []

    def _group_value(self, group: ast.Dict, key: str, scope: Scope) -> tuple[bool, Any]:
        for k, v in zip(group.keys, group.values, strict=True):
            if isinstance(k, ast.Constant) and k.value == key:
                return True, self.r.const(v, scope)
        return False, UNKNOWN

    def _coupled(self, oc: OptimizerCall) -> bool:
        """Whether the construction is an Adam-family optimizer with coupled (L2) decay."""
        if not oc.candidates or not set(oc.candidates) <= COUPLED_DECAY:
            return False
        if "decoupled_weight_decay" in oc.args or "decoupled_weight_decay" in oc.defaults:
            return oc.value(self.r, "decoupled_weight_decay") is False
        return not oc.opaque

    def _check_coupled_decay(self, oc: OptimizerCall) -> None:
        if not self._coupled(oc):
            return
        wd = oc.value(self.r, "weight_decay")
        for group in self._groups(oc):  # a group's own weight_decay wins over the default
            present, value = self._group_value(group, "weight_decay", oc.scope)
            if present and _is_num(value) and value > 0 and not (_is_num(wd) and wd >= value):
                wd = value
        if not (_is_num(wd) and wd > 0):
            return
        canon = oc.candidates[0]
        factory = oc.cls
        if factory is None:
            entry = api.registry_info(canon)
            factory = entry.factory if entry else None
        has_decoupled = factory is not None and "decoupled_weight_decay" in factory.sig.names
        edits: tuple[Edit, ...]
        kind: FixKind | None = None
        retune = (
            "; decoupled decay is multiplied by the LR each step (w -= lr * weight_decay * w), "
            "so the L2 value does not carry over 1:1: retune weight_decay (AdamW's usual "
            "0.01-0.1; Loshchilov & Hutter 2019)"
        )
        if canon != "adam" and has_decoupled:
            fix_text = "pass decoupled_weight_decay=True (AdamW-style decay), or use AdamW" + retune
            edits = (self._keyword_edit(oc.call, "decoupled_weight_decay", "True"),)
            kind = "safe"
        else:
            fix_text = "use AdamW" + retune
            if canon == "adamax":
                fix_text += " (AdamW's second moment is an average of squares, not a max)"
            edits = self._adamw_edits(oc)
            if edits:
                kind = "safe" if canon == "adam" else "unsafe"
        self.add(
            "OW101",
            oc.call,
            f"{oc.display} with weight_decay={_fmt(wd)} adds an L2 term that the adaptive "
            "denominator rescales, not weight decay: use AdamW",
            fix_kind=kind,
            edits=edits,
            fix_text=fix_text,
            data={"optimizer": oc.display, "weight_decay": wd},
        )

    def _check_added_group(self, call: ast.Call) -> None:
        """OW101 for ``opt.add_param_group({..., "weight_decay": wd})`` on a coupled Adam."""
        assert isinstance(call.func, ast.Attribute)
        o = self.obj(call.func.value)
        oc = self.optimizer_call(o.call) if o is not None and o.call is not None else None
        if oc is None or not self._coupled(oc):
            return
        group = call.args[0]
        scope = self.r.scope_at(call)
        if isinstance(group, ast.Name):
            bs = self.r.lookup(group.id, scope)
            group = bs[0].value if len(bs) == 1 and bs[0].kind == "assign" else group  # type: ignore[assignment]
        if not isinstance(group, ast.Dict):
            return
        present, wd = self._group_value(group, "weight_decay", scope)
        if present and _is_num(wd) and wd > 0:
            self.add(
                "OW101",
                call,
                f"param group added to {oc.display} with weight_decay={_fmt(wd)}: an L2 term "
                "that the adaptive denominator rescales, not weight decay: use AdamW",
                fix_text="build the optimizer as AdamW; decoupled decay is multiplied by the LR "
                "each step, so retune weight_decay instead of carrying the L2 value over "
                "(Loshchilov & Hutter 2019)",
                data={"optimizer": oc.display, "weight_decay": wd},
            )

    def _adamw_edits(self, oc: OptimizerCall) -> tuple[Edit, ...]:
        """Edits turning this Adam/Adamax construction into AdamW, or () when that cannot be
        done safely."""
        call = oc.call
        if oc.cls is None:  # create_optimizer("adam", ...)
            node = oc.name_node
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                return (ReplaceString(node.lineno, node.col_offset, node.value, "adamw"),)
            return ()
        func = call.func
        if isinstance(func, ast.Attribute):
            if self.r.qualname(func.value) != "torch.optim":
                return ()
            return (RenameCallee(func.lineno, func.col_offset, func.attr, "AdamW"),)
        if not isinstance(func, ast.Name):
            return ()
        binding = self.r.import_binding(func)
        if binding is None or not isinstance(binding.node, ast.ImportFrom):
            return ()
        imp = binding.node
        if imp.module != "torch.optim":
            return ()
        # A name for AdamW: an existing import of it, else add "AdamW" to this import.
        module_scope = self.r.module_scope
        existing = [
            n
            for n, bs in module_scope.bindings.items()
            if any(b.kind == "import" and b.qualname == "torch.optim.AdamW" for b in bs)
        ]
        if existing:
            return (
                RenameCallee(func.lineno, func.col_offset, func.id, existing[0]),
                ImportEdit(imp.lineno, imp.col_offset, "torch.optim", None, func.id),
            )
        if self.r.lookup("AdamW", self.r.scope_at(call)) or "AdamW" in self.r.name_loads:
            return ()
        # One import per scope provides AdamW; other imports only lose the unused name.
        provider = self._adamw_provider.setdefault(id(binding.scope), imp)
        add = "AdamW" if provider is imp else None
        return (
            RenameCallee(func.lineno, func.col_offset, func.id, "AdamW"),
            ImportEdit(imp.lineno, imp.col_offset, "torch.optim", add, func.id),
        )

    def _keyword_edit(self, call: ast.Call, name: str, value_code: str) -> KeywordEdit:
        return KeywordEdit(call.lineno, call.col_offset, name, value_code)

    def _check_nesterov(self, oc: OptimizerCall) -> None:
        if "nesterov" not in oc.defaults and "nesterov" not in oc.args:
            return
        momentum = oc.value(self.r, "momentum")
        nesterov = oc.value(self.r, "nesterov")
        dampening = oc.value(self.r, "dampening") if "dampening" in oc.args else 0
        if not (_is_num(momentum) and momentum > 0) or nesterov is not False or dampening != 0:
            return
        edits: list[Edit] = []
        node = oc.name_node
        if oc.cls is None and oc.candidates == ("sgd_momentum",):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                return
            edits.append(ReplaceString(node.lineno, node.col_offset, node.value, "sgd"))
            if "nesterov" in oc.args:
                edits.append(self._keyword_edit(oc.call, "nesterov", "True"))
            fix_text = "use create_optimizer('sgd', ...): SGD with Nesterov momentum"
        else:
            edits.append(self._keyword_edit(oc.call, "nesterov", "True"))
            fix_text = "pass nesterov=True"
        self.add(
            "OW102",
            oc.call,
            f"{oc.display} with momentum={_fmt(momentum)} and without nesterov=True",
            fix_kind="unsafe",
            edits=tuple(edits),
            fix_text=fix_text,
        )

    def _lr_range(self, oc: OptimizerCall) -> tuple[float, float] | None:
        tasks = [oc.task] if oc.task else list(knowledge.TASKS)
        lo, hi = math.inf, -math.inf
        for name in oc.candidates:
            if name not in knowledge.OPTIMIZERS:
                return None
            for task in tasks:
                a, b = knowledge.lr_range(name, task).value
                lo, hi = min(lo, a), max(hi, b)
        return (lo, hi) if lo <= hi else None

    def _check_lr(self, oc: OptimizerCall, node: ast.expr | None = None, label: str = "lr") -> None:
        if id(oc.call) in self._lr_overridden and node is None:
            return
        rng = self._lr_range(oc)
        if rng is None:
            return
        lo, hi = rng
        factor = knowledge.LR_OUT_OF_RANGE_FACTOR.value
        targets: list[tuple[ast.expr, Any]] = []
        if node is not None:
            targets.append((node, self.r.const(node, oc.scope)))
        else:
            if "lr" in oc.args:
                targets.append((oc.args["lr"], oc.value(self.r, "lr")))
            for group in self._groups(oc):
                for k, v in zip(group.keys, group.values, strict=True):
                    if isinstance(k, ast.Constant) and k.value == "lr":
                        targets.append((v, self.r.const(v, self.r.scope_at(v))))
        for target, lr in targets:
            if not _is_num(lr) or lr <= 0:
                continue
            if lr > hi * factor:
                where = "above"
            elif lr < lo / factor:
                where = "below"
            else:
                continue
            self.add(
                "OW201",
                target,
                f"{label}={_fmt(lr)} is far {where} {oc.display}'s typical range "
                f"{_fmt(lo)}..{_fmt(hi)} (more than {factor:g}x outside)",
                data={"lr": lr, "range": [lo, hi], "optimizer": oc.display},
            )

    def _lr_overrides(self) -> list[tuple[ast.expr, OptimizerCall]]:
        """Schedulers that set or scale the LR themselves: their optimizer's ``lr`` is not
        checked; OneCycleLR/CyclicLR's ``max_lr`` is checked instead."""
        out: list[tuple[ast.expr, OptimizerCall]] = []
        for call in self.all_calls:
            if not isinstance(call.func, (ast.Name, ast.Attribute)):
                continue
            q = self.qual(call.func)
            cls = _scheduler_class(q) if q else None
            if cls is None or cls.name not in OVERRIDES_LR | MULTIPLICATIVE_TORCH:
                continue
            args = self._bind(call, cls.sig)
            o = self.obj(args.get("optimizer"))
            if o is None or o.tag != "optimizer" or o.call is None:
                continue
            self._lr_overridden.add(id(o.call))
            oc = self.optimizer_call(o.call)
            if cls.name in OVERRIDES_LR and "max_lr" in args and oc is not None:
                out.append((args["max_lr"], oc))
        return out

    def _check_whole_model_decay(self, oc: OptimizerCall) -> None:
        params = oc.args.get("params", oc.args.get("model_or_params"))
        if params is None:
            return
        whole = self._is_whole_parameters(params, oc.scope)
        if oc.cls is None and not whole and "group" in oc.args:
            whole = self.r.const(oc.args["group"], oc.scope) is False
        if not whole:
            return
        wd = oc.value(self.r, "weight_decay")
        if not (_is_num(wd) and wd > 0):
            return
        given = "weight_decay" in oc.args
        what = (
            f"weight_decay={_fmt(wd)}"
            if given
            else f"{oc.display}'s default weight decay ({_fmt(wd)}, not passed)"
        )
        self.add(
            "OW401",
            params,
            f"{what} on {_text(params)} passed whole also decays biases and normalization weights",
            fix_text="pass optiwise.param_groups(model, weight_decay) as the parameters",
            data={"weight_decay": wd},
        )

    def _is_whole_parameters(self, expr: ast.expr, scope: Scope, depth: int = 0) -> bool:
        if depth > 4:
            return False
        if isinstance(expr, ast.Call):
            f = expr.func
            if isinstance(f, ast.Attribute) and f.attr == "parameters" and not expr.args:
                return not expr.keywords
            q = self.r.qualname(f, scope)
            if q in ("builtins.list", "builtins.tuple") and len(expr.args) == 1:
                return self._is_whole_parameters(expr.args[0], scope, depth + 1)
            if q == "builtins.filter" and len(expr.args) == 2:
                return self._is_whole_parameters(expr.args[1], scope, depth + 1)
            return False
        if isinstance(expr, ast.Name):
            bindings = self.r.lookup(expr.id, scope)
            return bool(bindings) and all(
                b.kind == "assign"
                and b.value is not None
                and self._is_whole_parameters(b.value, b.scope, depth + 1)
                for b in bindings
            )
        return False

    def _parameter_owner(self, expr: ast.expr | None, scope: Scope, depth: int = 0) -> str | None:
        """``model`` for ``model.parameters()`` (through list()/filter()/names)."""
        if expr is None or depth > 4:
            return None
        if isinstance(expr, ast.Call):
            f = expr.func
            if isinstance(f, ast.Attribute) and f.attr in ("parameters", "named_parameters"):
                return _dump(f.value)
            if expr.args:
                return self._parameter_owner(expr.args[-1], scope, depth + 1)
            return None
        if isinstance(expr, ast.Name):
            bindings = self.r.lookup(expr.id, scope)
            if len(bindings) == 1 and bindings[0].kind == "assign":
                return self._parameter_owner(bindings[0].value, bindings[0].scope, depth + 1)
        return None

    def _fp16_modules(self) -> tuple[set[str], bool]:
        """Modules made fp16 (``m.half()``, ``m.to(torch.float16)``, ``m = ....half()``) as
        dumped expressions, and whether the default dtype is set to fp16."""
        modules: set[str] = set()
        default_fp16 = False
        for call in self.all_calls:
            f = call.func
            q = self.qual(f) if isinstance(f, (ast.Name, ast.Attribute)) else None
            if q in SET_DEFAULT_DTYPE and call.args:
                if self.qual(call.args[0]) in FP16_DTYPES:
                    default_fp16 = True
                continue
            if not isinstance(f, ast.Attribute):
                continue
            is_half = f.attr == "half" and not call.args and not call.keywords
            if f.attr == "to":
                for a in [*call.args, *(k.value for k in call.keywords if k.arg == "dtype")]:
                    if isinstance(a, (ast.Name, ast.Attribute)) and self.qual(a) in FP16_DTYPES:
                        is_half = True
            if not is_half:
                continue
            modules.add(_dump(f.value))
            parent = self.r.parents.get(call)
            while isinstance(parent, ast.Call) or (
                isinstance(parent, ast.Attribute)
                and isinstance(self.r.parents.get(parent), ast.Call)
            ):
                parent = self.r.parents.get(parent)
            if isinstance(parent, ast.Assign):
                modules.update(_dump(t) for t in parent.targets)
        # x = model.half() ... then also the receiver chain root: Net().half() has no name
        return modules, default_fp16

    def _check_fp16_eps(self, oc: OptimizerCall, fp16: tuple[set[str], bool]) -> None:
        modules, default_fp16 = fp16
        if not oc.candidates or ("eps" not in oc.defaults and "eps" not in oc.args):
            return
        adam_family = all(
            n in knowledge.OPTIMIZERS
            and knowledge.get_info(n).family.value == "adaptive"
            and "betas" in knowledge.defaults(n).hparams
            for n in oc.candidates
        )
        if not adam_family:
            return
        params = oc.args.get("params", oc.args.get("model_or_params"))
        owner = self._parameter_owner(params, oc.scope)
        if isinstance(params, (ast.Name, ast.Attribute)) and owner is None:
            owner = _dump(params)  # create_optimizer(name, model) with a half model
        if not default_fp16 and (owner is None or owner not in modules):
            return
        eps = oc.value(self.r, "eps")
        floor = knowledge.FP16_MIN_EPS.value
        if not (_is_num(eps) and eps < floor):
            return
        target = oc.args.get("eps", oc.call)
        where = "torch.set_default_dtype(torch.float16)" if default_fp16 else "the model is fp16"
        self.add(
            "OW601",
            target,
            f"{oc.display} eps={_fmt(eps)} is below {floor:g} while the parameters are fp16 "
            f"({where}): eps rounds to 0 in fp16",
            data={"eps": eps},
        )

    # ------------------------------------------------------------------ loops

    def _units(self) -> Iterator[tuple[ast.AST, list[Event]]]:
        yield self.tree, self._events(self.tree.body)
        for scope in self.r.scopes:
            if isinstance(scope.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield scope.node, self._events(scope.node.body)

    def _duck_scalers(self) -> set[str]:
        keys: set[str] = set()
        for call in self.all_calls:
            f = call.func
            if isinstance(f, ast.Attribute) and f.attr == "backward":
                inner = f.value
                if (
                    isinstance(inner, ast.Call)
                    and isinstance(inner.func, ast.Attribute)
                    and inner.func.attr == "scale"
                ):
                    keys.add(_dump(inner.func.value))
            if isinstance(f, ast.Attribute) and f.attr in ("step", "unscale_", "scale"):
                o = self.obj(f.value)
                if o is not None and o.tag == "scaler":
                    keys.add(_dump(f.value))
        return keys

    @staticmethod
    def _is_zero_grad(call: ast.Call) -> bool:
        f = call.func
        if isinstance(f, ast.Attribute):
            if f.attr == "zero_grad":
                return True
            if f.attr in ("zero_", "detach_", "fill_") and isinstance(f.value, ast.Attribute):
                return f.value.attr == "grad"
        return False

    def _zero_grad_defs(self) -> set[str]:
        """Names of the functions of this file that clear gradients (zero_grad() or
        ``p.grad = None`` anywhere in them)."""
        names: set[str] = set()
        nodes: list[ast.AST] = [c for c in self.all_calls if self._is_zero_grad(c)]
        for node in [*nodes, *self.r.grad_assigns]:
            for parent in self.r.ancestors(node):
                if isinstance(parent, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(parent.name)
        return names

    def _events(self, body: Sequence[ast.stmt]) -> list[Event]:
        events: list[Event] = []
        self._collect(body, (), False, events)
        events.sort(key=lambda e: e.pos)
        return events

    def _inline(
        self, call: ast.Call, loops: tuple[ast.AST, ...], cond: bool, out: list[Event]
    ) -> bool:
        """The events of a function of this file called inside a loop, as if its body ran
        there (``for epoch ...: train(model, optimizer)`` then ``scheduler.step()``)."""
        if not loops or not isinstance(call.func, ast.Name) or len(self._inlining) >= 2:
            return False
        bs = self.r.lookup(call.func.id, self.r.scope_at(call))
        if len(bs) != 1 or bs[0].kind != "def":
            return False
        fn = bs[0].node
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or id(fn) in self._inlining:
            return False
        self._inlining.add(id(fn))
        try:
            inner: list[Event] = []
            self._collect(fn.body, loops, cond, inner)
        finally:
            self._inlining.discard(id(fn))
        site = (call.lineno, call.col_offset)
        for e in inner:
            e.site = e.site or site
        out.extend(inner)
        return True

    def _collect(
        self, body: Sequence[ast.stmt], loops: tuple[ast.AST, ...], cond: bool, out: list[Event]
    ) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if stmt.name in self.zero_grad_defs:
                    out.append(Event("zero_grad", stmt, loops, cond))
                continue
            if isinstance(stmt, ast.ClassDef):
                continue
            if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr == "grad" for t in stmt.targets
            ):
                out.append(Event("zero_grad", stmt, loops, cond))
            for call in self.r.stmt_calls.get(stmt, ()):
                if self._inline(call, loops, cond, out):
                    continue
                ev = self._classify(call, loops, cond)
                if ev is not None:
                    out.append(ev)
            if isinstance(stmt, (ast.For, ast.AsyncFor, ast.While)):
                self._collect(stmt.body, (*loops, stmt), False, out)
                self._collect(stmt.orelse, loops, True, out)
            elif isinstance(stmt, ast.If):
                self._collect(stmt.body, loops, True, out)
                self._collect(stmt.orelse, loops, True, out)
            elif isinstance(stmt, (ast.With, ast.AsyncWith)):
                self._collect(stmt.body, loops, cond, out)
            elif isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
                self._collect(stmt.body, loops, cond, out)  # type: ignore[attr-defined]
                for h in stmt.handlers:  # type: ignore[attr-defined]
                    self._collect(h.body, loops, True, out)
                self._collect(stmt.orelse, loops, cond, out)  # type: ignore[attr-defined]
                self._collect(stmt.finalbody, loops, cond, out)  # type: ignore[attr-defined]
            elif isinstance(stmt, ast.Match):
                for case in stmt.cases:
                    self._collect(case.body, loops, True, out)

    def _classify(self, call: ast.Call, loops: tuple[ast.AST, ...], cond: bool) -> Event | None:
        f = call.func
        if isinstance(f, ast.Attribute):
            recv = f.value
            if f.attr == "backward":
                scaled = None
                if (
                    isinstance(recv, ast.Call)
                    and isinstance(recv.func, ast.Attribute)
                    and recv.func.attr == "scale"
                    and _dump(recv.func.value) in self.scaler_keys
                ):
                    scaled = _dump(recv.func.value)
                return Event("backward", call, loops, cond, via_scaler=scaled)
            if self._is_zero_grad(call):
                return Event("zero_grad", call, loops, cond, key=_dump(recv))
            if f.attr == "step":
                key = _dump(recv)
                if key in self.scaler_keys:
                    if call.args:
                        return Event(
                            "opt_step", call, loops, cond, key=_dump(call.args[0]), via_scaler=key
                        )
                    return None
                o = self.obj(recv)
                if o is None:
                    return None
                if o.tag == "optimizer":
                    return Event("opt_step", call, loops, cond, key=key, obj=o)
                if o.tag == "scheduler":
                    return Event("sched_step", call, loops, cond, key=key, obj=o)
                return None
            if f.attr == "unscale_" and _dump(recv) in self.scaler_keys:
                return Event("unscale", call, loops, cond, key=_dump(recv))
        if isinstance(f, (ast.Name, ast.Attribute)):
            q = self.qual(f)
            if q in CLIP_FUNCTIONS:
                return Event("clip", call, loops, cond)
            if q == "torch.autograd.backward":
                return Event("backward", call, loops, cond)
        if isinstance(f, ast.Name) and f.id in self.zero_grad_defs:
            bindings = self.r.lookup(f.id, self.r.scope_at(call))
            if bindings and all(b.kind == "def" for b in bindings):
                return Event("zero_grad", call, loops, cond)
        return None

    def check_loops(self, unit: tuple[ast.AST, list[Event]]) -> None:
        _, events = unit
        if not events:
            return
        loops: list[ast.AST] = []
        for e in events:
            for loop in e.loops:
                if loop not in loops:
                    loops.append(loop)

        def inside(loop: ast.AST | None) -> list[Event]:
            if loop is None:
                return events
            return [e for e in events if loop in e.loops]

        def innermost_with(pred: Callable[[list[Event]], bool]) -> list[ast.AST | None]:
            found = [lp for lp in loops if pred(inside(lp))]
            result: list[ast.AST | None] = [
                lp
                for lp in found
                if not any(o is not lp and lp in self._chain(o, events) for o in found)
            ]
            if not found and pred(events):
                result.append(None)
            return result

        def has(kinds: str) -> Callable[[list[Event]], bool]:
            wanted = kinds.split()
            return lambda evs: all(any(e.kind == k for e in evs) for k in wanted)

        # OW501: backward and step in a loop that never clears gradients.
        for lp in innermost_with(has("backward opt_step")):
            if lp is None:
                continue
            evs = inside(lp)
            if not any(e.kind == "zero_grad" for e in evs):
                step = next(e for e in evs if e.kind == "opt_step")
                self.add(
                    "OW501",
                    step.node,
                    f"{_text(step.node.func)}() and backward() run in a loop that never clears "  # type: ignore[attr-defined]
                    "the gradients (no zero_grad())",
                )
        # OW503: zero_grad between the backward and the step of the same optimizer.
        for lp in innermost_with(has("backward opt_step zero_grad")):
            evs = [
                e
                for e in inside(lp)
                if not e.cond and (e.loops[-1:] == (lp,) if lp else not e.loops)
            ]
            for step in (e for e in evs if e.kind == "opt_step"):
                back = [e for e in evs if e.kind == "backward" and e.pos < step.pos]
                if not back:
                    continue
                for z in evs:
                    if (
                        z.kind == "zero_grad"
                        and back[-1].pos < z.pos < step.pos
                        and z.key == step.key
                    ):
                        self.add(
                            "OW503",
                            z.node,
                            f"{_text(z.node.func)}() between backward() and "  # type: ignore[attr-defined]
                            f"{_text(step.node.func)}() clears the gradients before the step",  # type: ignore[attr-defined]
                        )
        # OW304 and OW303: where the scheduler steps relative to the optimizer.
        for sched in (e for e in events if e.kind == "sched_step"):
            assert sched.obj is not None
            self._check_sched_order(sched, events)
        # OW502 / OW504: GradScaler loops.
        self._check_amp(events, inside)
        # OW505-OW507: gradient accumulation; OW308: a plateau schedule on the batch loss.
        self._check_accumulation(unit[0], events)
        self._check_plateau_metric(unit[0], events)
        self._check_lr_applied(unit[0], events)

    @staticmethod
    def _chain(loop: ast.AST, events: list[Event]) -> tuple[ast.AST, ...]:
        """The loops enclosing ``loop`` (outer first), from any event inside it."""
        for e in events:
            if loop in e.loops:
                return e.loops[: e.loops.index(loop)]
        return ()

    def _steps_for(self, sched: Event, steps: list[Event]) -> list[Event]:
        assert sched.obj is not None
        call = sched.obj.call
        opt_arg: ast.expr | None = None
        if call is not None:
            opt_arg = call.args[0] if call.args else None
            for kw in call.keywords:
                if kw.arg == "optimizer":
                    opt_arg = kw.value
        if opt_arg is not None:
            mine = [s for s in steps if s.key == _dump(opt_arg)]
            if mine:
                return mine
        return steps if len({s.key for s in steps}) == 1 else []

    def _check_sched_order(self, sched: Event, events: list[Event]) -> None:
        o = sched.obj
        assert o is not None
        steps = self._steps_for(sched, [e for e in events if e.kind == "opt_step"])
        ls = sched.loops
        if not steps or not ls:
            return
        # OW304: the innermost loop holding both steps runs the scheduler first.
        if not o.plateau:
            for loop in reversed(ls):
                same = [s for s in steps if loop in s.loops]
                if same:
                    first = min(same, key=lambda s: s.pos)
                    if sched.pos < first.pos:
                        self.add(
                            "OW304",
                            sched.node,
                            f"{_text(sched.node.func)}() is called before "  # type: ignore[attr-defined]
                            f"{_text(first.node.func)}() in the same loop",  # type: ignore[attr-defined]
                        )
                    break
        inner = ls[-1]
        direct = [s for s in steps if s.loops and s.loops[-1] is inner]
        # OW303: a per-batch schedule stepped in the loop around the batch loop.
        if o.per_batch:
            nested = [s for s in steps if inner in s.loops and s.loops[-1] is not inner]
            if nested and not direct:
                self.add(
                    "OW303",
                    sched.node,
                    f"{o.name} is stepped once per epoch (outer loop), but it is a per-batch "
                    "schedule and the optimizer steps in the inner loop",
                )
            return
        # OW303: an epoch-sized schedule stepped with the optimizer in the batch loop.
        length_arg = LENGTH_ARGS.get(o.name or "")
        if not length_arg or o.call is None or not direct or len(ls) < 2:
            return
        cls = _scheduler_class(f"torch.optim.lr_scheduler.{o.name}")
        length = self._bind(o.call, cls.sig if cls else None).get(length_arg)
        if length is None:
            return
        for outer in ls[:-1]:
            stop = self._range_stop(outer)
            if (
                stop is not None
                and _dump(stop) == _dump(length)
                and self.r.scope_at(stop) is self.r.scope_at(length)
            ):
                self.add(
                    "OW303",
                    sched.node,
                    f"{o.name}({length_arg}={_text(length)}) counts epochs but is stepped every "
                    "batch, so the schedule is over after the first epoch's batches",
                )
                return

    @staticmethod
    def _range_stop(loop: ast.AST) -> ast.expr | None:
        if isinstance(loop, (ast.For, ast.AsyncFor)) and isinstance(loop.iter, ast.Call):
            it = loop.iter
            if isinstance(it.func, ast.Name) and it.func.id == "range" and 1 <= len(it.args) <= 3:
                return it.args[0] if len(it.args) == 1 else it.args[1]
        return None

    def _check_amp(
        self, events: list[Event], inside: Callable[[ast.AST | None], list[Event]]
    ) -> None:
        def area_of(e: Event) -> list[Event]:
            return inside(e.loops[-1] if e.loops else None)

        # OW502: clipping between the scaled backward and the scaler step, before unscale_.
        for clip in (e for e in events if e.kind == "clip"):
            area = area_of(clip)
            scaled = [e for e in area if e.kind == "backward" and e.via_scaler and e.pos < clip.pos]
            if not scaled:
                continue
            scaler = scaled[-1].via_scaler
            later = [
                e
                for e in area
                if e.kind == "opt_step" and e.via_scaler == scaler and e.pos > clip.pos
            ]
            unscaled = [
                e for e in area if e.kind == "unscale" and e.key == scaler and e.pos < clip.pos
            ]
            if later and not unscaled:
                self.add(
                    "OW502",
                    clip.node,
                    f"{_text(clip.node.func)}() clips gradients that are still multiplied by "  # type: ignore[attr-defined]
                    "the loss scale",
                )
        # OW504: a scaled loss whose optimizer is stepped directly, not through the scaler.
        for step in (e for e in events if e.kind == "opt_step" and e.via_scaler is None):
            area = area_of(step)
            keys = {e.via_scaler for e in area if e.kind == "backward" and e.via_scaler}
            if not keys:
                continue
            through = [
                e
                for e in area
                if (e.kind == "opt_step" and e.via_scaler in keys)
                or (e.kind == "unscale" and e.key in keys)
            ]
            if not through:
                self.add(
                    "OW504",
                    step.node,
                    f"{_text(step.node.func)}() applies the gradients of a loss scaled by "  # type: ignore[attr-defined]
                    "GradScaler without scaler.step(): the update is multiplied by the loss "
                    "scale",
                )

    # ------------------------------------------------------------------ other rules

    def check_plateau(self) -> None:
        for call in self.all_calls:
            f = call.func
            if not (isinstance(f, ast.Attribute) and f.attr == "step"):
                continue
            if call.args or any(k.arg in ("metrics", None) for k in call.keywords):
                continue
            o = self.obj(f.value)
            if o is not None and o.tag == "scheduler" and o.plateau:
                self.add(
                    "OW305",
                    call,
                    f"{_text(f)}() on ReduceLROnPlateau without the monitored metric",
                )

    def check_lightning(self) -> None:
        for scope in self.r.scopes:
            node = scope.node
            if not (isinstance(node, ast.FunctionDef) and node.name == "configure_optimizers"):
                continue
            cls = self.r.enclosing_class(scope)
            if cls is None or not isinstance(cls.node, ast.ClassDef):
                continue
            if not any(self.r.qualname(b, cls.parent) in LIGHTNING_MODULES for b in cls.node.bases):
                continue
            for stmt in self._own_statements(node.body):
                if isinstance(stmt, ast.Return) and stmt.value is not None:
                    for sched, interval in self._lightning_schedulers(stmt.value, scope):
                        o = self.obj(sched, scope)
                        if o is None or o.tag != "scheduler" or not o.per_batch:
                            continue
                        value = UNKNOWN if interval is None else self.r.const(interval, scope)
                        if interval is None or value == "epoch":
                            self.add(
                                "OW303",
                                interval if interval is not None else sched,
                                f"{o.name} returned from configure_optimizers is stepped once "
                                "per epoch (Lightning's default interval); set "
                                '"interval": "step"',
                            )

    def _lightning_schedulers(
        self, value: ast.expr, scope: Scope
    ) -> Iterator[tuple[ast.expr, ast.expr | None]]:
        """(scheduler expression, interval expression or None) in a configure_optimizers
        return value."""
        if isinstance(value, ast.Dict):
            d = self._dict_items(value)
            if "lr_scheduler" in d:
                yield from self._lightning_schedulers(d["lr_scheduler"], scope)
            elif "scheduler" in d:
                yield d["scheduler"], d.get("interval")
            return
        if isinstance(value, (ast.Tuple, ast.List)):
            if len(value.elts) == 2 and isinstance(value, ast.Tuple):
                second = value.elts[1]
                if isinstance(second, (ast.List, ast.Tuple)):
                    for item in second.elts:
                        yield from self._lightning_schedulers(item, scope)
                    return
                if isinstance(second, ast.Dict):
                    yield from self._lightning_schedulers(second, scope)
                    return
            for item in value.elts:
                if isinstance(item, ast.Dict):
                    yield from self._lightning_schedulers(item, scope)
            return
        o = self.obj(value, scope)
        if o is not None and o.tag == "scheduler":
            yield value, None

    @staticmethod
    def _dict_items(d: ast.Dict) -> dict[str, ast.expr]:
        out: dict[str, ast.expr] = {}
        for k, v in zip(d.keys, d.values, strict=True):
            if isinstance(k, ast.Constant) and isinstance(k.value, str):
                out[k.value] = v
        return out

    def check_resume(self) -> None:
        saved = self._saved_checkpoints()
        if not saved:
            return
        for scope in self.r.scopes:
            ckpts: dict[str, ast.expr] = {}
            for name, bindings in scope.bindings.items():
                if len(bindings) == 1 and bindings[0].kind == "assign":
                    o = self.obj(bindings[0].value, scope)
                    if o is not None and o.tag == "checkpoint":
                        ckpts[name] = bindings[0].value  # type: ignore[assignment]
            if not ckpts:
                continue
            loads: dict[str, list[tuple[str, ast.Call]]] = {n: [] for n in ckpts}
            for call in self._scope_calls(scope):
                f = call.func
                if not (isinstance(f, ast.Attribute) and f.attr == "load_state_dict"):
                    continue
                if not call.args:
                    continue
                key = self._checkpoint_key(call.args[0])
                if key is not None and key[0] in loads:
                    loads[key[0]].append((key[1], call))
            for name, items in loads.items():
                loaded = {k for k, _ in items}
                for k, call in items:
                    for entries in saved:
                        if entries.get(k) != "model":
                            continue
                        for code, what in (("OW701", "optimizer"), ("OW702", "scheduler")):
                            missing = [kk for kk, kind in entries.items() if kind == what]
                            if missing and not (set(missing) & loaded):
                                self.add(
                                    code,
                                    call,
                                    f"resume restores {_text(call.func.value)} from "  # type: ignore[attr-defined]
                                    f"{name}[{k!r}] but not the {what} state saved in the same "
                                    f"checkpoint as {missing[0]!r}",
                                )
                        break

    def _stepped_optimizers(self) -> list[tuple[OptimizerCall, Event]]:
        """Optimizer constructions of this file with a step of theirs in a loop."""
        out: list[tuple[OptimizerCall, Event]] = []
        seen: set[int] = set()
        for _, events in self._units():
            for e in events:
                if e.kind != "opt_step" or not e.loops:
                    continue
                o = e.obj
                if o is None and e.via_scaler is not None:
                    args = getattr(e.node, "args", None)
                    o = self.obj(args[0]) if args else None
                call = o.call if o is not None else None
                if call is None or id(call) in seen:
                    continue
                oc = self.optimizer_call(call)
                if oc is not None:
                    seen.add(id(call))
                    out.append((oc, e))
        return out

    # ------------------------------------------------------------------ accumulation & co

    def _inner_if(self, e: Event) -> ast.If | None:
        """The innermost ``if`` around event ``e`` below its innermost loop."""
        stop = e.loops[-1] if e.loops else None
        for anc in self.r.ancestors(e.node):
            if anc is stop:
                return None
            if isinstance(anc, ast.If):
                return anc
        return None

    @staticmethod
    def _modulo_divisor(test: ast.expr) -> ast.expr | None:
        """``N`` in a test such as ``(i + 1) % N == 0``."""
        for node in ast.walk(test):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
                return node.right
        return None

    @staticmethod
    def _divides_by(area: ast.AST, divisor: ast.expr | None) -> bool:
        """Whether ``area`` divides something by ``divisor`` (or by a name that says it is
        the accumulation count)."""
        want = _dump(divisor) if divisor is not None else None
        for node in ast.walk(area):
            right = None
            if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.FloorDiv)):
                right = node.right
            elif isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Div, ast.FloorDiv)):
                right = node.value
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
                right = node.right if isinstance(node.right, ast.BinOp) else None
                if right is not None and not (
                    isinstance(right, ast.BinOp) and isinstance(right.op, ast.Div)
                ):
                    right = None
                right = right.right if isinstance(right, ast.BinOp) else None
            if right is None:
                continue
            if want is not None and _dump(right) == want:
                return True
            if "accum" in _text(right).lower():
                return True
        return False

    def _under_accumulate_context(self, node: ast.AST) -> bool:
        for anc in self.r.ancestors(node):
            if isinstance(anc, (ast.With, ast.AsyncWith)):
                for item in anc.items:
                    if "accumulate" in _text(item.context_expr) or "no_sync" in _text(
                        item.context_expr
                    ):
                        return True
        return False

    def _check_accumulation(self, unit: ast.AST, events: list[Event]) -> None:
        steps = [e for e in events if e.kind == "opt_step" and e.loops]
        backs = [e for e in events if e.kind == "backward" and e.loops]
        zeros = [e for e in events if e.kind == "zero_grad" and e.loops]
        for step in steps:
            loop = step.loops[-1]
            guard = self._inner_if(step) if step.cond else None
            divisor = self._modulo_divisor(guard.test) if guard is not None else None
            mine = [b for b in backs if loop in b.loops]
            if not mine:
                continue
            if divisor is not None:
                # OW507: zero_grad every micro-batch while the step waits for N of them.
                for z in zeros:
                    if z.loops[-1] is loop and not z.cond and z.key in (None, step.key):
                        self.add(
                            "OW507",
                            z.node,
                            f"{_text(getattr(z.node, 'func', z.node))}() runs every micro-batch "
                            f"but the optimizer steps every {_text(divisor)}: each step sees "
                            "only the last micro-batch's gradients; clear them right after "
                            "the step, inside the same condition",
                        )
                        break
                # OW505: accumulation by a count that says so, and no division by it.
                if "accum" in _text(divisor).lower() and not self._divides_by(loop, divisor):
                    back = mine[0]
                    self.add(
                        "OW505",
                        back.node,
                        f"gradients are accumulated over {_text(divisor)} micro-batches but the "
                        f"loss is not divided by {_text(divisor)}: the step uses their sum",
                    )
                continue
            # nanoGPT-style: backward in an inner `for micro in range(N)`, step after it.
            inner_loops = {b.loops[-1] for b in mine if b.loops[-1] is not loop}
            for inner in inner_loops:
                stop = self._range_stop(inner)
                if (
                    stop is not None
                    and "accum" in _text(stop).lower()
                    and not self._divides_by(inner, stop)
                ):
                    back = next(b for b in mine if b.loops[-1] is inner)
                    self.add(
                        "OW505",
                        back.node,
                        f"gradients are accumulated over range({_text(stop)}) micro-batches but "
                        f"the loss is not divided by {_text(stop)}: the step uses their sum",
                    )
            # OW506: the loss is divided for accumulation but every micro-batch steps.
            if (
                not step.cond
                and any(b.loops[-1] is loop for b in mine)
                and self._divides_by(loop, None)
                and not self._under_accumulate_context(step.node)
            ):
                self.add(
                    "OW506",
                    step.node,
                    f"the loss is divided for gradient accumulation but "
                    f"{_text(getattr(step.node, 'func', step.node))}() runs every micro-batch: "
                    "step only when (i + 1) % accumulation_steps == 0",
                )

    def _check_plateau_metric(self, unit: ast.AST, events: list[Event]) -> None:
        """OW308: ReduceLROnPlateau.step(metric) with the training loss."""
        backs = [e for e in events if e.kind == "backward"]
        loss_names = {
            _dump(b.node.func.value)
            for b in backs
            if isinstance(b.node, ast.Call) and isinstance(b.node.func, ast.Attribute)
        }
        step_loops = {e.loops[-1] for e in events if e.kind == "opt_step" and e.loops}
        for e in events:
            if e.kind != "sched_step" or e.obj is None or not e.obj.plateau:
                continue
            call = e.node
            assert isinstance(call, ast.Call)
            metric = call.args[0] if call.args else None
            for k in call.keywords:
                if k.arg == "metrics":
                    metric = k.value
            if metric is None:
                continue
            per_batch = bool(e.loops) and e.loops[-1] in step_loops
            base = metric
            while isinstance(base, ast.Call) and isinstance(base.func, ast.Attribute):
                base = base.func.value  # loss.item()
            if per_batch or _dump(base) in loss_names:
                self.add(
                    "OW308",
                    call,
                    f"{_text(call.func)}({_text(metric)}) feeds ReduceLROnPlateau the "
                    + ("batch loss every batch" if per_batch else "last training batch's loss")
                    + ": step it once per epoch with a validation metric",
                )

    def _check_lr_applied(self, unit: ast.AST, events: list[Event]) -> None:
        """OW309: ``lr = ...`` computed in the training loop and used only for logging."""
        loops = {lp for e in events if e.kind == "opt_step" for lp in e.loops}
        if not loops:
            return
        body = getattr(unit, "body", [])
        for stmt in self._own_statements(body):
            if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
                continue
            t = stmt.targets[0]
            if not (isinstance(t, ast.Name) and _LR_NAME.search(t.id)):
                continue
            if not any(lp in loops for lp in self.r.ancestors(stmt)):
                continue
            if _reads_lr(stmt.value):
                continue
            used = False
            for node in ast.walk(unit if isinstance(unit, ast.AST) else stmt):
                if (
                    isinstance(node, ast.Name)
                    and node.id == t.id
                    and isinstance(node.ctx, ast.Load)
                    and not self._only_logged(node)
                ):
                    used = True
                    break
            if not used:
                self.add(
                    "OW309",
                    stmt,
                    f"{t.id} is computed in the training loop but never written to the "
                    "optimizer: set it on every param group (for g in "
                    f"optimizer.param_groups: g['lr'] = {t.id})",
                )

    def _only_logged(self, node: ast.AST) -> bool:
        for anc in self.r.ancestors(node):
            if isinstance(anc, ast.JoinedStr):
                return True
            if isinstance(anc, ast.Call):
                name = _text(anc.func).rsplit(".", 1)[-1]
                if name in _LOG_CALLS:
                    return True
            if isinstance(anc, ast.stmt):
                return False
        return False

    def check_recreated_optimizer(self) -> None:
        """OW508: an optimizer built inside the epoch loop whose steps run inside it."""
        steps: dict[int, list[Event]] = {}
        for _, events in self._units():
            for e in events:
                if e.kind == "opt_step" and e.obj is not None and e.obj.call is not None:
                    steps.setdefault(id(e.obj.call), []).append(e)
        for call in self.all_calls:
            if id(call) not in steps:
                continue
            for anc in self.r.ancestors(call):
                if isinstance(anc, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    break
                if not isinstance(anc, (ast.For, ast.AsyncFor)):
                    continue
                epochish = (
                    "epoch" in _text(anc.target).lower() or "epoch" in _text(anc.iter).lower()
                )
                if epochish and any(anc in e.loops for e in steps[id(call)]):
                    self.add(
                        "OW508",
                        call,
                        f"the optimizer is built inside `for {_text(anc.target)} in "
                        f"{_text(anc.iter)}`: its state (momentum, Adam moments) restarts every "
                        "epoch; build it once before the loop",
                    )
                    break

    def _is_linear_model(self, oc: OptimizerCall) -> bool:
        owner = self._parameter_owner(oc.args.get("params"), oc.scope)
        if owner is None:
            return False
        bs = self.r.lookup(owner, oc.scope) if "." not in owner else []
        return (
            len(bs) == 1
            and bs[0].kind == "assign"
            and isinstance(bs[0].value, ast.Call)
            and self.r.qualname(bs[0].value.func, bs[0].scope) == "torch.nn.Linear"
        )

    def check_schedule_presence(self) -> None:
        """OW301 (transformer, Adam-family, nothing that warms up) and OW307 (SGD over a
        run of known length with no schedule at all)."""
        stepped = self._stepped_optimizers()
        if not stepped:
            return
        facts = _FileFacts(self)
        adaptive = [
            oc
            for oc, _ in stepped
            if oc.candidates
            and all(
                n in knowledge.OPTIMIZERS and knowledge.get_info(n).family.value == "adaptive"
                for n in oc.candidates
            )
        ]
        if facts.transformer and adaptive and not facts.warmup_possible():
            oc = adaptive[0]
            self.add(
                "OW301",
                oc.call,
                f"{oc.display} trains a transformer ({facts.transformer}) with no LR warmup: "
                "add a linear warmup over the first 1-10% of the steps (e.g. "
                "transformers.get_linear_schedule_with_warmup or "
                "optiwise.create_scheduler('warmup_cosine', ...))",
            )
        if len(stepped) != 1 or facts.rl or facts.trainer:
            return
        oc, step = stepped[0]
        if facts.schedulers or facts.lr_writes or facts.warmup_possible():
            return
        if any(w in facts.words for w in ("scheduler", "lr_scheduler", "adjust_learning_rate")):
            return
        if not oc.candidates or not all(n.startswith("sgd") for n in oc.candidates):
            return
        if self._is_linear_model(oc):
            return  # a linear/convex model: a constant LR is a fine choice there
        epochs = next((self._range_stop(lp) for lp in step.loops if self._range_stop(lp)), None)
        if epochs is None or len(step.loops) < 2:
            return
        standard = knowledge.task_info("vision_cnn").schedule.value
        self.add(
            "OW307",
            oc.call,
            f"{oc.display}'s LR stays constant for the whole run (range({_text(epochs)}) epochs, "
            f"no scheduler): decay it, e.g. {standard} "
            "(torch.optim.lr_scheduler.CosineAnnealingLR stepped once per epoch)",
        )

    def check_resume_loads(self) -> None:
        """OW701/OW702/OW703 for a resume (a checkpoint whose epoch/step is read, or a load
        under ``if ...resume...``) that restores the model but never the optimizer,
        scheduler or GradScaler state, whatever the checkpoint holds."""
        objs = [
            self.obj(c) for c in self.all_calls if isinstance(c.func, (ast.Name, ast.Attribute))
        ]
        tags = {o.tag for o in objs if o is not None}
        for c in self.all_calls:  # an optimizer built elsewhere (model.configure_optimizers())
            f = c.func
            if (
                isinstance(f, ast.Attribute)
                and f.attr in ("step", "zero_grad")
                and "optim" in _text(f.value).lower()
            ):
                tags.add("optimizer")
        if "optimizer" not in tags:
            return
        loaded: set[str] = set()
        model_loads: list[tuple[ast.Call, str]] = []
        for call in self.all_calls:
            f = call.func
            if not (isinstance(f, ast.Attribute) and f.attr in ("load_state_dict", "load")):
                continue
            o = self.obj(f.value)
            name = _text(f.value).lower()
            if o is not None and o.tag in ("optimizer", "scheduler", "scaler"):
                loaded.add(o.tag)
            elif "optim" in name:
                loaded.add("optimizer")
            elif "sched" in name:
                loaded.add("scheduler")
            elif "scaler" in name:
                loaded.add("scaler")
            elif f.attr == "load_state_dict" and call.args and self._is_resume_load(call):
                model_loads.append((call, _text(f.value)))
        if not model_loads:
            return
        call, model = model_loads[0]
        for code, tag, what in (
            ("OW701", "optimizer", "optimizer"),
            ("OW702", "scheduler", "scheduler"),
            ("OW703", "scaler", "GradScaler"),
        ):
            if tag in tags and tag not in loaded:
                self.add(
                    code,
                    call,
                    f"the resume restores {model} but the script never loads the {what} "
                    f"state: load {what.lower() if tag != 'scaler' else 'scaler'}.state_dict() "
                    "from the checkpoint too (and save it there)",
                )

    def _is_resume_load(self, call: ast.Call) -> bool:
        root: ast.expr = call.args[0]
        for _ in range(4):  # state_dict = checkpoint["model"]; model.load_state_dict(state_dict)
            while isinstance(root, (ast.Subscript, ast.Call, ast.Attribute)):
                root = root.value if not isinstance(root, ast.Call) else root.func
            if not isinstance(root, ast.Name):
                break
            o = self.obj(root)
            if o is not None and o.tag == "checkpoint":
                break
            bs = self.r.lookup(root.id, self.r.scope_at(root))
            if len(bs) == 1 and bs[0].kind == "assign" and bs[0].value is not None:
                root = bs[0].value
            else:
                break
        ckpt = root.id if isinstance(root, ast.Name) else None
        if ckpt is not None:
            o = self.obj(root)
            if o is None or o.tag != "checkpoint":
                return False
        else:
            return False
        for anc in self.r.ancestors(call):
            if isinstance(anc, ast.If) and any(
                w in _text(anc.test).lower() for w in ("resume", "restore", "continue")
            ):
                return True
            if isinstance(anc, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                w in anc.name.lower() for w in ("resume", "restore")
            ):
                return True
        for node in ast.walk(self.tree):
            if (
                isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Name)
                and node.value.id == ckpt
                and isinstance(node.slice, ast.Constant)
                and isinstance(node.slice.value, str)
                and node.slice.value.lower() in _PROGRESS_KEYS
            ):
                return True
        return False

    def _scope_calls(self, scope: Scope) -> Iterator[ast.Call]:
        body = getattr(scope.node, "body", None)
        for stmt in body if isinstance(body, list) else []:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            yield from _calls(stmt)

    @staticmethod
    def _checkpoint_key(expr: ast.expr) -> tuple[str, str] | None:
        if (
            isinstance(expr, ast.Subscript)
            and isinstance(expr.value, ast.Name)
            and isinstance(expr.slice, ast.Constant)
            and isinstance(expr.slice.value, str)
        ):
            return expr.value.id, expr.slice.value
        if (
            isinstance(expr, ast.Call)
            and isinstance(expr.func, ast.Attribute)
            and expr.func.attr == "get"
            and isinstance(expr.func.value, ast.Name)
            and expr.args
            and isinstance(expr.args[0], ast.Constant)
            and isinstance(expr.args[0].value, str)
        ):
            return expr.func.value.id, expr.args[0].value
        return None

    def _saved_checkpoints(self) -> list[dict[str, str]]:
        """For every ``torch.save({...}, path)`` in the file: key -> what its value is the
        state of ("model", "optimizer", "scheduler", or "other")."""
        out: list[dict[str, str]] = []
        for call in self.all_calls:
            if not isinstance(call.func, (ast.Name, ast.Attribute)):
                continue
            if self.qual(call.func) not in TORCH_SAVE or not call.args:
                continue
            scope = self.r.scope_at(call)
            d = call.args[0]
            if isinstance(d, ast.Name):
                bs = self.r.lookup(d.id, scope)
                if len(bs) == 1 and bs[0].kind == "assign" and isinstance(bs[0].value, ast.Dict):
                    d = bs[0].value
            if not isinstance(d, ast.Dict):
                continue
            entries: dict[str, str] = {}
            for k, v in self._dict_items(d).items():
                kind = "other"
                if (
                    isinstance(v, ast.Call)
                    and isinstance(v.func, ast.Attribute)
                    and v.func.attr == "state_dict"
                ):
                    o = self.obj(v.func.value, scope)
                    if o is None:
                        owner = v.func.value
                        kind = "model" if isinstance(owner, (ast.Name, ast.Attribute)) else "other"
                        # an unresolved receiver may still be an optimizer: only call it the
                        # model when it is the owner of parameters somewhere in the file
                        if kind == "model" and not self._is_module(owner):
                            kind = "other"
                    elif o.tag in ("optimizer", "scheduler"):
                        kind = o.tag
                entries[k] = kind
            if entries:
                out.append(entries)
        return out

    def _is_module(self, expr: ast.expr) -> bool:
        return _dump(expr) in self.param_owners


class _FileFacts:
    """Whole-file evidence used by the rules about what is absent (no warmup, no schedule)."""

    def __init__(self, a: Analyzer) -> None:
        self.words: set[str] = set()
        self.lr_writes = False
        self.schedulers: list[Obj] = []
        self.transformer: str | None = None
        self.rl = False
        self.trainer = False
        for node in ast.walk(a.tree):
            if isinstance(node, ast.Name):
                self.words.add(node.id.lower())
            elif isinstance(node, ast.Attribute):
                self.words.add(node.attr.lower())
            elif isinstance(node, ast.arg) or (isinstance(node, ast.keyword) and node.arg):
                self.words.add(str(node.arg).lower())
            elif (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and len(node.value) < 80
            ):
                self.words.add(node.value.lower())
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.words.add(node.name.lower())
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    if _is_lr_target(t):
                        self.lr_writes = True
            if isinstance(node, ast.ClassDef):
                bases = [a.r.qualname(b) or _text(b) for b in node.bases]
                if any(re.search(_TRANSFORMER_NAMES, b) for b in bases) or (
                    re.search(_TRANSFORMER_NAMES, node.name)
                    and any(b.endswith(("Module", "nn.Module")) for b in bases)
                ):
                    self.transformer = self.transformer or node.name
        for imp in (n for n in ast.walk(a.tree) if isinstance(n, (ast.Import, ast.ImportFrom))):
            mods = [al.name for al in imp.names] if isinstance(imp, ast.Import) else [imp.module]
            for m in mods:
                top = (m or "").split(".")[0]
                if top in ("gym", "gymnasium", "stable_baselines3", "dm_control", "rlkit"):
                    self.rl = True
            if (
                isinstance(imp, ast.ImportFrom)
                and (imp.module or "").startswith(
                    ("transformers", "lightning", "pytorch_lightning", "accelerate.", "trl")
                )
                and any(al.name.endswith("Trainer") for al in imp.names)
            ):
                self.trainer = True
        for call in a.all_calls:
            q = a.qual(call.func) if isinstance(call.func, (ast.Name, ast.Attribute)) else None
            if q and self.transformer is None:
                if q.startswith("transformers."):
                    self.transformer = _hf_model_name(q)
                elif q in _TORCH_TRANSFORMERS:
                    self.transformer = q
                elif q == "timm.create_model" and call.args:
                    name = a.r.const(call.args[0])
                    if isinstance(name, str) and re.match(r"(vit|deit|swin|beit|eva)", name):
                        self.transformer = name
            if isinstance(call.func, ast.Attribute) and call.func.attr == "from_pretrained":
                base = (
                    a.qual(call.func.value)
                    if isinstance(call.func.value, (ast.Name, ast.Attribute))
                    else None
                )
                if base and base.startswith("transformers."):
                    self.transformer = self.transformer or _hf_model_name(base)
            if q and q.startswith(("transformers.Trainer", "transformers.Seq2SeqTrainer")):
                self.trainer = True
            o = a.obj(call) if q else None
            if o is not None and o.tag == "scheduler":
                self.schedulers.append(o)

    def warmup_possible(self) -> bool:
        """Whether anything in the file may warm the LR up (a warmup schedule or a name that
        says so, a schedule of the user's own function, LR writes)."""
        if self.lr_writes or self.trainer or any("warmup" in w for w in self.words):
            return True
        for o in self.schedulers:
            name = (o.name or "").lower()
            if not name or "warmup" in name or o.name in _MAY_WARM:
                return True
        return False


_TRANSFORMER_NAMES = (
    r"(Transformer|GPT|Bert|BERT|Roberta|Llama|T5|Bart|ViT|VisionTransformer|Deit|Swin|Mistral"
    r"|Qwen|Gemma|Phi|OPT|Bloom|Electra|Albert|Distil|XLM|Whisper|Wav2Vec|CLIP|Gpt|Falcon)"
)
_NOT_MODELS = (
    "Tokenizer",
    "TokenizerFast",
    "Config",
    "Processor",
    "FeatureExtractor",
    "Trainer",
    "Arguments",
    "Collator",
    "Pipeline",
)


def _hf_model_name(qualname: str) -> str | None:
    """The model class a ``transformers.*`` name builds (``AutoModelForCausalLM``,
    ``BertModel``, ``GPT2LMHeadModel``), None for tokenizers, configs and the rest."""
    parts = [p for p in qualname.split(".")[1:] if p not in ("from_pretrained", "from_config")]
    name = parts[-1] if parts else ""
    if not name[:1].isupper() or name.endswith(_NOT_MODELS):
        return None
    if name.startswith("AutoModel") or (
        re.search(_TRANSFORMER_NAMES, name) and ("Model" in name or "For" in name)
    ):
        return name
    return None


_TORCH_TRANSFORMERS = {
    "torch.nn.Transformer",
    "torch.nn.TransformerEncoder",
    "torch.nn.TransformerDecoder",
    "torch.nn.TransformerEncoderLayer",
    "torch.nn.TransformerDecoderLayer",
}
# Schedules that warm up, or may (a user function, a chain of schedules).
_MAY_WARM = {
    "OneCycleLR",
    "LinearLR",
    "LambdaLR",
    "MultiplicativeLR",
    "SequentialLR",
    "ChainedScheduler",
    "CyclicLR",
}


# Methods that return the objects they are given, wrapped (accelerate, Lightning Fabric).
_WRAPPER_METHODS = {
    "prepare",
    "prepare_optimizer",
    "prepare_scheduler",
    "setup",
    "setup_optimizers",
}
_WRAPPER_CLASSES = {
    "accelerate.Accelerator",
    "accelerate.accelerator.Accelerator",
    "lightning.Fabric",
    "lightning.fabric.Fabric",
    "lightning_fabric.Fabric",
}


_PROGRESS_KEYS = {"epoch", "step", "iter", "iteration", "global_step", "iter_num", "start_epoch"}
_LR_NAME = re.compile(r"(^|_)(lr|learning_rate)$", re.IGNORECASE)
_LOG_CALLS = {
    "print",
    "log",
    "info",
    "debug",
    "warning",
    "add_scalar",
    "add_scalars",
    "set_postfix",
    "set_description",
    "write",
    "format",
    "log_metrics",
    "log_dict",
    "append",
}


def _reads_lr(value: ast.expr) -> bool:
    """Whether ``value`` reads the LR the optimizer or scheduler already has."""
    text = _text(value)
    return any(k in text for k in ("param_groups", "get_last_lr", "get_lr()", "scheduler", "sched"))


def _is_lr_target(t: ast.expr) -> bool:
    if isinstance(t, ast.Subscript):
        sl = t.slice
        return isinstance(sl, ast.Constant) and sl.value in ("lr", "learning_rate")
    return (
        isinstance(t, ast.Attribute)
        and t.attr == "lr"
        and not (
            isinstance(t.value, ast.Name)
            and t.value.id in ("args", "config", "cfg", "opt", "hparams")
        )
    )


def analyze(tree: ast.Module) -> list[Raw]:
    """Every raw finding in ``tree``."""
    return Analyzer(tree).run()
