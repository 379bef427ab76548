"""The fused 8-bit steps: the packed requantization table, the C++ kernel against the
per-tensor path (bit for bit), through AdamW8bit and Lion8bit (state, resuming on another
path, no recompilation), building and caching the kernel, and the fused/foreach policy."""

from __future__ import annotations

import copy
import shutil
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from optiwise.optim import AdamW8bit, Lion8bit, _native
from optiwise.optim._fused import AUTO_MIN_NUMEL
from optiwise.optim._kernels import (
    _LUT_MASK,
    _LUT_SHIFT,
    _codes,
    _scalars,
    adamw8bit_hparams,
    adamw8bit_single_tensor,
    adamw_single_tensor,
    dequantize_blockwise,
    lion8bit_hparams,
    lion8bit_single_tensor,
    lion_fused,
    make_quant_map,
    packed_codes,
    packed_lut,
    packed_maps,
    quant_map,
)
from tests.optim.fused_helpers import assert_rel_close, graphs, reload

CPU = torch.device("cpu")

native = pytest.mark.skipif(
    _native._compiler() is None,
    reason="the fused 8-bit step is compiled at run time: install g++ or set CXX",
)


# --------------------------------------------------------------------------------------------
# The packed table: the reference quantizer's codes in one lookup
# --------------------------------------------------------------------------------------------


def every_kind_of_float(qmap: Any) -> Tensor:
    """Random bit patterns (every sign, exponent, NaN, inf, subnormal), every bucket edge
    and decision boundary with their neighbours, and normalized values as blocks hold."""
    g = torch.Generator().manual_seed(0)
    raw = torch.randint(-(2**31), 2**31, (1 << 20,), generator=g, dtype=torch.int64)
    edges = torch.arange(_LUT_MASK + 1, dtype=torch.int64) << _LUT_SHIFT
    points = torch.cat([raw, edges, edges + 1, edges - 1, edges + (1 << _LUT_SHIFT) - 1])
    points = torch.where(points >= 2**31, points - 2**32, points)
    points = torch.where(points < -(2**31), points + 2**32, points)
    floats = points.to(torch.int32).view(torch.float32)
    mids = qmap.boundaries[1:-1]
    near = torch.cat([mids, torch.nextafter(mids, mids + 1), torch.nextafter(mids, mids - 1)])
    special = torch.tensor([0.0, -0.0, torch.inf, -torch.inf, torch.nan, 1e-45, -1e-45, 1.0, -1])
    values = torch.randn(100_000, generator=g) * torch.rand(100_000, generator=g) ** 8
    return torch.cat([floats, near, special, values / values.abs().max()])


@pytest.mark.parametrize(
    ("values", "keep_nonzero"),
    [
        ("signed", False),  # the momentum
        ("unsigned", True),  # the second moment
        ("signed", True),
        ("unsigned", False),
        ("linear", False),  # any map make_quant_map accepts
    ],
)
def test_packed_table_gives_the_reference_codes_for_every_float(
    values: str, keep_nonzero: bool
) -> None:
    if values == "linear":
        qmap = make_quant_map(torch.linspace(-1, 1, 256))
    else:
        qmap = quant_map(values == "signed", CPU)
    table = packed_lut(qmap, keep_nonzero)
    assert table.shape == (_LUT_MASK + 1,) and table.dtype == torch.int32
    x = every_kind_of_float(qmap)
    # what quantize_blockwise_ stores: the index, wrapped to 8 bits
    assert torch.equal(packed_codes(x, table), _codes(x, qmap, keep_nonzero) & 0xFF)


