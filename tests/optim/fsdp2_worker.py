"""Optimizers under FSDP2 (``fully_shard``) in 2 CPU processes (gloo), for test_fsdp2.py.

:func:`worker` runs in each process: every case of :data:`CASES` on a sharded copy of
:func:`make_model`, and the checkpoint round trips of :data:`CHECKPOINT_CASES`; rank 0 saves
the full parameters after the steps (``DTensor.full_tensor()``) for the test to compare
against the same case in a single process (:func:`train`).

Both ranks train on the same batch: FSDP2 averages the two gradients, ``(g + g) / 2 = g``
exactly, so the gradients equal the single process's bit for bit and any difference in the
parameters comes from the optimizer's step on shards.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from optiwise.optim import LAMB, LARS, AdamW8bit, Lion, Lion8bit, Lookahead, ScheduleFreeAdamW
from optiwise.optim.muon import MuonAdamW
from optiwise.optim.prodigy import Prodigy
from optiwise.optim.soap import SOAP
from tests.optim.cases import SophiaGRefreshing

STEPS = 3
#: The code paths of the optimizers that have them.
PATHS: dict[str, dict[str, Any]] = {
    "fused": {"fused": True},
    "foreach": {"foreach": True, "fused": False},
    "single": {"foreach": False, "fused": False},
}
#: 8-bit state for the tensors of >= 2048 elements, in blocks of 64: each such tensor's
#: first shard holds a whole number of blocks, so the blocks of the shards are the single
#: process's blocks.
_Q = {"min_8bit_numel": 2048, "block_size": 64}

Factory = Callable[..., Optimizer]

_ALGORITHMS: dict[str, Factory] = {
    "lion": lambda ps, **kw: Lion(ps, lr=1e-3, weight_decay=0.1, **kw),
    "lamb": lambda ps, **kw: LAMB(ps, lr=1e-2, weight_decay=0.01, **kw),
    "lars": lambda ps, **kw: LARS(ps, lr=0.5, weight_decay=1e-4, trust_coefficient=0.02, **kw),
    "sophiag": lambda ps, **kw: SophiaGRefreshing(
        ps, every=2, batch_size=8, lr=1e-2, rho=0.05, weight_decay=0.01, **kw
    ),
    "schedule_free_adamw": lambda ps, **kw: ScheduleFreeAdamW(ps, lr=1e-2, warmup_steps=2, **kw),
    "adamw8bit": lambda ps, **kw: AdamW8bit(ps, lr=1e-2, weight_decay=0.1, **_Q, **kw),
    "lion8bit": lambda ps, **kw: Lion8bit(ps, lr=1e-3, weight_decay=0.1, **_Q, **kw),
}


def _with(make: Factory, options: dict[str, Any]) -> Factory:
    return lambda ps: make(ps, **options)


CASES: dict[str, Factory] = {
    f"{name}-{path}": _with(make, options)
    for name, make in _ALGORITHMS.items()
    for path, options in PATHS.items()
}
CASES.update(
    {
        "lookahead_lamb-fused": lambda ps: Lookahead(
            LAMB(ps, lr=1e-2, fused=True), k=2, alpha=0.5, fused=True
        ),
        "lookahead_adamw-single": lambda ps: Lookahead(
            torch.optim.AdamW(ps, lr=1e-2, foreach=False), k=2, alpha=0.5, foreach=False
        ),
        "prodigy-default": lambda ps: Prodigy(ps, lr=1.0),
        "torch_adamw-foreach": lambda ps: torch.optim.AdamW(ps, lr=1e-2, foreach=True),
    }
)
#: Optimizers that refuse DTensor parameters (they need whole matrices), by name.
REFUSED: dict[str, Factory] = {
    "muon": lambda ps: MuonAdamW(ps, lr=1e-2),
    "soap": lambda ps: SOAP(ps, lr=1e-2),
}
#: Cases whose sharded checkpoint (torch.distributed.checkpoint) must resume exactly.
CHECKPOINT_CASES = ("lamb-fused", "adamw8bit-fused", "lion8bit-single", "lars-foreach")


def make_model() -> nn.Sequential:
    """A tiny model whose tensors cover the fused path's routes under sharding: a tensor
    whose shards are "large" (>= 2^15 elements), small ones, an odd first dimension
    (uneven shards) and 1-row tensors (an empty shard on rank 1)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(256, 256),
        nn.Tanh(),
        nn.Linear(256, 64),
        nn.LayerNorm(64),
        nn.Linear(64, 33),
        nn.Tanh(),
        nn.Linear(33, 1),
    )


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(8, 256, generator=g), torch.randn(8, 1, generator=g)


