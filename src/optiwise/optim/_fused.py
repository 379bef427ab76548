"""Fused optimizer steps: each update in one pass over memory, compiled with torch.compile.

An optimizer step is memory-bound: it reads and writes every parameter, gradient and state
element once, so its limit is bytes moved / memory bandwidth. The per-tensor and
``_foreach`` paths in :mod:`optiwise.optim._kernels` run one ATen kernel per elementwise op,
one pass over memory per op; a fused update makes one pass per tensor.

Why torch.compile
-----------------
An update is an ordinary Python function of torch ops over lists of tensors (``*_fused`` in
``_kernels.py``). Inductor turns it into one vectorized loop per tensor, C++/OpenMP on CPU
and Triton on CUDA, so:

- the same function runs on every device, and run eagerly it is its own fallback;
- the package stays pure Python: it installs with pip and no build step, no CUDA toolkit and
  no torch ABI to match; a C++ extension built by the package would need all three and a
  separate CUDA kernel. Inductor needs a C++ compiler only at run time on CPU; without one
  (or on devices Inductor does not serve) the step falls back, with one warning, to the
  uncompiled update, or to the optimizer's own path when ``foreach``/``fused`` were left to
  their defaults.

Measured on the 2-core AVX-512 machine this was built on (torch 2.13, one thread, see
``benchmarks/step_throughput.py``): the compiled Lion update of one 24 M-element fp32 tensor
moves its 20 bytes per parameter at 0.82-0.87x the bandwidth of torch's
``AdamW(fused=True)`` (28 bytes), where the per-tensor path reaches 0.25x; the compiled
AdamW update matches torch's fused AdamW (1.01x its time).

How
---
- Scheduled hyperparameters (LR, weight decay, bias corrections, ...) are passed as 0-dim
  CPU tensors (float32, float64 for float64 parameters: the dtype torch's own kernels turn
  a Python number into), never as Python floats: dynamo specializes a graph on a float's value
  (a recompile for every new LR) but guards only a tensor's dtype and shape. The host reads a
  CPU scalar when it launches the kernel: no device sync.
- Every tensor is passed as a flat 1-D view with a dynamic size, so one graph serves every
  shape. Duck sizing (dynamo assuming that inputs of equal size when traced stay equal) is
  switched off around the calls: otherwise each new pattern of equal sizes among the tensors
  of a chunk would compile a new graph.
- Tensors go to the compiled function in chunks of :data:`CHUNK`: a call costs tens of
  microseconds of guards and bookkeeping, comparable to updating a 100k-element tensor, so
  one call per tensor would cost 10-20% on a model of 96 tensors, and compile time grows
  with the chunk (about 10 s for 8 tensors on a loaded 2-core machine, 30 s for 32). The last
  chunk is padded with distinct 2-element zero tensors (sizes 0 and 1 are specialized by
  dynamo) so that one graph serves every model: one compile per (update, device, dtypes,
  flags). Every update must map all-zero inputs to zeros (all of optiwise's do).
- Tensors below :data:`FLAT_NUMEL` elements are updated as one: their state lives in one
  flat buffer per param group and dtype (the state tensors in ``optimizer.state`` are views
  into it, so ``state_dict`` looks exactly as on the other paths), their parameters and
  gradients are gathered with one ``cat`` and the parameters copied back with one
  ``_foreach_copy_``. A model with 1000 small tensors costs one call, not 1000.
- Updates that need a value per tensor between passes (LAMB's and LARS's trust ratios) run
  in :class:`FusedPasses`: every tensor as rows of at most 4096 elements (small tensors in
  one row buffer), sums per row out of one pass (squared norms, summed in vector registers
  and added per tensor in float64), per-tensor values (computed on the device: no sync)
  into the next. :func:`fused_map` updates large tensors one by one with per-tensor values
  (Lookahead's sync).
- Compiled graphs are kept in Inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``,
  ``/tmp/torchinductor_<user>`` by default), so the next process skips code generation and
  the C++ compiler; it still traces the update (a few seconds).
"""

from __future__ import annotations

import contextlib
import functools
import operator
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx.experimental._config as _fx_config
from torch import Tensor

from optiwise.optim import _dtensor

__all__ = [
    "AUTO_MIN_NUMEL",
    "CHUNK",
    "FLAT_NUMEL",
    "ROW",
    "FusedCache",
    "FusedPasses",
    "check_fused_args",
    "check_fused_params",
    "fused_map",
    "fused_step",
    "fused_supported",
    "use_fused",
]

