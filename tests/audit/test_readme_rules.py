"""The bad/good example of every rule in docs/lint.md is what the linter says it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from optiwise.audit.lint import LINT_CODES, lint_source

PAGE = (Path(__file__).resolve().parents[2] / "docs" / "lint.md").read_text(encoding="utf-8")
SECTION = PAGE.split("## Rules", 1)[1]
RULES = re.split(r"^### ", SECTION, flags=re.MULTILINE)[1:]


def _examples() -> list[tuple[list[str], str, str]]:
    out = []
    for block in RULES:
        codes = re.findall(r"OW\d{3}", block.splitlines()[0])
        for kind, code in re.findall(r"```py\n# (bad|good)\n(.*?)```", block, re.DOTALL):
            out.append((codes, kind, code))
    return out


EXAMPLES = _examples()


def test_every_rule_has_a_bad_and_a_good_example() -> None:
    documented = {c for block in RULES for c in re.findall(r"OW\d{3}", block.splitlines()[0])}
    assert documented == set(LINT_CODES)  # every code the linter reports, and no other
    triggered = {c for codes, kind, _ in EXAMPLES if kind == "bad" for c in codes}
    assert triggered == set(LINT_CODES) - {"OW900"}
    kinds = {(tuple(codes), kind) for codes, kind, _ in EXAMPLES}
    for codes in {tuple(c) for c, _, _ in EXAMPLES}:
        assert (codes, "bad") in kinds and (codes, "good") in kinds


@pytest.mark.parametrize("codes, kind, code", EXAMPLES, ids=lambda v: str(v)[:20])
def test_readme_rule_example(codes: list[str], kind: str, code: str) -> None:
    found = {f.code for f in lint_source(code)}
    if kind == "bad":
        assert set(codes) <= found
    else:
        assert found == set()
