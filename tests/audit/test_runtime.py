from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as tls

import optiwise
from optiwise.audit.findings import CODES, Severity
from optiwise.audit.runtime import (
    identify_optimizer,
    optimizer_from_expression,
    scheduler_from_expression,
    warmup_of,
)
from tests import models


def codes(findings: list[optiwise.Finding]) -> list[str]:
    return [f.code for f in findings]


# --------------------------------------------------------------------------------------------
# Each check, both ways
# --------------------------------------------------------------------------------------------


def test_adam_with_weight_decay() -> None:
    model = models.PPOPolicy()
    bad = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=0.01)
    (f,) = [f for f in optiwise.audit(bad, family="rl_policy") if f.code == "OW101"]
    assert f.severity is Severity.CRITICAL and "weight_decay=0.01" in f.message
    assert f.fix == CODES["OW101"].fix and f.why
    ok = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.01)
    assert "OW101" not in codes(optiwise.audit(ok, family="rl_policy"))
    decoupled = torch.optim.Adam(
        model.parameters(), lr=3e-4, weight_decay=0.01, decoupled_weight_decay=True
    )
    assert identify_optimizer(decoupled) == "adamw"
    assert "OW101" not in codes(optiwise.audit(decoupled, family="rl_policy"))


@pytest.mark.parametrize(
    "make_opt, family, flagged",
    [
        (lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, nesterov=True), "vision_cnn", True),
        (lambda ps: torch.optim.Adam(ps, lr=0.1), "rnn", True),
        (lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), "vision_cnn", False),
        (lambda ps: torch.optim.Adam(ps, lr=1e-3), "rnn", False),
    ],
)
def test_lr_out_of_range(make_opt, family: str, flagged: bool) -> None:  # type: ignore[no-untyped-def]
    opt = make_opt(nn.Linear(4, 4).parameters())
    found = [f for f in optiwise.audit(opt, family=family) if f.code == "OW201"]
    assert bool(found) is flagged
    if found:
        assert found[0].severity is Severity.MAJOR


def test_lr_range_follows_the_batch_size() -> None:
    opt = torch.optim.SGD(nn.Linear(4, 4).parameters(), lr=3.2, momentum=0.9, nesterov=True)
    assert "OW201" in codes(optiwise.audit(opt, family="vision_cnn", batch_size=256))
    assert "OW201" not in codes(optiwise.audit(opt, family="vision_cnn", batch_size=8192))


def test_sgd_momentum_without_nesterov() -> None:
    ps = list(nn.Linear(4, 4).parameters())
    heavy = torch.optim.SGD(ps, lr=0.1, momentum=0.9)
    (f,) = [f for f in optiwise.audit(heavy, family="vision_cnn") if f.code == "OW102"]
    assert f.severity is Severity.LOW
    nesterov = torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True)
    assert "OW102" not in codes(optiwise.audit(nesterov, family="vision_cnn"))


def test_sgd_without_momentum_on_a_deep_network() -> None:
    model = models.TinyResNet()
    plain = torch.optim.SGD(model.parameters(), lr=0.1)
    (f,) = [f for f in optiwise.audit(plain, model=model) if f.code == "OW105"]
    assert f.severity is Severity.MEDIUM and "without momentum" in f.message
    assert "OW105" in codes(optiwise.audit(plain, family="vision_cnn"))  # no model: flagged
    momentum = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    assert "OW105" not in codes(optiwise.audit(momentum, model=model))
    linear = nn.Linear(4, 2)  # one weight matrix: plain SGD is fine there
    assert "OW105" not in codes(optiwise.audit(torch.optim.SGD(linear.parameters()), model=linear))


def test_constant_lr_over_a_run_of_known_length() -> None:
    model = models.TinyResNet()
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    (f,) = [f for f in optiwise.audit(adam, model=model, total_steps=500) if f.code == "OW307"]
    assert f.severity is Severity.MEDIUM and "500 steps" in f.message
    assert "warmup_cosine" in f.message and f.data["standard"] == "warmup_cosine"
    assert "OW307" not in codes(optiwise.audit(adam, model=model))  # run length unknown
    cosine = tls.CosineAnnealingLR(adam, T_max=500)
    assert "OW307" not in codes(
        optiwise.audit(adam, model=model, scheduler=cosine, total_steps=500)
    )
    gan = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.5, 0.999))
    assert "OW307" not in codes(optiwise.audit(gan, family="gan", total_steps=500))  # constant
    free = optiwise.create_optimizer("schedule_free_adamw", model)
    assert "OW307" not in codes(optiwise.audit(free, model=model, total_steps=500))


