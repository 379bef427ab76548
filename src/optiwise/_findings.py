"""The :class:`Finding` and its :class:`Severity`: what the runtime audit, the script linter
and the training monitor report.

This module depends on nothing else in optiwise, so every room can report findings; the
table of stable codes (:mod:`optiwise.audit.findings`) lives above it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

__all__ = ["Finding", "Severity"]


class Severity(str, enum.Enum):
    """How bad a finding is; ordered from worst to mildest."""

    CRITICAL = "critical"  # training is broken or silently wrong
    MAJOR = "major"  # training works but a well-known, large loss in quality or speed
    MEDIUM = "medium"  # a likely loss; worth changing
    LOW = "low"  # a small, cheap improvement
    INFO = "info"  # worth knowing; not necessarily wrong

    @property
    def rank(self) -> int:
        """0 for critical ... 4 for info."""
        return list(Severity).index(self)

    def at_least(self, other: Severity) -> bool:
        """Whether this severity is as bad as ``other`` or worse."""
        return self.rank <= other.rank


@dataclass(frozen=True)
class Finding:
    """One occurrence of a rule (in a live setup, or at a place in a file), or one diagnosis
    of a recorded run; ``cause`` names the diagnosis (see :data:`optiwise.monitor.CAUSES`)."""

    code: str
    severity: Severity
    message: str
    fix: str
    why: str
    path: str | None = None
    line: int | None = None
    col: int | None = None
    fixable: Literal["safe", "unsafe"] | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    cause: str | None = None

    @property
    def name(self) -> str:
        """The rule's short name (the monitor's cause for a diagnosis without a rule)."""
        from optiwise.audit.findings import CODES  # the codes table lives above

        if self.code in CODES:
            return CODES[self.code].name
        return self.cause or self.code

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready)."""
        out = asdict(self)
        out["severity"] = self.severity.value
        out["name"] = self.name
        out["data"] = dict(self.data)
        return out

    def located(self, path: str, line: int, col: int) -> Finding:
        """This finding at a position in a file."""
        return replace(self, path=path, line=line, col=col)
