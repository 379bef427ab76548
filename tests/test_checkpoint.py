"""save_checkpoint / load_checkpoint: exact resume, weights-only loading, mismatches."""

from __future__ import annotations

import copy
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

import optiwise
from optiwise import (
    Stepper,
    create_optimizer,
    create_scheduler,
    load_checkpoint,
    save_checkpoint,
)
from optiwise.checkpoint import capture_rng_state, read_checkpoint, restore_rng_state

Batch = tuple[Tensor, Tensor]


def mlp(hidden: int = 16, norm: bool = True) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(6, hidden),
        nn.BatchNorm1d(hidden) if norm else nn.Identity(),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(hidden, 3),
    )


def batches(n: int, seed: int = 1) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)
    ]


class Setup:
    """Model, optimizer, warmup-cosine scheduler, fp16 GradScaler and EMA, via a Stepper."""

    def __init__(self, model: nn.Module | None = None) -> None:
        self.model = model if model is not None else mlp()
        self.optimizer = optiwise.create_optimizer("adamw", self.model, lr=1e-2)
        self.scheduler = optiwise.create_scheduler(
            "warmup_cosine", self.optimizer, total_steps=20, warmup=3
        )
        self.stepper = Stepper(
            self.optimizer,
            self.scheduler,
            model=self.model,
            accumulation=2,
            clip_norm=1.0,
            amp="fp16",
            ema_decay=0.9,
        )

    def train(self, data: list[Batch]) -> None:
        for x, y in data:
            # Every RNG the run uses: dropout (torch), noise (numpy), a scale (python).
            noise = torch.from_numpy(np.random.normal(0.0, 0.01, x.shape).astype(np.float32))
            with self.stepper.autocast():
                loss = F.cross_entropy(self.model(x + noise * random.random()), y)
            self.stepper.backward(loss)
        self.stepper.flush()

    def save(self, path: Path, **extra: Any) -> Path:
        return save_checkpoint(
            path,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            stepper=self.stepper,
            extra=extra,
        )

    def load(self, path: Path) -> dict[str, Any]:
        return load_checkpoint(
            path,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            stepper=self.stepper,
        )


