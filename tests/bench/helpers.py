"""Shared pieces of the benchmark tests: fake optimizers registered for one test, and
fabricated run results."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from optiwise import knowledge
from optiwise.bench.protocol import RunResult
from optiwise.optim import registry


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one torch intra-op thread (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def register_fake(monkeypatch: pytest.MonkeyPatch, name: str, cls: type) -> None:
    """Register ``cls`` under ``name`` for the current test only (facts borrowed from
    ``sgd_plain``)."""
    info = dataclasses.replace(knowledge.get_info("sgd_plain"), name=name)
    monkeypatch.setitem(knowledge._OPTIMIZERS, name, info)
    monkeypatch.setitem(registry._ENTRIES, name, registry.RegistryEntry(name, cls))
    monkeypatch.setitem(registry._LOOKUP, name, name)


class ScheduleFreeSGD(torch.optim.SGD):
    """SGD with schedule-free style ``train()``/``eval()`` switches that log their calls."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.calls: list[str] = []
        self.training = True
        self.steps_in_eval_mode = 0

    def train(self) -> None:
        self.calls.append("train")
        self.training = True

    def eval(self) -> None:
        self.calls.append("eval")
        self.training = False

    def step(self, closure: Any = None) -> Any:
        if not self.training:
            self.steps_in_eval_mode += 1
        return super().step(closure)


class HessianSGD(torch.optim.SGD):
    """SGD that counts Sophia-style ``update_hessian()`` calls and checks a gradient is
    present when it is called."""

    def __init__(self, params: Any, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.hessian_calls = 0

    def update_hessian(self) -> None:
        grads = [p.grad for g in self.param_groups for p in g["params"]]
        assert any(g is not None for g in grads), "Hessian estimate without a gradient"
        self.hessian_calls += 1


def fake_result(
    optimizer: str,
    lr: float,
    metric: float,
    *,
    seed: int = 0,
    steps_to_target: int | None = None,
    time_to_target: float | None = None,
    val_loss: float | None = None,
) -> RunResult:
    """A RunResult with the given outcome (curves of two evaluations)."""
    loss = metric if val_loss is None else val_loss
    diverged = not math.isfinite(metric)
    return RunResult(
        optimizer=optimizer,
        lr=lr,
        seed=seed,
        budget=10,
        steps=[0, 10],
        train_loss=[math.nan, loss],
        val_loss=[2 * loss if math.isfinite(loss) else 1.0, loss],
        metric=[0.0, metric],
        final_val_loss=loss,
        final_metric=metric,
        best_metric=metric,
        steps_to_target=steps_to_target,
        time_to_target=time_to_target,
        train_time=1.0,
        eval_time=0.1,
        diverged=diverged,
        schedule="warmup_cosine",
        hparams={"lr": lr},
        data_source="fabricated",
    )
