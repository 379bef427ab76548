"""The fused (compiled) path's machinery: same results and state as the per-tensor path,
no recompiles when the LR changes, one graph for every model, the multi-pass runner, and the
``fused``/``foreach`` policy. Each optimizer's fused path: test_fused_optimizers.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from optiwise.optim import LARS, Lion, _fused
from optiwise.optim._fused import (
    AUTO_MIN_NUMEL,
    FLAT_NUMEL,
    ROW,
    FusedPasses,
    _row_length,
    fused_step,
    use_fused,
)
from optiwise.optim._kernels import (
    adamw_fused,
    adamw_single_tensor,
    lars_fused_apply,
    lars_fused_norms,
    lars_single_tensor,
    lion_fused,
    lion_single_tensor,
)
from tests.optim.fused_helpers import (
    assert_rel_close,
    compiles,
    graphs,
    model,
    params_of,
    states,
    train,
)


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
            sign=-1.0 if maximize else 1.0,
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
    hp = dict(decay=1 - 1e-2 * 0.1, neg_lr=-1e-2, weight1=0.1, weight2=0.01, sign=1.0)
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


def test_model_has_both_routes() -> None:
    sizes = [p.numel() for p in model().parameters()]
    assert max(sizes) >= FLAT_NUMEL > min(sizes)


@compiles
def test_one_graph_for_every_lr_and_model() -> None:
    # Older torch releases specialized graphs on Python floats; the scalar tensors must not
    # depend on that.
    with torch._dynamo.config.patch(specialize_float=True):
        net = model()
        opt = Lion(net.parameters(), lr=1e-3, weight_decay=0.1, fused=True)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.97)
        train(net, opt, range(1), sched)  # compiles Lion's graph, unless a test did
        before = graphs()
        lrs = []
        with torch.compiler.set_stance("fail_on_recompile"):
            for i in range(1, 30):
                lrs.append(opt.param_groups[0]["lr"])
                train(net, opt, range(i, i + 1), sched)
            # another model: other tensor counts and sizes, two large tensors of equal size
            other = nn.Sequential(nn.Linear(5, 210), nn.Linear(210, 210), nn.Linear(210, 210))
            opt2 = Lion(other.parameters(), lr=3e-4, weight_decay=0.2, fused=True)
            large = [p for p in other.parameters() if p.numel() >= FLAT_NUMEL]
            assert len(large) == 2 and large[0].shape == large[1].shape
            for _ in range(2):
                other(torch.randn(4, 5)).sum().backward()
                opt2.step()
    assert len(set(lrs)) == len(lrs)  # the LR really changed every step
    assert graphs() == before


@compiles
def test_params_without_grads_are_skipped_and_flat_state_follows() -> None:
    a, b = model(), model()
    fused, ref = (
        Lion(a.parameters(), lr=1e-3, fused=True),
        Lion(b.parameters(), lr=1e-3, fused=False),
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
        Lion(model().parameters(), fused=True, foreach=True)


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


def test_auto_policy_needs_every_pass_compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    large = [torch.zeros(AUTO_MIN_NUMEL)]
    monkeypatch.setattr(_fused, "_BROKEN", {lars_fused_apply: "no C++ compiler"})
    assert use_fused(None, None, large, lars_fused_norms) is True
    assert use_fused(None, None, large, lars_fused_norms, lars_fused_apply) is False
    assert use_fused(True, None, large, lars_fused_norms, lars_fused_apply) is True


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
    hp = dict(decay=0.999, neg_lr=-1e-2, weight1=0.1, weight2=0.01, sign=1.0)
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
# Multi-pass updates (LAMB, LARS): every tensor as rows, sums per tensor, values per tensor
# --------------------------------------------------------------------------------------------


def test_row_length_divides_and_prefers_whole_vectors() -> None:
    assert _row_length(40 * 1000) == 4000  # the longest divisor that is a multiple of 16
    assert _row_length(257 * 1000) == 2570  # 257000 = 2^3 5^3 257: no multiple of 16 fits
    assert _row_length(34000) == 2000
    assert _row_length(32771) is None  # a prime: the tensor takes rows of 2048 and a tail
    for n in (40 * 1000, 257 * 1000, 34000, 1 << 20, 3 * 5 * 7 * 11 * 13 * 17):
        length = _row_length(n)
        assert length is not None and n % length == 0 and ROW <= length <= 4096


def pass_tensors(seed: int, sizes: tuple[int, ...]) -> list[Tensor]:
    """Tensors of the given sizes and a non-contiguous one (uncompiled, on a copy)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) for n in sizes] + [torch.randn(7, 5, generator=g).t()]


LARS_HP = dict(weight_decay=1e-2, trust_coefficient=0.02, eps=1e-8, lr=0.5, momentum=0.9)


