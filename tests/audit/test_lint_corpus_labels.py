"""benchmarks/lint_corpus.json names real scripts by repository, path and commit, and labels
them only with codes the linter reports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from optiwise.audit.lint import LINT_CODES

CORPUS = Path(__file__).resolve().parents[2] / "benchmarks" / "lint_corpus.json"


def test_corpus_entries_are_complete_and_use_lint_codes() -> None:
    entries = json.loads(CORPUS.read_text(encoding="utf-8"))["scripts"]
    assert len(entries) >= 30
    assert len({e["file"] for e in entries}) == len(entries)
    for e in entries:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", e["repo"]), e
        assert e["path"].endswith(".py") and re.fullmatch(r"[0-9a-f]{40}", e["commit"]), e
        assert set(e["expected"]) <= LINT_CODES - {"OW900"}, e
