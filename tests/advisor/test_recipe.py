from __future__ import annotations

import json
import math
from typing import Any

import pytest
import torch
import yaml
from torch import nn

import optiwise
from optiwise import knowledge
from optiwise.advisor import Recipe, recommend
from optiwise.advisor.rules import memory_bytes
from optiwise.audit.findings import Severity
from optiwise.optim.registry import get_spec
from optiwise.params import describe_params
from optiwise.schedules import LinearWarmupCosine, LinearWarmupLinear
from tests import models
from tests.advisor.cases import ALL, IMAGENET, PUBLISHED


def make(name: str) -> tuple[nn.Module | None, Recipe]:
    factory, kwargs = ALL[name]
    if "n_params" in kwargs:  # a published size: the recipe is made for it, not the stand-in
        return None, recommend(**kwargs)
    model = factory() if factory is not None else None
    return model, recommend(model, **kwargs)


def model_for(name: str) -> nn.Module:
    """The model a case's recipe is built on (a family-only recipe: a model of its family)."""
    factory, _ = ALL[name]
    return factory() if factory is not None else models.TinyGPT()


# --------------------------------------------------------------------------------------------
# The published setups
# --------------------------------------------------------------------------------------------


def test_resnet50_imagenet_batch_256() -> None:
    _, r = make("resnet50_imagenet_b256")
    assert (r.family, r.task, r.optimizer) == ("vision_cnn", "vision_cnn", "sgd")
    assert r.hparams == {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}
    assert r.schedule == "warmup_cosine"
    assert r.total_steps == 90 * math.ceil(IMAGENET / 256)
    assert r.warmup_steps is not None and r.warmup_steps > 0
    assert r.clip_norm is None and r.accumulation == 1


def test_resnet50_imagenet_batch_64_scales_lr_linearly() -> None:
    _, r = make("resnet50_imagenet_b64")
    assert r.optimizer == "sgd" and r.hparams["lr"] == pytest.approx(0.025)
    assert "scaled by the linear rule to batch 64" in r.choices["optimizer.lr"].reason


def test_bert_base_pretraining() -> None:
    _, r = make("bert_base_pretraining")
    assert (r.family, r.task, r.optimizer) == ("language_transformer",) * 2 + ("adamw",)
    assert r.hparams["lr"] == 1e-4 and r.hparams["eps"] == 1e-6
    assert r.hparams["weight_decay"] == 0.01
    assert r.schedule == "warmup_linear"  # linear warmup, then linear decay to 0
    assert r.warmup_steps == 10_000 == 0.1 * r.total_steps  # type: ignore[operator]
    assert r.clip_norm == 1.0


def test_bert_warmup_is_10k_steps_on_the_1m_step_run() -> None:
    r = recommend(models.TinyBert(), batch_size=256, total_steps=1_000_000)
    assert r.warmup_steps == 10_000


def test_vit_b16_from_scratch_at_4096() -> None:
    _, r = make("vit_b16_scratch_b4096")
    assert (r.family, r.optimizer) == ("vision_transformer", "adamw")
    assert r.hparams["lr"] == pytest.approx(3e-3) and r.hparams["weight_decay"] == 0.3
    assert r.schedule == "warmup_cosine" and (r.warmup_steps or 0) > 0
    _, strong = make("vit_b16_scratch_strong_aug")
    assert strong.hparams["weight_decay"] == 0.05
    assert strong.choices["optimizer.weight_decay"].rule == "vit-strong-augmentation"


def test_bert_fine_tuning() -> None:
    _, r = make("bert_fine_tuning")
    assert (r.task, r.optimizer) == ("fine_tuning", "adamw")
    assert r.hparams["lr"] == 2e-5 and r.hparams["weight_decay"] == 0.01
    assert r.lr_mult == {"classifier": 10.0}  # head at 2e-4
    assert r.layer_decay is None
    assert r.schedule == "warmup_linear"
    assert r.total_steps == 3 * math.ceil(67_349 / 32)
    assert r.warmup_steps == round(0.1 * r.total_steps)


