from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import optiwise
from optiwise import knowledge
from optiwise.lr_finder import (
    SUGGESTION_RULES,
    DataSource,
    ema_smooth,
    find_lr,
    suggest_fastai_steep,
    suggest_minimum,
    suggest_steepest,
    suggest_valley,
    sweep_range,
    synthetic_regression,
)
from tests import models


def regression_mlp(hidden: int = 32) -> nn.Module:
    """Model factory for the CLI tests (imported as tests.test_lr_finder:regression_mlp)."""
    return nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 1))


def regression_task(batches: int = 16, batch: int = 16) -> tuple[nn.Module, DataSource]:
    model = regression_mlp()
    source = synthetic_regression(model, samples=batches * batch, batch_size=batch)
    return model, source


def image_batches(n: int = 8, batch: int = 8, seed: int = 0) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, 1, 8, 8, generator=g), torch.randint(0, 10, (batch,), generator=g))
        for _ in range(n)
    ]


def snapshot(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "grads": {
            n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()
        },
        "modes": [m.training for m in model.modules()],
    }
    if optimizer is not None:
        out["opt"] = copy_state(optimizer.state_dict())
    return out


def copy_state(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, dict):
        return {k: copy_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(copy_state(v) for v in obj)
    return obj


def same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def pretrain(
    model: nn.Module, opt: torch.optim.Optimizer, batches: list[Any], loss_fn: Any
) -> None:
    for x, y in batches[:3]:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()


# --------------------------------------------------------------------------------------------
# Suggestion rules on hand-made curves
# --------------------------------------------------------------------------------------------

LRS = [10 ** (-5 + i * 0.1) for i in range(40)]


def test_ema_smooth_is_bias_corrected() -> None:
    assert ema_smooth([2.0] * 5, 0.9) == pytest.approx([2.0] * 5)
    a1 = 0.1 * 1.0
    a2 = 0.9 * a1 + 0.1 * 3.0
    assert ema_smooth([1.0, 3.0], 0.9) == pytest.approx([1.0, a2 / (1 - 0.81)])
    assert ema_smooth([1.0, 3.0], 0.0) == [1.0, 3.0]
    with pytest.raises(ValueError, match="smoothing"):
        ema_smooth([1.0], 1.0)


def test_minimum_rule() -> None:
    losses = [5.0 - 0.1 * i for i in range(30)] + [3.0 + i for i in range(10)]
    assert suggest_minimum(LRS, losses) == pytest.approx(LRS[29] / 10)
    assert suggest_minimum(LRS, losses, divisor=3) == pytest.approx(LRS[29] / 3)


def test_steepest_rule_skips_the_ends_like_lightning() -> None:
    losses = [3.0] * 40
    for i in range(15, 40):
        losses[i] = losses[i - 1] - (0.5 if i == 22 else 0.01)
    losses[2] = -10.0  # a steep drop inside the skipped start
    # np.gradient is central: the drop between 21 and 22 is steepest at both 21 and 22
    assert suggest_steepest(LRS, losses) == pytest.approx(LRS[21])
    assert suggest_steepest(LRS, losses, skip_start=0) in (LRS[1], LRS[2], LRS[3])


def test_fastai_steep_rule() -> None:
    losses = [3.0 - 0.01 * i for i in range(40)]
    losses[20:] = [v - 1.0 for v in losses[20:]]  # the drop from 19 to 20
    assert suggest_fastai_steep(LRS, losses) == pytest.approx(LRS[19])


def test_valley_rule_is_the_middle_of_the_longest_fall() -> None:
    # flat-noisy start, a long strict fall over points 10..30, then a rise
    losses = [3.0 + 0.01 * (i % 2) for i in range(10)]
    losses += [3.0 - 0.1 * k for k in range(1, 22)]  # indices 10..30
    losses += [1.0 + 0.5 * k for k in range(9)]  # indices 31..39
    # fastai's window drops the first tenth (4 points) and the last 5.
    x, y = LRS[4:35], losses[4:35]
    # the longest decreasing subsequence starts at a 3.0x point and ends at index 30
    run_end = 30 - 4
    run_len = 1 + 21 + 1  # one flat point, the 21-point fall, ... (computed below)
    lds = [1] * len(y)
    for i in range(len(y)):
        for j in range(i):
            if y[i] < y[j]:
                lds[i] = max(lds[i], lds[j] + 1)
    run_len = lds[run_end]
    start = run_end - run_len
    third = (run_end - start) / 3
    assert suggest_valley(LRS, losses) == pytest.approx(x[start + int(third) + int(third / 2)])
    assert LRS[12] < suggest_valley(LRS, losses) < LRS[28]


@pytest.mark.parametrize("rule", sorted(SUGGESTION_RULES))
def test_rules_refuse_bad_curves(rule: str) -> None:
    fn = SUGGESTION_RULES[rule]
    with pytest.raises(ValueError, match="same length"):
        fn([1e-3, 1e-2, 1e-1], [1.0, 2.0])
    with pytest.raises(ValueError, match="increase"):
        fn([1e-3, 1e-3, 1e-1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="finite"):
        fn([1e-3, 1e-2, 1e-1], [1.0, float("nan"), 3.0])


def test_sweep_range_widens_the_knowledge_range() -> None:
    widen = knowledge.LR_FINDER_WIDEN.value
    lo, hi = knowledge.lr_range("adamw").value
    assert sweep_range("AdamW") == pytest.approx((lo / widen, hi * widen))
    lo, hi = knowledge.lr_range("sgd", "fine_tuning").value
    assert sweep_range("nesterov", "fine_tuning") == pytest.approx((lo / widen, hi * widen))


# --------------------------------------------------------------------------------------------
# The sweep
# --------------------------------------------------------------------------------------------


def test_exponential_sweep_records_one_lr_per_step() -> None:
    model, src = regression_task()
    r = find_lr(model, src.loss_fn, src.train, "adamw", num_steps=20, confirm=0)
    lo, hi = sweep_range("adamw")
    assert r.start_lr == pytest.approx(lo) and r.end_lr == pytest.approx(hi)
    expected = [lo * (hi / lo) ** (i / 19) for i in range(20)]
    assert list(r.lrs) == pytest.approx(expected[: len(r.lrs)], rel=1e-12)
    assert len(r.lrs) == len(r.losses) == len(r.smoothed)
    assert list(r.smoothed) == pytest.approx(ema_smooth(r.losses))
    assert r.optimizer == "adamw" and r.group_scales == (1.0, 1.0)
    assert r.recommended is r.suggestions["minimum"] and not r.confirmations
    json.dumps(r.to_dict())
    assert "LR range test" in r.summary()


def test_linear_sweep() -> None:
    model, src = regression_task()
    r = find_lr(
        model,
        src.loss_fn,
        src.train,
        "sgd",
        start_lr=0.001,
        end_lr=0.01,
        mode="linear",
        num_steps=10,
        confirm=0,
    )
    assert list(r.lrs) == pytest.approx([0.001 + 0.001 * i for i in range(10)])


def test_sweep_stops_at_four_times_the_best_smoothed_loss() -> None:
    model, src = regression_task()
    r = find_lr(
        model,
        src.loss_fn,
        src.train,
        "sgd_plain",
        start_lr=1e-3,
        end_lr=1e3,
        num_steps=60,
        smoothing=0.5,
        confirm=0,
    )
    assert r.stop_reason == "diverged" and len(r.lrs) < 60
    assert r.smoothed[-1] > 4 * min(r.smoothed[:-1])
    assert all(s <= 4 * min(r.smoothed[: i + 1]) for i, s in enumerate(r.smoothed[:-1]))


def test_sweep_stops_at_a_non_finite_loss() -> None:
    model, src = regression_task()
    calls = []

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        loss = F.mse_loss(out, y)
        return loss * float("nan") if len(calls) > 12 else loss

    r = find_lr(model, loss_fn, src.train, "adamw", num_steps=30, confirm=0)
    assert r.stop_reason == "non-finite" and len(r.lrs) == 12
    assert all(math.isfinite(v) for v in r.losses)


def test_accumulation_takes_one_lr_per_optimizer_step() -> None:
    model, src = regression_task()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    steps: list[float] = []
    opt.register_step_pre_hook(lambda o, a, k: steps.append(o.param_groups[0]["lr"]))
    micro: list[float] = []

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.mse_loss(out, y)
        micro.append(float(loss.detach()))
        return loss

    r = find_lr(
        model,
        loss_fn,
        src.train,
        opt,
        start_lr=1e-4,
        end_lr=1e-3,
        num_steps=12,
        accumulation=3,
        confirm=0,
    )
    assert len(r.lrs) == 12 and len(micro) == 36 and steps == pytest.approx(list(r.lrs))
    for i in range(12):
        assert r.losses[i] == pytest.approx(sum(micro[3 * i : 3 * i + 3]) / 3)


def test_accumulated_gradient_is_the_mean_over_micro_batches() -> None:
    torch.manual_seed(1)
    model = nn.Linear(4, 1, bias=False)
    data = [(torch.randn(2, 4), torch.randn(2, 1)) for _ in range(2)]
    seen: list[torch.Tensor] = []
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.register_step_pre_hook(lambda o, a, k: seen.append(model.weight.grad.clone()))
    find_lr(
        model,
        F.mse_loss,
        data,
        opt,
        start_lr=1e-6,
        end_lr=1e-5,
        num_steps=10,
        accumulation=2,
        confirm=0,
    )
    ref = nn.Linear(4, 1, bias=False)
    ref.load_state_dict(model.state_dict())
    full = torch.cat([d[0] for d in data]), torch.cat([d[1] for d in data])
    F.mse_loss(ref(full[0]), full[1]).backward()
    assert torch.allclose(seen[0], ref.weight.grad, atol=1e-7)


def test_param_groups_are_scaled_together() -> None:
    model = models.TinyResNet(width=4)
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.startswith("fc")]},
        {"params": model.fc.parameters(), "lr": 1e-2},
    ]
    opt = torch.optim.AdamW(groups, lr=1e-3)
    seen: list[tuple[float, float]] = []
    opt.register_step_pre_hook(
        lambda o, a, k: seen.append((o.param_groups[0]["lr"], o.param_groups[1]["lr"]))
    )
    r = find_lr(model, F.cross_entropy, image_batches(), opt, num_steps=10, confirm=0)
    assert r.group_scales == pytest.approx((0.1, 1.0))
    assert [b for _, b in seen] == pytest.approx(list(r.lrs))
    assert all(a == pytest.approx(b / 10) for a, b in seen)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-2]
    assert r.lrs_for(1.0) == pytest.approx([0.1, 1.0])


