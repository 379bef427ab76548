"""The static rules of ``optiwise lint``, run over one parsed module.

The rules see objects only where the file itself says what they are: a constructor call
(``torch.optim.Adam(...)``, ``OneCycleLR(...)``, ``GradScaler()``, ``torch.load(...)``,
``optiwise.create_optimizer("adam", ...)``), a name or ``self.attr`` bound to one, a
function of the same file that returns one, or a parameter annotated with its type.
Values count only when they are literals (or names bound once to literals).  Nothing is
reported about what cannot be resolved.
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from optiwise import knowledge
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


@functools.cache
def _torch_object(qualname: str) -> Any:
    """The object behind a ``torch.*``/``optiwise.*`` qualified name, or None.  Only
    packages already imported are looked into; nothing of the linted code is imported."""
    import importlib
    import sys

    parts = qualname.split(".")
    if parts[0] not in ("torch", "optiwise"):
        return None
    for i in range(len(parts), 0, -1):
        mod_name = ".".join(parts[:i])
        if mod_name in sys.modules or i == 1:
            try:
                obj: Any = sys.modules.get(mod_name) or importlib.import_module(mod_name)
            except Exception:
                return None
            for attr in parts[i:]:
                obj = getattr(obj, attr, None)
                if obj is None:
                    return None
            return obj
    return None  # pragma: no cover


@functools.cache
def _optimizer_class(qualname: str) -> type | None:
    import torch

    obj = _torch_object(qualname)
    ok = inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer)
    return obj if ok and obj is not torch.optim.Optimizer else None


@functools.cache
def _scheduler_class(qualname: str) -> type | None:
    from torch.optim import lr_scheduler as tls

    obj = _torch_object(qualname)
    if inspect.isclass(obj) and issubclass(obj, (tls.LRScheduler, tls.ReduceLROnPlateau)):
        return obj
    return None


@functools.cache
def _registry_names(cls: type) -> tuple[str, ...]:
    """Canonical registry names built with class ``cls`` (SGD has three)."""
    from optiwise.optim.registry import get_entry, list_optimizers

    return tuple(n for n in list_optimizers() if get_entry(n).factory is cls)


@functools.cache
def _signature(fn: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):  # pragma: no cover
        return None


def _canonical_optimizer(name: str) -> str | None:
    from optiwise.optim.registry import canonical_name

    try:
        return canonical_name(name)
    except (ValueError, TypeError):
        return None


def _canonical_schedule(name: str) -> str | None:
    from optiwise.schedules import _canonical_schedule as canon

    try:
        return canon(name)
    except ValueError:
        return None


def _fmt(x: Any) -> str:
    return f"{x:g}" if isinstance(x, float) else repr(x)


# ------------------------------------------------------------------------------------------
# Objects the rules reason about
# ------------------------------------------------------------------------------------------


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
    cls: type | None  # torch/optiwise class, None for create_optimizer
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

    @property
    def pos(self) -> tuple[int, int]:
        return (getattr(self.node, "lineno", 0), getattr(self.node, "col_offset", 0))


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

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.r = Resolver(tree)
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
        self.scaler_keys = self._duck_scalers()
        self.zero_grad_defs = self._zero_grad_defs()

    # ------------------------------------------------------------------ resolution

    def qual(self, expr: ast.expr) -> str | None:
        return self.r.qualname(expr)

    def obj(self, expr: ast.expr | None, scope: Scope | None = None, depth: int = 0) -> Obj | None:
        """What ``expr`` is (optimizer, scheduler, scaler, checkpoint), or None."""
        if expr is None or depth > 8:
            return None
        key = id(expr)
        if key in self._obj_cache:
            return self._obj_cache[key]
        if key in self._in_progress:
            return None
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
        return self.obj(value, scope, depth + 1)

    def _binding_obj(self, b: Binding, depth: int) -> Obj | bool | None:
        if b.kind == "assign" and b.value is not None:
            return self._value_obj(b.value, b.scope, depth)
        if b.kind == "param" and b.annotation is not None:
            return self._annotation_obj(b.annotation, b.scope)
        return None

    @staticmethod
    def _merge(objs: Iterable[Obj | bool | None]) -> Obj | None:
        found: list[Obj] = []
        for o in objs:
            if o is True:
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
        if _optimizer_class(q) is not None:
            return Obj("optimizer", _optimizer_class(q).__name__)  # type: ignore[union-attr]
        cls = _scheduler_class(q)
        if cls is not None:
            return self._scheduler_obj(cls.__name__, None)
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
                return self._scheduler_obj(cls.__name__, call)
        if isinstance(call.func, ast.Name):
            for b in self.r.lookup(call.func.id, scope):
                if b.kind == "def" and isinstance(b.node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    return self._returns_obj(b.node, depth)
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
            from optiwise.optim.registry import create_optimizer, get_entry, resolve_optimizer

            sig = _signature(create_optimizer)
            args = self._bind(call, sig)
            name = self.r.const(args.get("name"), scope)
            canon = _canonical_optimizer(name) if isinstance(name, str) else None
            if canon is None:
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
            try:
                spec = resolve_optimizer(
                    canon, task=task, **{k: v for k, v in given.items() if v is not UNKNOWN}
                )
            except (ValueError, TypeError):
                return None
            return OptimizerCall(
                call,
                scope,
                knowledge.get_info(canon).display,
                (canon,),
                None,
                args,
                {**dict(spec.hparams), **dict(get_entry(canon).fixed)},
                opaque,
                task,
                args.get("name"),
            )
        cls = _optimizer_class(q)
        if cls is None:
            return None
        sig = _signature(cls)
        args = self._bind(call, sig)
        defaults = {}
        if sig is not None:
            defaults = {n: p.default for n, p in sig.parameters.items() if p.default is not p.empty}
        names = _registry_names(cls)
        oc = OptimizerCall(call, scope, cls.__name__, names, cls, args, defaults, opaque)
        if len(names) > 1:  # SGD: keep the registry variants its arguments allow
            from optiwise.optim.registry import get_entry

            fits = []
            for n in names:
                ok = True
                for k, v in get_entry(n).fixed.items():
                    got = oc.value(self.r, k)
                    if got is not UNKNOWN and got != v:
                        ok = False
                if ok:
                    fits.append(n)
            oc.candidates = tuple(fits) or names
        return oc

    @staticmethod
    def _bind(call: ast.Call, sig: inspect.Signature | None) -> dict[str, ast.expr]:
        args: dict[str, ast.expr] = {}
        if sig is not None:
            positional = [
                n
                for n, p in sig.parameters.items()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and n != "self"
            ]
            for name, value in zip(positional, call.args, strict=False):
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
        fp16 = self._fp16_modules()
        overrides = self._lr_overrides()
        for call in self.all_calls:
            if isinstance(call.func, (ast.Name, ast.Attribute)):
                oc = self.optimizer_call(call)
                if oc is not None:
                    self.check_optimizer(oc, fp16)
        for max_lr, oc in overrides:
            self._check_lr(oc, max_lr, "max_lr")
        for unit in self._units():
            self.check_loops(unit)
        self.check_plateau()
        self.check_lightning()
        self.check_resume()
        return self.out

    # ------------------------------------------------------------------ constructor rules

    def check_optimizer(self, oc: OptimizerCall, fp16: tuple[set[str], bool]) -> None:
        self._check_coupled_decay(oc)
        self._check_nesterov(oc)
        self._check_lr(oc)
        self._check_whole_model_decay(oc)
        self._check_fp16_eps(oc, fp16)

    def _check_coupled_decay(self, oc: OptimizerCall) -> None:
        if not oc.candidates or not set(oc.candidates) <= COUPLED_DECAY:
            return
        wd = oc.value(self.r, "weight_decay")
        if not (_is_num(wd) and wd > 0):
            return
        if "decoupled_weight_decay" in oc.args or "decoupled_weight_decay" in oc.defaults:
            if oc.value(self.r, "decoupled_weight_decay") is not False:
                return  # decoupled already, or cannot tell
        elif oc.opaque:
            return
        canon = oc.candidates[0]
        factory: Any = oc.cls
        if factory is None:
            from optiwise.optim.registry import get_entry

            factory = get_entry(canon).factory
        sig = _signature(factory)
        has_decoupled = sig is not None and "decoupled_weight_decay" in sig.parameters
        edits: tuple[Edit, ...]
        kind: FixKind | None = None
        if canon != "adam" and has_decoupled:
            fix_text = "pass decoupled_weight_decay=True (AdamW-style decay), or use AdamW"
            edits = (self._keyword_edit(oc.call, "decoupled_weight_decay", "True"),)
            kind = "safe"
        else:
            fix_text = "use AdamW (decoupled weight decay) with the same weight_decay"
            if canon == "adamax":
                fix_text += " (AdamW's second moment is an average of squares, not a max)"
            edits = self._adamw_edits(oc)
            if edits:
                kind = "safe" if canon == "adam" else "unsafe"
        self.add(
            "OW101",
            oc.call,
            f"{oc.display} with weight_decay={_fmt(wd)} adds an L2 term that the adaptive "
            "denominator rescales, not weight decay",
            fix_kind=kind,
            edits=edits,
            fix_text=fix_text,
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
            params = oc.args.get("params", oc.args.get("model_or_params"))
            if isinstance(params, (ast.List, ast.Tuple)):
                for group in params.elts:
                    if isinstance(group, ast.Dict):
                        for k, v in zip(group.keys, group.values, strict=True):
                            if isinstance(k, ast.Constant) and k.value == "lr":
                                targets.append((v, self.r.const(v, oc.scope)))
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
            if cls is None or cls.__name__ not in OVERRIDES_LR | MULTIPLICATIVE_TORCH:
                continue
            args = self._bind(call, _signature(cls))
            o = self.obj(args.get("optimizer"))
            if o is None or o.tag != "optimizer" or o.call is None:
                continue
            self._lr_overridden.add(id(o.call))
            oc = self.optimizer_call(o.call)
            if cls.__name__ in OVERRIDES_LR and "max_lr" in args and oc is not None:
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
        self.add(
            "OW401",
            params,
            f"weight_decay={_fmt(wd)} on {_text(params)} passed whole also decays biases and "
            "normalization weights",
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
        length = self._bind(o.call, _signature(cls) if cls else None).get(length_arg)
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


def analyze(tree: ast.Module) -> list[Raw]:
    """Every raw finding in ``tree``."""
    return Analyzer(tree).run()
