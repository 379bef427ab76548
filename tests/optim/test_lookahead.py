"""Lookahead: against the paper's pseudo-code and the published implementations, pass-through
to the inner optimizer (param groups, schedulers, train/eval), state_dict, the registry's
``lookahead_`` prefix and bad input."""

from __future__ import annotations

import copy
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.optim import lr_scheduler as tls

import optiwise
from optiwise import knowledge
from optiwise.optim import AdamW8bit, Lookahead, RegistryEntry, register_optimizer
from optiwise.optim import registry as registry_module
from optiwise.optim.registry import canonical_name, get_entry
from tests.optim.demo_optimizer import DemoMomentum
from tests.optim.harness import (
    assert_params_close,
    fitting_model,
    fitting_step,
    random_batch,
    run_optimizer,
    run_reference,
    small_mlp,
    train_digits,
)


def lookahead_reference(
    inner_step: Callable[[Tensor, Tensor, dict[str, Any], int], None], k: int, alpha: float
) -> Callable[..., None]:
    """Zhang et al. 2019, Algorithm 1: phi_0 = theta_0; k inner steps; then
    phi <- phi + alpha (theta - phi), theta <- phi."""

    def step(params: list[Tensor], grads: list[Tensor], state: dict[int, dict], t: int) -> None:
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            s = state[i]
            if t == 1:
                s["slow"] = p.clone()
            inner_step(p, g, s, t)
            if t % k == 0:
                s["slow"] += alpha * (p - s["slow"])
                p.copy_(s["slow"])

    return step


def adamw_step(p: Tensor, g: Tensor, s: dict[str, Any], t: int) -> None:
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.999, 1e-8, 0.01
    s["m"] = b1 * s.get("m", torch.zeros_like(p)) + (1 - b1) * g
    s["v"] = b2 * s.get("v", torch.zeros_like(p)) + (1 - b2) * g * g
    p.mul_(1 - lr * wd).sub_(lr * (s["m"] / (1 - b1**t)) / ((s["v"] / (1 - b2**t)).sqrt() + eps))


def momentum_step(p: Tensor, g: Tensor, s: dict[str, Any], t: int) -> None:
    s["b"] = 0.9 * s["b"] + g if "b" in s else g.clone()
    p.sub_(0.05 * s["b"])


@pytest.mark.parametrize(("k", "alpha"), [(5, 0.5), (1, 0.3), (3, 1.0), (7, 0.8)])
def test_matches_the_paper_around_adamw(k: int, alpha: float) -> None:
    got = run_optimizer(lambda ps: Lookahead(torch.optim.AdamW(ps, lr=1e-2), k=k, alpha=alpha))
    assert_params_close(got, run_reference(lookahead_reference(adamw_step, k, alpha)))


@pytest.mark.parametrize("foreach", [False, True])
def test_matches_the_paper_around_momentum_sgd(foreach: bool) -> None:
    got = run_optimizer(
        lambda ps: Lookahead(torch.optim.SGD(ps, lr=0.05, momentum=0.9), k=4, alpha=0.6,
                             foreach=foreach)
    )  # fmt: skip
    assert_params_close(got, run_reference(lookahead_reference(momentum_step, 4, 0.6)))


def test_alpha_one_is_the_inner_optimizer() -> None:
    inner = run_optimizer(lambda ps: torch.optim.AdamW(ps, lr=1e-2))
    wrapped = run_optimizer(lambda ps: Lookahead(torch.optim.AdamW(ps, lr=1e-2), k=3, alpha=1.0))
    assert all(torch.equal(a, b) for a, b in zip(inner, wrapped, strict=True))


def test_matches_pytorch_optimizer_lookahead() -> None:
    po = pytest.importorskip("pytorch_optimizer", reason="pytorch_optimizer is not installed")
    ours = run_optimizer(lambda ps: Lookahead(torch.optim.AdamW(ps, lr=1e-2), k=5, alpha=0.5))
    theirs = run_optimizer(lambda ps: po.Lookahead(torch.optim.AdamW(ps, lr=1e-2), k=5, alpha=0.5))
    assert_params_close(ours, theirs)


