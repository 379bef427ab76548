"""SophiaG: the paper's update against a float64 reference, the official implementation
(the ``sophia-opt`` package), the two Hessian estimators against exact Hessian diagonals,
training on real data, and bad input."""

from __future__ import annotations

import copy
import inspect
import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn import functional as F

from optiwise import create_optimizer, knowledge
from optiwise.optim import SophiaG, gnb_hessian, gnb_loss, hutchinson_hessian
from optiwise.optim._kernels import (
    sophiag_hessian_multi_tensor,
    sophiag_hessian_single_tensor,
    sophiag_multi_tensor,
    sophiag_single_tensor,
)
from tests.optim.cases import SophiaGRefreshing
from tests.optim.harness import (
    RefStep,
    assert_params_close,
    random_batch,
    run_optimizer,
    run_reference,
    small_mlp,
    train_digits,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# fp32 vs the float64 reference: SophiaG divides by a curvature estimate, so where a small
# h meets a gradient EMA near a sign change, fp32 rounding of the gradients is amplified.
# These settings (eps floors the smallest rho h) keep that below the 1e-6 bar while leaving
# clipped, unclipped and floored coordinates; float64 runs are checked to agree to fp32
# rounding at 20x larger steps.
FP32: dict[str, Any] = dict(lr=5e-4, betas=(0.9, 0.95), rho=0.5, weight_decay=0.1, eps=1e-4)
STIFF: dict[str, Any] = dict(lr=1e-2, betas=(0.9, 0.95), rho=0.5, weight_decay=0.1, eps=1e-15)
EVERY, BATCH = 10, 64  # refresh h before steps 1, 11, 21, ...; the harness batch is 64


def paper_step(hp: dict[str, Any]) -> RefStep:
    """Liu et al. 2023, Algorithm 3 (float64), with the GNB-form estimate B g^2 of the
    current batch's gradient refreshed when t mod k = 1."""
    lr, (b1, b2), rho, wd, eps = hp["lr"], hp["betas"], hp["rho"], hp["weight_decay"], hp["eps"]

    def step(params: list[Tensor], grads: list[Tensor], state: dict, t: int) -> None:
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            st = state[i]
            if not st:
                st["m"], st["h"] = torch.zeros_like(p), torch.zeros_like(p)
            st["m"] = b1 * st["m"] + (1 - b1) * g
            if t % EVERY == 1:
                st["h"] = b2 * st["h"] + (1 - b2) * BATCH * g * g
            p -= lr * wd * p
            p -= lr * torch.clamp(st["m"] / torch.clamp(rho * st["h"], min=eps), -1.0, 1.0)

    return step


@pytest.mark.parametrize("foreach", [False, True])
def test_matches_the_paper_reference_over_100_steps(foreach: bool) -> None:
    opts: list[SophiaG] = []

    def make(ps: Any) -> SophiaG:
        opts.append(SophiaGRefreshing(ps, every=EVERY, batch_size=BATCH, foreach=foreach, **FP32))
        return opts[0]

    assert_params_close(run_optimizer(make), run_reference(paper_step(FP32)))
    # the comparison covered every branch: clipped, unclipped, denominator floored by eps
    m = torch.cat([s["exp_avg"].flatten() for s in opts[0].state.values()])
    rho_h = FP32["rho"] * torch.cat([s["hessian"].flatten() for s in opts[0].state.values()])
    clipped = (m.abs() >= rho_h.clamp(min=FP32["eps"])).float().mean().item()
    floored = (rho_h < FP32["eps"]).float().mean().item()
    assert 0.1 < clipped < 0.9 and 0.01 < floored < 0.9, (clipped, floored)


@pytest.mark.parametrize("foreach", [False, True])
def test_float64_run_is_the_paper_reference_exactly(foreach: bool) -> None:
    got = run_optimizer(
        lambda ps: SophiaGRefreshing(ps, every=EVERY, batch_size=BATCH, foreach=foreach, **STIFF),
        dtype=torch.float64,
    )
    # the harness returns both as fp32: agreement to one fp32 rounding of the float64 values
    assert_params_close(got, run_reference(paper_step(STIFF)), atol=1e-7)


# --------------------------------------------------------------------------------------------
# The official implementation (Liu et al.'s code, packaged as sophia-opt)
# --------------------------------------------------------------------------------------------


def test_matches_the_official_sophiag_with_gnb_refreshes() -> None:
    """The official loop: every k steps, loss on labels sampled from the model, backward,
    ``update_hessian()`` (EMA of g^2), and ``step(bs=B)`` divides by ``rho * B * h + 1e-15``.
    Here ``update_hessian(batch_size=B)`` stores ``B g^2`` instead: the same update. Run in
    float64 at large steps, so that only a difference in the formulas could show (in fp32
    the two roundings of ``B h`` drift apart through the curvature division, see FP32)."""
    sophia_opt = pytest.importorskip("sophia_opt")
    ours, theirs = small_mlp().double(), small_mlp().double()
    kw = {k: v for k, v in STIFF.items() if k != "eps"}
    opt_a = SophiaG(ours.parameters(), **kw)
    opt_b = sophia_opt.SophiaG(theirs.parameters(), **kw)
    for t in range(100):
        x, y = random_batch(t)
        x = x.double()
        if t % EVERY == EVERY - 1:  # the official schedule: refresh after step k-1, 2k-1, ...
            for model, opt in ((ours, opt_a), (theirs, opt_b)):
                opt.zero_grad(set_to_none=True)
                gnb_loss(model(x), generator=torch.Generator().manual_seed(t)).backward()
            opt_a.update_hessian(batch_size=len(x))
            opt_b.update_hessian()
        for model, opt in ((ours, opt_a), (theirs, opt_b)):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
        opt_a.step()
        opt_b.step(bs=len(x))
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert (p - q).abs().max().item() <= 1e-7  # steps are 1e-2 per coordinate
        h_ours, h_theirs = opt_a.state[p]["hessian"], opt_b.state[q]["hessian"]
        assert h_ours.abs().max() > 0
        torch.testing.assert_close(h_ours, len(x) * h_theirs)


def test_differs_from_the_official_form_only_where_the_estimate_is_negative() -> None:
    """A Hutchinson estimate can be negative. ``max(rho h, eps)`` then takes the clipped sign
    step down the gradient; the official ``|m| / (rho bs h + 1e-15)`` turns negative and the
    step goes up. With ``h = 0`` both take ``lr sign(m)``."""
    sophia_opt = pytest.importorskip("sophia_opt")
    for h_value, ours_moves, theirs_moves in ((-1.0, -1e-2, None), (0.0, -1e-2, -1e-2)):
        w_a = torch.zeros(3, requires_grad=True)
        w_b = torch.zeros(3, requires_grad=True)
        opt_a = SophiaG([w_a], lr=1e-2, rho=0.04, weight_decay=0.0)
        opt_b = sophia_opt.SophiaG([w_b], lr=1e-2, rho=0.04, weight_decay=0.0)
        opt_a.update_hessian({w_a: torch.full((3,), h_value)})
        w_b.grad = torch.zeros(3)
        opt_b.update_hessian()
        opt_b.state[w_b]["hessian"].fill_((1 - 0.99) * h_value)  # the same EMA, unscaled
        w_a.grad, w_b.grad = torch.ones(3), torch.ones(3)
        opt_a.step()
        opt_b.step(bs=1)
        torch.testing.assert_close(w_a.detach(), torch.full((3,), ours_moves))
        if theirs_moves is None:
            assert (w_b > 0).all(), "the official form steps up the gradient here"
        else:
            torch.testing.assert_close(w_b.detach(), torch.full((3,), theirs_moves))


# --------------------------------------------------------------------------------------------
# The estimators against exact Hessian diagonals
# --------------------------------------------------------------------------------------------


def _linear_softmax(seed: int = 0) -> tuple[nn.Linear, Tensor]:
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(3, 4).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(4, 3, generator=g, dtype=torch.float64))
        model.bias.copy_(torch.randn(4, generator=g, dtype=torch.float64) * 0.5)
    return model, torch.randn(5, 3, generator=g, dtype=torch.float64)