@pytest.mark.parametrize("case", ["dcgan_generator", "dcgan_discriminator"])
def test_dcgan(case: str) -> None:
    _, r = make(case)
    assert (r.family, r.task, r.optimizer) == ("vision_cnn", "gan", "adam")
    assert r.hparams["lr"] == 2e-4 and r.hparams["betas"] == (0.5, 0.999)
    assert r.hparams["weight_decay"] == 0.0
    assert r.schedule is None and r.schedule_hparams == {}


def test_ppo_policy() -> None:
    _, r = make("ppo_policy")
    assert (r.family, r.task, r.optimizer) == ("mlp", "rl_policy", "adam")
    assert r.hparams["lr"] == 3e-4 and r.hparams["weight_decay"] == 0.0


def test_lstm_language_model() -> None:
    model, r = make("lstm_lm")
    assert model is not None
    assert (r.family, r.optimizer) == ("rnn", "adam") and r.clip_norm == 1.0
    n = sum(p.numel() for p in model.parameters())
    measured = knowledge.defaults("adam", "rnn")
    expected = knowledge.lr_for_size(
        knowledge.scale_lr(
            measured.hparams["lr"].value, 64, measured.reference_batch.value, "sqrt"
        ),
        876_929,
        n,
    )
    assert r.hparams["lr"] == pytest.approx(expected)
    _, bench = make("char_lstm_bench")  # the measured model at its measured batch
    assert bench.hparams["lr"] == pytest.approx(5e-3)


def test_resnet50_at_32k_uses_lars_with_warmup() -> None:
    _, r = make("resnet50_b32k_lars")
    assert r.optimizer == "lars" and r.choices["optimizer"].rule == "large-batch-lars"
    assert r.hparams["lr"] == pytest.approx(0.3 * 32_768 / 256)
    assert r.hparams["trust_coefficient"] == 1e-3
    assert r.total_steps is not None and r.warmup_steps is not None
    assert r.warmup_steps >= 0.05 * r.total_steps


def test_bert_at_32k_uses_lamb() -> None:
    _, r = make("bert_b32k_lamb")
    assert r.optimizer == "lamb" and r.choices["optimizer"].rule == "large-batch-lamb"
    assert r.hparams["lr"] == 4e-3 and r.hparams["eps"] == 1e-6
    assert (r.warmup_steps or 0) > 0 and r.clip_norm == 1.0


# --------------------------------------------------------------------------------------------
# Rule-specific recipes
# --------------------------------------------------------------------------------------------


def _gpt_lr(model: nn.Module | None) -> float:
    """GPT-3 Small's 6e-4 at batch 256, moved to the model's size by the size rule."""
    assert model is not None
    n = sum(p.numel() for p in model.parameters())
    return knowledge.lr_for_size(6e-4, 125_000_000, n)


def test_small_transformer_batch_accumulates() -> None:
    model, r = make("gpt_small_batch_accumulates")
    assert r.accumulation == 32 and r.effective_batch_size == 256
    assert r.hparams["lr"] == pytest.approx(_gpt_lr(model))  # the LR of the effective batch


def test_low_memory_priority_uses_8bit_state() -> None:
    model, r = make("gpt_low_memory")
    assert r.optimizer == "adamw8bit" and r.hparams["lr"] == pytest.approx(_gpt_lr(model))


def test_memory_budget_picks_the_first_rung_that_fits() -> None:
    model, r = make("bert_memory_budget")
    assert model is not None
    n = sum(p.numel() for p in model.parameters())
    budget = float(ALL["bert_memory_budget"][1]["memory_budget_gb"]) * 2**30
    assert memory_bytes(n, "adamw") > budget
    assert r.optimizer == "lion" and memory_bytes(n, "lion") <= budget
    assert r.hparams["lr"] == 3e-5  # Lion's language-model LR (Lion's LR is not size-scaled)
    tight = recommend(model, batch_size=256, total_steps=100, memory_budget_gb=0.0004)
    assert tight.optimizer == "adamw8bit"
    gpt = recommend(models.TinyGPT(), batch_size=256, total_steps=100, memory_budget_gb=0.0006)
    assert gpt.optimizer == "adamw8bit"  # no Lion rung for causal LMs: its facts do not cover them
    rl = recommend(
        family="mlp",
        task="rl_policy",
        n_params=10**9,
        batch_size=64,
        total_steps=100,
        memory_budget_gb=12,
    )
    assert rl.optimizer == "adamw8bit"  # no Lion rung outside its tasks
    assert rl.hparams["weight_decay"] == 0.0
    none_fits = recommend(
        family="mlp", n_params=10**9, batch_size=64, total_steps=100, memory_budget_gb=1
    )
    assert none_fits.optimizer == "adafactor"
    assert "exceed the 1 GiB budget" in none_fits.choices["optimizer"].reason


