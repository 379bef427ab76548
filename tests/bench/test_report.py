from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from optiwise.bench import SweepConfig, open_store, run_sweep, write_report
from optiwise.bench import report as R
from optiwise.bench.protocol import SweepResult
from tests.bench.helpers import one_thread

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory: pytest.TempPathFactory) -> list[SweepResult]:
    db = tmp_path_factory.mktemp("report") / "r.db"
    with one_thread(), open_store(db) as store:
        toy = run_sweep(
            SweepConfig("toy-noisy-quadratic", ("sgd", "adam"), seeds=2, lr_grid=3, budget=80),
            store,
        )
        digits = run_sweep(
            SweepConfig("digits-mlp", ("sgd", "adam"), seeds=2, lr_grid=2, budget=30, limit=300),
            store,
        )
    return [toy, digits]


def test_report_has_index_plots_csv_and_summary(sweeps: list[SweepResult], tmp_path: Path) -> None:
    out = tmp_path / "rep"
    index = write_report(sweeps, out, storage="sqlite:///r.db", command="optiwise bench ...")
    assert index == out / "index.md"
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "digits-mlp-curves.png",
        "digits-mlp-lr.png",
        "index.md",
        "profile.png",
        "runs.csv",
        "summary.json",
        "toy-noisy-quadratic-curves.png",
        "toy-noisy-quadratic-lr.png",
        "toy-noisy-quadratic-trajectories.png",
    ]
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == PNG
    text = index.read_text()
    for needle in (
        "## toy-noisy-quadratic",
        "## digits-mlp",
        "| sgd |",
        "| adam |",
        "![performance profile](profile.png)",
        "target: accuracy >= 0.97",
        "Store: `sqlite:///r.db`",
    ):
        assert needle in text
    for image in [ln.split("(")[1].rstrip(")") for ln in text.splitlines() if ln.startswith("![")]:
        assert (out / image).is_file()

    rows = list(csv.DictReader(io.StringIO((out / "runs.csv").read_text())))
    n_records = sum(len(s.records) for s in sweeps)
    assert len(rows) == n_records
    assert {r["phase"] for r in rows} == {"tune", "final"}
    assert {r["workload"] for r in rows} == {"toy-noisy-quadratic", "digits-mlp"}
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["workloads"]) == {"toy-noisy-quadratic", "digits-mlp"}
    assert set(summary["profile_area"]) == {"sgd", "adam"}
    toy_scores = summary["workloads"]["toy-noisy-quadratic"]["scores"]
    assert [s["optimizer"] for s in toy_scores] == ["sgd", "adam"]
    assert (out / "index.md").stat().st_mode & 0o044 == 0o044  # readable report


def test_report_replaces_the_previous_one_whole(sweeps: list[SweepResult], tmp_path: Path) -> None:
    out = tmp_path / "rep"
    out.mkdir()
    (out / "stale.txt").write_text("from an old report")
    write_report(sweeps[:1], out)
    assert not (out / "stale.txt").exists() and (out / "index.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no temporary folders left


def test_a_failing_report_leaves_the_old_one_untouched(
    sweeps: list[SweepResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "rep"
    write_report(sweeps, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*args: object) -> bool:
        raise RuntimeError("disk full")

    monkeypatch.setattr(R, "_plot_lr", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_report(sweeps, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_out_folder_that_is_a_file_is_refused(sweeps: list[SweepResult], tmp_path: Path) -> None:
    target = tmp_path / "report"
    target.write_text("a file")
    with pytest.raises(ValueError, match="is a file"):
        write_report(sweeps, target)
    assert target.read_text() == "a file"
    with pytest.raises(ValueError, match="no sweeps"):
        write_report([], tmp_path / "x")


def test_runs_table_lists_only_finished_runs(sweeps: list[SweepResult]) -> None:
    text = R.runs_table(sweeps)
    header = text.splitlines()[0].split(",")
    assert header[:5] == ["workload", "study", "key", "optimizer", "phase"]
    assert len(text.splitlines()) == 1 + sum(len(s.records) for s in sweeps)


def test_out_folder_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("a file")
    with pytest.raises(ValueError, match=r"cannot be made: .* is a file"):
        R.check_out_dir(tmp_path / "f" / "sub" / "report")
    assert R.check_out_dir(tmp_path / "new" / "report") == tmp_path / "new" / "report"