def test_adam_on_a_transformer() -> None:
    gpt = models.TinyGPT()
    sched_opt = torch.optim.Adam(gpt.parameters(), lr=1e-4)
    warm = optiwise.create_scheduler("warmup_linear", sched_opt, total_steps=100, warmup=10)
    assert "OW103" in codes(optiwise.audit(sched_opt, model=gpt, scheduler=warm))
    cnn = models.TinyResNet()
    assert "OW103" not in codes(optiwise.audit(torch.optim.Adam(cnn.parameters()), model=cnn))


def test_weight_decay_on_bias_norm_embedding() -> None:
    model = models.TinyResNet()
    plain = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4
    )
    (f,) = [f for f in optiwise.audit(plain, model=model) if f.code == "OW401"]
    assert "bn1.weight" in f.data["params"] and "fc.bias" in f.data["params"]
    assert "conv1.weight" not in f.data["params"]
    grouped = optiwise.create_optimizer("sgd", model, task="vision_cnn")
    assert "OW401" not in codes(optiwise.audit(grouped, model=model))


def test_transformer_without_warmup() -> None:
    gpt = models.TinyGPT()
    opt = torch.optim.AdamW(gpt.parameters(), lr=1e-4)
    (f,) = [f for f in optiwise.audit(opt, model=gpt) if f.code == "OW301"]
    assert f.severity is Severity.MAJOR and "no scheduler" in f.message
    cosine = tls.CosineAnnealingLR(opt, T_max=100)
    assert "OW301" in codes(optiwise.audit(opt, model=gpt, scheduler=cosine))
    opt2 = torch.optim.AdamW(gpt.parameters(), lr=1e-4)
    warm = optiwise.create_scheduler("warmup_cosine", opt2, total_steps=100, warmup=10)
    assert "OW301" not in codes(optiwise.audit(opt2, model=gpt, scheduler=warm))
    assert "OW301" not in codes(optiwise.audit(opt, family="vision_cnn"))


def test_warmup_detection() -> None:
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    assert warmup_of(None) == 0
    assert warmup_of(optiwise.create_scheduler("warmup_cosine", opt, total_steps=50, warmup=5)) == 5
    assert warmup_of(optiwise.create_scheduler("cosine", opt, total_steps=50, warmup=5)) == 5
    assert warmup_of(tls.LinearLR(opt, start_factor=0.1, total_iters=7)) == 7
    assert warmup_of(tls.LambdaLR(opt, lambda t: min(1.0, (t + 1) / 4))) == 3
    assert warmup_of(tls.LambdaLR(opt, lambda t: 0.9**t)) == 0
    assert warmup_of(tls.OneCycleLR(opt, max_lr=0.1, total_steps=100, pct_start=0.3)) == 30
    assert warmup_of(tls.StepLR(opt, step_size=10)) == 0

    class Custom(tls.LRScheduler):
        def get_lr(self) -> list[float]:  # type: ignore[override]
            return [g["lr"] for g in self.optimizer.param_groups]

    assert warmup_of(Custom(opt)) is None  # cannot tell: no finding either way
    gpt = models.TinyGPT()
    opt_gpt = torch.optim.AdamW(gpt.parameters(), lr=1e-4)
    assert "OW301" not in codes(optiwise.audit(opt_gpt, model=gpt, scheduler=Custom(opt_gpt)))


def test_lr_not_scaled_for_the_batch() -> None:
    model = models.TinyResNet()
    opt = optiwise.create_optimizer("sgd", model, lr=0.1, task="vision_cnn")
    warm = optiwise.create_scheduler("warmup_cosine", opt, total_steps=1000, warmup=50)
    (f,) = [
        f
        for f in optiwise.audit(opt, model=model, scheduler=warm, batch_size=2048)
        if f.code == "OW202"
    ]
    assert f.severity is Severity.MEDIUM and "gives 0.8" in f.message
    scaled = optiwise.create_optimizer("sgd", model, task="vision_cnn", batch_size=2048)
    assert "OW202" not in codes(optiwise.audit(scaled, model=model, batch_size=2048))
    assert "OW202" not in codes(optiwise.audit(opt, model=model, batch_size=256))


