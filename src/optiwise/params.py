"""Parameter groups: no weight decay on biases, norms and embeddings; layer-wise LR decay;
per-module LR multipliers.

Which parameters escape weight decay is decided by module type and parameter shape, never
by searching parameter names for "bn" or "norm":

- every parameter of a normalization layer (BatchNorm*, LayerNorm, GroupNorm, InstanceNorm*,
  LocalResponseNorm, RMSNorm) and of an embedding (Embedding, EmbeddingBag);
- every parameter with fewer than two dimensions: biases, and the scale/shift vectors of
  custom normalization modules;
- free-standing tensors of a leading size-1 dimension owned by a module that is not a
  standard weight layer: class tokens and learned position embeddings (``cls_token`` of
  shape ``(1, 1, D)``, ``pos_embed`` of shape ``(1, N, D)``).

Names are used only to find model *structure*: numbered blocks for layer-wise decay and
module prefixes for LR multipliers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["ParamInfo", "block_structure", "is_no_decay", "param_groups"]

NoDecayRule = Literal["auto"] | None | Callable[[nn.Module, str, nn.Parameter], bool]

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm1d/2d/3d, SyncBatchNorm, InstanceNorm*
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)
_EMBEDDING_TYPES: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)
# Layers whose multi-dimensional parameters are ordinary weights, never token embeddings.
_WEIGHT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Bilinear,
    nn.modules.conv._ConvNd,
    nn.RNNBase,
    nn.MultiheadAttention,
)

# Numbered-block patterns, tried in order on a parameter's full name; the leftmost match
# (the outermost block) wins.
_BLOCK_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?:^|\.)(?:layers|layer|blocks|block|h)\.(?P<n>\d+)(?=\.|$)"),
    re.compile(r"(?:^|\.)layer(?P<n>\d+)(?=\.|$)"),
)


@dataclass(frozen=True)
class ParamInfo:
    """What :func:`param_groups` decided for one parameter."""

    name: str
    decay: bool
    layer_id: int | None
    lr_scale: float


def _owners(model: nn.Module) -> dict[int, list[tuple[str, nn.Module, str]]]:
    """Map id(param) -> every (qualified name, owning module, attribute name) using it."""
    owners: dict[int, list[tuple[str, nn.Module, str]]] = {}
    for mod_name, module in model.named_modules(remove_duplicate=False):
        for attr, p in module.named_parameters(recurse=False):
            qual = f"{mod_name}.{attr}" if mod_name else attr
            owners.setdefault(id(p), []).append((qual, module, attr))
    return owners


def is_no_decay(module: nn.Module, param: torch.Tensor) -> bool:
    """Whether ``param``, owned directly by ``module``, should escape weight decay.

    Decided by the module's type and the parameter's shape only (see the module docstring).
    """
    if isinstance(module, _NORM_TYPES + _EMBEDDING_TYPES):
        return True
    if param.ndim < 2:
        return True
    # Class tokens / position embeddings: free tensors with a leading broadcast dimension.
    return not isinstance(module, _WEIGHT_LAYER_TYPES) and param.shape[0] == 1


def block_structure(model: nn.Module) -> dict[str, int | None]:
    """Block index (1-based, in order of appearance) of every parameter name, or ``None``
    for parameters outside numbered blocks (``layers.N``, ``blocks.N``, ``h.N``, ``layerN``,
    ``encoder.layer.N``)."""
    out: dict[str, int | None] = {}
    ids: dict[tuple[str, str], int] = {}
    for name, _ in model.named_parameters():
        key = None
        for pattern in _BLOCK_PATTERNS:
            m = pattern.search(name)
            if m:
                # Key by the full text up to the number so encoder/decoder stacks differ.
                key = (name[: m.start("n")], m.group("n"))
                break
        if key is None:
            out[name] = None
            continue
        if key not in ids:
            ids[key] = len(ids) + 1
        out[name] = ids[key]
    return out


def _layer_ids(
    model: nn.Module,
    owners: dict[int, list[tuple[str, nn.Module, str]]],
    named: list[tuple[str, nn.Parameter]],
) -> tuple[dict[str, int], int]:
    """Layer id per parameter for layer-wise decay: 0 for embeddings and everything before
    the first block, i for block i, L+1 for everything after the last block (the head)."""
    blocks = block_structure(model)
    n_blocks = max((b for b in blocks.values() if b is not None), default=0)
    if n_blocks == 0:
        raise ValueError(
            "layer_decay needs a model made of numbered blocks (layers.N, blocks.N, h.N, "
            "layerN, encoder.layer.N); none were found. Use lr_mult for per-module LRs."
        )
    ids: dict[str, int] = {}
    seen_block = False
    for name, p in named:
        block = blocks.get(name)
        if block is not None:
            seen_block = True
            ids[name] = block
        elif any(isinstance(m, _EMBEDDING_TYPES) for _, m, _ in owners[id(p)]) or not seen_block:
            ids[name] = 0
        else:
            ids[name] = n_blocks + 1
    return ids, n_blocks


def _lr_multipliers(model: nn.Module, lr_mult: Mapping[str, float]) -> Callable[[str], float]:
    module_names = {n for n, _ in model.named_modules() if n}
    param_names = {n for n, _ in model.named_parameters()}
    for prefix, mult in lr_mult.items():
        if not isinstance(mult, (int, float)) or mult < 0:
            raise ValueError(f"Invalid LR multiplier for {prefix!r}: {mult!r} (must be >= 0)")
        if prefix not in module_names and prefix not in param_names:
            tops = sorted({n.split(".")[0] for n in module_names})
            raise ValueError(
                f"lr_mult key {prefix!r} matches no module of the model; top-level modules: "
                f"{', '.join(tops)}"
            )
    prefixes = sorted(lr_mult, key=len, reverse=True)

    def mult_of(name: str) -> float:
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                return float(lr_mult[prefix])
        return 1.0

    return mult_of


def describe_params(
    model: nn.Module,
    *,
    no_decay: NoDecayRule = "auto",
    layer_decay: float | None = None,
    lr_mult: Mapping[str, float] | None = None,
) -> list[ParamInfo]:
    """Per trainable parameter (each shared tensor once), the decisions that
    :func:`param_groups` makes: decay or not, layer id, LR scale."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"param_groups needs an nn.Module, got {type(model).__name__}")
    if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"Invalid layer_decay: {layer_decay} (must be in (0, 1])")
    if not (no_decay is None or no_decay == "auto" or callable(no_decay)):
        raise ValueError(
            f"Invalid no_decay: {no_decay!r} (use 'auto', None, or a callable "
            "(module, name, param) -> bool)"
        )
    owners = _owners(model)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError(
            f"{type(model).__name__} has no trainable parameters (all frozen or none); "
            "unfreeze some with p.requires_grad_(True)"
        )
    ids, n_blocks = _layer_ids(model, owners, named) if layer_decay is not None else ({}, 0)
    mult_of = _lr_multipliers(model, lr_mult) if lr_mult else None

    infos: list[ParamInfo] = []
    for name, p in named:
        if no_decay is None:
            decay = True
        elif no_decay == "auto":
            decay = not any(is_no_decay(m, p) for _, m, _ in owners[id(p)])
        else:
            decay = not any(no_decay(m, attr, p) for _, m, attr in owners[id(p)])
        scale = 1.0
        layer_id = None
        if layer_decay is not None:
            layer_id = ids[name]
            scale *= layer_decay ** (n_blocks + 1 - layer_id)
        if mult_of is not None:
            scale *= mult_of(name)
        infos.append(ParamInfo(name, decay, layer_id, scale))
    return infos


