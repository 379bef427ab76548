"""The HF Trainer and Lightning callbacks feed the monitor, on tiny models over digits."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from optiwise.monitor import hf_callback, lightning_callback
from tests.monitor.workloads import digits


class _HFClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(x)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def _hf_run(tmp_path: Path, lr: float, steps: int) -> object:
    pytest.importorskip("transformers")
    from transformers import Trainer, TrainingArguments

    d = digits()
    train = [{"x": a, "labels": b} for a, b in zip(d.x_train, d.y_train, strict=True)]
    val = [{"x": a, "labels": b} for a, b in zip(d.x_val, d.y_val, strict=True)]
    args = TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=steps,
        learning_rate=lr,
        lr_scheduler_type="constant",
        per_device_train_batch_size=32,
        gradient_accumulation_steps=2,
        eval_strategy="steps",
        eval_steps=steps // 2,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    callback = hf_callback(log_dir=tmp_path / "mon", tensorboard=False)
    trainer = Trainer(
        model=_HFClassifier(),
        args=args,
        train_dataset=train,
        eval_dataset=val,
        callbacks=[callback],
    )
    trainer.train()
    return callback


def test_hf_callback_records_every_optimizer_step(tmp_path: Path) -> None:
    callback = _hf_run(tmp_path, lr=1e-3, steps=40)
    mon = callback.monitor  # type: ignore[attr-defined]
    steps, loss = mon.log.get("loss")
    assert steps.tolist() == list(range(1, 41))
    assert np.isfinite(loss).all() and loss[-5:].mean() < loss[:5].mean()
    assert np.isfinite(mon.log.get("grad_norm")[1]).all()
    assert mon.log.get("lr/0")[1][0] == pytest.approx(1e-3)
    assert mon.log.meta["clip_norm"] == 1.0 and mon.log.meta["batch_size"] == 64
    assert mon.log.get("val/loss")[0].tolist() == [20, 40]
    assert (tmp_path / "mon" / "monitor.csv").is_file()
    assert (tmp_path / "mon" / "monitor.png").is_file()


def test_hf_callback_diagnoses_a_far_too_high_lr(tmp_path: Path) -> None:
    callback = _hf_run(tmp_path, lr=0.3, steps=80)
    findings = callback.monitor.diagnose()  # type: ignore[attr-defined]
    assert findings and findings[0].cause == "lr_too_high", [f.cause for f in findings]


def test_lightning_callback_records_steps_and_val_metrics(tmp_path: Path) -> None:
    pl = pytest.importorskip("lightning.pytorch")
    d = digits()

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], idx: int) -> torch.Tensor:
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], idx: int) -> None:
            x, y = batch
            self.log("val_loss", F.cross_entropy(self.net(x), y))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(d.x_train, d.y_train), batch_size=32, shuffle=True
    )
    val = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(d.x_val, d.y_val), batch_size=256
    )
    callback = lightning_callback(tensorboard=False)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    trainer = pl.Trainer(
        max_steps=30,
        accumulate_grad_batches=2,
        gradient_clip_val=0.5,
        val_check_interval=20,  # micro-batches: after optimizer steps 10 and 20
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=str(tmp_path),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Module(), loader, val)
    mon = callback.monitor
    steps, loss = mon.log.get("loss")
    assert steps.tolist() == list(range(1, 31))  # optimizer steps, not micro-batches
    assert np.isfinite(loss).all()
    _, norms = mon.log.get("grad_norm")
    assert np.isfinite(norms).all() and norms.max() <= 0.5 + 1e-4  # clipped, then recorded
    assert mon.log.meta["clip_norm"] == 0.5
    vs, vl = mon.log.get("val/loss")
    assert vs.tolist() == [10, 20] and all(math.isfinite(v) for v in vl)
    assert [f.cause for f in mon.diagnose() if f.severity.rank <= 1] == []
