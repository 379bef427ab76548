"""Name resolution for the script linter: scopes, imports, constants.

Everything here is static and conservative: a name resolves only when every binding of it
in its scope agrees; anything dynamic (a function parameter, ``args.lr``, a loop variable)
resolves to nothing, so the rules built on top report nothing for it.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["UNKNOWN", "Binding", "Resolver", "Scope"]


class _Unknown:
    """The value of an expression that cannot be known statically."""

    _instance: _Unknown | None = None

    def __new__(cls) -> _Unknown:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN: Any = _Unknown()

BindingKind = Literal["import", "assign", "param", "def", "class", "unpack", "other"]


@dataclass
class Binding:
    """One way a name gets a value in a scope."""

    kind: BindingKind
    scope: Scope
    value: ast.expr | None = None  # assign: the assigned expression
    qualname: str | None = None  # import: the dotted target
    node: ast.AST | None = None  # import: the Import/ImportFrom; def/class: the definition
    annotation: ast.expr | None = None  # param / annotated name
    name: str | None = None  # param: its name (node is then the function)
    index: int | None = None  # unpack: position in the unpacked call result


@dataclass
class Scope:
    """A module, class or function (lambda) scope."""

    node: ast.AST
    kind: Literal["module", "class", "function"]
    parent: Scope | None
    bindings: dict[str, list[Binding]] = field(default_factory=dict)
    global_names: set[str] = field(default_factory=set)
    # class scopes: attributes assigned as ``self.name = value`` in its methods
    self_attrs: dict[str, list[tuple[ast.expr | None, Scope]]] = field(default_factory=dict)

    def add(self, name: str, binding: Binding) -> None:
        """Record ``binding`` for ``name`` (in the module scope if declared global)."""
        target = self
        if name in self.global_names:
            while target.parent is not None:
                target = target.parent
        target.bindings.setdefault(name, []).append(binding)


_MAX_DEPTH = 12


class Resolver:
    """Scopes and bindings of one module, with lookups used by the lint rules."""

    def __init__(self, tree: ast.Module, base_dir: str | None = None) -> None:
        self.tree = tree
        self.base_dir = base_dir  # folder of the linted file: config files are read there
        self.parents: dict[ast.AST, ast.AST] = {}
        self.scope_of_node: dict[ast.AST, Scope] = {}
        self._scope_cache: dict[ast.AST, Scope] = {}
        self.module_scope = Scope(tree, "module", None)
        self.scopes: list[Scope] = [self.module_scope]
        self.name_loads: dict[str, int] = {}
        self.calls: list[ast.Call] = []  # every call, in source order
        # calls by the statement they belong to (not inside a nested statement or lambda)
        self.stmt_calls: dict[ast.stmt, list[ast.Call]] = {}
        self.grad_assigns: list[ast.Assign] = []  # ``x.grad = ...``
        # names whose value is changed in place (``d[k] = v``, ``d.update()``), and
        # (name, attribute) pairs assigned (``args.lr = ...``)
        self.mutated: set[str] = set()
        self.mutated_attrs: set[tuple[str, str]] = set()
        self._arg_defaults: dict[str, Any] | None = None
        self._parsed_names: set[str] | None = None
        self._files: dict[str, Any] = {}
        _Builder(self).run()

    # ---------------------------------------------------------------- structure

    def scope_at(self, node: ast.AST) -> Scope:
        """The innermost scope whose code contains ``node``."""
        seen: list[ast.AST] = []
        cur: ast.AST | None = node
        scope: Scope | None = None
        while cur is not None:
            scope = self.scope_of_node.get(cur) or self._scope_cache.get(cur)
            if scope is not None:
                break
            seen.append(cur)
            cur = self.parents.get(cur)
        scope = scope or self.module_scope
        for n in seen:
            self._scope_cache[n] = scope
        return scope

    def ancestors(self, node: ast.AST) -> Iterator[ast.AST]:
        """Parents of ``node``, innermost first."""
        cur = self.parents.get(node)
        while cur is not None:
            yield cur
            cur = self.parents.get(cur)

    def enclosing_class(self, scope: Scope) -> Scope | None:
        """For a method scope, the scope of its class."""
        parent = scope.parent
        if scope.kind == "function" and parent is not None and parent.kind == "class":
            return parent
        return None

    # ---------------------------------------------------------------- bindings

    def lookup(self, name: str, scope: Scope) -> list[Binding]:
        """The bindings ``name`` can refer to when used in ``scope`` (Python's rules: class
        scopes are skipped from nested functions); empty for builtins and unknown names."""
        if name in scope.global_names:
            return self.module_scope.bindings.get(name, [])
        cur: Scope | None = scope
        first = True
        while cur is not None:
            if (first or cur.kind != "class") and name in cur.bindings:
                return cur.bindings[name]
            first = False
            cur = cur.parent
        return []

    def self_name(self, scope: Scope) -> str | None:
        """Name of the first parameter of a method (``self``), None elsewhere."""
        if self.enclosing_class(scope) is None:
            return None
        node = scope.node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                if isinstance(deco, ast.Name) and deco.id == "staticmethod":
                    return None
            args = [*node.args.posonlyargs, *node.args.args]
            if args:
                return args[0].arg
        return None

    def self_attr_values(
        self, expr: ast.expr, scope: Scope
    ) -> list[tuple[ast.expr | None, Scope]] | None:
        """For ``self.x`` inside a method, every value assigned to ``self.x`` in the class
        (None when ``expr`` is not such an attribute)."""
        if not (isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name)):
            return None
        fscope = scope
        while fscope.kind != "function" or self.enclosing_class(fscope) is None:
            if fscope.parent is None:
                return None
            fscope = fscope.parent
        if expr.value.id != self.self_name(fscope):
            return None
        cls = self.enclosing_class(fscope)
        assert cls is not None
        return cls.self_attrs.get(expr.attr, [])

    # ---------------------------------------------------------------- qualified names

    def qualname(self, expr: ast.expr, scope: Scope | None = None, depth: int = 0) -> str | None:
        """The dotted name ``expr`` refers to through the imports (``optim.Adam`` after
        ``import torch.optim as optim`` is ``torch.optim.Adam``); builtins are
        ``builtins.NAME``; None when it is not an imported (or builtin) object."""
        if depth > _MAX_DEPTH:
            return None
        scope = scope or self.scope_at(expr)
        if isinstance(expr, ast.Attribute):
            base = self.qualname(expr.value, scope, depth + 1)
            return f"{base}.{expr.attr}" if base else None
        if not isinstance(expr, ast.Name):
            return None
        bindings = self.lookup(expr.id, scope)
        if not bindings:
            return f"builtins.{expr.id}"
        names: set[str | None] = set()
        for b in bindings:
            if b.kind == "import":
                names.add(b.qualname)
            elif b.kind == "assign" and isinstance(b.value, (ast.Name, ast.Attribute)):
                names.add(self.qualname(b.value, b.scope, depth + 1))
            else:
                return None
        return names.pop() if len(names) == 1 else None

    def import_binding(self, name: ast.Name, scope: Scope | None = None) -> Binding | None:
        """The single ``from X import Y [as name]`` binding of ``name``, if that is what it
        is."""
        bindings = self.lookup(name.id, scope or self.scope_at(name))
        if len(bindings) == 1 and bindings[0].kind == "import":
            node = bindings[0].node
            if isinstance(node, ast.ImportFrom):
                return bindings[0]
        return None

    # ---------------------------------------------------------------- constants

    def const(self, expr: ast.expr | None, scope: Scope | None = None, depth: int = 0) -> Any:
        """The value of ``expr`` when it is a literal, or arithmetic on literals and names
        bound once to literals; :data:`UNKNOWN` otherwise."""
        if expr is None or depth > _MAX_DEPTH:
            return UNKNOWN
        if isinstance(expr, ast.Constant):
            return expr.value
        scope = scope or self.scope_at(expr)
        if isinstance(expr, ast.UnaryOp) and isinstance(expr.op, (ast.USub, ast.UAdd, ast.Not)):
            v = self.const(expr.operand, scope, depth + 1)
            if isinstance(expr.op, ast.Not):
                return UNKNOWN if v is UNKNOWN else (not v)
            if _is_num(v):
                return -v if isinstance(expr.op, ast.USub) else +v
            return UNKNOWN
        if isinstance(expr, ast.BinOp):
            a = self.const(expr.left, scope, depth + 1)
            b = self.const(expr.right, scope, depth + 1)
            if not (_is_num(a) and _is_num(b)):
                return UNKNOWN
            try:
                if isinstance(expr.op, ast.Add):
                    return a + b
                if isinstance(expr.op, ast.Sub):
                    return a - b
                if isinstance(expr.op, ast.Mult):
                    return a * b
                if isinstance(expr.op, ast.Div):
                    return a / b
                if isinstance(expr.op, ast.Pow) and abs(b) <= 64:
                    return a**b
            except (ArithmeticError, ValueError):
                return UNKNOWN
            return UNKNOWN
        if isinstance(expr, (ast.Tuple, ast.List)):
            items = [self.const(e, scope, depth + 1) for e in expr.elts]
            return UNKNOWN if any(i is UNKNOWN for i in items) else tuple(items)
        if isinstance(expr, ast.Dict):
            return self._dict_const(expr, scope, depth)
        if isinstance(expr, ast.Name):
            if expr.id in ("True", "False", "None"):  # pragma: no cover - Constant in 3.8+
                return {"True": True, "False": False, "None": None}[expr.id]
            bindings = self.lookup(expr.id, scope)
            if len(bindings) == 1 and bindings[0].kind == "param":
                return self._param_const(bindings[0], depth)
            if not bindings or any(b.kind != "assign" for b in bindings):
                return UNKNOWN
            values = {repr(self.const(b.value, b.scope, depth + 1)) for b in bindings}
            if len(values) != 1:
                return UNKNOWN
            value = self.const(bindings[0].value, bindings[0].scope, depth + 1)
            if isinstance(value, dict) and expr.id in self.mutated:
                return UNKNOWN  # changed in place somewhere
            return value
        if isinstance(expr, ast.Subscript):
            base = self.const(expr.value, scope, depth + 1)
            key = self.const(expr.slice, scope, depth + 1)
            if isinstance(base, dict) and key is not UNKNOWN:
                try:
                    return base.get(key, UNKNOWN)
                except TypeError:
                    return UNKNOWN
            return UNKNOWN
        if isinstance(expr, ast.Attribute):
            return self._attribute_const(expr, scope, depth)
        if isinstance(expr, ast.Call):
            return self._call_const(expr, scope, depth)
        return UNKNOWN

    # ---------------------------------------------------------------- richer constants

    def _dict_const(self, expr: ast.Dict, scope: Scope, depth: int) -> Any:
        out: dict[Any, Any] = {}
        for k, v in zip(expr.keys, expr.values, strict=True):
            if k is None:  # ``**other``: any key may come from it
                return UNKNOWN
            key = self.const(k, scope, depth + 1)
            if key is UNKNOWN or not isinstance(key, (str, int, float, bool)):
                return UNKNOWN
            out[key] = self.const(v, scope, depth + 1)
        return out

    def _call_const(self, call: ast.Call, scope: Scope, depth: int) -> Any:
        f = call.func
        q = self.qualname(f, scope, depth + 1) if isinstance(f, (ast.Name, ast.Attribute)) else None
        if q == "builtins.dict" and not call.args:
            if any(k.arg is None for k in call.keywords):
                return UNKNOWN
            return {k.arg: self.const(k.value, scope, depth + 1) for k in call.keywords}
        if q in ("builtins.float", "builtins.int") and len(call.args) == 1:
            v = self.const(call.args[0], scope, depth + 1)
            try:
                return (float if q == "builtins.float" else int)(v) if v is not UNKNOWN else v
            except (TypeError, ValueError, OverflowError):
                return UNKNOWN
        if isinstance(f, ast.Attribute) and f.attr == "get" and 1 <= len(call.args) <= 2:
            base = self.const(f.value, scope, depth + 1)
            key = self.const(call.args[0], scope, depth + 1)
            if isinstance(base, dict) and key is not UNKNOWN:
                default = (
                    self.const(call.args[1], scope, depth + 1) if len(call.args) == 2 else None
                )
                try:
                    return base.get(key, default)
                except TypeError:
                    return UNKNOWN
            return UNKNOWN
        if q in _CONFIG_LOADERS and call.args:
            return self._config_file(call.args[0], scope, depth, q)
        cls = self._local_class(f, scope)
        if cls is not None:  # an instance of a config class of this file
            return _Instance(cls, call)
        return UNKNOWN

    def _config_file(self, arg: ast.expr, scope: Scope, depth: int, loader: str) -> Any:
        """The data of ``json.load(open("cfg.json"))`` / ``yaml.safe_load(...)`` when the
        file is next to the linted script (a plain file name, nothing above it)."""
        if isinstance(arg, ast.Name):
            bs = self.lookup(arg.id, scope)
            if len(bs) == 1 and bs[0].kind == "assign" and bs[0].value is not None:
                arg = bs[0].value
        if not (isinstance(arg, ast.Call) and self.qualname(arg.func, scope) == "builtins.open"):
            return UNKNOWN
        name = self.const(arg.args[0], scope, depth + 1) if arg.args else UNKNOWN
        if not isinstance(name, str) or self.base_dir is None:
            return UNKNOWN
        if "/" in name or "\\" in name or name.startswith("."):
            return UNKNOWN
        if not name.endswith((".json", ".yaml", ".yml")):
            return UNKNOWN
        if name not in self._files:
            self._files[name] = _read_config(os.path.join(self.base_dir, name))
        return self._files[name]

    def _local_class(self, f: ast.expr, scope: Scope) -> ast.ClassDef | None:
        if not isinstance(f, ast.Name):
            return None
        bs = self.lookup(f.id, scope)
        if len(bs) == 1 and bs[0].kind == "class" and isinstance(bs[0].node, ast.ClassDef):
            return bs[0].node
        return None

    def _class_default(self, cls: ast.ClassDef, attr: str, depth: int) -> Any:
        for stmt in cls.body:
            target: ast.expr | None = None
            value: ast.expr | None = None
            if isinstance(stmt, ast.AnnAssign):
                target, value = stmt.target, stmt.value
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target, value = stmt.targets[0], stmt.value
            if isinstance(target, ast.Name) and target.id == attr and value is not None:
                if (
                    isinstance(value, ast.Call)
                    and isinstance(value.func, ast.Name)
                    and value.func.id == "field"
                ):
                    for k in value.keywords:
                        if k.arg == "default":
                            return self.const(k.value, self.scope_at(k.value), depth + 1)
                    return UNKNOWN
                return self.const(value, self.scope_at(value), depth + 1)
        return UNKNOWN

    def _attribute_const(self, expr: ast.Attribute, scope: Scope, depth: int) -> Any:
        base = expr.value
        if not isinstance(base, ast.Name):
            return UNKNOWN
        if (base.id, expr.attr) in self.mutated_attrs:
            return UNKNOWN
        cls = self._local_class(base, scope)
        if cls is not None:  # Config.lr
            return self._class_default(cls, expr.attr, depth)
        bindings = self.lookup(base.id, scope)
        if len(bindings) == 1 and bindings[0].kind == "assign":
            value = bindings[0].value
            inst = self.const(value, bindings[0].scope, depth + 1) if value is not None else None
            if isinstance(inst, _Instance):
                if base.id in self.mutated:
                    return UNKNOWN
                for k in inst.call.keywords:
                    if k.arg == expr.attr:
                        return self.const(k.value, bindings[0].scope, depth + 1)
                if inst.call.args or any(k.arg is None for k in inst.call.keywords):
                    return UNKNOWN
                return self._class_default(inst.cls, expr.attr, depth)
        if self._is_parsed_args(base, scope, depth):
            return self.arg_defaults().get(expr.attr, UNKNOWN)
        return UNKNOWN

    # ---------------------------------------------------------------- argparse

    def arg_defaults(self) -> dict[str, Any]:
        """Destination -> default of every ``add_argument`` of the file (UNKNOWN where it is
        not a literal, or where two arguments share the destination)."""
        if self._arg_defaults is not None:
            return self._arg_defaults
        out: dict[str, Any] = {}
        for call in self.calls:
            f = call.func
            if not (isinstance(f, ast.Attribute) and f.attr == "add_argument" and call.args):
                continue
            flags = [
                a.value
                for a in call.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            ]
            if not flags or len(flags) != len(call.args):
                continue
            kw = {k.arg: k.value for k in call.keywords if k.arg}
            scope = self.scope_at(call)
            dest = self.const(kw["dest"], scope) if "dest" in kw else None
            if not isinstance(dest, str):
                longs = [x for x in flags if x.startswith("--")]
                first = longs[0] if longs else flags[0]
                dest = first.lstrip("-").replace("-", "_")
            action = self.const(kw["action"], scope) if "action" in kw else None
            if "default" in kw:
                default = self.const(kw["default"], scope)
                typ = self.qualname(kw["type"], scope) if "type" in kw else None
                if isinstance(default, str) and typ in ("builtins.float", "builtins.int"):
                    try:
                        default = float(default) if typ == "builtins.float" else int(default)
                    except ValueError:
                        default = UNKNOWN
            elif action == "store_true":
                default = False
            elif action == "store_false":
                default = True
            else:
                default = None
            if "required" in kw and self.const(kw["required"], scope) is True:
                default = UNKNOWN
            if dest in out and repr(out[dest]) != repr(default):
                default = UNKNOWN
            out[dest] = default
        self._arg_defaults = out
        return out

    def parsed_names(self) -> set[str]:
        """Names the file binds to ``parser.parse_args()`` (or parse_known_args()[0])."""
        if self._parsed_names is None:
            names: set[str] = set()
            for scope in self.scopes:
                for name, bs in scope.bindings.items():
                    if any(
                        self._is_parse_call(b.value) for b in bs if b.kind in ("assign", "unpack")
                    ):
                        names.add(name)
            self._parsed_names = names
        return self._parsed_names

    @staticmethod
    def _is_parse_call(value: ast.expr | None) -> bool:
        if isinstance(value, ast.Subscript):
            value = value.value
        return (
            isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr in ("parse_args", "parse_known_args")
        )

    def _is_parsed_args(self, name: ast.Name, scope: Scope, depth: int) -> bool:
        if not self.arg_defaults() or name.id in self.mutated:
            return False
        bindings = self.lookup(name.id, scope)
        if not bindings:
            return False
        for b in bindings:
            if b.kind in ("assign", "unpack") and self._is_parse_call(b.value):
                continue
            if b.kind == "assign" and isinstance(b.value, ast.Call):
                # args = parse_args() of a function of this file
                f = b.value.func
                if isinstance(f, ast.Name) and any(
                    c.kind == "def" and self._returns_parsed(c.node)
                    for c in self.lookup(f.id, b.scope)
                ):
                    continue
            if b.kind == "param" and name.id in self.parsed_names() | {"args", "opt", "opts"}:
                continue
            return False
        return True

    def _returns_parsed(self, fn: ast.AST | None) -> bool:
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return False
        for node in ast.walk(fn):
            if isinstance(node, ast.Return) and node.value is not None:
                v = node.value
                if self._is_parse_call(v):
                    return True
                if isinstance(v, ast.Name) and v.id in self.parsed_names():
                    return True
        return False

    # ---------------------------------------------------------------- call sites

    def call_site_args(self, b: Binding) -> list[tuple[ast.expr, Scope]] | None:
        """For a parameter binding of a plain function of this file, the argument every call
        of that function passes for it (None when a call does not say, or there is none)."""
        fn = b.node
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or b.name is None:
            return None
        if self.enclosing_class(b.scope) is not None:
            return None
        args = fn.args
        positional = [a.arg for a in [*args.posonlyargs, *args.args]]
        defaults = dict(
            zip(positional[len(positional) - len(args.defaults) :], args.defaults, strict=True)
        )
        for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True):
            if d is not None:
                defaults[a.arg] = d
        out: list[tuple[ast.expr, Scope]] = []
        for call in self.calls:
            if not (isinstance(call.func, ast.Name) and call.func.id == fn.name):
                continue
            cscope = self.scope_at(call)
            if not any(x.kind == "def" and x.node is fn for x in self.lookup(fn.name, cscope)):
                continue
            found: ast.expr | None = None
            if any(isinstance(a, ast.Starred) for a in call.args) or any(
                k.arg is None for k in call.keywords
            ):
                return None
            if b.name in positional and positional.index(b.name) < len(call.args):
                found = call.args[positional.index(b.name)]
            for k in call.keywords:
                if k.arg == b.name:
                    found = k.value
            if found is None:
                if b.name not in defaults:
                    return None
                out.append((defaults[b.name], self.scope_of_node.get(fn, cscope).parent or cscope))
                continue
            out.append((found, cscope))
        return out or None

    def _param_const(self, b: Binding, depth: int) -> Any:
        sites = self.call_site_args(b)
        if not sites or depth > 6:
            return UNKNOWN
        values = [self.const(e, s, depth + 2) for e, s in sites]
        if any(v is UNKNOWN for v in values) or len({repr(v) for v in values}) != 1:
            return UNKNOWN
        return values[0]


_MUTATORS = {"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "merge_with"}

_CONFIG_LOADERS = {
    "json.load",
    "yaml.safe_load",
    "yaml.load",
    "yaml.full_load",
}


class _Instance:
    """A call of a class defined in the file (a config object): its attributes are the
    call's keywords or the class's defaults."""

    def __init__(self, cls: ast.ClassDef, call: ast.Call) -> None:
        self.cls = cls
        self.call = call

    def __repr__(self) -> str:
        return f"<{self.cls.name} at {self.call.lineno}:{self.call.col_offset}>"


def _tuples(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tuples(x) for x in v)
    if isinstance(v, dict):
        return {k: _tuples(x) for k, x in v.items()}
    return v


def _read_config(path: str) -> Any:
    """The data of a small JSON or YAML file, UNKNOWN when it cannot be read."""
    try:
        if os.path.getsize(path) > 1_000_000:
            return UNKNOWN
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        if path.endswith(".json"):
            return _tuples(json.loads(text))
        try:
            import yaml  # type: ignore[import-untyped,unused-ignore]
        except ImportError:  # pragma: no cover - PyYAML is optional
            return UNKNOWN
        return _tuples(yaml.safe_load(text))
    except (OSError, ValueError, UnicodeDecodeError):
        return UNKNOWN
    except Exception:  # a YAML error: nothing is known from the file
        return UNKNOWN


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Builder(ast.NodeVisitor):
    """Walks a module once: parent links, scopes and bindings."""

    def __init__(self, resolver: Resolver) -> None:
        self.r = resolver
        self.scope = resolver.module_scope
        self.stmt: ast.stmt | None = None
        self.lambdas = 0

    def visit(self, node: ast.AST) -> None:
        if isinstance(node, ast.Call):
            self.r.calls.append(node)
            f = node.func
            if (
                isinstance(f, ast.Attribute)
                and f.attr in _MUTATORS
                and isinstance(f.value, ast.Name)
            ):
                self.r.mutated.add(f.value.id)
            if (
                isinstance(f, ast.Name)
                and f.id in ("setattr", "delattr")
                and node.args
                and isinstance(node.args[0], ast.Name)
            ):
                self.r.mutated.add(node.args[0].id)
            if self.stmt is not None and not self.lambdas:
                self.r.stmt_calls.setdefault(self.stmt, []).append(node)
        elif isinstance(node, ast.stmt):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr == "grad" for t in node.targets
            ):
                self.r.grad_assigns.append(node)
            outer, self.stmt = self.stmt, node
            super().visit(node)
            self.stmt = outer
            return
        super().visit(node)

    def run(self) -> None:
        self.r.scope_of_node[self.r.tree] = self.scope
        self._children(self.r.tree)

    def _children(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            self.r.parents[child] = node
            self.visit(child)

    def _visit_in(self, node: ast.AST, parent: ast.AST) -> None:
        self.r.parents[node] = parent
        self.visit(node)

    def _bind(self, name: str, binding: Binding) -> None:
        self.scope.add(name, binding)

    # imports ---------------------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self._bind(
                    alias.asname, Binding("import", self.scope, qualname=alias.name, node=node)
                )
            else:
                top = alias.name.split(".")[0]
                self._bind(top, Binding("import", self.scope, qualname=top, node=node))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name == "*":
                continue
            local = alias.asname or alias.name
            if node.level or not node.module:
                self._bind(local, Binding("other", self.scope, node=node))
            else:
                q = f"{node.module}.{alias.name}"
                self._bind(local, Binding("import", self.scope, qualname=q, node=node))

    # assignments ------------------------------------------------------------------------
    def _assign_target(self, target: ast.expr, value: ast.expr | None, parent: ast.AST) -> None:
        if isinstance(target, ast.Name):
            self.r.parents[target] = parent
            self._bind(target.id, Binding("assign", self.scope, value=value))
            return
        if isinstance(target, (ast.Tuple, ast.List)) and value is not None:
            self.r.parents[target] = parent
            starred = False
            for i, elt in enumerate(target.elts):
                if isinstance(elt, ast.Starred):
                    starred = True
                if isinstance(elt, ast.Name) and not starred:
                    self.r.parents[elt] = target
                    if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(
                        target.elts
                    ):
                        item = value.elts[i]
                        self._bind(elt.id, Binding("assign", self.scope, value=item))
                    else:
                        self._bind(elt.id, Binding("unpack", self.scope, value=value, index=i))
                else:
                    self._visit_in(elt, target)
            return
        self._mark_mutated(target)
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
            fscope = self.scope
            cls = self.r.enclosing_class(fscope)
            if cls is not None and target.value.id == self.r.self_name(fscope):
                cls.self_attrs.setdefault(target.attr, []).append((value, fscope))
        self._visit_in(target, parent)

    def visit_withitem(self, node: ast.withitem) -> None:
        self._visit_in(node.context_expr, node)
        target = node.optional_vars
        if isinstance(target, ast.Name):
            self.r.parents[target] = node
            self._bind(target.id, Binding("assign", self.scope, value=node.context_expr))
        elif target is not None:
            self._visit_in(target, node)

    def _mark_mutated(self, target: ast.expr) -> None:
        """Record the name a subscript store changes (``cfg["lr"] = ...`` mutates ``cfg``)
        and the attribute an attribute store changes (``args.lr = ...``)."""
        if isinstance(target, ast.Subscript):
            root = target.value
            while isinstance(root, (ast.Subscript, ast.Attribute)):
                root = root.value
            if isinstance(root, ast.Name):
                self.r.mutated.add(root.id)
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
            self.r.mutated_attrs.add((target.value.id, target.attr))

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._mark_mutated(node.target)
        self._children(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self._visit_in(node.value, node)
        for target in node.targets:
            self._assign_target(target, node.value, node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._visit_in(node.annotation, node)
        if node.value is not None:
            self._visit_in(node.value, node)
            self._assign_target(node.target, node.value, node)
        elif isinstance(node.target, ast.Name):
            self.r.parents[node.target] = node
            self._bind(node.target.id, Binding("param", self.scope, annotation=node.annotation))
        else:
            self._visit_in(node.target, node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._visit_in(node.value, node)
        self.r.parents[node.target] = node
        self._bind(node.target.id, Binding("assign", self.scope, value=node.value))

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            self.r.name_loads[node.id] = self.r.name_loads.get(node.id, 0) + 1
        else:
            self._bind(node.id, Binding("other", self.scope))

    def visit_Constant(self, node: ast.Constant) -> None:
        pass

    def visit_Global(self, node: ast.Global) -> None:
        self.scope.global_names.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        pass

    def _bind_pattern_names(self, node: ast.AST) -> None:
        for sub in ast.walk(node):
            name = getattr(sub, "name", None)
            if isinstance(sub, (ast.MatchAs, ast.MatchStar)) and name:
                self._bind(name, Binding("other", self.scope))
            if isinstance(sub, ast.MatchMapping) and sub.rest:
                self._bind(sub.rest, Binding("other", self.scope))

    def visit_match_case(self, node: ast.match_case) -> None:
        self._bind_pattern_names(node.pattern)
        self._children(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self._bind(node.name, Binding("other", self.scope))
        self._children(node)

    # scopes -----------------------------------------------------------------------------
    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        for deco in getattr(node, "decorator_list", []):
            self._visit_in(deco, node)
        args = node.args
        for default in [*args.defaults, *[d for d in args.kw_defaults if d is not None]]:
            self._visit_in(default, node)
        if not isinstance(node, ast.Lambda):
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if a is not None and a.annotation is not None:
                    self._visit_in(a.annotation, node)
            if node.returns is not None:
                self._visit_in(node.returns, node)
            self._bind(node.name, Binding("def", self.scope, node=node))
        outer, inner = self._enter(node, "function")
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if a is not None:
                self.r.parents[a] = node
                self._bind(
                    a.arg, Binding("param", inner, annotation=a.annotation, name=a.arg, node=node)
                )
        if isinstance(node, ast.Lambda):
            self.lambdas += 1
            self._visit_in(node.body, node)
            self.lambdas -= 1
        else:
            for stmt in node.body:
                self._visit_in(stmt, node)
        self.scope = outer

    def _enter(self, node: ast.AST, kind: Literal["class", "function"]) -> tuple[Scope, Scope]:
        """Open the scope of ``node``; returns (enclosing scope, new scope)."""
        outer = self.scope
        inner = Scope(node, kind, outer)
        self.r.scopes.append(inner)
        self.r.scope_of_node[node] = inner
        self.scope = inner
        return outer, inner

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self._visit_in(expr, node)
        self._bind(node.name, Binding("class", self.scope, node=node))
        outer, _ = self._enter(node, "class")
        for stmt in node.body:
            self._visit_in(stmt, node)
        self.scope = outer

    def generic_visit(self, node: ast.AST) -> None:
        self._children(node)
