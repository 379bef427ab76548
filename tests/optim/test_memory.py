"""optiwise.state_bytes: the actual bytes of optimizer state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import optiwise
from optiwise.optim import AdamW8bit, Lion, Lion8bit, Lookahead, StateBytes, state_bytes


def stepped(make: Callable[[list[nn.Parameter]], torch.optim.Optimizer], *shapes: tuple) -> Any:
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(*s)) for s in shapes]
    opt = make(params)
    for _ in range(2):
        for p in params:
            p.grad = torch.randn_like(p)
        opt.step()
    return opt


BIG = [(128, 64), (4096,), (80, 80)]  # >= 4096 elements each (6400 is not a multiple of 256)


def test_torch_adamw_is_8_bytes_per_parameter() -> None:
    sb = state_bytes(stepped(lambda ps: torch.optim.AdamW(ps), *BIG))
    for i, n in enumerate(sb.numels):
        assert sb.per_param[i] == 8 * n + 4  # exp_avg, exp_avg_sq, a float32 step tensor
    assert sb.total == sum(sb.per_param)
    assert sb.bytes_per_element == pytest.approx(8.0, abs=1e-3)


def test_adamw8bit_is_at_most_2_1_bytes_per_parameter() -> None:
    sb = state_bytes(stepped(lambda ps: AdamW8bit(ps), *BIG, (100,)))
    for i in range(3):
        assert sb.element_ratio(i) <= 2.1
    # 1 + 1 byte of codes and 2 fp32 absmax per 256-element block
    assert sb.per_param[0] == 2 * 8192 + 2 * 4 * 32
    assert sb.per_param[2] == 2 * 6400 + 2 * 4 * 25
    assert sb.per_param[3] == 8 * 100  # below 4096 elements: fp32 moments (a Python int step)
    assert sb.element_ratio(0) == pytest.approx(
        optiwise.knowledge.get_info("adamw8bit").state_bytes.value, abs=0.01
    )
    wide = state_bytes(stepped(lambda ps: AdamW8bit(ps, block_size=2048), (128, 64)))
    assert wide.element_ratio(0) == pytest.approx(2 + 8 / 2048)


def test_lion_state_is_4_bytes_and_lion8bit_about_1() -> None:
    lion = state_bytes(stepped(lambda ps: Lion(ps), *BIG))
    assert lion.bytes_per_element == 4.0
    lion8 = state_bytes(stepped(lambda ps: Lion8bit(ps), *BIG))
    assert all(lion8.element_ratio(i) <= 1.02 for i in range(3))
    assert lion8.per_param[0] == 8192 + 4 * 32


def test_adafactor_is_far_below_adamw_on_2d_weights() -> None:
    shapes = [(512, 256), (256, 256)]
    adamw = state_bytes(stepped(lambda ps: torch.optim.AdamW(ps), *shapes))
    adafactor = state_bytes(stepped(lambda ps: torch.optim.Adafactor(ps), *shapes))
    # factored second moment: one row and one column vector per matrix
    assert adafactor.per_param[0] == (512 + 256) * 4 + 4
    assert adafactor.bytes_per_element < 0.01 * adamw.bytes_per_element


def test_lookahead_counts_inner_state_and_slow_weights() -> None:
    inner_only = state_bytes(stepped(lambda ps: AdamW8bit(ps), *BIG))
    wrapped = state_bytes(stepped(lambda ps: Lookahead(AdamW8bit(ps)), *BIG))
    for i, n in enumerate(wrapped.numels):
        assert wrapped.per_param[i] == inner_only.per_param[i] + 4 * n
    po = pytest.importorskip("pytorch_optimizer", reason="pytorch_optimizer is not installed")
    theirs = state_bytes(stepped(lambda ps: po.Lookahead(torch.optim.SGD(ps, lr=0.1)), *BIG))
    assert theirs.bytes_per_element == pytest.approx(4.0)  # slow weights; plain SGD has none


def test_counts_nested_tensors_once_and_ignores_python_numbers() -> None:
    p, q = nn.Parameter(torch.zeros(10)), nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([p, q], lr=0.1)
    assert state_bytes(opt) == StateBytes(total=0, per_param=(0, 0), numels=(10, 3))
    shared = torch.zeros(10, dtype=torch.float64)
    opt.state[p] = {"a": shared, "b": [shared, torch.zeros(2, dtype=torch.int8)], "n": 7}
    opt.state[q] = {"c": {"d": torch.zeros(3, dtype=torch.bfloat16)}}
    sb = state_bytes(opt)
    assert sb.per_param == (80 + 2, 6) and sb.total == 88
    assert sb.bytes_per_element == pytest.approx(88 / 13)
    assert optiwise.state_bytes is state_bytes
