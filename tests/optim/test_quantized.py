"""8-bit block-wise states: the quantizer itself, AdamW8bit and Lion8bit against
independent references, torch's AdamW, bitsandbytes, and the quality on real data."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import optiwise
from optiwise import knowledge
from optiwise.optim import AdamW8bit, Lion8bit
from optiwise.optim._kernels import (
    _LUT_MASK,
    _LUT_SHIFT,
    _nearest,
    dequantize_blockwise,
    dynamic_map,
    make_quant_map,
    quant_map,
    quantize_blockwise_,
)
from tests.optim.harness import (
    assert_params_close,
    random_batch,
    run_optimizer,
    run_reference,
    small_mlp,
    train_digits,
)

CPU = torch.device("cpu")


def quantize(
    x: Tensor, signed: bool, block_size: int = 256, keep_nonzero: bool = False
) -> tuple[Tensor, Tensor]:
    codes = torch.zeros(x.shape, dtype=torch.int8 if signed else torch.uint8)
    absmax = torch.zeros(-(-x.numel() // block_size))
    quantize_blockwise_(
        x, quant_map(signed, CPU), codes, absmax, block_size, keep_nonzero=keep_nonzero
    )
    return codes, absmax


def round_trip(x: Tensor, signed: bool, block_size: int = 256, **kw: Any) -> Tensor:
    codes, absmax = quantize(x, signed, block_size, **kw)
    return dequantize_blockwise(codes, absmax, quant_map(signed, CPU), block_size)


def block_absmax(x: Tensor, block_size: int) -> Tensor:
    """Reference: the per-block absolute maximum, via zero padding."""
    flat = x.reshape(-1).double()
    pad = -flat.numel() % block_size
    return torch.nn.functional.pad(flat, (0, pad)).view(-1, block_size).abs().amax(1)


def normalized(x: Tensor, block_size: int) -> Tensor:
    """Reference: each element divided by its block's absmax (0 in all-zero blocks)."""
    scale = block_absmax(x, block_size).repeat_interleave(block_size)[: x.numel()]
    return x.reshape(-1).double() / torch.where(scale > 0, scale, torch.ones_like(scale))


def spread(n: int, signed: bool, seed: int = 0, decades: int = 9) -> Tensor:
    """Values spanning ``decades`` orders of magnitude, as optimizer moments do."""
    g = torch.Generator().manual_seed(seed)
    mag = 10 ** (-decades * torch.rand(n, generator=g, dtype=torch.float64))
    sign = torch.randint(0, 2, (n,), generator=g) * 2 - 1 if signed else 1
    return (mag * sign).float()


# --------------------------------------------------------------------------------------------
# The maps
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signed", [True, False])
def test_dynamic_map_structure(signed: bool) -> None:
    table = dynamic_map(signed).double()
    assert table.shape == (256,) and bool((table[1:] >= table[:-1]).all())
    bits = 7 if signed else 8
    positive = table[table > 0]
    assert positive.numel() == 2**bits - 1 and (table == 0).sum() == 1
    assert positive.max() == 1.0
    assert positive.min() == pytest.approx(10.0 ** -(bits - 1))
    # decade e holds 2^(bits-1-e) equally spaced values ending at 10^-e
    for e in range(bits):
        lo, hi = 10.0 ** -(e + 1), 10.0**-e
        decade = positive[(positive > lo * (1 + 1e-6)) & (positive <= hi * (1 + 1e-6))]
        assert decade.numel() == 2 ** (bits - 1 - e), e
        assert decade.max() == pytest.approx(hi)
        steps = torch.diff(torch.cat([torch.tensor([lo], dtype=torch.float64), decade]))
        torch.testing.assert_close(steps, torch.full_like(steps, 0.9 * hi / decade.numel()))
    if signed:  # symmetric: code -c is the negative of code c; code -128 repeats -1
        torch.testing.assert_close(table[129:], -table[1:128].flip(0), rtol=0, atol=0)
        assert table[128] == 0 and table[0] == table[1] == -1.0