def test_torch_optimizer_lookahead_is_ours_started_one_step_late() -> None:
    """torch-optimizer (0.3.0) takes the slow weights after the first inner step and syncs
    at steps 1, k+1, 2k+1, ...; the paper (and we) take them before it and sync at k, 2k.
    So theirs equals one plain inner step followed by our Lookahead."""
    topt = pytest.importorskip("torch_optimizer", reason="torch-optimizer is not installed")

    def run(wrap: Callable[[torch.optim.Optimizer], torch.optim.Optimizer], late: bool) -> list:
        model = small_mlp()
        inner = torch.optim.AdamW(model.parameters(), lr=1e-2)
        opt: torch.optim.Optimizer = inner if late else wrap(inner)
        for t in range(60):
            opt.zero_grad()
            x, y = random_batch(t)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            if late and t == 0:
                opt = wrap(inner)
        return [p.detach().clone() for p in model.parameters()]

    theirs = run(lambda o: topt.Lookahead(o, k=5, alpha=0.5), late=False)
    ours_late = run(lambda o: Lookahead(o, k=5, alpha=0.5), late=True)
    ours = run(lambda o: Lookahead(o, k=5, alpha=0.5), late=False)
    assert_params_close(ours_late, theirs)
    assert max((a - b).abs().max().item() for a, b in zip(ours, theirs, strict=True)) > 1e-4


def test_trains_at_the_knowledge_default() -> None:
    # lookahead_adamw: AdamW lr 1e-3, k 5, alpha 0.5. Measured 0.30 after 300 steps from 2.33
    # (AdamW alone: 0.11; the slow weights halve the progress of each k-step cycle).
    loss = train_digits(lambda ps: optiwise.create_optimizer("lookahead_adamw", ps), steps=300)
    assert loss < 0.35


# --------------------------------------------------------------------------------------------
# Pass-through
# --------------------------------------------------------------------------------------------


def test_param_groups_are_the_inner_list_and_add_param_group_passes_through() -> None:
    model = small_mlp()
    inner = torch.optim.SGD(model.parameters(), lr=0.1)
    la = Lookahead(inner, k=2, alpha=0.5)
    assert la.param_groups is inner.param_groups
    assert la.defaults["lr"] == 0.1 and la.defaults["k"] == 2
    extra = nn.Parameter(torch.ones(3))
    la.add_param_group({"params": [extra], "lr": 0.5})
    assert len(inner.param_groups) == 2 and la.param_groups is inner.param_groups
    start = extra.detach().clone()
    for _ in range(2):
        la.zero_grad()
        extra.grad = torch.ones(3)
        la.step()
    # two SGD steps of 0.5, then the sync halfway back to the start
    assert torch.equal(la.state[extra]["slow_param"], start - 0.5)
    assert torch.equal(extra.detach(), start - 0.5)


def test_zero_grad_passes_through() -> None:
    p = nn.Parameter(torch.ones(2))
    calls = []

    class Recording(torch.optim.SGD):
        def zero_grad(self, set_to_none: bool = True) -> None:
            calls.append(set_to_none)
            super().zero_grad(set_to_none)

    la = Lookahead(Recording([p], lr=0.1))
    p.grad = torch.ones(2)
    la.zero_grad(set_to_none=False)
    assert calls == [False] and torch.equal(p.grad, torch.zeros(2))
    la.zero_grad()
    assert calls == [False, True] and p.grad is None


class ModeSGD(torch.optim.SGD):
    """An inner optimizer with train()/eval(), as schedule-free optimizers have."""

    mode = "train"

    def train(self) -> None:
        self.mode = "train"

    def eval(self) -> None:
        self.mode = "eval"


def test_train_eval_and_other_attributes_pass_through() -> None:
    inner = ModeSGD([nn.Parameter(torch.ones(2))], lr=0.1)
    la = Lookahead(inner)
    la.eval()
    assert inner.mode == "eval" and la.mode == "eval"
    la.train()
    assert inner.mode == "train"
    plain = Lookahead(torch.optim.AdamW([nn.Parameter(torch.ones(2))]))
    assert not hasattr(plain, "train") and not hasattr(plain, "eval")
    with pytest.raises(AttributeError, match="'Lookahead' object has no attribute 'train'"):
        plain.train()
    with pytest.raises(AttributeError):
        plain._private_thing  # noqa: B018 - private names never go to the inner optimizer


def _lrs(opt: torch.optim.Optimizer) -> list[float]:
    return [float(g["lr"]) for g in opt.param_groups]