def test_packed_table_refuses_a_map_with_two_changes_in_one_bucket() -> None:
    qmap = quant_map(True, CPU)
    crowded = qmap.boundaries.clone()
    crowded[200] = crowded[201] * (1 - 2**-12)  # two decision boundaries in one bucket
    with pytest.raises(RuntimeError, match="holds two"):
        packed_lut(qmap._replace(boundaries=crowded), keep_nonzero=False)
    # keep_nonzero adds a change right after 0: a boundary in 0's bucket would be a second
    tiny = qmap.boundaries.clone()
    tiny[128] = 1e-42
    packed_lut(qmap._replace(boundaries=tiny), keep_nonzero=False)
    with pytest.raises(RuntimeError, match="holds two"):
        packed_lut(qmap._replace(boundaries=tiny), keep_nonzero=True)


def test_packed_maps_are_built_once_per_device() -> None:
    maps = packed_maps(CPU)
    assert packed_maps(CPU) is maps
    assert torch.equal(maps.signed_values, quant_map(True, CPU).values)
    assert torch.equal(maps.unsigned_lut, packed_lut(quant_map(False, CPU), keep_nonzero=True))


# --------------------------------------------------------------------------------------------
# The kernel against the per-tensor path
# --------------------------------------------------------------------------------------------

#: Full and partial blocks, a tensor smaller than any block, one element, a matrix.
SHAPES = [(5000,), (70, 64), (300,), (257,), (1,), (33, 7)]


