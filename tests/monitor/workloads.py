"""Small real training runs on scikit-learn's digits, with faults to inject, for the monitor
tests: an MLP, a post-LN transformer reading the 8 image rows as tokens, and a ReLU RNN
reading the 64 pixels one by one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from optiwise.monitor import Monitor


@dataclass
class Digits:
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor


_DIGITS: Digits | None = None


def digits() -> Digits:
    global _DIGITS
    if _DIGITS is None:
        pytest.importorskip("sklearn", reason="scikit-learn provides the digits data")
        from optiwise.bench.data import load_digits

        d = load_digits()
        _DIGITS = Digits(d.x_train, d.y_train, d.x_val, d.y_val)
    return _DIGITS


def mlp(hidden: int = 64, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


class RowTransformer(nn.Module):
    """Post-LN transformer encoder over the 8 rows of a digit (the original, warmup-hungry
    layout of Vaswani et al. 2017)."""

    def __init__(self, layers: int = 2, dim: int = 32, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.inp = nn.Linear(8, dim)
        self.pos = nn.Parameter(torch.zeros(8, dim))
        layer = nn.TransformerEncoderLayer(dim, 4, 2 * dim, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.enc(self.inp(x.view(-1, 8, 8)) + self.pos).mean(1))


class PixelRNN(nn.Module):
    """ReLU RNN over the 64 pixels with identity recurrent init (Le et al. 2015's IRNN),
    which explodes now and then without clipping."""

    def __init__(self, hidden: int = 64, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.rnn = nn.RNN(1, hidden, nonlinearity="relu", batch_first=True)
        with torch.no_grad():
            self.rnn.weight_hh_l0.copy_(torch.eye(hidden))
        self.head = nn.Linear(hidden, 10)

    def forward(self, x: Tensor) -> Tensor:
        _, h = self.rnn(x.view(-1, 64, 1))
        return self.head(h[-1])


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    steps: int = 200,
    batch: int = 64,
    zero_grad: bool = True,
    clip: float | None = None,
    warmup: int = 0,
    val_every: int | None = None,
    scaler: torch.amp.GradScaler | None = None,
    inf_every: int | None = None,
    train_subset: int | None = None,
    monitor_kw: dict[str, Any] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Monitor:
    """A plain training loop on digits with a Monitor; returns the (closed) monitor."""
    d = digits()
    x, y = d.x_train, d.y_train
    if train_subset is not None:
        x, y = x[:train_subset], y[:train_subset]
    monitor = Monitor(model, optimizer, scaler=scaler, batch_size=batch, **(monitor_kw or {}))
    sched = (
        torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
        if warmup
        else None
    )
    g = torch.Generator().manual_seed(0)
    last = [p for p in model.parameters() if p.requires_grad][-1]
    state = {"step": 0}
    if inf_every is not None:  # an fp16 overflow: the backward pass yields Inf now and then

        def overflow(grad: Tensor) -> Tensor:
            if state["step"] % inf_every == 0:
                return torch.full_like(grad, float("inf"))
            return grad

        last.register_hook(overflow)
    for step in range(steps):
        state["step"] = step
        i = torch.randint(0, len(y), (min(batch, len(y)),), generator=g)
        if zero_grad:
            optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[i]), y[i])
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            monitor.step(loss)
        else:
            loss.backward()
            norm = nn.utils.clip_grad_norm_(model.parameters(), clip) if clip else None
            optimizer.step()
            monitor.step(loss, grad_norm=norm)
        if sched is not None:
            sched.step()
        if val_every and (step + 1) % val_every == 0:
            with torch.no_grad():
                monitor.log_val(loss=float(F.cross_entropy(model(d.x_val), d.y_val)))
        if on_step is not None:
            on_step(step)
    monitor.close()
    return monitor
