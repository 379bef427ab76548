"""Checks for known optimizer and schedule mistakes."""

from optiwise.audit.findings import CODES, Finding, Rule, Severity

__all__ = ["CODES", "Finding", "Rule", "Severity"]