def test_fp16_raises_adam_eps() -> None:
    _, r = make("gpt_fp16")
    assert r.amp == "fp16" and r.hparams["eps"] == knowledge.FP16_EPS.value
    vit = recommend(models.TinyViT(), batch_size=1024, total_steps=100, mixed_precision="fp16")
    assert vit.hparams["eps"] == knowledge.FP16_EPS.value  # AdamW's 1e-8 raised
    _, bf16 = make("vit_bf16")
    assert bf16.amp == "bf16" and bf16.hparams["eps"] == 1e-8


def test_vit_fine_tuning_uses_layer_decay() -> None:
    _, r = make("vit_fine_tuning_layer_decay")
    assert r.task == "fine_tuning" and r.layer_decay == knowledge.LAYER_DECAY.value
    assert r.lr_mult is None


def test_fine_tuning_head_split_and_tied_head() -> None:
    _, cnn = make("resnet_fine_tuning_head")
    assert cnn.lr_mult == {"fc": 10.0}
    _, gpt = make("gpt_fine_tuning_tied_head")
    assert gpt.lr_mult is None and gpt.layer_decay is None
    assert "no separate output head" in gpt.choices["lr_mult"].reason
    blind = recommend(family="language_transformer", pretrained=True, batch_size=32, epochs=1)
    assert blind.lr_mult is None and "no model was given" in blind.choices["lr_mult"].reason


def test_priority_and_batch_change_the_cnn_optimizer() -> None:
    _, fast = make("resnet_fast_convergence")
    assert fast.optimizer == "adamw" and fast.hparams["weight_decay"] == 0.05
    _, small = make("resnet_small_batch")
    assert small.optimizer == "adamw" and small.choices["optimizer"].rule == "small-batch-adam"
    _, cifar = make("resnet_cifar_small_data")
    assert cifar.optimizer == "sgd" and cifar.hparams["weight_decay"] == 5e-4


def test_world_size_multiplies_the_batch() -> None:
    _, r = make("resnet_multi_process_b2048")
    assert r.effective_batch_size == 2048 and r.hparams["lr"] == pytest.approx(0.8)
    assert r.total_steps == 90 * math.ceil(IMAGENET / 2048)
    big = recommend(models.TinyResNet(), batch_size=256, world_size=64, total_steps=1000)
    assert big.optimizer == "lars"


def test_large_batch_gan_gets_a_warmup() -> None:
    _, r = make("gan_large_batch")
    assert r.schedule == "warmup_constant" and r.warmup_steps == 100
    assert r.choices["schedule.warmup"].rule == "large-batch-warmup"


def test_ema_on_long_image_runs_only() -> None:
    _, long_run = make("resnet50_imagenet_b256")
    assert long_run.ema_decay == knowledge.EMA_DECAY.value
    short = recommend(models.TinyResNet(), batch_size=256, total_steps=20_000)
    assert short.ema_decay is None
    lowmem = recommend(
        models.TinyResNet(), batch_size=256, total_steps=500_000, priority="low_memory"
    )
    assert lowmem.ema_decay is None
    _, bert = make("bert_base_pretraining")
    assert bert.ema_decay is None


def test_unclassifiable_model_falls_back_and_says_why() -> None:
    class Raw(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(16, 16))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.w

    r = recommend(Raw(), batch_size=64, total_steps=100)
    assert (r.family, r.task, r.optimizer) == ("unknown", "general", "adamw")
    assert "no known kind" in r.choices["task"].reason
    nothing = recommend(batch_size=64, total_steps=100)
    assert nothing.family == "unknown" and "no model or family" in nothing.choices["task"].reason


def test_family_overrides_inspection() -> None:
    r = recommend(models.TinyResNet(), family="mlp", batch_size=64, total_steps=100)
    assert r.family == "mlp" and r.task == "tabular_mlp"
    assert "inspection found vision_cnn" in r.choices["task"].reason


