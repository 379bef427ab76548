"""Autofixes: expected output files, idempotence, re-lint clean, formatting kept."""

from __future__ import annotations

from pathlib import Path

import libcst
import pytest

from optiwise.audit.fixes import apply_edits, fix_source
from optiwise.audit.lint import lint_source

HERE = Path(__file__).parent / "fixes"
CASES = [("adam_variants", False), ("sgd_unsafe", True), ("adamax_crlf", True)]


def _read(name: str) -> str:
    return (HERE / name).read_bytes().decode("utf-8")


@pytest.mark.parametrize("name, unsafe", CASES)
def test_fix_matches_expected_file(name: str, unsafe: bool) -> None:
    source = _read(f"{name}.in.txt")
    result = fix_source(source, f"{name}.py", unsafe=unsafe)
    assert result.source == _read(f"{name}.out.txt")
    libcst.parse_module(result.source)  # the fixed file parses
    fixed_codes = {f.code for f in result.fixed}
    assert fixed_codes and result.changed
    # re-lints clean for every rule it fixed, and a second pass changes nothing
    assert not [f for f in lint_source(result.source) if f.fixable and f.code in fixed_codes]
    again = fix_source(result.source, f"{name}.py", unsafe=unsafe)
    assert again.source == result.source and again.fixed == []


def test_crlf_line_endings_are_kept() -> None:
    out = _read("adamax_crlf.out.txt")
    assert out.count("\r\n") == 3 and "\n" not in out.replace("\r\n", "")


def test_unsafe_fixes_need_opt_in() -> None:
    source = _read("sgd_unsafe.in.txt")
    result = fix_source(source)
    assert result.source == source and not result.fixed
    assert {f.fixable for f in result.remaining if f.code == "OW102"} == {"unsafe"}


def test_only_selected_codes_are_fixed() -> None:
    source = _read("adam_variants.in.txt")
    assert fix_source(source, select=["OW102"], unsafe=True).source.count("nesterov=True") == 1
    assert fix_source(source, ignore=["OW101"]).source == source


def test_no_fix_when_adamw_name_is_taken() -> None:
    src = "from torch.optim import Adam\nAdamW = object\nopt = Adam(g, weight_decay=0.1)\n"
    (f,) = lint_source(src)
    assert f.code == "OW101" and f.fixable is None
    assert fix_source(src).source == src


def test_existing_adamw_import_is_reused() -> None:
    src = (
        "from torch.optim import Adam\n"
        "from torch.optim import AdamW as W\n"
        "a = Adam(g, weight_decay=0.1)\n"
        "b = W(g)\n"
    )
    assert (
        fix_source(src).source
        == "from torch.optim import AdamW as W\na = W(g, weight_decay=0.1)\nb = W(g)\n"
    )


def test_adam_still_used_keeps_its_import() -> None:
    src = "from torch.optim import Adam\na = Adam(g, weight_decay=0.1)\nb = Adam(g)\n"
    expected = "from torch.optim import Adam, AdamW\na = AdamW(g, weight_decay=0.1)\nb = Adam(g)\n"
    assert fix_source(src).source == expected


def test_apply_edits_rejects_unparsable_source() -> None:
    from optiwise.audit._edits import RenameCallee

    with pytest.raises(ValueError, match="does not parse"):
        apply_edits("x = (", [RenameCallee(1, 0, "a", "b")])
    assert apply_edits("x = 1\n", []) == "x = 1\n"
