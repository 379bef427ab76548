"""The base class of optiwise's optimizers: torch's conventions in one place.

Subclasses implement ``step`` with update math in functions over lists of tensors (see
``_kernels.py``), declare their per-parameter state in ``state_keys``, and get:

- :meth:`_params_with_grads`: the group's parameters that have a gradient, refusing sparse
  gradients with a clear error;
- :meth:`_state_buffers`: per-parameter state tensors, created as zeros on first use;
- :meth:`_run_closure`: ``step(closure)`` semantics;
- :meth:`_use_foreach`: the ``foreach=None`` policy;
- :meth:`_use_fused`, :meth:`_fused_step` (and :meth:`_fused_passes` for updates in
  several passes with a value per tensor, :meth:`_fused_map` for tensor-by-tensor ones):
  the compiled one-pass path (``_fused.py``). A subclass opts in with a
  ``fused: bool | None = None`` argument stored in its defaults (checked by
  :func:`~optiwise.optim._fused.check_fused_args`), an update written for the compiler
  (``*_fused`` in ``_kernels.py``) and, in ``step``, per group::

      if self._use_fused(group, params, lion_fused):
          self._fused_step(lion_fused, group, params, grads, [exp_avgs], ["exp_avg"],
                           decay=1 - lr * wd, neg_lr=-lr, ..., sign=-1.0 if maximize else 1.0)
      else:
          ...  # the foreach or per-tensor kernel, as before
- a :meth:`load_state_dict` that validates the whole state dict first (same optimizer, same
  parameter count and shapes) and leaves the optimizer unchanged when it does not fit;
- torch's ``__setstate__`` pattern (it runs on ``load_state_dict``, ``copy.deepcopy`` and
  unpickling): param-group options a state dict may lack (:meth:`optional_group_keys`, e.g.
  ``maximize``) are filled with the constructor's defaults, counters in ``counter_types``
  are brought to their type (a checkpoint may hold ``step`` as a number or a 0-dim tensor),
  and ``defaults`` gains no ``differentiable`` key (torch's own ``__setstate__`` adds one);
- :meth:`_real_views`: complex tensors as real ones (``torch.view_as_real``), so that an
  elementwise update on a complex parameter is the update of its real and imaginary parts.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

from optiwise.optim import _fused

__all__ = ["OptiwiseOptimizer", "StateKind"]

#: ``"param"``: a tensor of the parameter's shape; ``"scalar"``: a 0-dim tensor or number;
#: ``"any"``: checked by the subclass (:meth:`OptiwiseOptimizer._check_param_state`).
StateKind = Literal["param", "scalar", "any"]

#: Half-precision dtypes (their elementwise math runs in float32).
_HALF = (torch.float16, torch.bfloat16)

#: Param-group keys that choose a code path rather than the update.
_PATH_KEYS = frozenset({"foreach", "fused"})


class OptiwiseOptimizer(Optimizer):
    """Base class; see the module docstring."""

    #: Per-parameter state keys this optimizer writes, with their kind.
    state_keys: ClassVar[Mapping[str, StateKind]] = {}
    #: Scalar state keys and the type the update reads them as (``int``, ``float`` or
    #: ``Tensor``, a 0-dim float32 tensor); a loaded value of the other kind is converted.
    counter_types: ClassVar[Mapping[str, type]] = {}

    @classmethod
    def optional_group_keys(cls) -> dict[str, Any]:
        """Param-group keys a saved state dict may lack, with the value loading fills in.

        These are the constructor's keyword-only options (``maximize``, ``foreach``,
        ``fused`` and the like: the options added to an algorithm after its core
        hyperparameters, whose default is the behaviour from before they existed), as
        torch's optimizers ``setdefault`` the keys their later versions added. A state dict
        lacking a positional hyperparameter (``lr``, ``betas``, ...) is refused: it comes
        from another optimizer.
        """
        keys: dict[str, Any] = {}
        # the subclasses' own options first; a subclass passing **kwargs on inherits its base's
        for klass in reversed(cls.__mro__):
            if not issubclass(klass, OptiwiseOptimizer) or "__init__" not in vars(klass):
                continue
            for name, p in inspect.signature(klass.__init__).parameters.items():
                if p.kind is p.KEYWORD_ONLY and p.default is not p.empty:
                    keys[name] = p.default
        return keys

    def __setstate__(self, state: dict[str, Any]) -> None:
        """torch's ``__setstate__`` (hooks, step patching), then: keep ``defaults`` as they
        were (torch adds ``differentiable``, which these optimizers do not take), fill the
        :meth:`optional_group_keys` a saved param group lacks, and convert the counters of
        :attr:`counter_types`."""
        defaults = state.get("defaults", self.__dict__.get("defaults", {}))
        had_differentiable = "differentiable" in defaults
        super().__setstate__(state)
        if not had_differentiable:
            self.defaults.pop("differentiable", None)
        optional = {k: v for k, v in self.optional_group_keys().items() if k in self.defaults}
        for group in self.param_groups:
            for key, value in optional.items():
                group.setdefault(key, value)
        if self.counter_types:
            for param_state in self.state.values():
                self._convert_counters(param_state)

    def _convert_counters(self, state: dict[str, Any]) -> None:
        for key, kind in self.counter_types.items():
            value = state.get(key)
            if value is None or isinstance(value, kind):
                continue
            number = value.item() if isinstance(value, Tensor) else value
            if kind is Tensor:
                state[key] = torch.tensor(float(number), dtype=torch.float32)
            else:
                state[key] = kind(number)

    def _refuse_complex(self, params: Sequence[Tensor], why: str) -> None:
        """Raise a ValueError naming the first complex tensor of ``params`` (``why``: the
        reason, e.g. "its preconditioner is a real eigenbasis")."""
        for p in params:
            if p.is_complex():
                raise ValueError(
                    f"{type(self).__name__} does not support complex parameters ({why}); got a "
                    f"{p.dtype} parameter of shape {tuple(p.shape)}: optimize its real view "
                    "instead, torch.nn.Parameter(torch.view_as_real(p)), using "
                    "torch.view_as_complex(param) in the model"
                )

    @staticmethod
    def _real_views(tensors: list[Tensor]) -> list[Tensor]:
        """``tensors`` with each complex one as ``torch.view_as_real`` of it (a view: updating
        it updates the complex tensor)."""
        if not any(t.is_complex() for t in tensors):
            return tensors
        return [torch.view_as_real(t) if t.is_complex() else t for t in tensors]

    # ----------------------------------------------------------------------------------------
    # Helpers for step()
    # ----------------------------------------------------------------------------------------

    def _params_with_grads(self, group: Mapping[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
        """Parameters of ``group`` that have a gradient, and those gradients."""
        params: list[Tensor] = []
        grads: list[Tensor] = []
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError(
                    f"{type(self).__name__} does not support sparse gradients; use dense "
                    "gradients (e.g. nn.Embedding(sparse=False)) or torch.optim.SparseAdam"
                )
            params.append(p)
            grads.append(p.grad)
        return params, grads

    def _state_buffers(
        self, params: list[Tensor], key: str, *, half_as_float: bool = False
    ) -> list[Tensor]:
        """``self.state[p][key]`` for each of ``params``, created as zeros on first use (in
        float32 for float16/bfloat16 parameters with ``half_as_float``)."""
        buffers: list[Tensor] = []
        for p in params:
            state = self.state[p]
            if key not in state:
                dtype = torch.float32 if half_as_float and p.dtype in _HALF else p.dtype
                state[key] = torch.zeros_like(p, dtype=dtype, memory_format=torch.preserve_format)
            buffers.append(state[key])
        return buffers

    @staticmethod
    def _run_closure(closure: Callable[[], Any] | None) -> Any:
        """Evaluate ``closure`` with gradients enabled (``None`` gives ``None``)."""
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()

    @staticmethod
    def _use_foreach(foreach: bool | None, params: list[Tensor]) -> bool:
        """``foreach=None`` picks the multi-tensor path on CUDA only: on CPU a per-tensor
        loop is faster than the foreach kernels."""
        if foreach is not None:
            return bool(foreach)
        return bool(params) and all(p.is_cuda for p in params)

    @staticmethod
    def _use_fused(
        group: Mapping[str, Any], params: list[Tensor], *updates: Callable[..., Any]
    ) -> bool:
        """Whether ``group``'s step takes the fused path with ``updates`` (its passes).

        ``fused=True`` always (a ValueError when the parameters cannot be fused), ``False``
        never; ``None`` (the default) when ``foreach`` is None too and the fused path pays:
        supported parameters holding at least ``_fused.AUTO_MIN_NUMEL`` elements (see
        :func:`optiwise.optim._fused.use_fused`).
        """
        return _fused.use_fused(group.get("fused"), group.get("foreach"), params, *updates)

    def _fused_step(
        self,
        update: Callable[..., None],
        group: Mapping[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        states: Sequence[list[Tensor]],
        keys: Sequence[str],
        cache_key: Any = None,
        **hparams: Any,
    ) -> None:
        """Run ``update`` on ``group``'s tensors through the compiled path.

        ``states[k]`` holds state ``keys[k]`` of each parameter (created by the subclass as
        for the other paths); small tensors' state is moved into flat buffers and
        ``self.state`` re-pointed at views of them. ``hparams`` are the update's keyword
        arguments: numbers become 0-dim tensors (changing them never recompiles), booleans
        specialize the compiled graph. ``cache_key`` names the cache entry (the group's id by
        default): a step that splits a group into subsets gives each subset its own key.
        """
        _fused.fused_step(
            update,
            params,
            grads,
            states,
            keys,
            optimizer_state=self.state,
            cache=self._fused_caches(),
            group_id=id(group) if cache_key is None else cache_key,
            strict=bool(group.get("fused")),
            hparams=hparams,
        )

    def _fused_passes(
        self,
        group: Mapping[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        states: Sequence[list[Tensor]],
        keys: Sequence[str],
        cache_key: Any = None,
    ) -> _fused.FusedPasses:
        """The compiled passes of a multi-pass update (LAMB, LARS) over ``group``'s tensors,
        as a context manager (see :class:`optiwise.optim._fused.FusedPasses`)::

            with self._fused_passes(group, params, grads, [exp_avgs], ["exp_avg"]) as passes:
                sums = passes.run(norms_update, **hparams)
                passes.run(apply_update, per_tensor={"ratio": ratio_of(sums)}, **hparams)
        """
        return _fused.FusedPasses(
            params,
            grads,
            states,
            keys,
            optimizer_state=self.state,
            cache=self._fused_caches(),
            cache_key=id(group) if cache_key is None else cache_key,
            strict=bool(group.get("fused")),
        )

    def _fused_caches(self) -> _fused.FusedCache:
        cache: _fused.FusedCache = self.__dict__.setdefault("_fused_cache", {})
        return cache

    @staticmethod
    def _fused_map(
        update: Callable[..., Any],
        group: Mapping[str, Any],
        tensors: Sequence[list[Tensor]],
        per_tensor: Mapping[str, list[Tensor]] | None = None,
        **hparams: Any,
    ) -> list[Tensor] | None:
        """An update through the compiled path tensor by tensor, without flat buffers (for
        large tensors, e.g. Lookahead's sync): ``per_tensor`` lists of 0-dim tensors go in
        beside the tensors, and the update's per-tensor outputs come back (see
        :func:`optiwise.optim._fused.fused_map`)."""
        return _fused.fused_map(
            update,
            tensors,
            strict=bool(group.get("fused")),
            hparams=hparams,
            per_tensor=per_tensor,
        )

    # ----------------------------------------------------------------------------------------
    # Safe loading
    # ----------------------------------------------------------------------------------------

    def _check_param_state(self, index: int, param: Tensor, state: Mapping[str, Any]) -> None:
        """Raise a ValueError when ``state`` cannot belong to ``param`` (overridable)."""
        name = type(self).__name__
        unknown = sorted(set(state) - set(self.state_keys))
        if unknown:
            raise ValueError(
                f"cannot load state dict into {name}: parameter #{index} has state keys "
                f"{unknown} that {name} does not use (expected a subset of "
                f"{sorted(self.state_keys)}); is it from another optimizer?"
            )
        for key, value in state.items():
            kind = self.state_keys[key]
            if kind == "param":
                if not isinstance(value, Tensor) or value.shape != param.shape:
                    shape = tuple(value.shape) if isinstance(value, Tensor) else type(value)
                    raise ValueError(
                        f"cannot load state dict into {name}: state {key!r} of parameter "
                        f"#{index} has shape {shape}, the parameter has shape "
                        f"{tuple(param.shape)}"
                    )
            elif kind == "scalar" and isinstance(value, Tensor) and value.numel() != 1:
                raise ValueError(
                    f"cannot load state dict into {name}: state {key!r} of parameter "
                    f"#{index} should be a scalar, got shape {tuple(value.shape)}"
                )

    def _check_group_sizes(self, saved_groups: Sequence[Mapping[str, Any]]) -> None:
        """Raise a ValueError unless the saved param groups match this optimizer's in number
        and in parameters per group."""
        name = type(self).__name__
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"cannot load state dict into {name}: it has {len(saved_groups)} param "
                f"groups, the optimizer has {len(self.param_groups)}"
            )
        for g, (saved, current) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            if len(saved["params"]) != len(current["params"]):
                raise ValueError(
                    f"cannot load state dict into {name}: param group {g} has "
                    f"{len(saved['params'])} parameters, the optimizer's has "
                    f"{len(current['params'])}"
                )

    def validate_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Raise a ValueError when ``state_dict`` does not fit this optimizer."""
        name = type(self).__name__
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(
                f"cannot load state dict into {name}: expected a mapping with 'state' and "
                "'param_groups' (from optimizer.state_dict())"
            )
        saved_groups = state_dict["param_groups"]
        self._check_group_sizes(saved_groups)
        index_to_param: dict[Any, Tensor] = {}
        for g, (saved, current) in enumerate(zip(saved_groups, self.param_groups, strict=True)):
            # How to step (foreach/fused) is the running optimizer's choice, not the
            # checkpoint's; options added later are filled in (optional_group_keys).
            missing = sorted(
                set(self.defaults)
                - set(saved)
                - {"differentiable"}
                - _PATH_KEYS
                - set(self.optional_group_keys())
            )
            if missing:
                raise ValueError(
                    f"cannot load state dict into {name}: param group {g} lacks "
                    f"{missing}; the state dict comes from another optimizer"
                )
            index_to_param.update(zip(saved["params"], current["params"], strict=True))
        for index, state in state_dict["state"].items():
            if index not in index_to_param:
                raise ValueError(
                    f"cannot load state dict into {name}: state for parameter #{index}, "
                    "which no param group lists"
                )
            self._check_param_state(index, index_to_param[index], state)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load ``state_dict`` after validating all of it; on error nothing changes.

        Unlike torch's own optimizers, every state tensor keeps the dtype it was saved with
        (torch casts floating state to the parameter's dtype, which would round fp32 state
        of bf16 parameters and turn int8 codes into floats); it only moves to the
        parameter's device. The ``foreach`` and ``fused`` choices stay as this optimizer was
        built (a run may change paths when it resumes): every path reads and writes the same
        state.
        """
        self.validate_state_dict(state_dict)
        saved_ids = [i for g in state_dict["param_groups"] for i in g["params"]]
        current = [p for g in self.param_groups for p in g["params"]]
        paths = [{k: g[k] for k in _PATH_KEYS if k in g} for g in self.param_groups]
        super().load_state_dict(state_dict)
        for group, path in zip(self.param_groups, paths, strict=True):
            for key in _PATH_KEYS - set(path):
                group.pop(key, None)
            group.update(path)
        for index, param in zip(saved_ids, current, strict=True):
            saved_state = state_dict["state"].get(index, {})
            state = self.state[param]
            for key, value in saved_state.items():
                if key in self.counter_types:
                    # from the saved value: torch casts a 0-dim tensor to the parameter's
                    # dtype, which would round a float64 counter
                    state[key] = value.clone() if isinstance(value, Tensor) else value
                    self._convert_counters(state)
                elif isinstance(value, Tensor) and state[key].dtype != value.dtype:
                    state[key] = value.to(device=param.device, copy=True)