def test_very_large_batch() -> None:
    model = models.TinyResNet()
    opt = optiwise.create_optimizer("sgd", model, task="vision_cnn", batch_size=16384)
    found = optiwise.audit(opt, model=model, batch_size=16384)
    assert {"OW104", "OW306"} <= set(codes(found))
    warm = optiwise.create_scheduler("warmup_cosine", opt, total_steps=1000, warmup=50)
    found = optiwise.audit(opt, model=model, scheduler=warm, batch_size=16384)
    assert "OW104" in codes(found) and "OW306" not in codes(found)
    small = optiwise.audit(opt, model=model, batch_size=256)
    assert "OW104" not in codes(small) and "OW306" not in codes(small)


def test_schedule_length_mismatch() -> None:
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9, nesterov=True)
    cycle = tls.OneCycleLR(opt, max_lr=0.1, total_steps=1000)
    (f,) = [f for f in optiwise.audit(opt, scheduler=cycle, total_steps=2000) if f.code == "OW302"]
    assert f.severity is Severity.MAJOR and f.data == {"schedule_steps": 1000, "total_steps": 2000}
    assert "OW302" not in codes(optiwise.audit(opt, scheduler=cycle, total_steps=1000))
    assert "OW302" not in codes(optiwise.audit(opt, scheduler=cycle))
    opt2 = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9, nesterov=True)
    ours = optiwise.create_scheduler("warmup_cosine", opt2, total_steps=500, warmup=10)
    assert "OW302" in codes(optiwise.audit(opt2, scheduler=ours, total_steps=1000))


def test_fp16_eps() -> None:
    model = nn.Linear(8, 8).half()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-8)
    (f,) = [f for f in optiwise.audit(opt) if f.code == "OW601"]
    assert f.severity is Severity.MAJOR
    safe = torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-6)
    assert "OW601" not in codes(optiwise.audit(safe))
    fp32 = torch.optim.AdamW(nn.Linear(8, 8).parameters(), lr=1e-3, eps=1e-8)
    assert "OW601" not in codes(optiwise.audit(fp32))


def test_resumed_run_without_optimizer_state() -> None:
    model = models.PPOPolicy()
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    sched = optiwise.create_scheduler("warmup_linear", opt, total_steps=100)
    saved = sched.state_dict()
    for _ in range(5):
        model(torch.randn(4, 8))[0].sum().backward()
        opt.step()
        sched.step()
    assert "OW701" not in codes(optiwise.audit(opt, scheduler=sched, family="rl_policy"))

    fresh = torch.optim.Adam(model.parameters(), lr=3e-4)
    resumed = optiwise.create_scheduler("warmup_linear", fresh, total_steps=100)
    saved = sched.state_dict()
    resumed.load_state_dict(saved)  # the scheduler is restored, the optimizer is not
    (f,) = [
        f for f in optiwise.audit(fresh, scheduler=resumed, family="rl_policy") if f.code == "OW701"
    ]
    assert f.severity is Severity.MAJOR and f.data == {"scheduler_step": 5}
    stateless = torch.optim.SGD(model.parameters(), lr=0.1)
    s2 = tls.StepLR(stateless, 10)
    s2.last_epoch = 5
    assert "OW701" not in codes(optiwise.audit(stateless, scheduler=s2))


def test_findings_sorted_worst_first_and_clean_setup() -> None:
    gpt = models.TinyGPT()
    bad = torch.optim.Adam(gpt.parameters(), lr=0.1, weight_decay=0.01, eps=1e-8)
    found = optiwise.audit(bad, model=gpt, batch_size=256)
    ranks = [f.severity.rank for f in found]
    assert ranks == sorted(ranks) and {"OW101", "OW201", "OW301", "OW103", "OW401"} <= set(
        codes(found)
    )
    good = optiwise.create_optimizer("adamw", gpt, task="language_transformer", batch_size=256)
    sched = optiwise.create_scheduler("warmup_linear", good, total_steps=1000, warmup=100)
    assert optiwise.audit(good, model=gpt, scheduler=sched, batch_size=256, total_steps=1000) == []


