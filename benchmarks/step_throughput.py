"""Optimizer step throughput against torch's fused AdamW, measured side by side.

An optimizer step is memory-bound, so each optimizer is scored by the bandwidth it reaches
on the bytes its algorithm must move per parameter (fp32; half for bf16 parameters and
state), relative to torch's ``AdamW(fused=True)`` timed in the same run, round by round:

    algorithm             bytes/param  (read + written, fp32)
    adamw                 28   p, g, m, v read; p, m, v written
    lion                  20   p, g, m read; p, m written
    lamb                  40   two passes: the trust ratio needs the update's norm first
    lars                  28   p, g, momentum read; p, momentum written; plus the norms' pass
    sophiag               24   p, g, m, h read; p, m written
    schedule_free_adamw   28   p (y), g, z, v read; p, z, v written
    adamw8bit, lion8bit   judged by time and state memory, not bytes (both per round,
                          relative to torch's fused AdamW: t/ref and state/ref)

Contenders: torch's fused AdamW (the reference), optiwise's optimizers on each of their
paths (``fused``, ``foreach``, per-tensor ``single``) when they are registered, optiwise's
update kernels driven directly (``kernel:*``), and the published implementations
(lion-pytorch, pytorch_optimizer, schedulefree: ``make throughput`` installs them; and
bitsandbytes' CPU 8-bit AdamW and Lion, from the dev extra). Every
contender steps the same parameters and gradients; each round steps every contender once,
in a rotating order, and the ratios are taken per round (the median is reported) so that
other processes on a shared machine slow both sides of a ratio alike.

Shapes: ``large`` is 24 M parameters in 96 tensors, ``small`` 2 M parameters in 1000
tensors. ``first_step_s`` is the first step (compilation included), then ``--warmup`` steps
are not timed, then ``--steps`` rounds are.

Usage::

    python benchmarks/step_throughput.py                      # everything
    python benchmarks/step_throughput.py --quick              # lion on the large fp32 shape
    python benchmarks/step_throughput.py --optimizers lion,adamw --shapes small --dtypes bf16
    python benchmarks/step_throughput.py --optimizers adamw8bit,lion8bit --dtypes fp32
    python benchmarks/step_throughput.py --optimizers adamw8bit --paths fused --no-published
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import torch
from torch import Tensor, nn

from optiwise._io import atomic_path
from optiwise.optim import list_optimizers
from optiwise.optim._fused import FusedCache, fused_step
from optiwise.optim._kernels import (
    adamw_fused,
    adamw_single_tensor,
    lion_fused,
    lion_multi_tensor,
    lion_single_tensor,
)
from optiwise.optim.memory import state_bytes

#: Minimal bytes per parameter each algorithm must move (fp32); None: judged by time.
BYTES: dict[str, int | None] = {
    "adamw": 28,
    "lion": 20,
    "lamb": 40,
    "lars": 28,
    "sophiag": 24,
    "schedule_free_adamw": 28,
    "adamw8bit": None,
    "lion8bit": None,
}
REFERENCE = "adamw (torch, fused)"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: Hyperparameters of every contender of an algorithm (typical values; speed barely depends
#: on them).
HPARAMS: dict[str, dict[str, Any]] = {
    "adamw": dict(lr=1e-3, weight_decay=0.01),
    "lion": dict(lr=1e-4, weight_decay=0.1),
    "lamb": dict(lr=1e-3, weight_decay=0.01),
    "lars": dict(lr=0.1, weight_decay=1e-4),
    "sophiag": dict(lr=1e-4, weight_decay=0.1),
    "schedule_free_adamw": dict(lr=2.5e-3, weight_decay=0.01),
    "adamw8bit": dict(lr=1e-3, weight_decay=0.01),
    "lion8bit": dict(lr=1e-4, weight_decay=0.1),
}


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
    bf16: bool = True


class KernelStep:
    """Drives one of optiwise's update kernels over the parameters as an optimizer step
    does (state looked up per step, hyperparameters computed on the host)."""

    def __init__(self, params: list[nn.Parameter], algorithm: str, path: str) -> None:
        self.params = params
        self.algorithm, self.path = algorithm, path
        self.keys = ["exp_avg"] if algorithm == "lion" else ["exp_avg", "exp_avg_sq"]
        self.state: dict[Tensor, dict[str, Tensor]] = {
            p: {k: torch.zeros_like(p) for k in self.keys} for p in params
        }
        self.cache: FusedCache = {}
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        params = self.params
        grads = [p.grad for p in params]
        states = [[self.state[p][k] for p in params] for k in self.keys]
        hp = HPARAMS[self.algorithm]
        lr, wd = hp["lr"], hp["weight_decay"]
        if self.algorithm == "lion":
            if self.path == "fused":
                self.fused(
                    lion_fused, grads, states, decay=1 - lr * wd, neg_lr=-lr, weight1=0.1,
                    weight2=0.01, maximize=False,
                )  # fmt: skip
            else:
                fn = lion_multi_tensor if self.path == "foreach" else lion_single_tensor
                fn(params, grads, *states, lr=lr, beta1=0.9, beta2=0.99, weight_decay=wd,
                   maximize=False)  # fmt: skip
        elif self.path == "fused":
            b1, b2, t = 0.9, 0.999, self.t
            self.fused(
                adamw_fused, grads, states, decay=1 - lr * wd, weight1=1 - b1, beta2=b2,
                weight2=1 - b2, bias2_sqrt=(1 - b2**t) ** 0.5, eps=1e-8,
                neg_step_size=-lr / (1 - b1**t), maximize=False,
            )  # fmt: skip
        else:
            adamw_single_tensor(
                params, grads, *states, [self.t] * len(params), lr=lr, beta1=0.9, beta2=0.999,
                eps=1e-8, weight_decay=wd, maximize=False,
            )  # fmt: skip

    def fused(
        self, update: Callable[..., None], grads: list[Any], states: list[list[Tensor]], **hp: Any
    ) -> None:
        fused_step(
            update, list(self.params), grads, states, self.keys, optimizer_state=self.state,
            cache=self.cache, group_id=0, strict=True, hparams=hp,
        )  # fmt: skip


PATHS = ("fused", "single", "foreach")


def optiwise_contenders(algorithms: Iterable[str], paths: Iterable[str] = PATHS) -> list[Contender]:
    """optiwise's registered optimizers on each of ``paths``, and its update kernels."""
    registered = set(list_optimizers())
    out = []
    for algo in algorithms:
        for path in (p for p in PATHS if p in set(paths)):
            if algo in ("lion", "adamw") and not (algo == "adamw" and path == "foreach"):
                out.append(
                    Contender(
                        f"{algo} (optiwise kernel:{path})",
                        algo,
                        "optiwise",
                        lambda ps, a=algo, p=path: KernelStep(ps, a, p),
                    )
                )
            if algo in registered and algo != "adamw":
                out.append(
                    Contender(
                        f"{algo} (optiwise, {path})",
                        algo,
                        "optiwise",
                        lambda ps, a=algo, p=path: build_optiwise(a, p, ps),
                    )
                )
    return out