def states_equal(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor):
        return isinstance(b, Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(states_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(states_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def snapshot(s: Setup) -> dict[str, Any]:
    return copy.deepcopy(
        {
            "model": s.model.state_dict(),
            "optimizer": s.optimizer.state_dict(),
            "scheduler": s.scheduler.state_dict(),
            "scaler": s.stepper.scaler.state_dict(),  # type: ignore[union-attr]
            "ema": s.stepper.ema_model.state_dict(),  # type: ignore[union-attr]
            "stepper": s.stepper.state_dict(),
        }
    )


def test_resume_in_process_is_bit_identical(tmp_path: Path) -> None:
    data = batches(10)
    a = Setup()
    b = Setup(copy.deepcopy(a.model))
    a.train(data[:5])
    path = a.save(tmp_path / "ckpt.pt", epoch=1, position=torch.tensor([5]), note="half")
    a.train(data[5:])  # the uninterrupted run goes on

    torch.manual_seed(123)  # scramble every RNG: the checkpoint must restore them
    np.random.seed(123)
    random.seed(123)
    extra = b.load(path)
    assert extra["epoch"] == 1 and extra["note"] == "half"
    assert torch.equal(extra["position"], torch.tensor([5]))
    assert b.stepper.step_count == 3
    b.train(data[5:])
    assert states_equal(snapshot(a), snapshot(b))
    assert b.stepper.step_count == 6


def test_file_is_plain_data_for_weights_only_load(tmp_path: Path) -> None:
    s = Setup()
    s.train(batches(2))
    path = s.save(tmp_path / "c.pt", metric=np.float64(0.5), counts=[np.int64(3)])
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "optiwise-checkpoint" and raw["version"] == 1
    assert set(raw) >= {"model", "optimizer", "scheduler", "scaler", "ema", "stepper", "rng"}
    # numpy scalars are stored as Python numbers
    assert type(raw["extra"]["metric"]) is float and type(raw["extra"]["counts"][0]) is int
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left


def test_rng_state_round_trip() -> None:
    state = capture_rng_state()
    first = (
        torch.rand(3),
        np.random.rand(3),
        [random.random() for _ in range(3)],
        np.random.randn(),
    )
    restore_rng_state(state)
    again = (
        torch.rand(3),
        np.random.rand(3),
        [random.random() for _ in range(3)],
        np.random.randn(),
    )
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1]) and first[2] == again[2] and first[3] == again[3]
    with pytest.raises(ValueError, match="RNG state"):
        restore_rng_state({"torch": torch.zeros(3)})


class Unsafe:
    """An object whose unpickling would create a file: loading must never run it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (Path(self.marker),))


def test_saving_arbitrary_objects_is_refused_and_old_file_kept(tmp_path: Path) -> None:
    s = Setup()
    path = s.save(tmp_path / "c.pt", epoch=1)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"extra\['obj'\]\[0\].*tests\.test_checkpoint\.Unsafe"):
        s.save(path, obj=[Unsafe(str(tmp_path / "x"))])
    with pytest.raises(ValueError, match=r"extra\['arr'\].*torch\.from_numpy"):
        s.save(path, arr=np.zeros(3))
    with pytest.raises(ValueError, match="keys"):
        save_checkpoint(path, model=s.model, extra={1: "a"})  # type: ignore[dict-item]
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def test_loading_a_file_with_pickled_objects_is_refused_without_running_it(tmp_path: Path) -> None:
    s = Setup()
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    payload = torch.load(s.save(tmp_path / "good.pt"), weights_only=True)
    payload["extra"] = {"obj": Unsafe(str(marker))}
    torch.save(payload, path)
    before = snapshot(s)
    with pytest.raises(ValueError, match=r"refusing to load .*Unsupported global"):
        s.load(path)
    assert not marker.exists()
    assert states_equal(before, snapshot(s))


def test_mismatching_model_lists_differences_and_loads_nothing(tmp_path: Path) -> None:
    s = Setup()
    s.train(batches(2))
    path = s.save(tmp_path / "c.pt")
    other = nn.Sequential(
        nn.Linear(6, 32),  # reshaped
        nn.BatchNorm1d(32),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(32, 3, bias=False),  # 4.bias missing
        nn.Linear(3, 3),  # 5.* extra
    )
    t = Setup(other)
    before = snapshot(t)
    with pytest.raises(ValueError) as info:
        t.load(path)
    message = str(info.value)
    assert "missing from the checkpoint (2): 5.weight, 5.bias" in message
    assert "in the checkpoint but not the model (1): 4.bias" in message
    assert "0.weight (checkpoint (16, 6), model (32, 6))" in message
    assert "ema:" in message and "Nothing was loaded." in message
    assert states_equal(before, snapshot(t))


def test_optimizer_layout_or_kind_mismatch_loads_nothing(tmp_path: Path) -> None:
    s = Setup()
    s.train(batches(2))
    path = s.save(tmp_path / "c.pt")
    model = copy.deepcopy(s.model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)  # one group, not two
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="2 param groups saved, the optimizer has 1"):
        load_checkpoint(path, model=model, optimizer=opt)
    sgd = optiwise.create_optimizer("sgd", model, lr=0.1)
    with pytest.raises(ValueError, match="optimizer: saved from a AdamW, loading into a SGD"):
        load_checkpoint(path, model=model, optimizer=sgd)
    assert not opt.state and not sgd.state and sgd.param_groups[0]["lr"] == 0.1
    assert states_equal(before, model.state_dict())


def test_other_scheduler_kind_and_absent_parts_are_refused(tmp_path: Path) -> None:
    s = Setup()
    path = save_checkpoint(
        tmp_path / "c.pt", model=s.model, optimizer=s.optimizer, scheduler=s.scheduler
    )
    step = torch.optim.lr_scheduler.StepLR(s.optimizer, 5)
    with pytest.raises(ValueError, match="another kind of scheduler"):
        load_checkpoint(path, model=s.model, scheduler=step)
    with pytest.raises(ValueError, match="no state for scaler, ema, stepper"):
        s.load(path)  # the stepper brings its scaler and EMA model


def test_a_failing_component_rolls_back_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Setup()
    s.train(batches(2))
    path = s.save(tmp_path / "c.pt")
    t = Setup()
    before = snapshot(t)

    def broken(state: Any) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(t.stepper, "load_state_dict", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        t.load(path)
    monkeypatch.undo()
    assert states_equal(before, snapshot(t))


def test_stepper_mid_window_or_evaluating_cannot_be_saved(tmp_path: Path) -> None:
    s = Setup()
    x, y = batches(1)[0]
    s.stepper.backward(F.cross_entropy(s.model(x), y))
    with pytest.raises(RuntimeError, match="accumulated"):
        s.save(tmp_path / "c.pt")
    s.stepper.flush()
    with s.stepper.evaluate(), pytest.raises(RuntimeError, match="evaluate"):
        s.save(tmp_path / "c.pt")
    assert not (tmp_path / "c.pt").exists()
    other = Setup()
    with pytest.raises(ValueError, match="not the stepper's own scaler"):
        save_checkpoint(
            tmp_path / "c.pt", model=s.model, stepper=s.stepper, scaler=other.stepper.scaler
        )


def test_unreadable_files_give_clear_errors(tmp_path: Path) -> None:
    model = mlp()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "none.pt", model=model)
    good = save_checkpoint(tmp_path / "good.pt", model=model)
    data = good.read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_checkpoint(tmp_path / "half.pt", model=model)
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    with pytest.raises(ValueError, match="not an optiwise checkpoint"):
        read_checkpoint(tmp_path / "bare.pt")
    payload = torch.load(good, weights_only=True)
    payload["version"] = 99
    torch.save(payload, tmp_path / "new.pt")
    with pytest.raises(ValueError, match="version 99"):
        read_checkpoint(tmp_path / "new.pt")


def test_model_only_load_and_rng_choice(tmp_path: Path) -> None:
    model = mlp()
    torch.manual_seed(7)
    path = save_checkpoint(tmp_path / "c.pt", model=model)
    after_save = torch.rand(2)
    fresh = mlp()
    torch.manual_seed(8)
    assert load_checkpoint(path, model=fresh, rng=False) == {}
    assert torch.equal(torch.rand(2), torch.manual_seed(8) and torch.rand(2))  # left alone
    assert states_equal(model.state_dict(), fresh.state_dict())
    load_checkpoint(path, model=fresh)
    assert torch.equal(torch.rand(2), after_save)  # restored to the moment of the save


class SlowFast(torch.optim.Optimizer):
    """Test double of a Lookahead-style wrapper: an Optimizer subclass sharing the inner
    optimizer's param-group dicts, with its own state (slow weights) and a state dict that
    nests the inner one. Every ``k`` steps the slow weights move ``alpha`` of the way to the
    fast ones and the fast ones are reset to them."""

    def __init__(self, inner: torch.optim.Optimizer, k: int = 2, alpha: float = 0.5) -> None:
        super().__init__(inner.param_groups, {**inner.defaults, "k": k, "alpha": alpha})
        self.inner = inner

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:
        self.inner.step()
        for group in self.param_groups:
            for p in group["params"]:
                st = self.state[p]
                if "slow" not in st:
                    st["slow"], st["count"] = p.clone(), torch.zeros(())
                st["count"] += 1
                if int(st["count"]) % group["k"] == 0:
                    st["slow"].lerp_(p, group["alpha"])
                    p.copy_(st["slow"])

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "inner": self.inner.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        outer = {k: v for k, v in state_dict.items() if k != "inner"}
        self.inner.load_state_dict(state_dict["inner"])
        super().load_state_dict(outer)
        # torch's load builds new group dicts: share the inner ones again, so a scheduler
        # on the inner optimizer keeps driving both.
        self.param_groups = self.inner.param_groups


def test_wrapper_optimizer_steps_and_resumes_exactly(tmp_path: Path) -> None:
    data = batches(8)

    def build(model: nn.Module) -> tuple[SlowFast, Any, Stepper]:
        inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
        sched = torch.optim.lr_scheduler.StepLR(inner, step_size=2, gamma=0.5)  # on the inner
        opt = SlowFast(inner)
        return opt, sched, Stepper(opt, sched, model=model, accumulation=2)

    model = mlp(norm=False)
    twin = copy.deepcopy(model)
    opt, sched, stepper = build(model)

    def train(m: nn.Module, st: Stepper, part: list[Batch]) -> None:
        for x, y in part:
            st.backward(F.cross_entropy(m(x), y))

    train(model, stepper, data[:4])
    path = save_checkpoint(
        tmp_path / "c.pt", model=model, optimizer=opt, scheduler=sched, stepper=stepper
    )
    train(model, stepper, data[4:])
    assert sched.last_epoch == 4 and opt.inner.param_groups[0]["lr"] == 2.5e-3

    opt2, sched2, stepper2 = build(twin)
    load_checkpoint(path, model=twin, optimizer=opt2, scheduler=sched2, stepper=stepper2)
    assert opt2.inner.state and opt2.state  # both levels restored
    train(twin, stepper2, data[4:])
    assert states_equal(model.state_dict(), twin.state_dict())
    assert states_equal(opt.state_dict(), opt2.state_dict())


@pytest.mark.parametrize("inner", ["adamw", "schedule_free_adamw"])
def test_lookahead_from_the_registry_resumes_exactly(tmp_path: Path, inner: str) -> None:
    data = batches(8)

    def build(model: nn.Module) -> tuple[Any, Any, Stepper]:
        opt = create_optimizer(f"lookahead_{inner}", model, lr=1e-2, k=3)
        sched = create_scheduler("warmup_cosine", opt, total_steps=4, warmup=1)
        return opt, sched, Stepper(opt, sched, model=model, accumulation=2)

    def train(m: nn.Module, st: Stepper, part: list[Batch]) -> None:
        for x, y in part:
            st.backward(F.cross_entropy(m(x), y))

    model = mlp(norm=False)
    twin = copy.deepcopy(model)
    opt, sched, stepper = build(model)
    train(model, stepper, data[:4])
    path = save_checkpoint(
        tmp_path / "c.pt", model=model, optimizer=opt, scheduler=sched, stepper=stepper
    )
    train(model, stepper, data[4:])

    opt2, sched2, stepper2 = build(twin)
    load_checkpoint(path, model=twin, optimizer=opt2, scheduler=sched2, stepper=stepper2)
    train(twin, stepper2, data[4:])
    assert states_equal(model.state_dict(), twin.state_dict())
    assert states_equal(opt.state_dict(), opt2.state_dict())
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_empty_random_and_object_files_each_get_their_own_error(tmp_path: Path) -> None:
    model = mlp()
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty \(0 bytes\)"):
        load_checkpoint(tmp_path / "empty.pt", model=model)
    (tmp_path / "noise.pt").write_bytes(random.Random(0).randbytes(4096))
    with pytest.raises(ValueError, match="not a torch checkpoint") as info:
        read_checkpoint(tmp_path / "noise.pt")
    assert "Python objects" not in str(info.value) and "4096 bytes" in str(info.value)
    (tmp_path / "text.pt").write_text("epoch: 3\n")
    with pytest.raises(ValueError, match="not a complete torch checkpoint"):
        read_checkpoint(tmp_path / "text.pt")
    torch.save({"obj": Unsafe(str(tmp_path / "marker"))}, tmp_path / "o.pt")
    with pytest.raises(ValueError, match=r"Python objects .*\(Unsupported global: GLOBAL "):
        read_checkpoint(tmp_path / "o.pt")
    assert not (tmp_path / "marker").exists()


def test_checkpoint_file_mode_follows_the_umask_and_an_existing_file(tmp_path: Path) -> None:
    model = mlp()
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "a.pt", model=model)
        assert path.stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert save_checkpoint(tmp_path / "b.pt", model=model).stat().st_mode & 0o777 == 0o600
        path.chmod(0o640)
        save_checkpoint(path, model=model)  # overwriting keeps the file's mode
        assert path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
