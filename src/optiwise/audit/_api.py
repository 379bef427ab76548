"""What the linter knows about torch's and optiwise's optimizers, schedulers and registry,
without importing torch: a lookup over the table in ``optiwise/audit/_api_data.json``
(``_api_data.json``, built from the live objects by :mod:`optiwise.audit._api_gen`)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@functools.cache
def _data() -> dict[str, Any]:
    """The table, read on first use."""
    text = (Path(__file__).with_name("_api_data.json")).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


__all__ = [
    "ClassInfo",
    "RegistryInfo",
    "Sig",
    "canonical_optimizer",
    "canonical_schedule",
    "class_info",
    "create_optimizer_sig",
    "optimizer_class",
    "registry_info",
    "scheduler_class",
]


@dataclass(frozen=True)
class Sig:
    """A callable's parameters: positional names in order, every named parameter, literal
    defaults, and whether it takes ``**kwargs``."""

    positional: tuple[str, ...]
    names: tuple[str, ...]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    var_kw: bool = False


@dataclass(frozen=True)
class ClassInfo:
    """An optimizer or scheduler class."""

    key: str  # module.qualname where it is defined
    name: str
    kind: str  # "optimizer" | "scheduler"
    sig: Sig
    registry: tuple[str, ...] = ()  # registry names built by this class (optimizers)


@dataclass(frozen=True)
class RegistryInfo:
    """One canonical name of the optimizer registry."""

    name: str
    display: str
    factory: ClassInfo | None
    fixed: Mapping[str, Any]
    accepted: frozenset[str] | None  # None: the factory takes **kwargs

    def defaults(self, task: str | None) -> dict[str, Any]:
        """The hyperparameters ``resolve_optimizer(name, task=task)`` fills in."""
        per_task = _data()["registry"][self.name]["defaults"]
        out = {k: _tuples(v) for k, v in per_task[""].items()}
        if task:
            diff = per_task.get(task)
            if diff is None:
                return out
            for k in diff.get("-", ()):
                out.pop(k, None)
            out.update({k: _tuples(v) for k, v in diff.items() if k != "-"})
        return out


def _tuples(v: Any) -> Any:
    """JSON lists back to the tuples they were (betas, eps pairs)."""
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def _sig(d: Mapping[str, Any]) -> Sig:
    defaults = {k: _tuples(v) for k, v in d["defaults"].items()}
    return Sig(tuple(d["positional"]), tuple(d["names"]), defaults, bool(d["var_kw"]))


@functools.cache
def class_info(key: str) -> ClassInfo | None:
    """The class defined at ``key`` (``module.QualName``)."""
    d = _data()["classes"].get(key)
    if d is None:
        return None
    return ClassInfo(key, d["name"], d["kind"], _sig(d), tuple(d.get("registry", ())))


def _by_name(qualname: str) -> ClassInfo | None:
    key = _data()["names"].get(qualname)
    return class_info(key) if key is not None else None


def optimizer_class(qualname: str) -> ClassInfo | None:
    """The optimizer class a qualified name (``torch.optim.Adam``) refers to, or None."""
    info = _by_name(qualname)
    return info if info is not None and info.kind == "optimizer" else None


def scheduler_class(qualname: str) -> ClassInfo | None:
    """The LR scheduler class a qualified name refers to, or None."""
    info = _by_name(qualname)
    return info if info is not None and info.kind == "scheduler" else None


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def canonical_optimizer(name: str) -> str | None:
    """The registry's canonical name for ``name`` (aliases, any case), or None."""
    lookup: Mapping[str, str] = _data()["optimizer_lookup"]
    key = _norm(name)
    if key in lookup:
        return lookup[key]
    prefix = "lookahead_"
    if key.startswith(prefix) and key[len(prefix) :] in lookup:
        return prefix + lookup[key[len(prefix) :]]
    return None


@functools.cache
def registry_info(canonical: str) -> RegistryInfo | None:
    """The registry entry of a canonical name."""
    d = _data()["registry"].get(canonical)
    if d is None:
        return None
    factory = class_info(d["factory"]) if d["factory"] else None
    accepted = None if d["accepted"] is None else frozenset(d["accepted"])
    fixed = {k: _tuples(v) for k, v in d["fixed"].items()}
    return RegistryInfo(canonical, d["display"], factory, fixed, accepted)


def canonical_schedule(name: str) -> str | None:
    """``create_scheduler``'s canonical schedule name for ``name``, or None."""
    key = name.strip().lower().replace("-", "_")
    key = _data()["schedule_aliases"].get(key, key)
    return key if key in _data()["schedules"] else None


def create_optimizer_sig() -> Sig:
    """The parameters of ``optiwise.create_optimizer``."""
    return _sig(_data()["create_optimizer"])
