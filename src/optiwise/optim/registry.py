"""One registry over torch.optim's optimizers and optiwise's own.

``create_optimizer(name, model_or_params, lr=None, weight_decay=None, **hp)`` resolves a
case-insensitive name or alias, fills every hyperparameter the caller left out from
:mod:`optiwise.knowledge` (for the given task family and batch size), builds parameter groups
when given a model, prefers torch's fused kernels where torch has them, and records what it
filled and why (:func:`get_spec`).

``lookahead_<name>`` wraps any registered optimizer ``<name>`` in
:class:`~optiwise.optim.lookahead.Lookahead`; it is resolved on lookup, so it works for
optimizers registered later too, and :func:`list_optimizers` lists only the plain names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.optimizer import _get_fused_kernels_supported_devices

from optiwise import knowledge
from optiwise.knowledge import Fact
from optiwise.optim._validation import validate_hparams
from optiwise.optim.lamb import LAMB
from optiwise.optim.lars import LARS
from optiwise.optim.lion import Lion
from optiwise.optim.lookahead import Lookahead, check_lookahead
from optiwise.optim.muon import MuonAdamW
from optiwise.optim.prodigy import Prodigy
from optiwise.optim.quantized import AdamW8bit, Lion8bit
from optiwise.optim.schedule_free import ScheduleFreeAdamW
from optiwise.optim.soap import SOAP
from optiwise.optim.sophia import SophiaG
from optiwise.optim.sparse import SparseAdamAdamW
from optiwise.params import NoDecayRule, iter_trainable, param_groups

__all__ = [
    "OptimizerSpec",
    "RegistryEntry",
    "canonical_name",
    "create_optimizer",
    "get_spec",
    "identify_optimizer",
    "list_optimizers",
    "register_optimizer",
    "registry_name",
    "resolve_optimizer",
    "validate_hparams",
]


@dataclass(frozen=True)
class RegistryEntry:
    """How to build one registered optimizer.

    Attributes
    ----------
    name:
        Canonical name; also the key of its facts in :mod:`optiwise.knowledge`.
    factory:
        Called as ``factory(params, **hparams)``; usually the optimizer class.
    aliases:
        Other accepted names (matched case-insensitively, ``-`` and ``_`` alike).
    fixed:
        Hyperparameters the name itself pins (``sgd_plain`` pins ``momentum=0``).
    fused:
        Whether the factory accepts ``fused=True`` (torch's single-kernel step).
    groups:
        Whether the factory takes several param groups; when False (LBFGS), a model's
        trainable parameters are passed as one group.
    takes_model:
        Whether the factory also takes ``model=`` (the ``nn.Module`` given to
        :func:`create_optimizer`), to decide by module type which optimizer trains a
        parameter (``muon``).
    """

    name: str
    factory: Callable[..., Optimizer]
    aliases: tuple[str, ...] = ()
    fixed: Mapping[str, Any] = field(default_factory=dict)
    fused: bool = False
    groups: bool = True
    takes_model: bool = False


@dataclass(frozen=True)
class OptimizerSpec:
    """A resolved optimizer configuration: what will be (or was) built, and why.

    Attributes
    ----------
    name:
        Canonical registry name.
    task:
        Task family whose defaults were used.
    hparams:
        Every keyword passed to the constructor (``params`` excluded).
    filled:
        The hyperparameters optiwise chose, each with its reason.
    given:
        Names of the hyperparameters the caller set.
    """

    name: str
    task: str
    hparams: Mapping[str, Any]
    filled: Mapping[str, Fact[Any]]
    given: tuple[str, ...]

    def explain(self) -> str:
        """One line per hyperparameter: value and where it came from."""
        lines = [f"{knowledge.get_info(self.name).display} ({self.name}), task {self.task}:"]
        for key, value in self.hparams.items():
            if key in self.filled:
                lines.append(f"  {key} = {value!r}  -- {self.filled[key].reason}")
            else:
                lines.append(f"  {key} = {value!r}  -- given")
        return "\n".join(lines)


_ENTRIES: dict[str, RegistryEntry] = {}
_LOOKUP: dict[str, str] = {}


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def register_optimizer(entry: RegistryEntry) -> None:
    """Register ``entry`` under its name and aliases.

    Its facts must already be in :mod:`optiwise.knowledge` under ``entry.name``. Names
    starting with ``lookahead_`` are reserved for the Lookahead forms.
    """
    for alias in (entry.name, *entry.aliases):
        if _norm(alias).startswith(knowledge.LOOKAHEAD_PREFIX):
            raise ValueError(
                f"optimizer name {alias!r} starts with {knowledge.LOOKAHEAD_PREFIX!r}, which is "
                "reserved: 'lookahead_<name>' already wraps every registered optimizer"
            )
    knowledge.get_info(entry.name)  # raises when the facts are missing
    for alias in (entry.name, *entry.aliases):
        key = _norm(alias)
        owner = _LOOKUP.get(key)
        if owner is not None and owner != entry.name:
            raise ValueError(f"optimizer alias {alias!r} already names {owner!r}")
        _LOOKUP[key] = entry.name
    _ENTRIES[entry.name] = entry


def _names_for_hint() -> list[str]:
    return sorted(_LOOKUP)


def canonical_name(name: str) -> str:
    """The canonical registry name for ``name`` (case-insensitive, aliases allowed).

    Raises a ValueError listing the closest names when ``name`` is unknown.
    """
    if not isinstance(name, str):
        raise TypeError(f"optimizer name must be a string, got {type(name).__name__}")
    key = _norm(name)
    if key in _LOOKUP:
        return _LOOKUP[key]
    prefix = knowledge.LOOKAHEAD_PREFIX
    if key.startswith(prefix):
        inner = key[len(prefix) :]
        if inner in _LOOKUP:
            return prefix + _LOOKUP[inner]
        what = (
            "Lookahead cannot wrap Lookahead"
            if inner.startswith(prefix)
            else f"{prefix!r} wraps a registered optimizer"
        )
        unknown = knowledge._unknown("optimizer", inner, _names_for_hint())
        raise ValueError(f"in {name!r} ({what}): {unknown}")
    raise knowledge._unknown("optimizer", name, _names_for_hint())


def list_optimizers() -> list[str]:
    """Canonical names of every registered optimizer, sorted.

    The Lookahead forms (``lookahead_<name>`` for each of these) are accepted everywhere
    but not listed.
    """
    return sorted(_ENTRIES)


def get_entry(name: str) -> RegistryEntry:
    """The :class:`RegistryEntry` for ``name`` (any accepted spelling)."""
    return _entry(canonical_name(name))


def _entry(canonical: str) -> RegistryEntry:
    entry = _ENTRIES.get(canonical)
    if entry is None:  # a Lookahead form, already checked by canonical_name
        entry = _lookahead_entry(_ENTRIES[canonical[len(knowledge.LOOKAHEAD_PREFIX) :]])
    return entry


def _lookahead_entry(inner: RegistryEntry) -> RegistryEntry:
    """``lookahead_<inner>``: builds ``inner`` and wraps it in :class:`Lookahead`.

    Lookahead's ``k`` and ``alpha`` are named by :func:`optiwise.knowledge.lookahead_keys`
    (``lookahead_k``/``lookahead_alpha`` when the inner optimizer uses those names).
    """
    k_key, alpha_key = knowledge.lookahead_keys(inner.name)

    def build(params: Any, **hp: Any) -> Optimizer:
        k = hp.pop(k_key, knowledge.LOOKAHEAD_K.value)
        alpha = hp.pop(alpha_key, knowledge.LOOKAHEAD_ALPHA.value)
        check_lookahead(k, alpha, labels=(k_key, alpha_key))
        return Lookahead(inner.factory(params, **hp), k=k, alpha=alpha)

    target = inner.factory.__init__ if inspect.isclass(inner.factory) else inner.factory
    sig = inspect.signature(target)
    head = [inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    rest = [
        p
        for n, p in sig.parameters.items()
        if n not in ("self", "params", k_key, alpha_key) and p.kind is not p.VAR_KEYWORD
    ]
    varkw = [p for p in sig.parameters.values() if p.kind is p.VAR_KEYWORD]
    own = [
        inspect.Parameter(
            k_key, inspect.Parameter.KEYWORD_ONLY, default=knowledge.LOOKAHEAD_K.value
        ),
        inspect.Parameter(
            alpha_key, inspect.Parameter.KEYWORD_ONLY, default=knowledge.LOOKAHEAD_ALPHA.value
        ),
    ]
    build.__signature__ = sig.replace(parameters=[*head, *rest, *own, *varkw])  # type: ignore[attr-defined]
    return RegistryEntry(
        name=knowledge.LOOKAHEAD_PREFIX + inner.name,
        factory=build,
        fixed=inner.fixed,
        fused=inner.fused,
        groups=inner.groups,
        takes_model=inner.takes_model,
    )


def _accepted_kwargs(factory: Callable[..., Any]) -> set[str] | None:
    """Keyword names the factory accepts, or None when it takes ``**kwargs``."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    params = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return {n for n in params if n not in ("self", "params")}


# --------------------------------------------------------------------------------------------
# Resolution and construction
# --------------------------------------------------------------------------------------------


def resolve_optimizer(
    name: str,
    *,
    task: str | None = None,
    batch_size: int | None = None,
    lr: float | torch.Tensor | None = None,
    weight_decay: float | None = None,
    **hp: Any,
) -> OptimizerSpec:
    """Resolve ``name`` and fill unspecified hyperparameters from :mod:`optiwise.knowledge`.

    Parameters
    ----------
    name:
        Registry name or alias, case-insensitive.
    task:
        Task family whose defaults to use (see ``knowledge.TASKS``); ``None`` is general.
    batch_size:
        When given and ``lr`` is not, the knowledge LR (tuned at the reference batch) is
        scaled with the optimizer's batch-scaling rule.
    lr, weight_decay, **hp:
        Hyperparameters set by the caller; they always win over the defaults.
    """
    canonical = canonical_name(name)
    entry = _entry(canonical)
    info = knowledge.get_info(canonical)
    dflt = knowledge.defaults(canonical, task)

    given: dict[str, Any] = dict(hp)
    if lr is not None:
        given["lr"] = lr
    if weight_decay is not None:
        given["weight_decay"] = weight_decay
    for key, value in entry.fixed.items():
        if key in given and given[key] != value:
            raise ValueError(
                f"{name!r} fixes {key}={value!r} but {key}={given[key]!r} was given; "
                f"use another variant (e.g. 'sgd' or 'sgd_momentum') to set {key}"
            )
    accepted = _accepted_kwargs(entry.factory)
    if accepted is not None:
        unknown = sorted(set(given) - accepted)
        if unknown:
            raise ValueError(
                f"{info.display} does not take {', '.join(unknown)}; accepted: "
                f"{', '.join(sorted(accepted))}"
            )

    hparams: dict[str, Any] = {}
    filled: dict[str, Fact[Any]] = {}
    for key, fact in dflt.hparams.items():
        if key in given:
            continue
        if key == "lr" and batch_size is not None:
            ref = dflt.reference_batch.value
            rule = info.batch_scaling.value
            scaled = knowledge.scale_lr(fact.value, batch_size, ref, rule)
            reason = fact.reason
            if batch_size != ref and rule != "none":
                reason = (
                    f"{fact.value:g} at batch {ref}, scaled by the {rule} rule to "
                    f"batch {batch_size} ({info.batch_scaling.reason}); {fact.reason}"
                )
            filled[key] = Fact(scaled, reason)
        else:
            filled[key] = fact
    for key, value in entry.fixed.items():
        filled[key] = Fact(value, f"the name {canonical!r} pins {key}={value!r}")
    # Nesterov needs momentum: never fill nesterov=True on top of a given momentum of 0.
    momentum = given.get("momentum", filled["momentum"].value if "momentum" in filled else None)
    if "nesterov" in filled and filled["nesterov"].value and not momentum:
        filled["nesterov"] = Fact(False, "Nesterov needs momentum > 0")

    for key in (*dflt.hparams, *given, *entry.fixed):
        if key not in hparams:
            hparams[key] = given[key] if key in given else filled[key].value
    if accepted is not None:
        for key in [k for k in hparams if k not in accepted]:
            hparams.pop(key)
            filled.pop(key, None)
    if canonical in _ENTRIES:
        validate_hparams(hparams)
    else:  # Lookahead's k and alpha are not the inner optimizer's (alpha's range differs)
        keys = knowledge.lookahead_keys(canonical[len(knowledge.LOOKAHEAD_PREFIX) :])
        validate_hparams({k: v for k, v in hparams.items() if k not in keys})
        check_lookahead(hparams[keys[0]], hparams[keys[1]], labels=keys)
    return OptimizerSpec(
        name=canonical,
        task=dflt.task,
        hparams=MappingProxyType(hparams),
        filled=MappingProxyType(filled),
        given=tuple(sorted(given)),
    )


def _fused_ok(params: list[Any]) -> bool:
    supported = _get_fused_kernels_supported_devices()
    tensors: list[torch.Tensor] = []
    for item in params:
        if isinstance(item, dict):
            tensors.extend(item["params"])
        else:
            tensors.append(item)
    if not tensors:
        return False
    device_types = {t.device.type for t in tensors}
    return (
        len(device_types) == 1
        and device_types <= set(supported)
        and all(torch.is_floating_point(t) and not t.is_sparse for t in tensors)
    )


def create_optimizer(
    name: str,
    model_or_params: nn.Module | Iterable[Any],
    lr: float | torch.Tensor | None = None,
    weight_decay: float | None = None,
    *,
    task: str | None = None,
    batch_size: int | None = None,
    no_decay: NoDecayRule = "auto",
    layer_decay: float | None = None,
    lr_mult: Mapping[str, float] | None = None,
    group: bool = True,
    **hp: Any,
) -> Optimizer:
    """Build a registered optimizer with knowledge-filled defaults.

    Parameters
    ----------
    name:
        Registry name or alias, case-insensitive (:func:`list_optimizers`).
    model_or_params:
        An ``nn.Module`` (parameter groups are built with :func:`optiwise.param_groups`
        unless ``group=False``) or an iterable of tensors / param-group dicts.
    lr, weight_decay, **hp:
        Hyperparameters; anything left out is filled from :mod:`optiwise.knowledge`.
    task:
        Task family for the defaults, e.g. ``"language_transformer"``.
    batch_size:
        Scales the default LR from its reference batch (ignored when ``lr`` is given).
    no_decay, layer_decay, lr_mult:
        Passed to :func:`optiwise.param_groups` when a model is given.
    group:
        Build parameter groups from a model (default) or pass its trainable parameters as
        one group.

    Returns
    -------
    torch.optim.Optimizer
        The optimizer; :func:`get_spec` returns what was filled and why.
    """
    spec = resolve_optimizer(
        name, task=task, batch_size=batch_size, lr=lr, weight_decay=weight_decay, **hp
    )
    entry = _entry(spec.name)
    if isinstance(model_or_params, nn.Module):
        if not entry.groups and (layer_decay is not None or lr_mult):
            raise ValueError(
                f"{knowledge.get_info(spec.name).display} takes a single param group, so "
                "layer_decay and lr_mult cannot apply; leave them out"
            )
        if group and entry.groups:
            params: list[Any] = param_groups(
                model_or_params,
                float(spec.hparams.get("weight_decay", 0.0)),
                no_decay=no_decay,
                layer_decay=layer_decay,
                lr_mult=lr_mult,
                lr=float(spec.hparams["lr"]) if "lr" in spec.hparams else None,
            )
        else:
            params = [p for p in model_or_params.parameters() if p.requires_grad]
            if not params:
                raise ValueError(
                    f"{type(model_or_params).__name__} has no trainable "
                    "parameters; unfreeze some with p.requires_grad_(True)"
                )
    else:
        if layer_decay is not None or lr_mult:
            raise ValueError(
                "layer_decay and lr_mult need a model (an nn.Module), not a parameter list"
            )
        params = iter_trainable(model_or_params)

    hparams = dict(spec.hparams)
    filled = dict(spec.filled)
    if entry.fused and not ({"fused", "foreach"} & set(hp)) and _fused_ok(params):
        hparams["fused"] = True
        filled["fused"] = Fact(
            True, "torch's fused kernel updates each tensor in one pass over memory"
        )
    extra: dict[str, Any] = {}
    if entry.takes_model and isinstance(model_or_params, nn.Module) and "model" not in hparams:
        extra["model"] = model_or_params
    optimizer = entry.factory(params, **hparams, **extra)
    spec = OptimizerSpec(
        spec.name, spec.task, MappingProxyType(hparams), MappingProxyType(filled), spec.given
    )
    _attach_spec(optimizer, spec)
    return optimizer


def _attach_spec(optimizer: Optimizer, spec: OptimizerSpec) -> None:
    optimizer._optiwise_spec = spec  # type: ignore[attr-defined]


def get_spec(optimizer: Optimizer) -> OptimizerSpec | None:
    """What :func:`create_optimizer` filled for ``optimizer`` and why (None if it was built
    some other way)."""
    return getattr(optimizer, "_optiwise_spec", None)


def registry_name(optimizer: Optimizer) -> str | None:
    """The registry name of an existing optimizer, or None when it is not a registered kind.

    An optimizer built by :func:`create_optimizer` knows its name; otherwise the name is
    found from its class and the hyperparameters a name pins (``SGD(momentum=0)`` is
    ``sgd_plain``, ``SGD(momentum=0.9)`` is ``sgd_momentum``, with Nesterov it is ``sgd``).
    """
    spec = get_spec(optimizer)
    if spec is not None:
        return spec.name
    best: tuple[int, str] | None = None
    for name, entry in _ENTRIES.items():
        if entry.factory is not type(optimizer):
            continue
        if any(optimizer.defaults.get(k) != v for k, v in entry.fixed.items()):
            continue
        if best is None or len(entry.fixed) > best[0]:
            best = (len(entry.fixed), name)
    return None if best is None else best[1]


# --------------------------------------------------------------------------------------------
# torch.optim's own optimizers
# --------------------------------------------------------------------------------------------

register_optimizer(
    RegistryEntry("sgd", torch.optim.SGD, aliases=("sgd_nesterov", "nesterov", "nag"), fused=True)
)
register_optimizer(
    RegistryEntry(
        "sgd_momentum",
        torch.optim.SGD,
        aliases=("momentum", "heavy_ball", "sgdm"),
        fixed={"nesterov": False},
        fused=True,
    )
)
register_optimizer(
    RegistryEntry(
        "sgd_plain",
        torch.optim.SGD,
        aliases=("plain_sgd", "vanilla_sgd"),
        fixed={"momentum": 0.0, "nesterov": False},
        fused=True,
    )
)
register_optimizer(RegistryEntry("adam", torch.optim.Adam, fused=True))
register_optimizer(RegistryEntry("adamw", torch.optim.AdamW, aliases=("adam_w",), fused=True))
register_optimizer(RegistryEntry("nadam", torch.optim.NAdam))
register_optimizer(RegistryEntry("radam", torch.optim.RAdam))
register_optimizer(RegistryEntry("adamax", torch.optim.Adamax))
register_optimizer(RegistryEntry("rmsprop", torch.optim.RMSprop, aliases=("rms_prop",)))
register_optimizer(RegistryEntry("adagrad", torch.optim.Adagrad, fused=True))
register_optimizer(RegistryEntry("adafactor", torch.optim.Adafactor))
register_optimizer(RegistryEntry("adadelta", torch.optim.Adadelta))
register_optimizer(RegistryEntry("asgd", torch.optim.ASGD, aliases=("averaged_sgd",)))
register_optimizer(RegistryEntry("rprop", torch.optim.Rprop))
# step(closure) only, one param group
register_optimizer(RegistryEntry("lbfgs", torch.optim.LBFGS, aliases=("l_bfgs",), groups=False))
# sparse gradients only; 2-D parameters only ("muon" routes a whole model)
register_optimizer(
    RegistryEntry("sparse_adam", torch.optim.SparseAdam, aliases=("sparseadam", "lazy_adam"))
)
register_optimizer(RegistryEntry("muon_2d", torch.optim.Muon, aliases=("torch_muon",)))

# --------------------------------------------------------------------------------------------
# optiwise's own optimizers (optiwise.optim)
# --------------------------------------------------------------------------------------------

# Lion, LAMB, LARS
register_optimizer(RegistryEntry("lion", Lion))
register_optimizer(RegistryEntry("lamb", LAMB))
register_optimizer(RegistryEntry("lars", LARS))

# SophiaG, schedule-free AdamW
register_optimizer(RegistryEntry("sophiag", SophiaG, aliases=("sophia", "sophia_g")))
register_optimizer(
    RegistryEntry(
        "schedule_free_adamw",
        ScheduleFreeAdamW,
        aliases=("schedulefree_adamw", "adamw_schedule_free", "adamw_schedulefree", "sf_adamw"),
    )
)

# Muon on the hidden matrices, AdamW on the rest, one LR and weight decay for both
register_optimizer(
    RegistryEntry("muon", MuonAdamW, aliases=("muon_adamw", "moonlight"), takes_model=True)
)

# Prodigy: Adam with an estimated step size
register_optimizer(RegistryEntry("prodigy", Prodigy, aliases=("prodigy_adam",)))

# SOAP: Adam in Shampoo's eigenbasis
register_optimizer(RegistryEntry("soap", SOAP))

# SparseAdam on sparse embedding tables, AdamW on the rest (recommenders)
register_optimizer(
    RegistryEntry(
        "sparse_adam_adamw",
        SparseAdamAdamW,
        aliases=("sparseadam_adamw", "sparse_adamw"),
        takes_model=True,
    )
)

# 8-bit AdamW and Lion
register_optimizer(RegistryEntry("adamw8bit", AdamW8bit, aliases=("adamw_8bit", "adam8bit")))
register_optimizer(RegistryEntry("lion8bit", Lion8bit, aliases=("lion_8bit",)))

# Lookahead over every registered optimizer: resolved on lookup ("lookahead_<name>", see
# canonical_name and _lookahead_entry), so optimizers registered later get it too.


def identify_optimizer(optimizer: Optimizer) -> str | None:
    """The registry name of ``optimizer`` (None when it is not a registered kind).

    Built by :func:`optiwise.create_optimizer`: the name it was built under; a torch SGD is
    ``sgd`` (Nesterov), ``sgd_momentum`` or ``sgd_plain`` by its settings; an Adam with
    ``decoupled_weight_decay=True`` is ``adamw``.
    """
    spec = get_spec(optimizer)
    if spec is not None:
        return spec.name
    cls = type(optimizer)
    group = optimizer.param_groups[0] if optimizer.param_groups else {}
    if cls is torch.optim.SGD:
        if not group.get("momentum", 0):
            return "sgd_plain"
        return "sgd" if group.get("nesterov") else "sgd_momentum"
    if cls is torch.optim.Adam and group.get("decoupled_weight_decay"):
        return "adamw"
    entries = [(name, get_entry(name).factory) for name in list_optimizers()]
    for name, factory in entries:
        if factory is cls:
            return name
    for name, factory in entries:
        if isinstance(factory, type) and isinstance(optimizer, factory):
            return name
    return None
