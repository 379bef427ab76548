"""LARS against the paper's Algorithm 1, against the published implementations (whose
variants are checked, not skipped), with optiwise's parameter groups, on real data, on bad
input."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import optiwise
from optiwise import knowledge
from optiwise.optim import LARS
from tests.optim.harness import (
    RefStep,
    assert_params_close,
    lr_per_step,
    max_abs_diff,
    run_optimizer,
    run_reference,
    train_digits,
)


def lars_reference(
    lr: float | Callable[[int], float],
    momentum: float,
    weight_decay: float,
    eta: float,
    *,
    eps: float = 1e-8,
    nesterov: bool = False,
    lr_outside: bool = False,
) -> RefStep:
    """You et al. 2017, Algorithm 1 with eq. 6: lambda = eta ||w|| / (||g|| + wd ||w|| + eps)
    (1 when a norm is 0); v = m v + lr lambda (g + wd w); w -= v.

    ``lr_outside`` is torch's SGD form instead: v = m v + lambda (g + wd w); w -= lr v.
    ``lr`` may be a function of the step t.
    """
    lr_at = lr if callable(lr) else (lambda t: lr)

    def step(params: list[Tensor], grads: list[Tensor], state: dict[int, Any], t: int) -> None:
        for i, (w, g) in enumerate(zip(params, grads, strict=True)):
            w_norm, g_norm = w.norm().item(), g.norm().item()
            ratio = eta * w_norm / (g_norm + weight_decay * w_norm + eps)
            u = (ratio if w_norm > 0 and g_norm > 0 else 1.0) * (g + weight_decay * w)
            scale = 1.0 if lr_outside else lr_at(t)
            v = state[i]["v"] = momentum * state[i].get("v", 0.0) + scale * u
            delta = momentum * v + scale * u if nesterov else v
            w -= lr_at(t) * delta if lr_outside else delta

    return step


def split_groups(
    params: Iterable[Tensor], weight_decay: float, bias_decay: float = 0.0
) -> list[dict[str, Any]]:
    """Weights (2-D) with ``weight_decay``; biases with ``bias_decay``."""
    ps = list(params)
    return [
        {"params": [p for p in ps if p.ndim > 1], "weight_decay": weight_decay},
        {"params": [p for p in ps if p.ndim <= 1], "weight_decay": bias_decay},
    ]


CONFIGS: list[dict[str, Any]] = [
    {"lr": 0.5, "momentum": 0.9, "weight_decay": 1e-4, "trust_coefficient": 1e-2},
    {"lr": 1.0, "momentum": 0.9, "weight_decay": 1e-3, "trust_coefficient": 2e-2, "nesterov": True},
    {"lr": 0.5, "momentum": 0.0, "weight_decay": 1e-3, "trust_coefficient": 1e-2, "eps": 0.0},
]


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("config", CONFIGS, ids=["momentum", "nesterov", "no_momentum"])
def test_matches_the_paper_reference(foreach: bool, config: dict[str, Any]) -> None:
    got = run_optimizer(lambda ps: LARS(ps, foreach=foreach, **config))
    want = run_reference(
        lars_reference(
            config["lr"],
            config["momentum"],
            config["weight_decay"],
            config["trust_coefficient"],
            eps=config.get("eps", 1e-8),
            nesterov=config.get("nesterov", False),
        )
    )
    assert_params_close(got, want)


def test_float64_matches_the_reference() -> None:
    got = run_optimizer(lambda ps: LARS(ps, **CONFIGS[0]), dtype=torch.float64)
    assert_params_close(got, run_reference(lars_reference(0.5, 0.9, 1e-4, 1e-2)))


def halve_at_50(t: int) -> float:
    return 1.0 if t <= 50 else 0.5


def test_the_lr_sits_inside_the_velocity_as_in_the_paper() -> None:
    make = lr_per_step(lambda ps: LARS(ps, **CONFIGS[0]), halve_at_50)
    got = run_optimizer(make)
    paper = run_reference(lars_reference(lambda t: 0.5 * halve_at_50(t), 0.9, 1e-4, 1e-2))
    assert_params_close(got, paper)
    # torch's SGD form scales the whole velocity when the LR changes: not the same run
    sgd_form = run_reference(
        lars_reference(lambda t: 0.5 * halve_at_50(t), 0.9, 1e-4, 1e-2, lr_outside=True)
    )
    assert max_abs_diff(got, sgd_form) > 1e-4


def test_first_step_follows_the_trust_ratio() -> None:
    g = torch.Generator().manual_seed(0)
    w, grad = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    p = w.clone().requires_grad_()
    opt = LARS([p], lr=0.5, weight_decay=0.01, trust_coefficient=1e-3)
    p.grad = grad.clone()
    opt.step()
    ratio = 1e-3 * w.norm() / (grad.norm() + 0.01 * w.norm() + 1e-8)
    torch.testing.assert_close(p.detach(), w - 0.5 * ratio * (grad + 0.01 * w))


def test_trust_ratio_is_one_when_a_norm_is_zero() -> None:
    grad = torch.tensor([1.0, -2.0, 0.5])
    # ||w|| = 0 (a zero-initialized tensor still moves): plain SGD
    p = torch.zeros(3, requires_grad=True)
    opt = LARS([p], lr=0.1, weight_decay=0.01)
    p.grad = grad.clone()
    opt.step()
    torch.testing.assert_close(p.detach(), -0.1 * grad)
    # ||g|| = 0: plain SGD weight decay, as torch.optim.SGD does
    p = torch.ones(3, requires_grad=True)
    opt = LARS([p], lr=0.1, weight_decay=0.01)
    p.grad = torch.zeros(3)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((3,), 1 - 0.1 * 0.01))


def test_excluded_groups_are_momentum_sgd() -> None:
    # weight_decay 0 everywhere: every group is excluded; at a constant LR that is torch's SGD
    for nesterov in (False, True):
        got = run_optimizer(lambda ps: LARS(ps, lr=0.1, nesterov=nesterov))  # noqa: B023
        sgd = run_optimizer(
            lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=nesterov)  # noqa: B023
        )
        assert_params_close(got, sgd)
    # exclude_no_decay=False adapts them (the paper's LARS without decay)
    adapted = run_optimizer(lambda ps: LARS(ps, lr=0.1, exclude_no_decay=False))
    assert max_abs_diff(adapted, sgd) > 1e-3


def test_exclude_no_decay_can_be_set_per_group() -> None:
    model = nn.Linear(4, 3)
    opt = LARS(
        [
            {"params": [model.weight], "exclude_no_decay": False},
            {"params": [model.bias]},
        ],
        lr=0.1,
    )
    model.weight.data.zero_()  # ratio 1 for the weight's first step, whatever the flag
    w_before, b_before = model.weight.detach().clone(), model.bias.detach().clone()
    model(torch.randn(8, 4)).pow(2).mean().backward()
    w_grad, b_grad = model.weight.grad.clone(), model.bias.grad.clone()
    opt.step()
    torch.testing.assert_close(model.bias.detach(), b_before - 0.1 * b_grad)
    torch.testing.assert_close(model.weight.detach(), w_before - 0.1 * w_grad)
    # second step: the weight (norm > 0 now) is adapted, the excluded bias is not
    opt.zero_grad()
    w_before, b_before = model.weight.detach().clone(), model.bias.detach().clone()
    model(torch.randn(8, 4)).pow(2).mean().backward()
    w_grad, b_grad = model.weight.grad.clone(), model.bias.grad.clone()
    buf_b = opt.state[model.bias]["momentum_buffer"].clone()
    buf_w = opt.state[model.weight]["momentum_buffer"].clone()
    opt.step()
    torch.testing.assert_close(model.bias.detach(), b_before - (0.9 * buf_b + 0.1 * b_grad))
    ratio = 1e-3 * w_before.norm() / (w_grad.norm() + 1e-8)
    expected = w_before - (0.9 * buf_w + 0.1 * ratio * w_grad)
    torch.testing.assert_close(model.weight.detach(), expected)


def test_create_optimizer_excludes_the_no_decay_group() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    opt = optiwise.create_optimizer("lars", model)
    assert type(opt) is LARS
    hp = knowledge.defaults("lars").hparams
    lr, wd, eta = (hp[k].value for k in ("lr", "weight_decay", "trust_coefficient"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randn(16, 6)).pow(2).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    for name, p in model.named_parameters():
        w, g = before[name], grads[name]
        if p.ndim == 2:  # decay group: adapted, decayed
            ratio = eta * w.norm() / (g.norm() + wd * w.norm() + 1e-8)
            torch.testing.assert_close(p.detach(), w - lr * ratio * (g + wd * w))
        else:  # biases and LayerNorm: excluded, plain SGD
            torch.testing.assert_close(p.detach(), w - lr * g)


# --------------------------------------------------------------------------------------------
# The published implementations and how they differ
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("nesterov", [False, True])
def test_matches_torch_optimizer_lars_at_a_constant_lr(nesterov: bool) -> None:
    torch_optimizer = pytest.importorskip("torch_optimizer")
    kw = dict(lr=0.5, momentum=0.9, trust_coefficient=1e-2, nesterov=nesterov)
    # both exclude the weight-decay-0 group (the biases) from the adaptation
    theirs = run_optimizer(lambda ps: torch_optimizer.LARS(split_groups(ps, 1e-3), **kw))
    ours = run_optimizer(lambda ps: LARS(split_groups(ps, 1e-3), **kw))
    assert_params_close(ours, theirs)


def test_torch_optimizer_lars_keeps_the_lr_outside_and_skips_decay_at_zero_grad() -> None:
    torch_optimizer = pytest.importorskip("torch_optimizer")
    kw = dict(lr=0.5, momentum=0.9, trust_coefficient=1e-2)
    theirs = run_optimizer(
        lr_per_step(lambda ps: torch_optimizer.LARS(split_groups(ps, 1e-4), **kw), halve_at_50)
    )
    ours = run_optimizer(lr_per_step(lambda ps: LARS(split_groups(ps, 1e-4), **kw), halve_at_50))
    assert max_abs_diff(ours, theirs) > 1e-4
    # a tensor whose gradient is all zero: they leave it, we decay it as SGD does
    p, q = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    for x, opt in (
        (p, torch_optimizer.LARS([p], lr=0.1, weight_decay=0.01)),
        (q, LARS([q], lr=0.1, weight_decay=0.01)),
    ):
        x.grad = torch.zeros(3)
        opt.step()
    assert torch.equal(p.detach(), torch.ones(3))
    torch.testing.assert_close(q.detach(), torch.full((3,), 0.999))


def test_pytorch_optimizer_lars_excludes_by_dimension() -> None:
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    kw = dict(lr=0.5, momentum=0.9, trust_coefficient=1e-2)
    # theirs excludes every tensor of < 2 dimensions from adaptation and decay, whatever its
    # group: one group with weight decay is ours with the biases in a no-decay group, eps 0
    theirs = run_optimizer(
        lambda ps: pytorch_optimizer.LARS(ps, weight_decay=1e-3, foreach=False, **kw)
    )
    ours = run_optimizer(lambda ps: LARS(split_groups(ps, 1e-3), eps=0.0, **kw))
    assert_params_close(ours, theirs)
    # one group with weight decay for us adapts and decays the biases too
    ours_one_group = run_optimizer(lambda ps: LARS(ps, weight_decay=1e-3, eps=0.0, **kw))
    assert max_abs_diff(ours_one_group, theirs) > 1e-4


# --------------------------------------------------------------------------------------------
# Real data, bad input
# --------------------------------------------------------------------------------------------


def test_trains_on_digits_at_the_knowledge_default() -> None:
    hp = {k: f.value for k, f in knowledge.defaults("lars").hparams.items()}
    assert train_digits(lambda ps: LARS(ps, **hp), steps=300) < 0.8  # 2.33 before training


def test_no_state_without_momentum() -> None:
    model = nn.Linear(3, 2)
    opt = LARS(model.parameters(), lr=0.1, momentum=0.0, weight_decay=1e-4)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    assert not opt.state


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, r"Invalid learning rate: -1.0"),
        (
            {"trust_coefficient": 0.0},
            r"Invalid trust_coefficient: 0.0 \(must be a finite number > 0",
        ),
        ({"trust_coefficient": -1e-3}, r"Invalid trust_coefficient: -0.001"),
        ({"momentum": 1.0}, r"Invalid momentum: 1.0 \(must be in \[0, 1\)"),
        ({"momentum": -0.1}, r"Invalid momentum: -0.1"),
        ({"weight_decay": -1e-4}, r"Invalid weight_decay value: -0.0001"),
        ({"eps": -1.0}, r"Invalid epsilon value: -1.0"),
        ({"momentum": 0.0, "nesterov": True}, r"Invalid nesterov=True with momentum 0"),
    ],
)
def test_bad_hyperparameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LARS(nn.Linear(2, 2).parameters(), **kwargs)
