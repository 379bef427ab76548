"""The benchmark's workloads: a model factory, real data, a loss, a metric, a step budget and
a target each.

A :class:`Workload` is a recipe; :meth:`Workload.build` makes a :class:`Problem` (model
initialized from the seed, a seeded batch stream, the loss, and the evaluation) for one run.
Data sets are loaded once per process and shared by every run.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from optiwise.bench import data as bench_data
from optiwise.bench.models import MLP, CharGPT, CharLSTM, SmallResNet
from optiwise.bench.toys import TOY_FUNCTIONS, Point, ToyFunction

__all__ = ["Problem", "Target", "Workload", "get_workload", "list_workloads"]

Batch = Any


@dataclass(frozen=True)
class Target:
    """The value of ``metric`` that counts as "trained" (reached when ``>=`` for
    higher-is-better metrics, ``<=`` otherwise)."""

    metric: str
    value: float
    higher_is_better: bool

    def reached(self, value: float) -> bool:
        """Whether ``value`` meets the target (never for NaN)."""
        if not math.isfinite(value):
            return False
        return value >= self.value if self.higher_is_better else value <= self.value

    def better(self, a: float, b: float) -> bool:
        """Whether metric value ``a`` is strictly better than ``b`` (NaN is worst)."""
        if not math.isfinite(a):
            return False
        if not math.isfinite(b):
            return True
        return a > b if self.higher_is_better else a < b

    def describe(self) -> str:
        """``accuracy >= 0.9`` style text."""
        return f"{self.metric} {'>=' if self.higher_is_better else '<='} {self.value:g}"


@dataclass
class Problem:
    """One run's instance of a workload.

    Attributes
    ----------
    model:
        The freshly initialized model.
    next_batch:
        Returns the next training batch (a seeded, endless stream).
    loss:
        ``loss(model, batch)``: the training loss (a scalar tensor).
    evaluate:
        ``evaluate(model)``: ``{"val_loss": ..., metric: ...}`` on the validation data,
        computed without gradients (the caller sets eval mode).
    data_source:
        Which data set was used and where it came from.
    data_name:
        The data set's short name (``"fashion-mnist"``, ``"mnist-5k"``, ...): results on
        different data are never mixed.
    sampled_loss:
        For likelihood models: the loss against labels sampled from the model's own
        prediction, whose gradient estimates the Gauss-Newton diagonal (used by optimizers
        with a Hessian-estimate step such as Sophia); ``None`` when the workload has none.
    position:
        Toys only: the current 2-D point, recorded as the trajectory.
    train_size:
        Number of training examples (``None`` for the toys and the text workloads, whose
        batches are drawn at random positions).
    val_data:
        The validation ``(inputs, targets)`` that ``evaluate`` scores, for tools that need
        the batches themselves (the LR range test's confirmation runs); ``None`` for the
        toys.
    criterion:
        ``criterion(outputs, targets)``, the training loss as a function of the model's
        outputs (``loss`` is ``criterion(model(x), y)``), the form :func:`optiwise.find_lr`
        takes; ``None`` for the toys.
    """

    model: nn.Module
    next_batch: Callable[[], Batch]
    loss: Callable[[nn.Module, Batch], Tensor]
    evaluate: Callable[[nn.Module], dict[str, float]]
    data_source: str
    data_name: str
    sampled_loss: Callable[[nn.Module, Batch], Tensor] | None = None
    position: Callable[[], tuple[float, float]] | None = None
    train_size: int | None = None
    val_data: tuple[Tensor, Tensor] | None = None
    criterion: Callable[[Tensor, Tensor], Tensor] | None = None


@dataclass(frozen=True)
class Workload:
    """A benchmark workload.

    Attributes
    ----------
    name:
        Registry name (``fmnist-cnn``).
    description:
        One line: model and data.
    task:
        The :mod:`optiwise.knowledge` task family whose optimizer defaults apply.
    budget:
        Default number of optimizer steps.
    batch_size:
        Examples (or sequences) per step; 0 for the toys.
    eval_every:
        Evaluate every this many steps (and after the last).
    target:
        The metric value a run must reach; steps and wall-clock to it are recorded.
    data:
        Names of the data sources it can use, in order of preference.
    hparams:
        Hyperparameters every optimizer gets on this workload, where it takes them (the toys
        set ``weight_decay=0``: regularization means nothing on a test function).
    toy:
        The test function of a toy workload.
    """

    name: str
    description: str
    task: str
    budget: int
    batch_size: int
    eval_every: int
    target: Target
    data: tuple[str, ...]
    factory: Callable[[Workload, int, int | None], Problem] = field(repr=False)
    hparams: Mapping[str, Any] = field(default_factory=dict)
    toy: ToyFunction | None = None

    @property
    def metric(self) -> str:
        """Name of the validation metric."""
        return self.target.metric

    def build(self, seed: int, limit: int | None = None) -> Problem:
        """A fresh :class:`Problem` for one run.

        Parameters
        ----------
        seed:
            Seeds the model's initialization and the batch order.
        limit:
            Use at most this many examples of each split, training and validation
            (characters for the text workloads), for quick runs; ``None`` uses all.
        """
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise ValueError(f"Invalid limit: {limit!r} (must be a positive int or None)")
        torch.manual_seed(seed)
        return self.factory(self, seed, limit)


# --------------------------------------------------------------------------------------------
# Batch streams
# --------------------------------------------------------------------------------------------


def _epochs(n: int, batch: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Index batches over endless reshuffled epochs (the last partial batch is dropped
    unless the data set is smaller than one batch)."""
    batch = min(batch, n)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch + 1, batch):
            yield order[start : start + batch]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Supervised workloads on arrays (images, digits, tabular)