#: Tensors per call of a compiled update (the last chunk is padded to this many).
CHUNK = 8
#: Tensors with fewer elements are gathered into one flat buffer per group and dtype.
FLAT_NUMEL = 1 << 15
#: ``fused=None`` compiles only for groups with at least this many elements: below it the
#: step is dominated by per-tensor overhead and the compile time would not pay back.
AUTO_MIN_NUMEL = 1 << 20
#: Flat buffers are padded to a multiple of this many elements (so never 0 or 1 long).
_FLAT_ALIGN = 64
#: Elements per row of the small tensors' buffers in multi-pass updates (:class:`FusedPasses`),
#: and the shortest row a large tensor is split into.
ROW = 256
#: The longest row: Inductor sums at most 4096 fp32 elements in vector registers (longer
#: sums take its slower cascade sum, and a graph is specialized on which of the two it is).
_MAX_ROW = 4096
#: Elements of the zero tensors a new graph is traced with (what Inductor sizes loops by).
_PROBE_NUMEL = 1 << 12
#: Rows of the zero buffers a new row graph is traced with.
_PROBE_ROWS = 64
#: Devices the fused path serves.
_DEVICES = ("cpu", "cuda")

Update = Callable[..., Any]

_dtype = operator.attrgetter("dtype")
_shape = operator.attrgetter("shape")
_device = operator.attrgetter("device")
_layout = operator.attrgetter("layout")
_contiguous = Tensor.is_contiguous

# One compiled wrapper per update function: every torch.compile call makes a new backend,
# whose graphs would not be shared and would count against dynamo's recompile limit.
_COMPILED: dict[Update, Update] = {}
# Signatures whose graph has been compiled on zero tensors: None if that worked, else why not.
_PROBED: dict[tuple[Any, ...], str | None] = {}
# Updates that failed to compile somewhere; ``fused=None`` stops choosing them.
_BROKEN: dict[Update, str] = {}
# Zero tensors that pad the last chunk, per signature and shape.
_PADDING: dict[tuple[Any, ...], list[list[Tensor]]] = {}


def _compiled(fn: Update) -> Update:
    compiled = _COMPILED.get(fn)
    if compiled is None:
        compiled = torch.compile(fn, dynamic=True, fullgraph=True)
        _COMPILED[fn] = compiled
    return compiled


# --------------------------------------------------------------------------------------------
# Which path
# --------------------------------------------------------------------------------------------


def check_fused_args(fused: bool | None, foreach: bool | None) -> None:
    """Raise a ValueError when both ``fused`` and ``foreach`` are True (as torch does)."""
    if fused and foreach:
        raise ValueError(
            "fused=True and foreach=True cannot be used together: pick one (fused makes one "
            "pass over memory per tensor, foreach one per elementwise op)"
        )


def fused_supported(params: Sequence[Tensor]) -> bool:
    """Whether the fused path can update ``params``: floating-point dense tensors on the CPU,
    or on CUDA with Triton available."""
    if not params:
        return False
    device_types = {d.type for d in map(_device, params)}
    if not device_types <= set(_DEVICES):
        return False
    if "cuda" in device_types and not _has_triton():
        return False
    # C-level passes: this runs at every step
    return all(map(Tensor.is_floating_point, params)) and set(map(_layout, params)) == {
        torch.strided
    }


def check_fused_params(params: Sequence[Tensor]) -> None:
    """Raise a ValueError naming what ``fused=True`` cannot handle in ``params``."""
    if fused_supported(params):
        return
    for i, p in enumerate(params):
        if p.device.type not in _DEVICES:
            raise ValueError(
                f"fused=True supports parameters on {list(_DEVICES)}; parameter #{i} is on "
                f"{p.device}: pass fused=False"
            )
        if p.is_complex():
            raise ValueError(
                f"fused=True needs real parameters; parameter #{i} is {p.dtype}: pass "
                "fused=False (the other paths update a complex parameter as its real view)"
            )
        if not p.is_floating_point() or p.layout != torch.strided:
            raise ValueError(
                f"fused=True needs dense floating-point parameters; parameter #{i} is "
                f"{p.dtype} ({p.layout})"
            )
    raise ValueError("fused=True on CUDA needs Triton (pip install triton): pass fused=False")


def use_fused(
    fused: bool | None, foreach: bool | None, params: Sequence[Tensor], *updates: Update
) -> bool:
    """The ``fused``/``foreach`` policy for one param group's step.

    ``fused=True``: always (after :func:`check_fused_params`); ``False``: never; ``None``:
    when ``foreach`` is None too, the parameters are supported, they hold at least
    :data:`AUTO_MIN_NUMEL` elements, each of ``updates`` (the passes of the step) has
    compiled where it was tried, and the step is not itself being compiled.
    """
    if not params or fused is False:
        return False
    if fused:
        check_fused_params(params)
        return True
    if foreach is not None or any(u in _BROKEN for u in updates) or torch.compiler.is_compiling():
        return False
    return fused_supported(params) and sum(map(Tensor.numel, params)) >= AUTO_MIN_NUMEL


def _has_triton() -> bool:
    try:
        from torch.utils._triton import has_triton
    except ImportError:  # pragma: no cover - torch without the helper
        return False
    return bool(has_triton())


# --------------------------------------------------------------------------------------------
# Flat state of small tensors, and the routing of a group's tensors
# --------------------------------------------------------------------------------------------


