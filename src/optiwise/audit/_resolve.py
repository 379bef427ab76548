"""Name resolution for the script linter: scopes, imports, constants.

Everything here is static and conservative: a name resolves only when every binding of it
in its scope agrees; anything dynamic (a function parameter, ``args.lr``, a loop variable)
resolves to nothing, so the rules built on top report nothing for it.
"""

from __future__ import annotations

import ast
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

BindingKind = Literal["import", "assign", "param", "def", "class", "other"]


@dataclass
class Binding:
    """One way a name gets a value in a scope."""

    kind: BindingKind
    scope: Scope
    value: ast.expr | None = None  # assign: the assigned expression
    qualname: str | None = None  # import: the dotted target
    node: ast.AST | None = None  # import: the Import/ImportFrom; def/class: the definition
    annotation: ast.expr | None = None  # param / annotated name


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

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
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
        if isinstance(expr, ast.Name):
            if expr.id in ("True", "False", "None"):  # pragma: no cover - Constant in 3.8+
                return {"True": True, "False": False, "None": None}[expr.id]
            bindings = self.lookup(expr.id, scope)
            if not bindings or any(b.kind != "assign" for b in bindings):
                return UNKNOWN
            values = {repr(self.const(b.value, b.scope, depth + 1)) for b in bindings}
            if len(values) != 1:
                return UNKNOWN
            return self.const(bindings[0].value, bindings[0].scope, depth + 1)
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
        if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
            fscope = self.scope
            cls = self.r.enclosing_class(fscope)
            if cls is not None and target.value.id == self.r.self_name(fscope):
                cls.self_attrs.setdefault(target.attr, []).append((value, fscope))
        self._visit_in(target, parent)

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
                self._bind(a.arg, Binding("param", inner, annotation=a.annotation))
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
