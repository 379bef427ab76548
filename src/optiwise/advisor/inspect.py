"""What kind of model is this: a structural profile of an ``nn.Module``.

The family is decided from what the parameters are (convolutions, attention, recurrence,
embeddings, plain linear layers) and how they are arranged (a patch-embedding convolution
before attention blocks, numbered blocks, a final head), never from the class name.

Attention is found as ``nn.MultiheadAttention`` or as a module whose own linear layers are
query/key/value projections (three equal ``d -> d`` layers, or one fused ``d -> 3d`` layer)
and whose forward pass applies a softmax (or ``scaled_dot_product_attention``) to them; the
forward pass is read with ``torch.fx`` when it can be traced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_args

import torch
from torch import nn
from torch.nn import functional as F

from optiwise import knowledge
from optiwise.params import _NORM_TYPES, block_structure

if TYPE_CHECKING:
    import torch.fx

__all__ = ["FAMILIES", "Family", "ModelProfile", "family_task", "inspect_model"]

Family = Literal[
    "vision_cnn",
    "vision_transformer",
    "language_transformer",
    "causal_transformer",
    "seq2seq_transformer",
    "diffusion_unet",
    "speech",
    "graph",
    "adapter",
    "sparse_embedding",
    "rnn",
    "embedding_heavy",
    "mlp",
    "unknown",
]
FAMILIES: tuple[str, ...] = get_args(Family)
# The knowledge task family whose defaults each model family uses.
_FAMILY_TASK: Mapping[str, str] = MappingProxyType(
    {
        "vision_cnn": "vision_cnn",
        "vision_transformer": "vision_transformer",
        "language_transformer": "language_transformer",
        "causal_transformer": "causal_lm",
        "seq2seq_transformer": "translation",
        "diffusion_unet": "diffusion",
        "speech": "speech",
        "graph": "graph",
        "adapter": "adapter_fine_tuning",
        "sparse_embedding": "recommendation",
        "rnn": "rnn",
        "embedding_heavy": "recommendation",
        "mlp": "tabular_mlp",
        "unknown": "general",
    }
)
KINDS: tuple[str, ...] = ("conv", "attention", "recurrent", "embedding", "linear", "norm", "other")

_SOFTMAX_TARGETS: tuple[Any, ...] = (
    F.softmax,
    torch.softmax,
    F.log_softmax,
    F.scaled_dot_product_attention,
)


def family_task(family: str) -> str:
    """The :mod:`optiwise.knowledge` task family whose defaults a model ``family`` uses."""
    if family not in _FAMILY_TASK:
        raise knowledge._unknown("model family", family, list(FAMILIES))
    return _FAMILY_TASK[family]


@dataclass(frozen=True)
class ModelProfile:
    """What :func:`inspect_model` found.

    Attributes
    ----------
    family:
        One of :data:`FAMILIES`.
    n_params:
        Trainable parameters (shared tensors counted once).
    shares:
        Fraction of those parameters per kind of layer (``conv``, ``attention``,
        ``recurrent``, ``embedding``, ``linear``, ``norm``, ``other``).
    batch_norms, layer_norms:
        Number of BatchNorm-type and LayerNorm/RMSNorm/GroupNorm modules.
    attention:
        Names of the attention modules.
    patch_embedding:
        Name of the patch-embedding convolution (kernel == stride) before the attention
        blocks, if any.
    n_blocks:
        Number of numbered blocks (``layers.N``, ``blocks.N``, ``encoder.layer.N``, ...).
    head:
        Module prefix of the output head (the final linear layer outside the numbered
        blocks, not tied to an embedding), or None.
    sparse_tables:
        Names of the ``nn.Embedding`` / ``nn.EmbeddingBag`` modules built with
        ``sparse=True`` (their gradients are sparse: dense optimizers refuse them).
    frozen_params:
        Parameters with ``requires_grad=False`` (a frozen backbone under adapters).
    evidence:
        One line per observation that led to the family.
    """

    family: str
    n_params: int
    shares: Mapping[str, float]
    batch_norms: int = 0
    layer_norms: int = 0
    attention: tuple[str, ...] = ()
    patch_embedding: str | None = None
    n_blocks: int = 0
    head: str | None = None
    sparse_tables: tuple[str, ...] = ()
    frozen_params: int = 0
    evidence: tuple[str, ...] = field(default_factory=tuple)

    @property
    def task(self) -> str:
        """The knowledge task family for this model family."""
        return family_task(self.family)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready)."""
        return {
            "family": self.family,
            "n_params": self.n_params,
            "shares": {k: round(v, 4) for k, v in self.shares.items()},
            "batch_norms": self.batch_norms,
            "layer_norms": self.layer_norms,
            "attention": list(self.attention),
            "patch_embedding": self.patch_embedding,
            "n_blocks": self.n_blocks,
            "head": self.head,
            "sparse_tables": list(self.sparse_tables),
            "frozen_params": self.frozen_params,
            "evidence": list(self.evidence),
        }

    def summary(self) -> str:
        """One line: family, size and the main kinds of layer."""
        kinds = ", ".join(
            f"{k} {v:.0%}"
            for k, v in sorted(self.shares.items(), key=lambda kv: -kv[1])
            if v >= 0.005
        )
        return f"{self.family}, {_count(self.n_params)} parameters ({kinds})"