# --------------------------------------------------------------------------------------------
# Output forms
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(ALL))
def test_to_dict_json_and_yaml_agree(case: str) -> None:
    _, r = make(case)
    d = r.to_dict()
    assert d["optimizer"]["name"] == r.optimizer
    assert set(d["optimizer"]["hparams"]) == set(r.hparams)
    if r.schedule is not None:
        assert d["schedule"]["hparams"] == r.schedule_hparams
        assert d["schedule"]["hparams"]["total_steps"] == r.total_steps
        assert d["schedule"]["hparams"]["warmup"] == r.warmup_steps
    as_json = json.loads(r.to_json())
    assert yaml.safe_load(r.to_yaml()) == as_json
    assert {c["key"] for c in as_json["choices"]} == set(r.choices)


def test_to_dict_uses_torch_argument_names() -> None:
    _, r = make("bert_base_pretraining")
    hp = r.to_dict()["optimizer"]["hparams"]
    assert hp == {"lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-6, "weight_decay": 0.01}
    torch.optim.AdamW([nn.Parameter(torch.zeros(1))], **{**hp, "betas": tuple(hp["betas"])})


def test_explain_gives_every_choice_with_rule_and_reason() -> None:
    _, r = make("resnet50_imagenet_b64")
    text = r.explain()
    for key, choice in r.choices.items():
        assert f"{key} = " in text and f"[{choice.rule}]" in text
    assert "scaled by the linear rule to batch 64" in text
    assert "SGD (Nesterov)" in text and "GiB" in text


def test_to_code_is_valid_python_naming_every_value() -> None:
    _, r = make("bert_fine_tuning")
    code = r.to_code()
    compile(code, "<recipe>", "exec")
    assert "optiwise.create_optimizer(\n    'adamw',\n    model," in code
    assert "lr_mult={'classifier': 10.0}" in code and "lr=2e-05" in code
    assert f"total_steps={r.total_steps}" in code and "clip_norm=1.0" in code


# --------------------------------------------------------------------------------------------
# Run length
# --------------------------------------------------------------------------------------------


def test_epochs_without_steps_resolve_later() -> None:
    r = recommend(models.TinyBert(), batch_size=256, epochs=2)
    assert r.total_steps is None and r.warmup_steps is None
    assert r.to_dict()["schedule"]["hparams"] == {"total_steps": None, "warmup": None}
    with pytest.raises(ValueError, match="pass steps_per_epoch"):
        r.to_code()
    with pytest.raises(ValueError, match="pass steps_per_epoch"):
        r.build(models.TinyBert())
    resolved = r.for_run(500)
    assert resolved.total_steps == 1000 and resolved.warmup_steps == 100
    assert "total_steps=1000" in r.to_code(steps_per_epoch=500)
    fixed = recommend(models.TinyBert(), batch_size=256, total_steps=1000)
    with pytest.raises(ValueError, match="steps_per_epoch applies only"):
        fixed.for_run(10)


def test_with_lr_replaces_the_lr_everywhere_and_survives_for_run() -> None:
    model = models.TinyResNet()
    r = recommend(model, batch_size=128, epochs=2)
    tuned = r.with_lr(0.08, reason="the LR range test's recommendation", source="find_lr")
    assert r.hparams["lr"] == 0.05 and tuned.hparams["lr"] == 0.08  # the original is kept
    choice = tuned.choices["optimizer.lr"]
    assert (choice.rule, choice.reason, choice.source) == (
        "lr-given",
        "the LR range test's recommendation",
        "find_lr",
    )
    assert list(tuned.choices) == list(r.choices)  # same keys, same order
    assert "optimizer.lr = 0.08\n    [lr-given] the LR range test's" in tuned.explain()
    assert "lr=0.08," in tuned.to_code(steps_per_epoch=10)
    assert tuned.to_dict()["optimizer"]["hparams"]["lr"] == 0.08
    resolved = tuned.for_run(10)  # the rules run again; the given LR stays
    assert resolved.hparams["lr"] == 0.08 and resolved.total_steps == 20
    optimizer, scheduler, _ = tuned.build(model, steps_per_epoch=10)
    assert [g["initial_lr"] for g in optimizer.param_groups] == [0.08, 0.08]
    assert scheduler is not None and scheduler.base_lrs == [0.08, 0.08]
    for bad in (0.0, -1.0, math.nan, "0.1", True):
        with pytest.raises(ValueError, match="Invalid lr"):
            r.with_lr(bad, reason="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Invalid reason"):
        r.with_lr(0.1, reason=" ")


def test_steps_count_optimizer_steps_after_accumulation() -> None:
    r = recommend(models.TinyGPT(), batch_size=64, epochs=2, steps_per_epoch=101)
    assert r.accumulation == 4
    assert r.total_steps == math.ceil(2 * 101 / 4)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0, total_steps=10), "Invalid batch_size: 0"),
        (dict(batch_size=-3, total_steps=10), "Invalid batch_size: -3"),
        (dict(batch_size=8), "run length is missing"),
        (dict(batch_size=8, epochs=2, total_steps=10), "not both"),
        (dict(batch_size=8, epochs=0), "Invalid epochs: 0"),
        (dict(batch_size=8, total_steps=0), "Invalid total_steps: 0"),
        (dict(batch_size=8, total_steps=10, priority="speed"), "Invalid priority: 'speed'"),
        (dict(batch_size=8, total_steps=10, family="cnn"), "Unknown model family 'cnn'"),
        (dict(batch_size=8, total_steps=10, task="chess"), "Unknown task family 'chess'"),
        (dict(batch_size=8, total_steps=10, memory_budget_gb=4), "needs the parameter count"),
        (dict(batch_size=8, total_steps=10, mixed_precision="int8"), "Invalid mixed_precision"),
        (dict(batch_size=8, total_steps=10, world_size=0), "Invalid world_size: 0"),
    ],
)
def test_bad_input_raises_value_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        recommend(**kwargs)