def train(model: nn.Module, optimizer: Optimizer, steps: int, start: int = 0) -> None:
    """``steps`` steps of an MSE regression on :func:`batch`, in one torch thread as the
    workers run: the bits of a gradient depend on how many threads summed it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for step in range(start, start + steps):
            x, y = batch(step)
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    finally:
        torch.set_num_threads(threads)


def full(model: nn.Module) -> list[torch.Tensor]:
    """The model's parameters, whole (gathered from the shards)."""
    out = []
    for p in model.parameters():
        t = p.detach()
        if hasattr(t, "full_tensor"):
            t = t.full_tensor()
        out.append(t.clone())
    return out


def reference(name: str) -> list[torch.Tensor]:
    """The parameters after :data:`STEPS` steps of case ``name`` in one process."""
    model = make_model()
    train(model, CASES[name](model.parameters()), STEPS)
    return full(model)


def _sharded(name: str) -> tuple[nn.Module, Optimizer]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (2,))
    model = make_model()
    for module in model:
        if isinstance(module, (nn.Linear, nn.LayerNorm)):
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model, CASES[name](model.parameters())


def _checkpoint(name: str, directory: str) -> dict[str, list[torch.Tensor]]:
    """Train 2 steps, save (dcp), train 2 more; then a new model and optimizer load the
    checkpoint and train the same 2 steps. Both runs' parameters."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model, optimizer = _sharded(name)
    train(model, optimizer, 2)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=directory)
    train(model, optimizer, 2, start=2)
    straight = full(model)

    model, optimizer = _sharded(name)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=directory)
    set_state_dict(
        model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
    )
    train(model, optimizer, 2, start=2)
    return {"straight": straight, "resumed": full(model)}


def partial_grad_step(name: str, sharded: bool) -> list[torch.Tensor]:
    """One step of case ``name`` on a 64x32 parameter whose gradient is given as a Partial
    DTensor (each rank holds half of it, as tensor parallelism leaves gradients), or, with
    ``sharded=False``, on the whole tensors in one process."""
    g = torch.Generator().manual_seed(7)
    weight, grad = torch.randn(64, 32, generator=g), torch.randn(64, 32, generator=g)
    if not sharded:
        param = nn.Parameter(weight)
        param.grad = grad
        CASES[name]([param]).step()
        return [param.detach().clone()]
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Partial, Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (2,))
    param = nn.Parameter(distribute_tensor(weight, mesh, [Shard(0)]))
    param.grad = DTensor.from_local(grad / 2, mesh, [Partial()], run_check=False)
    CASES[name]([param]).step()
    return [param.detach().full_tensor()]


#: Cases stepped on a Partial gradient (:func:`partial_grad_step`).
PARTIAL_CASES = ("lion-fused", "adamw8bit-fused", "lamb-fused")


def worker(
    rank: int,
    store: str,
    out: str,
    names: list[str] | None = None,
    checkpoints: list[str] | None = None,
) -> None:
    """One of the 2 processes: the cases ``names`` (default: all), then the checkpoint
    round trips of ``checkpoints`` (default: :data:`CHECKPOINT_CASES`)."""
    import torch.distributed as dist

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    results: dict[str, Any] = {
        "cases": {},
        "errors": {},
        "checkpoints": {},
        "refused": {},
        "partial": {},
    }
    try:
        for name in CASES if names is None else names:
            try:
                model, optimizer = _sharded(name)
                train(model, optimizer, STEPS)
                results["cases"][name] = full(model)
            except Exception as err:  # reported per case by the test
                results["errors"][name] = "".join(traceback.format_exception(err)).strip()
            dist.barrier()
        for name in PARTIAL_CASES:
            try:
                results["partial"][name] = partial_grad_step(name, sharded=True)
            except Exception as err:
                results["errors"][f"partial:{name}"] = "".join(traceback.format_exception(err))
        for name, make in REFUSED.items():
            model, _ = _sharded("torch_adamw-foreach")
            try:
                make(model.parameters())
            except ValueError as err:
                results["refused"][name] = str(err)
        for name in CHECKPOINT_CASES if checkpoints is None else checkpoints:
            try:
                directory = str(Path(out) / f"ckpt-{name}")
                results["checkpoints"][name] = _checkpoint(name, directory)
            except Exception as err:
                results["errors"][f"checkpoint:{name}"] = "".join(
                    traceback.format_exception(err)
                ).strip()
            dist.barrier()
    finally:
        torch.save(results, Path(out) / f"rank{rank}.pt")
        dist.destroy_process_group()
