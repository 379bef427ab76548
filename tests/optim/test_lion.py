"""Lion against the paper's pseudo-code, against lion-pytorch, on real data, on bad input."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

import optiwise
from optiwise import knowledge
from optiwise.optim import Lion
from tests.optim.harness import (
    RefStep,
    assert_params_close,
    run_optimizer,
    run_reference,
    train_digits,
)

# A power-of-two LR makes the sign step w - lr * sign(c) exact in fp32, so the fp32 run
# carries no rounding drift that a float64 reference does not: with lr = 1e-3 the rounding of
# every weight goes the same way at each step (the step is the same size every time) and
# adds up to ~1e-6 over 100 steps, a property of fp32, not of the algorithm. The float64 run
# below checks an ordinary LR.
LR = 2.0**-10


def lion_reference(lr: float, beta1: float, beta2: float, weight_decay: float) -> RefStep:
    """Chen et al. 2023, Program 1: c = interp(g, m, b1); w -= lr (sign(c) + wd w);
    m = interp(g, m, b2)."""

    def step(params: list[Tensor], grads: list[Tensor], state: dict[int, Any], t: int) -> None:
        for i, (w, g) in enumerate(zip(params, grads, strict=True)):
            m = state[i].get("m", torch.zeros_like(w))
            c = beta1 * m + (1 - beta1) * g
            w -= lr * (torch.sign(c) + weight_decay * w)
            state[i]["m"] = beta2 * m + (1 - beta2) * g

    return step


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(("betas", "weight_decay"), [((0.9, 0.99), 0.0), ((0.95, 0.98), 1.0)])
def test_matches_the_paper_reference(
    foreach: bool, betas: tuple[float, float], weight_decay: float
) -> None:
    got = run_optimizer(
        lambda ps: Lion(ps, lr=LR, betas=betas, weight_decay=weight_decay, foreach=foreach)
    )
    assert_params_close(got, run_reference(lion_reference(LR, *betas, weight_decay)))


def test_float64_matches_the_reference_at_an_ordinary_lr() -> None:
    got = run_optimizer(lambda ps: Lion(ps, lr=1e-3, weight_decay=0.1), dtype=torch.float64)
    assert_params_close(got, run_reference(lion_reference(1e-3, 0.9, 0.99, 0.1)))


@pytest.mark.parametrize("weight_decay", [0.0, 1.0])
def test_matches_lion_pytorch(weight_decay: float) -> None:
    lion_pytorch = pytest.importorskip("lion_pytorch")
    ours = run_optimizer(lambda ps: Lion(ps, lr=LR, weight_decay=weight_decay))
    theirs = run_optimizer(
        lambda ps: lion_pytorch.Lion(ps, lr=LR, betas=(0.9, 0.99), weight_decay=weight_decay)
    )
    assert_params_close(ours, theirs)


def test_every_coordinate_moves_by_lr_on_the_first_step() -> None:
    w = torch.tensor([0.5, -0.25, 0.0, 2.0], requires_grad=True)
    opt = Lion([w], lr=0.01)
    w.grad = torch.tensor([3.0, -1e-6, 2.0, 0.0])
    opt.step()
    # sign((1 - b1) g); a zero gradient leaves the coordinate where it is
    torch.testing.assert_close(w.detach(), torch.tensor([0.49, -0.24, -0.01, 2.0]))
    torch.testing.assert_close(opt.state[w]["exp_avg"], 0.01 * w.grad)


def test_state_is_one_fp32_buffer_per_parameter() -> None:
    model = nn.Linear(64, 64)
    opt = Lion(model.parameters())
    model(torch.randn(2, 64)).sum().backward()
    opt.step()
    n_params = sum(p.numel() for p in model.parameters())
    state_bytes = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values())
    assert state_bytes == 4 * n_params == knowledge.get_info("lion").state_bytes.value * n_params


def test_trains_on_digits_at_the_knowledge_default() -> None:
    hp = {k: f.value for k, f in knowledge.defaults("lion").hparams.items()}
    # lr 1e-4 moves a weight by at most 1e-4 per step: slower than AdamW at 1e-3, but steady
    # (2.33 before training).
    assert train_digits(lambda ps: Lion(ps, **hp), steps=300) < 1.7


def test_create_optimizer_fills_from_knowledge() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    opt = optiwise.create_optimizer("lion", model, task="language_transformer")
    assert type(opt) is Lion
    defaults = knowledge.defaults("lion", "language_transformer").hparams
    assert opt.defaults["lr"] == defaults["lr"].value
    assert opt.defaults["betas"] == defaults["betas"].value
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [
        0.0,
        defaults["weight_decay"].value,
    ]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, r"Invalid learning rate: -1.0"),
        ({"lr": 0.0}, r"Invalid learning rate: 0.0"),
        ({"betas": (1.0, 0.99)}, r"Invalid beta parameter at index 0: 1.0 \(must be in \[0, 1\)"),
        ({"betas": (0.9, -0.1)}, r"Invalid beta parameter at index 1: -0.1"),
        ({"betas": (0.9,)}, r"Invalid betas"),
        ({"weight_decay": -0.1}, r"Invalid weight_decay value: -0.1"),
    ],
)
def test_bad_hyperparameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Lion(nn.Linear(2, 2).parameters(), **kwargs)