def _exact_hessian_diag(model: nn.Module, loss_fn: Any) -> dict[str, Tensor]:
    """diag of the exact Hessian of ``loss_fn(model)`` w.r.t. each parameter tensor."""
    named = dict(model.named_parameters())
    out = {}
    for name, p in named.items():

        def f(w: Tensor, name: str = name) -> Tensor:
            return loss_fn(lambda inp: functional_call(model, {**named, name: w}, (inp,)))

        h = torch.autograd.functional.hessian(f, p.detach())
        out[name] = h.reshape(p.numel(), p.numel()).diagonal().reshape(p.shape)
    return out


def _mean_and_stderr(draws: list[dict[Tensor, Tensor]], p: Tensor) -> tuple[Tensor, Tensor]:
    stack = torch.stack([d[p] for d in draws])
    return stack.mean(0), stack.std(0) / math.sqrt(len(draws))


def test_gnb_expectation_is_the_gauss_newton_diagonal_of_softmax_cross_entropy() -> None:
    model, x = _linear_softmax()
    with torch.no_grad():
        p = torch.softmax(model(x), dim=-1)  # (N, C)
    # Closed form: G = (1/N) sum_n J_n^T (diag p_n - p_n p_n^T) J_n, whose diagonal is
    # (1/N) sum_n p_nc (1 - p_nc) x_nd^2 for W_cd and (1/N) sum_n p_nc (1 - p_nc) for b_c.
    s = p * (1 - p)
    closed = {"weight": s.T @ x.square() / len(x), "bias": s.mean(0)}
    # For a model linear in its parameters the Hessian of cross-entropy is the GN matrix.
    exact = _exact_hessian_diag(model, lambda logits: F.cross_entropy(logits(x), p.argmax(1)))
    for name in closed:
        torch.testing.assert_close(exact[name], closed[name])

    g = torch.Generator().manual_seed(0)
    draws = [gnb_hessian(model(x), model.parameters(), generator=g) for _ in range(3000)]
    for name, param in model.named_parameters():
        mean, se = _mean_and_stderr(draws, param)
        assert (mean - closed[name]).abs().le(5 * se + 1e-12).all(), name
        assert (draws[0][param] >= 0).all()
    # a biased estimate (e.g. without the factor B) would be far outside those bounds
    mean_w, se_w = _mean_and_stderr(draws, model.weight)
    assert ((mean_w / len(x) - closed["weight"]).abs() > 5 * se_w).any()


