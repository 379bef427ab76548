"""Autofixes for ``optiwise lint --fix``: libcst codemods that keep formatting and comments.

A lint rule proposes edits (:mod:`optiwise.audit._edits`) at node positions; here they are
applied to the concrete syntax tree, so everything the edits do not touch is reproduced
byte for byte.  :func:`fix_source` repeats lint-and-fix until nothing fixable is left, so a
second run changes nothing, and it checks that the result still parses.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from optiwise.audit._edits import Edit, ImportEdit, KeywordEdit, RenameCallee, ReplaceString
from optiwise.audit.findings import Finding

__all__ = ["FixResult", "apply_edits", "fix_source"]

_MAX_PASSES = 4


@dataclass(frozen=True)
class FixResult:
    """The fixed text, the findings the fixes removed, and the findings that remain."""

    source: str
    fixed: list[Finding]
    remaining: list[Finding]

    @property
    def changed(self) -> bool:
        """Whether any fix was applied."""
        return bool(self.fixed)


class _Apply(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, edits: Sequence[Edit]) -> None:
        super().__init__()
        self.by_pos: dict[tuple[int, int], list[Edit]] = {}
        for e in edits:
            self.by_pos.setdefault((e.line, e.col), []).append(e)
        self.applied: set[Edit] = set()

    def _edits(self, node: cst.CSTNode, kind: type) -> list[Any]:
        try:
            rng: CodeRange = self.get_metadata(PositionProvider, node)
        except KeyError:  # pragma: no cover - nodes built by this transformer
            return []
        found = [
            e
            for e in self.by_pos.get((rng.start.line, rng.start.column), ())
            if isinstance(e, kind)
        ]
        return found

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        for e in self._edits(original, RenameCallee):
            func = updated.func
            if isinstance(func, cst.Name) and func.value == e.old:
                updated = updated.with_changes(func=func.with_changes(value=e.new))
                self.applied.add(e)
            elif isinstance(func, cst.Attribute) and func.attr.value == e.old:
                updated = updated.with_changes(
                    func=func.with_changes(attr=func.attr.with_changes(value=e.new))
                )
                self.applied.add(e)
        for e in self._edits(original, KeywordEdit):
            updated = _set_keyword(updated, e.name, e.value_code)
            self.applied.add(e)
        return updated

    def leave_SimpleString(
        self, original: cst.SimpleString, updated: cst.SimpleString
    ) -> cst.SimpleString:
        for e in self._edits(original, ReplaceString):
            if updated.evaluated_value == e.old:
                prefix, quote = updated.prefix, updated.quote
                updated = updated.with_changes(value=f"{prefix}{quote}{e.new}{quote}")
                self.applied.add(e)
        return updated

    def leave_ImportFrom(self, original: cst.ImportFrom, updated: cst.ImportFrom) -> cst.ImportFrom:
        for e in self._edits(original, ImportEdit):
            if isinstance(updated.names, cst.ImportStar):
                continue
            if e.add is None:
                self.applied.add(e)
                continue
            names = list(updated.names)
            if any(_alias_name(a) == e.add and a.asname is None for a in names):
                self.applied.add(e)
                continue
            last = names[-1]
            if isinstance(last.comma, cst.Comma):  # trailing comma: keep the layout
                sep = names[-2].comma if len(names) > 1 else last.comma
                names[-1] = last.with_changes(comma=sep)
                names.append(cst.ImportAlias(name=cst.Name(e.add), comma=last.comma))
            else:
                names[-1] = last.with_changes(
                    comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
                )
                names.append(cst.ImportAlias(name=cst.Name(e.add)))
            updated = updated.with_changes(names=names)
            self.applied.add(e)
        return updated


def _alias_name(alias: cst.ImportAlias) -> str:
    return cst.helpers.get_full_name_for_node(alias.name) or ""


def _set_keyword(call: cst.Call, name: str, value_code: str) -> cst.Call:
    value = cst.parse_expression(value_code)
    args = list(call.args)
    for i, arg in enumerate(args):
        if arg.keyword is not None and arg.keyword.value == name:
            args[i] = arg.with_changes(value=value)
            return call.with_changes(args=args)
    new = cst.Arg(
        keyword=cst.Name(name),
        value=value,
        equal=cst.AssignEqual(
            whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
        ),
    )
    if not args:
        return call.with_changes(args=[new])
    last = args[-1]
    if isinstance(last.comma, cst.Comma):  # trailing comma: one argument per line, keep it
        sep = args[-2].comma if len(args) > 1 and isinstance(args[-2].comma, cst.Comma) else None
        args[-1] = last.with_changes(comma=sep or last.comma)
        args.append(new.with_changes(comma=last.comma))
    else:
        args[-1] = last.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        args.append(new)
    return call.with_changes(args=args)


class _DropUnused(cst.CSTTransformer):
    """Remove ``name`` from ``from module import ...`` statements."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__()
        self.module = module
        self.name = name

    def leave_ImportFrom(
        self, original: cst.ImportFrom, updated: cst.ImportFrom
    ) -> cst.ImportFrom | cst.RemovalSentinel:
        if updated.module is None or isinstance(updated.names, cst.ImportStar):
            return updated
        if cst.helpers.get_full_name_for_node(updated.module) != self.module or updated.relative:
            return updated
        names = list(updated.names)
        keep = [
            a
            for a in names
            if not (
                (a.asname is not None and _asname(a) == self.name)
                or (a.asname is None and _alias_name(a) == self.name)
            )
        ]
        if len(keep) == len(names):
            return updated
        if not keep:
            return cst.RemoveFromParent()
        trailing = isinstance(names[-1].comma, cst.Comma) and updated.rpar is not None
        keep[-1] = keep[-1].with_changes(
            comma=names[-1].comma if trailing else cst.MaybeSentinel.DEFAULT
        )
        return updated.with_changes(names=keep)