def test_an_existing_optimizer_gives_its_registry_range() -> None:
    model, src = regression_task()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    r = find_lr(model, src.loss_fn, src.train, opt, num_steps=10, confirm=0)
    assert r.optimizer == "sgd"
    assert (r.start_lr, r.end_lr) == pytest.approx(sweep_range("sgd"))

    class Unregistered(torch.optim.SGD):
        pass

    unknown = Unregistered(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="pass start_lr and end_lr"):
        find_lr(model, src.loss_fn, src.train, unknown, num_steps=10)


def test_bf16_autocast_on_cpu() -> None:
    model, src = regression_task()
    dtypes: list[torch.dtype] = []
    model[0].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    before = snapshot(model)
    r = find_lr(model, src.loss_fn, src.train, "adamw", num_steps=10, amp=True, confirm=0)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert all(math.isfinite(v) for v in r.losses)
    assert same(before, snapshot(model))
    with pytest.raises(ValueError, match="Invalid amp"):
        find_lr(model, src.loss_fn, src.train, "adamw", num_steps=10, amp="int8")


def test_steps_the_grad_scaler_skips_do_not_advance_the_sweep() -> None:
    model, src = regression_task()
    # A scale of 1e38 overflows the fp32 gradients: those steps are skipped and the scale
    # backs off until the gradients fit.
    scaler = torch.amp.GradScaler("cpu", init_scale=1e38)
    state = copy_state(scaler.state_dict())
    r = find_lr(
        model,
        lambda o, y: 1e3 * F.mse_loss(o, y),
        src.train,
        "adamw",
        num_steps=12,
        scaler=scaler,
        confirm=0,
    )
    assert r.skipped_steps > 0
    lo, hi = r.start_lr, r.end_lr
    assert list(r.lrs) == pytest.approx([lo * (hi / lo) ** (i / 11) for i in range(12)])
    assert same(scaler.state_dict(), state)