def param_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    no_decay: NoDecayRule = "auto",
    layer_decay: float | None = None,
    lr_mult: Mapping[str, float] | None = None,
    lr: float | None = None,
) -> list[dict[str, Any]]:
    """Torch param-group dicts for ``model``.

    Parameters
    ----------
    model:
        The model; frozen parameters are left out and shared (tied) tensors appear once.
    weight_decay:
        Decay for the parameters that take it; the others get ``0.0``.
    no_decay:
        ``"auto"`` (biases, norms, embeddings, class/position tokens; see the module
        docstring), ``None`` (decay everything) or a callable
        ``(module, attribute_name, param) -> bool`` returning True for no decay.
    layer_decay:
        Layer-wise LR decay factor in (0, 1]: block ``i`` of ``L`` gets
        ``layer_decay ** (L + 1 - i)``, embeddings ``layer_decay ** (L + 1)``, the head 1.
    lr_mult:
        LR multipliers by module prefix, e.g. ``{"backbone": 0.1}``; the longest matching
        prefix wins, unmatched parameters get 1.
    lr:
        Base LR. When given, groups with an LR scale get ``lr = lr * scale``.

    Returns
    -------
    list of dict
        Each with ``params``, ``weight_decay``, ``name`` and, where an LR scale is set,
        ``lr_scale`` (and ``lr`` when ``lr`` was given).  Torch optimizers keep the extra
        keys; LR schedulers preserve the ratios between groups.
    """
    if weight_decay < 0:
        raise ValueError(f"Invalid weight_decay: {weight_decay} (must be >= 0)")
    infos = describe_params(model, no_decay=no_decay, layer_decay=layer_decay, lr_mult=lr_mult)
    params = dict(model.named_parameters())
    scaled = layer_decay is not None or bool(lr_mult)
    groups: dict[tuple[bool, float], dict[str, Any]] = {}
    for info in infos:
        key = (info.decay, info.lr_scale if scaled else 1.0)
        group = groups.get(key)
        if group is None:
            label = "decay" if info.decay else "no_decay"
            group = {"params": [], "weight_decay": weight_decay if info.decay else 0.0}
            if scaled:
                group["lr_scale"] = info.lr_scale
                label += f"@{info.lr_scale:.4g}"
                if lr is not None:
                    group["lr"] = lr * info.lr_scale
            group["name"] = label
            group["param_names"] = []
            groups[key] = group
        group["params"].append(params[info.name])
        group["param_names"].append(info.name)
    ordered = sorted(
        groups.values(), key=lambda g: (g.get("lr_scale", 1.0), g["weight_decay"] == 0)
    )
    return ordered


def iter_trainable(params: Iterable[Any]) -> list[Any]:
    """Materialise user-given params (tensors or group dicts), refusing an empty list."""
    items = list(params)
    if not items:
        raise ValueError(
            "optimizer got an empty parameter list; pass model.parameters() or "
            "param groups with at least one tensor"
        )
    return items