def _count(n: int) -> str:
    if n >= 1_000_000_000:
        return f"{n / 1e9:.3g}B"
    if n >= 1_000_000:
        return f"{n / 1e6:.3g}M"
    if n >= 1_000:
        return f"{n / 1e3:.3g}k"
    return str(n)


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------


def _qkv_layers(module: nn.Module) -> list[nn.Linear] | None:
    """The module's own linear layers when they look like q/k/v projections, else None."""
    linears = [m for m in module.children() if isinstance(m, nn.Linear)]
    if not linears:
        return None
    for lin in linears:
        if lin.out_features == 3 * lin.in_features:  # fused qkv
            return linears
    by_shape: dict[tuple[int, int], int] = {}
    for lin in linears:
        key = (lin.in_features, lin.out_features)
        by_shape[key] = by_shape.get(key, 0) + 1
    if any(count >= 3 for count in by_shape.values()):
        return linears
    return None


def _applies_softmax(module: nn.Module) -> bool | None:
    """Whether the module's forward pass applies a softmax (None: could not trace it)."""
    graph = _graph(module)
    if graph is None:
        return None
    for node in graph.nodes:
        if node.op == "call_function" and node.target in _SOFTMAX_TARGETS:
            return True
        if node.op == "call_method" and node.target in ("softmax", "log_softmax"):
            return True
        if node.op == "call_module":
            sub = module.get_submodule(str(node.target))
            if isinstance(sub, (nn.Softmax, nn.LogSoftmax)):
                return True
    return False


def _find_attention(model: nn.Module) -> tuple[dict[str, nn.Module], list[str]]:
    """Attention modules by name, and evidence lines."""
    found: dict[str, nn.Module] = {}
    notes: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(f"{n}.") for n in found):
            continue
        if isinstance(module, nn.MultiheadAttention):
            found[name] = module
            continue
        if _qkv_layers(module) is None:
            continue
        softmax = _applies_softmax(module)
        if softmax is False:
            continue
        found[name] = module
        if softmax is None:
            notes.append(
                f"'{name}' has q/k/v-shaped projections; its forward pass could not be traced, "
                "so it counts as attention by structure alone"
            )
    if found:
        label = ", ".join(list(found)[:3]) + (", ..." if len(found) > 3 else "")
        notes.insert(0, f"{len(found)} attention module(s) ({label})")
    return found, notes


# --------------------------------------------------------------------------------------------
# Parameter census
# --------------------------------------------------------------------------------------------