def test_model_must_be_a_module() -> None:
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        recommend("resnet", batch_size=8, total_steps=10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a model or n_params"):
        recommend(models.TinyGPT(), n_params=10, batch_size=8, total_steps=10)


# --------------------------------------------------------------------------------------------
# Building: the objects, the code snippet, and the audit of what was built
# --------------------------------------------------------------------------------------------

_SCHEDULE_TYPES = {"warmup_cosine": LinearWarmupCosine, "warmup_linear": LinearWarmupLinear}


@pytest.mark.parametrize("case", sorted(ALL))
def test_build_matches_the_recipe(case: str) -> None:
    _, recipe = make(case)
    model = model_for(case)
    optimizer, scheduler, stepper = recipe.build(model)
    spec = get_spec(optimizer)
    assert spec is not None and spec.name == recipe.optimizer
    for key, value in recipe.hparams.items():
        if key != "lr":
            assert optimizer.defaults[key] == value, key
    infos = {
        i.name: i
        for i in describe_params(model, layer_decay=recipe.layer_decay, lr_mult=recipe.lr_mult)
    }
    for group in optimizer.param_groups:
        for name in group["param_names"]:
            info = infos[name]
            expected_wd = recipe.hparams.get("weight_decay", 0.0) if info.decay else 0.0
            assert group["weight_decay"] == expected_wd, name
            assert group.get("initial_lr", group["lr"]) == pytest.approx(
                recipe.hparams["lr"] * info.lr_scale
            ), name
    if recipe.schedule is None:
        assert scheduler is None
    else:
        assert scheduler is not None
        if recipe.schedule in _SCHEDULE_TYPES:
            assert type(scheduler) is _SCHEDULE_TYPES[recipe.schedule]
            assert scheduler.total_steps == recipe.total_steps  # type: ignore[attr-defined]
        if hasattr(scheduler, "warmup_steps"):  # torch's schedules get a SequentialLR warmup
            assert scheduler.warmup_steps == recipe.warmup_steps
    assert stepper.optimizer is optimizer and stepper.scheduler is scheduler
    assert stepper.model is model
    assert stepper.accumulation == recipe.accumulation
    assert stepper.clip_norm == recipe.clip_norm and stepper.clip_value is None
    assert stepper.amp == recipe.amp and stepper.ema_decay == recipe.ema_decay


def test_build_bert_fine_tuning_gives_head_ten_times_the_backbone_lr() -> None:
    _, recipe = make("bert_fine_tuning")
    model = model_for("bert_fine_tuning")
    optimizer, _, _ = recipe.build(model)
    lrs = {
        n: g.get("initial_lr", g["lr"]) for g in optimizer.param_groups for n in g["param_names"]
    }
    assert lrs["classifier.1.weight"] == pytest.approx(2e-4)
    assert lrs["encoder.layer.0.intermediate.weight"] == pytest.approx(2e-5)
    assert lrs["embeddings.word_embeddings.weight"] == pytest.approx(2e-5)


def _group_summary(optimizer: torch.optim.Optimizer) -> list[tuple[Any, ...]]:
    return [
        (tuple(g["param_names"]), g["weight_decay"], g.get("initial_lr", g["lr"]))
        for g in optimizer.param_groups
    ]


@pytest.mark.parametrize("case", sorted(ALL))
def test_to_code_builds_the_same_objects(case: str) -> None:
    _, recipe = make(case)
    model = model_for(case)
    optimizer, scheduler, stepper = recipe.build(model)
    namespace: dict[str, Any] = {"model": model}
    exec(compile(recipe.to_code(), f"<recipe {case}>", "exec"), namespace)
    opt2, sched2, step2 = namespace["optimizer"], namespace["scheduler"], namespace["stepper"]
    assert type(opt2) is type(optimizer) and opt2.defaults == optimizer.defaults
    assert _group_summary(opt2) == _group_summary(optimizer)
    assert type(sched2) is type(scheduler)
    if scheduler is not None:
        assert sched2.state_dict() == scheduler.state_dict()
    for attr in ("accumulation", "clip_norm", "clip_value", "amp", "ema_decay"):
        assert getattr(step2, attr) == getattr(stepper, attr), attr


@pytest.mark.parametrize("case", sorted(ALL))
def test_audit_of_built_recipe_has_no_critical_or_major_finding(case: str) -> None:
    _, recipe = make(case)
    model = model_for(case)
    optimizer, scheduler, _ = recipe.build(model)
    findings = optiwise.audit(
        optimizer,
        model=model,
        scheduler=scheduler,
        batch_size=recipe.effective_batch_size,
        family=recipe.task,
        total_steps=recipe.total_steps,
    )
    bad = [f for f in findings if f.severity.at_least(Severity.MAJOR)]
    assert not bad, [f"{f.code}: {f.message}" for f in bad]


def test_every_published_setup_is_in_the_cases() -> None:
    assert len(PUBLISHED) >= 30 and set(PUBLISHED) <= set(ALL)


@pytest.mark.parametrize(
    "case", sorted(c for c in ALL if hasattr(ALL[c][0], "demo_loss") or c.startswith("gpt3"))
)
def test_recipe_builds_and_takes_a_step_on_its_architecture(case: str) -> None:
    _, recipe = make(case)
    model = model_for(case)
    optimizer, scheduler, _ = recipe.build(model)
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    loss = (
        model.demo_loss()  # type: ignore[operator]
        if hasattr(model, "demo_loss")
        else model(torch.randint(0, 50, (2, 8))).pow(2).mean()
    )
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    after = [p.detach() for p in model.parameters() if p.requires_grad]
    moved = [not torch.equal(a, b) for a, b in zip(before, after, strict=True)]
    # LoRA's B starts at zero, so A gets no gradient on the first step; everything else moves.
    assert sum(moved) >= len(moved) // 2, case


def test_with_optimizer_takes_that_optimizers_defaults() -> None:
    from optiwise import knowledge as kn

    recipe = recommend(family="vision_cnn", batch_size=64, total_steps=500).with_lr(
        0.3, reason="range test"
    )
    assert recipe.optimizer == "sgd"
    other = recipe.with_optimizer("AdamW", reason="compare")
    assert other.optimizer == "adamw"
    assert "momentum" not in other.hparams and "betas" in other.hparams
    assert other.hparams["lr"] != 0.3  # the SGD LR is dropped with SGD
    assert (
        other.hparams["weight_decay"]
        == kn.defaults("adamw", "vision_cnn").hparams["weight_decay"].value
    )
    # kept when the rules re-run and when an LR is set
    tuned = other.with_lr(1e-3, reason="tuned")
    assert tuned.optimizer == "adamw" and tuned.hparams["lr"] == 1e-3
    assert recipe.with_optimizer("sgd", reason="same") is recipe
    with pytest.raises(ValueError, match="reason"):
        recipe.with_optimizer("adamw", reason=" ")


# --------------------------------------------------------------------------------------------
# Today's families: the rules that are not a published value
# --------------------------------------------------------------------------------------------


def test_fast_convergence_pretraining_picks_muon_or_soap_within_a_budget() -> None:
    model, muon = make("gpt_fast_convergence_muon")
    assert muon.optimizer == "muon" and muon.choices["optimizer"].rule == "fast-pretraining-muon"
    assert muon.hparams["lr"] == pytest.approx(_gpt_lr(model))  # AdamW's LR, size-scaled
    _, soap = make("gpt_fast_convergence_soap_fits")
    assert soap.optimizer == "soap" and soap.hparams["betas"] == (0.95, 0.95)
    tight = recommend(
        model, batch_size=256, total_steps=500, priority="fast_convergence", memory_budget_gb=1e-4
    )
    assert tight.optimizer != "soap"
    ft = recommend(
        model, batch_size=256, total_steps=500, priority="fast_convergence", pretrained=True
    )
    assert ft.optimizer == "adamw"  # fine-tuning keeps AdamW (Liu et al. 2025)
    cnn = recommend(
        models.TinyResNet(), batch_size=128, total_steps=500, priority="fast_convergence"
    )
    assert cnn.optimizer == "adamw"  # conv filters stay on AdamW in optiwise's Muon


def test_no_tuning_priority_uses_prodigy() -> None:
    _, r = make("gru_no_tuning_prodigy")
    assert r.optimizer == "prodigy" and r.hparams["lr"] == 1.0
    assert r.hparams["safeguard_warmup"] is True
    cnn = recommend(models.TinyResNet(), batch_size=256, total_steps=500, priority="no_tuning")
    assert cnn.optimizer == "sgd"  # SGD's LR is the recipe's; Prodigy replaces Adam only


def test_adapters_keep_their_recipe_when_pretrained_is_set() -> None:
    _, r = make("lora_pretrained_flag")
    assert r.task == "adapter_fine_tuning" and r.hparams["lr"] == pytest.approx(2e-4)
    assert r.lr_mult is None  # the frozen head gets no LR multiplier


def test_diffusion_ema_only_on_long_runs_and_speech_is_inspected() -> None:
    _, short = make("unet_short_run_no_ema")
    assert short.task == "diffusion" and short.ema_decay is None
    _, speech = make("speech_model_inspected")
    assert speech.family == "speech" and speech.task == "speech"
    assert speech.hparams["betas"] == (0.9, 0.98)
    assert speech.hparams["lr"] > 5e-4  # a 30k-parameter model: above wav2vec 2.0's 95M LR


def test_a_sparse_model_is_never_given_a_dense_only_optimizer() -> None:
    model = models.TinyDLRM()
    for kwargs in (
        dict(task="general"),
        dict(priority="low_memory"),
        dict(priority="fast_convergence"),
    ):
        r = recommend(model, batch_size=512, total_steps=100, **kwargs)  # type: ignore[arg-type]
        assert r.optimizer == "sparse_adam_adamw", kwargs
        optimizer, _, _ = r.build(model)
        model.demo_loss().backward()
        optimizer.step()


def test_small_sequence_models_get_larger_lrs_than_large_ones() -> None:
    gru = recommend(models.CharGRU(), batch_size=32, total_steps=1_500)
    big = recommend(family="causal_transformer", n_params=7_000_000_000, batch_size=1024,
                    total_steps=100_000)  # fmt: skip
    assert gru.hparams["lr"] > 10 * big.hparams["lr"]
    assert "lr-by-model-size" in {c.rule for c in gru.choices.values()}


def test_task_words_and_the_limits_of_a_recipe() -> None:
    r = recommend(models.TinyGPT(), task="Reinforcement-Learning", batch_size=64, total_steps=100)
    assert r.task == "rl_policy"
    with pytest.raises(ValueError, match=r"'seq2sq'.*did you mean 'seq2seq' \(translation\)"):
        recommend(task="seq2sq", batch_size=8, total_steps=10)
    lm = recommend(models.TinyGPT(), batch_size=256, total_steps=1_000)
    assert lm.limits and "when this recipe does not fit: " + lm.limits in lm.explain()
    assert lm.to_dict()["limits"] == lm.limits
