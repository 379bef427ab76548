"""Training-state checkpoints that resume exactly and never run code when loaded.

:func:`save_checkpoint` writes the model, optimizer, scheduler, GradScaler, EMA model,
:class:`~optiwise.train.Stepper` counters, the random number generator states (torch CPU and
CUDA, numpy's global generator, Python's ``random``) and your extras to one file, atomically
(temporary file in the same folder, fsync, rename): a crash during a save leaves the previous
checkpoint intact. Everything is stored as tensors and plain containers, so
:func:`load_checkpoint` reads it with ``torch.load(..., weights_only=True)`` and refuses a file
that carries any other Python object.

:func:`load_checkpoint` checks the whole file against the objects you pass (parameter names
and shapes, param-group layout, scheduler and scaler kind) before it changes any of them;
on a mismatch it raises a ValueError listing the differences and nothing is loaded.
"""

from __future__ import annotations

import contextlib
import copy
import os
import pickle
import random
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from optiwise._io import atomic_path
from optiwise.train import Stepper

__all__ = [
    "FORMAT",
    "VERSION",
    "capture_rng_state",
    "load_checkpoint",
    "read_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
]

#: Marker stored in every checkpoint.
FORMAT = "optiwise-checkpoint"
#: Layout version of the checkpoint dict.
VERSION = 1

_ATOMS: tuple[type, ...] = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    torch.dtype,
    torch.device,
    torch.Size,
)
_MAX_LISTED = 10


# ------------------------------------------------------------------------------------------
# Plain data
# ------------------------------------------------------------------------------------------


def _refuse(where: str, obj: Any) -> ValueError:
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    hint = ""
    if isinstance(obj, np.ndarray):
        hint = " (convert it with torch.from_numpy)"
    elif isinstance(obj, Tensor):
        hint = " (a tensor subclass; store a plain tensor, e.g. .detach().clone())"
    return ValueError(
        f"cannot store {where} in a checkpoint: it is a {kind}{hint}; a checkpoint holds "
        "only tensors, numbers, strings, bytes, None, lists, tuples, sets and dicts, so that "
        "loading it never runs code from the file"
    )


def _plain(obj: Any, where: str) -> Any:
    """``obj`` if it is plain data (numpy scalars become Python numbers), else a ValueError
    naming where the offending object is."""
    if isinstance(obj, Tensor):
        if type(obj) not in (Tensor, nn.Parameter):
            raise _refuse(where, obj)
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    if type(obj) in _ATOMS:
        return obj
    if type(obj) in (list, tuple, set):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        if all(a is b for a, b in zip(items, obj, strict=True)):
            return obj
        return type(obj)(items)
    if type(obj) in (dict, OrderedDict):
        changed = False
        out: list[tuple[Any, Any]] = []
        for key, value in obj.items():
            new_key = _plain(key, f"{where} key {key!r}")
            if isinstance(new_key, (Tensor, list, dict, set)):
                raise _refuse(f"{where} key {key!r}", key)
            new_value = _plain(value, f"{where}[{key!r}]")
            changed = changed or new_key is not key or new_value is not value
            out.append((new_key, new_value))
        if not changed:
            return obj
        rebuilt = type(obj)(out)
        if hasattr(obj, "_metadata"):  # nn.Module.state_dict() version information
            rebuilt._metadata = obj._metadata
        return rebuilt
    raise _refuse(where, obj)


# ------------------------------------------------------------------------------------------
# Random number generators
# ------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU, every CUDA device, numpy, Python) as plain data."""
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # legacy=True always gives the tuple form
    name, keys, pos, has_gauss, cached = np_state
    version, py_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss_next": None if gauss_next is None else float(gauss_next),
        },
    }