def _kind_of(module: nn.Module, param: torch.Tensor, attention_ids: set[int]) -> str:
    if id(module) in attention_ids:
        return "attention"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        return "recurrent"
    if isinstance(module, (nn.Linear, nn.Bilinear)):
        return "linear"
    if isinstance(module, _NORM_TYPES):
        return "norm"
    if param.ndim >= 2 and param.shape[0] == 1:
        return "embedding"  # class tokens and learned position embeddings
    return "other"


_KIND_PRIORITY = ("embedding", "attention", "conv", "recurrent", "linear", "norm", "other")


def _census(model: nn.Module, attention: Mapping[str, nn.Module]) -> tuple[dict[str, int], int]:
    """Trainable parameter count per kind, each shared tensor once under the kind that
    ranks first (a head tied to an embedding counts as embedding)."""
    attention_ids = {id(m) for m in attention.values()}
    for module in attention.values():
        attention_ids.update(id(m) for m in module.modules())
    kinds: dict[int, str] = {}
    sizes: dict[int, int] = {}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if not param.requires_grad:
                continue
            kind = _kind_of(module, param, attention_ids)
            old = kinds.get(id(param))
            if old is None or _KIND_PRIORITY.index(kind) < _KIND_PRIORITY.index(old):
                kinds[id(param)] = kind
            sizes[id(param)] = param.numel()
    counts = dict.fromkeys(KINDS, 0)
    for pid, kind in kinds.items():
        counts[kind] += sizes[pid]
    return counts, sum(sizes.values())


def _patch_embedding(model: nn.Module, attention: Mapping[str, nn.Module]) -> str | None:
    """A convolution with kernel == stride > 1 registered before the first attention
    module: the patch embedding of a ViT."""
    for name, module in model.named_modules():
        if name in attention:
            return None
        if isinstance(module, nn.modules.conv._ConvNd) and not isinstance(
            module, nn.modules.conv._ConvTransposeNd
        ):
            kernel, stride = tuple(module.kernel_size), tuple(module.stride)
            if kernel == stride and max(kernel) > 1:
                return name
    return None


def _head(model: nn.Module, blocks: Mapping[str, int | None]) -> tuple[str | None, str]:
    """The output head's module prefix, with the reason (or why there is none)."""
    last: tuple[str, nn.Linear] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = (name, module)
    if last is None:
        return None, "no linear output layer"
    name, linear = last
    shared = {
        id(p)
        for mod_name, mod in model.named_modules()
        if mod_name != name
        for p in mod.parameters(recurse=False)
    }
    if id(linear.weight) in shared:
        return None, f"the output layer '{name}' is tied to another layer (an embedding)"
    if blocks.get(f"{name}.weight") is not None:
        return None, f"the last linear layer '{name}' is inside a numbered block"
    top = name.split(".")[0]
    top_params = [n for n, _ in model.named_parameters() if n.startswith(f"{top}.")]
    if top != name and not any(blocks.get(n) is not None for n in top_params):
        top_module = model.get_submodule(top)
        n_top = sum(p.numel() for p in top_module.parameters())
        n_all = sum(p.numel() for p in model.parameters())
        if n_top < n_all:
            return top, f"'{top}' holds the final linear layer '{name}'"
    return name, f"'{name}' is the final linear layer"


# --------------------------------------------------------------------------------------------
# Structure that names a family: causal masks, encoder-decoders, U-Nets, graphs, adapters
# --------------------------------------------------------------------------------------------

_MASK_FUNCTIONS: tuple[Any, ...] = (torch.tril, torch.triu)
_MASK_METHODS = ("tril", "triu", "tril_", "triu_")
# Scatter/gather over an index: how message passing sums neighbours' messages.
_SCATTER_METHODS = (
    "index_add",
    "index_add_",
    "scatter_add",
    "scatter_add_",
    "scatter_reduce",
    "scatter_reduce_",
    "index_reduce",
    "index_reduce_",
)
_SCATTER_FUNCTIONS: tuple[Any, ...] = (
    torch.index_add,
    torch.scatter_add,
    torch.scatter_reduce,
    torch.sparse.mm,
    torch.spmm,
)