def test_gnb_from_grad_equals_gnb_hessian_estimates() -> None:
    model, x = _linear_softmax()
    a = SophiaG(model.parameters(), betas=(0.9, 0.8))
    b = SophiaG(model.parameters(), betas=(0.9, 0.8))
    gnb_loss(model(x), generator=torch.Generator().manual_seed(3)).backward()
    a.update_hessian(batch_size=len(x))
    b.update_hessian(
        gnb_hessian(model(x), model.parameters(), generator=torch.Generator().manual_seed(3))
    )
    for p in model.parameters():
        torch.testing.assert_close(a.state[p]["hessian"], b.state[p]["hessian"])
        expected = 0.2 * len(x) * p.grad.square()  # (1 - b2) B g^2 from h = 0
        torch.testing.assert_close(a.state[p]["hessian"], expected)
        assert p.grad is not None  # gnb_hessian leaves .grad alone


def test_gnb_on_sequence_logits_counts_every_prediction() -> None:
    torch.manual_seed(0)
    emb = nn.Embedding(7, 5)
    tokens = torch.randint(0, 7, (2, 6))
    est = gnb_hessian(emb(tokens), emb.parameters(), generator=torch.Generator().manual_seed(0))
    emb.zero_grad()
    gnb_loss(emb(tokens), generator=torch.Generator().manual_seed(0)).backward()
    torch.testing.assert_close(est[emb.weight], 12 * emb.weight.grad.square())


def test_hutchinson_is_exact_for_a_diagonal_hessian() -> None:
    d = torch.tensor([1.0, -2.0, 3.0, 0.5])
    w = torch.randn(4, requires_grad=True)
    est = hutchinson_hessian(0.5 * (d * w * w).sum(), [w], generator=torch.Generator())
    torch.testing.assert_close(est[w], d)  # u_i (H u)_i = u_i^2 d_i = d_i for any signs