# --------------------------------------------------------------------------------------------
# Afterwards everything is as before
# --------------------------------------------------------------------------------------------


def test_parameters_buffers_grads_and_modes_are_restored() -> None:
    model = models.TinyResNet(width=4)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = image_batches()
    pretrain(model, opt, batches, F.cross_entropy)
    F.cross_entropy(model(batches[0][0]), batches[0][1]).backward()  # leave grads behind
    model.eval()
    model.layer2.train()  # a mixed mode must come back as it was
    params = {n: p for n, p in model.named_parameters()}
    bn_mean = model.bn1.running_mean
    before = snapshot(model, opt)
    groups = list(opt.param_groups)
    r = find_lr(model, F.cross_entropy, batches, opt, num_steps=12, confirm=2, confirm_steps=3)
    assert len(r.confirmations) == 2
    after = snapshot(model, opt)
    assert same(before, after)
    assert model.bn1.num_batches_tracked.item() == 4  # 3 steps and the extra forward
    # the same objects, so the optimizer (and anyone else) still holds the live tensors
    assert all(p is params[n] for n, p in model.named_parameters())
    assert model.bn1.running_mean is bn_mean
    assert all(a is b for a, b in zip(groups, opt.param_groups, strict=True))
    assert all(p.grad is not None for p in model.parameters())


