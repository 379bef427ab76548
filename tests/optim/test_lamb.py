"""LAMB against the paper's Algorithm 2, against the published implementations (whose
variants are checked, not skipped), on real data, on bad input."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import optiwise
from optiwise import knowledge
from optiwise.optim import LAMB
from tests.optim.harness import (
    RefStep,
    assert_params_close,
    lr_per_step,
    max_abs_diff,
    run_optimizer,
    run_reference,
    train_digits,
)

B1, B2, EPS = 0.9, 0.999, 1e-6


def lamb_reference(
    lr: float,
    weight_decay: float,
    *,
    bias_correction: bool = True,
    max_weight_norm: float | None = None,
    max_trust_ratio: float | None = None,
) -> RefStep:
    """You et al. 2020 (v5), Algorithm 2, with phi(z) = min(z, max_weight_norm)."""

    def step(params: list[Tensor], grads: list[Tensor], state: dict[int, Any], t: int) -> None:
        for i, (w, g) in enumerate(zip(params, grads, strict=True)):
            s = state[i]
            s["m"] = B1 * s.get("m", 0.0) + (1 - B1) * g
            s["v"] = B2 * s.get("v", 0.0) + (1 - B2) * g * g
            m, v = s["m"], s["v"]
            if bias_correction:
                m, v = m / (1 - B1**t), v / (1 - B2**t)
            u = m / (v.sqrt() + EPS) + weight_decay * w
            w_norm, u_norm = w.norm().item(), u.norm().item()
            if max_weight_norm is not None:
                w_norm = min(w_norm, max_weight_norm)
            ratio = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
            if max_trust_ratio is not None:
                ratio = min(ratio, max_trust_ratio)
            w -= lr * ratio * u

    return step


CONFIGS: list[dict[str, Any]] = [
    {"lr": 1e-2, "weight_decay": 0.0},
    {"lr": 1e-2, "weight_decay": 0.01},
    {"lr": 1e-3, "weight_decay": 0.1, "bias_correction": False},
    {"lr": 1e-2, "weight_decay": 0.01, "max_weight_norm": 0.5, "max_trust_ratio": 0.8},
]


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items())
)
def test_matches_the_paper_reference(foreach: bool, config: dict[str, Any]) -> None:
    got = run_optimizer(lambda ps: LAMB(ps, foreach=foreach, **config))
    assert_params_close(got, run_reference(lamb_reference(**config)))


def test_float64_matches_the_reference() -> None:
    config = CONFIGS[1]
    got = run_optimizer(lambda ps: LAMB(ps, **config), dtype=torch.float64)
    assert_params_close(got, run_reference(lamb_reference(**config)))


def test_the_clamps_take_effect() -> None:
    # the last CONFIGS entry is not the unclamped run in disguise
    clamped = run_reference(lamb_reference(**CONFIGS[3]))
    free = run_reference(lamb_reference(1e-2, 0.01))
    assert max_abs_diff(clamped, free) > 1e-3


def _one_step(opt_kwargs: dict[str, Any], w: Tensor, g: Tensor) -> tuple[Tensor, LAMB]:
    p = w.clone().requires_grad_()
    opt = LAMB([p], **opt_kwargs)
    p.grad = g.clone()
    opt.step()
    return p.detach() - w, opt


def test_the_step_of_a_tensor_is_lr_times_its_norm() -> None:
    g = torch.Generator().manual_seed(0)
    w, grad = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    for wd in (0.0, 0.1):
        delta, _ = _one_step({"lr": 0.01, "weight_decay": wd}, w, grad)
        assert delta.norm().item() == pytest.approx(0.01 * w.norm().item(), rel=1e-5)
    # phi clamps ||w||; max_trust_ratio clamps the ratio (||u|| = ||g / |g||| = sqrt(35))
    delta, _ = _one_step({"lr": 0.01, "max_weight_norm": 1.0}, w, grad)
    assert delta.norm().item() == pytest.approx(0.01 * 1.0, rel=1e-5)
    delta, _ = _one_step({"lr": 0.01, "max_trust_ratio": 0.1}, w, grad)
    assert delta.norm().item() == pytest.approx(0.01 * 0.1 * math.sqrt(35), rel=1e-5)


def test_trust_ratio_is_one_when_a_norm_is_zero() -> None:
    grad = torch.tensor([2.0, -3.0, 0.5])
    # ||w|| = 0: the plain Adam step, -lr * g / (|g| + eps) on the first step
    delta, _ = _one_step({"lr": 0.01}, torch.zeros(3), grad)
    torch.testing.assert_close(delta, -0.01 * grad / (grad.abs() + EPS))
    # ||u|| = 0 (zero gradient, no decay): nothing moves, nothing is NaN
    delta, _ = _one_step({"lr": 0.01}, torch.ones(3), torch.zeros(3))
    assert torch.equal(delta, torch.zeros(3))


def test_exclude_no_decay_gives_adam_on_the_no_decay_group() -> None:
    # weight_decay 0 everywhere: every group is excluded, and LAMB is torch's Adam
    got = run_optimizer(lambda ps: LAMB(ps, lr=1e-3, exclude_no_decay=True))
    adam = run_optimizer(lambda ps: torch.optim.Adam(ps, lr=1e-3, eps=EPS))
    assert_params_close(got, adam)
    adapted = run_optimizer(lambda ps: LAMB(ps, lr=1e-3))
    assert max_abs_diff(adapted, adam) > 1e-3


def test_exclude_no_decay_with_param_groups() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    opt = optiwise.create_optimizer("lamb", model, lr=0.01, exclude_no_decay=True)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(torch.randn(16, 6)).pow(2).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    for name, p in model.named_parameters():
        delta = p.detach() - before[name]
        if p.ndim == 2:  # decay group: a trust-ratio step of norm lr * ||w||
            assert delta.norm().item() == pytest.approx(0.01 * before[name].norm().item(), 1e-5)
        else:  # biases and LayerNorm: Adam's first step, -lr * g / (|g| + eps)
            g = grads[name]
            torch.testing.assert_close(delta, -0.01 * g / (g.abs() + EPS))


# --------------------------------------------------------------------------------------------
# The published implementations and how they differ
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("clamp", [10.0, 1.0])  # their default; one that binds here
def test_torch_optimizer_lamb_is_paper_v3_with_phi_a_clamp(clamp: float) -> None:
    torch_optimizer = pytest.importorskip("torch_optimizer")
    theirs = run_optimizer(
        lambda ps: torch_optimizer.Lamb(ps, lr=1e-2, weight_decay=0.01, clamp_value=clamp)
    )
    ours = run_optimizer(
        lambda ps: LAMB(
            ps, lr=1e-2, weight_decay=0.01, bias_correction=False, max_weight_norm=clamp
        )
    )
    assert_params_close(ours, theirs)
    # the paper's final version (our default) corrects the moments' bias: a real difference
    paper = run_optimizer(lambda ps: LAMB(ps, lr=1e-2, weight_decay=0.01))
    assert max_abs_diff(paper, theirs) > 1e-4


def test_torch_optimizer_debias_scales_the_step_after_the_trust_ratio() -> None:
    torch_optimizer = pytest.importorskip("torch_optimizer")
    theirs = run_optimizer(
        lambda ps: torch_optimizer.Lamb(ps, lr=1e-2, weight_decay=0.01, debias=True)
    )
    # their debias multiplies the step by sqrt(1 - b2^t) / (1 - b1^t) after the ratio ...
    ours = run_optimizer(
        lr_per_step(
            lambda ps: LAMB(
                ps, lr=1e-2, weight_decay=0.01, bias_correction=False, max_weight_norm=10
            ),
            lambda t: math.sqrt(1 - B2**t) / (1 - B1**t),
        )
    )
    assert_params_close(ours, theirs)
    # ... where the paper corrects m and v inside the update the ratio normalizes
    paper = run_optimizer(lambda ps: LAMB(ps, lr=1e-2, weight_decay=0.01, max_weight_norm=10))
    assert max_abs_diff(paper, theirs) > 1e-3


def pytorch_optimizer_reference(lr: float, weight_decay: float) -> RefStep:
    """pytorch_optimizer.Lamb's defaults, read from its source: moments without bias
    correction, decoupled decay applied to w before the update (outside the trust ratio),
    ||w|| clamped at 10, eps added to ||u||, and the step divided by 1 - b1^t."""

    def step(params: list[Tensor], grads: list[Tensor], state: dict[int, Any], t: int) -> None:
        for i, (w, g) in enumerate(zip(params, grads, strict=True)):
            s = state[i]
            s["m"] = B1 * s.get("m", 0.0) + (1 - B1) * g
            s["v"] = B2 * s.get("v", 0.0) + (1 - B2) * g * g
            w *= 1 - lr * weight_decay
            u = s["m"] / (s["v"].sqrt() + EPS)
            w_norm, u_norm = min(w.norm().item(), 10.0), u.norm().item()
            ratio = w_norm / (u_norm + EPS) if w_norm > 0 and u_norm > 0 else 1.0
            w -= lr / (1 - B1**t) * ratio * u

    return step


def test_pytorch_optimizer_lamb_decays_outside_the_trust_ratio() -> None:
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")

    def theirs(weight_decay: float) -> list[Tensor]:
        return run_optimizer(
            lambda ps: pytorch_optimizer.Lamb(
                ps, lr=1e-2, weight_decay=weight_decay, eps=EPS, foreach=False
            )
        )

    # without decay, theirs is ours (v3 form, phi at 10) with the step divided by 1 - b1^t
    ours = run_optimizer(
        lr_per_step(
            lambda ps: LAMB(ps, lr=1e-2, bias_correction=False, max_weight_norm=10),
            lambda t: 1 / (1 - B1**t),
        )
    )
    assert_params_close(ours, theirs(0.0))
    # with decay, theirs follows the AdamW-style variant, which the paper's form is not
    decayed = theirs(0.1)
    assert_params_close(decayed, run_reference(pytorch_optimizer_reference(1e-2, 0.1)))
    paper = run_optimizer(lambda ps: LAMB(ps, lr=1e-2, weight_decay=0.1))
    assert max_abs_diff(paper, decayed) > 1e-3


# --------------------------------------------------------------------------------------------
# Real data, the registry, bad input
# --------------------------------------------------------------------------------------------


def test_trains_on_digits_at_the_knowledge_default() -> None:
    hp = {k: f.value for k, f in knowledge.defaults("lamb").hparams.items()}
    assert train_digits(lambda ps: LAMB(ps, **hp), steps=200) < 0.7  # 2.33 before training


def test_create_optimizer_fills_from_knowledge() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    opt = optiwise.create_optimizer("lamb", model)
    assert type(opt) is LAMB
    defaults = knowledge.defaults("lamb").hparams
    for key in ("lr", "betas", "eps"):
        assert opt.defaults[key] == defaults[key].value
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [
        0.0,
        defaults["weight_decay"].value,
    ]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, r"Invalid learning rate: -1.0"),
        ({"lr": float("nan")}, r"Invalid learning rate: nan"),
        ({"betas": (0.9, 1.0)}, r"Invalid beta parameter at index 1: 1.0 \(must be in \[0, 1\)"),
        ({"betas": (-0.5, 0.999)}, r"Invalid beta parameter at index 0: -0.5"),
        ({"eps": -1e-8}, r"Invalid epsilon value: -1e-08"),
        ({"weight_decay": -0.01}, r"Invalid weight_decay value: -0.01"),
        ({"max_weight_norm": 0.0}, r"Invalid max_weight_norm: 0.0 \(must be a finite number > 0"),
        ({"max_trust_ratio": -1.0}, r"Invalid max_trust_ratio: -1.0"),
    ],
)
def test_bad_hyperparameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LAMB(nn.Linear(2, 2).parameters(), **kwargs)


@pytest.mark.parametrize(
    ("dtype", "path"),
    [
        (torch.float16, {"foreach": False, "fused": False}),
        (torch.float16, {"foreach": True, "fused": False}),
        (torch.float16, {"fused": True}),
        (torch.bfloat16, {"foreach": False, "fused": False}),
        (torch.bfloat16, {"foreach": True, "fused": False}),
    ],
)
def test_half_precision_params_step_as_float64_math_rounded_once(
    dtype: torch.dtype, path: dict[str, bool]
) -> None:
    # Every path keeps float32 moments for half-precision parameters: in float16 the
    # second moment of a 1e-2 gradient underflows (the step became g / eps, 1.3 off in
    # the parameters after 10 steps), in bfloat16 b2 * v rounds to v. The reference is
    # LAMB in float64 with the parameters rounded to `dtype` after each step.
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(64, 64, dtype=torch.float64, generator=gen).to(dtype)
    grads = [
        torch.randn(64, 64, dtype=torch.float64, generator=gen).mul(1e-2).to(dtype)
        for _ in range(10)
    ]
    ref = torch.nn.Parameter(w.double())
    ref_opt = LAMB([ref], lr=1e-2)
    p = torch.nn.Parameter(w.clone())
    opt = LAMB([p], lr=1e-2, **path)
    for g in grads:
        ref.grad, p.grad = g.double(), g.clone()
        ref_opt.step()
        opt.step()
        with torch.no_grad():
            ref.copy_(ref.to(dtype).double())
    assert opt.state[p]["exp_avg"].dtype == opt.state[p]["exp_avg_sq"].dtype == torch.float32
    ulp = torch.finfo(dtype).eps * ref.detach().abs().max().item()
    assert (p.detach().double() - ref.detach()).abs().max().item() <= ulp
