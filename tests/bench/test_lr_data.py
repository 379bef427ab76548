"""The benchmark workloads as LR range test data sources."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import optiwise.bench  # noqa: F401  (registers the workloads)
from optiwise.bench import data, get_workload, workload_source
from optiwise.bench.workloads import WORKLOADS
from optiwise.lr_finder import DATA_SOURCES, find_lr

_SOURCES = {s.name: s.available for s in data.data_sources()}
_REAL = sorted(n for n, w in WORKLOADS.items() if w.data)
_LIMITS = {"shakespeare-char-gpt": 1000, "shakespeare-char-lstm": 1000}


def _skip_without_data(name: str) -> None:
    if not any(_SOURCES[d] for d in WORKLOADS[name].data):
        pytest.skip(f"no data source installed for {name}")


def test_every_workload_with_data_is_a_registered_source() -> None:
    assert set(_REAL) <= set(DATA_SOURCES)
    assert not any(name.startswith("toy-") for name in DATA_SOURCES)
    assert "synthetic" in DATA_SOURCES
    with pytest.raises(ValueError, match="has no data set"):
        workload_source("toy-beale")


@pytest.mark.parametrize("name", _REAL)
def test_criterion_and_val_data_match_the_workload(name: str) -> None:
    _skip_without_data(name)
    w = get_workload(name)
    problem = w.build(0, _LIMITS.get(name, 128))
    assert problem.criterion is not None and problem.val_data is not None
    batch = problem.next_batch()
    with torch.no_grad():
        loss = problem.loss(problem.model, batch)
        assert float(problem.criterion(problem.model(batch[0]), batch[1])) == float(loss)
        # the evaluation's validation loss is the criterion over the whole validation split
        problem.model.eval()
        x, y = problem.val_data
        expected = float(problem.criterion(problem.model(x), y))
        assert problem.evaluate(problem.model)["val_loss"] == pytest.approx(expected, rel=1e-4)


def test_digits_source_is_the_workloads_seeded_stream_and_model() -> None:
    rng = torch.get_rng_state()
    src = workload_source("digits-mlp", seed=3, batches=5, val_limit=120)
    assert torch.equal(torch.get_rng_state(), rng)
    problem = get_workload("digits-mlp").build(3)
    expected = [problem.next_batch() for _ in range(5)]
    assert len(list(src.train)) == 5
    for (x, y), (ex, ey) in zip(src.train, expected, strict=True):
        assert torch.equal(x, ex) and torch.equal(y, ey)
    assert src.model is not None
    for p, q in zip(src.model.parameters(), problem.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert problem.val_data is not None
    val = list(src.val or [])
    assert sum(len(y) for _, y in val) == 120
    assert torch.equal(torch.cat([x for x, _ in val]), problem.val_data[0][:120])
    assert src.task == "tabular_mlp" and "digits-mlp" in src.description
    assert "5 batches of 64" in src.description and "120 validation examples" in src.description
    x, y = expected[0]
    with torch.no_grad():
        loss = float(problem.loss(problem.model, (x, y)))
        assert float(src.loss_fn(problem.model(x), y)) == loss


def test_a_given_model_is_used_and_checked_without_changing_it() -> None:
    model = nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    src = workload_source("digits-mlp", model, batches=2)
    assert src.model is model and model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())

    wrong = nn.Sequential(nn.Linear(10, 4), nn.BatchNorm1d(4))
    state = {k: v.clone() for k, v in wrong.state_dict().items()}
    with pytest.raises(ValueError, match=r"does not fit digits-mlp's batches \(inputs \(64, 64\)"):
        workload_source("digits-mlp", wrong)
    assert wrong.training
    assert all(torch.equal(v, state[k]) for k, v in wrong.state_dict().items())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batches": 0}, "Invalid batches: 0"),
        ({"val_limit": -1}, "Invalid val_limit: -1"),
        ({"seed": "1"}, "Invalid seed: '1'"),
        ({"limit": 0}, "Invalid limit: 0"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        workload_source("digits-mlp", **kwargs)  # type: ignore[arg-type]


def test_find_lr_runs_on_a_char_model_source() -> None:
    _skip_without_data("shakespeare-char-lstm")
    src = DATA_SOURCES["shakespeare-char-lstm"](None, batches=4, val_limit=8, limit=2000)
    assert src.model is not None and src.task == "rnn"
    r = find_lr(
        src.model,
        src.loss_fn,
        src.train,
        "adamw",
        num_steps=10,
        val_data=src.val,
        task=src.task,
        confirm=1,
        confirm_steps=2,
    )
    assert len(r.lrs) == 10 and all(math.isfinite(v) for v in r.losses)
    # a fresh character model starts near the loss of a uniform guess over the vocabulary
    vocab = src.model.head.out_features
    assert isinstance(vocab, int) and vocab > 40
    assert r.losses[0] == pytest.approx(math.log(vocab), rel=0.2)
    assert r.score == "val_loss" and len(r.confirmations) == 1