def _flat(like: list[Tensor], dtype: torch.dtype) -> tuple[Tensor, list[Tensor]]:
    """A zero buffer for the elements of ``like`` (padded to a multiple of _FLAT_ALIGN, by
    at least 2) and views of it shaped like each of ``like``."""
    numel = sum(t.numel() for t in like)
    padded = -(-(numel + 2) // _FLAT_ALIGN) * _FLAT_ALIGN
    buffer = torch.zeros(padded, dtype=dtype, device=like[0].device)
    return buffer, list(torch._utils._unflatten_dense_tensors(buffer, like))


def _row_counts(like: list[Tensor]) -> list[int]:
    """Rows of ROW elements each of ``like`` takes in a row buffer."""
    return [-(-t.numel() // ROW) for t in like]


def _rows(like: list[Tensor], dtype: torch.dtype) -> tuple[Tensor, list[Tensor]]:
    """A zero ``[rows, ROW]`` buffer in which each of ``like`` starts a row (its last row
    padded with zeros; at least 2 rows), and views of it shaped like each of ``like``."""
    counts = _row_counts(like)
    buffer = torch.zeros(max(2, sum(counts)), ROW, dtype=dtype, device=like[0].device)
    flat, views, start = buffer.view(-1), [], 0
    for t, count in zip(like, counts, strict=True):
        views.append(flat[start : start + t.numel()].view(t.shape))
        start += count * ROW
    return buffer, views


@dataclass
class _FlatSlot:
    """Small tensors of one group and signature: their state lives in flat buffers (the
    optimizer's state tensors are views of them), their parameters and gradients are
    copied into flat buffers for each step. The buffers are 1-D (:func:`_flat`), or
    ``[rows, ROW]`` with each tensor starting a row (:func:`_rows`, for multi-pass updates,
    which sum per row); ``owner`` then holds the index (in ``params``) of each row's tensor.
    """

    params: list[Tensor]
    state_views: list[list[Tensor]]  # per state key
    state_buffers: list[Tensor]  # per state key
    param_buffer: Tensor
    param_views: list[Tensor]
    grad_buffer: Tensor
    grad_views: list[Tensor]
    owner: Tensor | None = None
    # the owners as indices into the caller's list, for the last index list seen
    _global: tuple[tuple[int, ...], Tensor] | None = None

    @classmethod
    def build(
        cls,
        params: list[Tensor],
        grads: list[Tensor],
        states: list[list[Tensor]],
        keys: Sequence[str],
        optimizer_state: Mapping[Tensor, dict[str, Any]],
        rows: bool = False,
        originals: Sequence[Tensor] | None = None,
    ) -> _FlatSlot:
        """Copy the state of ``params`` into new flat buffers; point the optimizer at views.

        ``originals``: the parameters ``optimizer_state`` is keyed by, when ``params`` are
        their local tensors (DTensor parameters: the views go back as DTensors).
        """
        layout = _rows if rows else _flat
        owners = params if originals is None else originals
        state_views: list[list[Tensor]] = []
        state_buffers: list[Tensor] = []
        for key, state in zip(keys, states, strict=True):
            buffer, views = layout(state, state[0].dtype)
            torch._foreach_copy_(views, state)
            for p, view in zip(owners, views, strict=True):
                optimizer_state[p][key] = _dtensor.like(p, view)
            state_views.append(views)
            state_buffers.append(buffer)
        param_buffer, param_views = layout(params, params[0].dtype)
        grad_buffer, grad_views = layout(grads, grads[0].dtype)
        owner = None
        if rows:
            counts = _row_counts(params)
            index = [i for i, count in enumerate(counts) for _ in range(count)]
            # padding rows (a buffer has at least 2) belong to the first tensor: all zeros,
            # they add nothing to its sums
            index += [0] * (param_buffer.shape[0] - len(index))
            owner = torch.tensor(index, dtype=torch.long, device=params[0].device)
        return cls(
            list(params), state_views, state_buffers, param_buffer, param_views, grad_buffer,
            grad_views, owner,
        )  # fmt: skip

    def owners(self, index: Sequence[int]) -> Tensor:
        """Each row's tensor as an index into the list ``index`` maps this slot into."""
        assert self.owner is not None
        key = tuple(index)
        if self._global is None or self._global[0] != key:
            where = torch.tensor(key, dtype=torch.long, device=self.owner.device)
            self._global = (key, where[self.owner])
        return self._global[1]

    def matches(self, params: list[Tensor], states: list[list[Tensor]]) -> bool:
        """Same parameters, and every state tensor still the view made here (loading a
        state dict replaces them)."""
        return (
            len(params) == len(self.params)
            and all(map(operator.is_, params, self.params))
            and all(
                all(map(operator.is_, state, views))
                for state, views in zip(states, self.state_views, strict=True)
            )
        )


def _fingerprint(
    params: list[Tensor], grads: list[Tensor], states: list[list[Tensor]]
) -> tuple[Any, ...]:
    """Everything the routing depends on, gathered in C-level passes over the lists."""
    return (
        tuple(map(_shape, params)),
        tuple(map(_device, params)),
        tuple(map(_dtype, params)),
        tuple(map(_dtype, grads)),
        tuple(map(_contiguous, params)),
        tuple(map(_contiguous, grads)),
        *(tuple(map(_dtype, s)) for s in states),
        *(tuple(map(_contiguous, s)) for s in states),
    )


@dataclass
class _Plan:
    """Which route each tensor of a group takes, by index, with the signatures."""

    params: list[Tensor]
    fingerprint: tuple[Any, ...]
    small: dict[tuple[Any, ...], list[int]]  # into flat buckets
    large: dict[tuple[Any, ...], list[int]]  # one flat view each
    other: list[int]  # non-contiguous: the uncompiled update

    @classmethod
    def build(cls, params: list[Tensor], grads: list[Tensor], states: list[list[Tensor]]) -> _Plan:
        plan = cls(list(params), _fingerprint(params, grads, states), {}, {}, [])
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            own = [s[i] for s in states]
            if not (p.is_contiguous() and g.is_contiguous() and all(map(_contiguous, own))):
                plan.other.append(i)
                continue
            route = plan.small if p.numel() < FLAT_NUMEL else plan.large
            route.setdefault(_signature(p, g, own), []).append(i)
        return plan

    def fits(self, params: list[Tensor], grads: list[Tensor], states: list[list[Tensor]]) -> bool:
        return (
            len(params) == len(self.params)
            and all(map(operator.is_, params, self.params))
            and _fingerprint(params, grads, states) == self.fingerprint
        )


@dataclass
class _GroupCache:
    """What the fused path keeps per param group between steps."""

    plan: _Plan | None = None
    slots: dict[tuple[Any, ...], _FlatSlot] = field(default_factory=dict)
    # FusedPasses: the tensor index of each row of a large tensor, by (index, rows)
    owners: dict[tuple[int, int], Tensor] = field(default_factory=dict)


#: Per optimizer: the fused path's caches, by param group id (or a key of the caller's).
FusedCache = dict[Any, _GroupCache]


# --------------------------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------------------------


def _signature(p: Tensor, g: Tensor, states: Sequence[Tensor]) -> tuple[Any, ...]:
    return (p.device, p.dtype, g.dtype, *(s.dtype for s in states))


def _padding(signature: tuple[Any, ...], count: int, rows: bool = False) -> list[list[Tensor]]:
    """``count`` sets of distinct zero tensors ``[param, grad, *states]``: 2 elements, or
    ``[2, 2]`` rows."""
    pads = _PADDING.setdefault((signature, rows), [])
    device, dtypes = signature[0], signature[1:]
    shape = (2, 2) if rows else (2,)
    while len(pads) < count:
        pads.append([torch.zeros(shape, dtype=dtype, device=device) for dtype in dtypes])
    return pads[:count]


def _call_chunks(
    compiled: Update,
    signature: tuple[Any, ...],
    tensors: list[list[Tensor]],
    scalars: Mapping[str, Tensor],
    flags: Mapping[str, Any],
    per_tensor: Mapping[str, list[Tensor]] | None = None,
    rows: bool = False,
) -> list[Tensor]:
    """Call ``compiled`` on ``tensors`` (columns of flat tensors, or of ``[R, L]`` row
    tensors) in chunks of CHUNK, the last one padded, with ``per_tensor`` lists chunked
    alike (padded with zeros: 0-dim, or ``[2, 1]`` beside rows); the update's outputs for
    the real tensors, in order."""
    per_tensor = per_tensor or {}
    n = len(tensors[0])
    outputs: list[Tensor] = []
    value_shape = (2, 1) if rows else ()
    for start in range(0, n, CHUNK):
        part = [column[start : start + CHUNK] for column in tensors]
        lists = {name: values[start : start + CHUNK] for name, values in per_tensor.items()}
        real = len(part[0])
        if real < CHUNK:
            for pad in _padding(signature, CHUNK - real, rows):
                for column, t in zip(part, pad, strict=True):
                    column.append(t)
            for values in lists.values():
                values += [values[0].new_zeros(value_shape) for _ in range(CHUNK - real)]
        result = compiled(*part, **lists, **scalars, **flags)
        if result is not None:
            outputs.extend(list(result)[:real])
    return outputs


def _probe(
    update: Update,
    signature: tuple[Any, ...],
    scalars: Mapping[str, Tensor],
    flags: Mapping[str, Any],
    per_tensor: Mapping[str, list[Tensor]] | None = None,
    rows: bool = False,
) -> str | None:
    """Compile ``update`` for ``signature`` by running it on zeros (a chunk of 1-D tensors,
    or of ``[rows, ROW]`` row tensors); the error, if any."""
    lists = {k: v[0] for k, v in (per_tensor or {}).items()}
    key = (
        update,
        signature,
        rows,
        tuple(sorted(flags.items())),
        tuple(sorted((k, v.dtype, v.device) for k, v in lists.items())),
    )
    if key not in _PROBED:
        # Inductor decides from the sizes it traces with whether a loop runs on several
        # threads: trace with tensors large enough to get the parallel loops.
        device, dtypes = signature[0], signature[1:]
        shape = (_PROBE_ROWS, ROW) if rows else (_PROBE_NUMEL,)
        columns = [
            [torch.zeros(shape, dtype=dtype, device=device) for _ in range(CHUNK)]
            for dtype in dtypes
        ]
        value = (_PROBE_ROWS, 1) if rows else ()
        zeros = {k: [v.new_zeros(value) for _ in range(CHUNK)] for k, v in lists.items()}
        try:
            _call_chunks(_compiled(update), signature, columns, scalars, flags, zeros, rows)
        except Exception as err:  # any failure to compile means: do not use this path
            _PROBED[key] = f"{type(err).__name__}: {err}".splitlines()[0]
        else:
            _PROBED[key] = None
    return _PROBED[key]


def _as_scalar(value: Any, dtype: torch.dtype) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().to(dtype).reshape(())
    return torch.tensor(float(value), dtype=dtype)


def _opmath(dtype: torch.dtype) -> torch.dtype:
    """The dtype torch computes ``dtype`` tensors' elementwise ops in, and so the dtype its
    kernels convert a Python-number hyperparameter to (float32 in fp32 math is also faster
    than float64 scalars)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def fused_step(
    update: Update,
    params: list[Tensor],
    grads: list[Tensor],
    states: Sequence[list[Tensor]],
    keys: Sequence[str],
    *,
    optimizer_state: Mapping[Tensor, dict[str, Any]],
    cache: FusedCache,
    group_id: Any,
    strict: bool,
    hparams: Mapping[str, Any],
) -> None:
    """Apply ``update`` to ``params`` and their state, in place, through the compiled path.

    Parameters
    ----------
    update:
        ``update(params, grads, *states, **scalars, **flags)`` over lists of tensors, e.g.
        :func:`optiwise.optim._kernels.lion_fused`.
    params, grads, states:
        The tensors, ``states[k][i]`` being state ``keys[k]`` of ``params[i]``.
    keys:
        The state keys in ``optimizer_state``, to re-point small tensors' state at views of
        their flat buffer.
    optimizer_state, cache, group_id:
        ``optimizer.state``, the optimizer's fused-path cache and the key of the group's
        entry in it (the group's id, or a key per subset when a step splits a group).
    strict:
        Raise a RuntimeError when the update cannot be compiled (``fused=True``); otherwise
        warn once and run it uncompiled.
    hparams:
        Numbers (or 0-dim tensors) become 0-dim float32 tensors (float64 for float64
        parameters); booleans and strings stay as they are (the compiled graph is
        specialized on them).
    """
    if not params:
        return
    originals = None
    if _dtensor.any_dtensor(params):  # elementwise: the update runs on each rank's shards
        originals = list(params)
        params, grads = _dtensor.locals_(params), _dtensor.local_grads(params, grads)
        states = [_dtensor.locals_(s) for s in states]
    step = _Step(update, params, grads, [list(s) for s in states], hparams, originals)
    group = cache.setdefault(group_id, _GroupCache())
    if group.plan is None or not group.plan.fits(params, grads, step.states):
        group.plan = _Plan.build(params, grads, step.states)
    with _calling():
        error = step.probe(group.plan)
        if error is None:
            step.run(group, keys, optimizer_state)
            return
        _unavailable(update, error, strict)
        step.run_uncompiled(range(len(params)))


def _unavailable(update: Update, error: str, strict: bool) -> None:
    """Raise (``strict``) or warn once that ``update`` cannot be compiled, and stop
    ``fused=None`` from choosing it."""
    if strict:
        raise RuntimeError(
            f"fused=True, but the update could not be compiled ({error}); pass fused=False"
        )
    if update not in _BROKEN:
        warnings.warn(
            f"optiwise: the fused optimizer step could not be compiled ({error}); running "
            "the update uncompiled",
            RuntimeWarning,
            stacklevel=4,
        )
    _BROKEN[update] = error


class _Args:
    """An update's keyword arguments: numbers (as 0-dim tensors per op dtype) and flags."""

    def __init__(self, hparams: Mapping[str, Any]) -> None:
        self.numbers: dict[str, Any] = {}
        self.flags: dict[str, Any] = {}
        for name, value in hparams.items():
            if isinstance(value, (bool, str)) or value is None:
                self.flags[name] = value
            else:
                self.numbers[name] = value
        self._scalars: dict[torch.dtype, dict[str, Tensor]] = {}

    def scalars(self, dtype: torch.dtype) -> dict[str, Tensor]:
        """The numbers as 0-dim tensors for parameters of ``dtype``."""
        opmath = _opmath(dtype)
        if opmath not in self._scalars:
            self._scalars[opmath] = {k: _as_scalar(v, opmath) for k, v in self.numbers.items()}
        return self._scalars[opmath]


def fused_map(
    update: Update,
    tensors: Sequence[list[Tensor]],
    *,
    strict: bool,
    hparams: Mapping[str, Any],
    per_tensor: Mapping[str, list[Tensor]] | None = None,
) -> list[Tensor] | None:
    """Apply ``update`` through the compiled path tensor by tensor, without flat buffers:
    for updates that take or give a value per tensor, on tensors large enough that one call
    per :data:`CHUNK` of them costs little (Lookahead's sync).

    Parameters
    ----------
    update:
        ``update(*columns, **per_tensor_lists, **scalars, **flags)``, returning None or a
        list with one tensor (e.g. a 0-dim sum) per tensor of the columns. Compiled tensors
        arrive as flat 1-D views; the rest (non-contiguous, or fewer than 2 elements) run
        uncompiled as they are. An fp32 sum compiles to Inductor's cascade sum, guarded on
        the tensor having more than 4096 elements: a tensor at or below 4096 elements would
        compile a graph of its own (sum per row of at most 4096 elements instead, as
        :class:`FusedPasses` does).
    tensors:
        Columns of tensors, each aligned with the first (the parameters); updated in place.
    strict, hparams:
        As for :func:`fused_step`.
    per_tensor:
        Lists of 0-dim tensors aligned with the columns (e.g. a trust ratio per tensor,
        computed on the device: no sync), passed to ``update`` chunk by chunk.

    Returns
    -------
    The update's per-tensor outputs in order, or None when it returns nothing.
    """
    columns = [_dtensor.locals_(c) for c in tensors]
    lists = {k: list(v) for k, v in (per_tensor or {}).items()}
    if not columns[0]:
        return None
    args = _Args(hparams)
    routes: dict[tuple[Any, ...], list[int]] = {}
    other: list[int] = []
    for i in range(len(columns[0])):
        own = [c[i] for c in columns]
        # sizes 0 and 1 would be specialized by dynamo (a graph each): run those uncompiled
        if own[0].numel() > 1 and all(map(_contiguous, own)):
            routes.setdefault((own[0].device, *map(_dtype, own)), []).append(i)
        else:
            other.append(i)
    outputs: dict[int, Tensor] = {}

    def uncompiled(index: Sequence[int]) -> None:
        if index:
            picked = {k: [v[i] for i in index] for k, v in lists.items()}
            result = update(
                *[[c[i] for i in index] for c in columns],
                **picked,
                **args.scalars(columns[0][index[0]].dtype),
                **args.flags,
            )
            if result is not None:
                outputs.update(zip(index, result, strict=True))

    with _calling():
        for signature in routes:
            error = _probe(update, signature, args.scalars(signature[1]), args.flags, lists)
            if error is not None:
                _unavailable(update, error, strict)
                uncompiled(range(len(columns[0])))
                break
        else:
            compiled = _compiled(update)
            for signature, index in routes.items():
                # detached, so that every input has requires_grad=False (dynamo guards it)
                flat = [[c[i].detach().view(-1) for i in index] for c in columns]
                picked = {k: [v[i] for i in index] for k, v in lists.items()}
                scalars = args.scalars(signature[1])
                result = _call_chunks(compiled, signature, flat, scalars, args.flags, picked)
                outputs.update(zip(index, result, strict=False))
            uncompiled(other)
    if not outputs:
        return None
    return [outputs[i] for i in range(len(columns[0]))]


@functools.lru_cache(maxsize=4096)
def _row_length(numel: int) -> int | None:
    """A row length ``L`` for viewing ``numel`` elements as ``[numel // L, L]``: a divisor in
    ``[ROW, _MAX_ROW]``, a multiple of 16 (whole vectors) if there is one; None if none."""
    for step in (16, 1):
        for length in range(_MAX_ROW, ROW - 1, -1):
            if length % step == 0 and numel % length == 0:
                return length
    return None


@dataclass
class _Rows:
    """One entry of a multi-pass call: a tensor's ``[R, L]`` row views (one per column) and
    the index of each row's tensor."""

    columns: list[Tensor]
    owners: Tensor


class FusedPasses:
    """The compiled passes of a multi-pass update (LAMB, LARS) over one param group.

    An update whose passes need a value per tensor from the one before (a trust ratio from
    norms) runs as ``passes.run(update, per_tensor=..., **hparams)`` calls between which the
    caller computes those values on the device. Every tensor reaches the update as rows:

    - a tensor of at least :data:`FLAT_NUMEL` elements as an ``[n / L, L]`` view, ``L`` a
      divisor of ``n`` between :data:`ROW` and 4096 (without one, as rows of 2048 and a
      tail that runs uncompiled);
    - smaller tensors together, in ``[R, ROW]`` buffers in which each starts a row, their
      state as views (so ``state_dict`` is unchanged), their parameters and gradients copied
      in when the passes start and the parameters copied back when they finish (leaving the
      ``with`` block).

    The row views go to one compiled graph, :data:`CHUNK` at a time, so that one graph
    serves every model. Non-contiguous tensors run uncompiled, on contiguous copies.

    The update is ``update(params, grads, *states, **per_tensor, **scalars, **flags)`` over
    lists of such row tensors (1-D for the uncompiled pieces); a per-tensor value arrives as
    an ``[R, 1]`` column (0-dim for a 1-D piece), so ``value * tensor`` broadcasts. An update
    may return, per tensor, sums over the last dimension (``.sum(-1)``, stacked on a new last
    dimension for several), which :meth:`run` adds up per tensor: rows of at most 4096
    elements make Inductor sum in vector registers, in fp32 (cast half-precision values to
    fp32 before summing). All-zero inputs must give zero outputs (padding).

    Parameters
    ----------
    params, grads, states, keys, optimizer_state, strict:
        As for :func:`fused_step`.
    cache, cache_key:
        The optimizer's fused-path cache and the key of this group's entry.
    """

    def __init__(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        states: Sequence[list[Tensor]],
        keys: Sequence[str],
        *,
        optimizer_state: Mapping[Tensor, dict[str, Any]],
        cache: FusedCache,
        cache_key: Any,
        strict: bool,
    ) -> None:
        # DTensor parameters: the passes run on each rank's shards, their sums are
        # all-reduced (run)
        self.originals = list(params)
        self.params, self.grads = _dtensor.locals_(params), _dtensor.local_grads(params, grads)
        self.states = [_dtensor.locals_(s) for s in states]
        self.strict = strict
        self.device = self.params[0].device if self.params else None
        self.slots: list[tuple[list[int], _FlatSlot]] = []
        self.rows: dict[tuple[Any, ...], list[_Rows]] = {}
        # tails and non-contiguous tensors, uncompiled: (tensor index, 1-D pieces, copied)
        self.pieces: list[tuple[int, list[Tensor], bool]] = []
        if not self.params:
            return
        group = cache.setdefault(cache_key, _GroupCache())
        if group.plan is None or not group.plan.fits(self.params, self.grads, self.states):
            group.plan = _Plan.build(self.params, self.grads, self.states)
        plan = group.plan
        columns = [self.params, self.grads, *self.states]
        for signature, index in plan.small.items():
            ps, gs = [self.params[i] for i in index], [self.grads[i] for i in index]
            sts = [[s[i] for i in index] for s in self.states]
            slot = group.slots.get(signature)
            if slot is None or slot.owner is None or not slot.matches(ps, sts):
                slot = _FlatSlot.build(
                    ps, gs, sts, keys, optimizer_state, rows=True,
                    originals=[self.originals[i] for i in index],
                )  # fmt: skip
                group.slots[signature] = slot
            torch._foreach_copy_(slot.param_views, ps)
            torch._foreach_copy_(slot.grad_views, gs)
            self.slots.append((index, slot))
            buffers = [slot.param_buffer, slot.grad_buffer, *slot.state_buffers]
            self.rows.setdefault(signature, []).append(_Rows(buffers, slot.owners(index)))
        for signature, index in plan.large.items():
            for i in index:
                n = self.params[i].numel()
                length = _row_length(n) or _MAX_ROW // 2
                count = n // length
                owners = group.owners.get((i, count))
                if owners is None:
                    owners = torch.full((count,), i, dtype=torch.long, device=self.device)
                    group.owners[i, count] = owners
                # detached, so that every input has requires_grad=False (dynamo guards it)
                if count * length == n:
                    views = [c[i].detach().view(count, length) for c in columns]
                else:
                    flat = [c[i].detach().view(-1) for c in columns]
                    views = [t[: count * length].view(count, length) for t in flat]
                    self.pieces.append((i, [t[count * length :] for t in flat], False))
                self.rows.setdefault(signature, []).append(_Rows(views, owners))
        for i in plan.other:
            self.pieces.append((i, [c[i].detach().contiguous().view(-1) for c in columns], True))

    def __enter__(self) -> FusedPasses:
        return self

    def __exit__(self, kind: object, error: object, trace: object) -> None:
        if error is None:
            self.finish()

    def run(
        self,
        update: Update,
        *,
        per_tensor: Mapping[str, Tensor] | None = None,
        **hparams: Any,
    ) -> Tensor | None:
        """One pass of ``update`` over every tensor.

        Parameters
        ----------
        update:
            See the class docstring.
        per_tensor:
            Tensors of shape ``[len(params)]`` on the parameters' device (e.g. trust ratios),
            handed to ``update`` one value per tensor.
        **hparams:
            As for :func:`fused_step`: numbers become 0-dim tensors, flags stay.

        Returns
        -------
        Tensor or None
            ``[len(params), ...]``: the update's sums per tensor, in order.
        """
        if not self.params:
            return None
        args = _Args(hparams)
        values = dict(per_tensor or {})
        sums: list[tuple[Tensor, Tensor]] = []  # (tensor index per row, sums per row)
        with _calling():
            error = None
            for signature in self.rows:
                scalars = args.scalars(signature[1])
                probe = {k: [v] for k, v in values.items()}
                error = error or _probe(update, signature, scalars, args.flags, probe, True)
            if error is not None:
                _unavailable(update, error, self.strict)
            call = update if error is not None else _compiled(update)
            for signature, entries in self.rows.items():
                width = len(entries[0].columns)
                columns = [[e.columns[k] for e in entries] for k in range(width)]
                # index_select of a [T, 1] view: new [R, 1] tensors, not views of one
                picked = {
                    k: [v.view(-1, 1).index_select(0, e.owners) for e in entries]
                    for k, v in values.items()
                }
                result = _call_chunks(
                    call, signature, columns, args.scalars(signature[1]), args.flags, picked,
                    rows=True,
                )  # fmt: skip
                sums += zip((e.owners for e in entries), result, strict=False)
            for i, pieces, _ in self.pieces:
                result = update(
                    *[[t] for t in pieces],
                    **{k: [v[i]] for k, v in values.items()},
                    **args.scalars(pieces[0].dtype),
                    **args.flags,
                )
                if result is not None:
                    sums.append((self._index(i), result[0].unsqueeze(0)))
        if not sums:
            return None
        # rows are summed in fp32 (in vector registers); their sums are added in fp64
        owners, rows = torch.cat([o for o, _ in sums]), torch.cat([r for _, r in sums]).double()
        out = rows.new_zeros((len(self.params), *rows.shape[1:]))
        out.index_add_(0, owners, rows)
        # sums over DTensors' shards: added up over the ranks holding the other shards
        return _dtensor.all_reduce_sums(self.originals, out)

    def _index(self, i: int) -> Tensor:
        return torch.tensor([i], dtype=torch.long, device=self.device)

    def finish(self) -> None:
        """Copy the updated parameters (and non-contiguous tensors' state) back."""
        for index, slot in self.slots:
            torch._foreach_copy_([self.params[i] for i in index], slot.param_views)
        for i, pieces, copied in self.pieces:
            if copied:
                for column, value in zip(
                    [self.params, self.grads, *self.states], pieces, strict=True
                ):
                    if column is not self.grads:
                        column[i].copy_(value.view(column[i].shape))
        self.slots, self.pieces = [], []


@contextlib.contextmanager
def _calling() -> Iterator[None]:
    """Around the calls of compiled updates: no autograd (one graph whether or not the
    caller runs under ``no_grad``) and no duck sizing (see the module docstring)."""
    with torch.no_grad(), _fx_config.patch(use_duck_shape=False):  # type: ignore[attr-defined]
        yield


class _Step:
    """One call of :func:`fused_step`: the tensors and the update's arguments."""

    def __init__(
        self,
        update: Update,
        params: list[Tensor],
        grads: list[Tensor],
        states: list[list[Tensor]],
        hparams: Mapping[str, Any],
        originals: list[Tensor] | None = None,
    ) -> None:
        self.update, self.params, self.grads, self.states = update, params, grads, states
        self.originals = originals  # the DTensor parameters whose local tensors are params
        self.args = _Args(hparams)
        self.flags = self.args.flags
        self.scalars = self.args.scalars

    def probe(self, plan: _Plan) -> str | None:
        """Compile for every signature of ``plan``; the first error, if any."""
        for signature in {*plan.small, *plan.large}:
            error = _probe(self.update, signature, self.scalars(signature[1]), self.flags)
            if error is not None:
                return error
        return None

    def run(
        self, group: _GroupCache, keys: Sequence[str], optimizer_state: Mapping[Tensor, Any]
    ) -> None:
        """Gather the small tensors, call the compiled update, copy the parameters back."""
        assert group.plan is not None
        plan, width = group.plan, 2 + len(self.states)
        columns: dict[tuple[Any, ...], list[list[Tensor]]] = {}
        gathered: list[tuple[list[Tensor], _FlatSlot]] = []
        for signature, index in plan.small.items():
            every = len(index) == len(self.params)
            ps = self.params if every else [self.params[i] for i in index]
            gs = self.grads if every else [self.grads[i] for i in index]
            sts = self.states if every else [[s[i] for i in index] for s in self.states]
            slot = group.slots.get(signature)
            if slot is None or not slot.matches(ps, sts):
                owners = self.originals
                if owners is not None and not every:
                    owners = [owners[i] for i in index]
                slot = _FlatSlot.build(ps, gs, sts, keys, optimizer_state, originals=owners)
                group.slots[signature] = slot
            torch._foreach_copy_(slot.param_views, ps)
            torch._foreach_copy_(slot.grad_views, gs)
            gathered.append((ps, slot))
            column = columns.setdefault(signature, [[] for _ in range(width)])
            flat = [slot.param_buffer, slot.grad_buffer, *slot.state_buffers]
            for c, t in zip(column, flat, strict=True):
                c.append(t)
        for signature, index in plan.large.items():
            column = columns.setdefault(signature, [[] for _ in range(width)])
            # detached, so that every input has requires_grad=False (a guard dynamo checks)
            for c, tensors in zip(column, [self.params, self.grads, *self.states], strict=True):
                c.extend(tensors[i].detach().view(-1) for i in index)
        compiled = _compiled(self.update)
        for signature, column in columns.items():
            _call_chunks(compiled, signature, column, self.scalars(signature[1]), self.flags)
        for ps, slot in gathered:
            torch._foreach_copy_(ps, slot.param_views)
        self.run_uncompiled(plan.other)

    def run_uncompiled(self, index: Sequence[int]) -> None:
        """The update, uncompiled, on the tensors at ``index`` as they are."""
        if index:
            self.update(
                [self.params[i] for i in index],
                [self.grads[i] for i in index],
                *[[s[i] for i in index] for s in self.states],
                **self.scalars(self.params[index[0]].dtype),
                **self.flags,
            )
