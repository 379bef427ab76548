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
# optiwise find-lr
# --------------------------------------------------------------------------------------------


def _import_object(spec: str, what: str) -> Any:
    """The object named by ``package.module:attribute`` (only that module is imported)."""
    import importlib

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{what} must be given as package.module:function, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r} for {what} {spec!r}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{module_name!r} has no {attr!r} ({what} {spec!r})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{what} {spec!r} is not callable")
    return obj


def _json_kwargs(text: str | None, option: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option} is not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object, got {text!r}")
    return value


def _amp_arg(text: str) -> str:
    if text.lower() not in ("bf16", "fp16"):
        raise argparse.ArgumentTypeError(f"use bf16 or fp16, not {text!r}")
    return text.lower()


def _cmd_find_lr(args: argparse.Namespace) -> int:
    import torch

    from optiwise.lr_finder import DATA_SOURCES, DataSource, find_lr

    if args.plot and not args.plot.lower().endswith(".png"):
        raise UsageError(f"plot path {args.plot!r} must end in .png")
    factory = _import_object(args.model, "--model")
    model_kwargs = _json_kwargs(args.model_kwargs, "--model-kwargs")
    data_kwargs = _json_kwargs(args.data_kwargs, "--data-kwargs")
    if args.data in DATA_SOURCES:
        source_factory = DATA_SOURCES[args.data]
    elif ":" in args.data:
        source_factory = _import_object(args.data, "--data")
    else:
        raise UsageError(
            f"unknown data source {args.data!r}; use one of "
            f"{', '.join(sorted(DATA_SOURCES))} or package.module:function"
        )
    torch.manual_seed(args.seed)
    model = factory(**model_kwargs)
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"--model {args.model!r} returned {type(model).__name__}, not a Module")
    source = source_factory(model, **data_kwargs)
    if not isinstance(source, DataSource):
        raise UsageError(f"--data {args.data!r} returned {type(source).__name__}, not a DataSource")
    result = find_lr(
        model,
        source.loss_fn,
        source.train,
        args.optimizer,
        start_lr=args.start_lr,
        end_lr=args.end_lr,
        num_steps=args.num_steps,
        mode=args.mode,
        accumulation=args.accumulation,
        amp=args.amp,
        val_data=source.val,
        task=args.task,
        confirm=args.confirm,
        confirm_steps=args.confirm_steps,
        progress=sys.stderr.isatty(),
    )
    path = result.plot(args.plot) if args.plot else None
    if args.format == "json":
        out = result.to_dict()
        out["data"] = source.description
        out["plot"] = str(path) if path else None
        print(json.dumps(out, indent=2))
        return 0
    print(f"data: {source.description}")
    print(result.summary())
    if path:
        print(f"plot written to {path}")
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
        "find-lr",
        help="LR range test on a model: curve, suggestions and a recommended LR, with a plot",
    )
    p.add_argument(
        "--model", required=True, metavar="MODULE:FUNCTION", help="model factory to import"
    )
    p.add_argument("--model-kwargs", metavar="JSON", default=None, help="factory arguments")
    p.add_argument("--optimizer", default="adamw", help="registry name (default adamw)")
    p.add_argument("--task", choices=knowledge.TASKS, default=None, help="task family")
    p.add_argument(
        "--data",
        default="synthetic",
        metavar="NAME|MODULE:FUNCTION",
        help="data source: a registered name (synthetic) or a factory(model, **kwargs) "
        "returning optiwise.lr_finder.DataSource",
    )
    p.add_argument("--data-kwargs", metavar="JSON", default=None, help="data source arguments")
    p.add_argument("--start-lr", type=float, default=None, help="default: the optimizer's range")
    p.add_argument("--end-lr", type=float, default=None, help="default: the optimizer's range")
    p.add_argument("--num-steps", type=int, default=100, help="optimizer steps in the sweep")
    p.add_argument("--mode", choices=("exp", "linear"), default="exp")
    p.add_argument("--accumulation", type=int, default=1, help="micro-batches per step")
    p.add_argument(
        "--amp",
        nargs="?",
        const=True,
        default=False,
        type=_amp_arg,
        help="mixed precision: bf16 on CPU, fp16 on CUDA, or name it (bf16|fp16)",
    )
    p.add_argument("--confirm", type=int, default=4, help="candidate LRs to confirm (0: none)")
    p.add_argument("--confirm-steps", type=int, default=None, help="steps per confirmation run")
    p.add_argument("--seed", type=int, default=0, help="torch seed for building the model")
    p.add_argument(
        "--plot", metavar="PNG", default="lr_finder.png", help="PNG to write ('' for none)"
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_cmd_find_lr)
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