def _check_rng_state(state: Any) -> None:
    def bad(what: str) -> ValueError:
        return ValueError(f"cannot restore the RNG state: {what}")

    if not isinstance(state, Mapping) or set(state) != {"torch", "cuda", "numpy", "python"}:
        raise bad("expected keys cuda, numpy, python, torch (from capture_rng_state())")
    t = state["torch"]
    if not isinstance(t, Tensor) or t.dtype != torch.uint8 or t.dim() != 1:
        raise bad("'torch' is not a 1-D uint8 tensor")
    cuda = state["cuda"]
    if not isinstance(cuda, list) or not all(
        isinstance(c, Tensor) and c.dtype == torch.uint8 for c in cuda
    ):
        raise bad("'cuda' is not a list of uint8 tensors")
    n = state["numpy"]
    if (
        not isinstance(n, Mapping)
        or set(n) != {"name", "keys", "pos", "has_gauss", "cached_gaussian"}
        or not isinstance(n["keys"], Tensor)
        or n["keys"].shape != (624,)
    ):
        raise bad("'numpy' is not an MT19937 state (624 keys, pos, has_gauss, cached_gaussian)")
    p = state["python"]
    if (
        not isinstance(p, Mapping)
        or set(p) != {"version", "state", "gauss_next"}
        or not isinstance(p["state"], Tensor)
        or p["state"].shape != (625,)
    ):
        raise bad("'python' is not a random.getstate() (version, 625 ints, gauss_next)")


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the global RNG states from :func:`capture_rng_state`.

    CUDA states are restored when this machine has the same number of CUDA devices; saved
    CUDA states that cannot be restored give a warning.
    """
    _check_rng_state(state)
    torch.set_rng_state(state["torch"].cpu())
    cuda = state["cuda"]
    if cuda:
        if torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
            torch.cuda.set_rng_state_all([c.cpu() for c in cuda])
        else:
            have = torch.cuda.device_count() if torch.cuda.is_available() else 0
            warnings.warn(
                f"the checkpoint has RNG states for {len(cuda)} CUDA device(s), this machine "
                f"has {have}: CUDA random numbers will differ from the original run",
                RuntimeWarning,
                stacklevel=2,
            )
    n = state["numpy"]
    np.random.set_state(
        (
            str(n["name"]),
            n["keys"].numpy().astype(np.uint32),
            int(n["pos"]),
            int(n["has_gauss"]),
            float(n["cached_gaussian"]),
        )
    )
    p = state["python"]
    random.setstate((int(p["version"]), tuple(p["state"].tolist()), p["gauss_next"]))


# ------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------


def _with_stepper_parts(
    stepper: Stepper | None, scaler: torch.amp.GradScaler | None, ema: nn.Module | None
) -> tuple[torch.amp.GradScaler | None, nn.Module | None]:
    """Fill ``scaler`` and ``ema`` from the stepper's own, refusing conflicting objects."""
    if stepper is None:
        return scaler, ema
    if not isinstance(stepper, Stepper):
        raise ValueError(f"Invalid stepper: {type(stepper).__name__} is not an optiwise.Stepper")
    for label, given, own in (("scaler", scaler, stepper.scaler), ("ema", ema, stepper.ema_model)):
        if given is not None and own is not None and given is not own:
            raise ValueError(
                f"{label}= is not the stepper's own {label}; pass only stepper= (its scaler "
                "and EMA model are included) or the same objects"
            )
    return (
        scaler if scaler is not None else stepper.scaler,
        ema if ema is not None else stepper.ema_model,
    )


def save_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: Optimizer | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    ema: nn.Module | None = None,
    stepper: Stepper | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a training checkpoint to ``path`` atomically.

    Parameters
    ----------
    path:
        File to write; its folder is created. The old file stays intact until the new one
        is complete.
    model, optimizer, scheduler, scaler, ema:
        What to save (``ema``: an :class:`~torch.optim.swa_utils.AveragedModel` or any
        module). The global RNG states are always saved.
    stepper:
        A :class:`~optiwise.train.Stepper`: its counters, and its GradScaler and EMA model
        unless given. Must not be in the middle of an accumulation window or inside
        ``evaluate()``.
    extra:
        Your own plain data (epoch, data position, metrics...): str keys; values tensors,
        numbers, strings, None, lists, tuples, sets and dicts. Returned by
        :func:`load_checkpoint`.

    Returns
    -------
    Path
        ``path``.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"Invalid model: {type(model).__name__} is not an nn.Module")
    scaler, ema = _with_stepper_parts(stepper, scaler, ema)
    if stepper is not None and stepper.evaluating:
        raise RuntimeError(
            "cannot save inside stepper.evaluate(): the model holds evaluation weights there "
            "(schedule-free); save after the block"
        )
    if extra is not None:
        if not isinstance(extra, Mapping):
            raise ValueError(f"Invalid extra: {type(extra).__name__} (must be a dict)")
        bad_keys = [k for k in extra if not isinstance(k, str)]
        if bad_keys:
            raise ValueError(f"Invalid extra: keys {bad_keys!r} are not strings")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "torch_version": str(torch.__version__),
        "model": model.state_dict(),
        "rng": capture_rng_state(),
        "extra": dict(extra) if extra is not None else {},
    }
    classes: dict[str, str] = {}
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
        classes["optimizer"] = type(optimizer).__qualname__
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
        classes["scheduler"] = type(scheduler).__qualname__
    payload["classes"] = classes
    if scaler is not None:
        payload["scaler"] = scaler.state_dict()
    if ema is not None:
        payload["ema"] = ema.state_dict()
    if stepper is not None:
        payload["stepper"] = stepper.state_dict()
    payload = {key: _plain(value, key) for key, value in payload.items()}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


# ------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (its type when there is none)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return f"{type(exc).__name__}: {lines[0].split('. ')[0][:200]}"


