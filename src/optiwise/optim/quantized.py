"""AdamW and Lion with block-wise 8-bit optimizer state (Dettmers et al. 2022).

Tensors of at least ``min_8bit_numel`` elements (4096 by default, from
:mod:`optiwise.knowledge`) store each moment as 8-bit codes plus one fp32 absmax per block
of ``block_size`` elements; every step dequantizes them to fp32, applies the exact update of
the 32-bit optimizer (the shared kernels in ``_kernels.py``) and requantizes. Smaller tensors
keep fp32 state: for them the absmax overhead and the quantization error buy nearly nothing.

The quantization math lives in the 8-bit section of ``_kernels.py`` (the per-tensor path);
the fused path (``fused``) is a C++ kernel that does the same per block in one pass over
memory, bit for bit (``_native.py``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from optiwise import knowledge
from optiwise.optim import _dtensor, _native
from optiwise.optim._base import OptiwiseOptimizer, StateKind
from optiwise.optim._fused import check_fused_args
from optiwise.optim._kernels import (
    adamw8bit_hparams,
    adamw8bit_single_tensor,
    adamw_multi_tensor,
    adamw_single_tensor,
    lion8bit_hparams,
    lion8bit_single_tensor,
    lion_multi_tensor,
    lion_single_tensor,
)
from optiwise.optim._validation import check_power_of_two, validate_hparams

__all__ = ["AdamW8bit", "Lion8bit"]

_ADAMW = knowledge.defaults("adamw8bit").hparams
_LION = knowledge.defaults("lion8bit").hparams
_ADAMW_EXTRA = knowledge.get_info("adamw8bit").extra
_LION_EXTRA = knowledge.get_info("lion8bit").extra
_dtype = operator.attrgetter("dtype")


def _check_min_numel(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"Invalid min_8bit_numel: {value!r} (must be an integer >= 0; 0 quantizes every tensor)"
        )


def _num_blocks(numel: int, block_size: int) -> int:
    return -(-numel // block_size)


def _pick(lists: dict[str, list[Any]], index: list[int]) -> dict[str, list[Any]]:
    """The entries at ``index`` of each list (keys of the other state layout stay empty)."""
    return {k: [v[i] for i in index] if v else [] for k, v in lists.items()}


def _like(grads: list[Tensor], states: list[Tensor]) -> list[Tensor]:
    """The gradients in their state's dtype (the per-tensor kernels need equal dtypes)."""
    return [g.to(s.dtype) for g, s in zip(grads, states, strict=True)]


