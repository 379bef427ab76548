"""Shared machinery for checking an optimizer against an independent reference.

:func:`run_optimizer` trains a small MLP on random data with a ``torch.optim.Optimizer``;
:func:`run_reference` replays exactly the same batches with a reference update written in
the test from the paper's pseudo-code (``ref_step(params, grads, state, t)`` updates the
parameters in place, ``t`` counts from 1). Both return the final parameters, so a test is

    got = run_optimizer(lambda ps: Lion(ps, lr=1e-3))
    want = run_reference(lion_reference_step)
    assert_params_close(got, want)

:func:`digits` loads scikit-learn's handwritten digits (real data) for the "trains" tests.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

RefStep = Callable[[list[Tensor], list[Tensor], dict[int, dict[str, Any]], int], None]


def small_mlp(seed: int = 0, sizes: tuple[int, ...] = (10, 32, 32, 4)) -> nn.Module:
    """A tanh MLP; ``seed`` fixes its initial weights."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def random_batch(step: int, n: int = 64, dim: int = 10, classes: int = 4) -> tuple[Tensor, Tensor]:
    """Batch ``step`` of a fixed random classification stream."""
    g = torch.Generator().manual_seed(10_000 + step)
    return torch.randn(n, dim, generator=g), torch.randint(0, classes, (n,), generator=g)


def _loss(model: nn.Module, step: int) -> Tensor:
    x, y = random_batch(step)
    return nn.functional.cross_entropy(model(x.to(next(model.parameters()).dtype)), y)


def run_optimizer(
    make: Callable[[Iterable[Tensor]], torch.optim.Optimizer],
    steps: int = 100,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> list[Tensor]:
    """Final parameters after ``steps`` optimizer steps on the fixed batch stream."""
    model = small_mlp(seed).to(dtype)
    opt = make(model.parameters())
    for t in range(steps):
        opt.zero_grad(set_to_none=True)
        _loss(model, t).backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


def run_reference(ref_step: RefStep, steps: int = 100, seed: int = 0) -> list[Tensor]:
    """Final parameters after ``steps`` reference updates on the same batch stream.

    Runs in float64 so that the reference itself adds no rounding error worth the name.
    """
    model = small_mlp(seed).double()
    params = list(model.parameters())
    state: dict[int, dict[str, Any]] = {i: {} for i in range(len(params))}
    for t in range(steps):
        for p in params:
            p.grad = None
        x, y = random_batch(t)
        nn.functional.cross_entropy(model(x.double()), y).backward()
        with torch.no_grad():
            ref_step(params, [p.grad for p in params], state, t + 1)  # type: ignore[misc]
    return [p.detach().float() for p in params]


def max_abs_diff(a: list[Tensor], b: list[Tensor]) -> float:
    """Largest elementwise difference between two parameter lists."""
    return max((x.float() - y.float()).abs().max().item() for x, y in zip(a, b, strict=True))


def assert_params_close(got: list[Tensor], want: list[Tensor], atol: float = 1e-6) -> None:
    """Every parameter within ``atol`` (max abs diff)."""
    diff = max_abs_diff(got, want)
    assert diff <= atol, f"max abs diff {diff:.3e} > {atol:.1e}"


def digits(n_train: int = 1200) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's 8x8 digits, standardized: (x_train, y_train, x_val, y_val)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    x, y = x[perm], y[perm]
    mean, std = x[:n_train].mean(0), x[:n_train].std(0).clamp_min(1e-3)
    x = (x - mean) / std
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def train_digits(
    make: Callable[[Iterable[Tensor]], torch.optim.Optimizer],
    steps: int = 200,
    batch: int = 64,
    seed: int = 0,
    before_step: Callable[[nn.Module, torch.optim.Optimizer, Tensor, Tensor, int], None]
    | None = None,
    hidden: int = 64,
) -> float:
    """Train a 64-``hidden``-10 MLP on digits; return the final full training loss.

    ``before_step(model, opt, x, y, t)`` runs after backward and before ``opt.step()``
    (e.g. to refresh a Hessian estimate).
    """
    x_tr, y_tr, _, _ = digits()
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    opt = make(model.parameters())
    g = torch.Generator().manual_seed(seed)
    for t in range(steps):
        idx = torch.randint(0, len(x_tr), (batch,), generator=g)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x_tr[idx]), y_tr[idx]).backward()
        if before_step is not None:
            before_step(model, opt, x_tr[idx], y_tr[idx], t)
        opt.step()
    with torch.no_grad():
        return nn.functional.cross_entropy(model(x_tr), y_tr).item()


def lr_per_step(
    make: Callable[[Iterable[Tensor]], torch.optim.Optimizer], factor: Callable[[int], float]
) -> Callable[[Iterable[Tensor]], torch.optim.Optimizer]:
    """``make``, but step ``t`` (from 1) runs with every group's LR times ``factor(t)``.

    For runs with a changing LR, and for published variants that rescale the step by a
    per-step factor (e.g. a bias correction applied after a trust ratio).
    """

    def build(params: Iterable[Tensor]) -> torch.optim.Optimizer:
        opt = make(params)
        base = [group["lr"] for group in opt.param_groups]
        inner = opt.step
        t = 0

        def step(closure: Callable[[], Any] | None = None) -> Any:
            nonlocal t
            t += 1
            for group, lr in zip(opt.param_groups, base, strict=True):
                group["lr"] = lr * factor(t)
            return inner(closure)

        opt.step = step  # type: ignore[method-assign]
        return opt

    return build


# --------------------------------------------------------------------------------------------
# Registered optimizers with a requirement (knowledge extra["requires"])
# --------------------------------------------------------------------------------------------


def requirement(name: str) -> str | None:
    """``"closure"``, ``"sparse_gradients"``, ``"2d_params"`` or None for registry ``name``
    (its Lookahead form has the inner optimizer's)."""
    from optiwise import knowledge

    fact = knowledge.get_info(name).extra.get("requires")
    return None if fact is None else str(fact.value)


def fitting_model(name: str, seed: int = 0) -> nn.Module:
    """A small 4-in, 2-out model the optimizer ``name`` can train: Linear/LayerNorm/Linear,
    or bias-free Linears for 2-D-only optimizers, or a sparse embedding bag for sparse-only
    ones (its input is 4 indices per sample)."""
    torch.manual_seed(seed)
    need = requirement(name)
    if need == "2d_params":
        return nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 2, bias=False))
    if need == "sparse_gradients":
        return nn.EmbeddingBag(10, 2, mode="sum", sparse=True)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2))


def fitting_step(name: str, model: nn.Module, opt: torch.optim.Optimizer, t: int = 0) -> Tensor:
    """One step of ``opt`` on ``model`` (from :func:`fitting_model`) on batch ``t``, the way
    optimizer ``name`` must be stepped; returns the loss."""
    g = torch.Generator().manual_seed(t)
    if requirement(name) == "sparse_gradients":
        x = torch.randint(0, 10, (5, 4), generator=g)
    else:
        x = torch.randn(5, 4, generator=g)

    def closure() -> Tensor:
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        loss.backward()
        return loss

    if requirement(name) == "closure":
        return opt.step(closure)  # type: ignore[no-any-return]
    loss = closure()
    opt.step()
    return loss