SCHEDULERS: dict[str, Callable[[torch.optim.Optimizer], Any]] = {
    "step": lambda o: tls.StepLR(o, step_size=3, gamma=0.5),
    "multistep": lambda o: tls.MultiStepLR(o, milestones=[2, 5], gamma=0.3),
    "exponential": lambda o: tls.ExponentialLR(o, gamma=0.9),
    "cosine": lambda o: tls.CosineAnnealingLR(o, T_max=10),
    "cosine_restarts": lambda o: tls.CosineAnnealingWarmRestarts(o, T_0=4),
    "onecycle": lambda o: tls.OneCycleLR(o, max_lr=0.05, total_steps=12),
    "cyclic": lambda o: tls.CyclicLR(o, base_lr=1e-3, max_lr=1e-2, step_size_up=3),
    "lambda": lambda o: tls.LambdaLR(o, lambda t: 1 / (t + 1)),
    "linear": lambda o: tls.LinearLR(o, start_factor=0.1, total_iters=5),
    "polynomial": lambda o: tls.PolynomialLR(o, total_iters=10, power=2.0),
    "sequential": lambda o: tls.SequentialLR(
        o, [tls.LinearLR(o, 0.1, total_iters=3), tls.CosineAnnealingLR(o, T_max=9)], [3]
    ),
    "chained": lambda o: tls.ChainedScheduler(
        [tls.ExponentialLR(o, gamma=0.9), tls.StepLR(o, step_size=4, gamma=0.5)]
    ),
    "optiwise_warmup_cosine": lambda o: optiwise.create_scheduler(
        "warmup_cosine", o, total_steps=12, warmup=3, min_lr_ratio=0.1
    ),
    "optiwise_wsd": lambda o: optiwise.create_scheduler("wsd", o, total_steps=12, warmup=2),
    "optiwise_inverse_sqrt": lambda o: optiwise.create_scheduler("inverse_sqrt", o, warmup=3),
    "optiwise_onecycle": lambda o: optiwise.create_scheduler("onecycle", o, total_steps=12),
}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_schedulers_on_the_lookahead_set_the_inner_lr(name: str) -> None:
    def run(wrap: bool) -> list[list[float]]:
        model = small_mlp()
        inner = torch.optim.AdamW(
            [{"params": model[0].parameters(), "lr": 1e-2}, {"params": model[2].parameters()}],
            lr=3e-3,
        )
        opt: torch.optim.Optimizer = Lookahead(inner, k=3) if wrap else inner
        sched = SCHEDULERS[name](opt)
        seen = []
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
            for t in range(12):
                opt.zero_grad()
                x, y = random_batch(t)
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
                sched.step()
                seen.append(_lrs(inner))
        return seen

    wrapped, plain = run(True), run(False)
    assert wrapped == plain
    assert len({tuple(x) for x in plain}) > 1  # the schedule did change the LR


def test_plateau_scheduler_and_load_state_dict_keep_the_link() -> None:
    model = small_mlp()
    la = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), k=2)
    sched = tls.ReduceLROnPlateau(la, patience=0, factor=0.5)
    la.step()
    sched.step(1.0)
    sched.step(2.0)  # no improvement: halve
    assert _lrs(la.optimizer) == [0.05]
    # torch's load_state_dict gives the inner optimizer a new param_groups list: the
    # Lookahead (and every scheduler on it) follows
    la.load_state_dict(la.state_dict())
    assert la.param_groups is la.optimizer.param_groups
    sched.step(3.0)
    assert _lrs(la.optimizer) == [0.025]


def test_closure_and_an_inner_lbfgs() -> None:
    def run(use_closure: bool) -> list[Tensor]:
        model = small_mlp()
        la = Lookahead(torch.optim.AdamW(model.parameters(), lr=1e-2), k=3)
        for t in range(10):

            def closure(t: int = t) -> Tensor:
                la.zero_grad()
                x, y = random_batch(t)
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                return loss

            if use_closure:
                la.step(closure)
            else:
                closure()
                la.step()
        return [p.detach().clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(run(True), run(False), strict=True))

    model = small_mlp()
    start = [p.detach().clone() for p in model.parameters()]
    la = Lookahead(torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=4), k=2)
    x, y = random_batch(0)

    def lbfgs_closure() -> Tensor:
        la.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    first = la.step(lbfgs_closure)
    for p, p0 in zip(model.parameters(), start, strict=True):  # slow weights: before the step
        assert torch.equal(la.state[p]["slow_param"], p0)
    la.step(lbfgs_closure)
    assert lbfgs_closure().item() < first.item()


