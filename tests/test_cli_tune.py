from __future__ import annotations

import json
from pathlib import Path

import pytest

from optiwise.cli import main

FACTORY = "tests.test_lr_finder:regression_mlp"


def _argv(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "tune",
        "--model",
        FACTORY,
        "--model-kwargs",
        '{"hidden": 8}',
        "--data-kwargs",
        '{"samples": 512, "val_samples": 128}',
        "--total-steps",
        "300",
        "--storage",
        str(tmp_path / "study.db"),
        "--no-progress",
        *extra,
    ]


def test_tune_text_plot_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "tune.png"
    assert main(_argv(tmp_path, "--plot", str(png))) == 0
    out = capsys.readouterr().out
    assert "data: synthetic regression" in out
    assert "tuned peak LR" in out and "probe cost:" in out and "<- best" in out
    assert "recipe: adamw at peak LR" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second run resumes the study in the SQLite file: every trial is reused
    assert main(_argv(tmp_path, "--plot", "", "--format", "json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trials"] and all(t["reused"] for t in data["trials"])
    assert data["spent_steps"] <= data["budget_steps"] == 300
    assert any("resumed" in n for n in data["notes"])


def test_tune_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_argv(tmp_path, "--budget", "0.01", "--plot", "")) == 2
    err = capsys.readouterr().err
    assert err.startswith("optiwise tune: error:") and "too small to tune" in err
    assert main(_argv(tmp_path, "--plot", "x.jpg")) == 2
    assert "must end in .png" in capsys.readouterr().err
