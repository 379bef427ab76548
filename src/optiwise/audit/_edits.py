"""Source edits a lint rule proposes; :mod:`optiwise.audit.fixes` applies them with libcst.

Positions are 1-based lines and 0-based character columns of the node's first character,
which is where libcst's ``PositionProvider`` puts the same node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Edit", "ImportEdit", "KeywordEdit", "RenameCallee", "ReplaceString"]


@dataclass(frozen=True)
class RenameCallee:
    """Replace the last name of a call's callee (``Adam(`` or ``optim.Adam(``)."""

    line: int
    col: int
    old: str
    new: str


@dataclass(frozen=True)
class ReplaceString:
    """Replace the value of a simple string literal, keeping its quotes and prefix."""

    line: int
    col: int
    old: str
    new: str


@dataclass(frozen=True)
class KeywordEdit:
    """Set keyword argument ``name=value_code`` on the call at the position (replacing
    its value when present, appending it otherwise)."""

    line: int
    col: int
    name: str
    value_code: str


@dataclass(frozen=True)
class ImportEdit:
    """Add ``add`` (if given) to the ``from module import ...`` at the position; afterwards
    drop ``drop_if_unused`` from it when no code uses that name any more."""

    line: int
    col: int
    module: str
    add: str | None
    drop_if_unused: str | None


Edit = RenameCallee | ReplaceString | KeywordEdit | ImportEdit
FixKind = Literal["safe", "unsafe"]
