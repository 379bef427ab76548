from __future__ import annotations

import math

import pytest
import torch

from optiwise import knowledge
from optiwise.bench import data, get_workload, list_workloads
from optiwise.bench.toys import TOY_FUNCTIONS, Point, beale, quadratic, rosenbrock
from optiwise.bench.workloads import WORKLOADS, Target

_SOURCES = {s.name: s.available for s in data.data_sources()}
_LIMITS = {"shakespeare-char-gpt": 1000, "shakespeare-char-lstm": 1000}


def _available(name: str) -> bool:
    w = WORKLOADS[name]
    return not w.data or any(_SOURCES[d] for d in w.data)


def test_the_issue_s_workloads_are_registered() -> None:
    assert set(list_workloads()) == {
        "toy-rosenbrock",
        "toy-beale",
        "toy-ill-conditioned",
        "toy-noisy-quadratic",
        "fmnist-mlp",
        "fmnist-cnn",
        "shakespeare-char-gpt",
        "shakespeare-char-lstm",
        "digits-mlp",
        "diabetes-mlp",
    }
    for w in WORKLOADS.values():
        knowledge.check_task(w.task)
        assert w.budget >= 1 and w.eval_every >= 1


def test_unknown_workload_suggests_a_name() -> None:
    with pytest.raises(ValueError, match="did you mean 'digits-mlp'"):
        get_workload("digit-mlp")
    assert get_workload(" Digits-MLP ").name == "digits-mlp"


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_workload_builds_trains_and_evaluates(name: str) -> None:
    if not _available(name):
        pytest.skip(f"no data source installed for {name}")
    w = get_workload(name)
    limit = _LIMITS.get(name, 128) if w.data else None
    problem = w.build(0, limit)
    batch = problem.next_batch()
    loss = problem.loss(problem.model, batch)
    assert loss.ndim == 0 and math.isfinite(loss.item())
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in problem.model.parameters())
    problem.model.eval()
    values = problem.evaluate(problem.model)
    assert set(values) == {"val_loss", w.metric} and all(math.isfinite(v) for v in values.values())
    assert problem.data_source and problem.data_name
    if name.startswith("fmnist"):
        assert problem.data_name == data.load_image_data(train_limit=8, val_limit=8).name


def test_same_seed_same_model_and_batches_other_seed_differs() -> None:
    w = get_workload("digits-mlp")
    a, b, c = w.build(3, 200), w.build(3, 200), w.build(4, 200)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert all(torch.equal(x, y) for x, y in zip(a.next_batch(), b.next_batch(), strict=True))
    assert not torch.equal(next(a.model.parameters()), next(c.model.parameters()))
    assert not torch.equal(a.next_batch()[1], c.next_batch()[1])


def test_batches_cover_each_epoch_once() -> None:
    w = get_workload("digits-mlp")
    problem = w.build(0, limit=128)  # two batches of 64 per epoch
    seen = torch.cat([problem.next_batch()[0] for _ in range(2)])
    dataset = data.load_digits(train_limit=128)
    assert len({tuple(r) for r in seen.numpy().round(5).tolist()}) == len(
        {tuple(r) for r in dataset.x_train.numpy().round(5).tolist()}
    )


def test_accuracy_and_loss_of_the_classification_evaluation() -> None:
    w = get_workload("digits-mlp")
    problem = w.build(0, 200)
    dataset = data.load_digits(train_limit=200, val_limit=200)
    assert len(dataset.y_val) == 200
    problem.model.eval()
    values = problem.evaluate(problem.model)
    with torch.no_grad():
        logits = problem.model(dataset.x_val)
    expected_acc = float((logits.argmax(1) == dataset.y_val).float().mean())
    expected_loss = float(torch.nn.functional.cross_entropy(logits, dataset.y_val))
    assert values["accuracy"] == pytest.approx(expected_acc)
    assert values["val_loss"] == pytest.approx(expected_loss, rel=1e-5)


def test_regression_r2_of_the_mean_predictor_is_zero() -> None:
    w = get_workload("diabetes-mlp")
    problem = w.build(0)
    dataset = data.load_diabetes()
    assert len(dataset.y_val) == 88
    mean = float(dataset.y_val.mean())
    values = problem.evaluate(lambda x: torch.full((len(x), 1), mean))  # type: ignore[arg-type]
    assert values["r2"] == pytest.approx(0.0, abs=1e-6)


