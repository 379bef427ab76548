"""DTensor parameters (FSDP2's ``fully_shard``, tensor parallelism) on optiwise's own paths.

Under FSDP2 every parameter, gradient and state tensor is a ``DTensor`` whose local tensor
is this rank's shard. Elementwise updates are the same on a shard as on the whole tensor,
so the fused, compiled and 8-bit kernels run on the local tensors
(:func:`local`; under ``no_grad`` ``to_local()`` returns the DTensor's own local tensor,
so in-place updates of it update the DTensor). What needs the whole tensor is a sum over
it (LAMB's and LARS's norms): :func:`all_reduce_sums` adds the shards' sums over the mesh
dimensions a tensor is sharded on, so every rank gets the sums of the full tensor.

State made from a local tensor is handed back to ``optimizer.state`` as a DTensor with the
parameter's mesh and placements (:func:`like`), so that ``state_dict()``,
``torch.distributed.checkpoint`` and ``get_state_dict`` see sharded state as they do for
torch's own optimizers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "all_reduce_sums",
    "any_dtensor",
    "blocks_like",
    "is_dtensor",
    "largest_shard",
    "like",
    "local",
    "local_grads",
    "locals_",
    "sharded_dims",
]

try:  # torch.distributed is optional in torch builds
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor._dtensor_spec import DTensorSpec, TensorMeta
    from torch.distributed.tensor.placement_types import Replicate, Shard
except ImportError:  # pragma: no cover - torch without distributed
    DTensor = None  # type: ignore[assignment,misc]


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a DTensor."""
    return DTensor is not None and isinstance(t, DTensor)


def any_dtensor(tensors: Sequence[Any]) -> bool:
    """Whether any of ``tensors`` is a DTensor."""
    return DTensor is not None and any(isinstance(t, DTensor) for t in tensors)


def local(t: Tensor) -> Tensor:
    """This rank's local tensor of a DTensor (its own storage: in-place updates of it update
    the DTensor); any other tensor as it is."""
    if DTensor is not None and isinstance(t, DTensor):
        if t.requires_grad and torch.is_grad_enabled():
            raise RuntimeError("optiwise: a DTensor's local tensor is needed under no_grad")
        return t._local_tensor
    return t


def locals_(tensors: Sequence[Tensor]) -> list[Tensor]:
    """:func:`local` of each of ``tensors``."""
    if not any_dtensor(tensors):
        return list(tensors)
    return [local(t) for t in tensors]


def like(param: Any, value: Tensor) -> Tensor:
    """``value`` (a tensor of ``param``'s local shape) as a DTensor placed as ``param``
    (sharing ``value``'s storage, so the DTensor's local tensor *is* ``value``); ``value``
    itself when ``param`` is not a DTensor."""
    if DTensor is None or not isinstance(param, DTensor):
        return value
    spec = param._spec
    meta = TensorMeta(param.shape, param.stride(), value.dtype)
    return DTensor(
        value,
        DTensorSpec(spec.mesh, spec.placements, tensor_meta=meta),
        requires_grad=False,
    )


def sharded_dims(t: Any) -> tuple[int, ...]:
    """The mesh dimensions a DTensor is sharded (or partial) on; () for other tensors."""
    if DTensor is None or not isinstance(t, DTensor):
        return ()
    return tuple(i for i, p in enumerate(t.placements) if p.is_shard() or p.is_partial())


def all_reduce_sums(params: Sequence[Any], sums: Tensor) -> Tensor:
    """Per-tensor sums over the whole tensors from sums over each rank's shards.

    ``sums[i]`` holds sums over the local shard of ``params[i]``; rows of DTensors sharded
    on some mesh dimensions are all-reduced (one collective per mesh dimension and set of
    tensors sharded alike), in place. Every rank must call this with the same tensors.
    """
    if not any_dtensor(params):
        return sums
    groups: dict[tuple[Any, int], list[int]] = {}
    for i, p in enumerate(params):
        for dim in sharded_dims(p):
            groups.setdefault((p.device_mesh, dim), []).append(i)
    for (mesh, dim), index in groups.items():
        process_group = mesh.get_group(dim)
        if len(index) == len(params):
            torch.distributed.all_reduce(sums, group=process_group)
        else:
            where = torch.tensor(index, dtype=torch.long, device=sums.device)
            part = sums.index_select(0, where)
            torch.distributed.all_reduce(part, group=process_group)
            sums.index_copy_(0, where, part)
    return sums


def largest_shard(t: Any) -> tuple[int, int]:
    """``(shards, numel)``: over how many ranks a DTensor is sharded, and the elements of
    its largest shard (``torch.chunk``'s split: the first shards are the largest)."""
    shape = list(t.shape)
    shards = 1
    for mesh_dim, placement in enumerate(t.placements):
        if placement.is_shard():
            size = t.device_mesh.size(mesh_dim)
            dim = placement.dim
            shape[dim] = -(-shape[dim] // size)
            shards *= size
    numel = 1
    for n in shape:
        numel *= n
    return shards, numel


def blocks_like(param: Any, numel: int) -> Tensor:
    """A zero fp32 DTensor of ``numel`` elements sharded on dimension 0 over the mesh
    dimensions ``param`` is sharded on (replicated over the others): each rank's local
    tensor holds ``numel / shards`` elements (per-block state of its shard)."""
    shards, _ = largest_shard(param)
    spec = param._spec
    placements = tuple(Shard(0) if p.is_shard() else Replicate() for p in spec.placements)
    value = torch.zeros(numel // shards, dtype=torch.float32, device=local(param).device)
    meta = TensorMeta(torch.Size((numel,)), (1,), torch.float32)
    return DTensor(value, DTensorSpec(spec.mesh, placements, tensor_meta=meta), requires_grad=False)


def local_grads(params: Sequence[Any], grads: Sequence[Any]) -> list[Tensor]:
    """The local tensors of ``grads``, each first placed as its parameter when it is not
    (e.g. a Partial gradient of tensor parallelism: its local tensor is not a shard of the
    gradient), so that an elementwise update of the shards is the update of the tensor."""
    if not any_dtensor(grads):
        return list(grads)
    out = []
    for p, g in zip(params, grads, strict=True):
        if is_dtensor(g) and is_dtensor(p) and g.placements != p.placements:
            g = g.redistribute(p.device_mesh, p.placements)
        out.append(local(g))
    return out