def test_frozen_parameters_get_no_slow_weights_even_with_a_closure() -> None:
    model = small_mlp()
    model[0].weight.requires_grad_(False)
    la = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1), k=2)

    def closure() -> Tensor:
        la.zero_grad()
        x, y = random_batch(0)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    la.step(closure)
    assert model[0].weight not in la.state and model[0].bias in la.state


def test_deepcopy_and_pickle() -> None:
    model = small_mlp()
    la = Lookahead(torch.optim.AdamW(model.parameters(), lr=1e-2), k=3, alpha=0.4)
    for t in range(4):
        la.zero_grad()
        x, y = random_batch(t)
        nn.functional.cross_entropy(model(x), y).backward()
        la.step()
    for clone in (copy.deepcopy(la), pickle.loads(pickle.dumps(la))):
        assert isinstance(clone, Lookahead) and clone.k == 3 and clone.alpha == 0.4
        assert clone.lookahead_step == 4 and clone.param_groups is clone.optimizer.param_groups
        p = clone.param_groups[0]["params"][0]
        assert torch.equal(clone.state[p]["slow_param"], la.state[model[0].weight]["slow_param"])


# --------------------------------------------------------------------------------------------
# state_dict
# --------------------------------------------------------------------------------------------


def _trained(k: int = 5, steps: int = 7, inner: Any = None) -> tuple[nn.Module, Lookahead]:
    model = small_mlp()
    make = inner or (lambda ps: torch.optim.AdamW(ps, lr=1e-2))
    la = Lookahead(make(model.parameters()), k=k, alpha=0.5)
    for t in range(steps):
        la.zero_grad()
        x, y = random_batch(t)
        nn.functional.cross_entropy(model(x), y).backward()
        la.step()
    return model, la


def test_state_dict_content_and_round_trip() -> None:
    model, la = _trained(k=5, steps=7)
    sd = la.state_dict()
    inner = la.optimizer.state_dict()
    assert (
        sd["param_groups"] == inner["param_groups"] and sd["state"].keys() == inner["state"].keys()
    )
    entry = sd["lookahead"]
    assert entry["k"] == 5 and entry["alpha"] == 0.5 and entry["step"] == 7
    params = list(model.parameters())
    assert sorted(entry["slow_params"]) == list(range(len(params)))
    for i, p in enumerate(params):
        assert entry["slow_params"][i] is la.state[p]["slow_param"]
    # a fresh Lookahead with other k/alpha takes the saved ones, mid-cycle
    fresh_model = copy.deepcopy(model)
    fresh = Lookahead(torch.optim.AdamW(fresh_model.parameters(), lr=1e-2), k=2, alpha=0.9)
    fresh.load_state_dict(copy.deepcopy(sd))
    assert (fresh.k, fresh.alpha, fresh.lookahead_step) == (5, 0.5, 7)
    assert (fresh.defaults["k"], fresh.defaults["alpha"]) == (5, 0.5)
    for t in range(7, 12):
        for m, o in ((model, la), (fresh_model, fresh)):
            o.zero_grad()
            x, y = random_batch(t)
            nn.functional.cross_entropy(m(x), y).backward()
            o.step()
    for a, b in zip(model.parameters(), fresh_model.parameters(), strict=True):
        assert torch.equal(a, b)


def _corruptions() -> list[tuple[Callable[[dict], Any], str]]:
    def set_la(key: str, value: Any) -> Callable[[dict], Any]:
        return lambda sd: sd["lookahead"].__setitem__(key, value)

    return [
        (lambda sd: sd.pop("lookahead"), "no 'lookahead' entry.*another optimizer"),
        (set_la("k", 0), r"Invalid k: 0"),
        (set_la("alpha", 1.5), r"Invalid alpha: 1.5"),
        (set_la("step", -1), "invalid step counter -1"),
        (lambda sd: sd["lookahead"].pop("slow_params"), "needs k, alpha, step and slow_params"),
        (lambda sd: sd["lookahead"]["slow_params"].__setitem__(0, torch.zeros(2)), "shape"),
        (lambda sd: sd["lookahead"]["slow_params"].__setitem__(99, torch.zeros(2)), "#99"),
        (lambda sd: sd.__setitem__("param_groups", sd["param_groups"] * 2), "param groups"),
        (lambda sd: sd["param_groups"][0]["params"].pop(), "parameters"),
    ]


