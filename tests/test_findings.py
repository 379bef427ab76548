from __future__ import annotations

import json

import pytest

from optiwise.audit.findings import CODES, Severity, make_finding, rule, sort_findings


def test_codes_are_unique_and_complete() -> None:
    names = [r.name for r in CODES.values()]
    assert len(names) == len(set(names))
    for code, r in CODES.items():
        assert code == r.code and code.startswith("OW") and len(code) == 5
        assert r.summary and r.fix and r.why


def test_severity_order() -> None:
    assert Severity.CRITICAL.at_least(Severity.MAJOR)
    assert not Severity.LOW.at_least(Severity.MEDIUM)
    assert [s.rank for s in Severity] == [0, 1, 2, 3, 4]


def test_make_finding_defaults_and_json() -> None:
    f = make_finding("OW101", data={"weight_decay": 0.01})
    assert f.severity is Severity.CRITICAL and f.name == "adam-coupled-weight-decay"
    assert f.fix == rule("OW101").fix
    d = json.loads(json.dumps(f.to_dict()))
    assert d["severity"] == "critical" and d["data"] == {"weight_decay": 0.01}
    g = make_finding("OW101", "custom", severity=Severity.INFO).located("a.py", 3, 1)
    assert (g.message, g.severity, g.path, g.line, g.col) == ("custom", Severity.INFO, "a.py", 3, 1)


def test_sorting_and_unknown_code() -> None:
    fs = [
        make_finding("OW102").located("b.py", 1, 0),
        make_finding("OW201").located("a.py", 9, 0),
        make_finding("OW501").located("a.py", 9, 0),
    ]
    assert [f.code for f in sort_findings(fs)] == ["OW501", "OW201", "OW102"]
    with pytest.raises(ValueError, match="Unknown finding code 'OW999'"):
        rule("OW999")
