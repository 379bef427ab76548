from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from optiwise.cli import main
from optiwise.lr_finder import DATA_SOURCES, DataSource, sweep_range

FACTORY = "tests.test_lr_finder:regression_mlp"


def classification_source(model: nn.Module | None, classes: int = 3) -> DataSource:
    """A data source given as module:function (imported by the CLI); it has no model."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    train = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
    return DataSource(train, None, nn.CrossEntropyLoss(), f"{classes}-class toy")


def classifier(classes: int = 3, inputs: int = 8) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, 16), nn.ReLU(), nn.Linear(16, classes))


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


def test_find_lr_on_a_benchmark_workload_with_its_own_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("sklearn")
    argv = ["find-lr", "--data", "digits-mlp", "--data-kwargs", '{"batches": 12}']
    argv += ["--num-steps", "12", "--confirm", "1", "--confirm-steps", "3", "--plot", ""]
    argv += ["--format", "json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["data"].startswith("digits-mlp: MLP 64-64-10")
    # the workload's task family sets the default range (adamw's tabular_mlp range, widened)
    assert data["start_lr"] == pytest.approx(sweep_range("adamw", "tabular_mlp")[0])
    assert data["score"] == "val_loss" and len(data["confirmations"]) == 1
    # a fresh 10-class model starts near ln(10); --seed picks the model and batch order
    first = data["losses"][0]
    assert first == pytest.approx(math.log(10), rel=0.2)
    assert main([*argv, "--seed", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["losses"][0] != first


def test_find_lr_on_a_benchmark_workload_with_your_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("sklearn")
    argv = ["find-lr", "--data", "digits-mlp", "--model", "tests.test_cli_find_lr:classifier"]
    argv += ["--model-kwargs", '{"inputs": 64, "classes": 10}', "--task", "general"]
    argv += ["--num-steps", "10", "--confirm", "0", "--plot", "", "--format", "json"]
    assert main(argv) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["start_lr"] == pytest.approx(sweep_range("adamw", "general")[0])
    argv[argv.index("--model-kwargs") + 1] = '{"inputs": 8, "classes": 10}'
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "the model does not fit digits-mlp's batches" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("synthetic", "sized from a model, and none was given"),
        ("tests.test_cli_find_lr:classification_source", "brings no model; give --model"),
    ],
)
def test_find_lr_without_a_model_needs_a_source_that_has_one(
    data: str, match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["find-lr", "--data", data, "--confirm", "0", "--plot", ""]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_find_lr_on_the_char_transformer_workload_with_sgd(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("sklearn")
    from optiwise.bench import data as bench_data

    if not any(s.available for s in bench_data.data_sources() if s.name == "shakespeare"):
        pytest.skip("no data source installed for shakespeare-char-gpt")
    plot = tmp_path / "gpt.png"
    kwargs = '{"batches": 10, "val_limit": 16, "limit": 2000}'
    argv = ["find-lr", "--data", "shakespeare-char-gpt", "--data-kwargs", kwargs]
    argv += ["--optimizer", "sgd", "--num-steps", "10", "--confirm", "1", "--confirm-steps", "2"]
    argv += ["--plot", str(plot), "--format", "json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data"].startswith("shakespeare-char-gpt: GPT-style transformer")
    assert "10 batches of 32" in out["data"] and "16 validation examples" in out["data"]
    # SGD (Nesterov) over the language-transformer range of knowledge.py, widened
    assert out["optimizer"] == "sgd"
    assert out["start_lr"] == pytest.approx(sweep_range("sgd", "language_transformer")[0])
    assert out["end_lr"] == pytest.approx(sweep_range("sgd", "language_transformer")[1])
    # the workload's own character model: a fresh one starts near a uniform guess
    model = DATA_SOURCES["shakespeare-char-gpt"](None, batches=1, val_limit=1, limit=2000).model
    assert model is not None
    vocab = [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features
    assert out["losses"][0] == pytest.approx(math.log(vocab), rel=0.2)
    assert out["score"] == "val_loss" and len(out["confirmations"]) == 1
    assert out["plot"] == str(plot) and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ('{"batches": 0}', "Invalid batches: 0 (must be a positive int)"),
        ('{"bogus": 1}', "unexpected keyword argument 'bogus'"),
        ("[1]", "--data-kwargs must be a JSON object"),
        ("{x", "--data-kwargs is not valid JSON"),
    ],
)
def test_find_lr_bad_workload_data_kwargs_are_one_line_exit_2(
    kwargs: str, match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("sklearn")
    argv = ["find-lr", "--data", "digits-mlp", "--data-kwargs", kwargs, "--confirm", "0"]
    assert main([*argv, "--plot", ""]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
