"""One optimizer over several: each child optimizer owns a disjoint set of parameters."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = ["MultiOptimizer", "split_param_groups"]

#: The key of a param-group dict passed to :meth:`MultiOptimizer.add_param_group` that names
#: the child optimizer to add it to.
CHILD_KEY = "optimizer"


def split_param_groups(
    params: Any, which: Callable[[Tensor], bool], owner: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``params`` (tensors or param-group dicts) as (the groups of the tensors for which
    ``which`` is true, the groups of the rest), for an optimizer built of two children.

    Each group given is split in two, keeping its keys; ``param_names``, when it lists one
    name per tensor, is split with the tensors.  A part with no tensor is left out.
    """
    items = list(params)
    if not items:
        raise ValueError(f"{owner} got an empty parameter list")
    groups = items if isinstance(items[0], dict) else [{"params": items}]
    first: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for group in groups:
        raw = group["params"]
        tensors = [raw] if isinstance(raw, Tensor) else list(raw)
        names = group.get("param_names")
        aligned = isinstance(names, list) and len(names) == len(tensors)
        extra = {k: v for k, v in group.items() if k not in ("params", "param_names")}
        if "param_names" in group and not aligned:
            extra["param_names"] = names
        for wanted, out in ((True, first), (False, rest)):
            picked = [i for i, t in enumerate(tensors) if which(t) == wanted]
            if not picked:
                continue
            part = {**extra, "params": [tensors[i] for i in picked]}
            if aligned:
                part["param_names"] = [names[i] for i in picked]  # type: ignore[index]
            out.append(part)
    return first, rest


def _describe(p: Tensor) -> str:
    return f"a {tuple(p.shape)} {str(p.dtype).removeprefix('torch.')} tensor"


