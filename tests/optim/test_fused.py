"""The fused (compiled) path: same results and state as the per-tensor path, no recompiles
when the LR changes, one graph for every model, and the ``fused``/``foreach`` policy."""

from __future__ import annotations

import copy
import io
import os
import shutil
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from optiwise.optim import _fused
from optiwise.optim._fused import AUTO_MIN_NUMEL, FLAT_NUMEL, fused_map, fused_step, use_fused
from optiwise.optim._kernels import (
    adamw_fused,
    adamw_single_tensor,
    lion_fused,
    lion_single_tensor,
)
from tests.optim.fused_lion import FusedLion

# torch.compile builds CPU kernels with a C++ compiler (CXX, g++ by default)
compiles = pytest.mark.skipif(
    shutil.which(os.environ.get("CXX", "g++")) is None,
    reason="torch.compile needs a C++ compiler on CPU (set CXX or install g++)",
)


def graphs() -> int:
    """Graphs compiled so far in this process."""
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


def assert_rel_close(got: list[Tensor], want: list[Tensor], rtol: float = 1e-6) -> None:
    """Each tensor within ``rtol`` relative (to its largest element where it crosses 0)."""
    for a, b in zip(got, want, strict=True):
        scale = b.abs().max().item() if b.numel() else 0.0
        torch.testing.assert_close(a, b, rtol=rtol, atol=rtol * scale)


def tensors(seed: int, dtype: torch.dtype = torch.float32) -> list[Tensor]:
    """One tensor per route through the fused path: large, small (flat), a single element,
    and a non-contiguous one (run uncompiled)."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(FLAT_NUMEL + 123,), (40, 25), (37,), (1,), (7, 5)]
    out = [torch.randn(s, generator=g).to(dtype) for s in shapes]
    out[-1] = out[-1].t()
    return out


class Run:
    """Replays a fused update and its per-tensor reference on the same gradients."""

    def __init__(self, n_states: int, dtype: torch.dtype = torch.float32) -> None:
        self.ref = tensors(0, dtype)
        self.fused = [p.clone() if p.is_contiguous() else p.t().clone().t() for p in self.ref]
        self.ref_states = [[torch.zeros_like(p) for p in self.ref] for _ in range(n_states)]
        keys = [f"s{k}" for k in range(n_states)]
        self.keys = keys
        self.state: dict[Tensor, dict[str, Tensor]] = {
            p: {k: torch.zeros_like(p) for k in keys} for p in self.fused
        }
        self.cache: _fused.FusedCache = {}

    def fused_states(self) -> list[list[Tensor]]:
        return [[self.state[p][k] for p in self.fused] for k in self.keys]

    def step(self, update: Callable[..., None], grads: list[Tensor], **hparams: object) -> None:
        fused_step(
            update, self.fused, grads, self.fused_states(), self.keys,
            optimizer_state=self.state, cache=self.cache, group_id=0, strict=True,
            hparams=hparams,
        )  # fmt: skip


@compiles
@pytest.mark.parametrize("maximize", [False, True])
def test_fused_lion_matches_lion_single_tensor_after_100_steps(maximize: bool) -> None:
    run = Run(1)
    for t in range(100):
        lr, wd, b1, b2 = 1e-3 * (1 + t % 7), 0.1 + 0.01 * t, 0.9, 0.99
        grads = tensors(1000 + t)
        lion_single_tensor(
            run.ref, grads, run.ref_states[0], lr=lr, beta1=b1, beta2=b2, weight_decay=wd,
            maximize=maximize,
        )  # fmt: skip
        run.step(
            lion_fused, grads, decay=1 - lr * wd, neg_lr=-lr, weight1=1 - b1, weight2=1 - b2,
            maximize=maximize,
        )  # fmt: skip
    assert_rel_close(run.fused, run.ref)
    assert_rel_close(run.fused_states()[0], run.ref_states[0])
    # the small tensors' state is one flat buffer, seen through views of the params' shapes
    small = [run.state[p]["s0"] for p in run.fused[1:4]]
    assert len({s.untyped_storage().data_ptr() for s in small}) == 1
    assert [s.shape for s in small] == [p.shape for p in run.fused[1:4]]


@compiles
def test_fused_adamw_matches_adamw_single_tensor_after_100_steps() -> None:
    run = Run(2)
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.999, 1e-8, 0.05
    for t in range(1, 101):
        grads = tensors(2000 + t)
        adamw_single_tensor(
            run.ref, grads, *run.ref_states, [t] * len(grads), lr=lr, beta1=b1, beta2=b2,
            eps=eps, weight_decay=wd, maximize=False,
        )  # fmt: skip
        run.step(
            adamw_fused, grads, decay=1 - lr * wd, weight1=1 - b1, beta2=b2, weight2=1 - b2,
            bias2_sqrt=(1 - b2**t) ** 0.5, eps=eps, neg_step_size=-lr / (1 - b1**t),
            maximize=False,
        )  # fmt: skip
    assert_rel_close(run.fused, run.ref)
    for got, want in zip(run.fused_states(), run.ref_states, strict=True):
        assert_rel_close(got, want)


@compiles
def test_bf16_fused_computes_in_fp32_and_rounds_once() -> None:
    bf16, fp32 = Run(1, torch.bfloat16), Run(1, torch.float32)
    fp32.fused = [p.float() for p in bf16.fused]
    fp32.state = {p: {"s0": torch.zeros_like(p)} for p in fp32.fused}
    hp = dict(decay=1 - 1e-2 * 0.1, neg_lr=-1e-2, weight1=0.1, weight2=0.01, maximize=False)
    for t in range(3):
        grads = tensors(3000 + t, torch.bfloat16)
        bf16.step(lion_fused, grads, **hp)
        fp32.step(lion_fused, [g.float() for g in grads], **hp)
        # the fp32 run starts each step from the bf16 values, so the two differ only in
        # the final rounding of each stored tensor (the last, non-contiguous tensor runs
        # uncompiled and rounds after every op)
        for a, b in zip(bf16.fused[:-1], fp32.fused[:-1], strict=True):
            assert torch.equal(a, b.bfloat16())
        for a, b in zip(bf16.fused_states()[0][:-1], fp32.fused_states()[0][:-1], strict=True):
            assert torch.equal(a, b.bfloat16())
        with torch.no_grad():
            for a, b in zip(fp32.fused, bf16.fused, strict=True):
                a.copy_(b)
            for a, b in zip(fp32.fused_states()[0], bf16.fused_states()[0], strict=True):
                a.copy_(b)


# --------------------------------------------------------------------------------------------
# Through an optimizer
# --------------------------------------------------------------------------------------------


def model(seed: int = 0, hidden: int = 200) -> nn.Module:
    """An MLP with one weight above FLAT_NUMEL elements and the rest below it."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(12, hidden), nn.Tanh(), nn.Linear(hidden, 170), nn.Linear(170, 3)
    )