def test_hutchinson_expectation_is_the_hessian_diagonal() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    x = torch.randn(8, 3, dtype=torch.float64)
    y = torch.randint(0, 2, (8,))
    exact = _exact_hessian_diag(model, lambda out: F.cross_entropy(out(x), y))
    g = torch.Generator().manual_seed(0)
    draws = []
    for _ in range(300):
        loss = F.cross_entropy(model(x), y)
        draws.append(hutchinson_hessian(loss, model.parameters(), samples=10, generator=g))
    off_diagonal = False
    for name, param in model.named_parameters():
        mean, se = _mean_and_stderr(draws, param)
        assert (mean - exact[name]).abs().le(5 * se + 1e-12).all(), name
        off_diagonal |= bool((se > 0).any())
    assert off_diagonal  # the Hessian is not diagonal: single draws really vary


def test_hutchinson_keeps_the_graph_on_request_and_skips_unused_params() -> None:
    lin, unused = nn.Linear(3, 2), nn.Parameter(torch.ones(2))
    x = torch.tensor([[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0], [0.5, 1.0, -1.0], [-0.5, -1.0, 1.0]])
    loss = lin(x).square().mean()  # columns of x sum to 0: no bias-weight curvature
    est = hutchinson_hessian(loss, [*lin.parameters(), unused], samples=2, retain_graph=True)
    assert set(est) == {lin.weight, lin.bias}
    loss.backward()  # the graph is still there
    # the bias enters the loss quadratically with a known curvature: d2/db_k^2 = 2/2 = 1
    torch.testing.assert_close(est[lin.bias], torch.ones(2))


# --------------------------------------------------------------------------------------------
# update_hessian, state, training
# --------------------------------------------------------------------------------------------


def test_hessian_ema_is_in_the_state_dict_and_resumes() -> None:
    model = small_mlp()
    opt = SophiaG(model.parameters(), lr=1e-2, betas=(0.9, 0.9))
    x, y = random_batch(0)
    F.cross_entropy(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.update_hessian(batch_size=64)
    opt.update_hessian(batch_size=64)
    sd = opt.state_dict()
    for i, g in enumerate(grads):
        # two refreshes from h = 0: (1 - b2)(1 + b2) B g^2
        torch.testing.assert_close(sd["state"][i]["hessian"], 0.1 * 1.9 * 64 * g.square())
        assert sd["state"][i]["step"] == 0
    opt.step()
    fresh = SophiaG(model.parameters(), lr=1e-2, betas=(0.9, 0.9))
    fresh.load_state_dict(copy.deepcopy(opt.state_dict()))
    for p in model.parameters():
        assert torch.equal(fresh.state[p]["hessian"], opt.state[p]["hessian"])
        assert fresh.state[p]["step"] == 1


def test_update_hessian_bad_input_leaves_the_state_unchanged() -> None:
    model = small_mlp()
    opt = SophiaG(model.parameters())
    x, y = random_batch(0)
    F.cross_entropy(model(x), y).backward()
    opt.update_hessian(batch_size=8)
    before = copy.deepcopy(opt.state_dict())
    w = model[0].weight
    stranger = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="Invalid batch_size: None"):
        opt.update_hessian()
    with pytest.raises(ValueError, match="Invalid batch_size: 0"):
        opt.update_hessian(batch_size=0)
    with pytest.raises(ValueError, match="already scaled"):
        opt.update_hessian({w: torch.ones_like(w)}, batch_size=8)
    with pytest.raises(ValueError, match="not one of this optimizer's parameters"):
        opt.update_hessian({w: torch.ones_like(w), stranger: torch.ones(3)})
    with pytest.raises(ValueError, match=r"shape \(32, 10\) has shape \(3,\)"):
        opt.update_hessian({w: torch.ones(3)})
    with pytest.raises(ValueError, match="mapping"):
        opt.update_hessian([torch.ones_like(w)])  # type: ignore[arg-type]
    after = opt.state_dict()
    for i, st in before["state"].items():
        assert torch.equal(after["state"][i]["hessian"], st["hessian"])


