"""Checks for known optimizer and schedule mistakes."""

from optiwise.audit.findings import CODES, Finding, Rule, Severity
from optiwise.audit.runtime import audit

__all__ = ["CODES", "Finding", "Rule", "Severity", "audit"]