class _Blockwise8bit(OptiwiseOptimizer):
    """Shared state handling of the 8-bit optimizers (not public)."""

    #: ``(state key, signed)`` of each moment, e.g. ``("exp_avg", True)``.
    moments: ClassVar[tuple[tuple[str, bool], ...]] = ()
    #: Scalar state keys (e.g. ``step``), initialised to 0.
    counters: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        params: Any,
        hparams: dict[str, Any],
        *,
        block_size: Any,
        min_8bit_numel: Any,
        maximize: bool,
        foreach: bool | None,
        fused: bool | None,
    ) -> None:
        validate_hparams(hparams)
        check_power_of_two("block_size", block_size)
        _check_min_numel(min_8bit_numel)
        check_fused_args(fused, foreach)
        defaults = {
            **hparams,
            "betas": tuple(hparams["betas"]),
            "block_size": block_size,
            "min_8bit_numel": min_8bit_numel,
            "maximize": maximize,
            "foreach": foreach,
            "fused": fused,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One optimization step; ``closure`` re-evaluates the loss (optional)."""
        loss = self._run_closure(closure)
        # every group's path first: fused=True raises before any state or parameter changes
        tensors = [self._params_with_grads(group) for group in self.param_groups]
        native = [
            _native.use_native(group.get("fused"), group["foreach"], params)
            for group, (params, _) in zip(self.param_groups, tensors, strict=True)
        ]
        for group, (params, grads), fused in zip(self.param_groups, tensors, native, strict=True):
            fp, q = self._gather(group, params, grads)
            if _dtensor.any_dtensor(params):  # each rank steps its shards
                fp, q = self._local_lists(fp, group), self._local_lists(q, group)
            beta1, beta2 = group["betas"]
            hp: dict[str, Any] = dict(
                lr=float(group["lr"]),
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                maximize=group["maximize"],
            )
            if "eps" in group:
                hp["eps"] = group["eps"]
            block_size = group["block_size"]
            if fused:
                fp = self._native(fp, hp, block_size=0)
                q = self._native(q, hp, block_size=block_size)
            foreach = self._use_foreach(group["foreach"], fp["params"])
            self._update(fp, q, hp, foreach=foreach, block_size=block_size)
        return loss

    def _native(
        self, lists: dict[str, list[Any]], hp: dict[str, Any], *, block_size: int
    ) -> dict[str, list[Any]]:
        """Step the tensors of ``lists`` the fused kernel serves (``block_size`` 0: fp32
        state); return the lists of the others, for the per-tensor path."""
        if not lists["params"]:
            return lists
        names = [m for m, _ in self.moments]
        states = [lists[f"{m}_codes"] for m in names] if block_size else [lists[m] for m in names]
        absmax = [lists[f"{m}_absmax"] for m in names] if block_size else []
        ok = _native.servable(lists["params"], lists["grads"], [*states, *absmax])
        # whole-list comparisons first: the per-element ones only when something differs
        if block_size:  # a changed block size is the per-tensor path's error to report
            blocks = [-(-n // block_size) for n in map(Tensor.numel, lists["params"])]
            for column in absmax:
                sizes = list(map(Tensor.numel, column))
                if sizes != blocks:
                    ok = [o and n == b for o, n, b in zip(ok, sizes, blocks, strict=True)]
        else:  # float64 parameters have float64 state
            for column in states:
                if set(map(_dtype, column)) != {torch.float32}:
                    dtypes = map(_dtype, column)
                    ok = [o and d == torch.float32 for o, d in zip(ok, dtypes, strict=True)]
        if all(ok):
            self._native_kernel(lists, hp, block_size=block_size)
            return {k: [] for k in lists}
        served = [i for i, o in enumerate(ok) if o]
        if served:
            self._native_kernel(_pick(lists, served), hp, block_size=block_size)
        return _pick(lists, [i for i, o in enumerate(ok) if not o])

    def _native_kernel(
        self, lists: dict[str, list[Any]], hp: dict[str, Any], *, block_size: int
    ) -> None:
        """Run the fused kernel on ``lists`` (tensors it serves)."""
        raise NotImplementedError

    def _update(
        self,
        fp: dict[str, list[Any]],
        q: dict[str, list[Any]],
        hp: dict[str, Any],
        *,
        foreach: bool,
        block_size: int,
    ) -> None:
        """Apply the update kernels to the fp32-state and the 8-bit-state lists."""
        raise NotImplementedError

    @classmethod
    def _make_state_keys(
        cls, moments: tuple[tuple[str, bool], ...], counters: tuple[str, ...]
    ) -> dict[str, StateKind]:
        keys: dict[str, StateKind] = dict.fromkeys(counters, "scalar")
        for name, _ in moments:
            keys[name] = "param"
            keys[f"{name}_codes"] = "param"
            keys[f"{name}_absmax"] = "any"
        return keys

    def _state(self, param: Tensor, group: Mapping[str, Any]) -> dict[str, Any]:
        """The state of ``param``, created on first use: 8-bit codes and absmax when the
        tensor has at least ``min_8bit_numel`` elements, fp32 moments otherwise (float64 for
        float64 parameters)."""
        state = self.state.get(param)
        if state:
            return state
        self._refuse_complex([param], "its 8-bit quantization maps are real")
        if not param.is_floating_point():
            raise ValueError(
                f"{type(self).__name__} needs floating-point parameters, got {param.dtype}"
            )
        state = self.state[param]
        for key in self.counters:
            state[key] = 0
        # the whole tensor's size decides, so that every rank of a DTensor has one layout
        if param.numel() >= group["min_8bit_numel"]:
            for name, signed in self.moments:
                dtype = torch.int8 if signed else torch.uint8
                state[f"{name}_codes"] = torch.zeros_like(
                    param, dtype=dtype, memory_format=torch.contiguous_format
                )
                state[f"{name}_absmax"] = _absmax_zeros(param, group["block_size"])
        else:  # fp32, or the parameter's dtype when it is wider (float64)
            dtype = torch.promote_types(param.dtype, torch.float32)
            for name, _ in self.moments:
                state[name] = torch.zeros_like(
                    param, dtype=dtype, memory_format=torch.contiguous_format
                )
        return state

    def _local_lists(
        self, lists: dict[str, list[Any]], group: Mapping[str, Any]
    ) -> dict[str, list[Any]]:
        """``lists`` of DTensors as each rank's local tensors: the blocks of a shard are
        the first ``ceil(shard numel / block_size)`` entries of its absmax."""
        out = {k: _dtensor.locals_(v) if v and isinstance(v[0], Tensor) else v
               for k, v in lists.items()}  # fmt: skip
        out["grads"] = _dtensor.local_grads(lists["params"], lists["grads"])
        block_size = group["block_size"]
        for name, _ in self.moments:
            key = f"{name}_absmax"
            if not out[key]:  # the fp32-state lists
                continue
            out[key] = [
                a[: _num_blocks(p.numel(), block_size)]
                for a, p in zip(out[key], out["params"], strict=True)
            ]
        return out

    def _gather(
        self, group: Mapping[str, Any], params: list[Tensor], grads: list[Tensor]
    ) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        """The group's parameters with gradients (``params``, ``grads``), split into
        fp32-state and 8-bit-state lists keyed ``params``, ``grads``, each state key and each
        counter (already incremented for this step)."""
        known = self.state.get
        states = [known(p) or self._state(p, group) for p in params]
        for key in self.counters:
            for state in states:
                state[key] = int(state[key]) + 1
        codes = f"{self.moments[0][0]}_codes"
        quantized = [codes in state for state in states]
        out = []
        for want in (False, True):  # fp32 state, then 8-bit state
            if all(q is want for q in quantized):
                index = None
            else:
                index = [i for i, q in enumerate(quantized) if q is want]
            lists: dict[str, list[Any]] = {"params": params, "grads": grads}
            if index is not None:
                lists = {"params": [params[i] for i in index], "grads": [grads[i] for i in index]}
            mine = states if index is None else [states[i] for i in index]
            for key in self.state_keys:  # a state has the keys of its layout (checked on load)
                lists[key] = [state[key] for state in mine] if mine and key in mine[0] else []
            out.append(lists)
        return out[0], out[1]

    # ----------------------------------------------------------------------------------------
    # Loading
    # ----------------------------------------------------------------------------------------

    def validate_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Also check each parameter's state layout: all fp32 moments or all 8-bit ones, code
        dtypes, and one absmax per block of the saved group's ``block_size``."""
        super().validate_state_dict(state_dict)
        name = type(self).__name__
        for saved, current in zip(state_dict["param_groups"], self.param_groups, strict=True):
            block_size = saved["block_size"]
            try:
                check_power_of_two("block_size", block_size)
            except ValueError as err:
                raise ValueError(f"cannot load state dict into {name}: {err}") from None
            for index, param in zip(saved["params"], current["params"], strict=True):
                state = state_dict["state"].get(index)
                if state:
                    self._check_layout(index, param, state, block_size)

    def _check_layout(
        self, index: int, param: Tensor, state: Mapping[str, Any], block_size: int
    ) -> None:
        name = type(self).__name__
        prefix = f"cannot load state dict into {name}: parameter #{index}"
        fp32 = {m for m, _ in self.moments}
        quantized = {f"{m}_{part}" for m, _ in self.moments for part in ("codes", "absmax")}
        keys = set(state) - set(self.counters)
        missing_counters = sorted(set(self.counters) - set(state))
        if keys not in (fp32, quantized) or missing_counters:
            raise ValueError(
                f"{prefix} has state keys {sorted(state)}; expected "
                f"{sorted(fp32 | set(self.counters))} (fp32 state) or "
                f"{sorted(quantized | set(self.counters))} (8-bit state)"
            )
        if keys == fp32:
            return
        blocks = _absmax_numel(param, block_size)
        for moment, signed in self.moments:
            codes, absmax = state[f"{moment}_codes"], state[f"{moment}_absmax"]
            dtype = torch.int8 if signed else torch.uint8
            if codes.dtype != dtype:
                raise ValueError(f"{prefix}: {moment}_codes must be {dtype}, got {codes.dtype}")
            if (
                not isinstance(absmax, Tensor)
                or absmax.dtype != torch.float32
                or absmax.shape != (blocks,)
            ):
                got = (absmax.dtype, tuple(absmax.shape)) if isinstance(absmax, Tensor) else absmax
                raise ValueError(
                    f"{prefix}: {moment}_absmax must be float32 of shape ({blocks},) "
                    f"({param.numel()} elements in blocks of {block_size}), got {got}"
                )


def _absmax_numel(param: Tensor, block_size: int) -> int:
    """Length of ``param``'s absmax: one per block; for a DTensor sharded over ``k``
    ranks, ``k`` times the blocks of its largest shard (each rank's blocks start its
    shard, the smaller shards' last entries stay unused)."""
    if not _dtensor.is_dtensor(param):
        return _num_blocks(param.numel(), block_size)
    shards, largest = _dtensor.largest_shard(param)
    return shards * _num_blocks(largest, block_size)


def _absmax_zeros(param: Tensor, block_size: int) -> Tensor:
    """A zero fp32 absmax for ``param`` (see :func:`_absmax_numel`): for a DTensor, one
    sharded like it over the same ranks, each rank's local part its largest shard's blocks."""
    if not _dtensor.is_dtensor(param):
        blocks = _num_blocks(param.numel(), block_size)
        return torch.zeros(blocks, dtype=torch.float32, device=param.device)
    return _dtensor.blocks_like(param, _absmax_numel(param, block_size))


class AdamW8bit(_Blockwise8bit):
    """AdamW with block-wise 8-bit moments (Dettmers et al. 2022, '8-bit Optimizers via
    Block-wise Quantization').

    Update (as :class:`torch.optim.AdamW`, on the dequantized moments):
    ``w <- w (1 - lr wd)``; ``m <- b1 m + (1 - b1) g``; ``v <- b2 v + (1 - b2) g^2``;
    ``w <- w - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``; then ``m`` and ``v``
    are requantized. Tensors with fewer than ``min_8bit_numel`` elements keep fp32 moments
    and follow torch's AdamW bit for bit.

    Quantization map: dynamic tree (Dettmers et al.), signed for ``m``, unsigned for ``v``.
    Chosen over a linear map for accuracy: ``v`` spans many orders of magnitude inside a
    block (it is a squared gradient), and a linear map rounds everything below
    ``absmax / 510`` to 0 and keeps only a few levels for the next decades, while the dynamic
    map keeps seven decades, with the finest steps near the absmax where most of the update
    comes from. The second moment never rounds from non-zero to zero (it goes to the
    smallest non-zero code instead): a zero ``v`` under a non-zero ``m`` would make the step
    ``m / eps``. bitsandbytes lets ``v`` round to zero; it also uses a slightly different
    dynamic map, so the two agree closely but not bit for bit.

    State per parameter: ``step`` (int) and either ``exp_avg``, ``exp_avg_sq`` (fp32) or
    ``exp_avg_codes`` (int8, the parameter's shape), ``exp_avg_absmax`` (fp32, one per block),
    ``exp_avg_sq_codes`` (uint8), ``exp_avg_sq_absmax``. About 2.03 bytes per element at
    ``block_size=256`` (AdamW: 8).

    Parameters
    ----------
    params:
        Parameters or param-group dicts.
    lr, betas, eps, weight_decay:
        As :class:`torch.optim.AdamW` (defaults from :mod:`optiwise.knowledge`).
    block_size:
        Elements per quantization block, a power of two (256 by default; the paper uses
        2048: larger blocks save absmax memory but share one scale among more values).
    min_8bit_numel:
        Tensors with fewer elements keep fp32 state (4096 by default; 0 quantizes all).
    maximize:
        Maximize the objective.
    foreach:
        Use ``_foreach`` ops for the fp32-state tensors (``None``: on CUDA only). 8-bit
        tensors are always updated one at a time, so that only one tensor's fp32 moments
        exist at once.
    fused:
        Step fp32/bf16 parameters on the CPU with one C++ kernel, compiled on first use
        (``optiwise.optim._native``): each 8-bit block is dequantized, updated and
        requantized in one pass over memory, with the same codes, absmax and fp32
        parameters as the per-tensor path, bit for bit (fp32-state tensors: the same update
        within rounding). ``None`` (the default) picks it when ``foreach`` is None, the
        parameters are on the CPU and the group holds at least 2^20 elements; ``True``
        requires CPU parameters; ``False`` never. float16/float64 parameters and
        non-contiguous tensors always take the per-tensor path.
    """

    moments = (("exp_avg", True), ("exp_avg_sq", False))
    counters = ("step",)
    counter_types: ClassVar[Mapping[str, type]] = {"step": int}
    state_keys: ClassVar[Mapping[str, StateKind]] = _Blockwise8bit._make_state_keys(
        moments, counters
    )

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = _ADAMW["lr"].value,
        betas: tuple[float, float] = _ADAMW["betas"].value,
        eps: float = _ADAMW["eps"].value,
        weight_decay: float = _ADAMW["weight_decay"].value,
        block_size: int = _ADAMW_EXTRA["block_size"].value,
        *,
        min_8bit_numel: int = _ADAMW_EXTRA["min_8bit_numel"].value,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay),
            block_size=block_size,
            min_8bit_numel=min_8bit_numel,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )

    def _update(
        self,
        fp: dict[str, list[Any]],
        q: dict[str, list[Any]],
        hp: dict[str, Any],
        *,
        foreach: bool,
        block_size: int,
    ) -> None:
        (adamw_multi_tensor if foreach else adamw_single_tensor)(
            fp["params"], _like(fp["grads"], fp["exp_avg"]), fp["exp_avg"], fp["exp_avg_sq"],
            fp["step"], **hp,
        )  # fmt: skip
        adamw8bit_single_tensor(
            q["params"], q["grads"], q["exp_avg_codes"], q["exp_avg_absmax"],
            q["exp_avg_sq_codes"], q["exp_avg_sq_absmax"], q["step"],
            block_size=block_size, **hp,
        )  # fmt: skip

    def _native_kernel(
        self, lists: dict[str, list[Any]], hp: dict[str, Any], *, block_size: int
    ) -> None:
        steps: dict[int, list[int]] = {}
        if len(set(lists["step"])) == 1:  # the usual case: one step count, no regrouping
            steps[lists["step"][0]] = list(range(len(lists["step"])))
        else:
            for i, step in enumerate(lists["step"]):
                steps.setdefault(step, []).append(i)
        first, second = ("exp_avg_codes", "exp_avg_sq_codes") if block_size else (
            "exp_avg", "exp_avg_sq"
        )  # fmt: skip
        for step, index in steps.items():
            picked = lists if len(steps) == 1 else _pick(lists, index)
            numbers = adamw8bit_hparams(
                lr=hp["lr"], beta1=hp["beta1"], beta2=hp["beta2"], eps=hp["eps"],
                weight_decay=hp["weight_decay"], step=step,
            )  # fmt: skip
            _native.adamw_step(
                picked["params"], picked["grads"], picked[first], picked[second],
                hparams=numbers, maximize=hp["maximize"], block_size=block_size,
                exp_avg_absmax=picked["exp_avg_absmax"],
                exp_avg_sq_absmax=picked["exp_avg_sq_absmax"],
            )  # fmt: skip


