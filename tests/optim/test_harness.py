"""The reference harness itself: torch's SGD against a hand-written SGD, and digits training."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from tests.optim.harness import (
    assert_params_close,
    max_abs_diff,
    run_optimizer,
    run_reference,
    train_digits,
)


def sgd_momentum_ref(
    params: list[Tensor], grads: list[Tensor], state: dict[int, dict[str, Any]], t: int
) -> None:
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        buf = state[i].get("buf")
        buf = g.clone() if buf is None else 0.9 * buf + g
        state[i]["buf"] = buf
        p -= 0.05 * buf


def test_reference_matches_torch_sgd() -> None:
    got = run_optimizer(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9))
    want = run_reference(sgd_momentum_ref)
    assert_params_close(got, want, atol=1e-6)


def test_harness_detects_a_wrong_update() -> None:
    got = run_optimizer(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.8))
    want = run_reference(sgd_momentum_ref)
    assert max_abs_diff(got, want) > 1e-3
    with pytest.raises(AssertionError, match="max abs diff"):
        assert_params_close(got, want)


def test_digits_training_learns() -> None:
    pytest.importorskip("sklearn")
    loss = train_digits(lambda ps: torch.optim.AdamW(ps, lr=1e-3), steps=150)
    assert loss < 0.5  # chance level is ln(10) = 2.30