def _graph(module: nn.Module) -> torch.fx.Graph | None:
    """The module's own forward pass as an fx graph (None: it could not be traced)."""
    import inspect as pyinspect

    import torch.fx

    try:
        params = pyinspect.signature(module.forward).parameters
        concrete = {
            name: None for name, p in params.items() if p.default is None and name != "self"
        }
        return torch.fx.symbolic_trace(module, concrete_args=concrete).graph
    except Exception:
        return None


def _is_tril_buffer(buf: torch.Tensor) -> bool:
    if buf.ndim < 2 or buf.shape[-1] != buf.shape[-2] or buf.shape[-1] < 2:
        return False
    mat = buf.reshape(-1, buf.shape[-2], buf.shape[-1])[0]
    nonzero = mat != 0
    return bool(torch.equal(nonzero, torch.tril(torch.ones_like(nonzero))))


def _causal_evidence(model: nn.Module, attention: Mapping[str, nn.Module]) -> str | None:
    """Why the model is a decoder-only (causal) transformer, or None."""
    config = getattr(model, "config", None)
    if config is not None and not getattr(config, "is_encoder_decoder", False):
        archs = [str(a) for a in (getattr(config, "architectures", None) or [])]
        if getattr(config, "is_decoder", False) or any(
            "CausalLM" in a or "LMHead" in a for a in archs
        ):
            return "the model's config describes a decoder (is_decoder / a causal-LM head)"
    for name, module in attention.items():
        for buf_name, buf in module.named_buffers():
            if _is_tril_buffer(buf):
                return f"attention '{name}' holds a lower-triangular (causal) mask '{buf_name}'"
        graph = _graph(module)
        if graph is None:
            continue
        for node in graph.nodes:
            if (
                node.op == "call_function"
                and node.target is F.scaled_dot_product_attention
                and node.kwargs.get("is_causal") is True
            ):
                return f"attention '{name}' calls scaled_dot_product_attention(is_causal=True)"
            if node.op == "call_function" and node.target in _MASK_FUNCTIONS:
                return f"attention '{name}' builds a triangular (causal) mask"
            if node.op == "call_method" and node.target in _MASK_METHODS:
                return f"attention '{name}' builds a triangular (causal) mask"
    return None


