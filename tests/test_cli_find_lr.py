from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from optiwise.cli import main
from optiwise.lr_finder import DataSource

FACTORY = "tests.test_lr_finder:regression_mlp"


def classification_source(model: nn.Module, classes: int = 3) -> DataSource:
    """A data source given as module:function (imported by the CLI)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    train = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    return DataSource(train, None, nn.CrossEntropyLoss(), f"{classes}-class toy")


def classifier(classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, classes))


def test_find_lr_text_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "lr.png"
    argv = ["find-lr", "--model", FACTORY, "--model-kwargs", '{"hidden": 16}']
    argv += ["--num-steps", "20", "--confirm", "2", "--confirm-steps", "5", "--plot", str(png)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "data: synthetic regression" in out and "8 features -> 1 outputs" in out
    assert "LR range test: adamw 20 steps from 1e-06" in out
    assert "recommended: peak LR" in out and "constant LR" in out
    assert "confirmation runs (5 steps each)" in out and "val_loss" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_find_lr_json_with_a_data_factory(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "find-lr",
        "--model",
        "tests.test_cli_find_lr:classifier",
        "--data",
        "tests.test_cli_find_lr:classification_source",
        "--optimizer",
        "sgd",
        "--num-steps",
        "12",
        "--confirm",
        "0",
        "--accumulation",
        "2",
        "--amp",
        "--plot",
        "",
        "--format",
        "json",
    ]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["optimizer"] == "sgd" and data["data"] == "3-class toy"
    assert data["start_lr"] == pytest.approx(1e-3) and data["plot"] is None
    assert data["recommended"] == "minimum" and data["confirmations"] == []
    assert set(data["suggestions"]) == {"steepest", "fastai_steep", "valley", "minimum"}


def test_find_lr_data_kwargs_reach_the_source(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["find-lr", "--model", FACTORY, "--data-kwargs", '{"samples": 64, "noise": 0.5}']
    argv += ["--num-steps", "10", "--confirm", "0", "--plot", "", "--start-lr", "1e-4"]
    argv += ["--end-lr", "1e-2", "--mode", "linear"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "64 samples" in out and "noise 0.5" in out and "from 0.0001 to 0.01 (linear" in out


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--model", "nope.nothing:make"], "cannot import 'nope.nothing'"),
        (["--model", "tests.test_lr_finder"], "package.module:function"),
        (["--model", "tests.test_lr_finder:missing"], "has no 'missing'"),
        (["--model", FACTORY, "--model-kwargs", "{hidden: 3}"], "--model-kwargs is not valid JSON"),
        (["--model", FACTORY, "--model-kwargs", "[1]"], "must be a JSON object"),
        (["--model", FACTORY, "--data", "mnist"], "unknown data source 'mnist'"),
        (["--model", FACTORY, "--num-steps", "5"], "Invalid num_steps: 5"),
        (["--model", FACTORY, "--start-lr", "1", "--end-lr", "0.1"], "must be below end_lr"),
        (["--model", FACTORY, "--optimizer", "adamx"], "Unknown optimizer 'adamx'"),
        (["--model", FACTORY, "--plot", "out.jpg", "--num-steps", "10"], "must end in .png"),
    ],
)
def test_find_lr_errors_are_one_line_exit_2(
    extra: list[str], match: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["find-lr", *extra, "--confirm", "0"]
    if "--plot" not in extra:
        argv += ["--plot", ""]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