def build_optiwise(algorithm: str, path: str, params: list[nn.Parameter]) -> Any:
    """optiwise's optimizer on ``path``; an error when it has no such path."""
    import optiwise

    kwargs = {"fused": dict(fused=True), "foreach": dict(foreach=True, fused=False)}.get(
        path, dict(foreach=False, fused=False)
    )
    try:
        return optiwise.create_optimizer(algorithm, params, **HPARAMS[algorithm], **kwargs)
    except (TypeError, ValueError):
        if path == "fused":
            raise
        kwargs.pop("fused")  # an optimizer without a fused path yet
        return optiwise.create_optimizer(algorithm, params, **HPARAMS[algorithm], **kwargs)


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


def _bnb_hparams(algorithm: str) -> dict[str, Any]:
    """HPARAMS in bitsandbytes' names (its ``min_8bit_size`` is our ``min_8bit_numel``)."""
    hp = dict(HPARAMS[algorithm])
    if "min_8bit_numel" in hp:
        hp["min_8bit_size"] = hp.pop("min_8bit_numel")
    return hp


def published_contenders(algorithms: Iterable[str]) -> tuple[list[Contender], list[str]]:
    """The published implementations that are installed; and notes on those that are not."""
    out: list[Contender] = []
    notes: list[str] = []
    hp = HPARAMS
    try:
        import lion_pytorch
    except ImportError:
        notes.append("lion-pytorch not installed (make throughput installs it)")
    else:
        out.append(
            Contender(
                "lion (lion-pytorch)",
                "lion",
                "lion-pytorch",
                lambda ps: lion_pytorch.Lion(ps, **hp["lion"]),
            )
        )
    try:
        import pytorch_optimizer as po
    except ImportError:
        notes.append("pytorch_optimizer not installed (make throughput installs it)")
    else:
        out += [
            Contender("lion (pytorch_optimizer)", "lion", "pytorch_optimizer",
                      lambda ps: po.Lion(ps, **hp["lion"])),
            Contender("lamb (pytorch_optimizer)", "lamb", "pytorch_optimizer",
                      lambda ps: po.Lamb(ps, **hp["lamb"])),
            Contender("lars (pytorch_optimizer)", "lars", "pytorch_optimizer",
                      lambda ps: po.LARS(ps, **hp["lars"])),
            Contender("sophiag (pytorch_optimizer SophiaH)", "sophiag", "pytorch_optimizer",
                      lambda ps: _Train(po.SophiaH(ps, **hp["sophiag"], update_period=10**9),
                                        hessian=True)),
            Contender("schedule_free_adamw (pytorch_optimizer)", "schedule_free_adamw",
                      "pytorch_optimizer",
                      lambda ps: _Train(po.ScheduleFreeAdamW(ps, **hp["schedule_free_adamw"]))),
        ]  # fmt: skip
    try:
        import bitsandbytes as bnb
    except ImportError:
        notes.append("bitsandbytes not installed (the dev extra installs it)")
    else:
        out += [
            Contender("adamw8bit (bitsandbytes)", "adamw8bit", "bitsandbytes",
                      lambda ps: bnb.optim.AdamW8bit(ps, **_bnb_hparams("adamw8bit"))),
            Contender("lion8bit (bitsandbytes)", "lion8bit", "bitsandbytes",
                      lambda ps: bnb.optim.Lion8bit(ps, **_bnb_hparams("lion8bit"))),
        ]  # fmt: skip
    try:
        import schedulefree
    except ImportError:
        notes.append("schedulefree not installed (make throughput installs it)")
    else:
        out.append(
            Contender(
                "schedule_free_adamw (schedulefree)",
                "schedule_free_adamw",
                "schedulefree",
                lambda ps: _Train(schedulefree.AdamWScheduleFree(ps, **hp["schedule_free_adamw"])),
            )
        )
    wanted = set(algorithms)
    return [c for c in out if c.algorithm in wanted], notes


