"""Fused CPU steps of the 8-bit optimizers: one C++ kernel, compiled at run time.

:class:`~optiwise.optim.AdamW8bit` and :class:`~optiwise.optim.Lion8bit` step each block of
``block_size`` elements in one pass over memory: dequantize the codes, update, take the new
absmax, requantize (``_native.cpp``). Their tensors with fp32 state (below
``min_8bit_numel``) take the same kernel without the quantization.

Why not torch.compile, like the other fused steps (``_fused.py``)
-----------------------------------------------------------------
A block step looks up two tables per moment (the map's 256 values to dequantize, a 2^17-entry
table to requantize) and needs the block's new absmax before it can requantize. Inductor's CPU
code does each table lookup as a scalar loop through a stack buffer, with 64-bit index
conversions, and splits the block reduction from its consumers into separate loops over
memory: on the 2-core AVX-512 machine this was built on (torch 2.13, one thread) the best
compiled version took 8-10x torch's ``AdamW(fused=True)`` step time, the same update as a
plain C++ loop auto-vectorized by g++ about 1.5x. So the CPU step is this small C++ file:

- no build step and no torch headers or ABI: the package stays pure Python, and the file is
  compiled on first use by the C++ compiler torch.compile itself needs on CPU (``CXX``, else
  g++, c++ or clang++), for the host's instruction set (``-march=native``) with OpenMP when
  available, then cached on disk (``OPTIWISE_CACHE_DIR``, else ``$XDG_CACHE_HOME/optiwise``
  or ``~/.cache/optiwise``), keyed by the source, the compiler and the CPU: about 5 s once;
- called through ctypes on the tensors' data pointers, one call per param group and dtype
  pair; the kernel splits the blocks of all tensors among torch's intra-op threads;
- exact: compiled with ``-ffp-contract=off`` and no fast-math, it performs the per-tensor
  path's float operations in the same order (see ``_native.cpp``), so the two paths give
  bit-identical codes, absmax and fp32 parameters; a run may switch paths at any step;
- no recompilation and no device sync: hyperparameters are plain C floats.

It serves fp32 and bf16 parameters and gradients on the CPU. Other dtypes (float16, float64)
and non-contiguous tensors take the per-tensor path; CUDA tensors take the per-tensor path
(``fused=True`` refuses them), where a Triton kernel would be the fused step.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import hashlib
import itertools
import operator
import os
import platform
import shutil
import subprocess
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from optiwise._io import atomic_path
from optiwise.optim._fused import AUTO_MIN_NUMEL
from optiwise.optim._kernels import PackedMaps, packed_maps

__all__ = [
    "ADAMW_HPARAMS",
    "LION_HPARAMS",
    "adamw_step",
    "cache_dir",
    "check_native_params",
    "lion_step",
    "load",
    "native_error",
    "servable",
    "stats",
    "use_native",
]

#: Version of the C entry points this module calls (``optiwise_native_abi``).
ABI = 1
#: The numbers each kernel takes, in order (``_kernels.adamw8bit_hparams``, ``lion8bit_hparams``).
ADAMW_HPARAMS = ("decay", "weight1", "beta2", "weight2", "inv_bias2_sqrt", "eps", "neg_step_size")
LION_HPARAMS = ("decay", "neg_lr", "weight1", "weight2")

_SOURCE = Path(__file__).with_name("_native.cpp")
_dtype = operator.attrgetter("dtype")
_on_cpu = operator.attrgetter("is_cpu")  # faster than comparing devices: no device objects
_contiguous = Tensor.is_contiguous
_DTYPES = {torch.float32: 0, torch.bfloat16: 1}
_BASE_FLAGS = ["-O3", "-std=c++17", "-shared", "-fPIC", "-ffp-contract=off", "-fno-math-errno"]
# tried in order until one compiles: the host's instruction set and OpenMP when possible
_EXTRA_FLAGS: tuple[list[str], ...] = (
    ["-march=native", "-fopenmp"],
    ["-fopenmp"],
    ["-march=native"],
    [],
)

#: Per process: ``builds`` (compiler runs) and ``loads`` (libraries loaded).
stats = {"builds": 0, "loads": 0}

_lib: ctypes.CDLL | None = None
_error: str | None = None
_warned = False


# --------------------------------------------------------------------------------------------
# Building and loading
# --------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``OPTIWISE_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/optiwise`` (``~/.cache/optiwise``), folder ``native``."""
    root = os.environ.get("OPTIWISE_CACHE_DIR")
    if root:
        return Path(root) / "native"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "optiwise" / "native"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_id() -> str:
    """What the compiled code depends on besides the compiler: the CPU's features."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    return f"{platform.machine()} {platform.processor()}"


class _NextFlags(Exception):
    """The compiler refused one set of flags: leave the target untouched, try the next."""


def _build(compiler: str, target: Path) -> None:
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        writable = os.access(folder, os.W_OK)
    except OSError as err:
        writable, folder = False, Path(f"{folder} ({err})")
    if not writable:
        raise RuntimeError(
            f"cannot write the compiled kernel to {folder}: set OPTIWISE_CACHE_DIR to a "
            "writable folder"
        )
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, timeout=60, check=False
    ).stdout.splitlines()[:1]
    error = ""
    for extra in _EXTRA_FLAGS:
        try:
            with atomic_path(target) as tmp:
                command = [compiler, *_BASE_FLAGS, *extra, str(_SOURCE), "-o", str(tmp)]
                stats["builds"] += 1
                done = subprocess.run(command, capture_output=True, text=True, timeout=600)
                if done.returncode == 0:
                    return
                error = " ".join(done.stderr.split())[-400:]
                raise _NextFlags
        except _NextFlags:
            continue
    raise RuntimeError(f"{compiler} ({' '.join(version)}) failed: {error}")


def _library_path(compiler: str) -> Path:
    key = hashlib.sha256()
    flags = repr((_BASE_FLAGS, _EXTRA_FLAGS)).encode()
    for part in (
        _SOURCE.read_bytes(),
        str(ABI).encode(),
        compiler.encode(),
        _cpu_id().encode(),
        flags,
    ):
        key.update(part + b"\0")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        key.update(
            subprocess.run(
                [compiler, "--version"], capture_output=True, timeout=60, check=False
            ).stdout
        )
    return cache_dir() / f"optiwise_native_{key.hexdigest()[:20]}.so"


def _configure(lib: ctypes.CDLL) -> None:
    ptr, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int32
    lib.optiwise_native_abi.restype = i32
    lib.optiwise_adamw_step.argtypes = [i64, *[ptr] * 6, ptr, i64, i32, i32, i32, ptr, ptr, i32]
    lib.optiwise_adamw_step.restype = i32
    lib.optiwise_lion_step.argtypes = [i64, *[ptr] * 4, ptr, i64, i32, i32, i32, ptr, ptr, i32]
    lib.optiwise_lion_step.restype = i32


def load() -> ctypes.CDLL:
    """The compiled kernel, built on first use (or read from :func:`cache_dir`).

    Raises a RuntimeError saying why when it cannot be built (no C++ compiler, or the
    compiler failed); the error is remembered for the rest of the process.
    """
    global _lib, _error
    if _lib is not None:
        return _lib
    if _error is not None:
        raise RuntimeError(_error)
    try:
        compiler = _compiler()
        if compiler is None:
            raise RuntimeError("no C++ compiler found: install g++ or set CXX")
        path = _library_path(compiler)
        if not path.is_file():
            _build(compiler, path)
        try:
            lib = ctypes.CDLL(str(path))
        except OSError:  # a damaged cache entry: build it again
            _build(compiler, path)
            lib = ctypes.CDLL(str(path))
        if lib.optiwise_native_abi() != ABI:
            raise RuntimeError(f"{path} has an unexpected interface; delete it")
        _configure(lib)
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        _error = f"{type(err).__name__}: {err}" if not isinstance(err, RuntimeError) else str(err)
        raise RuntimeError(_error) from err
    stats["loads"] += 1
    _lib = lib
    return lib


def native_error() -> str | None:
    """None when the kernel is (or can be) loaded, else why not."""
    try:
        load()
    except RuntimeError as err:
        return str(err)
    return None


# --------------------------------------------------------------------------------------------
# Which path
# --------------------------------------------------------------------------------------------


def check_native_params(params: Sequence[Tensor]) -> None:
    """Raise a ValueError naming a parameter ``fused=True`` cannot step (not on the CPU)."""
    if all(map(_on_cpu, params)):
        return
    for i, p in enumerate(params):
        if p.device.type != "cpu":
            raise ValueError(
                f"fused=True runs the 8-bit optimizers' step on the CPU; parameter #{i} is on "
                f"{p.device}: pass fused=False"
            )


def use_native(fused: bool | None, foreach: bool | None, params: Sequence[Tensor]) -> bool:
    """The ``fused``/``foreach`` policy of the 8-bit optimizers for one param group.

    ``fused=True``: always (a ValueError for parameters off the CPU, a RuntimeError when the
    kernel cannot be compiled); ``False``: never; ``None``: when ``foreach`` is None too, every
    parameter is on the CPU, the group holds at least ``_fused.AUTO_MIN_NUMEL`` elements (as
    the other fused steps) and the kernel compiles (otherwise one warning). Never while the
    step is itself being compiled (the per-tensor path traces; a C call does not).
    """
    global _warned
    if not params or fused is False or torch.compiler.is_compiling():
        return False
    if fused:
        check_native_params(params)
        problem = native_error()
        if problem is not None:
            raise RuntimeError(
                f"fused=True, but the fused 8-bit step could not be compiled ({problem}); "
                "pass fused=False"
            )
        return True
    if foreach is not None or not all(map(_on_cpu, params)):
        return False
    if sum(map(Tensor.numel, params)) < AUTO_MIN_NUMEL:
        return False
    problem = native_error()
    if problem is not None:
        if not _warned:
            _warned = True
            warnings.warn(
                f"optiwise: the fused 8-bit optimizer step could not be compiled ({problem}); "
                "using the per-tensor path",
                RuntimeWarning,
                stacklevel=_caller_level(),
            )
        return False
    return True


def _caller_level() -> int:
    """The ``stacklevel`` at which a warning of the function calling this one names the
    first frame outside optiwise and torch (the user's ``optimizer.step()``)."""
    roots = tuple(str(d) + os.sep for d in (Path(__file__).parents[1], Path(torch.__file__).parent))
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(roots):
        frame, level = frame.f_back, level + 1
    return level


def servable(
    params: Sequence[Tensor], grads: Sequence[Tensor], states: Sequence[Sequence[Tensor]]
) -> list[bool]:
    """Per parameter, whether the kernel can step it: fp32/bf16 parameter and gradient on the
    CPU, both contiguous, and its state tensors (``states[k][i]``) contiguous on the CPU.
    C-level passes over the lists: this runs at every step."""
    columns = [params, grads, *states]
    if (
        all(all(map(_contiguous, c)) for c in columns)
        and all(all(map(_on_cpu, c)) for c in columns)
        and set(map(_dtype, params)) | set(map(_dtype, grads)) <= _DTYPES.keys()
    ):
        return [True] * len(params)
    ok = [
        pd in _DTYPES and gd in _DTYPES and pc and gc and pcpu and gcpu
        for pd, gd, pc, gc, pcpu, gcpu in zip(
            map(_dtype, params), map(_dtype, grads), map(_contiguous, params),
            map(_contiguous, grads), map(_on_cpu, params), map(_on_cpu, grads), strict=True,
        )
    ]  # fmt: skip
    for column in states:
        ok = [
            o and c and cpu
            for o, c, cpu in zip(ok, map(_contiguous, column), map(_on_cpu, column), strict=True)
        ]
    return ok


# --------------------------------------------------------------------------------------------
# The steps
# --------------------------------------------------------------------------------------------


def _pointers(tensors: Sequence[Tensor]) -> array.array[int]:
    """The tensors' data pointers as a C array (pass its ``buffer_info()[0]``; keep it alive
    through the call). array.array fills from the map at C speed, unlike a ctypes array."""
    return array.array("q", map(Tensor.data_ptr, tensors))


def _maps_pointers(maps: PackedMaps) -> array.array[int]:
    return _pointers([maps.signed_values, maps.unsigned_values, maps.signed_lut, maps.unsigned_lut])


def _by_dtypes(
    params: Sequence[Tensor], grads: Sequence[Tensor]
) -> dict[tuple[int, int], list[int]]:
    pairs = list(zip(map(_dtype, params), map(_dtype, grads), strict=True))
    if len(set(pairs)) == 1:
        return {(_DTYPES[pairs[0][0]], _DTYPES[pairs[0][1]]): list(range(len(pairs)))}
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (p, g) in enumerate(pairs):
        groups.setdefault((_DTYPES[p], _DTYPES[g]), []).append(i)
    return groups


def _pick(tensors: Sequence[Tensor], index: list[int]) -> list[Tensor]:
    if len(index) == len(tensors):
        return list(tensors)
    return [tensors[i] for i in index]


def _run(
    kind: str,
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    states: Sequence[Sequence[Tensor]],
    *,
    block_size: int,
    hparams: Mapping[str, float],
    maximize: bool,
) -> None:
    if not params:
        return
    lib = load()
    names = ADAMW_HPARAMS if kind == "adamw" else LION_HPARAMS
    numbers = (ctypes.c_float * len(names))(*[float(hparams[n]) for n in names])
    maps = packed_maps(torch.device("cpu"))
    threads = torch.get_num_threads()
    entry = lib.optiwise_adamw_step if kind == "adamw" else lib.optiwise_lion_step
    maps_array = _maps_pointers(maps)
    for (p_dtype, g_dtype), index in _by_dtypes(params, grads).items():
        # a column passed twice (fp32 state: no absmax) is converted and recorded once
        distinct = {id(c): c for c in (params, grads, *states)}
        picked = {key: _pick(c, index) for key, c in distinct.items()}
        arrays = {key: _pointers(c) for key, c in picked.items()}
        numels = array.array("q", map(Tensor.numel, picked[id(params)]))
        status = entry(
            len(index), *[arrays[id(c)].buffer_info()[0] for c in (params, grads, *states)],
            numels.buffer_info()[0], block_size, p_dtype, g_dtype, int(maximize), numbers,
            maps_array.buffer_info()[0], threads,
        )  # fmt: skip
        if status != 0:
            raise RuntimeError(
                "the fused 8-bit step failed: "
                + ("out of memory" if status == 2 else f"unsupported dtypes (status {status})")
            )
        # writes through data pointers bypass autograd's in-place checks: record them
        written = [picked[key] for key in distinct if key != id(grads)]
        torch.autograd.graph.increment_version(list(itertools.chain.from_iterable(written)))


def adamw_step(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    *,
    hparams: Mapping[str, float],
    maximize: bool,
    block_size: int = 0,
    exp_avg_absmax: Sequence[Tensor] = (),
    exp_avg_sq_absmax: Sequence[Tensor] = (),
) -> None:
    """One AdamW step (the 8-bit AdamW update of ``_kernels``) on tensors the kernel serves
    (:func:`servable`), all with the same step count.

    ``block_size=0``: ``exp_avgs``/``exp_avg_sqs`` are fp32 moments; else int8/uint8 codes,
    with their fp32 absmax per block of ``block_size`` elements. ``hparams``: the numbers of
    :data:`ADAMW_HPARAMS` (``_kernels.adamw8bit_hparams``).
    """
    states: list[Sequence[Tensor]]
    if block_size:
        states = [exp_avgs, exp_avg_absmax, exp_avg_sqs, exp_avg_sq_absmax]
    else:
        states = [exp_avgs, exp_avgs, exp_avg_sqs, exp_avg_sqs]  # absmax pointers unused
    _check_layout(params, block_size, states)
    _run(
        "adamw", params, grads, states, block_size=block_size, hparams=hparams,
        maximize=maximize,
    )  # fmt: skip


def lion_step(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    *,
    hparams: Mapping[str, float],
    maximize: bool,
    block_size: int = 0,
    exp_avg_absmax: Sequence[Tensor] = (),
) -> None:
    """One Lion step (``lion_fused``'s math) on tensors the kernel serves (:func:`servable`);
    ``block_size`` and the states as for :func:`adamw_step`, ``hparams`` the numbers of
    :data:`LION_HPARAMS` (``_kernels.lion8bit_hparams``)."""
    states = [exp_avgs, exp_avg_absmax if block_size else exp_avgs]  # absmax unused if fp32
    _check_layout(params, block_size, states)
    _run(
        "lion", params, grads, states, block_size=block_size, hparams=hparams,
        maximize=maximize,
    )  # fmt: skip


def _check_layout(
    params: Sequence[Tensor], block_size: int, states: Sequence[Sequence[Tensor]]
) -> None:
    """Raise a ValueError unless each state fits its parameter: the kernel trusts the sizes.
    ``states``: (moment, its absmax) pairs, flat; with ``block_size`` 0 the moment twice."""
    numels = list(map(Tensor.numel, params))
    blocks = [-(-n // block_size) for n in numels] if block_size else numels
    want = {torch.int8, torch.uint8} if block_size else {torch.float32}
    per_block = f" and float32 absmax per block of {block_size}" if block_size else ""
    for moment, absmax in zip(states[::2], states[1::2], strict=True):
        if not len(params) == len(moment) == len(absmax):
            raise ValueError("one state tensor (and absmax) per parameter")
        if (
            list(map(Tensor.numel, moment)) != numels
            or not set(map(_dtype, moment)) <= want
            or (
                block_size
                and (
                    list(map(Tensor.numel, absmax)) != blocks
                    or not set(map(_dtype, absmax)) <= {torch.float32}
                )
            )
        ):
            raise ValueError(
                f"state does not fit its parameters: {len(params)} parameters with "
                f"{numels[:4]}... elements need {sorted(map(str, want))} states of as many "
                f"elements{per_block}"
            )