class Lion8bit(_Blockwise8bit):
    """Lion with a block-wise 8-bit momentum (Chen et al. 2023; Dettmers et al. 2022).

    Update (as Lion, on the dequantized momentum):
    ``c <- b1 m + (1 - b1) g``; ``w <- w (1 - lr wd) - lr sign(c)``;
    ``m <- b2 m + (1 - b2) g``; then ``m`` is requantized with the signed dynamic tree map
    (see :class:`AdamW8bit` for why dynamic). Tensors with fewer than ``min_8bit_numel``
    elements keep an fp32 momentum and follow Lion exactly.

    State per parameter: ``exp_avg`` (fp32) or ``exp_avg_codes`` (int8, the parameter's
    shape) and ``exp_avg_absmax`` (fp32, one per block): about 1.02 bytes per element at
    ``block_size=256`` (Lion: 4).

    Parameters
    ----------
    params:
        Parameters or param-group dicts.
    lr, betas, weight_decay:
        As Lion (defaults from :mod:`optiwise.knowledge`).
    block_size, min_8bit_numel, maximize, foreach, fused:
        As :class:`AdamW8bit`.
    """

    moments = (("exp_avg", True),)
    counters = ()
    state_keys: ClassVar[Mapping[str, StateKind]] = _Blockwise8bit._make_state_keys(
        moments, counters
    )

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = _LION["lr"].value,
        betas: tuple[float, float] = _LION["betas"].value,
        weight_decay: float = _LION["weight_decay"].value,
        block_size: int = _LION_EXTRA["block_size"].value,
        *,
        min_8bit_numel: int = _LION_EXTRA["min_8bit_numel"].value,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            dict(lr=lr, betas=betas, weight_decay=weight_decay),
            block_size=block_size,
            min_8bit_numel=min_8bit_numel,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )

    def _update(
        self,
        fp: dict[str, list[Any]],
        q: dict[str, list[Any]],
        hp: dict[str, Any],
        *,
        foreach: bool,
        block_size: int,
    ) -> None:
        (lion_multi_tensor if foreach else lion_single_tensor)(
            fp["params"], _like(fp["grads"], fp["exp_avg"]), fp["exp_avg"], **hp
        )
        lion8bit_single_tensor(
            q["params"], q["grads"], q["exp_avg_codes"], q["exp_avg_absmax"],
            block_size=block_size, **hp,
        )  # fmt: skip

    def _native_kernel(
        self, lists: dict[str, list[Any]], hp: dict[str, Any], *, block_size: int
    ) -> None:
        numbers = lion8bit_hparams(
            lr=hp["lr"], beta1=hp["beta1"], beta2=hp["beta2"], weight_decay=hp["weight_decay"]
        )
        _native.lion_step(
            lists["params"], lists["grads"], lists["exp_avg_codes" if block_size else "exp_avg"],
            hparams=numbers, maximize=hp["maximize"], block_size=block_size,
            exp_avg_absmax=lists["exp_avg_absmax"],
        )  # fmt: skip