def _asname(alias: cst.ImportAlias) -> str:
    asname = alias.asname
    if asname is not None and isinstance(asname.name, cst.Name):
        return asname.name.value
    return ""


def _name_used(source: str, name: str) -> bool:
    tree = ast.parse(source)
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(tree))


def apply_edits(source: str, edits: Iterable[Edit]) -> str:
    """``source`` with ``edits`` applied; text the edits do not touch is kept as is.

    Raises a ValueError when ``source`` does not parse.
    """
    edits = list(dict.fromkeys(edits))
    if not edits:
        return source
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as exc:
        raise ValueError(f"cannot apply fixes: the source does not parse ({exc.message})") from None
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    transformer = _Apply(edits)
    new = wrapper.visit(transformer)
    for e in edits:
        if (
            isinstance(e, ImportEdit)
            and e.drop_if_unused
            and e in transformer.applied
            and not _name_used(new.code, e.drop_if_unused)
        ):
            new = new.visit(_DropUnused(e.module, e.drop_if_unused))
    return new.code


def fix_source_codes(
    source: str, path: str, codes: frozenset[str], *, unsafe: bool = False
) -> FixResult:
    """:func:`fix_source` over an already resolved set of codes."""
    from optiwise.audit.lint import _check

    current = source
    fixed: list[Finding] = []
    wanted = ("safe", "unsafe") if unsafe else ("safe",)
    for _ in range(_MAX_PASSES):
        checked = _check(current, path, codes)
        todo = [c for c in checked if c.finding.fixable in wanted and c.edits]
        if not todo:
            break
        try:
            new = apply_edits(current, [e for c in todo for e in c.edits])
            ast.parse(new)
        except (ValueError, SyntaxError):  # pragma: no cover - a fix must never break a file
            break
        if new == current:
            break
        fixed.extend(c.finding for c in todo)
        current = new
    remaining = [c.finding for c in _check(current, path, codes)]
    return FixResult(current, fixed, remaining)


def fix_source(
    source: str,
    path: str = "<string>",
    *,
    unsafe: bool = False,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
) -> FixResult:
    """Apply every safe fix (and unsafe ones with ``unsafe=True``) to ``source``.

    Returns the new text, the findings fixed, and the findings that remain.  Running it
    again on the result changes nothing.
    """
    from optiwise.audit.lint import resolve_codes

    return fix_source_codes(source, path, resolve_codes(select, ignore), unsafe=unsafe)
