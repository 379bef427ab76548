"""What the Monitor records, in memory and in its files, in a plain loop and with a Stepper."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import optiwise
from optiwise.cli import main
from optiwise.monitor import Monitor, RunLog, diagnose, load_log
from optiwise.monitor.log import CSV_NAME, META_NAME
from tests.monitor.workloads import mlp, train


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 64, generator=g), torch.randint(0, 10, (16,), generator=g)


def test_plain_loop_records_loss_lr_norms_and_update_ratios() -> None:
    model = mlp(hidden=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, opt, detail_every=2)
    expected_loss, expected_norm, expected_ratio = [], [], []
    for step in range(4):
        x, y = _batch(step)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        w0 = model[0].weight.detach().clone()
        g0 = model[0].weight.grad.detach().clone()
        total = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()])
        )
        opt.step()
        mon.step(loss)
        expected_loss.append(loss.item())
        expected_norm.append((float(total), float(g0.norm())))
        expected_ratio.append(float((model[0].weight.detach() - w0).norm() / w0.norm()))
    mon.flush()
    steps, losses = mon.log.get("loss")
    assert steps.tolist() == [1, 2, 3, 4]
    assert losses.tolist() == pytest.approx(expected_loss)
    assert mon.log.get("lr/0")[1].tolist() == [0.1] * 4
    assert mon.log.get("grad_norm")[1].tolist() == pytest.approx([n for n, _ in expected_norm])
    s, v = mon.log.get("grad_norm/0.weight")  # per parameter on the detailed steps only
    assert s.tolist() == [2, 4]
    assert v.tolist() == pytest.approx([expected_norm[1][1], expected_norm[3][1]])
    s, v = mon.log.get("update_ratio/0.weight")
    assert s.tolist() == [2, 4]
    assert v.tolist() == pytest.approx([expected_ratio[1], expected_ratio[3]], rel=1e-5)
    assert mon.log.get("nonfinite_grads")[1].tolist() == [0.0] * 4
    assert mon.log.get("skipped")[1].tolist() == [0.0] * 4
    mon.close()


class _ClearsGradsSGD(torch.optim.SGD):
    """SGD that zeroes the gradients it stepped with (as an optimizer may change them)."""

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[no-untyped-def]
        out = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.zero_()
        return out


def test_gradients_are_read_before_the_step_without_a_closure() -> None:
    model = mlp(hidden=16)
    opt = _ClearsGradsSGD(model.parameters(), lr=0.1)
    mon = Monitor(model, opt)
    x, y = _batch(0)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    total = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.grad) for p in model.parameters()])
    )
    opt.step()
    mon.step(loss)
    mon.flush()
    assert total > 0
    assert mon.log.get("grad_norm")[1].tolist() == pytest.approx([float(total)])


def test_every_records_only_every_nth_step_and_checks_detail_every() -> None:
    model = mlp(hidden=8)
    opt = torch.optim.Adam(model.parameters())
    mon = Monitor(model, opt, every=2, detail_every=4)
    for step in range(8):
        x, y = _batch(step)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        mon.step(loss)
    mon.flush()
    assert mon.log.get("loss")[0].tolist() == [2, 4, 6, 8]
    assert mon.log.get("update_ratio/0.weight")[0].tolist() == [4, 8]
    with pytest.raises(ValueError, match="detail_every: 5 is not a multiple of every=2"):
        Monitor(model, opt, every=2, detail_every=5)
    with pytest.raises(ValueError, match="Invalid every: 0"):
        Monitor(model, opt, every=0)


def test_bad_inputs_are_refused_with_the_fix() -> None:
    model = mlp(hidden=8)
    opt = torch.optim.Adam(model.parameters())
    with pytest.raises(ValueError, match=r"is not an nn\.Module"):
        Monitor(object(), opt)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"is not a torch\.optim\.Optimizer"):
        Monitor(model, object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Invalid batch_size: 0"):
        Monitor(model, opt, batch_size=0)
    mon = Monitor(model, opt)
    with pytest.raises(ValueError, match="must be a scalar"):
        mon.step(torch.ones(3))
    with pytest.raises(ValueError, match="got no metrics"):
        mon.log_val()
    with pytest.raises(ValueError, match="must be a number"):
        mon.log_val(loss="low")
    with pytest.raises(ValueError, match="no log_dir"):
        mon.plot()
    with pytest.raises(ValueError, match="no loss values"):
        mon.diagnose()
    mon.close()
    with pytest.raises(RuntimeError, match="closed"):
        mon.step(1.0)


def test_close_removes_the_hooks() -> None:
    model = mlp(hidden=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, opt, detail_every=1)
    mon.close()
    x, y = _batch()
    F.cross_entropy(model(x), y).backward()
    opt.step()
    assert mon._opt_steps == 0 and mon._pending_norms is None and mon._snapshot is None


def test_files_csv_meta_tensorboard_and_plot(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    model = mlp()
    model[2].requires_grad_(False)
    mon = train(
        model,
        torch.optim.Adam(model.parameters(), lr=1e-3),
        steps=40,
        val_every=20,
        monitor_kw={"log_dir": tmp_path, "tensorboard": True},
    )
    assert (tmp_path / "monitor.png").stat().st_size > 10_000
    meta = json.loads((tmp_path / META_NAME).read_text())
    assert meta["never_grad"] == ["2.weight", "2.bias"] and meta["optimizer"] == "adam"
    from_csv = load_log(tmp_path / CSV_NAME)
    assert from_csv.series == mon.log.series
    assert from_csv.meta == meta
    assert from_csv.get("val/loss")[0].tolist() == [20, 40]
    # the TensorBoard events alone give the same series (in float32)
    tb = tmp_path / "tb"
    tb.mkdir()
    for f in tmp_path.glob("events.out.tfevents.*"):
        shutil.copy(f, tb)
    shutil.copy(tmp_path / META_NAME, tb)
    from_tb = load_log(tb)
    assert set(from_tb.series) == set(mon.log.series)
    s, v = from_tb.get("loss")
    assert s.tolist() == mon.log.get("loss")[0].tolist()
    assert v.tolist() == pytest.approx(mon.log.get("loss")[1].tolist(), rel=1e-6)
    assert [f.cause for f in diagnose(tb)] == [f.cause for f in mon.diagnose()]


def test_csv_rows_are_on_disk_before_close_and_a_cut_row_is_ignored(tmp_path: Path) -> None:
    model = mlp(hidden=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = Monitor(model, opt, log_dir=tmp_path, tensorboard=False)
    for step in range(3):
        x, y = _batch(step)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        mon.step(loss)
    mon.flush()  # as a run killed right after a flush
    csv = tmp_path / CSV_NAME
    text = csv.read_text()
    assert text.startswith("step,tag,value\n") and text.count("\n1,loss,") == 1
    csv.write_text(text + "4,loss")  # the row a killed process was writing
    assert load_log(csv).get("loss")[0].tolist() == [1, 2, 3]
    mon.close()
    with pytest.raises(ValueError, match="not a monitor CSV"):
        (tmp_path / "other.csv").write_text("a,b\n1,2\n")
        load_log(tmp_path / "other.csv")
    with pytest.raises(ValueError, match="does not exist"):
        load_log(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"neither monitor\.csv nor TensorBoard"):
        load_log(empty)


def test_stepper_hook_records_window_loss_preclip_norm_and_skips() -> None:
    model = mlp(hidden=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stepper = optiwise.Stepper(opt, model=model, accumulation=2, clip_norm=0.01)
    mon = Monitor(model, opt).attach(stepper)
    assert mon.log.meta["clip_norm"] == 0.01
    losses, norms = [], []
    for step in range(6):
        x, y = _batch(step)
        loss = F.cross_entropy(model(x), y)
        if step == 4:  # a non-finite gradient in the third window: the stepper skips it
            loss = loss * float("inf")
        losses.append(loss.item())
        result = stepper.backward(loss)
        if result is not None:
            norms.append(result.grad_norm)
    mon.close()
    s, v = mon.log.get("loss")
    assert s.tolist() == [1, 2, 3]
    assert v[:2].tolist() == pytest.approx(
        [(losses[0] + losses[1]) / 2, (losses[2] + losses[3]) / 2]
    )
    assert math.isinf(v[2]) or math.isnan(v[2])
    assert mon.log.get("grad_norm")[1][:2].tolist() == pytest.approx(norms[:2])  # pre-clip
    assert mon.log.get("skipped")[1].tolist() == [0.0, 0.0, 1.0]
    nonfinite = mon.log.get("nonfinite_grads")[1].tolist()
    assert nonfinite[:2] == [0.0, 0.0] and nonfinite[2] >= 1  # measured on the skipped step
    assert stepper._step_hooks == []  # close() detaches
    with pytest.raises(ValueError, match=r"is not an optiwise\.Stepper"):
        Monitor(model, opt).attach(object())


def test_grad_scaler_scale_and_skips_are_recorded() -> None:
    model = mlp(hidden=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    mon = train(model, opt, steps=6, scaler=scaler, inf_every=3)
    assert mon.log.get("skipped")[1].tolist() == [1, 0, 0, 1, 0, 0]
    scale = mon.log.get("amp_scale")[1].tolist()
    assert scale[:4] == [2.0, 2.0, 2.0, 1.0]  # after each step's update: halved per overflow
    assert mon.log.get("nonfinite_grads")[1][0] > 0


def test_runlog_helpers_round_trip(tmp_path: Path) -> None:
    log = RunLog(meta={"param_names": ["b", "a"]})
    log.add("loss", 1, 2.0)
    log.add("grad_norm/a", 1, 0.5)
    log.add("grad_norm/b", 1, 0.25)
    assert list(log.per_param("grad_norm")) == ["b", "a"]  # the run's parameter order
    assert log.last_step == 1
    path = log.to_csv(tmp_path / "x.csv")
    back = load_log(path)
    assert back.series == log.series and back.meta == log.meta


def _saved_run(tmp_path: Path, lr: float) -> Path:
    model = mlp()
    train(
        model,
        torch.optim.Adam(model.parameters(), lr=lr),
        steps=200,
        monitor_kw={"log_dir": tmp_path, "tensorboard": False},
    )
    return tmp_path / CSV_NAME


def test_cli_diagnose_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = _saved_run(tmp_path, lr=1e-6)
    assert main(["diagnose", str(csv)]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("major    OW803 lr_too_low:")
    assert main(["diagnose", str(tmp_path), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["findings"][0]["cause"] == "lr_too_low"
    assert data["findings"][0]["data"]["median_update_ratio"] < 1e-4
    assert main(["diagnose", str(tmp_path / "nope.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_diagnose_healthy_run_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = _saved_run(tmp_path, lr=1e-3)
    assert main(["diagnose", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "critical" not in out and "major" not in out


def test_diagnose_refuses_other_sources() -> None:
    with pytest.raises(ValueError, match="pass a Monitor, a RunLog"):
        diagnose(3)
    nn_module = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="pass a Monitor, a RunLog"):
        diagnose(nn_module)


def test_stepper_step_hooks_run_before_gradients_are_cleared() -> None:
    model = mlp(hidden=8)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    stepper = optiwise.Stepper(opt, model=model)
    seen = []

    def hook(result: optiwise.StepResult, loss: torch.Tensor) -> None:
        seen.append((result.step, float(loss), model[0].weight.grad is not None))

    stepper.add_step_hook(hook)
    x, y = _batch()
    loss = F.cross_entropy(model(x), y)
    stepper.backward(loss)
    assert seen == [(1, pytest.approx(loss.item()), True)]
    assert model[0].weight.grad is None  # cleared after the hooks
    stepper.remove_step_hook(hook)
    stepper.backward(F.cross_entropy(model(x), y))
    assert len(seen) == 1
    with pytest.raises(ValueError, match="is not callable"):
        stepper.add_step_hook(3)  # type: ignore[arg-type]


def test_the_monitor_imports_nothing_above_it() -> None:
    import ast

    root = Path(optiwise.__file__).parent / "monitor"
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(
                    ("optiwise.advisor", "optiwise.bench", "optiwise.cli", "optiwise.audit")
                ), f"{path.name} imports {name}"