class Stream:
    """Tensors, 8-bit state and a gradient stream, twice: for the kernel and the reference."""

    def __init__(self, block_size: int, dtype: torch.dtype = torch.float32) -> None:
        g = torch.Generator().manual_seed(block_size)
        self.block_size = block_size
        self.params = [torch.randn(s, generator=g).to(dtype) for s in SHAPES]
        self.m = [torch.zeros(s, dtype=torch.int8) for s in SHAPES]
        self.v = [torch.zeros(s, dtype=torch.uint8) for s in SHAPES]
        self.m_absmax = [torch.zeros(-(-p.numel() // block_size)) for p in self.params]
        self.v_absmax = [torch.zeros(-(-p.numel() // block_size)) for p in self.params]

    def copy(self) -> Stream:
        return copy.deepcopy(self)

    def tensors(self) -> list[list[Tensor]]:
        return [self.params, self.m, self.v, self.m_absmax, self.v_absmax]

    def moments(self) -> tuple[list[Tensor], list[Tensor]]:
        """The moments dequantized (fp32)."""
        signed, unsigned, b = quant_map(True, CPU), quant_map(False, CPU), self.block_size
        m = [
            dequantize_blockwise(c, a, signed, b)
            for c, a in zip(self.m, self.m_absmax, strict=True)
        ]
        v = [
            dequantize_blockwise(c, a, unsigned, b)
            for c, a in zip(self.v, self.v_absmax, strict=True)
        ]
        return m, v

    def adamw(
        self, grads: list[Tensor], t: int, *, fused: bool, maximize: bool, **hp: float
    ) -> None:
        """Step ``t`` of 8-bit AdamW, on the kernel (``fused``) or the per-tensor path."""
        if fused:
            _native.adamw_step(
                self.params, grads, self.m, self.v, maximize=maximize,
                block_size=self.block_size, exp_avg_absmax=self.m_absmax,
                exp_avg_sq_absmax=self.v_absmax, hparams=adamw8bit_hparams(**hp, step=t),
            )  # fmt: skip
        else:
            adamw8bit_single_tensor(
                self.params, grads, self.m, self.m_absmax, self.v, self.v_absmax,
                [t] * len(SHAPES), **hp, maximize=maximize, block_size=self.block_size,
            )  # fmt: skip

    def lion(self, grads: list[Tensor], *, fused: bool, maximize: bool, **hp: float) -> None:
        """One 8-bit Lion step, on the kernel (``fused``) or the per-tensor path."""
        if fused:
            _native.lion_step(
                self.params, grads, self.m, hparams=lion8bit_hparams(**hp), maximize=maximize,
                block_size=self.block_size, exp_avg_absmax=self.m_absmax,
            )  # fmt: skip
        else:
            lion8bit_single_tensor(
                self.params, grads, self.m, self.m_absmax, **hp, maximize=maximize,
                block_size=self.block_size,
            )  # fmt: skip

    def grads(self, t: int) -> list[Tensor]:
        g = torch.Generator().manual_seed(1000 + t)
        scale = 10.0 ** (t % 5 - 2)  # gradients change scale: blocks see every decade
        return [(torch.randn(s, generator=g) * scale).to(self.params[0].dtype) for s in SHAPES]


def assert_identical(got: list[list[Tensor]], want: list[list[Tensor]]) -> None:
    for a_list, b_list in zip(got, want, strict=True):
        for a, b in zip(a_list, b_list, strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b)


@native
@pytest.mark.parametrize("block_size", [64, 256, 2048])
def test_fused_adamw8bit_is_the_per_tensor_path_bit_for_bit(block_size: int) -> None:
    fused, ref = Stream(block_size), Stream(block_size)
    for t in range(1, 101):
        grads = fused.grads(t)
        lr, maximize = 1e-2 * 0.98**t, t % 4 == 0  # the LR changes every step
        hp = dict(lr=lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)
        fused.adamw(grads, t, fused=True, maximize=maximize, **hp)
        ref.adamw(grads, t, fused=False, maximize=maximize, **hp)
    assert_identical(fused.tensors(), ref.tensors())
    assert all(bool(a.abs().max() > 0) for a in fused.v_absmax)  # the state is not all zero


@native
@pytest.mark.parametrize("block_size", [64, 256])
def test_fused_lion8bit_is_the_per_tensor_path_bit_for_bit(block_size: int) -> None:
    fused, ref = Stream(block_size), Stream(block_size)
    for t in range(1, 101):
        grads = fused.grads(t)
        hp = dict(lr=1e-3 * (1 + t % 3), beta1=0.9, beta2=0.99, weight_decay=0.1)
        maximize = t % 3 == 0
        fused.lion(grads, fused=True, maximize=maximize, **hp)
        ref.lion(grads, fused=False, maximize=maximize, **hp)
    assert_identical([*fused.tensors()[:2], fused.m_absmax], [*ref.tensors()[:2], ref.m_absmax])


@native
def test_fp32_state_kernels_follow_the_fp32_optimizers() -> None:
    """Tensors below min_8bit_numel: AdamW within 1e-6 of torch's AdamW math after 100
    steps; Lion bit for bit lion_fused (no square root: the same fp32 operations)."""
    g = torch.Generator().manual_seed(3)
    ref = [torch.randn(s, generator=g) for s in SHAPES]
    fused = [p.clone() for p in ref]
    rm, rv = [torch.zeros_like(p) for p in ref], [torch.zeros_like(p) for p in ref]
    fm, fv = [torch.zeros_like(p) for p in ref], [torch.zeros_like(p) for p in ref]
    lion, lion_ref = [p.clone() for p in ref], [p.clone() for p in ref]
    lm, lrm = [torch.zeros_like(p) for p in ref], [torch.zeros_like(p) for p in ref]
    for t in range(1, 101):
        grads = Stream(1).grads(t)
        hp = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.05)
        adamw_single_tensor(ref, grads, rm, rv, [t] * len(ref), **hp, maximize=False)
        _native.adamw_step(
            fused, grads, fm, fv, hparams=adamw8bit_hparams(**hp, step=t), maximize=False
        )
        lh = lion8bit_hparams(lr=1e-3, beta1=0.9, beta2=0.99, weight_decay=0.1)
        _native.lion_step(lion, grads, lm, hparams=lh, maximize=True)
        lion_fused(lion_ref, grads, lrm, **_scalars({**lh, "sign": -1.0}, torch.float32))
    assert_rel_close(fused, ref)
    assert_rel_close(fm, rm)
    assert_rel_close(fv, rv)
    assert_identical([lion, lm], [lion_ref, lrm])


@native
def test_bf16_parameters_are_updated_in_fp32_and_rounded_once() -> None:
    """With bf16 parameters and gradients the codes are still the per-tensor path's (the
    moments do not depend on the parameters); each parameter is the fp32 update of its bf16
    value, rounded once (the per-tensor path rounds after each of its two in-place ops)."""
    fused, ref = Stream(256, torch.bfloat16), Stream(256, torch.bfloat16)
    for t in range(1, 6):
        grads = fused.grads(t)
        hp = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)
        start = [p.float() for p in fused.params]
        m, v = fused.moments()
        fused.adamw(grads, t, fused=True, maximize=False, **hp)
        ref.adamw(grads, t, fused=False, maximize=False, **hp)
        assert_identical(fused.tensors()[1:], ref.tensors()[1:])
        s = _scalars(adamw8bit_hparams(**hp, step=t), torch.float32)
        for p, w, gr, mi, vi in zip(fused.params, start, grads, m, v, strict=True):
            mi = mi + s["weight1"] * (gr.float() - mi)
            vi = vi * s["beta2"] + s["weight2"] * gr.float() * gr.float()
            w = w * s["decay"] + s["neg_step_size"] * mi / (
                vi.double().sqrt().float() * s["inv_bias2_sqrt"] + s["eps"]
            )
            assert p.dtype == torch.bfloat16 and torch.equal(p, w.bfloat16())
        ref.params = [p.clone() for p in fused.params]


@native
def test_the_portable_build_is_bit_for_bit_too(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built for the baseline instruction set (no -march=native: no AVX-512 gathers, the
    plain loops everywhere), the kernel gives the same bits."""
    monkeypatch.setenv("OPTIWISE_CACHE_DIR", str(tmp_path))
    fresh_module_state(monkeypatch)
    monkeypatch.setattr(_native, "_EXTRA_FLAGS", ([],))
    fused, ref = Stream(64), Stream(64)
    lion, lion_ref = Stream(64), Stream(64)
    for t in range(1, 21):
        grads = fused.grads(t)
        hp = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1)
        fused.adamw(grads, t, fused=True, maximize=t % 2 == 0, **hp)
        ref.adamw(grads, t, fused=False, maximize=t % 2 == 0, **hp)
        lh = dict(lr=1e-3, beta1=0.9, beta2=0.99, weight_decay=0.1)
        lion.lion(grads, fused=True, maximize=False, **lh)
        lion_ref.lion(grads, fused=False, maximize=False, **lh)
    assert _native.stats["loads"] and list((tmp_path / "native").glob("*.so"))
    assert_identical(fused.tensors(), ref.tensors())
    assert_identical(lion.tensors()[:2], lion_ref.tensors()[:2])


@native
def test_the_kernel_refuses_state_that_does_not_fit() -> None:
    p, g = [torch.zeros(300)], [torch.zeros(300)]
    codes = [torch.zeros(300, dtype=torch.int8)], [torch.zeros(300, dtype=torch.uint8)]
    hp = adamw8bit_hparams(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0, step=1)
    with pytest.raises(ValueError, match="state does not fit"):  # 2 blocks of 256, not 1
        _native.adamw_step(
            p, g, *codes, hparams=hp, maximize=False, block_size=256,
            exp_avg_absmax=[torch.zeros(1)], exp_avg_sq_absmax=[torch.zeros(2)],
        )  # fmt: skip
    with pytest.raises(ValueError, match="state does not fit"):  # fp32 state of 299 elements
        _native.adamw_step(p, g, [torch.zeros(299)], [torch.zeros(300)], hparams=hp, maximize=False)
    with pytest.raises(ValueError, match="state does not fit"):  # 8-bit codes as fp32 state
        _native.lion_step(p, g, codes[0], hparams=lion8bit_hparams(lr=1, beta1=0.9, beta2=0.9,
                          weight_decay=0), maximize=False)  # fmt: skip


@native
def test_results_do_not_depend_on_the_thread_count() -> None:
    runs = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            s = Stream(64)
            big = [torch.randn(100_000, generator=torch.Generator().manual_seed(5))]
            m = [torch.zeros(100_000, dtype=torch.int8)]
            v = [torch.zeros(100_000, dtype=torch.uint8)]
            ma, va = [torch.zeros(100_000 // 64 + 1)], [torch.zeros(100_000 // 64 + 1)]
            for t in range(1, 4):
                grads = [torch.randn(100_000, generator=torch.Generator().manual_seed(t))]
                _native.adamw_step(
                    [*s.params, *big], [*s.grads(t), *grads], [*s.m, *m], [*s.v, *v],
                    hparams=adamw8bit_hparams(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8,
                                                weight_decay=0.0, step=t),
                    maximize=False, block_size=64, exp_avg_absmax=[*s.m_absmax, *ma],
                    exp_avg_sq_absmax=[*s.v_absmax, *va],
                )  # fmt: skip
            runs.append([*s.tensors(), big, m, v, ma, va])
    finally:
        torch.set_num_threads(threads)
    assert_identical(runs[0], runs[1])


# --------------------------------------------------------------------------------------------
# Through the optimizers
# --------------------------------------------------------------------------------------------

#: With the default threshold (4096) and blocks of 256: three tensors with 8-bit state (one
#: a multiple of the block size, two with a partial last block), two with fp32 state.
MODEL_SHAPES = [(80, 64), (5000,), (300, 17), (64,), (40, 25)]


def model_params(seed: int = 0, dtype: torch.dtype = torch.float32) -> list[nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(s, generator=g).to(dtype)) for s in MODEL_SHAPES]


def train(opt: torch.optim.Optimizer, params: list[nn.Parameter], steps: range) -> None:
    """A fixed gradient stream (the same whatever the parameters, so that two paths'
    rounding differences in fp32-state tensors do not feed back into the gradients), with
    the LR changed every step."""
    for t in steps:
        g = torch.Generator().manual_seed(t)
        for p in params:
            p.grad = torch.randn(p.shape, generator=g).to(p.dtype) * 0.1 ** (t % 4)
        for group in opt.param_groups:
            group["lr"] = opt.defaults["lr"] * 0.97**t * (1 + t % 2)
        opt.step()


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adamw8bit": lambda ps, **kw: AdamW8bit(ps, lr=1e-2, weight_decay=0.1, **kw),
    "lion8bit": lambda ps, **kw: Lion8bit(ps, lr=1e-3, weight_decay=0.1, **kw),
}


def eight_bit(opt: torch.optim.Optimizer) -> list[int]:
    return [i for i, s in opt.state_dict()["state"].items() if "exp_avg_codes" in s]


def assert_same_state(a: torch.optim.Optimizer, b: torch.optim.Optimizer) -> None:
    """Same keys, dtypes and shapes; 8-bit state identical, fp32 state within 1e-6."""
    sa, sb = a.state_dict()["state"], b.state_dict()["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        assert sa[i].keys() == sb[i].keys()
        for key, x in sa[i].items():
            y = sb[i][key]
            if not isinstance(x, Tensor):
                assert x == y
                continue
            assert (x.dtype, x.shape, x.device) == (y.dtype, y.shape, y.device)
            if key.endswith(("_codes", "_absmax")):
                assert torch.equal(x, y), (i, key)
            else:
                assert_rel_close([x], [y])


@native
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fused_and_per_tensor_paths_agree_through_the_optimizer(name: str) -> None:
    make = OPTIMIZERS[name]
    a, b = model_params(), model_params()
    fused, ref = make(a, fused=True), make(b, fused=False)
    train(fused, a, range(100))
    train(ref, b, range(100))
    assert eight_bit(fused) == [0, 1, 2]
    for i in eight_bit(fused):  # 8-bit tensors: their moments never saw the fp32 ones
        assert torch.equal(a[i], b[i])
    assert_rel_close([p.detach() for p in a], [p.detach() for p in b])
    assert_same_state(fused, ref)


@native
def test_tensors_with_different_step_counts_in_one_group() -> None:
    """Parameters skipped on some steps (no gradient) have their own step count, hence their
    own bias correction: the fused step groups them by count."""
    a, b = model_params(), model_params()
    fused, ref = AdamW8bit(a, lr=1e-2, fused=True), AdamW8bit(b, lr=1e-2, fused=False)
    for t in range(12):
        g = torch.Generator().manual_seed(t)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            grad = torch.randn(x.shape, generator=g)
            x.grad = y.grad = None if t < 2 * i or (t + i) % 5 == 0 else grad
        fused.step()
        ref.step()
    counts = [fused.state[p]["step"] for p in a]
    assert len(set(counts)) > 1 and counts == [ref.state[p]["step"] for p in b]
    for i in eight_bit(fused):
        assert torch.equal(a[i], b[i])
    assert_rel_close([p.detach() for p in a], [p.detach() for p in b])
    assert_same_state(fused, ref)


@native
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize(("first", "then"), [(True, False), (False, True)])
def test_resume_on_the_other_path(name: str, first: bool, then: bool) -> None:
    make = OPTIMIZERS[name]
    ref = model_params()
    train(make(ref, fused=first), ref, range(40))

    params = model_params()
    opt = make(params, fused=first)
    train(opt, params, range(20))
    saved = reload(opt)
    resumed_params = [nn.Parameter(p.detach().clone()) for p in params]
    resumed = make(resumed_params, fused=then)
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["fused"] is then  # the path is the running optimizer's
    train(resumed, resumed_params, range(20, 40))
    for i in eight_bit(resumed):
        assert torch.equal(resumed_params[i], ref[i])
    assert_rel_close([p.detach() for p in resumed_params], [p.detach() for p in ref])


@native
def test_no_compilation_when_the_lr_changes_every_step() -> None:
    """The kernel is built (or read from the cache) once per process; hyperparameters are
    C floats, so no schedule compiles anything, and nothing goes through torch.compile."""
    params = model_params()
    opt = AdamW8bit(params, lr=1e-3, fused=True)
    train(opt, params, range(1))
    builds, loads, compiled = _native.stats["builds"], _native.stats["loads"], graphs()
    lrs = []
    for t in range(1, 30):
        lrs.append(opt.param_groups[0]["lr"])
        train(opt, params, range(t, t + 1))
    other = [nn.Parameter(torch.randn(7000)), nn.Parameter(torch.randn(3, 3))]
    train(Lion8bit(other, lr=1e-4, fused=True), other, range(3))
    assert len(set(lrs)) == len(lrs)  # the LR really changed every step
    assert (_native.stats["builds"], _native.stats["loads"], graphs()) == (builds, loads, compiled)


@native
def test_tensors_the_kernel_does_not_serve_take_the_per_tensor_path() -> None:
    """float16 and float64 parameters and non-contiguous ones are stepped as with
    fused=False, next to the tensors the kernel steps."""

    def mixed() -> list[nn.Parameter]:
        g = torch.Generator().manual_seed(9)
        return [
            nn.Parameter(torch.randn(80, 64, generator=g)),
            nn.Parameter(torch.randn(5000, generator=g).half()),
            nn.Parameter(torch.randn(5000, generator=g).double()),
            nn.Parameter(torch.randn(64, 80, generator=g).t()),  # non-contiguous
            nn.Parameter(torch.randn(30, generator=g).double()),  # float64 fp32-state
        ]

    a, b = mixed(), mixed()
    fused, ref = AdamW8bit(a, lr=1e-2, fused=True), AdamW8bit(b, lr=1e-2, fused=False)
    train(fused, a, range(10))
    train(ref, b, range(10))
    for x, y in zip(a, b, strict=True):
        assert x.dtype == y.dtype and torch.equal(x, y)
    assert_same_state(fused, ref)


@native
def test_fused_step_records_its_in_place_writes_for_autograd() -> None:
    params = model_params()
    opt = AdamW8bit(params, fused=True)
    train(opt, params, range(1))
    before = [p._version for p in params]
    codes = opt.state[params[0]]["exp_avg_codes"]._version
    train(opt, params, range(1, 2))
    assert all(p._version > v for p, v in zip(params, before, strict=True))
    assert opt.state[params[0]]["exp_avg_codes"]._version > codes


@native
def test_a_changed_block_size_is_reported_as_on_the_per_tensor_path() -> None:
    p = nn.Parameter(torch.randn(5000))
    opt = AdamW8bit([p], fused=True)
    train(opt, [p], range(1))
    opt.param_groups[0]["block_size"] = 2048
    with pytest.raises(ValueError, match="block size changed"):
        train(opt, [p], range(1, 2))


# --------------------------------------------------------------------------------------------
# Building, the cache, and what happens without a compiler
# --------------------------------------------------------------------------------------------


def fresh_module_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native, "_lib", None)
    monkeypatch.setattr(_native, "_error", None)
    monkeypatch.setattr(_native, "_warned", False)


@native
def test_builds_once_then_reads_the_cache(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTIWISE_CACHE_DIR", str(tmp_path))
    fresh_module_state(monkeypatch)
    builds = _native.stats["builds"]
    lib = _native.load()
    assert _native.stats["builds"] > builds and lib.optiwise_native_abi() == _native.ABI
    built = list((tmp_path / "native").glob("optiwise_native_*.so"))
    assert len(built) == 1 and not list((tmp_path / "native").glob(".*.tmp"))
    # another process (here: a fresh module state) reads it without compiling
    fresh_module_state(monkeypatch)
    builds, loads = _native.stats["builds"], _native.stats["loads"]
    assert _native.load().optiwise_native_abi() == _native.ABI
    assert (_native.stats["builds"], _native.stats["loads"]) == (builds, loads + 1)


@native
def test_a_damaged_cache_entry_is_built_again(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _native._library_path(_native._compiler() or "")
    _native.load()
    monkeypatch.setenv("OPTIWISE_CACHE_DIR", str(tmp_path))
    fresh_module_state(monkeypatch)
    target = _native._library_path(_native._compiler() or "")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a shared library")
    rebuilt = []

    def build(compiler: str, path: Any) -> None:  # the real build, without the compiler's time
        rebuilt.append(path)
        shutil.copyfile(good, path)

    monkeypatch.setattr(_native, "_build", build)
    assert _native.load().optiwise_native_abi() == _native.ABI
    assert rebuilt == [target]


@pytest.mark.parametrize("problem", ["no compiler", "compiler fails", "cache not writable"])
def test_without_a_kernel_fused_true_raises_and_fused_none_warns_once(
    problem: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Without a working build, fused=True raises before changing anything, and fused=None
    steps on the per-tensor path after one warning (per process) that names the caller."""
    monkeypatch.setenv("OPTIWISE_CACHE_DIR", str(tmp_path))
    fresh_module_state(monkeypatch)
    if problem == "no compiler":
        monkeypatch.setattr(_native, "_compiler", lambda: None)
        message = "no C\\+\\+ compiler found"
    elif _native._compiler() is None:
        pytest.skip("no C++ compiler")
    elif problem == "compiler fails":
        monkeypatch.setattr(_native, "_BASE_FLAGS", ["-fno-such-option-anywhere"])
        message = "failed.*no-such-option-anywhere"
    else:  # the cache folder lies under a file
        (tmp_path / "file").write_text("")
        monkeypatch.setenv("OPTIWISE_CACHE_DIR", str(tmp_path / "file"))
        message = "cannot write the compiled kernel to .*file.*OPTIWISE_CACHE_DIR"
    with pytest.raises(RuntimeError, match=message):
        _native.load()
    p, other_group = nn.Parameter(torch.randn(4096)), nn.Parameter(torch.randn(4096))
    p.grad, other_group.grad = torch.randn(4096), torch.randn(4096)
    before = [p.detach().clone(), other_group.detach().clone()]
    opt = AdamW8bit([{"params": [other_group], "fused": False}, {"params": [p]}], fused=True)
    with pytest.raises(RuntimeError, match="fused=True, but the fused 8-bit step could not"):
        opt.step()
    # nothing half-done: neither group stepped, no state (step counts) created
    assert torch.equal(p, before[0]) and torch.equal(other_group, before[1]) and not opt.state
    big = [nn.Parameter(torch.randn(AUTO_MIN_NUMEL))]
    ref = [nn.Parameter(big[0].detach().clone())]
    other = [nn.Parameter(torch.randn(AUTO_MIN_NUMEL))]
    with pytest.warns(RuntimeWarning, match="could not be compiled") as caught:
        train(AdamW8bit(big, lr=1e-2), big, range(3))
        train(Lion8bit(other, lr=1e-4), other, range(2))
    assert len(caught) == 1 and caught[0].filename == __file__  # once, at the step's caller
    assert "using the per-tensor path" in str(caught[0].message)
    train(AdamW8bit(ref, lr=1e-2, fused=False), ref, range(3))
    assert torch.equal(big[0], ref[0])  # the per-tensor path ran


@native
def test_a_compiler_error_is_reported(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("OPTIWISE_CACHE_DIR", str(tmp_path))
    fresh_module_state(monkeypatch)
    monkeypatch.setattr(_native, "_BASE_FLAGS", ["-fno-such-option-anywhere"])
    with pytest.raises(RuntimeError, match=r"failed.*no-such-option-anywhere"):
        _native.load()
    assert not list((tmp_path / "native").glob("*"))  # no partial file left behind


# --------------------------------------------------------------------------------------------
# Policy
# --------------------------------------------------------------------------------------------


@native
def test_auto_policy() -> None:
    small, large = [torch.zeros(1000)], [torch.zeros(AUTO_MIN_NUMEL)]
    assert _native.use_native(None, None, large) is True
    assert _native.use_native(None, None, small) is False  # as the other fused steps
    assert _native.use_native(None, True, large) is False  # an explicit foreach wins
    assert _native.use_native(None, False, large) is False
    assert _native.use_native(False, None, large) is False
    assert _native.use_native(True, None, small) is True
    assert _native.use_native(None, None, []) is False
    meta = [torch.zeros(AUTO_MIN_NUMEL, device="meta")]
    assert _native.use_native(None, None, meta) is False
    with pytest.raises(ValueError, match="parameter #1 is on meta"):
        _native.use_native(True, None, [*small, *meta])


def test_fused_is_never_taken_while_the_step_is_compiled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert _native.use_native(True, None, [torch.zeros(AUTO_MIN_NUMEL)]) is False


@pytest.mark.parametrize("cls", [AdamW8bit, Lion8bit])
def test_fused_and_foreach_together_rejected(cls: Any) -> None:
    with pytest.raises(ValueError, match="fused=True and foreach=True"):
        cls([nn.Parameter(torch.zeros(3))], fused=True, foreach=True)


@native
def test_fused_none_picks_the_kernel_for_a_large_cpu_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = []
    real = _native.adamw_step

    def spy(*args: Any, **kwargs: Any) -> None:
        calls.append(kwargs["block_size"])
        real(*args, **kwargs)

    monkeypatch.setattr(_native, "adamw_step", spy)
    big = [nn.Parameter(torch.randn(AUTO_MIN_NUMEL)), nn.Parameter(torch.randn(10))]
    train(AdamW8bit(big), big, range(1))
    assert sorted(calls) == [0, 256]  # the fp32-state tensor, then the 8-bit one
    calls.clear()
    small = model_params()
    train(AdamW8bit(small), small, range(1))
    assert calls == []
