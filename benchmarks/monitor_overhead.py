"""Overhead of optiwise.Monitor on real training steps: monitored over plain, side by side.

For each workload (optiwise's benchmark workloads, e.g. ``fmnist-mlp``, ``fmnist-cnn``,
``digits-mlp``), a round trains ``--steps`` steps of AdamW twice from the same weights and
batches (in a plain loop, or with ``--stepper`` through an optiwise.Stepper, to which the
monitor attaches): once plain, once with a Monitor (default ``every=1, detail_every=10``;
in memory, or writing CSV + TensorBoard with ``--log-dir``), in alternating order. The ratio
of the two wall times is taken per round, and the median over ``--repeat`` rounds is
reported with its range, so that other processes on a shared machine slow both sides alike.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/monitor_overhead.py --workloads fmnist-mlp,fmnist-cnn
    OMP_NUM_THREADS=1 python benchmarks/monitor_overhead.py --log-dir /tmp/mon --repeat 7
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch

from optiwise import Stepper
from optiwise.bench.workloads import get_workload
from optiwise.monitor import Monitor


def _steps(problem: Any, n: int) -> list[Any]:
    return [problem.next_batch() for _ in range(n)]


def _run(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    batches: list[Any],
    monitor_kw: dict[str, Any] | None,
    stepper: bool = False,
) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    monitor = Monitor(model, opt, **monitor_kw) if monitor_kw is not None else None
    step = Stepper(opt, model=model) if stepper else None
    if step is not None and monitor is not None:
        monitor.attach(step)
    start = time.perf_counter()
    for batch in batches:
        if step is not None:
            step.backward(loss_fn(model, batch))
            continue
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        loss.backward()
        opt.step()
        if monitor is not None:
            monitor.step(loss)
    if monitor is not None:
        monitor.flush()
    elapsed = time.perf_counter() - start
    if monitor is not None:
        monitor.close()
    return elapsed


def measure(
    name: str,
    steps: int,
    repeat: int,
    every: int,
    detail_every: int,
    log_dir: str | None,
    stepper: bool = False,
) -> dict[str, Any]:
    """Per-round monitored/plain time ratios on workload ``name``."""
    problem = get_workload(name).build(seed=0, limit=2048)
    batches = _steps(problem, steps)
    base = copy.deepcopy(problem.model)
    kw: dict[str, Any] = {"every": every, "detail_every": detail_every, "tensorboard": False}
    ratios, plain_times = [], []
    _run(copy.deepcopy(base), problem.loss, batches[:5], None)  # warm up
    for r in range(repeat):
        if log_dir is not None:
            kw = {**kw, "log_dir": tempfile.mkdtemp(dir=log_dir), "tensorboard": None}
        order = [None, kw] if r % 2 == 0 else [kw, None]
        times: dict[bool, float] = {}
        for mkw in order:
            times[mkw is not None] = _run(copy.deepcopy(base), problem.loss, batches, mkw, stepper)
        ratios.append(times[True] / times[False])
        plain_times.append(times[False] / steps)
    return {
        "workload": name,
        "step_ms": 1000 * statistics.median(plain_times),
        "ratio": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default="fmnist-mlp,fmnist-cnn,digits-mlp")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--every", type=int, default=1)
    parser.add_argument("--detail-every", type=int, default=10)
    parser.add_argument("--log-dir", default=None, help="write CSV + TensorBoard under here")
    parser.add_argument(
        "--stepper", action="store_true", help="train with an optiwise.Stepper on both sides"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"{'workload':<14} {'step ms':>8} {'monitored/plain':>16} {'range':>16}")
    for name in args.workloads.split(","):
        m = measure(
            name,
            args.steps,
            args.repeat,
            args.every,
            args.detail_every,
            args.log_dir,
            args.stepper,
        )
        print(
            f"{m['workload']:<14} {m['step_ms']:>8.2f} {m['ratio']:>16.3f} "
            f"{m['min']:>7.3f}-{m['max']:<8.3f}"
        )


if __name__ == "__main__":
    main()