def test_estimator_bad_input() -> None:
    lin = nn.Linear(2, 2)
    loss = lin(torch.ones(1, 2)).sum()
    with pytest.raises(ValueError, match="Invalid samples: 0"):
        hutchinson_hessian(loss, lin.parameters(), samples=0)
    with pytest.raises(ValueError, match="scalar"):
        hutchinson_hessian(lin(torch.ones(1, 2)), lin.parameters())
    with pytest.raises(ValueError, match="no parameters"):
        gnb_hessian(lin(torch.ones(1, 2)), [])
    with pytest.raises(ValueError, match="requires_grad"):
        gnb_hessian(lin(torch.ones(1, 2)), [torch.ones(2)])
    with pytest.raises(ValueError, match=r"logits must be .* got \(\)"):
        gnb_loss(torch.tensor(1.0))


def test_trains_on_digits_at_the_knowledge_default() -> None:
    """The loop of docs/optimizers.md: GNB refresh every 10 steps, SophiaG at the knowledge defaults
    (lr 1e-4: at most 1e-4 per coordinate and step, so 400 steps)."""

    def refresh(model: nn.Module, opt: Any, x: Tensor, y: Tensor, t: int) -> None:
        if t % 10 == 0:
            g = torch.Generator().manual_seed(t)
            opt.update_hessian(gnb_hessian(model(x), model.parameters(), generator=g))

    loss = train_digits(lambda ps: create_optimizer("sophiag", ps), steps=400, before_step=refresh)
    assert loss < 1.4  # from 2.3 (log 10); measured 1.21


def test_constructor_defaults_are_the_knowledge_defaults() -> None:
    sig = inspect.signature(SophiaG.__init__).parameters
    for key, fact in knowledge.defaults("sophiag").hparams.items():
        assert sig[key].default == fact.value, key


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"lr": -1.0}, r"Invalid learning rate: -1.0"),
        ({"betas": (1.0, 0.99)}, r"Invalid beta parameter at index 0: 1.0"),
        ({"betas": (0.9, -0.1)}, r"Invalid beta parameter at index 1: -0.1"),
        ({"rho": 0.0}, r"Invalid rho: 0.0 \(must be a finite number > 0\)"),
        ({"rho": float("nan")}, r"Invalid rho: nan"),
        ({"weight_decay": -0.1}, r"Invalid weight_decay value: -0.1"),
        ({"eps": 0.0}, r"Invalid epsilon value: 0.0"),
    ],
)
def test_invalid_hyperparameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SophiaG(small_mlp().parameters(), **kwargs)


def test_kernels_follow_the_rule_and_paths_agree() -> None:
    g = torch.Generator().manual_seed(0)
    w = [torch.randn(5, 3, generator=g), torch.randn(7, generator=g)]
    grads = [torch.randn_like(p) for p in w]
    m0 = [torch.randn_like(p) * 0.1 for p in w]
    h0 = [torch.randn_like(p).abs() * 0.5 for p in w]
    h0[1][:3] = torch.tensor([0.0, -1.0, 1e-20])  # floored by eps
    kw = dict(lr=1e-2, beta1=0.9, rho=0.3, eps=1e-12, weight_decay=0.1, maximize=True)
    runs = []
    for fn in (sophiag_single_tensor, sophiag_multi_tensor):
        ps, ms, hs = [p.clone() for p in w], [m.clone() for m in m0], [h.clone() for h in h0]
        fn(ps, grads, ms, hs, **kw)  # type: ignore[arg-type]
        runs.append((ps, ms, hs))
    for a, b in zip(runs[0], runs[1], strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    for p, gr, m, h, p1, m1 in zip(w, grads, m0, h0, runs[0][0], runs[0][1], strict=True):
        m_new = 0.9 * m - 0.1 * gr  # maximize: the gradient is negated
        torch.testing.assert_close(m1, m_new)
        ratio = (m_new / (0.3 * h).clamp(min=1e-12)).clamp(-1, 1)
        torch.testing.assert_close(p1, p * (1 - 1e-3) - 1e-2 * ratio)
    for square_scale in (None, 32.0):
        outs = []
        for hfn in (sophiag_hessian_single_tensor, sophiag_hessian_multi_tensor):
            hs = [h.clone() for h in h0]
            hfn(hs, grads, beta2=0.9, square_scale=square_scale)
            outs.append(hs)
        for a, b, h, gr in zip(outs[0], outs[1], h0, grads, strict=True):
            assert torch.equal(a, b)
            e = gr if square_scale is None else square_scale * gr * gr
            torch.testing.assert_close(a, 0.9 * h + 0.1 * e)
