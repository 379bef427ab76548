"""How long `optiwise lint` takes on a generated tree of training scripts.

Writes N files (default 500) into a temporary folder: each a ~150-line training script with
a model, an optimizer, a scheduler, an AMP loop, checkpointing and helpers, some with
mistakes.  Then times the library call (serial and parallel) and the command line.

    .venv/bin/python benchmarks/lint_tree.py [--files 500]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from optiwise.audit.lint import lint_paths

TEMPLATE = '''"""Generated training script {i}."""
import argparse
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.optim.lr_scheduler import {sched_cls}

EPOCHS = {epochs}
LR = {lr}


class Block{i}(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class Net{i}(nn.Module):
    def __init__(self, dim: int = 64, depth: int = 4) -> None:
        super().__init__()
        self.embed = nn.Linear(16, dim)
        self.blocks = nn.ModuleList(Block{i}(dim) for _ in range(depth))
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.embed(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=1))


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--out", default="ckpt_{i}.pt")
    p.add_argument("--resume", default=None)
    return p.parse_args()


def make_loader(batch_size: int):
    data = torch.randn(1024, 8, 16)
    labels = torch.randint(0, 10, (1024,))
    ds = torch.utils.data.TensorDataset(data, labels)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True)


def evaluate(model, loader):
    model.eval()
    total, correct = 0, 0
    with torch.no_grad():
        for x, y in loader:
            pred = model(x).argmax(dim=1)
            correct += (pred == y).sum().item()
            total += y.numel()
    model.train()
    return correct / max(total, 1)


def save(path, model, optimizer, scheduler, epoch):
    torch.save(
        {{
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
        }},
        path,
    )


def resume(path, model, optimizer, scheduler):
    ckpt = torch.load(path, map_location="cpu")
    model.load_state_dict(ckpt["model"])
    {resume_opt}
    scheduler.load_state_dict(ckpt["scheduler"])
    return ckpt["epoch"] + 1


def main():
    args = parse_args()
    loader = make_loader(args.batch_size)
    model = Net{i}()
    optimizer = optim.{opt}(model.parameters(), lr=LR, weight_decay={wd})
    scheduler = {sched_cls}(optimizer, {sched_args})
    scaler = torch.amp.GradScaler("cuda", enabled=torch.cuda.is_available())
    start = 0
    if args.resume:
        start = resume(args.resume, model, optimizer, scheduler)
    for epoch in range(start, EPOCHS):
        for step, (x, y) in enumerate(loader):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16, enabled=False):
                loss = F.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            {clip_first}
            scaler.step(optimizer)
            scaler.update()
            {batch_step}
        {epoch_step}
        acc = evaluate(model, loader)
        print(f"epoch {{epoch}} acc {{acc:.3f}} lr {{optimizer.param_groups[0]['lr']:.2e}}")
        save(args.out, model, optimizer, scheduler, epoch)


if __name__ == "__main__":
    main()
'''


def script(i: int) -> str:
    flawed = i % 3 == 0
    per_batch = i % 2 == 0
    return TEMPLATE.format(
        i=i,
        epochs=10 + i % 7,
        lr="3e-4" if i % 5 else "0.1",
        opt="Adam" if flawed else "AdamW",
        wd="0.01" if i % 4 else "0.0",
        sched_cls="OneCycleLR" if per_batch else "CosineAnnealingLR",
        sched_args="max_lr=LR, total_steps=EPOCHS * 8" if per_batch else "T_max=EPOCHS",
        resume_opt="pass" if flawed else 'optimizer.load_state_dict(ckpt["optimizer"])',
        clip_first=(
            "nn.utils.clip_grad_norm_(model.parameters(), 1.0)"
            if flawed
            else "scaler.unscale_(optimizer); nn.utils.clip_grad_norm_(model.parameters(), 1.0)"
        ),
        batch_step="scheduler.step()" if per_batch and not flawed else "pass",
        epoch_step="scheduler.step()" if not per_batch or flawed else "pass",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lines = 0
        for i in range(args.files):
            sub = root / f"project{i % 10}" / f"exp{i % 7}"
            sub.mkdir(parents=True, exist_ok=True)
            text = script(i)
            lines += text.count("\n")
            (sub / f"train_{i}.py").write_text(text)
        print(f"{args.files} files, {lines} lines")
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        for jobs in (1, None):
            t0, c0 = time.perf_counter(), time.process_time()
            report = lint_paths([root], jobs=jobs)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
            label = "serial" if jobs == 1 else "parallel (all CPUs)"
            cpu_note = f", {cpu:.2f} s CPU" if jobs == 1 else ""
            print(
                f"lint_paths {label}: {dt:.2f} s wall{cpu_note}, {report.files} files, "
                f"{len(report.findings)} findings"
            )
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "optiwise.cli", "lint", str(root), "--exit-zero"],
            capture_output=True,
            text=True,
            check=True,
        )
        dt = time.perf_counter() - t0
        print(f"optiwise lint (command, incl. start-up): {dt:.2f} s")
        print(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