@pytest.mark.parametrize("index", range(len(_corruptions())))
def test_bad_state_dicts_are_rejected_and_nothing_changes(index: int) -> None:
    corrupt, match = _corruptions()[index]
    _, la = _trained()
    before = copy.deepcopy(la.state_dict())
    bad = copy.deepcopy(before)
    corrupt(bad)
    with pytest.raises(ValueError, match=match):
        la.load_state_dict(bad)
    after = la.state_dict()
    assert after["param_groups"] == before["param_groups"]
    assert (after["lookahead"]["k"], after["lookahead"]["step"]) == (5, 7)
    for i, slow in before["lookahead"]["slow_params"].items():
        assert torch.equal(after["lookahead"]["slow_params"][i], slow)


def test_inner_state_is_validated_before_anything_loads() -> None:
    _, la = _trained(inner=lambda ps: AdamW8bit(ps, min_8bit_numel=0, block_size=64))
    before = copy.deepcopy(la.state_dict())
    bad = copy.deepcopy(before)
    bad["state"][0]["exp_avg_codes"] = bad["state"][0]["exp_avg_codes"].float()
    bad["lookahead"]["step"] = 100
    with pytest.raises(ValueError, match=r"exp_avg_codes must be torch\.int8"):
        la.load_state_dict(bad)
    assert la.lookahead_step == 7
    assert la.optimizer.state_dict()["state"][0]["exp_avg_codes"].dtype == torch.int8


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, r"Invalid k: 0 \(must be an integer >= 1\)"),
        ({"k": -3}, "Invalid k: -3"),
        ({"k": 2.5}, "Invalid k: 2.5"),
        ({"k": True}, "Invalid k: True"),
        ({"alpha": 0.0}, r"Invalid alpha: 0.0 \(must be in \(0, 1\]\)"),
        ({"alpha": 1.5}, "Invalid alpha: 1.5"),
        ({"alpha": -0.1}, "Invalid alpha: -0.1"),
        ({"alpha": float("nan")}, "Invalid alpha: nan"),
    ],
)
def test_bad_hyperparameters(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Lookahead(torch.optim.SGD([nn.Parameter(torch.ones(1))], lr=0.1), **kwargs)


def test_inner_optimizer_with_a_required_hyperparameter() -> None:
    from torch.optim.optimizer import required

    class RequiredLR(torch.optim.SGD):
        def __init__(self, params: Any, lr: Any = required) -> None:
            torch.optim.Optimizer.__init__(self, params, dict(lr=lr, momentum=0, dampening=0,
                weight_decay=0, nesterov=False, maximize=False, foreach=None,
                differentiable=False, fused=None))  # fmt: skip

    # the LR comes with the group, so the inner defaults keep the `required` sentinel
    la = Lookahead(RequiredLR([{"params": [nn.Parameter(torch.ones(2))], "lr": 0.1}]), k=2)
    assert la.defaults["lr"] is required and la.param_groups[0]["lr"] == 0.1


def test_needs_an_optimizer() -> None:
    with pytest.raises(TypeError, match=r"wraps a torch.optim.Optimizer, got list"):
        Lookahead([nn.Parameter(torch.ones(1))])  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Registry: lookahead_<name>
# --------------------------------------------------------------------------------------------


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2))


def test_create_lookahead_adamw() -> None:
    model = small()
    la = optiwise.create_optimizer("lookahead_adamw", model, k=4, alpha=0.6, lr=3e-4)
    assert isinstance(la, Lookahead) and type(la.optimizer) is torch.optim.AdamW
    assert (la.k, la.alpha) == (4, 0.6)
    assert [g["lr"] for g in la.param_groups] == [3e-4, 3e-4]
    assert sorted(g["weight_decay"] for g in la.param_groups) == [0.0, 0.01]
    spec = optiwise.get_spec(la)
    assert spec is not None and spec.name == "lookahead_adamw"
    assert "k = 4  -- given" in spec.explain() and "Lookahead(AdamW)" in spec.explain()
    filled = optiwise.resolve_optimizer("lookahead_adamw")
    assert filled.hparams["k"] == knowledge.LOOKAHEAD_K.value == 5
    assert filled.hparams["alpha"] == knowledge.LOOKAHEAD_ALPHA.value == 0.5
    assert "Zhang" in filled.filled["k"].reason