class MultiOptimizer(Optimizer):
    """Several optimizers stepped as one, each over its own parameters.

    ``step(closure)`` evaluates the closure once (gradients enabled) and steps every child
    in order; ``zero_grad`` clears every child's gradients. ``param_groups`` lists the
    children's param-group dicts themselves, in child order, so an LR scheduler built on the
    MultiOptimizer (or :class:`optiwise.Stepper`) sets the children's learning rates; a
    scheduler's factors apply to every group alike, whatever child owns it. ``state`` is a
    view of the children's per-parameter state (the same dicts).

    ``state_dict()`` has torch's ``"state"`` and ``"param_groups"`` (parameter indices
    counted over all children, in ``param_groups`` order) and ``"optimizers"``, each child's
    own state dict by name; ``load_state_dict`` validates all children first and then loads
    each one's own state dict, so a run resumes exactly as each child resumes.

    Parameters
    ----------
    optimizers:
        The children, by name (a mapping) or as a sequence (named ``"0"``, ``"1"``, ...).
        No tensor may belong to two children. Children that need a closure on every step
        (``torch.optim.LBFGS``) are refused: the closure is evaluated once, before the
        children step.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    >>> opt = MultiOptimizer({
    ...     "sgd": torch.optim.SGD(net[0].parameters(), lr=0.1),
    ...     "adamw": torch.optim.AdamW(net[1].parameters(), lr=1e-3),
    ... })
    >>> [g["lr"] for g in opt.param_groups]
    [0.1, 0.001]
    """

    def __init__(self, optimizers: Mapping[str, Optimizer] | Sequence[Optimizer]) -> None:
        children = self._named(optimizers)
        owner: dict[int, str] = {}
        for name, child in children.items():
            for group in child.param_groups:
                for p in group["params"]:
                    other = owner.get(id(p))
                    if other is not None and other != name:
                        raise ValueError(
                            f"{_describe(p)} belongs to both optimizers {other!r} and "
                            f"{name!r}; give each parameter to exactly one child"
                        )
                    owner[id(p)] = name
        params = [p for child in children.values() for g in child.param_groups for p in g["params"]]
        # Throwaway groups: Optimizer.__init__ sets up the hooks and patches step; the groups
        # themselves are the children's (see param_groups).
        super().__init__(params, {})
        del self.__dict__["_own_param_groups"]
        del self.__dict__["_own_state"]
        self.optimizers: dict[str, Optimizer] = children

    @staticmethod
    def _named(optimizers: Mapping[str, Optimizer] | Sequence[Optimizer]) -> dict[str, Optimizer]:
        if isinstance(optimizers, Optimizer):
            raise TypeError(
                "MultiOptimizer takes several optimizers, as a mapping name -> optimizer or a "
                f"list, got one {type(optimizers).__name__}"
            )
        if isinstance(optimizers, Mapping):
            children = dict(optimizers)
        else:
            children = {str(i): opt for i, opt in enumerate(optimizers)}
        if not children:
            raise ValueError("MultiOptimizer needs at least one optimizer, got none")
        seen: dict[int, str] = {}
        for name, child in children.items():
            if not isinstance(name, str):
                raise TypeError(f"optimizer names must be strings, got {name!r}")
            if not isinstance(child, Optimizer):
                raise TypeError(
                    f"optimizer {name!r} is a {type(child).__name__}, not a torch.optim.Optimizer"
                )
            if isinstance(child, torch.optim.LBFGS):
                raise ValueError(
                    f"optimizer {name!r} is LBFGS, which re-evaluates the closure inside its "
                    "step; MultiOptimizer evaluates the closure once for all children, so "
                    "step LBFGS on its own"
                )
            if id(child) in seen:
                raise ValueError(f"optimizers {seen[id(child)]!r} and {name!r} are one object")
            seen[id(child)] = name
        return children

    # ----------------------------------------------------------------------------------------
    # The children's groups and state
    # ----------------------------------------------------------------------------------------

    # While Optimizer.__init__ runs there are no children yet: its throwaway groups and state
    # go to _own_param_groups and _own_state, deleted right after.
    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The children's param-group dicts (the same objects), in child order."""
        children = self.__dict__.get("optimizers")
        if children is None:
            return self.__dict__.setdefault("_own_param_groups", [])
        return [g for child in children.values() for g in child.param_groups]

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        if "optimizers" in self.__dict__:
            raise AttributeError(
                "MultiOptimizer.param_groups are its children's; set a child's param_groups "
                "(multi.optimizers[name].param_groups) instead"
            )
        self.__dict__["_own_param_groups"] = value

    @property  # type: ignore[override]
    def state(self) -> dict[Tensor, Any]:
        """Per-parameter state of every child (the children's own dicts)."""
        children = self.__dict__.get("optimizers")
        if children is None:
            return self.__dict__.setdefault("_own_state", {})
        return {p: s for child in children.values() for p, s in child.state.items()}

    @state.setter
    def state(self, value: Any) -> None:
        if "optimizers" in self.__dict__:
            raise AttributeError("MultiOptimizer.state is its children's; set a child's state")
        self.__dict__["_own_state"] = value

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group to the child named by its ``"optimizer"`` key.

        ``multi.add_param_group({"params": [w], "lr": 0.1, "optimizer": "adamw"})`` adds
        ``{"params": [w], "lr": 0.1}`` to ``multi.optimizers["adamw"]``; the parameters must
        not belong to any child yet.
        """
        children = self.__dict__.get("optimizers")
        if children is None:
            super().add_param_group(param_group)
            return
        name = param_group.get(CHILD_KEY)
        if name not in children:
            what = "names no child" if CHILD_KEY in param_group else "does not say which child"
            raise ValueError(
                f"the param group {what}: add {CHILD_KEY!r}: one of {sorted(children)} to it "
                f"(e.g. {{'params': ..., {CHILD_KEY!r}: {next(iter(children))!r}}})"
            )
        group = {k: v for k, v in param_group.items() if k != CHILD_KEY}
        params = group["params"]
        new = [params] if isinstance(params, Tensor) else list(params)
        group["params"] = new
        owned = {id(p): n for n, c in children.items() for g in c.param_groups for p in g["params"]}
        for p in new:
            if id(p) in owned:
                raise ValueError(
                    f"{_describe(p)} already belongs to optimizer {owned[id(p)]!r}; give each "
                    "parameter to exactly one child"
                )
        children[name].add_param_group(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Every child's ``zero_grad``."""
        for child in self.optimizers.values():
            child.zero_grad(set_to_none=set_to_none)

    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "optimizers": self.optimizers}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """torch's ``__setstate__`` without the ``differentiable`` key it adds to
        ``defaults`` (the children keep their own)."""
        had_differentiable = "differentiable" in state.get("defaults", {})
        super().__setstate__(state)
        if not had_differentiable:
            self.defaults.pop("differentiable", None)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n!r}: {type(c).__name__}" for n, c in self.optimizers.items())
        return f"{type(self).__name__}({{{inner}}})"

    # ----------------------------------------------------------------------------------------
    # Step
    # ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Evaluate ``closure`` (if given) once, then step every child."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for child in self.optimizers.values():
            child.step()
        return loss

    # ----------------------------------------------------------------------------------------
    # state_dict
    # ----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``{"state", "param_groups"}`` over all children (indices counted across them, as
        a single optimizer's would be) and ``"optimizers"``: each child's own state dict."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        children = {name: child.state_dict() for name, child in self.optimizers.items()}
        index = {id(p): i for i, p in enumerate(self._flat_params())}
        state: dict[int, Any] = {}
        groups: list[dict[str, Any]] = []
        for child in self.optimizers.values():
            for p, s in child.state.items():
                if id(p) in index:
                    state[index[id(p)]] = s
            for g in child.param_groups:
                groups.append(
                    {**{k: v for k, v in g.items() if k != "params"}, "params": [
                        index[id(p)] for p in g["params"]
                    ]}
                )  # fmt: skip
        state_dict: dict[str, Any] = {
            "state": dict(sorted(state.items())),
            "param_groups": groups,
            "optimizers": children,
        }
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            result = post_hook(self, state_dict)
            if result is not None:
                state_dict = result
        return state_dict

    def _flat_params(self) -> list[Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def validate_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Raise a ValueError when ``state_dict`` does not fit: other children, other group
        or parameter counts per child, or a child's own check fails."""
        prefix = f"cannot load state dict into {type(self).__name__}:"
        if not isinstance(state_dict, Mapping) or not isinstance(
            state_dict.get("optimizers"), Mapping
        ):
            raise ValueError(
                f"{prefix} expected a mapping with 'optimizers' (from multi.state_dict()); "
                "is it from another optimizer? (load a child's own state dict with "
                "multi.optimizers[name].load_state_dict)"
            )
        saved = state_dict["optimizers"]
        groups = state_dict.get("param_groups")
        if isinstance(groups, Sequence) and len(groups) != len(self.param_groups):
            raise ValueError(
                f"{prefix} it has {len(groups)} param groups, this one has {len(self.param_groups)}"
            )
        if list(saved) != list(self.optimizers):
            raise ValueError(
                f"{prefix} it holds optimizers {list(saved)}, this one has {list(self.optimizers)}"
            )
        for name, child in self.optimizers.items():
            child_sd = saved[name]
            groups = child_sd.get("param_groups") if isinstance(child_sd, Mapping) else None
            if not isinstance(groups, Sequence) or len(groups) != len(child.param_groups):
                count = len(groups) if isinstance(groups, Sequence) else "no"
                raise ValueError(
                    f"{prefix} optimizer {name!r} has {count} param groups in the state "
                    f"dict, {len(child.param_groups)} here"
                )
            for g, (s, c) in enumerate(zip(groups, child.param_groups, strict=True)):
                if len(s["params"]) != len(c["params"]):
                    raise ValueError(
                        f"{prefix} param group {g} of optimizer {name!r} has "
                        f"{len(s['params'])} parameters in the state dict, {len(c['params'])} "
                        "here"
                    )
            check = getattr(child, "validate_state_dict", None)
            if check is not None:
                check(child_sd)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load every child's state dict after validating all of them."""
        for pre_hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = pre_hook(self, state_dict)
            if result is not None:
                state_dict = result
        self.validate_state_dict(state_dict)
        for name, child in self.optimizers.items():
            child.load_state_dict(state_dict["optimizers"][name])
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)