@pytest.mark.parametrize("signed", [True, False])
def test_lookup_table_is_exactly_bucketize_at_every_bucket_edge(signed: bool) -> None:
    """The table can only go wrong at bucket edges and decision boundaries: check every
    bucket edge and every boundary, each with its neighbouring floats."""
    qmap = quant_map(signed, CPU)
    mids = qmap.boundaries[1:-1]
    edges = (torch.arange(0, (_LUT_MASK + 1) // 2, dtype=torch.int32) << _LUT_SHIFT).view(
        torch.float32
    )
    edges = edges[edges.abs() <= 1]
    points = torch.cat([edges, -edges, mids]) if signed else torch.cat([edges, mids])
    points = torch.cat(
        [points, torch.nextafter(points, torch.tensor(2.0)), torch.nextafter(points, -points)]
    )
    points = points[points.abs() <= 1]
    if not signed:
        points = points[points >= 0]
    got = _nearest(points, qmap)
    want = torch.bucketize(points, mids, out_int32=True)
    assert torch.equal(got, want)


def test_make_quant_map_accepts_other_maps_and_rejects_bad_ones() -> None:
    linear = make_quant_map(torch.linspace(-1, 1, 256))
    assert linear.first_positive == 128 and linear.last_negative == 127
    with pytest.raises(ValueError, match="256 sorted"):
        make_quant_map(torch.linspace(-1, 1, 255))
    with pytest.raises(ValueError, match="256 sorted"):
        make_quant_map(torch.linspace(1, -1, 256))
    with pytest.raises(ValueError, match="256 sorted"):
        make_quant_map(torch.linspace(-2, 2, 256))
    crowded = torch.cat([torch.linspace(0.5, 0.501, 200), torch.linspace(0.6, 1, 56)])
    with pytest.raises(ValueError, match="too close"):
        make_quant_map(crowded)


# --------------------------------------------------------------------------------------------
# Quantize / dequantize
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("block_size", [64, 256, 2048])
def test_codes_are_the_nearest_map_value(signed: bool, block_size: int) -> None:
    x = spread(5000, signed, seed=block_size)
    codes, _ = quantize(x, signed, block_size)
    table = dynamic_map(signed).double()
    y = normalized(x, block_size)
    index = codes.reshape(-1).long() + (128 if signed else 0)
    err = (y - table[index]).abs()
    best = (y[:, None] - table[None, :]).abs().min(dim=1).values
    # nearest up to the fp32 rounding of x / absmax and of the midpoints
    assert bool((err <= best + 2e-7).all())


@pytest.mark.parametrize("signed", [True, False])
def test_round_trip_error_bounds(signed: bool) -> None:
    block = 256
    x = spread(20_000, signed, seed=1)
    back = round_trip(x, signed, block).double()
    scale = block_absmax(x, block).repeat_interleave(block)[: x.numel()]
    rel = (back - x.double()).abs() / scale  # error in units of the block's absmax
    y = normalized(x, block).abs()
    bits = 7 if signed else 8
    # within decade e the steps are 0.9 * 10^-e / 2^(bits-1-e): at most half a step off
    for e in range(bits - 1):
        inside = (y > 10.0 ** -(e + 1)) & (y <= 10.0**-e)
        bound = 0.45 * 10.0**-e / 2 ** (bits - 1 - e)
        assert bool((rel[inside] <= bound * (1 + 1e-5)).all()), e
    # below the smallest non-zero value: rounds to 0 or to it
    tiny = y <= 10.0 ** -(bits - 1)
    assert bool((rel[tiny] <= 10.0 ** -(bits - 1) / 2 * (1 + 1e-5)).all())
    # the top decade, where a block's large values live: 0.7% (signed) / 0.35% of absmax
    assert float(rel[y > 0.1].max()) <= (0.0071 if signed else 0.0036)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize(("numel", "block_size"), [(1, 256), (255, 256), (256, 256),
                                                    (257, 256), (1000, 64), (3000, 2048),
                                                    (7, 1), (5, 2)])  # fmt: skip
def test_block_absmax_and_non_multiple_sizes(signed: bool, numel: int, block_size: int) -> None:
    x = spread(numel, signed, seed=numel) * 3.0
    codes, absmax = quantize(x, signed, block_size)
    assert codes.shape == x.shape and absmax.shape == (-(-numel // block_size),)
    assert torch.equal(absmax.double(), block_absmax(x, block_size))
    back = dequantize_blockwise(codes, absmax, quant_map(signed, CPU), block_size)
    table = dynamic_map(signed)
    index = codes.long() + (128 if signed else 0)
    want = table[index] * absmax.repeat_interleave(block_size)[:numel]
    assert torch.equal(back, want)
    # each block's largest magnitude is stored exactly, with its sign
    for b in range(absmax.numel()):
        part = x[b * block_size : (b + 1) * block_size]
        i = int(part.abs().argmax()) + b * block_size
        assert back[i] == x[i]


def test_multi_dimensional_tensors_use_row_major_blocks() -> None:
    x = spread(6 * 70, True, seed=3).view(6, 70)
    codes, absmax = quantize(x, True, 64)
    flat_codes, flat_absmax = quantize(x.reshape(-1), True, 64)
    assert torch.equal(codes.reshape(-1), flat_codes) and torch.equal(absmax, flat_absmax)
    xt = x.t()  # non-contiguous input: same as its contiguous copy
    codes_t, absmax_t = quantize(xt, True, 64)
    codes_c, absmax_c = quantize(xt.contiguous(), True, 64)
    assert torch.equal(codes_t, codes_c) and torch.equal(absmax_t, absmax_c)


@pytest.mark.parametrize("signed", [True, False])
@pytest.mark.parametrize("keep_nonzero", [False, True])
def test_zeros_stay_exact(signed: bool, keep_nonzero: bool) -> None:
    codes, absmax = quantize(torch.zeros(600), signed, 256, keep_nonzero=keep_nonzero)
    assert torch.equal(absmax, torch.zeros(3))
    back = dequantize_blockwise(codes, absmax, quant_map(signed, CPU), 256)
    assert torch.equal(back, torch.zeros(600))
    x = spread(768, signed)
    x[256:512] = 0  # an all-zero block between two others
    x[::7] = 0  # and zeros inside the others
    x[5] = -0.0 if signed else 0.0
    back = round_trip(x, signed, 256, keep_nonzero=keep_nonzero)
    assert bool((back[x == 0] == 0).all())


@pytest.mark.parametrize("signed", [True, False])
def test_edge_values(signed: bool) -> None:
    base = spread(512, signed, seed=4)
    codes, absmax = quantize(base, signed)
    # scale invariance: multiplying by a power of two scales absmax and keeps the codes
    # (while the values stay normal floats: base spans 1e-9..1)
    for factor in (2.0**100, 2.0**-90):
        c2, a2 = quantize(base * factor, signed)
        assert torch.equal(c2, codes) and torch.equal(a2, absmax * factor)
    # subnormal values work like any others
    sub = torch.tensor([1e-40, 5e-41, 0.0, 1e-44])
    assert torch.equal(round_trip(sub, signed)[0], sub[0])
    # below half the smallest non-zero value: 0, or that value with keep_nonzero
    smallest = 1e-6 if signed else 1e-7
    x = torch.tensor([1.0, smallest * 0.4, smallest * 0.6] + ([-smallest * 0.4] if signed else []))
    plain = round_trip(x, signed)
    kept = round_trip(x, signed, keep_nonzero=True)
    assert plain[1] == 0 and kept[1] == pytest.approx(smallest)
    assert plain[2] == pytest.approx(smallest) and kept[2] == pytest.approx(smallest)
    if signed:
        assert plain[3] == 0 and kept[3] == pytest.approx(-smallest)
    # exact map values survive the round trip
    table = dynamic_map(signed)
    assert torch.equal(round_trip(table.clone(), signed), table)


def test_non_finite_values_poison_only_their_own_block() -> None:
    for bad in (math.inf, -math.inf, math.nan):
        x = spread(768, True, seed=5)
        x[300] = bad
        back = round_trip(x, True, 256)
        assert not bool(torch.isfinite(back[256:512]).any())
        torch.testing.assert_close(back[:256], round_trip(x[:256].clone(), True, 256))
        torch.testing.assert_close(back[512:], round_trip(x[512:].clone(), True, 256))


def test_layout_errors() -> None:
    qmap = quant_map(True, CPU)
    x = torch.randn(300)
    with pytest.raises(ValueError, match=r"absmax must be a float32 tensor of shape \(2,\)"):
        quantize_blockwise_(x, qmap, torch.zeros(300, dtype=torch.int8), torch.zeros(3), 256)
    with pytest.raises(ValueError, match="codes must be int8 or uint8"):
        quantize_blockwise_(x, qmap, torch.zeros(300), torch.zeros(2), 256)
    with pytest.raises(ValueError, match="codes shape"):
        quantize_blockwise_(x, qmap, torch.zeros(299, dtype=torch.int8), torch.zeros(2), 256)
    with pytest.raises(ValueError, match="block size changed"):
        dequantize_blockwise(torch.zeros(300, dtype=torch.int8), torch.zeros(1), qmap, 256)


def test_dynamic_map_beats_a_linear_map_on_second_moments() -> None:
    """Why the dynamic map: Adam's second moment is a squared gradient and spans many decades
    inside a block. A linear map zeroes most of it and distorts sqrt(v), the denominator."""
    g = torch.Generator().manual_seed(6)
    scale = 10 ** (-3 * torch.rand(4096, generator=g))  # each coordinate's gradient scale
    v = (torch.randn(64, 4096, generator=g) * scale).pow(2).mean(0)  # mean squared gradient
    linear = make_quant_map(torch.linspace(0, 1, 256))
    errors = {}
    for name, qmap in (("dynamic", quant_map(False, CPU)), ("linear", linear)):
        codes, absmax = torch.zeros(v.shape, dtype=torch.uint8), torch.zeros(16)
        quantize_blockwise_(v, qmap, codes, absmax, 256)
        back = dequantize_blockwise(codes, absmax, qmap, 256)
        errors[name] = ((back.sqrt() - v.sqrt()).abs() / v.sqrt()).median().item()
        errors[name + "_zeroed"] = (back == 0).float().mean().item()
    assert errors["dynamic_zeroed"] == 0 and errors["linear_zeroed"] > 0.3
    assert errors["dynamic"] < 0.02 < errors["linear"]


# --------------------------------------------------------------------------------------------
# bitsandbytes (published implementation; its CPU backend runs here)
# --------------------------------------------------------------------------------------------


def _bnb() -> Any:
    return pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed")


@pytest.mark.parametrize("signed", [True, False])
def test_quantizer_against_bitsandbytes_with_its_own_maps(signed: bool) -> None:
    """With bitsandbytes' map, our quantizer gives the same absmax and its dequantization,
    and every code is at least as near as bitsandbytes' CPU quantizer's (which misses the
    nearest value for 0.1% (signed) to 10% (unsigned) of elements); our map differs from
    bitsandbytes' (ours has the decade end points and exact 1.0, theirs the step midpoints)."""
    F = _bnb().functional
    table = F.create_dynamic_map(signed=signed)
    qmap = make_quant_map(table)
    x = torch.randn(50_000) if signed else torch.rand(50_000) ** 4
    their_codes, st = F.quantize_blockwise(x, code=table, blocksize=256)
    codes, absmax = torch.zeros(x.shape, dtype=torch.uint8), torch.zeros(-(-x.numel() // 256))
    quantize_blockwise_(x, qmap, codes, absmax, 256)
    assert torch.equal(absmax, st.absmax)
    mine_of_theirs = dequantize_blockwise(their_codes, st.absmax, qmap, 256)
    torch.testing.assert_close(mine_of_theirs, F.dequantize_blockwise(their_codes, st))
    y = normalized(x, 256)
    err_mine = (y - table.double()[codes.long()]).abs()
    err_theirs = (y - table.double()[their_codes.long()]).abs()
    assert bool((err_mine <= err_theirs + 1e-7).all())
    differ = codes != their_codes
    assert bool((err_mine[differ] < err_theirs[differ]).all())


def _digits_run(make: Any, steps: int, seed: int = 0) -> float:
    return train_digits(make, steps=steps, seed=seed, hidden=128)


def test_adamw8bit_tracks_bitsandbytes_adamw8bit() -> None:
    """Same algorithm, slightly different map and rounding (see above and AdamW8bit's
    docstring): final losses on digits within 0.5%."""
    bnb = _bnb()
    ours = _digits_run(lambda ps: AdamW8bit(ps, lr=1e-3), 300)
    theirs = _digits_run(lambda ps: bnb.optim.AdamW8bit(ps, lr=1e-3, min_8bit_size=4096), 300)
    assert ours == pytest.approx(theirs, rel=5e-3)


def test_lion8bit_tracks_bitsandbytes_lion8bit() -> None:
    """Lion's sign update is more sensitive to the momentum's rounding. Measured after 200
    steps: ours 0.9% above fp32 Lion, bitsandbytes' 0.0%; after 400 steps (loss 0.08, still
    falling fast) ours +9%, bitsandbytes' +5%: about half from the map (with bitsandbytes'
    map ours gives +6.4%; its signed map is asymmetric, +1 but no -1), the rest from its
    CPU rounding, which is not always to the nearest value."""
    bnb = _bnb()
    fp32 = _digits_run(lambda ps: Lion8bit(ps, lr=3e-4, min_8bit_numel=10**9), 200)
    ours = _digits_run(lambda ps: Lion8bit(ps, lr=3e-4), 200)
    theirs = _digits_run(lambda ps: bnb.optim.Lion8bit(ps, lr=3e-4, min_8bit_size=4096), 200)
    assert ours == pytest.approx(theirs, rel=0.02)
    assert ours == pytest.approx(fp32, rel=0.02)


# --------------------------------------------------------------------------------------------
# The optimizers against independent references
# --------------------------------------------------------------------------------------------


def adamw_reference_step(
    params: list[Tensor], grads: list[Tensor], state: dict[int, dict[str, Any]], t: int
) -> None:
    """AdamW from Loshchilov & Hutter's pseudo-code (float64), lr 1e-3, wd 0.01."""
    lr, b1, b2, eps, wd = 1e-3, 0.9, 0.999, 1e-8, 0.01
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        s = state[i]
        m = s["m"] = b1 * s.get("m", torch.zeros_like(p)) + (1 - b1) * g
        v = s["v"] = b2 * s.get("v", torch.zeros_like(p)) + (1 - b2) * g * g
        m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
        p.mul_(1 - lr * wd).sub_(lr * m_hat / (v_hat.sqrt() + eps))


def test_fp32_state_path_is_adamw() -> None:
    """The harness MLP's tensors are all below 4096 elements: fp32 state, which is torch's
    AdamW bit for bit and the paper's rule within 1e-6."""
    got = run_optimizer(lambda ps: AdamW8bit(ps, lr=1e-3, weight_decay=0.01))
    torch_adamw = run_optimizer(
        lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01, foreach=False)
    )
    assert all(torch.equal(a, b) for a, b in zip(got, torch_adamw, strict=True))
    assert_params_close(got, run_reference(adamw_reference_step))


def lion_reference_step(
    params: list[Tensor], grads: list[Tensor], state: dict[int, dict[str, Any]], t: int
) -> None:
    """Lion from Chen et al.'s pseudo-code, lr 1e-4, betas (0.9, 0.99), wd 0.1."""
    lr, b1, b2, wd = 1e-4, 0.9, 0.99, 0.1
    for i, (p, g) in enumerate(zip(params, grads, strict=True)):
        m = state[i].get("m", torch.zeros_like(p))
        p.mul_(1 - lr * wd).sub_(lr * torch.sign(b1 * m + (1 - b1) * g))
        state[i]["m"] = b2 * m + (1 - b2) * g


def test_fp32_state_path_of_lion8bit_is_lion() -> None:
    """Lion8bit with fp32 state is Lion. Checked in float64 against the float64 reference,
    and in fp32 against the same pseudo-code run in fp32: against the float64 reference an
    fp32 run drifts by 1-2e-6 per 100 steps whatever the implementation (every step moves
    each weight by exactly +-lr, so its rounding error does not average out)."""
    make = lambda ps: Lion8bit(ps, lr=1e-4, weight_decay=0.1)  # noqa: E731
    want = run_reference(lion_reference_step)
    got64 = run_optimizer(make, dtype=torch.float64)
    assert_params_close([p.float() for p in got64], want)
    model = small_mlp()
    params = list(model.parameters())
    state: dict[int, dict[str, Any]] = {i: {} for i in range(len(params))}
    for t in range(100):
        for p in params:
            p.grad = None
        x, y = random_batch(t)
        nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            lion_reference_step(params, [p.grad for p in params], state, t + 1)  # type: ignore[misc]
    assert_params_close(run_optimizer(make), [p.detach() for p in params])


def _dequant_ref(codes: Tensor, absmax: Tensor, block: int) -> Tensor:
    """Reference dequantization: table lookup times the block's absmax (float64)."""
    signed = codes.dtype == torch.int8
    table = dynamic_map(signed).double()
    index = codes.reshape(-1).long() + (128 if signed else 0)
    scale = absmax.double().repeat_interleave(block)[: codes.numel()]
    return (table[index] * scale).view(codes.shape)


def _check_requantized(
    x: Tensor, codes: Tensor, absmax: Tensor, block: int, keep_nonzero: bool
) -> None:
    """``codes``/``absmax`` are the nearest-value quantization of ``x`` (brute force)."""
    signed = codes.dtype == torch.int8
    table = dynamic_map(signed).double()
    torch.testing.assert_close(absmax.double(), block_absmax(x, block), rtol=1e-6, atol=0)
    y = normalized(x, block)
    dist = (y[:, None] - table[None, :]).abs()
    if keep_nonzero:  # a non-zero element may not take the zero code
        dist[y != 0, int((table == 0).nonzero()[0])] = math.inf
    index = codes.reshape(-1).long() + (128 if signed else 0)
    got = dist.gather(1, index[:, None]).squeeze(1)
    # nearest, up to fp32 rounding of the normalized value near a decision boundary
    assert bool((got <= dist.min(1).values + 1e-6).all())


def _replay(
    opt: torch.optim.Optimizer,
    model: nn.Module,
    reference: Any,
    check: Any,
) -> None:
    """100 steps; before each, ``reference(p, state, t)`` predicts the step from the
    optimizer's current state, and after it ``check(p, state, prediction, t)`` holds."""
    params = list(model.parameters())
    for t in range(1, 101):
        opt.zero_grad(set_to_none=True)
        x, y = random_batch(t)
        nn.functional.cross_entropy(model(x), y).backward()
        expected = [reference(p, opt.state.get(p), t) for p in params]
        opt.step()
        for p, prediction in zip(params, expected, strict=True):
            check(p, opt.state[p], prediction, t)


def _moment(state: Any, name: str, param: Tensor, block: int) -> Tensor:
    if not state:
        return torch.zeros_like(param, dtype=torch.float64)
    return _dequant_ref(state[f"{name}_codes"], state[f"{name}_absmax"], block)


def test_8bit_adamw_each_step_is_dequantize_adamw_requantize() -> None:
    """100 steps with every tensor quantized (blocks of 64). Before each step the reference
    dequantizes the optimizer's state, applies the paper's AdamW (float64) and requantizes by
    brute force; the parameters agree within 1e-6 and the new codes are the nearest ones."""
    lr, b1, b2, eps, wd, block = 1e-3, 0.9, 0.999, 1e-8, 0.01, 64
    model = small_mlp()
    opt = AdamW8bit(model.parameters(), lr=lr, weight_decay=wd, block_size=block, min_8bit_numel=0)

    def reference(p: Tensor, state: Any, t: int) -> tuple[Tensor, ...]:
        g = p.grad.double()  # type: ignore[union-attr]
        m = b1 * _moment(state, "exp_avg", p, block) + (1 - b1) * g
        v = b2 * _moment(state, "exp_avg_sq", p, block) + (1 - b2) * g * g
        w = p.detach().double() * (1 - lr * wd)
        return w - lr / (1 - b1**t) * m / (v.sqrt() / math.sqrt(1 - b2**t) + eps), m, v

    def check(p: Tensor, s: Any, prediction: tuple[Tensor, ...], t: int) -> None:
        w, m, v = prediction
        assert s["step"] == t
        assert_params_close([p.detach()], [w.float()])
        _check_requantized(m.float(), s["exp_avg_codes"], s["exp_avg_absmax"], block, False)
        _check_requantized(v.float(), s["exp_avg_sq_codes"], s["exp_avg_sq_absmax"], block, True)

    _replay(opt, model, reference, check)


def test_8bit_lion_each_step_is_dequantize_lion_requantize() -> None:
    lr, b1, b2, wd, block = 1e-3, 0.9, 0.99, 0.1, 64
    model = small_mlp()
    opt = Lion8bit(model.parameters(), lr=lr, weight_decay=wd, block_size=block, min_8bit_numel=0)

    def reference(p: Tensor, state: Any, t: int) -> tuple[Tensor, ...]:
        g = p.grad.double()  # type: ignore[union-attr]
        m = _moment(state, "exp_avg", p, block)
        c = b1 * m + (1 - b1) * g
        return p.detach().double() * (1 - lr * wd) - lr * torch.sign(c), b2 * m + (1 - b2) * g, c

    def check(p: Tensor, s: Any, prediction: tuple[Tensor, ...], t: int) -> None:
        w, m, c = prediction
        # sign(c) may flip where c is within fp32 rounding of 0
        ok = (p.detach().double() - w).abs() <= 1e-6
        assert bool((ok | (c.abs() < 1e-9)).all())
        _check_requantized(m.float(), s["exp_avg_codes"], s["exp_avg_absmax"], block, False)

    _replay(opt, model, reference, check)


# --------------------------------------------------------------------------------------------
# State layout, thresholds, dtypes
# --------------------------------------------------------------------------------------------


def test_threshold_and_state_layout_come_from_knowledge() -> None:
    threshold = knowledge.get_info("adamw8bit").extra["min_8bit_numel"].value
    assert threshold == 4096
    below, at = nn.Parameter(torch.randn(threshold - 1)), nn.Parameter(torch.randn(64, 64))
    opt = AdamW8bit([below, at])
    assert opt.defaults["block_size"] == 256 and opt.defaults["min_8bit_numel"] == threshold
    below.grad, at.grad = torch.randn_like(below), torch.randn_like(at)
    opt.step()
    assert set(opt.state[below]) == {"step", "exp_avg", "exp_avg_sq"}
    assert opt.state[below]["exp_avg"].dtype == torch.float32
    s = opt.state[at]
    assert set(s) == {
        "step", "exp_avg_codes", "exp_avg_absmax", "exp_avg_sq_codes", "exp_avg_sq_absmax"
    }  # fmt: skip
    assert s["exp_avg_codes"].dtype == torch.int8 and s["exp_avg_codes"].shape == (64, 64)
    assert s["exp_avg_sq_codes"].dtype == torch.uint8
    assert s["exp_avg_absmax"].shape == (16,) and s["exp_avg_absmax"].dtype == torch.float32
    lion = Lion8bit([at], block_size=2048)
    lion.step()
    assert set(lion.state[at]) == {"exp_avg_codes", "exp_avg_absmax"}
    assert lion.state[at]["exp_avg_absmax"].shape == (2,)


def test_bf16_parameters() -> None:
    big = nn.Parameter(torch.randn(64, 64, dtype=torch.bfloat16))
    small = nn.Parameter(torch.randn(10, dtype=torch.bfloat16))
    for opt in (AdamW8bit([big, small], lr=1e-2), Lion8bit([big, small], lr=1e-2)):
        before = big.detach().clone()
        for _ in range(3):
            big.grad, small.grad = torch.randn_like(big), torch.randn_like(small)
            opt.step()
        assert big.dtype == torch.bfloat16 and not torch.equal(big, before)
        assert opt.state[small]["exp_avg"].dtype == torch.float32
        assert opt.state[big]["exp_avg_codes"].dtype == torch.int8


def test_changing_block_size_after_the_state_exists_is_an_error() -> None:
    p = nn.Parameter(torch.randn(5000))
    opt = AdamW8bit([p])
    p.grad = torch.randn_like(p)
    opt.step()
    opt.param_groups[0]["block_size"] = 2048
    with pytest.raises(ValueError, match="block size changed"):
        opt.step()


def _trained(make: Any) -> tuple[nn.Module, Any]:
    model = nn.Sequential(nn.Linear(80, 64), nn.Tanh(), nn.Linear(64, 3))  # 5120 elements
    opt = make(model.parameters())
    for i in range(3):
        opt.zero_grad()
        model(torch.randn(8, 80, generator=torch.Generator().manual_seed(i))).sum().backward()
        opt.step()
    return model, opt


def test_state_dict_keeps_codes_and_rejects_inconsistent_state() -> None:
    model, opt = _trained(lambda ps: AdamW8bit(ps))
    saved = copy.deepcopy(opt.state_dict())
    assert saved["state"][0]["exp_avg_codes"].dtype == torch.int8
    assert saved["state"][0]["exp_avg_sq_codes"].dtype == torch.uint8
    fresh = AdamW8bit(model.parameters())
    fresh.load_state_dict(copy.deepcopy(saved))
    for key, value in saved["state"][0].items():
        got = fresh.state[fresh.param_groups[0]["params"][0]][key]
        assert torch.equal(torch.as_tensor(got), torch.as_tensor(value))
        assert torch.as_tensor(got).dtype == torch.as_tensor(value).dtype

    def corrupt(fn: Any) -> dict[str, Any]:
        bad = copy.deepcopy(saved)
        fn(bad)
        return bad

    cases = [
        (lambda sd: sd["state"][0].__setitem__("exp_avg_codes", torch.zeros(64, 80)), "int8"),
        (lambda sd: sd["state"][0].__setitem__("exp_avg_absmax", torch.zeros(3)), "absmax"),
        (lambda sd: sd["state"][0].pop("exp_avg_sq_absmax"), "expected"),
        (lambda sd: sd["state"][0].__setitem__("exp_avg", torch.zeros(64, 80)), "expected"),
        (lambda sd: sd["state"][0].pop("step"), "expected"),
        (lambda sd: sd["param_groups"][0].__setitem__("block_size", 300), "block_size"),
        (lambda sd: sd["param_groups"][0].__setitem__("block_size", 2048), "absmax"),
        # a positional hyperparameter missing: another optimizer (keyword-only options are
        # filled with their defaults, as an older checkpoint lacks them)
        (lambda sd: sd["param_groups"][0].pop("block_size"), "another optimizer"),
    ]
    before = copy.deepcopy(fresh.state_dict())
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            fresh.load_state_dict(corrupt(fn))
        after = fresh.state_dict()
        assert after["param_groups"] == before["param_groups"]
        for k, st in before["state"].items():
            for key, v in st.items():
                assert torch.equal(torch.as_tensor(after["state"][k][key]), torch.as_tensor(v))


def test_lion8bit_rejects_adamw8bit_state() -> None:
    model, adamw = _trained(lambda ps: AdamW8bit(ps))
    lion = Lion8bit(model.parameters())
    with pytest.raises(ValueError, match=r"does not use|another optimizer"):
        lion.load_state_dict(adamw.state_dict())


# --------------------------------------------------------------------------------------------
# Bad input, registry
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [AdamW8bit, Lion8bit])
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"block_size": 300}, r"Invalid block_size: 300 \(must be a power of two"),
        ({"block_size": 0}, "Invalid block_size: 0"),
        ({"block_size": -256}, "Invalid block_size: -256"),
        ({"block_size": 256.0}, "Invalid block_size: 256.0"),
        ({"block_size": True}, "Invalid block_size: True"),
        ({"min_8bit_numel": -1}, "Invalid min_8bit_numel: -1"),
        ({"min_8bit_numel": 1.5}, "Invalid min_8bit_numel: 1.5"),
        ({"lr": -1.0}, r"Invalid learning rate: -1.0"),
        ({"betas": (0.9, 1.0)}, r"Invalid beta parameter at index 1: 1.0"),
        ({"weight_decay": -0.1}, "Invalid weight_decay value: -0.1"),
    ],
)
def test_bad_hyperparameters(cls: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls([nn.Parameter(torch.zeros(3))], **kwargs)


def test_eps_is_checked_and_complex_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="Invalid epsilon value: -1e-08"):
        AdamW8bit([nn.Parameter(torch.zeros(3))], eps=-1e-8)
    p = nn.Parameter(torch.zeros(3, dtype=torch.complex64))
    opt = AdamW8bit([p])
    p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match=r"does not support complex parameters.*view_as_real"):
        opt.step()
    assert not opt.state