def reference_contender() -> Contender:
    return Contender(
        REFERENCE,
        "adamw",
        "torch",
        lambda ps: torch.optim.AdamW(ps, **HPARAMS["adamw"], fused=True),
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


def state_size(contender: Any) -> int | None:
    """Bytes of the contender's optimizer state (``optiwise.optim.memory.state_bytes``);
    None for the update kernels driven directly."""
    optimizer = getattr(contender, "opt", contender)
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
    live = [t for t in timings if t.error is None]
    for r in range(steps):
        shift = r % len(live)
        for timing in live[shift:] + live[:shift]:
            start = time.perf_counter()
            timing.optimizer.step()
            timing.times.append(time.perf_counter() - start)
    return timings


def summarize(
    timings: list[Timing], numel: int, dtype: torch.dtype, scale: float
) -> list[dict[str, Any]]:
    """Per contender: times, ns/param, GB/s and ratios to the reference, paired by round."""
    ref = next(t for t in timings if t.contender.name == REFERENCE)
    ref_bytes = 28 * scale
    ref_state = state_size(ref.optimizer)
    rows = []
    for t in timings:
        c = t.contender
        row: dict[str, Any] = dict(name=c.name, algorithm=c.algorithm, source=c.source)
        if t.error is not None:
            row["error"] = t.error
            rows.append(row)
            continue
        bytes_pp = BYTES[c.algorithm]
        t_min, t_med = min(t.times), statistics.median(t.times)
        per_round = [a / b for a, b in zip(t.times, ref.times, strict=True)]
        state = state_size(t.optimizer)
        row.update(
            first_step_s=t.first_step_s,
            min_ms=t_min * 1e3,
            median_ms=t_med * 1e3,
            ns_per_param_min=t_min / numel * 1e9,
            ns_per_param_median=t_med / numel * 1e9,
            # per round, so that load from other processes slows both sides alike
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


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------


def table(rows: list[dict[str, Any]]) -> str:
    """One line per contender; ``t/ref`` is the median of the per-round time ratios to
    torch's fused AdamW, with their range over the rounds."""
    head = (
        f"{'contender':42} {'first s':>7} {'min ms':>8} {'med ms':>8} {'ns/par':>7} "
        f"{'GB/s':>6} {'bw/ref':>6} {'t/ref (range)':>18} {'state MB':>8} {'st/ref':>6}"
        "  vs optiwise"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['name']:42} n/a: {r['error']}")
            continue
        bw = f"{r['bw_ratio_vs_ref']:6.2f}" if "bw_ratio_vs_ref" in r else f"{'-':>6}"
        gbps = f"{r['gb_per_s']:6.1f}" if "gb_per_s" in r else f"{'-':>6}"
        vs = f"{r['optiwise_speedup']:.2f}x slower" if "optiwise_speedup" in r else ""
        low, high = r["time_ratio_vs_ref_spread"]
        ratio = f"{r['time_ratio_vs_ref']:.2f} ({low:.2f}-{high:.2f})"
        mb = f"{r['state_bytes'] / 2**20:8.1f}" if r["state_bytes"] is not None else f"{'-':>8}"
        st = f"{r['state_ratio_vs_ref']:6.3f}" if r["state_ratio_vs_ref"] is not None else "     -"
        lines.append(
            f"{r['name']:42} {r['first_step_s']:7.2f} {r['min_ms']:8.2f} {r['median_ms']:8.2f} "
            f"{r['ns_per_param_min']:7.3f} {gbps} {bw} {ratio:>18} {mb} {st}  {vs}"
        )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in ("optiwise", "lion-pytorch", "pytorch_optimizer", "schedulefree", "bitsandbytes"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--optimizers", default=",".join(BYTES), help="comma-separated algorithms")
    ap.add_argument("--shapes", default="large,small", help="large, small or both")
    ap.add_argument("--dtypes", default="fp32,bf16", help="fp32, bf16 or both")
    ap.add_argument(
        "--paths", default=",".join(PATHS), help="optiwise's code paths to time (comma-separated)"
    )
    ap.add_argument("--steps", type=int, default=10, help="timed rounds (>= 10 to report)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument(
        "--min-8bit-numel",
        type=int,
        default=None,
        help="8-bit optimizers: smallest tensor with 8-bit state (default: each library's own)",
    )
    ap.add_argument("--no-published", action="store_true", help="skip published versions")
    ap.add_argument("--quick", action="store_true", help="lion, large shape, fp32 only")
    ap.add_argument("--json", default="optiwise-report/step_throughput.json", help="JSON out")
    args = ap.parse_args(argv)
    if args.quick:
        args.optimizers, args.shapes, args.dtypes = "lion", "large", "fp32"
    for label, value, known in (
        ("optimizer", args.optimizers, BYTES),
        ("shape", args.shapes, SHAPES),
        ("dtype", args.dtypes, DTYPES),
        ("path", args.paths, PATHS),
    ):
        bad = sorted(set(value.split(",")) - set(known))
        if bad:
            ap.error(f"unknown {label} {bad}; choose from {sorted(known)}")
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        ap.error("--steps and --threads must be >= 1, --warmup >= 0")
    if args.min_8bit_numel is not None and args.min_8bit_numel < 1:
        ap.error("--min-8bit-numel must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.min_8bit_numel is not None:
        for name in ("adamw8bit", "lion8bit"):
            HPARAMS[name]["min_8bit_numel"] = args.min_8bit_numel
    algorithms = args.optimizers.split(",")
    contenders = [reference_contender(), *optiwise_contenders(algorithms, args.paths.split(","))]
    notes: list[str] = []
    if not args.no_published:
        published, notes = published_contenders(algorithms)
        contenders += published
    report: dict[str, Any] = dict(
        command=" ".join([os.path.basename(sys.argv[0]), *(argv or sys.argv[1:])]),
        threads=args.threads,
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        load_average_start=os.getloadavg(),
        versions=versions(),
        bytes_per_param_fp32=BYTES,
        notes=notes,
        runs=[],
    )
    for note in notes:
        print(f"note: {note}")
    for shape in args.shapes.split(","):
        shapes = SHAPES[shape]()
        numel = sum(math.prod(s) for s in shapes)
        for dname in args.dtypes.split(","):
            dtype = DTYPES[dname]
            params = make_params(shapes, dtype)
            chosen = [c for c in contenders if dtype == torch.float32 or c.bf16]
            timings = measure(chosen, params, args.steps, args.warmup)
            rows = summarize(timings, numel, dtype, torch.finfo(dtype).bits / 32)
            print(f"\n{shape}: {numel / 1e6:g} M parameters in {len(shapes)} tensors, {dname}, "
                  f"{args.steps} rounds, {args.threads} thread(s)")  # fmt: skip
            print(table(rows))
            report["runs"].append(
                dict(shape=shape, tensors=len(shapes), numel=numel, dtype=dname, results=rows)
            )
            del params, timings
    report["load_average_end"] = os.getloadavg()
    with atomic_path(args.json) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
