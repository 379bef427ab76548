"""Checks for known optimizer and schedule mistakes.

``audit`` (the runtime checks, which need torch) is imported on first use.  The package
itself is callable as ``optiwise.audit(...)``, the same as :func:`optiwise.audit.runtime.audit`
(``optiwise.audit`` names the function and this package alike).
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

from optiwise.audit.findings import CODES, Finding, Rule, Severity

if TYPE_CHECKING:
    from optiwise.audit.runtime import audit

__all__ = ["CODES", "Finding", "Rule", "Severity", "audit"]


def __getattr__(name: str) -> Any:
    if name == "audit":
        from optiwise.audit.runtime import audit

        globals()["audit"] = audit
        return audit
    raise AttributeError(f"module 'optiwise.audit' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from optiwise.audit.runtime import audit

        return audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
