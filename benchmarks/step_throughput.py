"""Optimizer step throughput against torch's fused AdamW, measured side by side.

An optimizer step is memory-bound, so each optimizer is scored by the bandwidth it reaches
on the bytes its algorithm must move per parameter (fp32; half for bf16 parameters and
state), relative to torch's ``AdamW(fused=True)`` timed in the same rounds:

    algorithm             bytes/param  (read + written, fp32)
    adamw                 28   p, g, m, v read; p, m, v written
    lion                  20   p, g, m read; p, m written
    lamb                  40   two passes: the trust ratio needs the update's norm first
                               (p, g, m, v read, m, v written; then p, m, v read, p written)
    lars                  28   p, g, momentum read; p, momentum written (the norms of p and g
                               are taken in the same read)
    sophiag               24   p, g, m, h read; p, m written
    schedule_free_adamw   28   p (y), g, z, v read; p, z, v written
    lookahead_adamw       44   torch's fused AdamW (28) and, with k=1, the sync every step
                               (p and the slow weights read and written: 16)
    adamw8bit, lion8bit   judged by time and state memory, not bytes (both relative to
                          torch's fused AdamW: ``t/ref`` and ``st/ref``)

Every optimizer optiwise registers (``optiwise.optim.list_optimizers()``) is measured by its
registry name, on each of its paths (``fused``, ``foreach``, per-tensor ``single``; ``--paths``
keeps only some) with the default hyperparameters of ``optiwise.knowledge``, together with the
published implementations (lion-pytorch, pytorch_optimizer, schedulefree, and bitsandbytes'
CPU 8-bit AdamW and Lion: ``make throughput`` installs them) and, for ``adamw``, optiwise's
compiled AdamW update driven directly (a check of the compiled code against torch's
hand-written kernel). Each algorithm is measured in its own rounds with torch's fused AdamW:
each round steps every contender once, in a rotating order, and the ratios are taken per
round (the median is reported, ``t/ref`` with the range of the per-round ratios), so that
other processes on a shared machine slow both sides of a ratio alike. ``st/ref`` is the
optimizer state's bytes (``optiwise.optim.memory.state_bytes``) over torch's.
``--min-8bit-numel`` sets the smallest tensor with 8-bit state for optiwise's and
bitsandbytes' 8-bit optimizers alike (default: each library's own, 4096 in both).

Shapes: ``large`` is 24 M parameters in 96 tensors, ``small`` 2 M parameters in 1000
tensors. ``first_step_s`` is the first step (compilation included; ``--cold-cache`` points
Inductor at an empty cache to time it from scratch), then ``--warmup`` steps are not timed,
then ``--steps`` rounds are. ``--repeat`` measures everything again that many times and
reports the median of the ratios over the repeats, with the range over the repeats for
``bw/ref`` and over all rounds of all repeats for ``t/ref``.

Usage::

    python benchmarks/step_throughput.py                      # everything
    python benchmarks/step_throughput.py --quick              # lion on the large fp32 shape
    python benchmarks/step_throughput.py --optimizers lion,lamb --shapes small --dtypes bf16
    python benchmarks/step_throughput.py --optimizers adamw8bit,lion8bit --dtypes fp32
    python benchmarks/step_throughput.py --optimizers adamw8bit --paths fused --no-published
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import torch
from torch import Tensor, nn

from optiwise._io import atomic_path
from optiwise.optim import Lookahead, list_optimizers
from optiwise.optim._fused import FusedCache, fused_step
from optiwise.optim._kernels import adamw_fused, adamw_single_tensor
from optiwise.optim.memory import state_bytes
from optiwise.optim.registry import create_optimizer, get_entry, resolve_optimizer

#: Minimal bytes per parameter each algorithm must move (fp32); None: judged by time.
BYTES: dict[str, int | None] = {
    "adamw": 28,
    "lion": 20,
    "lamb": 40,
    "lars": 28,
    "sophiag": 24,
    "schedule_free_adamw": 28,
    "lookahead_adamw": 44,
    "adamw8bit": None,
    "lion8bit": None,
}
REFERENCE = "adamw (torch, fused)"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
PATHS = {
    "fused": dict(fused=True),
    "foreach": dict(foreach=True, fused=False),
    "single": dict(foreach=False, fused=False),
}


def own_optimizers() -> list[str]:
    """optiwise's own registered optimizers, Lookahead's sync (around torch's AdamW) and the
    AdamW reference's own group."""
    own = [n for n in list_optimizers() if get_entry(n).factory.__module__.startswith("optiwise")]
    return ["adamw", *own, "lookahead_adamw"]


EIGHT_BIT = ("adamw8bit", "lion8bit")


def hparams(algorithm: str) -> dict[str, Any]:
    """The knowledge defaults of ``algorithm`` (the benchmark's hyperparameters for every
    implementation of it; speed barely depends on them)."""
    name = "adamw" if algorithm == "lookahead_adamw" else algorithm
    return dict(resolve_optimizer(name).hparams)


def eight_bit_options(algorithm: str, min_8bit_numel: int | None) -> dict[str, Any]:
    """``min_8bit_numel`` for an 8-bit ``algorithm`` when it is set (``--min-8bit-numel``);
    otherwise nothing, so that each library keeps its own default."""
    if algorithm in EIGHT_BIT and min_8bit_numel is not None:
        return {"min_8bit_numel": min_8bit_numel}
    return {}


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


def large_shapes() -> list[tuple[int, ...]]:
    """24 M parameters in 96 tensors: 64 matrices of 250-499 rows x 1000, 32 vectors."""
    vectors = [(1000,)] * 32
    rows = [250 + (37 * i) % 250 for i in range(64)]
    rows[-1] += (24_000_000 - 32_000) // 1000 - sum(rows)
    shapes = [(r, 1000) for r in rows] + vectors
    assert len(shapes) == 96 and sum(math.prod(s) for s in shapes) == 24_000_000
    return shapes


def small_shapes() -> list[tuple[int, ...]]:
    """2 M parameters in 1000 tensors, log-uniform sizes from 16 to 8192; half of them 2-D."""
    g = torch.Generator().manual_seed(0)
    raw = torch.exp(math.log(16) + torch.rand(1000, generator=g) * math.log(8192 / 16))
    sizes = [max(16, int(x)) for x in raw / raw.sum() * 2_000_000]
    sizes[-1] += 2_000_000 - sum(sizes)
    shapes = [(n // 16, 16) if i % 2 and n % 16 == 0 else (n,) for i, n in enumerate(sizes)]
    assert len(shapes) == 1000 and sum(math.prod(s) for s in shapes) == 2_000_000
    return shapes


SHAPES: dict[str, Callable[[], list[tuple[int, ...]]]] = {
    "large": large_shapes,
    "small": small_shapes,
}


def make_params(shapes: list[tuple[int, ...]], dtype: torch.dtype) -> list[nn.Parameter]:
    """Parameters with fixed random gradients."""
    g = torch.Generator().manual_seed(1)
    params = []
    for shape in shapes:
        p = nn.Parameter(torch.randn(shape, generator=g).to(dtype))
        p.grad = (torch.randn(shape, generator=g) * 1e-2).to(dtype)
        params.append(p)
    return params


# --------------------------------------------------------------------------------------------
# Contenders
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    """One implementation of one algorithm; ``build(params)`` returns an object with
    ``step()``."""

    name: str
    algorithm: str
    source: str
    build: Callable[[list[nn.Parameter]], Any]


class AdamWKernel:
    """optiwise's compiled AdamW update driven over the parameters as an optimizer step does
    (state looked up per step, hyperparameters computed on the host)."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        self.keys = ["exp_avg", "exp_avg_sq"]
        self.state: dict[Tensor, dict[str, Tensor]] = {
            p: {k: torch.zeros_like(p) for k in self.keys} for p in params
        }
        self.cache: FusedCache = {}
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        hp = hparams("adamw")
        lr, wd, (b1, b2), t = hp["lr"], hp["weight_decay"], hp["betas"], self.t
        fused_step(
            adamw_fused, list(self.params), [p.grad for p in self.params],
            [[self.state[p][k] for p in self.params] for k in self.keys], self.keys,
            optimizer_state=self.state, cache=self.cache, group_id=0, strict=True,
            hparams=dict(
                decay=1 - lr * wd, weight1=1 - b1, beta2=b2, weight2=1 - b2,
                bias2_sqrt=(1 - b2**t) ** 0.5, eps=hp["eps"], neg_step_size=-lr / (1 - b1**t),
                maximize=False,
            ),
        )  # fmt: skip


class AdamWSingle(AdamWKernel):
    """optiwise's per-tensor AdamW update (the 8-bit AdamW's fp32 path)."""

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        hp = hparams("adamw")
        adamw_single_tensor(
            list(self.params), [p.grad for p in self.params],
            *[[self.state[p][k] for p in self.params] for k in self.keys],
            [self.t] * len(self.params), lr=hp["lr"], beta1=hp["betas"][0],
            beta2=hp["betas"][1], eps=hp["eps"], weight_decay=hp["weight_decay"], maximize=False,
        )  # fmt: skip


def build_optiwise(
    algorithm: str, path: str, params: list[nn.Parameter], options: Mapping[str, Any] = {}
) -> Any:
    """optiwise's optimizer ``algorithm`` (a registry name) on ``path``, with ``options``
    beside the knowledge defaults; an error when it has no such path."""
    kwargs = {**options, **PATHS[path]}
    if algorithm == "lookahead_adamw":  # the sync every step, around torch's fused AdamW
        inner = torch.optim.AdamW(params, **hparams("adamw"), fused=True)
        return Lookahead(inner, k=1, alpha=0.5, **kwargs)
    try:
        return create_optimizer(algorithm, params, **kwargs)
    except (TypeError, ValueError):
        if path == "fused":
            raise
        kwargs.pop("fused")  # an optimizer without a fused path
        return create_optimizer(algorithm, params, **kwargs)


def optiwise_contenders(
    algorithm: str, paths: Iterable[str] = PATHS, options: Mapping[str, Any] = {}
) -> list[Contender]:
    """optiwise's implementations of ``algorithm`` on each of ``paths`` (for ``adamw``, its
    kernels on the ``fused`` and ``single`` paths), built with ``options``."""
    wanted = [p for p in PATHS if p in set(paths)]
    if algorithm == "adamw":
        kernels = {"fused": AdamWKernel, "single": AdamWSingle}
        return [
            Contender(f"adamw (optiwise kernel, {p})", "adamw", "optiwise", kernels[p])
            for p in wanted
            if p in kernels
        ]
    return [
        Contender(
            f"{algorithm} (optiwise, {path})",
            algorithm,
            "optiwise",
            lambda ps, p=path: build_optiwise(algorithm, p, ps, options),
        )
        for path in wanted
    ]


class _Train:
    """Calls ``train()`` (schedule-free optimizers) and, on the first step, hands in a
    Hessian estimate (pytorch_optimizer's SophiaH)."""

    def __init__(self, opt: Any, hessian: bool = False) -> None:
        self.opt, self.hessian = opt, hessian
        if hasattr(opt, "train"):
            opt.train()

    def step(self) -> None:
        if self.hessian:
            self.hessian = False
            params = [p for g in self.opt.param_groups for p in g["params"]]
            self.opt.step(hessian=[torch.ones_like(p) for p in params])
        else:
            self.opt.step()


def published_contenders(
    algorithm: str, options: Mapping[str, Any] = {}
) -> tuple[list[Contender], list[str]]:
    """The published implementations of ``algorithm`` that are installed; and notes on those
    that are not. ``options``: ``min_8bit_numel`` (bitsandbytes' ``min_8bit_size``)."""
    out: list[Contender] = []
    notes: list[str] = []
    hp = hparams(algorithm)
    lr_wd = {"lr": hp.get("lr"), "weight_decay": hp.get("weight_decay", 0.0)}
    try:
        import lion_pytorch
    except ImportError:
        notes.append("lion-pytorch not installed (make throughput installs it)")
    else:
        out.append(
            Contender("lion (lion-pytorch)", "lion", "lion-pytorch",
                      lambda ps: lion_pytorch.Lion(ps, **lr_wd))
        )  # fmt: skip
    try:
        import pytorch_optimizer as po
    except ImportError:
        notes.append("pytorch_optimizer not installed (make throughput installs it)")
    else:
        out += [
            Contender("lion (pytorch_optimizer)", "lion", "pytorch_optimizer",
                      lambda ps: po.Lion(ps, **lr_wd)),
            Contender("lamb (pytorch_optimizer)", "lamb", "pytorch_optimizer",
                      lambda ps: po.Lamb(ps, **lr_wd)),
            Contender("lars (pytorch_optimizer)", "lars", "pytorch_optimizer",
                      lambda ps: po.LARS(ps, **lr_wd)),
            Contender("sophiag (pytorch_optimizer SophiaH)", "sophiag", "pytorch_optimizer",
                      lambda ps: _Train(po.SophiaH(ps, **lr_wd, update_period=10**9),
                                        hessian=True)),
            Contender("schedule_free_adamw (pytorch_optimizer)", "schedule_free_adamw",
                      "pytorch_optimizer",
                      lambda ps: _Train(po.ScheduleFreeAdamW(ps, **lr_wd))),
            Contender("lookahead_adamw (pytorch_optimizer)", "lookahead_adamw",
                      "pytorch_optimizer",
                      lambda ps: po.Lookahead(torch.optim.AdamW(ps, **lr_wd, fused=True), k=1,
                                              alpha=0.5)),
        ]  # fmt: skip
    try:
        import schedulefree
    except ImportError:
        notes.append("schedulefree not installed (make throughput installs it)")
    else:
        out.append(
            Contender("schedule_free_adamw (schedulefree)", "schedule_free_adamw", "schedulefree",
                      lambda ps: _Train(schedulefree.AdamWScheduleFree(ps, **lr_wd)))
        )  # fmt: skip
    if algorithm in EIGHT_BIT:
        try:
            import bitsandbytes as bnb
        except ImportError:
            notes.append("bitsandbytes not installed (make throughput installs it)")
        else:
            bnb_hp = dict(lr_wd)
            if "min_8bit_numel" in options:
                bnb_hp["min_8bit_size"] = options["min_8bit_numel"]
            out += [
                Contender("adamw8bit (bitsandbytes)", "adamw8bit", "bitsandbytes",
                          lambda ps: bnb.optim.AdamW8bit(ps, **bnb_hp)),
                Contender("lion8bit (bitsandbytes)", "lion8bit", "bitsandbytes",
                          lambda ps: bnb.optim.Lion8bit(ps, **bnb_hp)),
            ]  # fmt: skip
    return [c for c in out if c.algorithm == algorithm], notes


def reference_contender() -> Contender:
    return Contender(
        REFERENCE,
        "adamw",
        "torch",
        lambda ps: torch.optim.AdamW(ps, **hparams("adamw"), fused=True),
    )


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


@dataclass
class Timing:
    contender: Contender
    optimizer: Any = None
    first_step_s: float = math.nan
    times: list[float] = field(default_factory=list)
    error: str | None = None


def measured_state_bytes(optimizer: Any) -> int | None:
    """Bytes of the optimizer's state (:func:`optiwise.optim.memory.state_bytes`); None for
    a contender that is not an optimizer."""
    optimizer = getattr(optimizer, "opt", optimizer)
    if not isinstance(optimizer, torch.optim.Optimizer):
        return None
    return state_bytes(optimizer).total


def measure(
    contenders: list[Contender], params: list[nn.Parameter], steps: int, warmup: int
) -> list[Timing]:
    """First step, ``warmup`` untimed steps, then ``steps`` rounds of one step each."""
    timings = [Timing(c) for c in contenders]
    for timing in timings:
        try:
            timing.optimizer = timing.contender.build(params)
            start = time.perf_counter()
            timing.optimizer.step()
            timing.first_step_s = time.perf_counter() - start
            for _ in range(warmup):
                timing.optimizer.step()
        except Exception as err:  # a contender that cannot run here is reported, not fatal
            timing.error = f"{type(err).__name__}: {err}".splitlines()[0][:200]
            timing.optimizer = None
    live = [t for t in timings if t.error is None]
    # A full garbage collection after compiling takes up to ~150 ms: collect once and keep
    # the collector off while timing, so that no round pays for it.
    gc.collect()
    gc.disable()
    try:
        for r in range(steps):
            shift = r % len(live)
            for timing in live[shift:] + live[:shift]:
                start = time.perf_counter()
                timing.optimizer.step()
                timing.times.append(time.perf_counter() - start)
    finally:
        gc.enable()
    return timings


def summarize(timings: list[Timing], numel: int, scale: float) -> list[dict[str, Any]]:
    """Per contender: times, ns/param, GB/s and ratios to the reference, paired by round."""
    ref = next(t for t in timings if t.contender.name == REFERENCE)
    ref_bytes = 28 * scale
    ref_state = measured_state_bytes(ref.optimizer)
    rows = []
    for t in timings:
        c = t.contender
        row: dict[str, Any] = dict(name=c.name, algorithm=c.algorithm, source=c.source)
        if t.error is not None:
            row["error"] = t.error
            rows.append(row)
            continue
        bytes_pp = BYTES.get(c.algorithm)
        t_min, t_med = min(t.times), statistics.median(t.times)
        per_round = [a / b for a, b in zip(t.times, ref.times, strict=True)]
        state = measured_state_bytes(t.optimizer)
        row.update(
            first_step_s=t.first_step_s,
            min_ms=t_min * 1e3,
            median_ms=t_med * 1e3,
            ns_per_param_min=t_min / numel * 1e9,
            ns_per_param_median=t_med / numel * 1e9,
            time_ratio_vs_ref=statistics.median(per_round),
            time_ratio_vs_ref_spread=(min(per_round), max(per_round)),
            time_ratio_vs_ref_of_min=t_min / min(ref.times),
            state_bytes=state,
            state_ratio_vs_ref=state / ref_state if state is not None and ref_state else None,
        )
        if bytes_pp is not None:
            nbytes = bytes_pp * scale
            row["bytes_per_param"] = nbytes
            row["gb_per_s"] = nbytes * numel / t_min / 1e9
            row["bw_ratio_vs_ref"] = (nbytes / ref_bytes) / statistics.median(per_round)
            row["bw_ratio_vs_ref_min"] = (nbytes / t_min) / (ref_bytes / min(ref.times))
        rows.append(row)
    # optiwise's fastest implementation of each algorithm against each published one
    by_name = {t.contender.name: t for t in timings if t.error is None}
    for row in rows:
        if row.get("source") in ("optiwise", "torch") or "error" in row:
            continue
        pub = by_name[row["name"]]
        ours = [
            t for t in by_name.values()
            if t.contender.algorithm == row["algorithm"] and t.contender.source == "optiwise"
        ]  # fmt: skip
        if ours:
            best = min(ours, key=lambda t: statistics.median(t.times))
            row["optiwise_best"] = best.contender.name
            row["optiwise_speedup"] = statistics.median(
                [a / b for a, b in zip(pub.times, best.times, strict=True)]
            )
    return rows


def merge_repeats(repeats: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The first repeat's rows with, for each ratio, the median over repeats and the values
    of every repeat (``*_runs``); the per-round time ratios' range spans all repeats."""
    rows = [dict(r) for r in repeats[0]]
    if len(repeats) == 1:
        return rows
    ratios = (
        "bw_ratio_vs_ref",
        "time_ratio_vs_ref",
        "time_ratio_vs_ref_of_min",
        "optiwise_speedup",
    )
    for i, row in enumerate(rows):
        for key in ratios:
            values = [rep[i][key] for rep in repeats if key in rep[i]]
            if values:
                row[f"{key}_runs"] = values
                row[key] = statistics.median(values)
        spreads = [rep[i]["time_ratio_vs_ref_spread"] for rep in repeats if "error" not in rep[i]]
        if spreads:
            row["time_ratio_vs_ref_spread"] = (
                min(s[0] for s in spreads),
                max(s[1] for s in spreads),
            )
    return rows


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def _ratio(row: dict[str, Any], key: str, width: int) -> str:
    if key not in row:
        return f"{'-':>{width}}"
    runs = row.get(f"{key}_runs")
    if runs:
        return f"{row[key]:.2f} ({min(runs):.2f}-{max(runs):.2f})".rjust(width)
    return f"{row[key]:.2f}".rjust(width)


def table(rows: list[dict[str, Any]]) -> str:
    """One line per contender, grouped by algorithm. ``bw/ref``: bandwidth relative to torch's
    fused AdamW (with ``--repeat``, the median and range over the repeats); ``t/ref``: the
    median of the per-round time ratios to it, with their range over the rounds; ``st/ref``:
    its state memory relative to torch's."""
    wide = any("bw_ratio_vs_ref_runs" in r for r in rows)
    w = 17 if wide else 6
    head = (
        f"{'contender':44} {'first s':>7} {'min ms':>8} {'med ms':>8} {'ns/par':>7} "
        f"{'GB/s':>6} {'bw/ref':>{w}} {'t/ref (range)':>18} {'state MB':>8} {'st/ref':>6}"
        "  vs optiwise"
    )
    lines = [head]
    for i, r in enumerate(rows):
        if r["name"] == REFERENCE:
            algorithm = rows[i + 1]["algorithm"] if i + 1 < len(rows) else "adamw"
            lines.append(f"-- {algorithm} " + "-" * (len(head) - len(algorithm) - 4))
        if "error" in r:
            lines.append(f"{r['name']:44} n/a: {r['error']}")
            continue
        gbps = f"{r['gb_per_s']:6.1f}" if "gb_per_s" in r else f"{'-':>6}"
        vs = f"optiwise {r['optiwise_speedup']:.2f}x faster" if "optiwise_speedup" in r else ""
        mb = "-" if r["state_bytes"] is None else f"{r['state_bytes'] / 2**20:.1f}"
        st = "-" if r["state_ratio_vs_ref"] is None else f"{r['state_ratio_vs_ref']:.3f}"
        low, high = r["time_ratio_vs_ref_spread"]
        t_ref = f"{r['time_ratio_vs_ref']:.2f} ({low:.2f}-{high:.2f})"
        lines.append(
            f"{r['name']:44} {r['first_step_s']:7.2f} {r['min_ms']:8.2f} {r['median_ms']:8.2f} "
            f"{r['ns_per_param_min']:7.3f} {gbps} {_ratio(r, 'bw_ratio_vs_ref', w)} "
            f"{t_ref:>18} {mb:>8} {st:>6}  {vs}"
        )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("optiwise", "lion-pytorch", "pytorch_optimizer", "schedulefree", "bitsandbytes"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    known = own_optimizers()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--optimizers", default=",".join(known), help="comma-separated names")
    ap.add_argument("--shapes", default="large,small", help="large, small or both")
    ap.add_argument("--dtypes", default="fp32,bf16", help="fp32, bf16 or both")
    ap.add_argument(
        "--paths", default=",".join(PATHS), help="optiwise's code paths to time (comma-separated)"
    )
    ap.add_argument("--steps", type=int, default=10, help="timed rounds (>= 10 to report)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    ap.add_argument("--repeat", type=int, default=1, help="measure everything this often")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument(
        "--min-8bit-numel",
        type=int,
        default=None,
        help="8-bit optimizers: smallest tensor with 8-bit state (default: each library's own)",
    )
    ap.add_argument("--no-published", action="store_true", help="skip published versions")
    ap.add_argument("--cold-cache", action="store_true", help="compile into an empty cache")
    ap.add_argument("--quick", action="store_true", help="lion, large shape, fp32 only")
    ap.add_argument("--json", default="optiwise-report/step_throughput.json", help="JSON out")
    args = ap.parse_args(argv)
    if args.quick:
        args.optimizers, args.shapes, args.dtypes = "lion", "large", "fp32"
    for label, value, choices in (
        ("optimizer", args.optimizers, known),
        ("shape", args.shapes, SHAPES),
        ("dtype", args.dtypes, DTYPES),
        ("path", args.paths, PATHS),
    ):
        bad = sorted(set(value.split(",")) - set(choices))
        if bad:
            ap.error(f"unknown {label} {bad}; choose from {sorted(choices)}")
    if args.steps < 1 or args.warmup < 0 or args.threads < 1 or args.repeat < 1:
        ap.error("--steps, --repeat and --threads must be >= 1, --warmup >= 0")
    if args.min_8bit_numel is not None and args.min_8bit_numel < 1:
        ap.error("--min-8bit-numel must be >= 1")
    return args


def run_group(
    algorithm: str, params: list[nn.Parameter], args: argparse.Namespace, scale: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """torch's fused AdamW and every implementation of ``algorithm``, ``--repeat`` times."""
    options = eight_bit_options(algorithm, args.min_8bit_numel)
    contenders = [
        reference_contender(),
        *optiwise_contenders(algorithm, args.paths.split(","), options),
    ]
    notes: list[str] = []
    if not args.no_published:
        published, notes = published_contenders(algorithm, options)
        contenders += published
    numel = sum(p.numel() for p in params)
    repeats = []
    for _ in range(args.repeat):
        timings = measure(contenders, params, args.steps, args.warmup)
        repeats.append(summarize(timings, numel, scale))
        del timings
    return merge_repeats(repeats), notes


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.cold_cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="optiwise-inductor-")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    report: dict[str, Any] = dict(
        command=" ".join([os.path.basename(sys.argv[0]), *(argv or sys.argv[1:])]),
        threads=args.threads,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        load_average_start=os.getloadavg(),
        versions=versions(),
        bytes_per_param_fp32=BYTES,
        inductor_cache=os.environ.get("TORCHINDUCTOR_CACHE_DIR", "default"),
        notes=[],
        runs=[],
    )
    for shape in args.shapes.split(","):
        shapes = SHAPES[shape]()
        numel = sum(math.prod(s) for s in shapes)
        for dname in args.dtypes.split(","):
            dtype = DTYPES[dname]
            params = make_params(shapes, dtype)
            rows: list[dict[str, Any]] = []
            for algorithm in args.optimizers.split(","):
                group, notes = run_group(algorithm, params, args, torch.finfo(dtype).bits / 32)
                rows += group
                report["notes"] = sorted(set(report["notes"]) | set(notes))
            print(f"\n{shape}: {numel / 1e6:g} M parameters in {len(shapes)} tensors, {dname}, "
                  f"{args.steps} rounds x {args.repeat}, {args.threads} thread(s)")  # fmt: skip
            print(table(rows))
            report["runs"].append(
                dict(shape=shape, tensors=len(shapes), numel=numel, dtype=dname, results=rows)
            )
            del params
    for note in report["notes"]:
        print(f"note: {note}")
    report["load_average_end"] = os.getloadavg()
    with atomic_path(args.json) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
