"""Shared pieces of the fused-path tests: a model with tensors on every route, a training
loop, a relative tolerance and a count of compiled graphs."""

from __future__ import annotations

import io
import os
import shutil

import pytest
import torch
from torch import Tensor, nn

# torch.compile builds CPU kernels with a C++ compiler (CXX, g++ by default)
compiles = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None,
    reason="torch.compile needs a C++ compiler on CPU (set CXX or install g++)",
)


def graphs() -> int:
    """Graphs compiled so far in this process."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def assert_rel_close(got: list[Tensor], want: list[Tensor], rtol: float = 1e-6) -> None:
    """Each tensor within ``rtol`` relative (to its largest element where it crosses 0)."""
    for a, b in zip(got, want, strict=True):
        scale = b.abs().max().item() if b.numel() else 0.0
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * scale)


def model(seed: int = 0, hidden: int = 200) -> nn.Module:
    """An MLP with one weight above FLAT_NUMEL elements (34000, rows of 2000 on the
    multi-pass path) and the rest below it."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(12, hidden), nn.Tanh(), nn.Linear(hidden, 170), nn.Linear(170, 3)
    )


def train(net: nn.Module, opt: torch.optim.Optimizer, steps: range, sched: object = None) -> None:
    """``steps`` steps of cross-entropy on fixed random batches (batch ``i`` for step ``i``)."""
    for i in steps:
        g = torch.Generator().manual_seed(i)
        x, y = torch.randn(16, 12, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad(set_to_none=True)
        dtype = next(net.parameters()).dtype
        nn.functional.cross_entropy(net(x.to(dtype)).float(), y).backward()
        opt.step()
        if sched is not None:
            sched.step()  # type: ignore[attr-defined]


def params_of(net: nn.Module) -> list[Tensor]:
    return [p.detach() for p in net.parameters()]


def states(opt: torch.optim.Optimizer) -> dict[int, dict[str, object]]:
    return opt.state_dict()["state"]  # type: ignore[no-any-return]


def state_tensors(opt: torch.optim.Optimizer) -> list[Tensor]:
    """Every tensor of the optimizer's state dict that has more than one element, in order."""
    out = []
    for _, state in sorted(states(opt).items()):
        for _, value in sorted(state.items()):
            if isinstance(value, Tensor) and value.numel() > 1:
                out.append(value)
    sd = opt.state_dict()
    for _, value in sorted(sd.get("lookahead", {}).get("slow_params", {}).items()):
        out.append(value)
    return out


def reload(opt: torch.optim.Optimizer) -> dict[str, object]:
    """The optimizer's state dict after a round trip through torch.save / torch.load."""
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # type: ignore[no-any-return]
