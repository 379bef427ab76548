"""The demo pipeline (`optiwise demo`) with a tiny budget on the real image data."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from optiwise import knowledge
from optiwise.bench import DataUnavailableError, get_workload
from optiwise.bench import demo as D
from optiwise.bench.demo import DemoConfig, DemoResult, run_demo, summary_rows, write_demo_report


def _image_workload() -> str:
    """fmnist-cnn on Fashion-MNIST (or MNIST-5k); digits-mlp when no image data is installed."""
    try:
        get_workload("fmnist-cnn").build(0, limit=10)
    except DataUnavailableError:
        return "digits-mlp"
    return "fmnist-cnn"


TINY = dict(
    budget=12,
    limit=512,
    eval_every=4,
    lr_steps=10,
    lr_confirm=1,
    lr_confirm_steps=4,
    jobs=1,
    tune_budget=None,
)


@pytest.fixture(scope="module")
def result() -> DemoResult:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        lines: list[str] = []
        res = run_demo(DemoConfig(workload=_image_workload(), **TINY), log=lines.append)  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(before)
    assert any(line.startswith("LR range test: peak LR") for line in lines)
    assert any(line.startswith("sgd_plain: final") for line in lines)
    return res


def test_three_setups_on_the_same_budget_data_and_seed(result: DemoResult) -> None:
    assert [r.key for r in result.runs] == ["recipe", "adam", "sgd_plain"]
    for run in result.runs:
        r = run.result
        assert r.budget == 12 and r.seed == 0 and r.steps == [0, 4, 8, 12]
        assert r.data_source == result.data_source
        assert len(run.step_losses) == len(run.step_lrs) == 12
        assert all(math.isfinite(v) for v in run.step_losses)
    # the same initialization: the three runs start from the same validation loss
    assert len({run.result.val_loss[0] for run in result.runs}) == 1
    adam, sgd = result.run("adam"), result.run("sgd_plain")
    assert adam.step_lrs == [1e-3] * 12 and sgd.step_lrs == [1e-2] * 12  # no schedule
    assert adam.result.schedule == sgd.result.schedule == "constant"
    assert adam.result.hparams["lr"] == 1e-3 and adam.result.hparams["weight_decay"] == 0
    assert sgd.result.hparams["momentum"] == 0 and sgd.result.hparams["lr"] == 0.01


def _hand_trained(workload: str, key: str) -> list[float]:
    """The naive setup trained by a plain loop written here, evaluated like the demo."""
    w = get_workload(workload)
    spec = dict(knowledge.NAIVE_SETUPS[key].value)
    problem = w.build(0, TINY["limit"])  # type: ignore[arg-type]
    model = problem.model
    opt = getattr(torch.optim, spec.pop("optimizer"))(model.parameters(), **spec)
    losses = []
    with torch.no_grad():
        model.eval()
        losses.append(problem.evaluate(model)["val_loss"])
    for step in range(1, TINY["budget"] + 1):  # type: ignore[operator]
        model.train()
        opt.zero_grad()
        problem.loss(model, problem.next_batch()).backward()
        opt.step()
        if step % TINY["eval_every"] == 0:  # type: ignore[operator]
            model.eval()
            with torch.no_grad():
                losses.append(problem.evaluate(model)["val_loss"])
    return losses


@pytest.mark.parametrize("key", ["adam", "sgd_plain"])
def test_naive_setups_are_what_a_plain_loop_does(result: DemoResult, key: str) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        expected = _hand_trained(result.workload.name, key)
    finally:
        torch.set_num_threads(before)
    assert result.run(key).result.val_loss == expected


def test_recipe_trains_at_the_range_test_lr(result: DemoResult) -> None:
    rec = result.lr_test.recommended
    peak = float(f"{rec.lr:.3g}")
    run = result.run("recipe")
    assert result.recipe.hparams["lr"] == peak == run.result.lr
    assert result.advised.choices["optimizer.lr"].rule == "knowledge-defaults"
    assert result.recipe.choices["optimizer.lr"].source == "optiwise.find_lr"
    assert result.recipe.choices["optimizer.lr"].rule == "lr-given"
    assert result.recipe.optimizer == result.advised.optimizer == result.lr_test.optimizer
    # the schedule of the recipe: warmup, the peak, then the decay
    assert max(run.step_lrs) == pytest.approx(peak) and run.step_lrs[-1] < peak / 10
    assert run.result.schedule == result.recipe.schedule
    assert len(result.lr_test.lrs) == 10 and len(result.lr_test.confirmations) == 1
    val = get_workload(result.workload.name).build(0, TINY["limit"]).val_data  # type: ignore[arg-type]
    assert val is not None and result.lr_val_examples == min(len(val[1]), 1024)


def test_audits_flag_the_naive_setups_and_pass_the_recipe(result: DemoResult) -> None:
    codes = {run.key: {f.code for f in run.findings} for run in result.runs}
    assert codes["adam"] >= {"OW307"} and "OW105" not in codes["adam"]
    assert codes["sgd_plain"] >= {"OW105", "OW307"}
    assert not [f for f in result.advised_findings if f.severity.rank <= 1]
    assert "OW307" not in codes["recipe"] and "OW105" not in codes["recipe"]


def test_summary_table_matches_the_runs(result: DemoResult) -> None:
    header, rows = summary_rows(result)
    metric = result.workload.metric
    assert header[2] == f"final val {metric}" and header[6].startswith("steps to ")
    assert [r[0] for r in rows] == ["recipe", "adam", "sgd_plain"]
    for row, run in zip(rows, result.runs, strict=True):
        r = run.result
        assert float(row[2]) == pytest.approx(r.final_metric, rel=1e-3)
        assert float(row[3]) == pytest.approx(max(r.metric), rel=1e-3)
        assert float(row[4]) == pytest.approx(r.final_val_loss, rel=1e-3)
        assert float(row[5]) == pytest.approx(min(r.val_loss), rel=1e-3)
        assert row[6] == ("never" if r.steps_to_target is None else str(r.steps_to_target))
        assert float(row[7]) == pytest.approx(r.train_time, abs=0.05)


def test_report_files_and_contents(result: DemoResult, tmp_path: Path) -> None:
    out = tmp_path / "optiwise-report"
    index = write_demo_report(result, out, command="optiwise demo")
    assert index == out / "index.md"
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "curves.png",
        "index.md",
        "lr_finder.png",
        "recipe.py",
        "recipe.txt",
        "recipe.yaml",
        "summary.json",
    ]
    for png in ("curves.png", "lr_finder.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = index.read_text()
    _, rows = summary_rows(result)
    for row in rows:
        assert "| " + " | ".join(row) + " |" in text
    for section in ("## Summary", "## The recipe", "## LR range test", "## Audit"):
        assert section in text
    assert "![curves](curves.png)" in text and "![LR range test](lr_finder.png)" in text
    assert result.recipe.explain() in text and result.recipe.to_code().rstrip() in text
    assert "OW105" in text and "OW307" in text
    assert (out / "recipe.txt").read_text() == result.recipe.explain() + "\n"
    assert (out / "recipe.py").read_text() == result.recipe.to_code()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["summary"]["rows"] == rows
    assert [r["key"] for r in summary["runs"]] == ["recipe", "adam", "sgd_plain"]
    assert summary["lr_test"]["recommended"] == result.lr_test.recommended.name
    # the recipe's code builds what was trained
    namespace: dict[str, object] = {"model": get_workload(result.workload.name).build(0, 64).model}
    exec((out / "recipe.py").read_text(), namespace)
    assert namespace["optimizer"].param_groups[0]["initial_lr"] == result.recipe.hparams["lr"]  # type: ignore[attr-defined]
    assert re.search(r"took \d+ s wall-clock and \d+ s of CPU", text)


def test_report_is_replaced_whole_and_a_failure_keeps_the_old_one(
    result: DemoResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "rep"
    write_demo_report(result, out)
    (out / "stale.txt").write_text("from an older report")
    write_demo_report(result, out)
    assert not (out / "stale.txt").exists()
    old = (out / "index.md").read_text()

    def broken(*args: object) -> None:
        raise RuntimeError("plotting failed")

    monkeypatch.setattr(D, "_plot_curves", broken)
    with pytest.raises(RuntimeError, match="plotting failed"):
        write_demo_report(result, out)
    assert (out / "index.md").read_text() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]  # no temporary folder left


def test_report_folder_that_is_a_file_is_refused(result: DemoResult, tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        write_demo_report(result, target)
    assert target.read_text() == "x"


def test_two_processes_give_the_same_runs() -> None:
    cfg = dict(
        workload="digits-mlp",
        budget=8,
        limit=300,
        eval_every=4,
        lr_steps=10,
        lr_confirm=1,
        tune_budget=None,
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = run_demo(DemoConfig(**cfg, jobs=1))  # type: ignore[arg-type]
        two = run_demo(DemoConfig(**cfg, jobs=2))  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one.runs, two.runs, strict=True):
        assert a.key == b.key
        assert a.result.val_loss == b.result.val_loss and a.step_losses == b.step_losses


def test_worker_errors_are_raised() -> None:
    worker = D._Worker(DemoConfig(), lambda key: None)
    with pytest.raises(RuntimeError, match="naive setups failed: ValueError: boom"):
        worker._handle(("error", "ValueError: boom"))


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"budget": 0}, "Invalid budget: 0"),
        ({"seed": -1}, "Invalid seed: -1"),
        ({"jobs": 3}, "Invalid jobs: 3"),
        ({"lr_steps": 5}, "Invalid lr_steps: 5"),
        ({"limit": 0}, "Invalid limit: 0"),
        ({"tune_budget": 0}, "Invalid tune_budget: 0"),
        ({"budget": 30, "tune_budget": 1.0}, "too small to tune"),
        ({"workload": "toy-beale"}, "needs a workload with real data"),
        ({"workload": "fmnist-cnnn"}, "Unknown workload"),
    ],
)
def test_bad_config_is_refused(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DemoConfig(**changes).validated()  # type: ignore[arg-type]


def test_the_recipe_trains_at_the_tuned_lr_and_the_report_shows_tune(tmp_path: Path) -> None:
    cfg = DemoConfig(
        workload="digits-mlp",
        budget=40,
        limit=300,
        eval_every=20,
        lr_steps=10,
        lr_confirm=1,
        jobs=1,
        tune_budget=4.0,
    )
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_demo(cfg)
    finally:
        torch.set_num_threads(before)
    tuned = res.tuned
    assert tuned is not None and tuned.spent_steps <= tuned.budget_steps == 160
    peak = float(f"{tuned.lr:.3g}")
    assert res.recipe.hparams["lr"] == peak == res.run("recipe").result.lr
    assert res.recipe.choices["optimizer.lr"].source == "optiwise.tune"
    index = write_demo_report(res, tmp_path / "report")
    text = index.read_text()
    assert "## Tuning" in text and "![tune](tune.png)" in text and "<- best" in text
    assert (tmp_path / "report" / "tune.png").read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["tune"]["lr"] == pytest.approx(tuned.lr)
