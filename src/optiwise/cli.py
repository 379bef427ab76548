"""The ``optiwise`` command: parses arguments, calls the library, prints.

Errors print one line to stderr and exit with status 2; nothing else prints tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from optiwise import knowledge
from optiwise._version import __version__

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A bad command line detected after parsing; reported like an argparse error."""


def _format_lr(x: float) -> str:
    return f"{x:.0e}" if x < 1e-2 else f"{x:g}"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# optiwise list
# --------------------------------------------------------------------------------------------


def _cmd_list(args: argparse.Namespace) -> int:
    from optiwise.optim.registry import get_entry, list_optimizers

    task = knowledge.check_task(args.task)
    records: list[dict[str, Any]] = []
    for name in list_optimizers():
        info = knowledge.get_info(name)
        d = knowledge.defaults(name, task)
        lo, hi = d.lr_range.value
        records.append(
            {
                "name": name,
                "display": info.display,
                "aliases": list(get_entry(name).aliases),
                "family": info.family.value,
                "lr_range": [lo, hi],
                "default_lr": d.hparams["lr"].value,
                "reference_batch": d.reference_batch.value,
                "state_bytes_per_param": info.state_bytes.value,
                "batch_scaling": info.batch_scaling.value,
                "warmup": info.warmup.value,
                "best_for": info.best_for.value,
            }
        )
    if args.format == "json":
        print(json.dumps({"task": task, "optimizers": records}, indent=2))
        return 0
    rows = [
        [
            r["name"],
            r["family"],
            f"{_format_lr(r['lr_range'][0])}..{_format_lr(r['lr_range'][1])}",
            f"{_format_lr(r['default_lr'])} @ {r['reference_batch']}",
            f"{r['state_bytes_per_param']:g}",
            r["batch_scaling"],
            r["best_for"],
        ]
        for r in records
    ]
    print(f"optimizers ({len(rows)}), defaults for task family '{task}':")
    print(
        _table(
            rows,
            [
                "NAME",
                "FAMILY",
                "LR RANGE",
                "DEFAULT LR @ BATCH",
                "STATE B/PARAM",
                "SCALING",
                "BEST FOR",
            ],
        )
    )
    return 0


# --------------------------------------------------------------------------------------------
# optiwise schedule
# --------------------------------------------------------------------------------------------

_BARS = " ▁▂▃▄▅▆▇█"


