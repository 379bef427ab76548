"""Builds ``optiwise/audit/_api_data.json``: what the linter needs to know about torch's and
optiwise's optimizer and scheduler classes and the optimizer registry, read from the live
objects once, so that ``optiwise lint`` never imports torch.

Run ``python -m optiwise.audit._api_gen`` after upgrading torch or changing the registry;
``tests/audit/test_api_table.py`` fails while the stored table differs from this build.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from pathlib import Path
from typing import Any

__all__ = ["build", "main", "render"]

_SCAN = ("torch.optim", "optiwise", "optiwise.optim", "optiwise.schedules")


def _literal(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return True
    if isinstance(value, tuple):
        return all(_literal(v) for v in value)
    return False


def _signature(target: Any) -> dict[str, Any]:
    sig = inspect.signature(target)
    positional: list[str] = []
    names: list[str] = []
    defaults: dict[str, Any] = {}
    var_kw = False
    for name, p in sig.parameters.items():
        if name == "self":
            continue
        if p.kind is p.VAR_KEYWORD:
            var_kw = True
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        names.append(name)
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            positional.append(name)
        if p.default is not p.empty and _literal(p.default):
            defaults[name] = p.default
    return {
        "positional": tuple(positional),
        "names": tuple(names),
        "defaults": defaults,
        "var_kw": var_kw,
    }


def _modules() -> list[Any]:
    mods: list[Any] = []
    for name in _SCAN:
        mod = importlib.import_module(name)
        mods.append(mod)
        if hasattr(mod, "__path__") and name != "optiwise":
            for info in pkgutil.iter_modules(mod.__path__, prefix=f"{name}."):
                try:
                    mods.append(importlib.import_module(info.name))
                except Exception:  # pragma: no cover - an optional extra missing
                    continue
    return mods


def build() -> dict[str, Any]:
    """The table, from the installed torch and optiwise."""
    import torch
    from torch.optim import lr_scheduler as tls

    from optiwise import knowledge
    from optiwise.optim import registry
    from optiwise.schedules import _ALIASES, SCHEDULES

    classes: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    objects: dict[str, type] = {}
    for mod in _modules():
        for attr in sorted(vars(mod)):
            obj = vars(mod)[attr]
            if not inspect.isclass(obj):
                continue
            if issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer:
                kind = "optimizer"
            elif issubclass(obj, (tls.LRScheduler, tls.ReduceLROnPlateau)):
                kind = "scheduler"
            else:
                continue
            key = f"{obj.__module__}.{obj.__qualname__}"
            names[f"{mod.__name__}.{attr}"] = key
            if key not in classes:
                objects[key] = obj
                classes[key] = {"name": obj.__name__, "kind": kind, **_signature(obj)}
    canon = [*registry.list_optimizers()]
    canon += [knowledge.LOOKAHEAD_PREFIX + n for n in registry.list_optimizers()]
    entries: dict[str, dict[str, Any]] = {}
    for name in canon:
        entry = registry.get_entry(name)
        factory = entry.factory
        fkey = next((k for k, o in objects.items() if o is factory), None)
        accepted = registry._accepted_kwargs(factory)
        per_task: dict[str, dict[str, Any]] = {}
        for task in (None, *knowledge.TASKS):
            try:
                spec = registry.resolve_optimizer(name, task=task)
            except (ValueError, TypeError):  # pragma: no cover - every name resolves today
                continue
            values = {k: v for k, v in spec.hparams.items() if _literal(v)}
            if task is None:
                per_task[""] = values
            else:  # only what differs from the general defaults (keeps the table small)
                base = per_task[""]
                per_task[task] = {k: v for k, v in values.items() if base.get(k, None) != v}
                per_task[task]["-"] = tuple(sorted(set(base) - set(values)))
        entries[name] = {
            "display": knowledge.get_info(name).display,
            "factory": fkey,
            "fixed": dict(entry.fixed),
            "accepted": None if accepted is None else tuple(sorted(accepted)),
            "defaults": per_task,
        }
    for key, cls in objects.items():
        classes[key]["registry"] = tuple(
            n for n in registry.list_optimizers() if registry.get_entry(n).factory is cls
        )
    return {
        "classes": classes,
        "names": names,
        "optimizer_lookup": dict(registry._LOOKUP),
        "registry": entries,
        "create_optimizer": _signature(registry.create_optimizer),
        "schedules": tuple(SCHEDULES),
        "schedule_aliases": dict(_ALIASES),
        "torch_version": torch.__version__.split("+")[0],
    }


_PATH = Path(__file__).with_name("_api_data.json")


def render(table: dict[str, Any]) -> str:
    """The JSON text holding ``table`` (tuples become lists; :mod:`._api` turns the
    defaults back into tuples)."""
    return json.dumps(table, sort_keys=True, separators=(",", ":")) + "\n"


def stored() -> str:
    """The stored table's text."""
    return _PATH.read_text(encoding="utf-8")


def main() -> None:
    """Write the table next to this module."""
    _PATH.write_text(render(build()), encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    main()
