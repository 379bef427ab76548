"""`optiwise recommend` and `optiwise audit`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from optiwise.cli import main

RESNET = ["--model", "tests.models:TinyResNet"]
RUN = ["--epochs", "90", "--steps-per-epoch", "5005"]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_recommend_text_for_a_cnn(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["recommend", *RESNET, "--batch-size", "64", *RUN], capsys)
    assert code == 0
    assert "Recipe for a vision_cnn model" in out
    assert "optimizer = SGD (Nesterov) (sgd)" in out
    assert "optimizer.lr = 0.025" in out and "[knowledge-defaults]" in out
    assert "schedule = warmup_cosine" in out


def test_recommend_json_with_model_kwargs(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["recommend", "--model", "tests.models:TinyBert", "--model-kwargs", '{"classes": 2}']
    argv += ["--batch-size", "32", "--total-steps", "1000", "--pretrained", "--format", "json"]
    code, out, _ = run(argv, capsys)
    data = json.loads(out)
    assert code == 0 and data["task"] == "fine_tuning"
    assert data["optimizer"] == {
        "name": "adamw",
        "hparams": {"lr": 2e-5, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01},
    }
    assert data["param_groups"]["lr_mult"] == {"classifier": 10.0}
    assert data["schedule"] == {
        "name": "warmup_linear",
        "hparams": {"total_steps": 1000, "warmup": 100},
    }


def test_recommend_yaml_and_python(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        ["recommend", *RESNET, "--batch-size", "256", *RUN, "--format", "yaml"], capsys
    )
    assert code == 0 and yaml.safe_load(out)["optimizer"]["hparams"]["weight_decay"] == 1e-4
    code, out, _ = run(
        ["recommend", *RESNET, "--batch-size", "256", *RUN, "--format", "python"], capsys
    )
    assert code == 0
    compile(out, "<recommend --format python>", "exec")
    assert "optiwise.create_optimizer(\n    'sgd',\n    model," in out


def test_recommend_without_a_model(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["recommend", "--family", "language_transformer", "--params", "110000000"]
    argv += ["--batch-size", "256", "--total-steps", "100000", "--format", "json"]
    code, out, _ = run(argv, capsys)
    data = json.loads(out)
    assert code == 0 and data["optimizer"]["name"] == "adamw"
    assert data["n_params"] == 110_000_000 and data["model"] is None
    code, out, _ = run(
        ["recommend", "--family", "vision_cnn", "--batch-size", "256", "--total-steps", "10"],
        capsys,
    )
    assert code == 0 and "optimizer = SGD" in out


def test_recommend_task_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["recommend", "--model", "tests.models:DCGANGenerator", "--task", "gan"]
    argv += ["--batch-size", "128", "--total-steps", "1000", "--format", "json"]
    data = json.loads(run(argv, capsys)[1])
    assert data["optimizer"]["hparams"]["betas"] == [0.5, 0.999]
    assert data["schedule"]["name"] is None
    argv = ["recommend", "--model", "tests.models:TinyGPT", "--batch-size", "64"]
    argv += ["--world-size", "2", "--total-steps", "100", "--priority", "low_memory"]
    argv += ["--mixed-precision", "bf16", "--format", "json"]
    data = json.loads(run(argv, capsys)[1])
    assert data["batch"]["accumulation"] == 2 and data["optimizer"]["name"] == "adamw8bit"
    assert data["amp"] == "bf16"


def test_recommend_takes_task_words_and_names_close_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["recommend", "--model", "tests.models:PPOPolicy", "--task", "Reinforcement-Learning"]
    argv += ["--batch-size", "64", "--total-steps", "1000", "--format", "json"]
    data = json.loads(run(argv, capsys)[1])
    assert data["task"] == "rl_policy" and data["optimizer"]["hparams"]["lr"] == 3e-4
    argv = ["recommend", "--family", "causal_transformer", "--params", "125000000"]
    argv += ["--batch-size", "256", "--total-steps", "600000", "--format", "json"]
    data = json.loads(run(argv, capsys)[1])
    assert data["optimizer"]["hparams"]["betas"] == [0.9, 0.95]
    assert data["schedule"]["hparams"]["min_lr_ratio"] == 0.1
    with pytest.raises(SystemExit) as exc:
        main(["recommend", "--task", "seq2sq", "--batch-size", "8", "--total-steps", "10"])
    assert exc.value.code == 2
    assert "did you mean 'seq2seq' (translation)" in capsys.readouterr().err


def test_recommend_imports_a_factory_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "my_nets.py").write_text(
        "from torch import nn\n"
        "def make_lstm(hidden=8):\n"
        "    return nn.Sequential(nn.Embedding(20, 4), nn.LSTM(4, hidden))\n"
        "raise_on_other_access = None\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_nets", raising=False)
    argv = ["recommend", "--model", "my_nets:make_lstm", "--model-kwargs", '{"hidden": 6}']
    argv += ["--batch-size", "64", "--total-steps", "100", "--format", "json"]
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert json.loads(out)["family"] == "rnn"


@pytest.mark.parametrize(
    "argv, match",
    [
        (
            ["--model", "no_such_pkg.mod:f", "--batch-size", "8", "--total-steps", "10"],
            "cannot import 'no_such_pkg.mod'",
        ),
        (
            ["--model", "tests.models", "--batch-size", "8", "--total-steps", "10"],
            "must be given as package.module:function",
        ),
        (
            ["--model", "tests.models:Nope", "--batch-size", "8", "--total-steps", "10"],
            "has no 'Nope'",
        ),
        (
            [*RESNET, "--model-kwargs", "{width: 4}", "--batch-size", "8", "--total-steps", "10"],
            "--model-kwargs is not valid JSON",
        ),
        (
            [*RESNET, "--model-kwargs", "[4]", "--batch-size", "8", "--total-steps", "10"],
            "must be a JSON object",
        ),
        (
            [*RESNET, "--model-kwargs", '{"depth": 4}', "--batch-size", "8", "--total-steps", "10"],
            "calling tests.models:TinyResNet",
        ),
        (
            ["--model", "tests.models:IMAGENET_SIZE", "--batch-size", "8", "--total-steps", "10"],
            "has no 'IMAGENET_SIZE'",
        ),
        ([*RESNET, "--batch-size", "0", "--total-steps", "10"], "Invalid batch_size: 0"),
        ([*RESNET, "--batch-size", "8"], "the run length is missing"),
        ([*RESNET, "--batch-size", "8", "--epochs", "3"], "--epochs needs --steps-per-epoch"),
        ([*RESNET, "--batch-size", "8", "--epochs", "3", "--total-steps", "10"], "not both"),
        (
            ["--params", "10", *RESNET, "--batch-size", "8", "--total-steps", "10"],
            "--model or --params",
        ),
        (
            ["--model-kwargs", "{}", "--batch-size", "8", "--total-steps", "10"],
            "--model-kwargs needs --model",
        ),
    ],
)
def test_recommend_errors_are_one_line_exit_2(
    argv: list[str], match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(["recommend", *argv], capsys)
    assert code == 2 and out == ""
    assert match in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_audit_flags_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["audit", "--model", "tests.models:TinyGPT"]
    argv += ["--optimizer", "Adam(lr=0.1, weight_decay=0.01)", "--batch-size", "256"]
    code, out, _ = run(argv, capsys)
    assert code == 1
    assert "critical OW101 adam-coupled-weight-decay" in out and "fix: use AdamW" in out
    assert "OW301" in out and out.strip().splitlines()[-1].startswith("5 finding(s): ")


def test_audit_clean_setup_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["audit", "--model", "tests.models:TinyGPT", "--optimizer", "adamw(lr=1e-4)"]
    argv += ["--scheduler", "warmup_linear(total_steps=1000, warmup=100)"]
    argv += ["--batch-size", "256", "--total-steps", "1000"]
    code, out, _ = run(argv, capsys)
    assert code == 0 and out.strip() == "0 finding(s)"


def test_audit_medium_findings_do_not_fail(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["audit", *RESNET, "--optimizer", "SGD(lr=0.1, momentum=0.9, nesterov=True, "]
    argv[-1] += "weight_decay=1e-4)"
    argv += ["--scheduler", "warmup_cosine(total_steps=1000, warmup=50)", "--batch-size", "256"]
    argv += ["--format", "json"]
    code, out, _ = run(argv, capsys)
    data = json.loads(out)
    assert code == 0 and [f["code"] for f in data["findings"]] == ["OW401"]
    assert data["findings"][0]["severity"] == "medium"


def test_audit_schedule_length_from_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["audit", *RESNET, "--optimizer", "SGD(lr=0.1, momentum=0.9, nesterov=True)"]
    argv += ["--scheduler", "OneCycleLR(max_lr=0.1, total_steps=1000)", "--batch-size", "256"]
    argv += ["--epochs", "10", "--steps-per-epoch", "200", "--family", "vision_cnn"]
    code, out, _ = run(argv, capsys)
    assert code == 1 and "OW302" in out and "built for 1000 steps" in out and "2000" in out


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--optimizer", "AdamW(lr=eval('1'))"], "must be a literal"),
        (["--optimizer", "AdamW(lr=1e-3", "--batch-size", "8"], "cannot parse"),
        (["--optimizer", "AdamW()", "--scheduler", "LambdaLR(lr_lambda=1)"], "LambdaLR needs"),
        (["--optimizer", "AdamW()", "--batch-size", "0"], "Invalid batch size: 0"),
    ],
)
def test_audit_errors_exit_2(
    extra: list[str], match: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["audit", *RESNET, *extra]
    if "--batch-size" not in extra:
        argv += ["--batch-size", "64"]
    code, _, err = run(argv, capsys)
    assert code == 2 and match in err and len(err.strip().splitlines()) == 1