def lars_two_passes(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    state: dict[Tensor, dict[str, Tensor]],
    cache: _fused.FusedCache,
) -> Tensor:
    """One LARS step through FusedPasses: norms, trust ratios on the device, the step."""
    hp = LARS_HP
    with FusedPasses(
        params, grads, [bufs], ["momentum_buffer"], optimizer_state=state, cache=cache,
        cache_key=0, strict=True,
    ) as passes:  # fmt: skip
        sums = passes.run(lars_fused_norms)
        assert sums is not None and sums.shape == (len(params), 2)
        w, g = sums.sqrt().unbind(-1)
        ratio = hp["trust_coefficient"] * w / (g + hp["weight_decay"] * w + hp["eps"])
        result = passes.run(
            lars_fused_apply, per_tensor={"ratio": ratio}, weight_decay=hp["weight_decay"],
            lr=hp["lr"], neg_lr=-hp["lr"], momentum=hp["momentum"],
            neg_momentum=-hp["momentum"], sign=1.0, nesterov=False,
        )  # fmt: skip
        assert result is None
    return sums


@compiles
def test_fused_passes_sum_per_tensor_and_apply_values_per_tensor() -> None:
    # rows of 4000; rows of 2048 and a tail of 3 (a prime); two small ones; non-contiguous
    sizes = (40 * 1000, 32771, 300, 1)
    ref = pass_tensors(0, sizes)
    fused = [p.clone() if p.is_contiguous() else p.t().clone().t() for p in ref]
    ref_bufs = [torch.zeros_like(p) for p in ref]
    state: dict[Tensor, dict[str, Tensor]] = {p: {"momentum_buffer": torch.zeros_like(p)}
                                              for p in fused}  # fmt: skip
    cache: _fused.FusedCache = {}
    before = None
    for t in range(20):
        grads = [g if p.is_contiguous() else g.t().contiguous().t()
                 for p, g in zip(ref, pass_tensors(100 + t, sizes), strict=True)]  # fmt: skip
        want = torch.stack([torch.stack([p.double().norm() ** 2, g.double().norm() ** 2])
                            for p, g in zip(ref, grads, strict=True)])  # fmt: skip
        lars_single_tensor(
            ref, grads, ref_bufs, lr=LARS_HP["lr"], momentum=LARS_HP["momentum"],
            weight_decay=LARS_HP["weight_decay"], trust_coefficient=LARS_HP["trust_coefficient"],
            eps=LARS_HP["eps"], nesterov=False, adapt=True, maximize=False,
        )  # fmt: skip
        with torch.compiler.set_stance("fail_on_recompile" if t > 0 else "default"):
            bufs = [state[p]["momentum_buffer"] for p in fused]
            sums = lars_two_passes(fused, grads, bufs, state, cache)
        torch.testing.assert_close(sums, want, rtol=1e-5, atol=0)
        if t == 0:
            before = graphs()
    assert graphs() == before  # new values and ratios every step, no new graph
    assert_rel_close(fused, ref)
    assert_rel_close([state[p]["momentum_buffer"] for p in fused], ref_bufs)
    # the small tensors' state lives in one row buffer, each tensor starting a row
    small = [state[p]["momentum_buffer"] for p in fused[2:4]]
    assert small[0].untyped_storage().data_ptr() == small[1].untyped_storage().data_ptr()
    assert small[1].storage_offset() - small[0].storage_offset() == 2 * ROW  # 300 elements


@compiles
def test_fused_passes_one_graph_for_other_sizes() -> None:
    params = pass_tensors(0, (40 * 1000, 32771, 300, 1))
    state = {p: {"momentum_buffer": torch.zeros_like(p)} for p in params}
    lars_two_passes(params, pass_tensors(1, (40 * 1000, 32771, 300, 1)),
                    [state[p]["momentum_buffer"] for p in params], state, {})  # fmt: skip
    before = graphs()
    with torch.compiler.set_stance("fail_on_recompile"):
        for sizes in [(70_000, 50_000, 33_000, 12), (1 << 16,) * 9 + (5, 5000)]:
            params = pass_tensors(2, sizes)[:-1]
            state = {p: {"momentum_buffer": torch.zeros_like(p)} for p in params}
            bufs = [state[p]["momentum_buffer"] for p in params]
            lars_two_passes(params, pass_tensors(3, sizes)[:-1], bufs, state, {})
    assert graphs() == before


def test_fused_passes_of_nothing() -> None:
    passes = FusedPasses([], [], [], [], optimizer_state={}, cache={}, cache_key=0, strict=True)
    assert passes.run(lars_fused_norms) is None


@compiles
def test_lars_group_without_adaptation_skips_the_norms(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = FusedPasses.run

    def run(self: FusedPasses, update: Callable[..., object], **kw: object) -> object:
        calls.append(update.__name__)
        return original(self, update, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(FusedPasses, "run", run)
    net = model()
    train(net, LARS(net.parameters(), lr=0.1, fused=True), range(2))  # weight_decay 0
    assert calls == ["lars_fused_apply"] * 2