# --------------------------------------------------------------------------------------------


def _classification_eval(
    x: Tensor, y: Tensor, metric: str, chunk: int = 128
) -> Callable[[nn.Module], dict[str, float]]:
    # Chunks of a training batch's size: a 1000-image chunk of the CNN's activations falls
    # out of the CPU caches and evaluates about 2x slower.
    def evaluate(model: nn.Module) -> dict[str, float]:
        total, correct = 0.0, 0
        with torch.no_grad():
            for i in range(0, len(y), chunk):
                logits = model(x[i : i + chunk])
                total += float(F.cross_entropy(logits, y[i : i + chunk], reduction="sum"))
                correct += int((logits.argmax(1) == y[i : i + chunk]).sum())
        return {"val_loss": total / len(y), metric: correct / len(y)}

    return evaluate


def _regression_eval(x: Tensor, y: Tensor, metric: str) -> Callable[[nn.Module], dict[str, float]]:
    variance = float(((y - y.mean()) ** 2).mean())

    def evaluate(model: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            mse = float(F.mse_loss(model(x).squeeze(-1), y))
        return {"val_loss": mse, metric: 1.0 - mse / variance}

    return evaluate


def _squeezed_mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error of a one-output regression model."""
    return F.mse_loss(outputs.squeeze(-1), targets)


def _sampled_ce(model: nn.Module, batch: Batch) -> Tensor:
    """Cross-entropy against labels drawn from the model's own softmax."""
    x, _ = batch
    logits = model(x)
    flat = logits.reshape(-1, logits.shape[-1])
    with torch.no_grad():
        sampled = torch.multinomial(F.softmax(flat, dim=-1), 1).squeeze(-1)
    return F.cross_entropy(flat, sampled)


def _criterion_loss(
    criterion: Callable[[Tensor, Tensor], Tensor],
) -> Callable[[nn.Module, Batch], Tensor]:
    """``loss(model, (x, y)) = criterion(model(x), y)``."""

    def loss(m: nn.Module, batch: Batch) -> Tensor:
        return criterion(m(batch[0]), batch[1])

    return loss


def _array_problem(
    work: Workload, seed: int, dataset: bench_data.ArrayData, model: nn.Module
) -> Problem:
    gen = _generator(seed)
    stream = _epochs(len(dataset.y_train), work.batch_size, gen)
    x_tr, y_tr = dataset.x_train, dataset.y_train

    def next_batch() -> Batch:
        idx = next(stream)
        return x_tr[idx], y_tr[idx]

    criterion: Callable[[Tensor, Tensor], Tensor]
    if dataset.classes:
        criterion = F.cross_entropy
        evaluate = _classification_eval(dataset.x_val, dataset.y_val, work.metric)
        sampled: Callable[[nn.Module, Batch], Tensor] | None = _sampled_ce
    else:
        criterion = _squeezed_mse
        evaluate = _regression_eval(dataset.x_val, dataset.y_val, work.metric)
        sampled = None

    loss = _criterion_loss(criterion)

    return Problem(
        model,
        next_batch,
        loss,
        evaluate,
        dataset.source,
        dataset.name,
        sampled_loss=sampled,
        train_size=len(y_tr),
        val_data=(dataset.x_val, dataset.y_val),
        criterion=criterion,
    )


@functools.lru_cache(maxsize=4)
def _image_data(limit: int | None) -> bench_data.ArrayData:
    # Validation: the first 5000 test images (balanced enough, and half the evaluation cost).
    return bench_data.load_image_data(train_limit=limit, val_limit=min(limit or 5000, 5000))


def _fmnist_mlp(work: Workload, seed: int, limit: int | None) -> Problem:
    dataset = _image_data(limit)
    return _array_problem(work, seed, dataset, MLP(784, (256, 128), dataset.classes))


def _fmnist_cnn(work: Workload, seed: int, limit: int | None) -> Problem:
    dataset = _image_data(limit)
    return _array_problem(work, seed, dataset, SmallResNet(dataset.classes, width=16))


@functools.lru_cache(maxsize=4)
def _digits(limit: int | None) -> bench_data.ArrayData:
    return bench_data.load_digits(train_limit=limit, val_limit=limit)


def _digits_mlp(work: Workload, seed: int, limit: int | None) -> Problem:
    dataset = _digits(limit)
    return _array_problem(work, seed, dataset, MLP(64, (64,), dataset.classes))


@functools.lru_cache(maxsize=4)
def _diabetes(limit: int | None) -> bench_data.ArrayData:
    return bench_data.load_diabetes(train_limit=limit, val_limit=limit)


def _diabetes_mlp(work: Workload, seed: int, limit: int | None) -> Problem:
    dataset = _diabetes(limit)
    return _array_problem(work, seed, dataset, MLP(10, (64, 64), 1))


# --------------------------------------------------------------------------------------------
# Character-level language models on Shakespeare
# --------------------------------------------------------------------------------------------

_CONTEXT = 64
_VAL_WINDOWS = 256


@functools.lru_cache(maxsize=2)
def _shakespeare(limit: int | None) -> bench_data.TextData:
    return bench_data.load_shakespeare(limit_chars=limit)


def _char_problem(
    work: Workload, seed: int, text: bench_data.TextData, model: nn.Module
) -> Problem:
    gen = _generator(seed)
    train, val = text.train, text.val
    if len(train) <= _CONTEXT + 1 or len(val) <= _CONTEXT + 1:
        raise ValueError(f"{work.name}: the corpus is shorter than one context of {_CONTEXT}")
    offsets = torch.arange(_CONTEXT)

    def windows(tokens: Tensor, starts: Tensor) -> Batch:
        idx = starts[:, None] + offsets
        return tokens[idx], tokens[idx + 1]

    def next_batch() -> Batch:
        starts = torch.randint(0, len(train) - _CONTEXT - 1, (work.batch_size,), generator=gen)
        return windows(train, starts)

    def criterion(logits: Tensor, targets: Tensor) -> Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    loss = _criterion_loss(criterion)

    # A fixed set of evenly spaced validation windows: every run sees the same ones.
    count = min(_VAL_WINDOWS, max(1, len(val) // _CONTEXT))
    val_x, val_y = windows(val, torch.linspace(0, len(val) - _CONTEXT - 2, count).long())

    def evaluate(m: nn.Module) -> dict[str, float]:
        total = 0.0
        with torch.no_grad():
            for i in range(0, count, 64):
                chunk = (val_x[i : i + 64], val_y[i : i + 64])
                total += float(loss(m, chunk)) * len(chunk[0])
        nats = total / count
        return {"val_loss": nats, work.metric: nats / math.log(2)}

    return Problem(
        model,
        next_batch,
        loss,
        evaluate,
        text.source,
        text.name,
        sampled_loss=_sampled_ce,
        criterion=criterion,
        val_data=(val_x, val_y),
    )


def _char_gpt(work: Workload, seed: int, limit: int | None) -> Problem:
    text = _shakespeare(limit)
    model = CharGPT(len(text.vocab), context=_CONTEXT, dim=128, layers=4, heads=4)
    return _char_problem(work, seed, text, model)


def _char_lstm(work: Workload, seed: int, limit: int | None) -> Problem:
    text = _shakespeare(limit)
    return _char_problem(work, seed, text, CharLSTM(len(text.vocab), dim=64, hidden=256))


# --------------------------------------------------------------------------------------------
# Toys
# --------------------------------------------------------------------------------------------


def _toy_problem(work: Workload, seed: int, limit: int | None) -> Problem:
    toy = work.toy
    assert toy is not None
    point = Point(toy)
    gen = _generator(seed)
    scale = torch.tensor(toy.noise_curvature, dtype=torch.float64).sqrt() * toy.noise

    def next_batch() -> Batch:
        if toy.noise == 0:
            return None
        return torch.randn(2, generator=gen, dtype=torch.float64) * scale

    def loss(m: nn.Module, noise: Batch) -> Tensor:
        value = m()
        if noise is not None:
            # d/dxy (xi . xy) = xi: the gradient gets the sampled noise added.
            value = value + (noise * point.xy).sum()
        return value

    def evaluate(m: nn.Module) -> dict[str, float]:
        with torch.no_grad():
            value = float(m())
        return {"val_loss": value, work.metric: value}

    def position() -> tuple[float, float]:
        x, y = point.xy.detach().tolist()
        return float(x), float(y)

    return Problem(
        point, next_batch, loss, evaluate, f"2-D {toy.name} function", toy.name, position=position
    )


# --------------------------------------------------------------------------------------------
# The registry
# --------------------------------------------------------------------------------------------

_TOY_HPARAMS = MappingProxyType({"weight_decay": 0.0})
_TOY_TARGET = Target("loss", 0.01, higher_is_better=False)


def _toy(name: str, budget: int, description: str) -> Workload:
    return Workload(
        name=f"toy-{name}",
        description=description,
        task="general",
        budget=budget,
        batch_size=0,
        eval_every=1,
        target=_TOY_TARGET,
        data=(),
        factory=_toy_problem,
        hparams=_TOY_HPARAMS,
        toy=TOY_FUNCTIONS[name],
    )


_WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        _toy("rosenbrock", 1000, "Rosenbrock's curved valley from (-1.2, 1)"),
        _toy("beale", 1000, "Beale's function from (1, 1.5): plateaus and steep ridges"),
        _toy("ill-conditioned", 500, "rotated quadratic, condition number 100, from (-3, 2)"),
        _toy("noisy-quadratic", 500, "quadratic with curvature-scaled gradient noise"),
        Workload(
            name="digits-mlp",
            description="MLP 64-64-10 on scikit-learn's 8x8 digits (tiny; for tests)",
            task="tabular_mlp",
            budget=300,
            batch_size=64,
            eval_every=10,
            target=Target("accuracy", 0.97, higher_is_better=True),
            data=("scikit-learn",),
            factory=_digits_mlp,
        ),
        Workload(
            name="diabetes-mlp",
            description="MLP 10-64-64-1 regression on scikit-learn's diabetes (tabular)",
            task="tabular_mlp",
            budget=400,
            batch_size=32,
            eval_every=20,
            target=Target("r2", 0.48, higher_is_better=True),
            data=("scikit-learn",),
            factory=_diabetes_mlp,
        ),
        Workload(
            name="fmnist-mlp",
            description="MLP 784-256-128-10 on Fashion-MNIST (fallback: MNIST-5k)",
            task="tabular_mlp",
            budget=2000,
            batch_size=128,
            eval_every=100,
            target=Target("accuracy", 0.88, higher_is_better=True),
            data=("fashion-mnist", "mnist-5k"),
            factory=_fmnist_mlp,
        ),
        Workload(
            name="fmnist-cnn",
            description="ResNet-style CNN with BatchNorm on Fashion-MNIST (fallback: MNIST-5k)",
            task="vision_cnn",
            budget=1500,
            batch_size=128,
            eval_every=100,
            target=Target("accuracy", 0.9, higher_is_better=True),
            data=("fashion-mnist", "mnist-5k"),
            factory=_fmnist_cnn,
        ),
        Workload(
            name="shakespeare-char-gpt",
            description="GPT-style transformer (4 layers, 128 wide) on 38 Shakespeare plays",
            task="language_transformer",
            budget=1500,
            batch_size=32,
            eval_every=100,
            target=Target("bits_per_char", 2.6, higher_is_better=False),
            data=("shakespeare",),
            factory=_char_gpt,
        ),
        Workload(
            name="shakespeare-char-lstm",
            description="2-layer LSTM (256 hidden) on 38 Shakespeare plays",
            task="rnn",
            budget=1500,
            batch_size=32,
            eval_every=100,
            target=Target("bits_per_char", 2.35, higher_is_better=False),
            data=("shakespeare",),
            factory=_char_lstm,
        ),
    )
}
WORKLOADS: Mapping[str, Workload] = MappingProxyType(_WORKLOADS)


def list_workloads() -> list[str]:
    """Names of every workload, sorted."""
    return sorted(_WORKLOADS)


def get_workload(name: str) -> Workload:
    """The workload called ``name``; a ValueError lists the known ones otherwise."""
    try:
        return _WORKLOADS[name.strip().lower()]
    except KeyError:
        from optiwise.knowledge import _unknown

        raise _unknown("workload", name, list(_WORKLOADS)) from None