def train(net: nn.Module, opt: torch.optim.Optimizer, steps: range, sched: object = None) -> None:
    for i in steps:
        g = torch.Generator().manual_seed(i)
        x, y = torch.randn(16, 12, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()  # type: ignore[attr-defined]


def params_of(net: nn.Module) -> list[Tensor]:
    return [p.detach() for p in net.parameters()]


def test_model_has_both_routes() -> None:
    sizes = [p.numel() for p in model().parameters()]
    assert max(sizes) >= FLAT_NUMEL > min(sizes)


def lion_copy(
    params: list[Tensor], grads: list[Tensor], exp_avgs: list[Tensor], **kw: object
) -> None:
    """lion_fused under a new code object, so that its compiled graphs are counted afresh."""
    lion_fused(params, grads, exp_avgs, **kw)  # type: ignore[arg-type]


class CountedLion(FusedLion):
    update = staticmethod(lion_copy)


@compiles
def test_one_graph_for_every_lr_and_model() -> None:
    before = graphs()
    # Older torch releases specialized graphs on Python floats; the scalar tensors must not
    # depend on that.
    with torch._dynamo.config.patch(specialize_float=True):
        net = model()
        opt = CountedLion(net.parameters(), lr=1e-3, weight_decay=0.1, fused=True)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.97)
        train(net, opt, range(1), sched)
        assert graphs() == before + 1
        lrs = []
        with torch.compiler.set_stance("fail_on_recompile"):
            for i in range(1, 30):
                lrs.append(opt.param_groups[0]["lr"])
                train(net, opt, range(i, i + 1), sched)
            # another model: other tensor counts and sizes, two large tensors of equal size
            other = nn.Sequential(nn.Linear(5, 210), nn.Linear(210, 210), nn.Linear(210, 210))
            opt2 = CountedLion(other.parameters(), lr=3e-4, weight_decay=0.2, fused=True)
            train_other = [p for p in other.parameters() if p.numel() >= FLAT_NUMEL]
            assert len(train_other) == 2 and train_other[0].shape == train_other[1].shape
            for _ in range(2):
                other(torch.randn(4, 5)).sum().backward()
                opt2.step()
    assert len(set(lrs)) == len(lrs)  # the LR really changed every step
    assert graphs() == before + 1


def states(opt: torch.optim.Optimizer) -> dict[int, dict[str, Tensor]]:
    return opt.state_dict()["state"]  # type: ignore[no-any-return]


