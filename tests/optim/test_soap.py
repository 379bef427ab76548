"""SOAP against the paper's pseudo-code, against pytorch_optimizer's port of the authors'
code, on real data, and on bad input."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import optiwise
from optiwise import knowledge
from optiwise.optim.soap import SOAP
from tests.optim.harness import max_abs_diff, train_digits

# Square 8 x 8 layers and batches of 64: every gradient matrix has full rank, so L and R have
# distinct eigenvalues from the first step and their eigenbases are determined (a
# rank-deficient factor has a null space whose basis any implementation may choose).
DIM = 8
TEACHER = torch.randn(DIM, DIM, generator=torch.Generator().manual_seed(3))


def square_mlp(dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(DIM, DIM), nn.Tanh(), nn.Linear(DIM, DIM)).to(dtype)


def loss_of(model: nn.Module, t: int) -> Tensor:
    x = torch.randn(64, DIM, generator=torch.Generator().manual_seed(100 + t))
    x = x.to(next(model.parameters()).dtype)
    return nn.functional.mse_loss(model(x), torch.tanh(x @ TEACHER.to(x.dtype)))


def run(
    make: Callable[[Any], torch.optim.Optimizer],
    steps: int = 60,
    dtype: torch.dtype = torch.float32,
) -> list[Tensor]:
    model = square_mlp(dtype)
    opt = make(model.parameters())
    for t in range(steps):
        opt.zero_grad(set_to_none=True)
        loss_of(model, t).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def soap_reference(
    lr: float, betas: tuple[float, float], eps: float, wd: float, freq: int, steps: int = 60
) -> list[Tensor]:
    """Vyas et al. 2024, Algorithm 3 (one step of SOAP on a layer) and Algorithm 4 (the
    eigenbasis refresh: one power iteration L Q, ordered by Q^T L Q's diagonal, then QR), in
    float64 with explicit matrices; vectors (biases) take Adam. As in the authors' code, the
    first gradient only builds L, R and their eigenvectors, the step size carries Adam's bias
    correction and the decoupled decay follows the update."""
    b1, b2 = betas
    model = square_mlp(torch.float64)
    params = list(model.parameters())
    state: list[dict[str, Any]] = [{} for _ in params]
    for t in range(steps):
        for p in params:
            p.grad = None
        loss_of(model, t).backward()
        with torch.no_grad():
            for p, s in zip(params, state, strict=True):
                g = p.grad
                assert g is not None
                if not s:
                    s.update(m=torch.zeros_like(g), v=torch.zeros_like(g), t=0)
                    if g.dim() == 2:
                        s["L"] = (1 - b2) * g @ g.T
                        s["R"] = (1 - b2) * g.T @ g
                        s["QL"] = torch.linalg.eigh(s["L"])[1].flip(1)
                        s["QR"] = torch.linalg.eigh(s["R"])[1].flip(1)
                    continue
                s["t"] += 1
                n = s["t"]
                s["m"] = b1 * s["m"] + (1 - b1) * g
                if g.dim() == 2:
                    ql, qr = s["QL"], s["QR"]
                    s["v"] = b2 * s["v"] + (1 - b2) * (ql.T @ g @ qr) ** 2
                    update = ql @ ((ql.T @ s["m"] @ qr) / (s["v"].sqrt() + eps)) @ qr.T
                else:
                    s["v"] = b2 * s["v"] + (1 - b2) * g**2
                    update = s["m"] / (s["v"].sqrt() + eps)
                p -= lr * (1 - b2**n) ** 0.5 / (1 - b1**n) * update
                p *= 1 - lr * wd
                if g.dim() == 2:
                    s["L"] = b2 * s["L"] + (1 - b2) * g @ g.T
                    s["R"] = b2 * s["R"] + (1 - b2) * g.T @ g
                    if n % freq == 0:
                        for side, dim in (("L", 0), ("R", 1)):
                            q = s["Q" + side]
                            power = s[side] @ q
                            order = torch.argsort((q * power).sum(0), descending=True)
                            s["v"] = s["v"].index_select(dim, order)
                            s["Q" + side] = torch.linalg.qr(power[:, order])[0]
    return [p.detach().clone() for p in params]


@pytest.mark.parametrize(("wd", "freq"), [(0.0, 10), (0.01, 3)])
def test_matches_the_paper_reference(wd: float, freq: int) -> None:
    hp = {"lr": 3e-3, "betas": (0.95, 0.95), "eps": 1e-8}
    got = run(
        lambda ps: SOAP(ps, **hp, weight_decay=wd, precondition_frequency=freq),
        dtype=torch.float64,
    )
    want = soap_reference(hp["lr"], hp["betas"], hp["eps"], wd, freq)  # type: ignore[arg-type]
    diff = max((a - b).abs().max().item() for a, b in zip(got, want, strict=True))
    assert diff < 1e-10, diff


def test_float32_stays_close_to_the_reference() -> None:
    got = run(lambda ps: SOAP(ps, lr=3e-3, weight_decay=0.01, precondition_frequency=5))
    want = soap_reference(3e-3, (0.95, 0.95), 1e-8, 0.01, 5)
    assert max_abs_diff(got, want) < 1e-5


CONFIGS: list[dict[str, Any]] = [
    {},
    {"weight_decay": 0.0, "precondition_frequency": 3, "betas": (0.9, 0.99)},
    {"shampoo_beta": 0.9, "correct_bias": False},
    {"normalize_grads": True, "precondition_1d": True},
    {"max_precond_dim": 4},
    {"maximize": True},
]


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c) for c in CONFIGS])
def test_identical_to_pytorch_optimizers_port(config: dict[str, Any]) -> None:
    pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
    theirs_config = {
        ("normalize_gradient" if k == "normalize_grads" else k): v
        for k, v in config.items()
        if k not in ("max_precond_dim",)
    }
    if "max_precond_dim" in config:
        theirs_config["max_precondition_dim"] = config["max_precond_dim"]
    ours = run(lambda ps: SOAP(ps, **config))
    theirs = run(lambda ps: pytorch_optimizer.SOAP(ps, **theirs_config))
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_first_gradient_builds_the_preconditioner_only() -> None:
    w = nn.Parameter(torch.randn(4, 6))
    opt = SOAP([w])
    before = w.detach().clone()
    w.grad = torch.randn(4, 6)
    opt.step()
    assert torch.equal(w.detach(), before)
    state = opt.state[w]
    assert state["step"] == 0 and [q.shape for q in state["Q"]] == [(4, 4), (6, 6)]
    for q in state["Q"]:
        torch.testing.assert_close(q.T @ q, torch.eye(q.shape[0]), atol=1e-5, rtol=0)
    w.grad = torch.randn(4, 6)
    opt.step()
    assert state["step"] == 1 and not torch.equal(w.detach(), before)


def test_large_dimensions_and_vectors_stay_unrotated() -> None:
    w, b = nn.Parameter(torch.randn(3, 20)), nn.Parameter(torch.randn(20))
    opt = SOAP([w, b], max_precond_dim=10)
    w.grad, b.grad = torch.randn(3, 20), torch.randn(20)
    opt.step()
    assert [getattr(m, "shape", None) for m in opt.state[w]["GG"]] == [(3, 3), None]
    assert opt.state[b]["GG"] == [[]]


def test_resume_mid_run_is_bit_for_bit_across_a_refresh() -> None:
    def make(ps: Any) -> torch.optim.Optimizer:
        return SOAP(ps, precondition_frequency=4)

    ref = run(make, steps=14)
    model = square_mlp()
    opt = make(model.parameters())
    for t in range(6):
        opt.zero_grad()
        loss_of(model, t).backward()
        opt.step()
    saved = copy.deepcopy((model.state_dict(), opt.state_dict()))
    model2 = square_mlp()
    model2.load_state_dict(saved[0])
    opt2 = make(model2.parameters())
    opt2.load_state_dict(saved[1])
    for t in range(6, 14):
        opt2.zero_grad()
        loss_of(model2, t).backward()
        opt2.step()
    assert all(torch.equal(a, b) for a, b in zip(model2.parameters(), ref, strict=True))


def test_factors_of_another_shape_are_refused() -> None:
    a = nn.Parameter(torch.randn(4, 6))
    opt = SOAP([a])
    a.grad = torch.randn(4, 6)
    opt.step()
    sd = copy.deepcopy(opt.state_dict())
    sd["state"][0]["GG"] = [torch.zeros(6, 6), torch.zeros(4, 4)]
    with pytest.raises(ValueError, match=r"state 'GG' of parameter #0 does not fit"):
        opt.load_state_dict(sd)


def test_state_bytes_follow_the_factors() -> None:
    w = nn.Parameter(torch.randn(32, 32))
    opt = SOAP([w])
    for _ in range(2):
        w.grad = torch.randn(32, 32)
        opt.step()
    tensors = [t for v in opt.state[w].values() for t in (v if isinstance(v, list) else [v])]
    nbytes = sum(t.numel() * t.element_size() for t in tensors if isinstance(t, Tensor))
    # exp_avg, exp_avg_sq (8 bytes per element) and L, R, Q_L, Q_R (4 x 32 x 32 x 4 bytes)
    assert nbytes == 8 * 32 * 32 + 16 * 32 * 32
    assert knowledge.get_info("soap").state_bytes.value == 24.0  # on a square matrix


def test_trains_on_digits_at_the_knowledge_default() -> None:
    hp = {k: f.value for k, f in knowledge.defaults("soap").hparams.items()}
    assert train_digits(lambda ps: SOAP(ps, **hp), steps=150) < 0.2  # 2.33 before


def test_create_optimizer_fills_from_knowledge() -> None:
    opt = optiwise.create_optimizer("soap", nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 2)))
    assert type(opt) is SOAP and opt.defaults["betas"] == (0.95, 0.95)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, r"Invalid learning rate: -1.0"),
        ({"betas": (1.0, 0.95)}, r"Invalid beta parameter at index 0: 1.0"),
        ({"shampoo_beta": 1.0}, r"Invalid shampoo_beta: 1.0"),
        ({"weight_decay": -0.1}, r"Invalid weight_decay value: -0.1"),
        ({"precondition_frequency": 0}, r"Invalid precondition_frequency: 0"),
        ({"max_precond_dim": 2.5}, r"Invalid max_precond_dim: 2.5"),
    ],
)
def test_bad_hyperparameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SOAP(nn.Linear(2, 2).parameters(), **kwargs)