def _sparkline(values: Sequence[float], width: int = 64) -> str:
    n = len(values)
    top = max(values) or 1.0
    cols = []
    for i in range(min(width, n)):
        lo = i * n // min(width, n)
        hi = max(lo + 1, (i + 1) * n // min(width, n))
        v = sum(values[lo:hi]) / (hi - lo)
        cols.append(_BARS[round(v / top * (len(_BARS) - 1))])
    return "".join(cols)


def _number(text: str) -> int | float:
    """An int when the text is an integer, else a float (for --warmup / --decay)."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _cmd_schedule(args: argparse.Namespace) -> int:
    from optiwise.schedules import lr_curve, plot_schedule

    kwargs: dict[str, Any] = {}
    if args.min_lr_ratio is not None:
        kwargs["min_lr_ratio"] = args.min_lr_ratio
    if args.decay is not None:
        kwargs["decay"] = args.decay
    if args.cooldown is not None:
        kwargs["cooldown"] = args.cooldown
    if args.power is not None:
        kwargs["power"] = args.power
    lrs = lr_curve(
        args.name, total_steps=args.total_steps, lr=args.lr, warmup=args.warmup, **kwargs
    )
    total = len(lrs)
    marks = sorted({0, total // 4, total // 2, 3 * total // 4, total - 1})
    print(f"{args.name}: {total} steps, peak {max(lrs):.4g}, final {lrs[-1]:.4g}")
    print(f"|{_sparkline(lrs)}|")
    print("  ".join(f"step {m}: {lrs[m]:.4g}" for m in marks))
    if args.plot:
        path = plot_schedule(
            args.name,
            args.plot,
            total_steps=args.total_steps,
            lr=args.lr,
            warmup=args.warmup,
            **kwargs,
        )
        print(f"plot written to {path}")
    return 0


# --------------------------------------------------------------------------------------------
# optiwise bench
# --------------------------------------------------------------------------------------------


def _names(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _bench_list() -> int:
    from optiwise.bench import WORKLOADS, data_sources

    status = {s.name: s for s in data_sources()}
    rows = []
    for w in WORKLOADS.values():
        available = [d for d in w.data if status[d].available]
        if not w.data:
            data = "built in"
        elif available:
            data = available[0]
        else:
            data = "missing: " + status[w.data[0]].install
        rows.append(
            [
                w.name,
                w.task,
                str(w.budget),
                str(w.batch_size or "-"),
                w.target.describe(),
                data,
                w.description,
            ]
        )
    print(f"workloads ({len(rows)}):")
    print(_table(rows, ["NAME", "TASK", "BUDGET", "BATCH", "TARGET", "DATA", "DESCRIPTION"]))
    print("\ndata sources:")
    print(
        _table(
            [
                [s.name, "yes" if s.available else "no", s.location, s.install]
                for s in status.values()
            ],
            ["SOURCE", "INSTALLED", "LOCATION", "INSTALL WITH"],
        )
    )
    return 0


def _bench_summary(sweep: Any) -> str:
    from optiwise.bench import score_sweep

    w = sweep.workload
    rows = []
    for s in score_sweep(sweep):
        rows.append(
            [
                s.optimizer,
                "-" if s.best_lr is None else f"{s.best_lr:.3g}",
                f"{s.final_metric:.4g} ± {s.final_metric_std:.2g}",
                f"{s.reached}/{s.seeds}",
                "never" if s.steps_to_target == float("inf") else f"{s.steps_to_target:g}",
                "-" if s.ratio != s.ratio else f"{s.ratio:.3g}",
            ]
        )
    head = [
        "OPTIMIZER",
        "BEST LR",
        f"FINAL {w.metric.upper()}",
        "REACHED",
        "STEPS TO TARGET",
        "RATIO",
    ]
    return f"{w.name} (target {w.target.describe()}):\n" + _table(rows, head)


def _cmd_bench(args: argparse.Namespace) -> int:
    if args.list:
        return _bench_list()
    from optiwise.bench import SweepConfig, open_store, run_sweep, write_report
    from optiwise.bench.report import check_out_dir

    workloads = _names(args.workload)
    optimizers = _names(args.optimizers)
    if not workloads:
        raise UsageError("give --workload NAME (optiwise bench --list shows them)")
    if not optimizers:
        raise UsageError("give --optimizers, e.g. --optimizers sgd,adamw (optiwise list)")
    configs = [
        SweepConfig(
            workload=w,
            optimizers=tuple(optimizers),
            seeds=args.seeds,
            lr_grid=args.lr_grid,
            trials=args.trials,
            budget=args.budget,
            limit=args.limit,
            select=args.select,
        ).validated()
        for w in workloads
    ]
    out = check_out_dir(args.out)
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"Invalid --threads: {args.threads} (must be >= 1)")
        import torch

        torch.set_num_threads(args.threads)
    with open_store(args.storage) as store:
        sweeps = []
        try:
            for cfg in configs:
                sweeps.append(run_sweep(cfg, store, progress=not args.no_progress))
        except KeyboardInterrupt:
            print(
                f"optiwise bench: interrupted; finished runs are kept in {store.display_url} - run "
                "the same command again to resume",
                file=sys.stderr,
            )
            return 130
        for sweep in sweeps:
            print(_bench_summary(sweep))
            print()
        index = write_report(
            sweeps,
            out,
            measure=args.measure,
            storage=store.display_url,
            command="optiwise " + " ".join(sys.argv[1:]) if sys.argv[1:] else None,
        )
    print(f"report written to {index}")
    return 0


# --------------------------------------------------------------------------------------------
# Parser and entry point
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``optiwise`` command."""
    parser = argparse.ArgumentParser(
        prog="optiwise",
        description="Optimizers, schedules, parameter groups, an advisor and an auditor for "
        "PyTorch training.",
    )
    parser.add_argument("--version", action="version", version=f"optiwise {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "list", help="table of every optimizer: family, LR range, state bytes/param, best use"
    )
    p.add_argument(
        "--task",
        choices=knowledge.TASKS,
        default=None,
        help="show the defaults for this task family",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("schedule", help="preview an LR schedule and plot it")
    p.add_argument("name", help="schedule name, e.g. warmup_cosine, wsd, onecycle")
    p.add_argument("--total-steps", type=int, required=True, help="optimizer steps in the run")
    p.add_argument(
        "--warmup",
        type=_number,
        default=0,
        help="warmup steps (int) or fraction of the run (float < 1)",
    )
    p.add_argument("--lr", type=float, default=1.0, help="peak LR (default 1: relative)")
    p.add_argument(
        "--min-lr-ratio", type=float, default=None, help="floor as a fraction of the peak LR"
    )
    p.add_argument("--decay", type=_number, default=None, help="wsd: cooldown steps or fraction")
    p.add_argument(
        "--cooldown",
        choices=("linear", "cosine", "1-sqrt"),
        default=None,
        help="wsd: cooldown shape",
    )
    p.add_argument("--power", type=float, default=None, help="warmup_poly: exponent")
    p.add_argument("--plot", metavar="PNG", default=None, help="write a PNG plot here")
    p.set_defaults(func=_cmd_schedule)

    p = sub.add_parser(
        "bench",
        help="compare optimizers fairly on a workload: LR tuning, seeds, report",
        description="Tune every optimizer's LR on the workload, re-run the best over seeds, "
        "record every run in a resumable store and write a report. Rerunning the same "
        "command resumes an interrupted sweep.",
    )
    p.add_argument("--list", action="store_true", help="list the workloads and data sources")
    p.add_argument("--workload", metavar="W[,W...]", help="workload name(s)")
    p.add_argument("--optimizers", metavar="A,B,...", help="registry names, e.g. sgd,adamw")
    p.add_argument("--seeds", type=int, default=3, help="final runs at the best LR (default 3)")
    search = p.add_mutually_exclusive_group()
    search.add_argument(
        "--lr-grid", type=int, default=7, metavar="N", help="LR grid points (default 7)"
    )
    search.add_argument(
        "--trials",
        type=int,
        default=None,
        metavar="N",
        help="Optuna TPE trials instead of the grid",
    )
    p.add_argument("--budget", type=int, default=None, help="steps per run (default: workload's)")
    p.add_argument(
        "--limit", type=int, default=None, help="training examples per run (default: all)"
    )
    p.add_argument(
        "--select",
        choices=("metric", "steps"),
        default="metric",
        help="pick the LR with the best final metric (default) or fewest steps to target",
    )
    p.add_argument(
        "--measure",
        choices=("steps", "time"),
        default="steps",
        help="time to target in steps (default) or training seconds, for ratios and profile",
    )
    p.add_argument(
        "--storage",
        default="sqlite:///optiwise-bench.db",
        metavar="URL",
        help="results store: sqlite:///file.db (default sqlite:///optiwise-bench.db) or "
        "postgresql://user:password@host/db to share one study between machines",
    )
    p.add_argument("--out", default="optiwise-bench", help="report folder (default optiwise-bench)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's; 1 is fastest for small models on a "
        "busy machine)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.func
    try:
        return handler(args)
    except (ValueError, TypeError, OSError, UsageError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"optiwise {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"optiwise {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
