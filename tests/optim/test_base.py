from __future__ import annotations

import pytest
import torch

from optiwise.optim._base import OptiwiseOptimizer
from optiwise.optim._validation import check_positive, check_power_of_two, check_range
from tests.optim.demo_optimizer import DemoMomentum


def test_load_keeps_saved_state_dtype() -> None:
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.bfloat16))
    opt = DemoMomentum([p])
    buf = torch.tensor([1.0 + 2**-20, 2.0, 3.0], dtype=torch.float32)  # not representable in bf16
    sd = {"state": {0: {"momentum_buffer": buf}}, "param_groups": opt.state_dict()["param_groups"]}
    opt.load_state_dict(sd)
    loaded = opt.state[p]["momentum_buffer"]
    assert loaded.dtype == torch.float32 and torch.equal(loaded, buf)
    assert loaded.data_ptr() != buf.data_ptr()


def test_a_state_dict_can_be_loaded_twice() -> None:
    # torch's load_state_dict adds "differentiable" to the optimizer's defaults; the next
    # load must not take the saved groups' lack of it for another optimizer's state dict.
    p = torch.nn.Parameter(torch.ones(3))
    opt = DemoMomentum([p])
    p.grad = torch.ones(3)
    opt.step()
    saved = opt.state_dict()
    opt.load_state_dict(saved)
    opt.load_state_dict(saved)
    assert torch.equal(opt.state[p]["momentum_buffer"], torch.ones(3))


def test_foreach_policy() -> None:
    cpu = [torch.zeros(1)]
    assert OptiwiseOptimizer._use_foreach(None, cpu) is False
    assert OptiwiseOptimizer._use_foreach(True, cpu) is True
    assert OptiwiseOptimizer._use_foreach(False, cpu) is False


def test_validation_helpers() -> None:
    check_positive("learning rate", 1e-3)
    with pytest.raises(
        ValueError, match=r"Invalid learning rate: 0 \(must be a finite number > 0\)"
    ):
        check_positive("learning rate", 0)
    check_positive("eps", 0, allow_zero=True)
    check_range("alpha", 1.0, 0.0, 1.0, low_open=True, high_open=False)
    with pytest.raises(ValueError, match=r"Invalid alpha: 0.0 \(must be in \(0, 1\]\)"):
        check_range("alpha", 0.0, 0.0, 1.0, low_open=True, high_open=False)
    check_power_of_two("block size", 256)
    for bad in (0, 3, 255, 2.0, True):
        with pytest.raises(ValueError, match="power of two"):
            check_power_of_two("block size", bad)


def test_state_dict_not_a_mapping() -> None:
    opt = DemoMomentum([torch.nn.Parameter(torch.ones(2))])
    with pytest.raises(ValueError, match="expected a mapping"):
        opt.load_state_dict({"state": {}})
