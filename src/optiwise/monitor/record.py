"""The :class:`Monitor`: records what the optimizer does, step by step.

Per recorded step (every ``every`` optimizer steps): the loss, the LR of each param group,
the global gradient norm, how many parameters have a non-finite gradient, whether the step
was skipped (fp16 overflow) and the GradScaler's scale. Per detailed step (every
``detail_every``): each parameter's gradient norm and update/parameter ratio
``||w_after - w_before|| / ||w_before||``, how many parameters have no gradient, and whether
the gradients were cleared before the next backward pass (a missing ``zero_grad``).

The gradients are read in an optimizer step pre-hook (they are final there: unscaled and
clipped) and the weights are snapshotted only before detailed steps, so the cost of a step
is one fused norm over the gradients; values are kept as tensors and converted in batches.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from optiwise._findings import Finding
from optiwise._io import atomic_write_text
from optiwise.monitor.log import CSV_NAME, META_NAME, RunLog, csv_header, format_rows

__all__ = ["Monitor"]

_FLUSH_EVERY = 64  # records buffered before they are converted and written


def _check_every(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Invalid {name}: {value!r} (must be an int >= 1 optimizer steps)")
    return value


def _optimizer_name(optimizer: Optimizer) -> str:
    from optiwise.optim.registry import identify_optimizer

    try:
        name = identify_optimizer(optimizer)
    except Exception:  # an unusual optimizer: fall back to its class name
        name = None
    return name or type(optimizer).__name__


def _norm_summaries(
    norms: list[tuple[list[int], list[Tensor]]],
) -> list[tuple[list[float], float, float]]:
    """Per record: (per-parameter norms, global norm, count of non-finite ones), computed
    in one batch for the records with the same parameters."""
    if not norms:
        return []
    width = len(norms[0][0])
    if all(len(n[0]) == width for n in norms):
        table = torch.stack([t for n in norms for t in n[1]]).reshape(len(norms), width)
        totals = torch.linalg.vector_norm(table.double(), dim=1).tolist()
        bad = (~torch.isfinite(table)).sum(dim=1).tolist()
        return list(zip(table.tolist(), totals, [float(b) for b in bad], strict=True))
    out = []
    for _, n in norms:
        values = torch.stack(n).tolist()
        total = math.sqrt(math.fsum(v * v for v in values))
        out.append((values, total, float(sum(not math.isfinite(v) for v in values))))
    return out


def _floats(values: list[Tensor | float]) -> list[float]:
    """Floats of numbers and scalar tensors, the tensors converted in one batch."""
    tensors = [v for v in values if isinstance(v, Tensor)]
    if not tensors:
        return [float(v) for v in values]
    table = torch.stack([t if t.ndim == 0 else t.reshape(()) for t in tensors]).double()
    if len(tensors) == len(values):
        return table.tolist()
    converted = iter(table.tolist())
    return [next(converted) if isinstance(v, Tensor) else float(v) for v in values]


class Monitor:
    """Records a training run and diagnoses it.

    Parameters
    ----------
    model:
        The model being trained (names the parameters; finds trainable parameters the
        optimizer does not hold).
    optimizer:
        Its optimizer; the monitor adds step pre/post hooks to it (removed by :meth:`close`).
    every:
        Record every this many optimizer steps (1: every step).
    detail_every:
        Record per-parameter gradient norms and update ratios every this many steps (a
        multiple of ``every``); the weights are copied only before these steps.
    log_dir:
        Folder for ``monitor.csv``, ``meta.json``, TensorBoard events and ``monitor.png``;
        None keeps the record in memory only.
    scaler:
        The :class:`torch.amp.GradScaler` of a plain fp16 loop (a Stepper's is found by
        :meth:`attach`): its scale after each step's ``scaler.update()`` is recorded.
    batch_size:
        Samples per optimizer step, when known: the noise diagnosis uses it.
    clip_norm:
        The gradient clipping threshold in use, when known (a Stepper's is found).
    tensorboard:
        Write TensorBoard events into ``log_dir``: None when tensorboard is installed,
        True requires it, False never.

    Examples
    --------
    >>> monitor = Monitor(model, optimizer, log_dir="runs/a")   # doctest: +SKIP
    >>> for x, y in loader:                                     # doctest: +SKIP
    ...     optimizer.zero_grad()
    ...     loss = loss_fn(model(x), y)
    ...     loss.backward()
    ...     optimizer.step()
    ...     monitor.step(loss)
    >>> for finding in monitor.diagnose():                      # doctest: +SKIP
    ...     print(finding.cause, finding.message, finding.fix)
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Optimizer,
        *,
        every: int = 1,
        detail_every: int = 10,
        log_dir: str | os.PathLike[str] | None = None,
        scaler: torch.amp.GradScaler | None = None,
        batch_size: int | None = None,
        clip_norm: float | None = None,
        tensorboard: bool | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ValueError(f"Invalid model: {type(model).__name__} is not an nn.Module")
        if not isinstance(optimizer, Optimizer):
            raise ValueError(
                f"Invalid optimizer: {type(optimizer).__name__} is not a torch.optim.Optimizer"
            )
        self.every = _check_every("every", every)
        self.detail_every = _check_every("detail_every", detail_every)
        if self.detail_every % self.every:
            raise ValueError(
                f"Invalid detail_every: {detail_every} is not a multiple of every={every} "
                f"(use detail_every={every * max(1, round(detail_every / every))})"
            )
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"Invalid batch_size: {batch_size!r} (must be an int >= 1)")
        if scaler is not None and not isinstance(scaler, torch.amp.GradScaler):
            raise ValueError(f"Invalid scaler: {type(scaler).__name__} is not a GradScaler")
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.log_dir = Path(log_dir) if log_dir is not None else None

        names = {id(p): n for n, p in model.named_parameters()}
        self._params: list[Tensor] = []
        seen: set[int] = set()
        for gi, group in enumerate(optimizer.param_groups):
            for i, p in enumerate(group["params"]):
                if id(p) not in seen:
                    seen.add(id(p))
                    self._params.append(p)
                    names.setdefault(id(p), f"param_groups[{gi}][{i}]")
        if not self._params:
            raise ValueError("Invalid optimizer: it has no parameters")
        self.param_names = [names[id(p)] for p in self._params]
        not_in_opt = [
            n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen
        ]
        self._had_grad = [False] * len(self._params)
        self._grads_seen = False

        self.log = RunLog(
            meta={
                "optimizer": _optimizer_name(optimizer),
                "optimizer_class": type(optimizer).__name__,
                "param_names": self.param_names,
                "param_numel": [int(p.numel()) for p in self._params],
                "param_ndim": [int(p.ndim) for p in self._params],
                "weight_decay": [
                    float(g.get("weight_decay", 0.0) or 0.0) for g in optimizer.param_groups
                ],
                "initial_lrs": [float(g["lr"]) for g in optimizer.param_groups],
                "not_in_optimizer": not_in_opt,
                "never_grad": [],
                "frozen": [
                    self.param_names[i] for i, p in enumerate(self._params) if not p.requires_grad
                ],
                "clip_norm": clip_norm,
                "batch_size": batch_size,
                "every": self.every,
                "detail_every": self.detail_every,
                "amp": "fp16" if self.scaler is not None else None,
            }
        )
        self.step_count = 0
        self._opt_steps = 0
        self._opt_steps_seen = 0
        self._pre_lrs: list[float] | None = None
        self._pending_norms: tuple[list[int], list[Tensor]] | None = None
        self._all_idx = list(range(len(self._params)))
        self._snapshot: tuple[list[int], list[Tensor]] | None = None
        self._pending_ratio: tuple[list[int], Tensor] | None = None
        self._buffer: list[dict[str, Any]] = []
        self._probe: Tensor | None = None
        self._probe_ref: Tensor | None = None
        self._probe_armed_at = 0
        self._probe_handle: Any = None
        self._stepper: Any = None
        self._uniform_grads: bool | None = None
        self._norms_every_step = True
        self._norms_after_step = False
        self._closed = False
        self._writer: Any = None
        self._csv: Any = None
        self._tensorboard = tensorboard
        if self.log_dir is not None:
            self._open_files(tensorboard)
        self._hooks = [
            optimizer.register_step_pre_hook(self._pre_step),
            optimizer.register_step_post_hook(self._post_step),
        ]

    # ----------------------------------------------------------------------------------------
    # Files
    # ----------------------------------------------------------------------------------------

    def _open_files(self, tensorboard: bool | None) -> None:
        assert self.log_dir is not None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        csv_path = self.log_dir / CSV_NAME
        self._csv = csv_path.open("w", newline="")
        self._csv.write(csv_header())
        self._csv.flush()
        self._write_meta()
        if tensorboard is False:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if tensorboard:
                raise ValueError(
                    "tensorboard=True needs the tensorboard package: pip install tensorboard "
                    "(or pass tensorboard=None to write it only when installed)"
                ) from None
            return
        self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def _write_meta(self) -> None:
        if self.log_dir is not None:
            atomic_write_text(
                self.log_dir / META_NAME, json.dumps(self.log.meta, indent=2, default=str) + "\n"
            )

    # ----------------------------------------------------------------------------------------
    # Hooks
    # ----------------------------------------------------------------------------------------

    def _pre_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        upcoming = self.step_count + 1
        self._pre_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        if upcoming % self.every == 0 and (
            self._norms_every_step or upcoming % self.detail_every == 0
        ):
            # args[0] is the optimizer itself, args[1] a positional closure
            closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
            # with a closure (LBFGS, Lightning) the gradients are made inside step(): read
            # them in the post-hook instead
            self._norms_after_step = closure is not None
            if not self._norms_after_step:
                self._pending_norms = self._grad_norms()
        if upcoming % self.detail_every == 0:
            idx = [i for i, p in enumerate(self._params) if p.grad is not None]
            with torch.no_grad():
                self._snapshot = (idx, [self._params[i].detach().clone() for i in idx])

    def _post_step(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        self._opt_steps += 1
        if self._norms_after_step:
            self._norms_after_step = False
            self._pending_norms = self._grad_norms()
        if self._snapshot is None:
            return
        idx, old = self._snapshot
        self._snapshot = None
        if not idx:
            return
        with torch.no_grad():
            new = [self._params[i].detach() for i in idx]
            base = torch.stack(torch._foreach_norm(old)).clamp_min(1e-12)
            torch._foreach_sub_(old, new)  # the snapshot is ours: the update in place
            diff = torch.stack(torch._foreach_norm(old))
            self._pending_ratio = (idx, diff / base)

    def _grad_norms(self) -> tuple[list[int], list[Tensor]] | None:
        """Each gradient's norm, as 0-d tensors (stacked in batches by :meth:`flush`)."""
        params = self._params
        grads = [g for p in params if (g := p.grad) is not None]
        if not grads:
            return None
        if len(grads) == len(params):
            idx = self._all_idx
        else:
            idx = [i for i, p in enumerate(params) if p.grad is not None]
        norms: list[Tensor] = list(torch._foreach_norm(grads))  # no graph: grads need no grad
        if self._uniform_grads is None:  # one dtype and device: stack them as they are
            first = norms[0]
            self._uniform_grads = all(
                n.dtype == torch.float32 and n.device == first.device for n in norms
            )
        if not self._uniform_grads:
            norms = [n.float().to(norms[0].device) for n in norms]
        return idx, norms

    def _probe_hook(self, grad: Tensor) -> None:
        """Runs before a backward pass adds into the probe parameter's ``.grad``: were the
        gradients cleared since the last recorded step?"""
        if not self._probe_armed_at or self._probe is None:
            return
        step, self._probe_armed_at = self._probe_armed_at, 0
        current = self._probe.grad
        cleared = current is None or current is not self._probe_ref or not bool(current.any())
        self._probe_ref = None
        self._buffer.append({"step": step, "probe": 0.0 if cleared else 1.0})

    def _arm_probe(self, idx: list[int]) -> None:
        """Watch the next backward pass (a hook on one small parameter, registered only
        until then: a tensor hook on every backward would cost more than the rest)."""
        if self._probe is None:
            if not idx:
                return
            i = min(idx, key=lambda j: self._params[j].numel())
            self._probe = self._params[i]
        if not self._probe.requires_grad or self._probe.grad is None:
            return
        self._probe_ref = self._probe.grad
        self._probe_armed_at = self.step_count
        if self._probe_handle is None:
            self._probe_handle = self._probe.register_hook(self._probe_hook)

    def _disarm_probe(self) -> None:
        if self._probe_handle is not None and not self._probe_armed_at:
            self._probe_handle.remove()
            self._probe_handle = None

    # ----------------------------------------------------------------------------------------
    # Recording
    # ----------------------------------------------------------------------------------------

    def step(
        self,
        loss: Tensor | float,
        *,
        grad_norm: float | Tensor | None = None,
        stepped: bool | None = None,
    ) -> None:
        """Record one optimizer step; call it right after ``optimizer.step()`` (or
        ``scaler.step``) and before the gradients are cleared.

        Parameters
        ----------
        loss:
            The step's training loss (a scalar tensor or a float).
        grad_norm:
            The global gradient norm before clipping, when you clip
            (``clip_grad_norm_`` returns it); else the monitor measures the gradients the
            optimizer stepped with.
        stepped:
            Whether the optimizer stepped; by default the monitor knows (a GradScaler skips
            steps with non-finite gradients).
        """
        if self._closed:
            raise RuntimeError("this monitor is closed; make a new Monitor to record again")
        if isinstance(loss, Tensor):
            if loss.numel() != 1:
                raise ValueError(
                    f"Invalid loss: shape {tuple(loss.shape)} (must be a scalar; reduce it first)"
                )
            loss_value: Tensor | float = loss.detach()
        elif isinstance(loss, (int, float)) and not isinstance(loss, bool):
            loss_value = float(loss)
        else:
            raise ValueError(f"Invalid loss: {type(loss).__name__} (pass a scalar tensor or float)")
        self.step_count += 1
        if self._probe_handle is not None:
            self._disarm_probe()  # its backward pass has run
        took = self._opt_steps > self._opt_steps_seen if stepped is None else bool(stepped)
        self._opt_steps_seen = self._opt_steps
        if self.step_count % self.every:
            self._pending_norms = None
            return
        norms = self._pending_norms if took else None
        self._pending_norms = None
        if norms is None and (not took or self._norms_every_step):
            norms = self._grad_norms()  # a skipped step: the (non-finite) gradients are there
        lrs = self._pre_lrs if took and self._pre_lrs is not None else None
        if lrs is None:
            lrs = [float(g["lr"]) for g in self.optimizer.param_groups]
        record: dict[str, Any] = {
            "step": self.step_count,
            "loss": loss_value,
            "lrs": lrs,
            "norms": norms,
            "skipped": not took,
            "grad_norm": grad_norm.detach() if isinstance(grad_norm, Tensor) else grad_norm,
        }
        if self.scaler is not None:
            record["scale"] = float(self.scaler.get_scale())
        if self.step_count % self.detail_every == 0:
            record["detail"] = True
            if self._pending_ratio is not None:
                record["ratio"] = self._pending_ratio
            if norms is not None:
                self._grads_seen = True
                for i in norms[0]:
                    self._had_grad[i] = True
                self._arm_probe(norms[0])
        self._pending_ratio = None
        self._buffer.append(record)
        if len(self._buffer) >= _FLUSH_EVERY:
            self.flush()

    def log_val(self, metrics: Mapping[str, float] | None = None, /, **kw: float) -> None:
        """Record validation metrics at the current step, e.g. ``log_val(loss=0.4, acc=0.9)``
        (``val/loss`` is what the overfitting diagnosis reads)."""
        values = {**(metrics or {}), **kw}
        if not values:
            raise ValueError("log_val() got no metrics; pass e.g. log_val(loss=val_loss)")
        clean: dict[str, float] = {}
        for key, value in values.items():
            v = float(value.item()) if isinstance(value, Tensor) else value
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"Invalid val metric {key}={value!r} (must be a number)")
            clean[str(key).removeprefix("val_").removeprefix("eval_")] = float(v)
        self._buffer.append({"step": self.step_count, "val": clean})

    def flush(self) -> None:
        """Convert the buffered records into :attr:`log` and write them to the files."""
        buffer, self._buffer = self._buffer, []
        if not buffer:
            return
        out: dict[str, tuple[list[int], list[float]]] = {}

        def put(tag: str, step: int, value: float) -> None:
            steps, values = out.setdefault(tag, ([], []))
            steps.append(step)
            values.append(value)

        recs = [r for r in buffer if "loss" in r]
        if recs:
            self._columns(recs, out)
        for rec in buffer:
            if "probe" in rec:
                put("grads_not_cleared", rec["step"], rec["probe"])
            elif "val" in rec:
                for k, v in rec["val"].items():
                    put(f"val/{k}", rec["step"], v)
        for tag, (steps, values) in out.items():
            have = self.log.series.setdefault(tag, ([], []))
            have[0].extend(steps)
            have[1].extend(values)
        if self._csv is not None or self._writer is not None:
            rows = [
                (st, tag, v) for tag, (ss, vs) in out.items() for st, v in zip(ss, vs, strict=True)
            ]
            rows.sort(key=lambda r: r[0])
            if self._csv is not None:
                self._csv.write(format_rows(rows))
                self._csv.flush()
            if self._writer is not None:
                self._write_tensorboard(rows)
        self._update_meta()

    def _columns(
        self, recs: list[dict[str, Any]], out: dict[str, tuple[list[int], list[float]]]
    ) -> None:
        """The step records' values, tag by tag (tensors converted in one batch per tag)."""
        names = self.param_names
        steps = [r["step"] for r in recs]
        out.setdefault("loss", ([], []))
        out["loss"][0].extend(steps)
        out["loss"][1].extend(_floats([r["loss"] for r in recs]))
        for g in range(max(len(r["lrs"]) for r in recs)):
            lr_steps, lr_values = out.setdefault(f"lr/{g}", ([], []))
            for r in recs:
                if g < len(r["lrs"]):
                    lr_steps.append(r["step"])
                    lr_values.append(r["lrs"][g])
        out.setdefault("skipped", ([], []))
        out["skipped"][0].extend(steps)
        out["skipped"][1].extend([1.0 if r["skipped"] else 0.0 for r in recs])
        scaled = [r for r in recs if "scale" in r]
        if scaled:
            sc_steps, sc_values = out.setdefault("amp_scale", ([], []))
            sc_steps.extend([r["step"] for r in scaled])
            sc_values.extend([r["scale"] for r in scaled])
        norm_values = iter(_norm_summaries([r["norms"] for r in recs if r["norms"]]))
        given_values = iter(_floats([g for r in recs if (g := r["grad_norm"]) is not None]))
        bad_steps, bad_values = out.setdefault("nonfinite_grads", ([], []))
        gn_steps, gn_values = out.setdefault("grad_norm", ([], []))

        def put(tag: str, step: int, value: float) -> None:
            tag_steps, tag_values = out.setdefault(tag, ([], []))
            tag_steps.append(step)
            tag_values.append(value)

        for rec in recs:
            s = rec["step"]
            norms = rec["norms"]
            total = float("nan")
            if norms:
                values, total, bad = next(norm_values)
                bad_steps.append(s)
                bad_values.append(bad)
            if rec["grad_norm"] is not None:
                total = next(given_values)
                if not norms:  # the stepper's norm stands for the per-parameter ones
                    bad_steps.append(s)
                    bad_values.append(0.0 if math.isfinite(total) else 1.0)
            if norms or rec["grad_norm"] is not None:
                gn_steps.append(s)
                gn_values.append(total)
            if rec.get("detail"):
                if norms:
                    put("grad_missing", s, float(len(names) - len(values)))
                    for i, v in zip(norms[0], values, strict=False):
                        put(f"grad_norm/{names[i]}", s, v)
                if "ratio" in rec:
                    idx, ratio = rec["ratio"]
                    for i, v in zip(idx, ratio.tolist(), strict=False):
                        put(f"update_ratio/{names[i]}", s, v)
        for tag in ("nonfinite_grads", "grad_norm"):
            if not out[tag][0]:
                del out[tag]

    def _write_tensorboard(self, rows: list[tuple[int, str, float]]) -> None:
        """One event per step holding all of its scalars (what add_scalar writes one by one,
        at a fraction of the cost)."""
        from tensorboard.compat.proto.summary_pb2 import Summary

        writer = self._writer._get_file_writer()
        by_step: dict[int, list[Any]] = {}
        for st, tag, v in rows:
            by_step.setdefault(st, []).append(Summary.Value(tag=tag, simple_value=v))
        for st, values in by_step.items():
            writer.add_summary(Summary(value=values), st)

    def _update_meta(self) -> None:
        never = (
            [n for n, had in zip(self.param_names, self._had_grad, strict=False) if not had]
            if self._grads_seen
            else []
        )
        if never != self.log.meta["never_grad"]:
            self.log.meta["never_grad"] = never
            self._write_meta()

    # ----------------------------------------------------------------------------------------
    # Stepper
    # ----------------------------------------------------------------------------------------

    def attach(self, stepper: Any) -> Monitor:
        """Record every step of an :class:`optiwise.Stepper` (its loss, its pre-clipping
        gradient norm, its skipped steps and its GradScaler); returns the monitor."""
        from optiwise.train import Stepper

        if not isinstance(stepper, Stepper):
            raise ValueError(
                f"Invalid stepper: {type(stepper).__name__} is not an optiwise.Stepper"
            )
        if stepper.optimizer is not self.optimizer:
            raise ValueError("the stepper drives another optimizer; build the Monitor on it")
        if stepper.scaler is not None:
            self.scaler = stepper.scaler
            self.log.meta["amp"] = "fp16"
        if stepper.clip_norm is not None:
            self.log.meta["clip_norm"] = stepper.clip_norm
        self._stepper = stepper
        # the stepper measures the global norm of every step: the monitor reads the
        # gradients itself only on detailed and skipped steps
        self._norms_every_step = False
        stepper.add_step_hook(self._on_stepper_step)
        self._write_meta()
        return self

    def _on_stepper_step(self, result: Any, loss: Tensor) -> None:
        self.step(loss, grad_norm=result.grad_norm, stepped=result.stepped)

    # ----------------------------------------------------------------------------------------
    # Results
    # ----------------------------------------------------------------------------------------

    def diagnose(self) -> list[Finding]:
        """What is wrong with the run so far, worst first (see
        :func:`optiwise.monitor.diagnose`)."""
        from optiwise.monitor.diagnose import diagnose_log

        self.flush()
        return diagnose_log(self.log)

    def plot(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the plot page (loss, LR, gradient norms, update ratios, ...) as a PNG;
        by default ``log_dir/monitor.png``."""
        from optiwise.monitor.plot import plot_log

        self.flush()
        if path is None:
            if self.log_dir is None:
                raise ValueError("plot() needs a path when the monitor has no log_dir")
            path = self.log_dir / "monitor.png"
        return plot_log(self.log, path)

    def close(self) -> None:
        """Flush, write the plot page (with a ``log_dir``), close the files, remove the
        hooks. Idempotent."""
        if self._closed:
            return
        self.flush()
        for handle in self._hooks:
            handle.remove()
        if self._probe_handle is not None:
            self._probe_handle.remove()
            self._probe_handle = None
        if self._stepper is not None:
            self._stepper.remove_step_hook(self._on_stepper_step)
        self._closed = True
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
        if self._csv is not None:
            self._csv.close()
        if self.log_dir is not None and self.log.series:
            self.plot()
        self._write_meta()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Monitor({type(self.optimizer).__name__}, step={self.step_count}, "
            f"every={self.every}, log_dir={str(self.log_dir) if self.log_dir else None!r})"
        )


StepHook = Callable[[Any, Tensor], None]