def test_fresh_optimizer_state_stays_empty() -> None:
    model, src = regression_task()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    find_lr(model, src.loss_fn, src.train, opt, num_steps=10, confirm=1, confirm_steps=2)
    assert len(opt.state) == 0 and opt.param_groups[0]["lr"] == 1e-3
    assert all(p.grad is None for p in model.parameters())


def test_training_continues_bit_identically_after_find_lr() -> None:
    """Optimizer state, scheduler, RNG (dropout), shuffling: a run interrupted by find_lr
    ends exactly where an uninterrupted run does."""

    def make() -> tuple[nn.Module, torch.optim.Optimizer, Any, DataLoader]:
        torch.manual_seed(3)
        np.random.seed(3)
        random.seed(3)
        model = nn.Sequential(
            nn.Linear(8, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1)
        )
        opt = optiwise.create_optimizer("adamw", model, lr=1e-3)
        sched = optiwise.create_scheduler("warmup_cosine", opt, total_steps=20, warmup=3)
        data = TensorDataset(torch.randn(96, 8), torch.randn(96, 1))
        loader = DataLoader(data, batch_size=8, shuffle=True)
        return model, opt, sched, loader

    def train(model: nn.Module, opt: Any, sched: Any, it: Any, steps: int) -> None:
        for _ in range(steps):
            x, y = next(it)
            opt.zero_grad()
            F.mse_loss(model(x), y).backward()
            opt.step()
            sched.step()

    model_a, opt_a, sched_a, loader_a = make()
    it = iter(loader_a)
    train(model_a, opt_a, sched_a, it, 4)
    find_lr(
        model_a,
        F.mse_loss,
        loader_a,
        opt_a,
        scheduler=sched_a,
        num_steps=10,
        confirm=1,
        confirm_steps=3,
    )
    train(model_a, opt_a, sched_a, it, 6)
    after_a = torch.rand(3), np.random.rand(), random.random()

    model_b, opt_b, sched_b, loader_b = make()
    it = iter(loader_b)
    train(model_b, opt_b, sched_b, it, 10)
    after_b = torch.rand(3), np.random.rand(), random.random()

    assert same(model_a.state_dict(), model_b.state_dict())
    assert same(opt_a.state_dict(), opt_b.state_dict())
    assert same(sched_a.state_dict(), sched_b.state_dict())
    assert torch.equal(after_a[0], after_b[0]) and after_a[1:] == after_b[1:]


