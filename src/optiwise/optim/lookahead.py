"""Lookahead (Zhang et al. 2019): k steps forward, 1 step back, around any optimizer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

from optiwise import knowledge
from optiwise.optim._base import OptiwiseOptimizer, StateKind
from optiwise.optim._fused import FLAT_NUMEL, check_fused_args, use_fused
from optiwise.optim._kernels import (
    lookahead_sync_fused,
    lookahead_sync_multi_tensor,
    lookahead_sync_single_tensor,
)
from optiwise.optim._validation import check_range

__all__ = ["Lookahead"]


def _check_k(k: Any, label: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"Invalid {label}: {k!r} (must be an integer >= 1)")


def _check_alpha(alpha: Any, label: str = "alpha") -> None:
    check_range(label, alpha, 0.0, 1.0, low_open=True, high_open=False)


def check_lookahead(k: Any, alpha: Any, *, labels: tuple[str, str] = ("k", "alpha")) -> None:
    """Raise a ValueError unless ``k`` is an int >= 1 and ``alpha`` is in (0, 1]."""
    _check_k(k, labels[0])
    _check_alpha(alpha, labels[1])


class Lookahead(OptiwiseOptimizer):
    """Lookahead around any optimizer (Zhang et al. 2019, 'Lookahead Optimizer: k steps
    forward, 1 step back').

    The inner optimizer updates the (fast) weights every step; after every ``k``-th step,
    ``slow <- slow + alpha (fast - slow)`` and ``fast <- slow``. The slow weights start as
    each parameter's value before its first update. ``alpha = 1`` is the inner optimizer
    unchanged; ``k = 1`` damps every step by ``alpha``.

    ``param_groups`` is the inner optimizer's list itself and ``add_param_group`` adds to it,
    so an LR scheduler built on the Lookahead sets the inner optimizer's LR. ``zero_grad``
    and every public attribute the Lookahead lacks go to the inner optimizer: ``train()`` and
    ``eval()`` of schedule-free optimizers, ``update_hessian`` of SophiaG.

    State: ``slow_param`` per parameter (the parameter's dtype; created on the parameter's
    first step with a gradient). ``state_dict()`` is the inner optimizer's state dict plus a
    ``"lookahead"`` entry with ``k``, ``alpha``, the step counter and the slow weights by
    parameter index; ``load_state_dict`` restores all of it (``k`` and ``alpha`` too, as
    torch restores param-group hyperparameters).

    Parameters
    ----------
    optimizer:
        The inner optimizer (any :class:`torch.optim.Optimizer`).
    k:
        Inner steps between synchronisations, an int >= 1 (default from
        :mod:`optiwise.knowledge`: 5).
    alpha:
        Slow-weight step size in (0, 1] (default 0.5).
    foreach:
        Synchronise with ``_foreach`` ops.
    fused:
        Synchronise tensors of at least 32768 elements with one compiled pass each (reads
        and writes both weights once: 16 bytes per fp32 parameter, where ``lerp_`` and
        ``copy_`` move 20); smaller tensors keep the eager kernels, which are faster for
        them. ``None`` (with ``foreach=None``) does so when the parameters hold at least
        2^20 elements on CPU or CUDA; otherwise the sync uses ``_foreach`` ops on CUDA and
        a per-tensor loop on CPU.
    """

    state_keys: ClassVar[Mapping[str, StateKind]] = {"slow_param": "param"}

    def __init__(
        self,
        optimizer: Optimizer,
        k: int = knowledge.LOOKAHEAD_K.value,
        alpha: float = knowledge.LOOKAHEAD_ALPHA.value,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                f"Lookahead wraps a torch.optim.Optimizer, got {type(optimizer).__name__}; "
                "build the inner optimizer first: Lookahead(torch.optim.AdamW(params), k, alpha)"
            )
        check_lookahead(k, alpha)
        check_fused_args(fused, foreach)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        # Only k and alpha here: the inner defaults may hold torch's `required` sentinel,
        # which Optimizer.__init__ would demand in the throwaway groups.
        super().__init__(params, {"k": k, "alpha": alpha})
        del self.__dict__["_own_param_groups"]
        self.defaults = {**optimizer.defaults, "k": k, "alpha": alpha}
        self.optimizer = optimizer
        self.k = k
        self.alpha = alpha
        self.foreach = foreach
        self.fused = fused
        self.lookahead_step = 0

    # ----------------------------------------------------------------------------------------
    # Pass-through to the inner optimizer
    # ----------------------------------------------------------------------------------------

    # While Optimizer.__init__ runs there is no inner optimizer yet: its throwaway groups go
    # to _own_param_groups, deleted right after.
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The inner optimizer's param groups (the same list object)."""
        inner = self.__dict__.get("optimizer")
        if inner is None:
            return self.__dict__.setdefault("_own_param_groups", [])
        return inner.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        inner = self.__dict__.get("optimizer")
        if inner is None:
            self.__dict__["_own_param_groups"] = value
        else:
            inner.param_groups = value

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group to the inner optimizer (its slow weights start at its first
        step)."""
        inner = self.__dict__.get("optimizer")
        if inner is None:
            super().add_param_group(param_group)
        else:
            inner.add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """The inner optimizer's ``zero_grad``."""
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes the Lookahead lacks: train/eval, update_hessian, ...
        inner = self.__dict__.get("optimizer")
        own = f"{type(self).__name__!r} object has no attribute {name!r}"
        if name.startswith("_") or inner is None:
            raise AttributeError(own)
        try:
            return getattr(inner, name)
        except AttributeError:
            raise AttributeError(f"{own} (nor has its inner {type(inner).__name__})") from None

    def __getstate__(self) -> dict[str, Any]:
        return {
            "defaults": self.defaults,
            "state": self.state,
            "optimizer": self.optimizer,
            "k": self.k,
            "alpha": self.alpha,
            "foreach": self.foreach,
            "fused": self.fused,
            "lookahead_step": self.lookahead_step,
        }

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, optimizer={self.optimizer!r})"

    # ----------------------------------------------------------------------------------------
    # Step
    # ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One inner step (with ``closure`` if given); every ``k``-th step, synchronise.

        Under ``torch.compile`` the inner step is compiled and the Lookahead's own work (new
        slow weights, the step counter, the sync) runs eagerly around it, in graph breaks:
        traced, the counter would be read once and the sync never happen.
        """
        pending = self._new_slow_weights(closure is not None)
        loss = self.optimizer.step() if closure is None else self.optimizer.step(closure)
        self._after_inner_step(pending)
        return loss

    @torch.compiler.disable
    @torch.no_grad()
    def _new_slow_weights(self, with_closure: bool) -> dict[Tensor, Tensor]:
        """Copies of the parameters that may take their first step now.

        Slow weights start at the value before a parameter's first update. With a closure
        the gradients are not known yet: copy every trainable parameter (and keep the copies
        of those that got a gradient). Nothing is kept when the step fails.
        """
        pending: dict[Tensor, Tensor] = {}
        for group in self.param_groups:
            for p in group["params"]:
                # .get: an empty entry (made by reading ``state[p]``) has no slow weights yet
                if "slow_param" not in self.state.get(p, {}) and (
                    p.grad is not None or (with_closure and p.requires_grad)
                ):
                    pending[p] = p.detach().clone()
        return pending

    @torch.compiler.disable
    @torch.no_grad()
    def _after_inner_step(self, pending: dict[Tensor, Tensor]) -> None:
        """Keep the slow weights of parameters that took their first step, count the step,
        and synchronise every ``k``-th one."""
        for p, slow in pending.items():
            if p.grad is not None:
                self.state[p]["slow_param"] = slow
        self.lookahead_step += 1
        if self.lookahead_step % self.k == 0:
            self._sync()

    def _sync(self) -> None:
        params: list[Tensor] = []
        slows: list[Tensor] = []
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if state:
                    params.append(p)
                    slows.append(state["slow_param"])
        if use_fused(self.fused, self.foreach, params, lookahead_sync_fused):
            large = [
                i
                for i, (p, slow) in enumerate(zip(params, slows, strict=True))
                if p.numel() >= FLAT_NUMEL and p.is_contiguous() and slow.is_contiguous()
            ]
            self._fused_map(
                lookahead_sync_fused, {"fused": self.fused},
                [[params[i] for i in large], [slows[i] for i in large]], alpha=self.alpha,
            )  # fmt: skip
            chosen = set(large)
            params = [p for i, p in enumerate(params) if i not in chosen]
            slows = [s for i, s in enumerate(slows) if i not in chosen]
        foreach = self._use_foreach(self.foreach, params)
        sync = lookahead_sync_multi_tensor if foreach else lookahead_sync_single_tensor
        sync(params, slows, alpha=self.alpha)

    # ----------------------------------------------------------------------------------------
    # state_dict
    # ----------------------------------------------------------------------------------------

    def _flat_params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizer's state dict plus ``"lookahead"``: ``k``, ``alpha``, ``step``
        and ``slow_params`` (parameter index -> slow weights, indices as in ``"state"``)."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        state_dict = self.optimizer.state_dict()
        slow = {}
        for index, p in enumerate(self._flat_params()):
            state = self.state.get(p)
            if state:
                slow[index] = state["slow_param"]
        state_dict["lookahead"] = {
            "k": self.k,
            "alpha": self.alpha,
            "step": self.lookahead_step,
            "slow_params": slow,
        }
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def validate_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Raise a ValueError when ``state_dict`` does not fit (checks the Lookahead part,
        and the inner part too when the inner optimizer can check it)."""
        prefix = "cannot load state dict into Lookahead:"
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise ValueError(
                f"{prefix} expected a mapping with 'state', 'param_groups' and 'lookahead' "
                "(from lookahead.state_dict())"
            )
        if "lookahead" not in state_dict:
            raise ValueError(
                f"{prefix} it has no 'lookahead' entry, so it comes from another optimizer "
                "(to load the inner optimizer's own state dict, use "
                "lookahead.optimizer.load_state_dict)"
            )
        self._check_group_sizes(state_dict["param_groups"])
        la = state_dict["lookahead"]
        if not isinstance(la, Mapping) or not {"k", "alpha", "step", "slow_params"} <= set(la):
            raise ValueError(f"{prefix} 'lookahead' needs k, alpha, step and slow_params")
        try:
            check_lookahead(la["k"], la["alpha"])
        except ValueError as err:
            raise ValueError(f"{prefix} {err}") from None
        step = la["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"{prefix} invalid step counter {step!r} (must be an integer >= 0)")
        params = self._flat_params()
        for index, slow in la["slow_params"].items():
            if not isinstance(index, int) or not 0 <= index < len(params):
                raise ValueError(f"{prefix} slow weights for parameter #{index}, which is not one")
            param = params[index]
            if not isinstance(slow, Tensor) or slow.shape != param.shape:
                shape = tuple(slow.shape) if isinstance(slow, Tensor) else type(slow).__name__
                raise ValueError(
                    f"{prefix} slow weights of parameter #{index} have shape {shape}, the "
                    f"parameter has shape {tuple(param.shape)}"
                )
        validate_inner = getattr(self.optimizer, "validate_state_dict", None)
        if validate_inner is not None:
            validate_inner({k: v for k, v in state_dict.items() if k != "lookahead"})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the inner optimizer's state and the slow weights, step counter, ``k`` and
        ``alpha`` after validating all of it; on error nothing changes."""
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        self.validate_state_dict(state_dict)
        self.optimizer.load_state_dict({k: v for k, v in state_dict.items() if k != "lookahead"})
        la = state_dict["lookahead"]
        params = self._flat_params()
        self.state.clear()
        for index, slow in la["slow_params"].items():
            param = params[index]
            self.state[param]["slow_param"] = slow.to(
                device=param.device, dtype=param.dtype, copy=True
            )
        self.k, self.alpha, self.lookahead_step = la["k"], la["alpha"], la["step"]
        self.defaults.update(k=self.k, alpha=self.alpha)
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)
