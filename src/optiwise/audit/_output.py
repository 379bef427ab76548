"""Renderings of lint findings: text lines, JSON, and SARIF 2.1.0 for code-scanning tools."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any

from optiwise._version import __version__
from optiwise.audit.findings import CODES, Finding, Severity, sort_findings

__all__ = ["format_json", "format_sarif", "format_text"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.MAJOR: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "warning",
    Severity.INFO: "note",
}


def format_text(findings: Sequence[Finding]) -> str:
    """One ``path:line:col: CODE message`` line per finding, sorted."""
    return "\n".join(
        f"{f.path}:{f.line or 1}:{f.col or 1}: {f.code} {f.message}"
        for f in sort_findings(findings)
    )


def format_json(findings: Sequence[Finding], summary: dict[str, Any]) -> str:
    """``{"findings": [...], "summary": {...}}`` with every field of each finding."""
    return json.dumps(
        {"findings": [f.to_dict() for f in sort_findings(findings)], "summary": summary},
        indent=2,
    )


def _uri(path: str) -> str:
    p = PurePath(path)
    return p.as_uri() if p.is_absolute() else path.replace(os.sep, "/")


def format_sarif(findings: Sequence[Finding]) -> str:
    """A SARIF 2.1.0 log with one run: every rule in the tool's catalogue, one result per
    finding (relative paths are relative to the folder the command ran in, ``%SRCROOT%``)."""
    codes = sorted(CODES)
    index = {c: i for i, c in enumerate(codes)}
    rules = [
        {
            "id": c,
            "name": CODES[c].name,
            "shortDescription": {"text": CODES[c].summary},
            "fullDescription": {"text": CODES[c].why},
            "help": {"text": CODES[c].fix},
            "defaultConfiguration": {"level": _SARIF_LEVEL[CODES[c].severity]},
            "properties": {"severity": CODES[c].severity.value},
        }
        for c in codes
    ]
    results = []
    for f in sort_findings(findings):
        path = f.path or "<unknown>"
        location: dict[str, Any] = {"artifactLocation": {"uri": _uri(path)}}
        if not PurePath(path).is_absolute():
            location["artifactLocation"]["uriBaseId"] = "%SRCROOT%"
        location["region"] = {"startLine": f.line or 1, "startColumn": f.col or 1}
        result: dict[str, Any] = {
            "ruleId": f.code,
            "level": _SARIF_LEVEL[f.severity],
            "message": {"text": f"{f.message}. Fix: {f.fix}"},
            "locations": [{"physicalLocation": location}],
            "properties": {"severity": f.severity.value, "why": f.why},
        }
        if f.code in index:
            result["ruleIndex"] = index[f.code]
        if f.fixable:
            result["properties"]["fixable"] = f.fixable
        results.append(result)
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "optiwise",
                        "version": __version__,
                        "semanticVersion": __version__,
                        "rules": rules,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2)
