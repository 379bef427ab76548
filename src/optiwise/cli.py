"""The ``optiwise`` command: parses arguments, calls the library, prints.

Errors print one line to stderr and exit with status 2; nothing else prints tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from optiwise import knowledge
from optiwise._progress import want_progress
from optiwise._version import __version__

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


class _LazyChoices(Sequence[str]):
    """argparse choices read from ``module.attr`` on first use, so that building the parser
    imports nothing heavy."""

    def __init__(self, module: str, attr: str) -> None:
        self._where = (module, attr)
        self._items: tuple[str, ...] | None = None

    def _load(self) -> tuple[str, ...]:
        if self._items is None:
            self._items = tuple(getattr(importlib.import_module(self._where[0]), self._where[1]))
        return self._items

    def __getitem__(self, i: Any) -> Any:
        return self._load()[i]

    def __len__(self) -> int:
        return len(self._load())

    def __contains__(self, item: object) -> bool:
        return item in self._load()


def __getattr__(name: str) -> Any:
    if name == "_audit_families":  # model families then task families, for optiwise audit
        from optiwise.advisor.inspect import FAMILIES

        return tuple(dict.fromkeys((*FAMILIES, *knowledge.TASKS)))
    raise AttributeError(f"module 'optiwise.cli' has no attribute {name!r}")


class UsageError(Exception):
    """A bad command line detected after parsing; reported like an argparse error."""


def _format_lr(x: float) -> str:
    """``1e-05``, ``2.5e-03``, ``0.01``, ``0.3``: two significant digits at most."""
    if x >= 1e-2:
        return f"{x:.2g}"
    mantissa, exponent = f"{x:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{exponent}"


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


def _task_word(value: str) -> str:
    """An argparse type: the task family a word names (synonyms accepted)."""
    try:
        return knowledge.check_task(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


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
    print(
        f"\nAny name with the prefix {knowledge.LOOKAHEAD_PREFIX!r} (e.g. lookahead_adamw) wraps "
        f"that optimizer in Lookahead (k={knowledge.LOOKAHEAD_K.value}, "
        f"alpha={knowledge.LOOKAHEAD_ALPHA.value}; +4 state bytes per parameter)."
    )
    return 0


# --------------------------------------------------------------------------------------------
# optiwise schedule
# --------------------------------------------------------------------------------------------

_BARS = " ▁▂▃▄▅▆▇█"


_PREVIEW_POINTS = 8192  # LRs sampled for `optiwise schedule` on runs longer than this


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
    from optiwise.schedules import lr_samples, plot_schedule

    kwargs: dict[str, Any] = {}
    if args.min_lr_ratio is not None:
        kwargs["min_lr_ratio"] = args.min_lr_ratio
    if args.decay is not None:
        kwargs["decay"] = args.decay
    if args.cooldown is not None:
        kwargs["cooldown"] = args.cooldown
    if args.power is not None:
        kwargs["power"] = args.power
    total = args.total_steps
    if total < 1:
        raise UsageError(f"--total-steps {total}: must be >= 1")
    marks = sorted({0, total // 4, total // 2, 3 * total // 4, total - 1})
    # Every step of a short run; a run of any length is sampled (closed form).
    steps, lrs = lr_samples(
        args.name,
        total_steps=total,
        points=_PREVIEW_POINTS,
        include=marks,
        lr=args.lr,
        warmup=args.warmup,
        **kwargs,
    )
    at = dict(zip(steps, lrs, strict=True))
    sampled = "" if len(steps) == total else f" (sampled at {len(steps):,} steps)"
    print(f"{args.name}: {total} steps, peak {max(lrs):.4g}, final {lrs[-1]:.4g}{sampled}")
    print(f"|{_sparkline(lrs)}|")
    print("  ".join(f"step {m}: {at[m]:.4g}" for m in marks))
    if args.plot:
        path = plot_schedule(
            args.name,
            args.plot,
            total_steps=total,
            lr=args.lr,
            warmup=args.warmup,
            **kwargs,
        )
        print(f"plot written to {path}")
    return 0


# --------------------------------------------------------------------------------------------
# optiwise lint
# --------------------------------------------------------------------------------------------


def _code_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [c for c in (part.strip() for part in text.split(",")) if c]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _cmd_lint(args: argparse.Namespace) -> int:
    import os

    from optiwise.audit import lint

    if args.unsafe_fixes and not (args.fix or args.diff):
        raise UsageError("--unsafe-fixes only applies with --fix or --diff")
    if args.diff and args.format != "text":
        raise UsageError("--diff prints a unified diff; use it with --format text")
    try:
        start = os.path.commonpath([os.path.abspath(p) for p in args.paths])
    except ValueError:
        start = os.getcwd()
    report = lint.lint_paths(
        args.paths,
        config=lint.find_config(start),
        select=_code_list(args.select),
        ignore=_code_list(args.ignore) or (),
        fix=args.fix and not args.diff,
        unsafe_fixes=args.unsafe_fixes,
        diff=args.diff,
        jobs=args.jobs,
    )
    findings = report.findings
    safe, unsafe = report.fixable
    if args.diff:
        sys.stdout.write("".join(report.diffs))
        changed = len(report.changed_files)
        print(
            f"{_plural(len(report.fixed), 'finding')} would be fixed in "
            f"{_plural(changed, 'file')}; {len(findings)} would remain",
            file=sys.stderr,
        )
        status = 1 if report.diffs else 0
    elif args.format == "json":
        summary = {
            "files": report.files,
            "findings": len(findings),
            "fixed": len(report.fixed),
            "fixable": safe,
            "fixable_unsafe": unsafe,
        }
        print(lint.format_json(findings, summary))
        status = 1 if findings else 0
    elif args.format == "sarif":
        print(lint.format_sarif(findings))
        status = 1 if findings else 0
    else:
        if findings:
            print(lint.format_text(findings))
        if report.fixed:
            print(
                f"Fixed {_plural(len(report.fixed), 'finding')} in "
                f"{_plural(len(report.changed_files), 'file')}."
            )
        if findings:
            hints = []
            if safe:
                hints.append(f"{safe} fixable with --fix")
            if unsafe:
                hints.append(f"{unsafe} more with --fix --unsafe-fixes")
            extra = f" ({', '.join(hints)})" if hints else ""
            print(
                f"Found {_plural(len(findings), 'finding')} in "
                f"{_plural(report.files, 'file')} checked{extra}."
            )
        else:
            print(f"No findings in {_plural(report.files, 'file')} checked.")
        status = 1 if findings else 0
    return 0 if args.exit_zero else status


# --------------------------------------------------------------------------------------------
# optiwise recommend / optiwise audit
# --------------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _load_model(spec: str, kwargs_json: str | None) -> Any:
    """Import the factory ``package.module:factory`` (nothing else) and call it."""
    from torch import nn

    factory = _import_object(spec, "--model")
    kwargs = _json_kwargs(kwargs_json, "--model-kwargs")
    try:
        model = factory(**kwargs)
    except Exception as exc:
        raise UsageError(f"calling {spec} with {kwargs} failed: {_one_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise UsageError(f"--model {spec!r} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _run_length(args: argparse.Namespace) -> dict[str, Any]:
    if args.total_steps is not None:
        if args.epochs is not None:
            raise UsageError("give --epochs with --steps-per-epoch, or --total-steps, not both")
        return {"total_steps": args.total_steps}
    if args.epochs is None:
        raise UsageError(
            "the run length is missing: give --epochs E --steps-per-epoch S, or --total-steps T"
        )
    if args.steps_per_epoch is None and getattr(args, "dataset_size", None) is None:
        raise UsageError("--epochs needs --steps-per-epoch (batches per epoch)")
    return {"epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch}


def _cmd_recommend(args: argparse.Namespace) -> int:
    from optiwise.advisor import recommend

    if args.model_kwargs is not None and args.model is None:
        raise UsageError("--model-kwargs needs --model")
    if args.model is not None and args.params is not None:
        raise UsageError("give --model or --params, not both")
    model = _load_model(args.model, args.model_kwargs) if args.model is not None else None
    recipe = recommend(
        model,
        family=args.family,
        task=args.task,
        batch_size=args.batch_size,
        dataset_size=args.dataset_size,
        pretrained=args.pretrained,
        priority=args.priority,
        memory_budget_gb=args.memory_budget_gb,
        world_size=args.world_size,
        mixed_precision=args.mixed_precision,
        n_params=args.params,
        strong_augmentation=args.strong_augmentation,
        **_run_length(args),
    )
    if args.format == "json":
        print(recipe.to_json())
    elif args.format == "yaml":
        print(recipe.to_yaml(), end="")
    elif args.format == "python":
        print(recipe.to_code(), end="")
    else:
        print(recipe.explain())
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from optiwise.audit.runtime import (
        audit,
        optimizer_from_expression,
        scheduler_from_expression,
    )

    model = _load_model(args.model, args.model_kwargs)
    optimizer = optimizer_from_expression(args.optimizer, model)
    scheduler = None
    if args.scheduler is not None:
        scheduler = scheduler_from_expression(args.scheduler, optimizer)
    total_steps = None
    if args.total_steps is not None or args.epochs is not None:
        run = _run_length(args)
        total_steps = run.get("total_steps") or round(run["epochs"] * run["steps_per_epoch"])
    findings = audit(
        optimizer,
        model=model,
        scheduler=scheduler,
        batch_size=args.batch_size,
        family=args.family,
        total_steps=total_steps,
    )
    if args.format == "json":
        return _print_findings_json(findings)
    for f in findings:
        print(f"{f.severity.value:<8} {f.code} {f.name}: {f.message}")
        print(f"         fix: {f.fix}")
        print(f"         why: {f.why}")
    summary = _severity_counts(findings)
    print(f"{len(findings)} finding(s){': ' + summary if summary else ''}")
    return _findings_status(findings)


def _findings_status(findings: list[Any]) -> int:
    """The exit status of a list of findings: 1 when one is critical or major."""
    from optiwise.audit.findings import Severity

    return 1 if any(f.severity.at_least(Severity.MAJOR) for f in findings) else 0


def _print_findings_json(findings: list[Any]) -> int:
    print(json.dumps({"findings": [f.to_dict() for f in findings]}, indent=2))
    return _findings_status(findings)


def _severity_counts(findings: list[Any]) -> str:
    """``"1 major, 2 medium"``: how many findings of each severity, worst first."""
    from optiwise.audit.findings import Severity

    counts = {s.value: sum(f.severity is s for f in findings) for s in Severity}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from optiwise.monitor import diagnose

    findings = diagnose(args.log)
    if args.format == "json":
        return _print_findings_json(findings)
    for f in findings:
        print(f"{f.severity.value:<8} {f.code} {f.cause}: {f.message}")
        print(f"         fix: {f.fix}")
    if not findings:
        print("no finding: the run looks healthy")
    else:
        print(f"{len(findings)} finding(s): {_severity_counts(findings)}")
    return _findings_status(findings)


def _add_model_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument(
        "--model",
        metavar="MODULE:FACTORY",
        required=required,
        help="import MODULE and call FACTORY(**kwargs) to build the model",
    )
    p.add_argument("--model-kwargs", metavar="JSON", help="keyword arguments for the factory")


def _add_run_args(p: argparse.ArgumentParser, batch_help: str) -> None:
    p.add_argument("--batch-size", type=int, required=True, help=batch_help)
    p.add_argument("--epochs", type=float, default=None, help="epochs in the run")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="batches per epoch")
    p.add_argument("--total-steps", type=int, default=None, help="optimizer steps in the run")


# --------------------------------------------------------------------------------------------
# optiwise find-lr
# --------------------------------------------------------------------------------------------


def _import_object(spec: str, what: str) -> Any:
    """The object named by ``package.module:attribute`` (only that module is imported; the
    current folder is importable, as for ``python -m``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{what} must be given as package.module:function, got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(
            f"cannot import {module_name!r} for {what} {spec!r}: {_one_line(exc)}"
        ) from None
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


def _takes_keyword(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)


def _source_factory(args: argparse.Namespace) -> Callable[..., Any]:
    import optiwise.bench  # noqa: F401  (registers the benchmark workloads as data sources)
    from optiwise.lr_finder import DATA_SOURCES

    if args.data in DATA_SOURCES:
        return DATA_SOURCES[args.data]
    if ":" in args.data:
        return _import_object(args.data, "--data")
    raise UsageError(
        f"unknown data source {args.data!r}; use one of "
        f"{', '.join(sorted(DATA_SOURCES))} or package.module:function"
    )


def _model_and_data(args: argparse.Namespace, seed: int) -> tuple[Any, Any]:
    """The model (--model, or the data source's own built from ``seed``) and its data."""
    from optiwise.lr_finder import DataSource

    source_factory = _source_factory(args)
    data_kwargs = _json_kwargs(args.data_kwargs, "--data-kwargs")
    if args.model is not None:
        model = _load_model(args.model, args.model_kwargs)
        source = source_factory(model, **data_kwargs)
    else:  # the data source brings its model, built from the seed when it takes one
        seeded = {"seed": seed} if _takes_keyword(source_factory, "seed") else {}
        source = source_factory(None, **{**seeded, **data_kwargs})
    if not isinstance(source, DataSource):
        raise UsageError(f"--data {args.data!r} returned {type(source).__name__}, not a DataSource")
    if args.model is None:
        if source.model is None:
            raise UsageError(f"--data {args.data!r} brings no model; give --model")
        model = source.model
    return model, source


def _cmd_find_lr(args: argparse.Namespace) -> int:
    import torch

    from optiwise.lr_finder import find_lr

    if args.plot and not args.plot.lower().endswith(".png"):
        raise UsageError(f"plot path {args.plot!r} must end in .png")
    torch.manual_seed(args.seed)
    model, source = _model_and_data(args, args.seed)
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
        task=args.task if args.task is not None else source.task,
        confirm=args.confirm,
        confirm_steps=args.confirm_steps,
        progress=want_progress(args.no_progress),
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
# optiwise tune
# --------------------------------------------------------------------------------------------


def _cmd_tune(args: argparse.Namespace) -> int:
    import torch

    from optiwise.advisor import recommend
    from optiwise.tune import tune
    from optiwise.tune.search import _inputs_size

    if args.plot and not args.plot.lower().endswith(".png"):
        raise UsageError(f"plot path {args.plot!r} must end in .png")
    torch.manual_seed(args.seed)
    model, source = _model_and_data(args, args.seed)
    if source.val is None:
        raise UsageError(f"--data {args.data!r} has no validation batches to score trials on")

    def make_model(seed: int) -> Any:
        torch.manual_seed(seed)
        if args.model is not None:
            return _load_model(args.model, args.model_kwargs)
        return _model_and_data(args, seed)[0]

    first = next(iter(source.train))
    size = _inputs_size(first)
    if size is None:
        raise UsageError("cannot tell the batch size from the data's first batch")
    recipe = recommend(
        model,
        task=args.task if args.task is not None else source.task,
        batch_size=size,
        total_steps=args.total_steps,
    )
    result = tune(
        make_model,
        source.train,
        loss_fn=source.loss_fn,
        val_data=source.val,
        recipe=recipe,
        optimizer=_names(args.optimizer) or None,
        total_steps=args.total_steps,
        budget=args.budget,
        seed=args.seed,
        storage=args.storage or None,
        val_batches=args.val_batches,
        progress=want_progress(args.no_progress),
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
    print()
    print(
        f"recipe: {result.recipe.optimizer} at peak LR {_format_lr(result.lr)}, "
        f"{result.recipe.schedule or 'constant LR'}, {args.total_steps} optimizer steps"
    )
    if path:
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
                sweeps.append(run_sweep(cfg, store, progress=want_progress(args.no_progress)))
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
# optiwise demo
# --------------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from optiwise.bench.demo import (
        DemoConfig,
        comparisons,
        run_demo,
        summary_rows,
        write_demo_report,
    )
    from optiwise.bench.report import check_out_dir

    out = check_out_dir(args.out)
    if args.threads < 1:
        raise UsageError(f"Invalid --threads: {args.threads} (must be >= 1)")
    given = {
        name: getattr(args, name)
        for name in ("workload", "budget", "seed", "limit", "eval_every", "lr_steps", "jobs")
        if getattr(args, name) is not None
    }
    if args.tune_budget is not None:
        given["tune_budget"] = args.tune_budget if args.tune_budget > 0 else None
    config = DemoConfig(**given).validated()
    import torch

    torch.set_num_threads(args.threads)
    progress = want_progress(args.no_progress)
    result = run_demo(config, progress=progress, log=lambda text: print(text, flush=True))
    header, rows = summary_rows(result)
    print()
    print(f"{result.workload.name}: {config.budget} steps each, seed {config.seed}")
    print(_table(rows, [h.upper() for h in header]))
    for line in comparisons(result):
        print(line)
    print(
        f"\n{result.wall_time:.0f} s wall-clock, {result.cpu_time:.0f} s CPU "
        f"(load average {result.load[0]:.2f} -> {result.load[1]:.2f})"
    )
    command = "optiwise " + " ".join(sys.argv[1:]) if sys.argv[1:] else None
    print(f"report written to {write_demo_report(result, out, command=command)}")
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
        type=_task_word,
        metavar="TASK",
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
        "lint",
        help="static checks of training scripts for optimizer and schedule mistakes",
        description="Check training scripts for optimizer, schedule and training-loop "
        "mistakes. Exit status: 0 no findings, 1 findings remain, 2 usage error.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files and folders to check")
    p.add_argument("--fix", action="store_true", help="apply safe fixes in place")
    p.add_argument(
        "--unsafe-fixes",
        action="store_true",
        help="with --fix or --diff: also apply fixes that change training behaviour",
    )
    p.add_argument(
        "--diff", action="store_true", help="print the fixes as a unified diff, write nothing"
    )
    p.add_argument("--select", metavar="CODES", help="comma-separated codes or prefixes (OW1)")
    p.add_argument("--ignore", metavar="CODES", help="comma-separated codes or prefixes")
    p.add_argument("--format", choices=("text", "json", "sarif"), default="text")
    p.add_argument("--exit-zero", action="store_true", help="exit 0 even when findings remain")
    p.add_argument(
        "--jobs", type=int, default=None, metavar="N", help="worker processes (default: all CPUs)"
    )
    p.set_defaults(func=_cmd_lint)
    # read only when a command that uses them is parsed or its help printed (they import torch)
    FAMILIES = _LazyChoices("optiwise.advisor.inspect", "FAMILIES")
    PRIORITIES = _LazyChoices("optiwise.advisor.rules", "PRIORITIES")

    p = sub.add_parser(
        "recommend", help="recommend an optimizer, schedule and training-step recipe, explained"
    )
    _add_model_args(p, required=False)
    p.add_argument(
        "--family",
        choices=FAMILIES,
        metavar="FAMILY",
        default=None,
        help="model family (no model): %(choices)s",
    )
    p.add_argument("--params", type=int, default=None, help="parameter count (no model)")
    p.add_argument(
        "--task",
        type=_task_word,
        metavar="TASK",
        default=None,
        help="task family or a word for it, e.g. gan, ppo, llm, seq2seq, lora",
    )
    _add_run_args(p, "samples per backward per process")
    p.add_argument("--dataset-size", type=int, default=None, help="training examples")
    p.add_argument("--world-size", type=int, default=1, help="data-parallel processes")
    p.add_argument("--pretrained", action="store_true", help="fine-tune pretrained weights")
    p.add_argument(
        "--priority",
        choices=PRIORITIES,
        metavar="PRIORITY",
        default="final_quality",
        help="%(choices)s (default %(default)s)",
    )
    p.add_argument(
        "--memory-budget-gb",
        type=float,
        default=None,
        help="GiB for weights, gradients and optimizer state",
    )
    p.add_argument("--mixed-precision", choices=("bf16", "fp16", "fp32"), default=None)
    p.add_argument(
        "--strong-augmentation", action="store_true", help="RandAugment/Mixup-style augmentation"
    )
    p.add_argument("--format", choices=("text", "yaml", "json", "python"), default="text")
    p.set_defaults(func=_cmd_recommend)

    p = sub.add_parser(
        "audit", help="check an optimizer/scheduler setup; exit 1 on critical or major findings"
    )
    _add_model_args(p, required=True)
    p.add_argument(
        "--optimizer",
        required=True,
        metavar="EXPR",
        help='e.g. "AdamW(lr=3e-4, weight_decay=0.01)"',
    )
    p.add_argument(
        "--scheduler", metavar="EXPR", help='e.g. "OneCycleLR(max_lr=0.1, total_steps=1000)"'
    )
    _add_run_args(p, "samples per optimizer step")
    p.add_argument(
        "--family",
        choices=_LazyChoices("optiwise.cli", "_audit_families"),
        metavar="FAMILY",
        default=None,
        help="model or task family (default: inspect the model): %(choices)s",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_cmd_audit)

    p = sub.add_parser(
        "diagnose",
        help="say what is wrong with a recorded run (a Monitor CSV or TensorBoard folder); "
        "exit 1 on critical or major findings",
    )
    p.add_argument("log", metavar="LOG", help="monitor.csv, its folder, or a TensorBoard folder")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_cmd_diagnose)

    p = sub.add_parser(
        "find-lr",
        help="LR range test on a model: curve, suggestions and a recommended LR, with a plot",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="MODULE:FUNCTION",
        help="model factory to import (default: the data source's own model, which the "
        "benchmark workloads have)",
    )
    p.add_argument("--model-kwargs", metavar="JSON", default=None, help="factory arguments")
    p.add_argument("--optimizer", default="adamw", help="registry name (default adamw)")
    p.add_argument(
        "--task",
        type=_task_word,
        metavar="TASK",
        default=None,
        help="task family (default: the data source's, e.g. a benchmark workload's)",
    )
    p.add_argument(
        "--data",
        default="synthetic",
        metavar="NAME|MODULE:FUNCTION",
        help="data source: synthetic, a benchmark workload (digits-mlp, fmnist-cnn, "
        "shakespeare-char-gpt, ...; see optiwise bench --list) or a factory(model, **kwargs) "
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
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (none unless on a terminal)"
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_cmd_find_lr)

    p = sub.add_parser(
        "tune",
        help="choose a run's peak LR by short trials that mirror it, within a step budget",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="MODULE:FUNCTION",
        help="model factory to import, called once per trial (default: the data source's "
        "own model, which the benchmark workloads have)",
    )
    p.add_argument("--model-kwargs", metavar="JSON", default=None, help="factory arguments")
    p.add_argument(
        "--data",
        default="synthetic",
        metavar="NAME|MODULE:FUNCTION",
        help="data source, as for find-lr (synthetic, a benchmark workload, or a "
        "factory(model, **kwargs) returning optiwise.lr_finder.DataSource)",
    )
    p.add_argument("--data-kwargs", metavar="JSON", default=None, help="data source arguments")
    p.add_argument(
        "--total-steps", type=int, required=True, help="optimizer steps of the planned run"
    )
    p.add_argument(
        "--budget",
        type=float,
        default=1.0,
        help="the probe's cost as a fraction of the planned run's steps (default 1.0)",
    )
    p.add_argument(
        "--optimizer",
        default=None,
        metavar="A[,B]",
        help="registry name(s) to tune instead of the recipe's optimizer",
    )
    p.add_argument("--task", type=_task_word, metavar="TASK", default=None, help="task family")
    p.add_argument("--seed", type=int, default=0, help="seed of every trial's model")
    p.add_argument(
        "--storage",
        default="optiwise-tune.db",
        metavar="FILE|URL",
        help="the Optuna study: a SQLite file or an RDB URL; a rerun resumes it "
        "(default optiwise-tune.db; '' keeps it in memory)",
    )
    p.add_argument("--val-batches", type=int, default=None, help="validation batches per score")
    p.add_argument("--plot", metavar="PNG", default="tune.png", help="PNG to write ('' for none)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=_cmd_tune)

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
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (none unless on a terminal)"
    )
    p.set_defaults(func=_cmd_bench)

    # Defaults of None leave DemoConfig's own (importing it here would import torch and
    # the benchmark's store for every command).
    p = sub.add_parser(
        "demo",
        help="the main job: a recipe, its LR range test and audit, against two naive setups",
        description="Recommend a recipe for a workload's model, run the LR range test with "
        "its optimizer, audit it and two naive setups (Adam at 1e-3, SGD at 0.01 without "
        "momentum, both at a constant LR), train all three on the same budget, data order "
        "and seed, and write a report folder.",
    )
    p.add_argument("--workload", help="a workload with array data (default fmnist-cnn)")
    p.add_argument("--budget", type=int, help="optimizer steps per run (default: the demo's)")
    p.add_argument("--seed", type=int, help="seed of every run (default 0)")
    p.add_argument("--limit", type=int, help="examples per split (default: all)")
    p.add_argument("--eval-every", type=int, help="validation every N steps")
    p.add_argument("--lr-steps", type=int, help="steps of the LR range test's sweep")
    p.add_argument(
        "--tune-budget",
        type=float,
        help="optiwise.tune's budget as a fraction of --budget (default 1; 0: no tuning, "
        "the recipe trains at the range test's LR)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        choices=(1, 2),
        help="2 (default): the naive setups train in a second process at the same time",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per process (default 1: the fastest on a small or busy machine)",
    )
    p.add_argument(
        "--out", default="optiwise-report", help="report folder (default optiwise-report)"
    )
    p.add_argument("--no-progress", action="store_true", help="progress lines, no bar")
    p.set_defaults(func=_cmd_demo)
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