def _seq2seq_evidence(model: nn.Module) -> str | None:
    """Why the model is an encoder-decoder transformer, or None."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "is_encoder_decoder", False):
        return "the model's config describes an encoder-decoder (is_encoder_decoder)"
    if any(isinstance(m, nn.Transformer) for m in model.modules()):
        return "an nn.Transformer (encoder and decoder stacks)"
    kinds = {type(m) for m in model.modules()}
    if nn.TransformerEncoder in kinds and nn.TransformerDecoder in kinds:
        return "an nn.TransformerEncoder and an nn.TransformerDecoder"
    return None


def _message_passing(model: nn.Module) -> list[str]:
    """Modules whose forward pass sums messages over an index (graph layers)."""
    import inspect as pyinspect

    found: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(f"{n}.") for n in found):
            continue
        if callable(getattr(module, "propagate", None)) and callable(
            getattr(module, "message", None)
        ):
            found.append(name)  # the message-passing API (PyTorch Geometric's)
            continue
        if not any(True for _ in module.parameters(recurse=False)) and not any(
            isinstance(m, nn.Linear) for m in module.children()
        ):
            continue
        try:
            params = pyinspect.signature(module.forward).parameters.values()
        except (TypeError, ValueError):
            continue
        required = [p for p in params if p.default is p.empty and p.kind == p.POSITIONAL_OR_KEYWORD]
        if len(required) < 2:  # a graph layer takes node features and edges (or adjacency)
            continue
        graph = _graph(module)
        if graph is None:
            continue
        for node in graph.nodes:
            if (node.op == "call_method" and node.target in _SCATTER_METHODS) or (
                node.op == "call_function" and node.target in _SCATTER_FUNCTIONS
            ):
                found.append(name)
                break
    return found


def _low_rank(param: torch.Tensor) -> bool:
    if param.ndim != 2:
        return False
    small, large = sorted(param.shape)
    return small <= knowledge.ADAPTER_MAX_RANK_RATIO.value * large


def _adapter_evidence(model: nn.Module, trainable: int) -> tuple[str | None, int]:
    """Why only adapters train (or None), and the frozen parameter count."""
    seen: set[int] = set()
    frozen = 0
    low_rank = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if not p.requires_grad:
            frozen += p.numel()
        elif _low_rank(p):
            low_rank += p.numel()
    total = frozen + trainable
    if frozen == 0 or trainable > knowledge.ADAPTER_MAX_SHARE.value * total:
        return None, frozen
    if low_rank < 0.5 * trainable:
        return None, frozen
    return (
        f"{trainable / total:.2%} of the parameters train, {low_rank / trainable:.0%} of them "
        f"in low-rank matrices, beside {frozen:,} frozen ones: low-rank adapters (LoRA)",
        frozen,
    )


def _first_weight_layer(model: nn.Module) -> nn.Module | None:
    for module in model.modules():
        if any(True for _ in module.parameters(recurse=False)):
            return module
    return None


def _upsamples(model: nn.Module) -> bool:
    return any(
        isinstance(m, (nn.Upsample, nn.modules.conv._ConvTransposeNd)) for m in model.modules()
    )


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------


def inspect_model(model: nn.Module) -> ModelProfile:
    """Profile ``model``: parameter census, structure, and its family with the evidence.

    A model that fits no family is ``"unknown"``; the advisor then uses the general,
    forgiving defaults and says why.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"inspect_model needs an nn.Module, got {type(model).__name__}")
    attention, evidence = _find_attention(model)
    counts, total = _census(model, attention)
    if total == 0:
        raise ValueError(
            f"{type(model).__name__} has no trainable parameters (all frozen or none); "
            "unfreeze some with p.requires_grad_(True)"
        )
    shares = {k: counts[k] / total for k in KINDS}
    dense = total - counts["embedding"]
    dense_share = {k: (counts[k] / dense if dense else 0.0) for k in KINDS}
    min_share = knowledge.FAMILY_MIN_SHARE.value
    batch_norms = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    layer_norms = sum(
        isinstance(m, (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm)) for m in model.modules()
    )
    patch = _patch_embedding(model, attention)
    blocks = block_structure(model)
    n_blocks = max((b for b in blocks.values() if b is not None), default=0)
    head, head_note = _head(model, blocks)

    def pct(kind: str) -> str:
        return f"{dense_share[kind]:.0%} of the non-embedding parameters"

    has = {k: dense_share[k] >= min_share for k in ("conv", "attention", "recurrent")}
    if attention and not has["conv"] and not has["recurrent"]:
        # Attention without a conv or recurrent backbone: a transformer, however wide its MLPs.
        has["attention"] = True
    group_norms = sum(isinstance(m, nn.GroupNorm) for m in model.modules())
    sparse = tuple(
        name
        for name, m in model.named_modules()
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag)) and m.sparse and m.weight.requires_grad
    )
    adapter_note, frozen = _adapter_evidence(model, total)
    first = _first_weight_layer(model)
    graph_layers = [] if adapter_note else _message_passing(model)
    family: str
    if adapter_note is not None:
        family = "adapter"
        evidence.append(adapter_note)
    elif graph_layers:
        family = "graph"
        label = ", ".join(graph_layers[:3]) + (", ..." if len(graph_layers) > 3 else "")
        evidence.append(
            f"{len(graph_layers)} message-passing module(s) ({label}) sum over an index"
        )
    elif (
        has["conv"]
        and group_norms
        and not batch_norms
        and (attention or _upsamples(model))
        and patch is None
    ):
        family = "diffusion_unet"
        parts = [f"convolutions hold {pct('conv')}", f"{group_norms} GroupNorm layer(s)"]
        parts.append("attention blocks" if attention else "up-sampling layers")
        evidence.append(
            "a GroupNorm U-Net (" + ", ".join(parts) + ", no BatchNorm): the denoiser of a "
            "diffusion model"
        )
    elif (
        isinstance(first, nn.Conv1d)
        and (has["attention"] or has["recurrent"])
        and not counts["embedding"]
    ):
        family = "speech"
        encoder = "attention" if has["attention"] else "recurrent"
        evidence.append(
            f"a Conv1d front-end before a sequence encoder ({encoder} holds {pct(encoder)})"
        )
    elif has["attention"] and (patch is not None or has["conv"]):
        family = "vision_transformer"
        if patch is not None:
            evidence.append(f"patch-embedding convolution '{patch}' (kernel == stride)")
        evidence.append(f"attention holds {pct('attention')}; convolutions {pct('conv')}")
    elif has["attention"] and _seq2seq_evidence(model) is not None:
        family = "seq2seq_transformer"
        evidence.append(str(_seq2seq_evidence(model)))
        evidence.append(f"attention holds {pct('attention')}")
    elif has["attention"] and _causal_evidence(model, attention) is not None:
        family = "causal_transformer"
        evidence.append(str(_causal_evidence(model, attention)))
        evidence.append(f"attention holds {pct('attention')}")
    elif has["attention"]:
        family = "language_transformer"
        evidence.append(f"attention holds {pct('attention')}")
        if counts["embedding"]:
            evidence.append(f"token/position embeddings hold {shares['embedding']:.0%}")
        else:
            evidence.append("no token embedding: treated as a sequence transformer")
    elif has["recurrent"]:
        family = "rnn"
        evidence.append(f"recurrent layers hold {pct('recurrent')}")
    elif has["conv"]:
        family = "vision_cnn"
        evidence.append(f"convolutions hold {pct('conv')}")
    elif sparse:
        family = "sparse_embedding"
        evidence.append(
            f"sparse embedding table(s) {', '.join(sparse)} (sparse=True) hold "
            f"{shares['embedding']:.0%} of the parameters"
        )
    elif shares["embedding"] > knowledge.EMBEDDING_HEAVY_SHARE.value:
        family = "embedding_heavy"
        evidence.append(f"embedding tables hold {shares['embedding']:.0%} of the parameters")
    elif dense_share["linear"] + dense_share["norm"] >= 1 - min_share:
        family = "mlp"
        evidence.append(f"linear layers hold {pct('linear')}; no conv/attention/recurrence")
    else:
        family = "unknown"
        evidence.append(
            f"{shares['other']:.0%} of the parameters sit in modules of no known kind and no "
            "convolution, attention or recurrence was found; using the general defaults"
        )
    if batch_norms:
        evidence.append(f"{batch_norms} BatchNorm layer(s)")
    if layer_norms:
        evidence.append(f"{layer_norms} LayerNorm/RMSNorm/GroupNorm layer(s)")
    if n_blocks:
        evidence.append(f"{n_blocks} numbered blocks (usable for layer-wise LR decay)")
    evidence.append(f"head: {head_note}")
    return ModelProfile(
        family=family,
        n_params=total,
        shares=MappingProxyType(shares),
        batch_norms=batch_norms,
        layer_norms=layer_norms,
        attention=tuple(attention),
        patch_embedding=patch,
        n_blocks=n_blocks,
        head=head,
        sparse_tables=sparse,
        frozen_params=frozen,
        evidence=tuple(evidence),
    )