def test_target_semantics() -> None:
    up = Target("accuracy", 0.9, higher_is_better=True)
    down = Target("loss", 0.01, higher_is_better=False)
    assert up.reached(0.9) and not up.reached(0.89) and not up.reached(math.nan)
    assert down.reached(0.01) and not down.reached(0.02)
    assert up.better(0.95, 0.9) and down.better(0.001, 0.01) and down.better(1.0, math.nan)
    assert not down.better(math.nan, 1.0)
    assert up.describe() == "accuracy >= 0.9"


@pytest.mark.parametrize(
    ("fn", "minimum"), [(rosenbrock, (1.0, 1.0)), (beale, (3.0, 0.5)), (quadratic, (0.0, 0.0))]
)
def test_toy_functions_vanish_with_zero_gradient_at_their_minimum(fn, minimum) -> None:  # type: ignore[no-untyped-def]
    xy = torch.tensor(minimum, dtype=torch.float64, requires_grad=True)
    value = fn(xy[0], xy[1])
    value.backward()
    assert value.item() == pytest.approx(0.0, abs=1e-12)
    assert xy.grad is not None and float(xy.grad.abs().max()) < 1e-10
    assert float(fn(torch.tensor(0.5), torch.tensor(-0.5))) > 0


def test_ill_conditioned_quadratic_has_condition_number_100() -> None:
    hessian = torch.autograd.functional.hessian(
        lambda v: quadratic(v[0], v[1]), torch.zeros(2, dtype=torch.float64)
    )
    eig = torch.linalg.eigvalsh(hessian)
    assert float(eig.max() / eig.min()) == pytest.approx(100.0)
    assert abs(float(hessian[0, 1])) > 0.1  # rotated: not axis-aligned


def test_noisy_quadratic_gradient_is_unbiased_with_curvature_scaled_variance() -> None:
    w = get_workload("toy-noisy-quadratic")
    problem = w.build(0)
    point = problem.model
    assert isinstance(point, Point)
    grads = []
    for _ in range(4000):
        point.zero_grad()
        problem.loss(point, problem.next_batch()).backward()
        assert point.xy.grad is not None
        grads.append(point.xy.grad.clone())
    g = torch.stack(grads)
    x, y = TOY_FUNCTIONS["noisy-quadratic"].start
    true = torch.tensor([1.0 * x, 0.1 * y], dtype=torch.float64)
    assert torch.allclose(g.mean(0), true, atol=0.05)
    assert torch.allclose(g.var(0), torch.tensor([1.0, 0.1], dtype=torch.float64), rtol=0.1)


def test_toys_record_their_position_and_skip_weight_decay() -> None:
    w = get_workload("toy-beale")
    problem = w.build(0)
    assert problem.position is not None and problem.position() == w.toy.start  # type: ignore[union-attr]
    assert dict(w.hparams) == {"weight_decay": 0.0}
    assert problem.sampled_loss is None


def test_bad_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="Invalid limit"):
        get_workload("digits-mlp").build(0, limit=0)


@pytest.mark.parametrize("name", ["digits-mlp", "diabetes-mlp"])
def test_array_problems_expose_criterion_validation_data_and_size(name: str) -> None:
    problem = get_workload(name).build(0, 100)
    assert problem.criterion is not None and problem.val_data is not None
    x, y = problem.next_batch()
    assert torch.equal(problem.loss(problem.model, (x, y)), problem.criterion(problem.model(x), y))
    x_val, y_val = problem.val_data
    problem.model.eval()
    with torch.no_grad():
        val_loss = float(problem.criterion(problem.model(x_val), y_val))
    assert problem.evaluate(problem.model)["val_loss"] == pytest.approx(val_loss, rel=1e-5)
    assert problem.train_size == 100


def test_toys_have_no_array_data() -> None:
    problem = get_workload("toy-beale").build(0)
    assert problem.criterion is None and problem.val_data is None and problem.train_size is None


def test_small_resnet_is_channels_last_and_matches_the_contiguous_model() -> None:
    from optiwise.bench.models import SmallResNet

    torch.manual_seed(0)
    model = SmallResNet(10, width=8).eval()
    assert model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    plain = SmallResNet(10, width=8).eval()
    plain.load_state_dict({k: v.contiguous() for k, v in model.state_dict().items()})
    plain.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x), plain(x), atol=1e-5)
