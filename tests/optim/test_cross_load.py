"""A state dict of Lion, LAMB or LARS does not load into another of them, and the refused
load changes nothing."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import optiwise


@pytest.mark.parametrize(
    ("source", "target"),
    [(s, t) for s in ("lion", "lamb", "lars") for t in ("lion", "lamb", "lars") if s != t],
)
def test_state_dict_of_another_of_these_optimizers_is_refused(source: str, target: str) -> None:
    def trained(name: str) -> torch.optim.Optimizer:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
        opt = optiwise.create_optimizer(name, model)
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(8, 4)).pow(2).mean().backward()
            opt.step()
        return opt

    opt = trained(target)
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(ValueError, match=r"another optimizer|does not use"):
        opt.load_state_dict(trained(source).state_dict())
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for index, state in before["state"].items():
        assert after["state"][index].keys() == state.keys()
        for key, value in state.items():
            assert torch.equal(after["state"][index][key], value)