def test_scheduler_state_and_step_flag_are_restored() -> None:
    model, src = regression_task()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2)
    state = copy_state(sched.state_dict())
    find_lr(model, src.loss_fn, src.train, opt, scheduler=sched, num_steps=10, confirm=0)
    assert same(sched.state_dict(), state)
    assert not hasattr(opt, "_opt_called")  # the scheduler's "step was called" flag


def test_rng_states_are_restored() -> None:
    model, _ = regression_task()
    gen = torch.Generator().manual_seed(5)
    loader = DataLoader(
        TensorDataset(torch.randn(64, 8), torch.randn(64, 1)),
        batch_size=8,
        shuffle=True,
        generator=gen,
    )
    torch.manual_seed(11)
    np.random.seed(11)
    random.seed(11)
    gen_state = gen.get_state()
    expected = torch.rand(2), np.random.rand(2), random.random()
    torch.manual_seed(11)
    np.random.seed(11)
    random.seed(11)

    def noisy_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        np.random.rand()
        random.random()
        return F.mse_loss(out + 0.01 * torch.randn_like(out), y)

    find_lr(model, noisy_loss, loader, "adamw", num_steps=10, confirm=1, confirm_steps=2)
    got = torch.rand(2), np.random.rand(2), random.random()
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    assert torch.equal(gen.get_state(), gen_state)


def test_a_one_shot_iterator_is_consumed_only_as_far_as_used() -> None:
    model, src = regression_task(batches=40)
    it = iter(src.train)  # 40 batches
    r = find_lr(
        model,
        src.loss_fn,
        it,
        "adamw",
        start_lr=1e-5,
        end_lr=1e-4,
        num_steps=10,
        accumulation=2,
        confirm=2,
        confirm_steps=4,
    )
    assert r.stop_reason == "completed"
    assert len(list(it)) == 40 - 20  # the confirmation runs reuse the batches already drawn


def test_a_short_one_shot_iterator_is_cycled() -> None:
    model, src = regression_task()
    r = find_lr(model, src.loss_fn, iter(src.train[:3]), "adamw", num_steps=10, confirm=0)
    assert len(r.lrs) == 10


def test_the_users_list_and_loader_are_untouched() -> None:
    model, src = regression_task()
    train = list(src.train)
    find_lr(model, src.loss_fn, train, "adamw", num_steps=10, confirm=0)
    assert len(train) == len(src.train) and all(
        a is b for a, b in zip(train, src.train, strict=True)
    )