def _unpickler_error(exc: BaseException) -> str:
    """What torch's weights-only unpickler objected to (``Unsupported global: GLOBAL
    module.name``, ``Unsupported operand 244``...), else the message's first line."""
    lines = [line.strip() for line in str(exc).splitlines()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            following = [x for x in lines[i + 1 :] if x]
            reason = rest or (following[0] if following else "")
            if reason:
                return reason.split(" was not an allowed global")[0][:200]
    return _first_line(exc)


def read_checkpoint(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` and check its form.

    Raises a ValueError for a file holding arbitrary Python objects (it is never unpickled),
    an empty, truncated or foreign file, or a checkpoint from a newer optiwise.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no checkpoint at {file}")
    size = file.stat().st_size
    if size == 0:
        raise ValueError(
            f"cannot read {file}: the file is empty (0 bytes), not a checkpoint "
            "(save_checkpoint never leaves one: it writes a temporary file and renames it into "
            "place); use an earlier checkpoint or start afresh"
        )
    try:
        payload = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_error(exc)
        if reason.startswith("Unsupported global"):
            raise ValueError(
                f"refusing to load {file}: it holds Python objects other than tensors and "
                f"plain containers ({reason}); optiwise never runs code from a checkpoint file"
            ) from None
        raise ValueError(
            f"cannot read {file} ({size} bytes): not a torch checkpoint (neither torch.save's "
            f"zip format nor a pickle torch can read: another format, or corrupted) ({reason})"
        ) from None
    except Exception as exc:
        raise ValueError(
            f"cannot read {file} ({size} bytes): not a complete torch checkpoint (truncated "
            f"or another format?): {_first_line(exc)}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{file} is not an optiwise checkpoint (no {FORMAT!r} marker); write it with "
            "optiwise.save_checkpoint, or load a bare state dict with model.load_state_dict"
        )
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(
            f"{file} has checkpoint version {version!r}; this optiwise reads versions up to "
            f"{VERSION}: upgrade optiwise"
        )
    _plain(payload, "checkpoint")  # refuse objects a user allow-listed for weights_only
    return payload


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f", ... and {more} more" if more > 0 else "")


def _state_dict_differences(saved: Any, current: Mapping[str, Any]) -> list[str]:
    """Missing, unexpected and reshaped entries of a module state dict."""
    if not isinstance(saved, Mapping):
        return [f"the saved state is a {type(saved).__name__}, not a state dict"]
    missing = [k for k in current if k not in saved]
    extra = [k for k in saved if k not in current]
    reshaped = []
    for key, value in current.items():
        old = saved.get(key)
        if isinstance(value, Tensor) and isinstance(old, Tensor) and old.shape != value.shape:
            reshaped.append(f"{key} (checkpoint {tuple(old.shape)}, model {tuple(value.shape)})")
    out = []
    if missing:
        out.append(f"missing from the checkpoint ({len(missing)}): {_listed(missing)}")
    if extra:
        out.append(f"in the checkpoint but not the model ({len(extra)}): {_listed(extra)}")
    if reshaped:
        out.append(f"different shape ({len(reshaped)}): {_listed(reshaped)}")
    return out


def _names_differ(saved: Any, current: Any) -> bool:
    """Whether both param groups carry ``param_names`` and they differ."""
    return saved is not None and current is not None and list(saved) != list(current)


def _optimizer_differences(saved: Any, optimizer: Optimizer) -> list[str]:
    """Layout differences between a saved optimizer state and ``optimizer``."""
    current = optimizer.state_dict()
    if not isinstance(saved, Mapping) or set(saved) != set(current):
        keys = sorted(map(str, saved)) if isinstance(saved, Mapping) else type(saved).__name__
        return [
            f"the saved state has keys {keys}, {type(optimizer).__name__}'s has "
            f"{sorted(map(str, current))}: is it from another optimizer?"
        ]
    out = []
    groups, now = saved.get("param_groups"), current.get("param_groups")
    if isinstance(groups, list) and isinstance(now, list):
        if len(groups) != len(now):
            return [f"{len(groups)} param groups saved, the optimizer has {len(now)}"]
        for i, (old, new) in enumerate(zip(groups, now, strict=True)):
            if len(old["params"]) != len(new["params"]):
                out.append(
                    f"param group {i}: {len(old['params'])} parameters saved, the "
                    f"optimizer's has {len(new['params'])}"
                )
            elif _names_differ(old.get("param_names"), new.get("param_names")):
                out.append(
                    f"param group {i}: parameter names differ (saved "
                    f"{_listed(list(old['param_names']))}; now "
                    f"{_listed(list(new['param_names']))})"
                )
    if not out:
        validate = getattr(optimizer, "validate_state_dict", None)
        if callable(validate):
            try:
                validate(saved)
            except ValueError as exc:
                out.append(str(exc))
    return out


def _keys_differences(saved: Any, current: Mapping[str, Any], what: str) -> list[str]:
    if not isinstance(saved, Mapping):
        return [f"the saved {what} state is a {type(saved).__name__}, not a dict"]
    if set(saved) != set(current):
        return [
            f"the saved {what} state has keys {sorted(map(str, saved))}, this {what} has "
            f"{sorted(map(str, current))}: is it another kind of {what}?"
        ]
    return []


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    model: nn.Module,
    optimizer: Optimizer | None = None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    ema: nn.Module | None = None,
    stepper: Stepper | None = None,
    rng: bool = True,
    map_location: Any = "cpu",
) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint` into the given objects.

    Everything you pass is checked against the file first; a mismatch raises a ValueError
    listing the differences (missing, unexpected and reshaped parameters, param-group
    layout, scheduler or scaler kind) and nothing is loaded. Passing an object whose state
    the file does not hold is an error too.

    Parameters
    ----------
    path:
        A checkpoint file. Read with ``torch.load(weights_only=True)``: a file holding other
        Python objects is refused.
    model, optimizer, scheduler, scaler, ema, stepper:
        Objects to restore (a stepper's own GradScaler and EMA model are restored with it).
    rng:
        Restore the global RNG states (torch, CUDA, numpy, Python) saved with it.
    map_location:
        Passed to ``torch.load``; states are then moved to each parameter's device.

    Returns
    -------
    dict
        The ``extra`` saved with the checkpoint.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"Invalid model: {type(model).__name__} is not an nn.Module")
    scaler, ema = _with_stepper_parts(stepper, scaler, ema)
    payload = read_checkpoint(path, map_location=map_location)

    wanted: dict[str, Any] = {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "scaler": scaler,
        "ema": ema,
        "stepper": stepper,
    }
    absent = [k for k, v in wanted.items() if v is not None and k not in payload]
    if absent:
        raise ValueError(
            f"{path} holds no state for {', '.join(absent)}; it has "
            f"{', '.join(k for k in wanted if k in payload)}. Nothing was loaded."
        )
    problems: list[str] = []
    saved_classes = payload.get("classes", {})
    for label, obj in (("optimizer", optimizer), ("scheduler", scheduler)):
        saved_class = saved_classes.get(label) if isinstance(saved_classes, dict) else None
        if obj is not None and saved_class not in (None, type(obj).__qualname__):
            problems.append(
                f"{label}: saved from a {saved_class}, loading into a {type(obj).__qualname__}"
            )
    problems += [
        f"model: {d}" for d in _state_dict_differences(payload["model"], model.state_dict())
    ]
    if ema is not None:
        problems += [f"ema: {d}" for d in _state_dict_differences(payload["ema"], ema.state_dict())]
    if optimizer is not None:
        problems += [
            f"optimizer: {d}" for d in _optimizer_differences(payload["optimizer"], optimizer)
        ]
    if scheduler is not None:
        problems += _keys_differences(payload["scheduler"], scheduler.state_dict(), "scheduler")
    if scaler is not None:
        problems += _keys_differences(payload["scaler"], scaler.state_dict(), "scaler")
    if stepper is not None:
        try:
            stepper.validate_state_dict(payload["stepper"])
        except ValueError as exc:
            problems.append(str(exc))
        if stepper.pending:
            problems.append(
                f"the stepper has {stepper.pending} micro-batch(es) accumulated; load "
                "before training or after flush()"
            )
    if rng:
        try:
            _check_rng_state(payload.get("rng"))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError(
            f"checkpoint {path} does not match what you are loading it into:\n  "
            + "\n  ".join(problems)
            + "\nNothing was loaded."
        )

    # Cheap snapshots to roll back if a component still fails while loading; the model and
    # the EMA model, checked above key by key and shape by shape, are loaded last.
    undo: list[Callable[[], None]] = []
    try:
        if optimizer is not None:
            before = optimizer.state_dict()
            undo.append(lambda: optimizer.load_state_dict(before))
            optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None:
            sched_before = copy.deepcopy(scheduler.state_dict())
            undo.append(lambda: scheduler.load_state_dict(sched_before))
            scheduler.load_state_dict(payload["scheduler"])
        if scaler is not None:
            scaler_before = scaler.state_dict()
            undo.append(lambda: scaler.load_state_dict(scaler_before))
            scaler.load_state_dict(payload["scaler"])
        if stepper is not None:
            stepper_before = stepper.state_dict()
            undo.append(lambda: stepper.load_state_dict(stepper_before))
            stepper.load_state_dict(payload["stepper"])
        if ema is not None:
            ema.load_state_dict(payload["ema"])
        model.load_state_dict(payload["model"])
    except BaseException:
        for restore in reversed(undo):
            with contextlib.suppress(Exception):  # restore the others even if one fails
                restore()
        raise
    if rng:
        restore_rng_state(payload["rng"])
    return dict(payload["extra"])
