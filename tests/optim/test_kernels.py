"""The shared update kernels against torch's implementation and against each other."""

from __future__ import annotations

import pytest
import torch

from optiwise.optim._kernels import (
    adamw_multi_tensor,
    adamw_single_tensor,
    lion_multi_tensor,
    lion_single_tensor,
    lookahead_sync_multi_tensor,
    lookahead_sync_single_tensor,
)


def tensors(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 3, generator=g), torch.randn(7, generator=g)]


@pytest.mark.parametrize("maximize", [False, True])
def test_adamw_single_tensor_is_torch_adamw_bit_for_bit(maximize: bool) -> None:
    ours = tensors()
    theirs = [p.clone().requires_grad_() for p in ours]
    opt = torch.optim.AdamW(theirs, lr=1e-2, weight_decay=0.1, foreach=False, maximize=maximize)
    m = [torch.zeros_like(p) for p in ours]
    v = [torch.zeros_like(p) for p in ours]
    for t in range(1, 30):
        grads = tensors(seed=t)
        for p, g in zip(theirs, grads, strict=True):
            p.grad = g.clone()
        opt.step()
        adamw_single_tensor(
            ours, grads, m, v, [t, t], lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8,
            weight_decay=0.1, maximize=maximize,
        )  # fmt: skip
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b.detach())


def test_lion_paths_agree_and_follow_the_rule() -> None:
    single, multi = tensors(), tensors()
    m1 = [torch.zeros_like(p) for p in single]
    m2 = [torch.zeros_like(p) for p in multi]
    start = [p.clone() for p in single]
    grads = tensors(seed=1)
    kw = dict(lr=1e-3, beta1=0.9, beta2=0.99, weight_decay=0.1, maximize=False)
    lion_single_tensor(single, grads, m1, **kw)  # type: ignore[arg-type]
    lion_multi_tensor(multi, grads, m2, **kw)  # type: ignore[arg-type]
    for a, b in zip(single, multi, strict=True):
        assert torch.equal(a, b)
    # first step from m = 0: w <- w (1 - lr wd) - lr sign((1 - b1) g); m <- (1 - b2) g
    for w0, w1, g, m in zip(start, single, grads, m1, strict=True):
        torch.testing.assert_close(w1, w0 * (1 - 1e-4) - 1e-3 * g.sign())
        torch.testing.assert_close(m, 0.01 * g)


@pytest.mark.parametrize("maximize", [False, True])
def test_adamw_multi_tensor_is_the_single_tensor_path_bit_for_bit(maximize: bool) -> None:
    single, multi = tensors(), tensors()
    m1, v1 = [torch.zeros_like(p) for p in single], [torch.zeros_like(p) for p in single]
    m2, v2 = [torch.zeros_like(p) for p in multi], [torch.zeros_like(p) for p in multi]
    kw = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, maximize=maximize)
    for t in range(1, 20):
        grads = tensors(seed=t)
        steps = [t, t + 3]  # per-tensor step counts may differ
        adamw_single_tensor(single, grads, m1, v1, steps, **kw)  # type: ignore[arg-type]
        adamw_multi_tensor(multi, grads, m2, v2, steps, **kw)  # type: ignore[arg-type]
    for a, b in zip(single + m1 + v1, multi + m2 + v2, strict=True):
        assert torch.equal(a, b)
    adamw_multi_tensor([], [], [], [], [], **kw)  # type: ignore[arg-type]


def test_lookahead_sync_paths_agree_and_follow_the_rule() -> None:
    fast1, fast2 = tensors(), tensors()
    slow1, slow2 = tensors(seed=5), tensors(seed=5)
    want = [s + 0.3 * (f - s) for f, s in zip(fast1, slow1, strict=True)]
    lookahead_sync_single_tensor(fast1, slow1, alpha=0.3)
    lookahead_sync_multi_tensor(fast2, slow2, alpha=0.3)
    for f1, s1, f2, s2, w in zip(fast1, slow1, fast2, slow2, want, strict=True):
        assert torch.equal(f1, s1) and torch.equal(f1, f2) and torch.equal(s1, s2)
        torch.testing.assert_close(s1, w)
    fast, slow = tensors(), tensors(seed=5)
    before = [f.clone() for f in fast]
    lookahead_sync_single_tensor(fast, slow, alpha=1.0)  # alpha 1: the fast weights stay
    for a, b, s in zip(fast, before, slow, strict=True):
        assert torch.equal(a, b) and torch.equal(a, s)
