"""How good is the LR range test's suggestion?  Measured on the benchmark's real workloads.

For every case (a workload and an optimizer) this

1. runs ``find_lr`` on the workload (its model and data at seed 0, the workload's task
   family, the default sweep and the default confirmation budget);
2. trains a short warmup + cosine run (``optiwise.bench.train_run``: the benchmark's own
   training loop, data and evaluation) at the peak LR of each rule: ``confirmed`` (the
   recommendation) and the classic baselines -- fastai's ``valley`` and ``steep``, the
   steepest-gradient rule of torch-lr-finder/Lightning, and minimum/10;
3. trains the same run at every LR of a half-decade log grid centred on the optimizer's
   knowledge default, grown at an edge until the best grid LR is inside it;

and reports, side by side, whether each rule's final validation loss is within 10% of the
best grid LR's.  Every LR is trained with the same seeds (1..S; the range test used seed 0)
and scored on the mean final validation loss over them.  Runs are cached in a JSON file, so
an interrupted benchmark resumes and a changed rule only trains its new LRs; range tests are
cached under a hash of ``lr_finder.py``.

    .venv/bin/python benchmarks/lr_finder_quality.py                     # the full benchmark
    .venv/bin/python benchmarks/lr_finder_quality.py --finder-seeds 0,6  # two range tests each
    .venv/bin/python benchmarks/lr_finder_quality.py --quick             # a smaller check

It writes the results as JSON (``--out``, default ``lr_finder_quality.json``) and the report
with its markdown table next to it (``--table``, default ``--out`` with ``.md``), and prints
the report.  The full benchmark trains 6 workloads x 2 optimizers, about 400 runs of
200-500 steps on one thread: roughly 80 minutes from scratch on a shared 2-core machine
(about 110 with ``--finder-seeds 0,6``, which shares the grid runs), nearly all of it in
``fmnist-cnn`` and the two Shakespeare models; ``--quick`` takes about 12 minutes and
``--workloads`` picks a subset.  The report states the recorded compute of every workload.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from optiwise import lr_finder
from optiwise._io import atomic_write_text
from optiwise.bench import get_workload, train_run, workload_source
from optiwise.bench.protocol import center_lr, grid_lrs

RULES = ("confirmed", "valley", "fastai_steep", "steepest", "minimum")
LABELS = {
    "confirmed": "confirmed (ours)",
    "valley": "fastai valley",
    "fastai_steep": "fastai steep",
    "steepest": "steepest (torch-lr-finder)",
    "minimum": "minimum/10",
}
BAND = 1.10  # within 10% of the best grid LR's validation loss
GRID_START = 2  # the grid starts at the default LR +- 2 half-decades ...
GRID_MAX = 6  # ... and grows at an edge up to +- 6 half-decades (a 6-decade span)


@dataclasses.dataclass(frozen=True)
class Setting:
    """How one workload is run: steps per training run, seeds, training-set limit."""

    budget: int
    seeds: int
    limit: int | None = None


# Training runs are shorter than the workloads' full budgets (2 shared CPU cores).
FULL = {
    "digits-mlp": Setting(300, 5),
    "diabetes-mlp": Setting(400, 5),
    "fmnist-mlp": Setting(500, 3),
    "fmnist-cnn": Setting(200, 2),
    "shakespeare-char-gpt": Setting(200, 2),
    "shakespeare-char-lstm": Setting(200, 2),
}
QUICK = {
    "digits-mlp": Setting(150, 2),
    "fmnist-cnn": Setting(60, 1, limit=2000),
    "shakespeare-char-lstm": Setting(60, 1),
}
FULL_SEEDS = max(s.seeds for s in FULL.values())
QUICK_SEEDS = max(s.seeds for s in QUICK.values())
# The range test: sweep steps, and the confirmation budget (runs x steps per run).
FINDER = {
    "full": {"num_steps": 100, "confirm": 4, "confirm_steps": 50},
    "quick": {"num_steps": 60, "confirm": 4, "confirm_steps": 30},
}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# Fingerprint of the range test's code as imported: cached range tests are redone when it
# changes.
CODE = hashlib.sha256(Path(lr_finder.__file__).read_bytes()).hexdigest()[:12]


class Cache:
    """Training runs and range tests by key, in a JSON file rewritten atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, dict[str, Any]] = {"runs": {}, "finders": {}}
        if path.exists():
            loaded = json.loads(path.read_text(encoding="utf-8"))
            for part in self.data:
                self.data[part].update(loaded.get(part, {}))

    def get(self, part: str, key: str) -> Any:
        return self.data[part].get(key)

    def put(self, part: str, key: str, value: Any) -> None:
        self.data[part][key] = value
        atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True))


