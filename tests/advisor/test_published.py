"""The advisor against published recipes: every value of tests/advisor/cases.CHECKS, with
its source.  Known misses run as strict expected failures, so the pass rate is
(checks - known misses) / checks and a miss that gets fixed shows up."""

from __future__ import annotations

import math
from typing import Any

import pytest

from optiwise.advisor import Recipe
from tests.advisor.cases import CHECKS, PUBLISHED, Check
from tests.advisor.test_recipe import make

_RECIPES: dict[str, Recipe] = {}


def _recipe(case: str) -> Recipe:
    if case not in _RECIPES:
        _RECIPES[case] = make(case)[1]
    return _RECIPES[case]


def _get(recipe: Recipe, key: str) -> Any:
    if key.startswith("hparams."):
        return recipe.hparams[key.split(".", 1)[1]]
    if key.startswith("schedule_hparams."):
        return recipe.schedule_hparams[key.split(".", 1)[1]]
    return getattr(recipe, key)


def _matches(got: Any, expected: Any, rel: float) -> bool:
    if isinstance(expected, (list, tuple)):
        return (
            isinstance(got, (list, tuple))
            and len(got) == len(expected)
            and all(_matches(g, e, rel) for g, e in zip(got, expected, strict=True))
        )
    if isinstance(expected, float) or (isinstance(expected, int) and not isinstance(got, str)):
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return False
        return math.isclose(got, expected, rel_tol=rel, abs_tol=1e-12)
    return bool(got == expected)


def _param(check: Check) -> Any:
    marks = [pytest.mark.xfail(reason=check.known_miss, strict=True)] if check.known_miss else []
    return pytest.param(check, id=f"{check.case}:{check.key}", marks=marks)


@pytest.mark.parametrize("check", [_param(c) for c in CHECKS])
def test_published_value(check: Check) -> None:
    got = _get(_recipe(check.case), check.key)
    assert _matches(got, check.expected, check.rel), (
        f"{check.case} {check.key}: {got!r}, published {check.expected!r} ({check.source})"
    )


def test_checks_cover_every_published_case_and_name_a_source() -> None:
    assert {c.case for c in CHECKS} == set(PUBLISHED)
    assert all(c.source.strip() for c in CHECKS)
    misses = [c for c in CHECKS if c.known_miss]
    # The target: at least 95% of the published-recipe checks pass.
    assert (len(CHECKS) - len(misses)) / len(CHECKS) >= 0.95


def test_matches_compares_numbers_relatively_and_strings_exactly() -> None:
    assert _matches(0.1000000001, 0.1, 1e-6) and not _matches(0.11, 0.1, 1e-6)
    assert _matches((0.9, 0.95), (0.9, 0.95), 1e-6) and not _matches((0.9,), (0.9, 0.95), 1e-6)
    assert _matches(None, None, 0) and not _matches("sgd", "adamw", 0)
    assert not _matches("1", 1, 0) and not _matches(True, 1, 0)