@pytest.mark.parametrize("name", optiwise.list_optimizers())
def test_every_registered_optimizer_has_a_lookahead_form(name: str) -> None:
    model = fitting_model(name)
    la = optiwise.create_optimizer(f"lookahead_{name}", model)
    plain = optiwise.create_optimizer(name, fitting_model(name))
    assert isinstance(la, Lookahead) and type(la.optimizer) is type(plain)
    before = [p.detach().clone() for p in model.parameters()]
    for t in range(2):
        fitting_step(name, model, la, t)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert knowledge.get_info(f"lookahead_{name}").state_bytes.value == pytest.approx(
        knowledge.get_info(name).state_bytes.value + 4
    )


def test_optimizers_registered_later_get_a_lookahead_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry_module, "_ENTRIES", dict(registry_module._ENTRIES))
    monkeypatch.setattr(registry_module, "_LOOKUP", dict(registry_module._LOOKUP))
    monkeypatch.setattr(knowledge, "_OPTIMIZERS", dict(knowledge._OPTIMIZERS))
    base = knowledge.get_info("sgd_momentum")
    knowledge.register_info(
        knowledge.OptimizerInfo(
            name="demo_momentum",
            display="Demo momentum",
            family=base.family,
            paper=base.paper,
            settings={
                "general": knowledge.Setting(
                    hparams={"lr": base.settings["general"].hparams["lr"]},
                    lr_range=base.settings["general"].lr_range,
                    reference_batch=base.settings["general"].reference_batch,
                )
            },
            state_bytes=base.state_bytes,
            batch_scaling=base.batch_scaling,
            warmup=base.warmup,
            best_for=base.best_for,
        )
    )
    register_optimizer(RegistryEntry("demo_momentum", DemoMomentum, aliases=("demo",)))
    la = optiwise.create_optimizer("Lookahead-Demo", small(), k=2)
    assert isinstance(la.optimizer, DemoMomentum) and la.k == 2
    assert "lookahead_demo_momentum" not in optiwise.list_optimizers()


def test_inner_hyperparameters_named_alpha_do_not_collide() -> None:
    """RMSprop has its own alpha: Lookahead's are then lookahead_k / lookahead_alpha."""
    assert knowledge.lookahead_keys("rmsprop") == ("lookahead_k", "lookahead_alpha")
    assert knowledge.lookahead_keys("adamw") == ("k", "alpha")
    la = optiwise.create_optimizer("lookahead_rmsprop", small(), alpha=0.9, lookahead_alpha=0.3)
    assert la.optimizer.defaults["alpha"] == 0.9 and la.alpha == 0.3 and la.k == 5
    default = optiwise.create_optimizer("lookahead_rmsprop", small())
    assert default.optimizer.defaults["alpha"] == 0.99 and default.alpha == 0.5
    with pytest.raises(ValueError, match="does not take k"):
        optiwise.create_optimizer("lookahead_rmsprop", small(), k=3)


def test_names_listing_and_errors() -> None:
    assert canonical_name("LookAhead-Nesterov") == "lookahead_sgd"
    assert canonical_name("lookahead_adamw_8bit") == "lookahead_adamw8bit"
    assert get_entry("lookahead_sgd").fused is True
    assert not any(n.startswith("lookahead_") for n in optiwise.list_optimizers())
    with pytest.raises(ValueError, match=r"Unknown optimizer 'adamq'; did you mean 'adam"):
        canonical_name("lookahead_adamq")
    with pytest.raises(ValueError, match="Lookahead cannot wrap Lookahead"):
        canonical_name("lookahead_lookahead_adamw")
    with pytest.raises(ValueError, match="reserved"):
        register_optimizer(RegistryEntry("lookahead_x", torch.optim.SGD))
    with pytest.raises(ValueError, match="reserved"):
        register_optimizer(RegistryEntry("x", torch.optim.SGD, aliases=("LookAhead-X",)))
    with pytest.raises(ValueError, match=r"Invalid k: 0"):
        optiwise.resolve_optimizer("lookahead_adamw", k=0)
    with pytest.raises(ValueError, match=r"Invalid alpha: 1.5 \(must be in \(0, 1\]\)"):
        optiwise.resolve_optimizer("lookahead_adamw", alpha=1.5)
    assert optiwise.resolve_optimizer("lookahead_adamw", alpha=1.0).hparams["alpha"] == 1.0
    with pytest.raises(ValueError, match="Invalid learning rate"):
        optiwise.resolve_optimizer("lookahead_sgd", lr=-1.0)


def test_cli_list_explains_the_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    from optiwise.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "prefix 'lookahead_' (e.g. lookahead_adamw)" in out and "k=5, alpha=0.5" in out
    assert not any(line.startswith("lookahead_") for line in out.splitlines())