# --------------------------------------------------------------------------------------------
# Bad input: a clear error, model and optimizer untouched
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, kwargs, match",
    [
        ([], {}, "data is empty"),
        (iter([]), {}, "data is empty"),
        (None, {"start_lr": 1e-2, "end_lr": 1e-3}, "start_lr=0.01 must be below end_lr=0.001"),
        (None, {"start_lr": 1e-2, "end_lr": 1e-2}, "must be below"),
        (None, {"num_steps": 9}, "Invalid num_steps: 9"),
        (None, {"accumulation": 0}, "Invalid accumulation: 0"),
        (None, {"start_lr": -1.0}, "Invalid start_lr: -1.0"),
        (None, {"mode": "cubic"}, "Invalid mode"),
        (None, {"confirm": -1}, "Invalid confirm"),
        (None, {"nan": True}, "loss is nan at the first step"),
        ([(torch.randn(4, 8),)], {}, r"\(inputs, targets\) pair"),
        (None, {"optimizer": "adamm"}, "Unknown optimizer 'adamm'"),
        (None, {"val_data": []}, "val_data is empty"),
    ],
)
def test_bad_input_raises_and_leaves_everything_untouched(
    data: Any, kwargs: dict[str, Any], match: str
) -> None:
    model, src = regression_task()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    pretrain(model, opt, src.train, src.loss_fn)
    before = snapshot(model, opt)
    loss_fn = src.loss_fn
    if kwargs.pop("nan", False):

        def loss_fn(o: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return F.mse_loss(o, y) * float("nan")

    optimizer = kwargs.pop("optimizer", opt)
    with pytest.raises(ValueError, match=match):
        find_lr(
            model,
            loss_fn,
            src.train if data is None else data,
            optimizer,
            **{"num_steps": 10, "confirm": 1, "confirm_steps": 2, **kwargs},
        )
    assert same(before, snapshot(model, opt))


def test_a_model_without_parameters_is_refused() -> None:
    with pytest.raises(ValueError, match="has no parameters"):
        find_lr(nn.ReLU(), F.mse_loss, [(torch.ones(1), torch.ones(1))], "adamw")


# --------------------------------------------------------------------------------------------
# The recommendation
# --------------------------------------------------------------------------------------------


def fake_runs(best_lr: float, diverge_above: float = math.inf) -> tuple[list[float], Any]:
    """A confirmation run whose score is the squared distance to best_lr in decades."""
    from optiwise.lr_finder import Confirmation

    seen: list[float] = []

    def run(lr: float) -> Confirmation:
        seen.append(lr)
        if lr > diverge_above:
            return Confirmation(lr, math.inf, 5, True)
        return Confirmation(lr, 1.0 + math.log10(lr / best_lr) ** 2, 5, False)

    return seen, run


def test_search_brackets_then_refines() -> None:
    from optiwise.lr_finder import _search

    h = math.sqrt(10)
    seen, run = fake_runs(best_lr=0.011)
    runs = _search(0.01, 4, run)
    assert seen == pytest.approx([0.01, 0.01 / h, 0.01 * h, 0.01 * math.sqrt(h)])
    assert [c.lr for c in runs] == sorted(seen)
    # the optimum is two half-decades above the anchor: the search walks up to it
    seen, run = fake_runs(best_lr=0.1)
    _search(0.01, 5, run)
    assert seen == pytest.approx([0.01, 0.01 / h, 0.01 * h, 0.1, 0.1 * h])
    # ... and down, past runs that diverge above the anchor
    seen, run = fake_runs(best_lr=1e-4, diverge_above=0.02)
    runs = _search(0.01, 5, run)
    assert seen == pytest.approx([0.01, 0.01 / h, 0.01 * h, 1e-3, 1e-3 / h])
    assert runs[-1].diverged and not any(c.diverged for c in runs[:-1])
    # a small budget runs the anchor first, then half a decade below
    seen, run = fake_runs(best_lr=0.01)
    assert [c.lr for c in _search(0.01, 2, run)] == pytest.approx([0.01 / h, 0.01])
    # once bracketed to a quarter decade the search stops, leaving budget unused
    seen, run = fake_runs(best_lr=0.01)
    assert len(_search(0.01, 9, run)) == 4


def test_confirmation_runs_pick_the_best_candidate() -> None:
    model, src = regression_task(batches=32)
    r = find_lr(
        model,
        src.loss_fn,
        src.train,
        "adamw",
        num_steps=40,
        val_data=src.val,
        confirm=3,
        confirm_steps=10,
    )
    assert r.score == "val_loss" and len(r.confirmations) == 3
    lrs = [c.lr for c in r.confirmations]
    assert lrs == sorted(lrs)
    assert lrs[1] / lrs[0] == pytest.approx(math.sqrt(10)) == lrs[2] / lrs[1]
    from optiwise.lr_finder import _anchor

    assert lrs[1] == _anchor(r.lrs, r.losses)
    best = min(r.confirmations, key=lambda c: c.score)
    backoff = knowledge.LR_FINDER_BACKOFF.value
    assert r.recommended.name == "confirmed"
    assert r.recommended.lr == pytest.approx(best.lr * backoff)
    assert backoff == pytest.approx(10**-0.25)
    assert r.suggestions["confirmed"] is r.recommended
    ratio = knowledge.LR_CONSTANT_OF_PEAK.value
    assert r.recommended.constant_lr == pytest.approx(ratio * r.recommended.lr)
    assert r.recommended.peak_lr == r.recommended.lr
    # a learnable task at sane LRs: no confirmation run diverged
    assert all(math.isfinite(c.score) and not c.diverged for c in r.confirmations)


def test_confirmation_score_matches_a_hand_written_run() -> None:
    model, src = regression_task(batches=8)
    init = copy_state(model.state_dict())
    r = find_lr(
        model,
        src.loss_fn,
        src.train,
        "sgd_plain",
        num_steps=10,
        val_data=src.val,
        confirm=1,
        confirm_steps=6,
    )
    (run,) = r.confirmations
    ref = regression_mlp()
    ref.load_state_dict(init)
    opt = torch.optim.SGD(ref.parameters(), lr=run.lr, weight_decay=1e-4)
    # the warmup is floored in steps (at most half the run: 3 of 6), never 5% of 6 steps
    factors = optiwise.lr_curve("warmup_cosine", total_steps=6, warmup=3)
    for (x, y), f in zip(src.train, factors, strict=False):
        opt.param_groups[0]["lr"] = run.lr * f
        opt.zero_grad()
        F.mse_loss(ref(x), y).backward()
        opt.step()
    # scored on the first knowledge.TUNE_VAL_BATCHES validation batches, not all of them
    n = knowledge.TUNE_VAL_BATCHES.value
    assert len(src.val) > n
    with torch.no_grad():
        val = sum(float(F.mse_loss(ref(x), y)) for x, y in src.val[:n]) / n
    assert run.score == pytest.approx(val, rel=1e-5)


def test_total_steps_moves_the_best_confirmation_to_the_run_length() -> None:
    from optiwise.lr_finder import best_lr

    model, src = regression_task(batches=32)
    kwargs: dict[str, Any] = {"num_steps": 40, "val_data": src.val, "confirm": 3}
    kwargs["confirm_steps"] = 20
    short = find_lr(model, src.loss_fn, src.train, "adamw", **kwargs)
    long = find_lr(model, src.loss_fn, src.train, "adamw", total_steps=2000, **kwargs)
    top = best_lr([c.lr for c in long.confirmations], [c.score for c in long.confirmations])
    assert top is not None
    slope = knowledge.TUNE_HORIZON_EXPONENT.value
    assert long.recommended.lr == pytest.approx(top * (2000 / 20) ** slope)
    assert "planned 2000 steps" in long.recommended.reason
    assert short.recommended.lr != long.recommended.lr
    with pytest.raises(ValueError, match="Invalid total_steps"):
        find_lr(model, src.loss_fn, src.train, "adamw", total_steps=0, **kwargs)
    # an explicit horizon exponent replaces the knowledge default
    steep = find_lr(
        model, src.loss_fn, src.train, "adamw", total_steps=2000, horizon_exponent=-0.8, **kwargs
    )
    assert steep.recommended.lr == pytest.approx(top * (2000 / 20) ** -0.8)
    for bad in (0.5, math.nan, True, "x"):
        with pytest.raises(ValueError, match="Invalid horizon_exponent"):
            find_lr(model, src.loss_fn, src.train, "adamw", total_steps=9, horizon_exponent=bad)


def test_trial_warmup_and_best_lr() -> None:
    from optiwise.lr_finder import best_lr, trial_warmup

    assert trial_warmup(100, 2000, 50) == 12
    assert trial_warmup(100, 2000, 1000) == 100
    assert trial_warmup(0, 2000, 50) == 0
    v = best_lr([1e-3, 1e-2, 1e-1], [2.0, 1.0, 2.0])
    assert v == pytest.approx(1e-2)
    assert best_lr([1e-3, 1e-2], [1.0, math.inf]) == 1e-3
    assert best_lr([1e-3], [math.nan]) is None


def test_without_val_data_runs_are_scored_on_training_loss() -> None:
    model, src = regression_task()
    r = find_lr(model, src.loss_fn, src.train, "adamw", num_steps=20, confirm=2, confirm_steps=8)
    assert r.score == "train_loss" and len(r.confirmations) == 2
    assert "final training loss" in r.recommended.reason


def test_diverged_confirmation_runs_are_marked_and_skipped() -> None:
    model, src = regression_task()
    calls: list[int] = []
    nan_calls: set[int] = set()

    def loss_fn(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        loss = F.mse_loss(out, y)
        return loss * float("nan") if len(calls) in nan_calls else loss

    # 10 sweep steps (calls 1-10), then two runs of 4 steps: the anchor (calls 11-14) and
    # half a decade below it (15-18)
    kwargs: dict[str, Any] = dict(
        start_lr=1e-5, end_lr=1e-4, num_steps=10, confirm=2, confirm_steps=4
    )
    nan_calls.update({12})
    r = find_lr(model, loss_fn, src.train, "adamw", **kwargs)
    low, high = r.confirmations
    assert high.diverged and high.score == math.inf and not low.diverged
    assert r.recommended.lr == pytest.approx(low.lr * knowledge.LR_FINDER_BACKOFF.value)

    calls.clear()
    nan_calls.update({16})
    r = find_lr(model, loss_fn, src.train, "adamw", **kwargs)
    assert all(c.diverged for c in r.confirmations)
    assert r.recommended.lr == pytest.approx(r.confirmations[0].lr / math.sqrt(10))
    assert "every confirmation run diverged" in r.recommended.reason


# --------------------------------------------------------------------------------------------
# Plot, data source
# --------------------------------------------------------------------------------------------


def test_plot_writes_a_png(tmp_path: Path) -> None:
    model, src = regression_task()
    r = find_lr(model, src.loss_fn, src.train, "adamw", num_steps=12, confirm=1, confirm_steps=2)
    out = r.plot(tmp_path / "sub" / "lr.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"must end in \.png"):
        r.plot(tmp_path / "lr.jpg")


def test_synthetic_regression_fits_the_model_and_leaves_the_rng_alone() -> None:
    model = regression_mlp()
    state = torch.get_rng_state()
    a = synthetic_regression(model, samples=100, batch_size=30, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    b = synthetic_regression(model, samples=100, batch_size=30, seed=1)
    train = list(a.train)
    assert [len(x) for x, _ in train] == [30, 30, 30, 10]
    assert train[0][0].shape == (30, 8) and train[0][1].shape == (30, 1)
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(a.train, b.train, strict=True))
    assert a.val is not None and "synthetic regression" in a.description
    with pytest.raises(ValueError, match="pass features and outputs"):
        synthetic_regression(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_register_data_source_adds_a_name_and_refuses_bad_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from optiwise import lr_finder

    monkeypatch.setattr(lr_finder, "_DATA_SOURCES", dict(lr_finder._DATA_SOURCES))
    monkeypatch.setattr(
        lr_finder, "DATA_SOURCES", lr_finder.MappingProxyType(lr_finder._DATA_SOURCES)
    )
    lr_finder.register_data_source("regression", synthetic_regression)
    assert lr_finder.DATA_SOURCES["regression"] is synthetic_regression
    with pytest.raises(ValueError, match="Invalid data source name: ''"):
        lr_finder.register_data_source("", synthetic_regression)
    with pytest.raises(ValueError, match="factory must be callable"):
        lr_finder.register_data_source("x", 3)  # type: ignore[arg-type]
    assert set(lr_finder.DATA_SOURCES) == set(lr_finder._DATA_SOURCES)
    assert "x" not in lr_finder.DATA_SOURCES and "" not in lr_finder.DATA_SOURCES


def test_synthetic_regression_carries_its_model_and_needs_one_or_sizes() -> None:
    model = regression_mlp()
    assert synthetic_regression(model, samples=8).model is model
    with pytest.raises(ValueError, match="none was given"):
        synthetic_regression(None)
    src = synthetic_regression(None, features=3, outputs=2, samples=8, batch_size=4)
    assert src.model is None and src.task is None
    assert [tuple(x.shape) + tuple(y.shape) for x, y in src.train] == [(4, 3, 4, 2)] * 2