@compiles
@pytest.mark.parametrize("path", [dict(fused=False, foreach=False), dict(foreach=True)])
def test_state_dict_is_the_same_on_every_path(path: dict[str, bool]) -> None:
    a, b = model(), model()
    fused, other = (
        FusedLion(a.parameters(), lr=1e-3, fused=True),
        FusedLion(b.parameters(), lr=1e-3, **path),
    )
    train(a, fused, range(20))
    train(b, other, range(20))
    sa, sb = states(fused), states(other)
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys() == {"exp_avg"}
        x, y = sa[i]["exp_avg"], sb[i]["exp_avg"]
        assert (x.shape, x.dtype, x.device) == (y.shape, y.dtype, y.device)
        assert_rel_close([x], [y])
    assert_rel_close(params_of(a), params_of(b))


def reload(opt: torch.optim.Optimizer) -> dict[str, object]:
    """The optimizer's state dict after a round trip through torch.save / torch.load."""
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # type: ignore[no-any-return]


@compiles
@pytest.mark.parametrize(("first", "then"), [(True, False), (False, True)])
def test_resume_on_another_path(first: bool, then: bool) -> None:
    ref = model()
    train(ref, FusedLion(ref.parameters(), lr=1e-3, weight_decay=0.1, fused=first), range(40))

    net = model()
    opt = FusedLion(net.parameters(), lr=1e-3, weight_decay=0.1, fused=first)
    train(net, opt, range(20))
    saved, weights = reload(opt), copy.deepcopy(net.state_dict())
    fresh = model(seed=1)
    fresh.load_state_dict(weights)
    resumed = FusedLion(fresh.parameters(), lr=1e-3, weight_decay=0.1, fused=then)
    resumed.load_state_dict(saved)  # type: ignore[arg-type]
    assert resumed.param_groups[0]["fused"] is then  # the path is this run's choice
    train(fresh, resumed, range(20, 40))
    assert_rel_close(params_of(fresh), params_of(ref))


@compiles
def test_params_without_grads_are_skipped_and_flat_state_follows() -> None:
    a, b = model(), model()
    fused, ref = (
        FusedLion(a.parameters(), lr=1e-3, fused=True),
        FusedLion(b.parameters(), lr=1e-3, fused=False),
    )
    for i in range(12):
        for net, opt in ((a, fused), (b, ref)):
            opt.zero_grad(set_to_none=True)
            g = torch.Generator().manual_seed(i)
            nn.functional.cross_entropy(
                net(torch.randn(8, 12, generator=g)), torch.zeros(8, dtype=torch.long)
            ).backward()
            if i % 3 == 1:  # every third step a small tensor has no gradient
                net[3].bias.grad = None
            opt.step()
    assert_rel_close(params_of(a), params_of(b))
    assert_rel_close(
        [s["exp_avg"] for s in states(fused).values()], [s["exp_avg"] for s in states(ref).values()]
    )


# --------------------------------------------------------------------------------------------
# Policy and failures
# --------------------------------------------------------------------------------------------


def test_fused_and_foreach_together_rejected() -> None:
    with pytest.raises(ValueError, match="fused=True and foreach=True"):
        FusedLion(model().parameters(), fused=True, foreach=True)


def test_fused_true_rejects_what_it_cannot_fuse() -> None:
    with pytest.raises(ValueError, match="parameter #0 is on meta"):
        _fused.check_fused_params([torch.zeros(3, device="meta")])
    with pytest.raises(ValueError, match="dense floating-point"):
        _fused.check_fused_params([torch.zeros(3, dtype=torch.int64)])


def test_auto_policy() -> None:
    small, large = [torch.zeros(1000)], [torch.zeros(AUTO_MIN_NUMEL)]
    assert use_fused(None, None, large, lion_fused) is True
    assert use_fused(None, None, small, lion_fused) is False  # the compile would not pay
    assert use_fused(None, True, large, lion_fused) is False  # an explicit foreach wins
    assert use_fused(None, False, large, lion_fused) is False
    assert use_fused(False, None, large, lion_fused) is False
    assert use_fused(True, None, small, lion_fused) is True
    assert use_fused(None, None, [], lion_fused) is False
    assert use_fused(None, None, [torch.zeros(AUTO_MIN_NUMEL, device="meta")], lion_fused) is False