def test_registry_builds_the_8bit_optimizers_with_knowledge_defaults() -> None:
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = optiwise.create_optimizer("AdamW-8bit", model)
    assert isinstance(opt, AdamW8bit)
    assert opt.param_groups[0]["lr"] == knowledge.defaults("adamw8bit").hparams["lr"].value
    assert sorted(g["weight_decay"] for g in opt.param_groups) == [0.0, 0.01]
    lion = optiwise.create_optimizer("lion8bit", model, task="language_transformer")
    assert isinstance(lion, Lion8bit) and lion.param_groups[0]["betas"] == (0.95, 0.98)
    assert {"adamw8bit", "lion8bit"} <= set(optiwise.list_optimizers())


# --------------------------------------------------------------------------------------------
# Trains; memory and quality on a real workload
# --------------------------------------------------------------------------------------------


def test_adamw8bit_trains_at_its_knowledge_default() -> None:
    # digits 64-64-10: the 4096-element first layer has 8-bit state. Measured 0.196 (torch
    # AdamW: 0.199) after 200 steps, from 2.33.
    assert train_digits(lambda ps: AdamW8bit(ps), steps=200) < 0.25


def test_lion8bit_trains_at_its_knowledge_default() -> None:
    # lr 1e-4 is Lion's transformer-scale default, slow on digits: measured 0.996 after 500
    # steps (fp32 Lion: 0.986), from 2.33.
    assert train_digits(lambda ps: Lion8bit(ps), steps=500) < 1.1


def test_8bit_adamw_matches_fp32_adamw_on_digits() -> None:
    """Digits MLP 64-128-10 (the 8192-element first layer has 8-bit state), knowledge
    defaults, same seeds and steps as torch's AdamW.

    After 100 steps the final training losses agree within 1% (measured: 0.16-0.22%). Later
    the 8-bit loss is consistently *lower* (measured at 300 steps: 2-4% lower; bitsandbytes'
    8-bit AdamW the same within 0.3%): deterministic rounding of the second moment lags
    behind its slow (beta2 = 0.999) growth, which makes steps slightly larger. So from there
    the test checks that the 8-bit state costs no more than 1% and gains no more than 6%.
    """
    for seed in (0, 1):
        fp32 = _digits_run(lambda ps: torch.optim.AdamW(ps), 100, seed)
        q8 = _digits_run(lambda ps: AdamW8bit(ps), 100, seed)
        assert q8 == pytest.approx(fp32, rel=0.01)
    fp32 = _digits_run(lambda ps: torch.optim.AdamW(ps), 300)
    q8 = _digits_run(lambda ps: AdamW8bit(ps), 300)
    assert 0.94 * fp32 < q8 <= 1.01 * fp32