def test_identify_optimizer() -> None:
    ps = list(nn.Linear(2, 2).parameters())
    assert identify_optimizer(torch.optim.SGD(ps, lr=0.1)) == "sgd_plain"
    assert identify_optimizer(torch.optim.SGD(ps, lr=0.1, momentum=0.9)) == "sgd_momentum"
    assert identify_optimizer(torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True)) == "sgd"
    assert identify_optimizer(torch.optim.AdamW(ps)) == "adamw"
    assert identify_optimizer(torch.optim.RMSprop(ps)) == "rmsprop"
    assert identify_optimizer(optiwise.create_optimizer("sgd_momentum", ps)) == "sgd_momentum"

    class Mine(torch.optim.Optimizer):
        def __init__(self, params: list[nn.Parameter]) -> None:
            super().__init__(params, {"lr": 0.1})

    mine = Mine(ps)
    assert identify_optimizer(mine) is None
    assert codes(optiwise.audit(mine)) == []  # nothing known to judge it by


def test_bad_input() -> None:
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="Invalid batch size: 0"):
        optiwise.audit(opt, batch_size=0)
    with pytest.raises(ValueError, match="Invalid total_steps: -1"):
        optiwise.audit(opt, total_steps=-1)
    with pytest.raises(ValueError, match="Unknown family 'cnn'"):
        optiwise.audit(opt, family="cnn")
    with pytest.raises(TypeError, match=r"needs a torch\.optim\.Optimizer"):
        optiwise.audit("sgd")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Expressions
# --------------------------------------------------------------------------------------------


def test_optimizer_from_expression() -> None:
    model = models.TinyResNet()
    opt = optimizer_from_expression("AdamW(lr=3e-4, weight_decay=0.01, betas=(0.9, 0.95))", model)
    assert type(opt) is torch.optim.AdamW and len(opt.param_groups) == 1
    assert opt.defaults["lr"] == 3e-4 and opt.defaults["betas"] == (0.9, 0.95)
    sgd = optimizer_from_expression("torch.optim.SGD(lr=0.1, momentum=0.9)", model)
    assert type(sgd) is torch.optim.SGD and sgd.defaults["momentum"] == 0.9
    ours = optimizer_from_expression("sgd(lr=0.05)", model)
    spec = optiwise.get_spec(ours)
    assert spec is not None and spec.name == "sgd" and ours.defaults["nesterov"] is True
    assert len(ours.param_groups) == 2  # optiwise's no-decay groups


@pytest.mark.parametrize(
    "expr, match",
    [
        ("AdamW(lr=3e-4", "cannot parse"),
        ("1 + 2", "must be a call"),
        ("AdamW(model.parameters(), lr=1e-3)", "keyword arguments only"),
        ("AdamW(lr=__import__('os').getcwd())", "must be a literal"),
        ("AdamW(**kw)", r"\*\*kwargs are not allowed"),
        ("os.system(cmd='ls')", "unknown optimizer 'os.system'"),
        ("(lambda: 1)()", "called by name"),
        ("Adamm(lr=1e-3)", "Unknown optimizer 'Adamm'"),
        ("AdamW(learning_rate=1e-3)", "cannot build the optimizer"),
    ],
)
def test_bad_optimizer_expressions(expr: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        optimizer_from_expression(expr, models.PPOPolicy())


def test_scheduler_from_expression() -> None:
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    one = scheduler_from_expression("OneCycleLR(max_lr=0.1, total_steps=100)", opt)
    assert isinstance(one, tls.OneCycleLR) and one.total_steps == 100
    ours = scheduler_from_expression("warmup_cosine(total_steps=100, warmup=10)", opt)
    assert warmup_of(ours) == 10
    with pytest.raises(ValueError, match="LambdaLR needs functions"):
        scheduler_from_expression("LambdaLR(lr_lambda=1)", opt)
    with pytest.raises(ValueError, match="Unknown schedule 'nope'"):
        scheduler_from_expression("nope()", opt)
