"""Prodigy against the paper's pseudo-code, against prodigyopt, on real data, on bad input."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import optiwise
from optiwise import knowledge
from optiwise.optim.prodigy import Prodigy
from tests.optim.harness import (
    RefStep,
    assert_params_close,
    run_optimizer,
    run_reference,
    train_digits,
)


def prodigy_reference(
    lr: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    d0: float = 1e-6,
) -> RefStep:
    """Mishchenko & Defazio 2023, Algorithm 3 (Prodigy, Adam version), with decoupled weight
    decay: m, v the moments of d_k g; r, s the EMAs (rate sqrt(beta2)) of
    lr d_k^2 <g, x0 - x> and lr d_k^2 g; d_{k+1} = max(d_k, r / ||s||_1);
    x -= lr d_k m / (sqrt(v) + d_{k+1} eps) (the published code's epsilon, which uses the new
    estimate; the paper writes d_k)."""
    beta1, beta2 = betas
    beta3 = math.sqrt(beta2)
    shared: dict[str, Any] = {"d": d0, "r": 0.0}

    def step(params: list[Tensor], grads: list[Tensor], state: dict[int, Any], t: int) -> None:
        d = shared["d"]
        r = beta3 * shared["r"]
        s_norm = 0.0
        for i, (x, g) in enumerate(zip(params, grads, strict=True)):
            st = state[i]
            if t == 1:
                st.update(x0=x.clone(), m=torch.zeros_like(x), v=torch.zeros_like(x))
                st["s"] = torch.zeros_like(x)
            st["m"] = beta1 * st["m"] + (1 - beta1) * d * g
            st["v"] = beta2 * st["v"] + (1 - beta2) * d * d * g * g
            r += (1 - beta3) * lr * d * d * torch.dot(g.flatten(), (st["x0"] - x).flatten()).item()
            st["s"] = beta3 * st["s"] + (1 - beta3) * lr * d * d * g
            s_norm += st["s"].abs().sum().item()
        new_d = max(d, r / s_norm)
        for i, x in enumerate(params):
            st = state[i]
            x -= lr * d * weight_decay * x
            x -= lr * d * st["m"] / (st["v"].sqrt() + new_d * eps)
        shared.update(d=new_d, r=r)

    return step


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_matches_the_paper_reference(weight_decay: float) -> None:
    got = run_optimizer(lambda ps: Prodigy(ps, weight_decay=weight_decay), dtype=torch.float64)
    assert_params_close(got, run_reference(prodigy_reference(weight_decay=weight_decay)))


def test_float32_stays_close_to_the_reference() -> None:
    got = run_optimizer(lambda ps: Prodigy(ps, lr=1.0), steps=50)
    want = run_reference(prodigy_reference(), steps=50)
    assert_params_close(got, want, atol=1e-4)


CONFIGS: list[dict[str, Any]] = [
    {},
    {"weight_decay": 0.01},
    {"weight_decay": 0.01, "decouple": False},
    {"use_bias_correction": True},
    {"safeguard_warmup": True, "lr": 0.5},
    {"betas": (0.0, 0.99)},
    {"growth_rate": 1.02, "d_coef": 0.5, "beta3": 0.9},
]


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c) for c in CONFIGS])
def test_identical_to_prodigyopt(config: dict[str, Any]) -> None:
    prodigyopt = pytest.importorskip("prodigyopt")
    ours = run_optimizer(lambda ps: Prodigy(ps, **config))
    theirs = run_optimizer(lambda ps: prodigyopt.Prodigy(ps, **config))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_estimate_grows_from_d0_and_lives_in_the_groups() -> None:
    model = nn.Linear(10, 4)
    opt = Prodigy([{"params": [model.weight]}, {"params": [model.bias]}])
    for t in range(20):
        opt.zero_grad()
        x = torch.randn(32, 10, generator=torch.Generator().manual_seed(t))
        model(x).pow(2).mean().backward()
        opt.step()
    d = opt.param_groups[0]["d"]
    assert d > 100 * 1e-6
    assert all(g["d"] == d and g["k"] == 20 for g in opt.param_groups)
    assert set(opt.state[model.weight]) == {"step", "s", "p0", "exp_avg", "exp_avg_sq"}
    assert opt.state_dict()["param_groups"][1]["d"] == d


def test_no_gradient_means_no_step_and_no_estimate() -> None:
    w = nn.Parameter(torch.ones(3))
    opt = Prodigy([w])
    w.grad = torch.zeros(3)
    opt.step()
    assert opt.param_groups[0]["k"] == 0 and torch.equal(w.detach(), torch.ones(3))


def test_a_group_at_lr_zero_does_not_move() -> None:
    model = nn.Linear(10, 4)
    opt = Prodigy([{"params": [model.weight]}, {"params": [model.bias], "lr": 0.0}])
    bias = model.bias.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 10)).pow(2).mean().backward()
        opt.step()
    assert torch.equal(model.bias.detach(), bias)
    assert opt.param_groups[0]["d"] > 1e-6


def test_state_is_four_buffers_per_parameter() -> None:
    model = nn.Linear(64, 64)
    opt = Prodigy(model.parameters())
    model(torch.randn(2, 64)).sum().backward()
    opt.step()
    n = sum(p.numel() for p in model.parameters())
    tensors = [t for s in opt.state.values() for t in s.values() if isinstance(t, Tensor)]
    assert sum(t.numel() * t.element_size() for t in tensors) == 16 * n
    assert knowledge.get_info("prodigy").state_bytes.value == 16.0


def test_trains_on_digits_at_the_knowledge_default() -> None:
    hp = {k: f.value for k, f in knowledge.defaults("prodigy").hparams.items()}
    # no LR given: the estimate finds one (2.33 before training)
    assert train_digits(lambda ps: Prodigy(ps, **hp), steps=150) < 0.3


def test_create_optimizer_fills_from_knowledge() -> None:
    opt = optiwise.create_optimizer("prodigy", nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)))
    assert type(opt) is Prodigy and opt.defaults["lr"] == 1.0
    assert opt.defaults["d0"] == knowledge.defaults("prodigy").hparams["d0"].value


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, r"Invalid learning rate: -1.0"),
        ({"betas": (1.0, 0.99)}, r"Invalid beta parameter at index 0: 1.0"),
        ({"beta3": 1.0}, r"Invalid beta3: 1.0"),
        ({"weight_decay": -0.1}, r"Invalid weight_decay value: -0.1"),
        ({"d0": 0.0}, r"Invalid d0: 0.0"),
        ({"d_coef": -1.0}, r"Invalid d_coef: -1.0"),
        ({"growth_rate": 1.0}, r"Invalid growth_rate: 1.0"),
    ],
)
def test_bad_hyperparameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Prodigy(nn.Linear(2, 2).parameters(), **kwargs)
