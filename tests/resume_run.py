"""A tiny training run for the SIGKILL resume tests (run as a script, not collected).

``python resume_run.py WORKDIR [--pause-after-step N] [--pause-in-save N]``

Trains 3 epochs of 5 micro-batches with accumulation 2 (windows of 2, 2 and 1, so 9 optimizer
steps), with dropout, BatchNorm, a shuffled order, numpy and Python noise, bf16 autocast,
clipping, a warmup-cosine schedule and an EMA; checkpoints to WORKDIR/ckpt.pt every 2 steps
(mid-epoch included) and resumes from it when it exists. At the end it writes the final
model, EMA and optimizer state to WORKDIR/final.pt.

``--pause-after-step N`` prints ``paused`` after step N and sleeps (to be killed there);
``--pause-in-save N`` writes half of the N-th checkpoint's bytes to its temporary file,
prints ``paused`` and sleeps (a kill in the middle of a save).
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import optiwise

EPOCHS, MICRO, BATCH, ACCUM, SAVE_EVERY = 3, 5, 8, 2, 2


def pause() -> None:
    print("paused", flush=True)
    time.sleep(600)
    sys.exit(3)  # never reached when the test kills the process


def stall_in_save(nth: int) -> None:
    """Make the ``nth`` torch.save write half of its bytes, then pause."""
    real_save = torch.save
    calls = {"n": 0}

    def save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] != nth:
            real_save(obj, f, *args, **kwargs)
            return
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        with open(f, "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
        pause()

    torch.save = save  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--pause-after-step", type=int, default=-1)
    parser.add_argument("--pause-in-save", type=int, default=-1)
    args = parser.parse_args()
    if args.pause_in_save > 0:
        stall_in_save(args.pause_in_save)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)

    g = torch.Generator().manual_seed(1)
    xs = torch.randn(MICRO * BATCH, 6, generator=g)
    ys = torch.randint(0, 3, (MICRO * BATCH,), generator=g)
    model = nn.Sequential(
        nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3)
    )
    optimizer = optiwise.create_optimizer("adamw", model, lr=1e-2)
    scheduler = optiwise.create_scheduler("warmup_cosine", optimizer, total_steps=9, warmup=2)
    stepper = optiwise.Stepper(
        optimizer,
        scheduler,
        model=model,
        accumulation=ACCUM,
        clip_norm=1.0,
        amp="bf16",
        ema_decay=0.9,
    )
    parts = dict(model=model, optimizer=optimizer, scheduler=scheduler, stepper=stepper)
    ckpt = args.workdir / "ckpt.pt"

    epoch, pos, order = 0, 0, None
    if ckpt.exists():
        extra = optiwise.load_checkpoint(ckpt, **parts)
        epoch, pos, order = extra["epoch"], extra["pos"], extra["order"]
        print(f"resumed at step {stepper.step_count}", flush=True)

    while epoch < EPOCHS:
        if order is None:
            order = torch.randperm(MICRO * BATCH)
        while pos < MICRO:
            idx = order[pos * BATCH : (pos + 1) * BATCH]
            noise = torch.from_numpy(np.random.normal(0.0, 0.05, (BATCH, 6)).astype(np.float32))
            x = xs[idx] + noise * random.random()
            with stepper.autocast():
                loss = F.cross_entropy(model(x), ys[idx])
            pos += 1
            result = stepper.backward(loss)
            if pos == MICRO and stepper.pending:
                result = stepper.flush()
            if result is None or not result.stepped:
                continue
            print(f"step {result.step}", flush=True)
            if result.step % SAVE_EVERY == 0:
                at_end = pos == MICRO
                extra = {
                    "epoch": epoch + 1 if at_end else epoch,
                    "pos": 0 if at_end else pos,
                    "order": None if at_end else order,
                }
                optiwise.save_checkpoint(ckpt, extra=extra, **parts)
                print(f"saved {result.step}", flush=True)
            if result.step == args.pause_after_step:
                pause()
        epoch, pos, order = epoch + 1, 0, None

    ema = stepper.ema_model
    assert ema is not None
    final = {"model": model.state_dict(), "ema": ema.state_dict()}
    final["optimizer"] = optimizer.state_dict()
    torch.save(final, args.workdir / "final.pt")
    print("done", flush=True)


if __name__ == "__main__":
    main()