def test_a_failed_compile_raises_with_fused_true_and_falls_back_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(fn: Callable[..., None]) -> Callable[..., None]:
        def call(*args: object, **kwargs: object) -> None:
            raise RuntimeError("no C++ compiler")

        return call

    monkeypatch.setattr(_fused, "_compiled", broken)
    monkeypatch.setattr(_fused, "_PROBED", {})
    monkeypatch.setattr(_fused, "_BROKEN", {})
    hp = dict(decay=0.999, neg_lr=-1e-2, weight1=0.1, weight2=0.01, maximize=False)
    run = Run(1)
    before = [p.clone() for p in run.fused]
    with pytest.raises(RuntimeError, match=r"fused=True, but .*no C\+\+ compiler"):
        run.step(lion_fused, tensors(1), **hp)
    assert all(torch.equal(a, b) for a, b in zip(run.fused, before, strict=True))

    grads = tensors(1)
    with pytest.warns(RuntimeWarning, match="could not be compiled"):
        fused_step(
            lion_fused, run.fused, grads, run.fused_states(), run.keys,
            optimizer_state=run.state, cache=run.cache, group_id=0, strict=False, hparams=hp,
        )  # fmt: skip
    lion_single_tensor(
        run.ref, grads, run.ref_states[0], lr=1e-2, beta1=0.9, beta2=0.99, weight_decay=0.1,
        maximize=False,
    )  # fmt: skip
    assert_rel_close(run.fused, run.ref)
    # fused=None no longer picks the update that failed
    assert use_fused(None, None, [torch.zeros(AUTO_MIN_NUMEL)], lion_fused) is False


# --------------------------------------------------------------------------------------------
# Per-tensor values: the two passes of a trust-ratio update (as LAMB and LARS need)
# --------------------------------------------------------------------------------------------


def update_norms(
    params: list[Tensor], grads: list[Tensor], *, weight_decay: Tensor
) -> list[Tensor]:
    """First pass: the squared norm of each tensor's update ``g + wd w``, summed in float64
    (Inductor specializes an fp32 sum on the size being at most 4096 or not)."""
    return [
        ((g + weight_decay * p).double() ** 2).sum() for p, g in zip(params, grads, strict=True)
    ]


def apply_trusted(
    params: list[Tensor],
    grads: list[Tensor],
    *,
    trust: list[Tensor],
    weight_decay: Tensor,
    neg_lr: Tensor,
) -> None:
    """Second pass: ``w <- w - lr r (g + wd w)`` with a trust ratio ``r`` per tensor."""
    for p, g, r in zip(params, grads, trust, strict=True):
        p.add_(neg_lr * r * (g + weight_decay * p))


def trust_ratios(params: list[Tensor], update_sq: list[Tensor]) -> list[Tensor]:
    """``0.01 ||w|| / ||u||``, 1 where a norm is 0, computed without leaving the device."""
    w = torch.stack(torch._foreach_norm(params)).double()
    u = torch.stack(update_sq).sqrt()
    return list(torch.where((w > 0) & (u > 0), 0.01 * w / u, torch.ones_like(w)).unbind())


@compiles
def test_fused_map_passes_values_per_tensor_and_returns_them() -> None:
    ref = tensors(0)[:4] + [torch.randn(7, 5).t()] + [torch.randn(300) for _ in range(5)]
    fused = [p.clone() if p.is_contiguous() else p.t().clone().t() for p in ref]
    hp = dict(weight_decay=1e-2, neg_lr=-0.1)
    before = None
    for t in range(30):
        g = torch.Generator().manual_seed(t)
        grads = [torch.randn(p.shape, generator=g) for p in ref]
        grads[4] = grads[4].t().contiguous().t()  # non-contiguous like its parameter
        # reference, eagerly
        sq = [((gr + 1e-2 * p) ** 2).sum() for p, gr in zip(ref, grads, strict=True)]
        for p, gr, r in zip(ref, grads, trust_ratios(ref, sq), strict=True):
            p.add_(-0.1 * r * (gr + 1e-2 * p))
        # compiled, two passes
        with torch.compiler.set_stance("fail_on_recompile" if t > 0 else "default"):
            norms = fused_map(
                update_norms, [fused, grads], strict=True, hparams={"weight_decay": 1e-2}
            )
            assert norms is not None and len(norms) == len(fused)
            if t > 0:  # the same tensors in another order, the large one last: same graph
                rotated = fused_map(
                    update_norms, [fused[2:] + fused[:2], grads[2:] + grads[:2]], strict=True,
                    hparams={"weight_decay": 1e-2},
                )  # fmt: skip
                assert rotated is not None
                assert all(map(torch.equal, rotated[-2:] + rotated[:-2], norms))
            result = fused_map(
                apply_trusted, [fused, grads], strict=True, hparams=hp,
                per_tensor={"trust": trust_ratios(fused, norms)},
            )  # fmt: skip
        assert result is None
        if t == 0:
            before = graphs()
    assert graphs() == before  # new ratios every step, no new graph
    assert_rel_close(fused, ref)