def mean_loss(losses: Sequence[float | None]) -> float:
    """Mean final validation loss over seeds; a diverged seed makes it infinite."""
    if any(v is None or not math.isfinite(v) for v in losses):
        return math.inf
    return sum(losses) / len(losses)  # type: ignore[arg-type]


class Case:
    """One workload with one optimizer."""

    def __init__(
        self, name: str, optimizer: str, setting: Setting, cache: Cache, finder_seed: int
    ) -> None:
        work = get_workload(name)
        # Evaluate only before training (for the divergence check) and after the last step.
        self.work = dataclasses.replace(work, eval_every=setting.budget)
        self.optimizer = optimizer
        self.setting = setting
        self.cache = cache
        self.finder_seed = finder_seed
        self.data = work.build(0, setting.limit).data_name
        self.prefix = f"{name}|{self.data}|budget={setting.budget}|limit={setting.limit}"
        self.lrs: set[float] = set()  # every peak LR trained
        self.seconds: dict[str, float] = {}  # recorded compute time of each run used
        self.finder_seconds = 0.0  # ... and of the range test

    @property
    def label(self) -> str:
        return f"{self.work.name} / {self.optimizer} (range test seed {self.finder_seed})"

    def losses(self, lr: float) -> list[float | None]:
        """Final validation loss of a run at peak LR ``lr`` for every seed (cached)."""
        out = []
        self.lrs.add(float(f"{lr:.6g}"))
        for seed in range(1, self.setting.seeds + 1):
            key = f"{self.prefix}|{self.optimizer}|lr={lr:.6g}|seed={seed}"
            hit = self.cache.get("runs", key)
            if hit is None:
                t0 = time.perf_counter()
                run = train_run(
                    self.work,
                    self.optimizer,
                    float(f"{lr:.6g}"),
                    seed,
                    budget=self.setting.budget,
                    limit=self.setting.limit,
                )
                value = None if run.diverged else run.final_val_loss
                hit = {"val_loss": value, "seconds": time.perf_counter() - t0}
                self.cache.put("runs", key, hit)
                shown = "diverged" if value is None else f"{value:.4f}"
                log(f"  {self.label} lr={lr:.3g} seed={seed}: {shown} ({hit['seconds']:.0f} s)")
            self.seconds[key] = hit["seconds"]
            out.append(hit["val_loss"])
        return out

    def finder(self, steps: dict[str, int]) -> dict[str, Any]:
        """The range test's suggestions and confirmation runs (cached per code version)."""
        key = (
            f"{self.prefix}|{self.optimizer}|seed={self.finder_seed}|"
            f"{json.dumps(steps, sort_keys=True)}|code={CODE}"
        )
        hit = self.cache.get("finders", key)
        if hit is not None:
            return dict(hit)
        source = workload_source(
            self.work, seed=self.finder_seed, batches=steps["num_steps"], limit=self.setting.limit
        )
        assert source.model is not None
        t0 = time.perf_counter()
        result = lr_finder.find_lr(
            source.model,
            source.loss_fn,
            source.train,
            self.optimizer,
            val_data=source.val,
            task=source.task,
            num_steps=steps["num_steps"],
            confirm=steps["confirm"],
            confirm_steps=steps["confirm_steps"],
        )
        out = result.to_dict()
        out["seconds"] = time.perf_counter() - t0
        out["confirm_steps"] = sum(c["steps"] for c in out["confirmations"])
        self.cache.put("finders", key, out)
        log(f"  {self.label} range test: {out['seconds']:.0f} s")
        return out

    def grid(self) -> list[dict[str, Any]]:
        """The half-decade grid around the default LR, grown until its best is inside."""
        center = center_lr(self.work, self.optimizer)
        points = grid_lrs(center, 2 * GRID_MAX + 1)
        low, high = GRID_MAX - GRID_START, GRID_MAX + GRID_START
        while True:
            rows: list[dict[str, Any]] = [
                {"lr": lr, "losses": (losses := self.losses(lr)), "mean": mean_loss(losses)}
                for lr in points[low : high + 1]
            ]
            best = min(range(len(rows)), key=lambda i: (rows[i]["mean"], rows[i]["lr"]))
            if (best == 0 or not math.isfinite(rows[best]["mean"])) and low > 0:
                low -= 1
            elif best == len(rows) - 1 and high < len(points) - 1:
                high += 1
            else:
                return rows

    def evaluate(self, mode: str) -> dict[str, Any]:
        log(f"{self.label} ({self.data}, {self.setting.budget} steps, {self.setting.seeds} seeds)")
        found = self.finder(FINDER[mode])
        self.finder_seconds = found["seconds"]
        grid = self.grid()
        best = min(grid, key=lambda r: (r["mean"], r["lr"]))
        rules: dict[str, Any] = {}
        for rule in RULES:
            lr = found["suggestions"][rule]["lr"]
            losses = self.losses(lr)
            value = mean_loss(losses)
            ratio = value / best["mean"]
            rules[rule] = {
                "lr": lr,
                "losses": losses,
                "mean": finite(value),
                "ratio": finite(ratio),
                "within": ratio <= BAND,
            }
        default = center_lr(self.work, self.optimizer)
        return {
            "workload": self.work.name,
            "optimizer": self.optimizer,
            "finder_seed": self.finder_seed,
            "data": self.data,
            "budget": self.setting.budget,
            "seeds": list(range(1, self.setting.seeds + 1)),
            "limit": self.setting.limit,
            "default_lr": default,
            "grid": [{**r, "mean": finite(r["mean"])} for r in grid],
            "best": {"lr": best["lr"], "mean": best["mean"]},
            "rules": rules,
            # recorded compute of this case's range test and of every run it uses (also when
            # they came from the cache): what the case costs from scratch
            "compute_seconds": found["seconds"] + sum(self.seconds.values()),
            "trained_lrs": len(self.lrs),
            "finder": {
                k: found[k]
                for k in ("start_lr", "end_lr", "num_steps", "stop_reason", "seconds")
                if k in found
            }
            | {
                "sweep_steps": len(found["lrs"]),
                "confirm_steps": found["confirm_steps"],
                "confirmations": found["confirmations"],
            },
        }


def finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def table(cases: list[dict[str, Any]]) -> str:
    """Markdown: per case, each rule's peak LR and its loss as a ratio to the grid's best."""
    head = ["case", "best grid LR (val loss)", *(LABELS[r] for r in RULES)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    several = len({c["finder_seed"] for c in cases}) > 1
    for c in cases:
        seed = f" (seed {c['finder_seed']})" if several else ""
        cells = [
            f"{c['workload']} / {c['optimizer']}{seed}",
            f"{c['best']['lr']:.3g} ({c['best']['mean']:.3f})",
        ]
        for r in RULES:
            rule = c["rules"][r]
            mark = "✓" if rule["within"] else "✗"
            cells.append(f"{rule['lr']:.2g}: {_ratio_text(rule['ratio'])} {mark}")
        lines.append("| " + " | ".join(cells) + " |")
    summary = summarize(cases)
    rows = [
        ("within 10% of the best", lambda s: f"**{s['within']}/{s['cases']}**"),
        ("within 20% of the best", lambda s: f"{s['within_20']}/{s['cases']}"),
        ("geometric mean ratio", lambda s: _ratio_text(s["geomean_ratio"])),
        ("worst ratio", lambda s: _ratio_text(s["worst_ratio"])),
    ]
    for label, cell in rows:
        lines.append("| " + " | ".join([label, "", *(cell(summary[r]) for r in RULES)]) + " |")
    return "\n".join(lines)


def _ratio_text(v: float | None) -> str:
    return "diverged" if v is None else f"{v:.2f}"


def summarize(cases: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per rule: cases within 10% and 20% of the best, geometric mean and worst ratio."""
    out = {}
    for r in RULES:
        ratios = [
            math.inf if c["rules"][r]["ratio"] is None else c["rules"][r]["ratio"] for c in cases
        ]
        geo = math.exp(sum(math.log(v) for v in ratios) / len(ratios)) if ratios else math.nan
        out[r] = {
            "within": sum(c["rules"][r]["within"] for c in cases),
            "within_20": sum(v <= 1.2 for v in ratios),
            "cases": len(cases),
            "geomean_ratio": finite(geo),
            "worst_ratio": finite(max(ratios, default=math.nan)),
        }
    return out


def compute_seconds(cases: Sequence[Case]) -> float:
    """Recorded compute of the cases' range tests and of their runs, each run counted once
    (the grid's runs are shared by the range-test seeds of a workload and optimizer)."""
    runs: dict[str, float] = {}
    for case in cases:
        runs.update(case.seconds)
    return sum(case.finder_seconds for case in cases) + sum(runs.values())


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of ints: {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"need distinct seeds >= 0, got {text!r}")
    return seeds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 workloads, shorter runs")
    parser.add_argument("--workloads", help="comma-separated subset of the workloads")
    parser.add_argument("--optimizers", default="adamw,sgd", help="registry names")
    parser.add_argument("--cache", default="lr_finder_quality.cache.json", help="run cache")
    parser.add_argument("--out", default="lr_finder_quality.json", help="results (JSON)")
    parser.add_argument(
        "--table", default=None, help="the report in markdown (default: --out with .md)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument(
        "--finder-seeds",
        type=_seed_list,
        default=[0],
        help="comma-separated seeds of the range test's model and batches, one set of cases "
        "each (default 0; training runs use seeds 1..S, which the range test must not share)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # A run at too high an LR can saturate (an LSTM's gates) and then crawl on denormal
    # floats; flushing them to zero changes no result that matters and keeps it fast.
    torch.set_flush_denormal(True)
    mode = "quick" if args.quick else "full"
    settings = QUICK if args.quick else FULL
    names = args.workloads.split(",") if args.workloads else list(settings)
    unknown = [n for n in names if n not in settings]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {', '.join(settings)}")
    for n in names:
        shared = [seed for seed in args.finder_seeds if 1 <= seed <= settings[n].seeds]
        if shared:  # the range test would start from a training run's model and batches
            parser.error(
                f"range-test seed(s) {shared} are also training seeds of {n} "
                f"(1..{settings[n].seeds}); use 0 or seeds above {max(FULL_SEEDS, QUICK_SEEDS)}"
            )
    cache = Cache(Path(args.cache))
    t0 = time.perf_counter()
    runs = [
        Case(name, opt, settings[name], cache, seed)
        for seed in args.finder_seeds
        for name in names
        for opt in args.optimizers.split(",")
    ]
    cases = [case.evaluate(mode) for case in runs]
    finder = FINDER[mode]
    confirm, confirm_steps = finder["confirm"], finder["confirm_steps"]
    summary = summarize(cases)
    compute = compute_seconds(runs)
    result: dict[str, Any] = {
        "mode": mode,
        "band": BAND,
        "settings": {n: dataclasses.asdict(settings[n]) for n in names},
        "finder": {
            "seeds": args.finder_seeds,
            "sweep_steps": finder["num_steps"],
            "confirm_runs": confirm,
            "confirm_steps_per_run": confirm_steps,
            "confirm_budget_steps": confirm * confirm_steps,
        },
        "cases": cases,
        "summary": summary,
        "summary_by_seed": {
            seed: summarize([c for c in cases if c["finder_seed"] == seed])
            for seed in args.finder_seeds
        },
        "compute_seconds": compute,
        "seconds": time.perf_counter() - t0,
    }
    lines = [
        f"LR range test quality ({mode}): final validation loss of a warmup + cosine run at "
        "each rule's peak LR, as a ratio to the best LR of a half-decade grid (mean over "
        "seeds; ✓ within 10%).",
        "",
        f"Range test: {finder['num_steps']}-step sweep; confirmation budget at most "
        f"{confirm} runs x {confirm_steps} steps = {confirm * confirm_steps} steps.",
        "",
    ]
    for n in names:
        s = settings[n]
        limit = f", {s.limit} training examples" if s.limit else ""
        spent = compute_seconds([case for case in runs if case.work.name == n])
        lines.append(
            f"- {n}: {s.budget} steps per run, seeds 1..{s.seeds}{limit}; "
            f"compute {spent / 60:.1f} min"
        )
    lines += ["", table(cases), ""]
    if len(args.finder_seeds) > 1:
        for seed, per_rule in result["summary_by_seed"].items():
            counts = ", ".join(
                f"{LABELS[r]} {v['within']}/{v['cases']}" for r, v in per_rule.items()
            )
            lines.append(f"- range test seed {seed}, within 10%: {counts}")
        lines.append("")
    lines.append(
        f"Compute from scratch: {compute / 60:.1f} min (the recorded time of every range test "
        f"and training run above, {args.threads} thread(s)); this invocation: "
        f"{result['seconds'] / 60:.1f} min."
    )
    report = "\n".join(lines) + "\n"
    table_path = Path(args.table) if args.table else Path(args.out).with_suffix(".md")
    atomic_write_text(args.out, json.dumps(result, indent=1))
    atomic_write_text(table_path, report)
    print(report, end="")
    print(f"written to {args.out} and {table_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
