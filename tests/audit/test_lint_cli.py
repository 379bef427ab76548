"""`optiwise lint`: output formats, exit codes, fixes from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optiwise.audit.findings import CODES
from optiwise.cli import main

BAD = "import torch\nopt = torch.optim.Adam(g, lr=1e-3, weight_decay=0.1)\n"
GOOD = "import torch\nopt = torch.optim.AdamW(g, lr=1e-3)\n"


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "b.py").write_text(BAD)
    (tmp_path / "pkg" / "a.py").write_text(
        "import torch\nfor x in l:\n    x.backward()\n    torch.optim.SGD(g, lr=0.1).step()\n"
        "o = torch.optim.SGD(g, lr=0.1, momentum=0.9)\n"
    )
    (tmp_path / "ok.py").write_text(GOOD)
    return tmp_path


def test_text_output_sorted_and_exit_1(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "pkg", "ok.py"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        "pkg/a.py:4:5: OW501 torch.optim.SGD(g, lr=0.1).step() and backward() run in a loop "
        "that never clears the gradients (no zero_grad())",
        "pkg/a.py:5:5: OW102 SGD with momentum=0.9 and without nesterov=True",
        "pkg/b.py:2:7: OW101 Adam with weight_decay=0.1 adds an L2 term that the adaptive "
        "denominator rescales, not weight decay: use AdamW",
    ]
    assert lines[3] == (
        "Found 3 findings in 3 files checked (1 fixable with --fix, 1 more with --fix "
        "--unsafe-fixes)."
    )


def test_clean_run_exit_0(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "ok.py"]) == 0
    assert capsys.readouterr().out == "No findings in 1 file checked.\n"
    assert main(["lint", "pkg", "--exit-zero"]) == 0
    assert main(["lint", "pkg", "--select", "OW7"]) == 0
    assert main(["lint", "pkg", "--ignore", "OW1,OW5"]) == 0


def test_json_output(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "pkg/b.py", "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    (f,) = data["findings"]
    assert (f["code"], f["line"], f["col"], f["fixable"]) == ("OW101", 2, 7, "safe")
    assert f["severity"] == "critical" and f["name"] == "adam-coupled-weight-decay"
    assert data["summary"] == {
        "files": 1,
        "findings": 1,
        "fixed": 0,
        "fixable": 1,
        "fixable_unsafe": 0,
    }


def test_sarif_output(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "pkg", "--format", "sarif"]) == 1
    log = json.loads(capsys.readouterr().out)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted(CODES)
    results = run["results"]
    assert [r["ruleId"] for r in results] == ["OW501", "OW102", "OW101"]
    first = results[0]
    assert rules[first["ruleIndex"]]["id"] == "OW501" and first["level"] == "error"
    loc = first["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"] == {"uri": "pkg/a.py", "uriBaseId": "%SRCROOT%"}
    assert loc["region"] == {"startLine": 4, "startColumn": 5}
    assert results[1]["level"] == "warning"  # OW102 is low severity


def test_fix_and_unsafe_fixes(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "pkg", "--fix"]) == 1  # OW501 and the unsafe OW102 remain
    out = capsys.readouterr().out
    assert "Fixed 1 finding in 1 file." in out
    assert (tree / "pkg" / "b.py").read_text() == BAD.replace("Adam(", "AdamW(")
    assert main(["lint", "pkg", "--fix", "--unsafe-fixes", "--select", "OW1"]) == 0
    assert "nesterov=True" in (tree / "pkg" / "a.py").read_text()


def test_diff(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "pkg/b.py", "--diff"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("--- a/pkg/b.py\n+++ b/pkg/b.py\n")
    assert "1 finding would be fixed in 1 file" in captured.err
    assert (tree / "pkg" / "b.py").read_text() == BAD
    assert main(["lint", "ok.py", "--diff"]) == 0


@pytest.mark.parametrize(
    "argv, match",
    [
        (["lint", "ok.py", "--unsafe-fixes"], "--unsafe-fixes only applies with --fix"),
        (["lint", "ok.py", "--diff", "--format", "json"], "--diff prints a unified diff"),
        (["lint", "ok.py", "--select", "XX1"], "Unknown finding code 'XX1'"),
    ],
)
def test_usage_errors_exit_2(
    tree: Path, argv: list[str], match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_bad_pyproject_exit_2(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tree / "pyproject.toml").write_text("[tool.optiwise.lint]\nexclude = 1\n")
    assert main(["lint", "ok.py"]) == 2
    assert "exclude must be a list of strings" in capsys.readouterr().err


def test_pre_commit_hook_definition() -> None:
    import yaml

    root = Path(__file__).resolve().parents[2]
    (hook,) = yaml.safe_load((root / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "optiwise-lint" and hook["entry"] == "optiwise lint"
    assert hook["language"] == "python" and hook["types"] == ["python"]
