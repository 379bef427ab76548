from __future__ import annotations

import inspect
import math

import pytest
import torch

from optiwise import knowledge
from optiwise.knowledge import Fact
from optiwise.optim.registry import get_entry, list_optimizers


def all_facts(info: knowledge.OptimizerInfo) -> list[Fact]:
    facts = [
        info.family,
        info.state_bytes,
        info.batch_scaling,
        info.warmup,
        info.best_for,
        *info.extra.values(),
    ]
    for setting in info.settings.values():
        facts.extend(setting.hparams.values())
        facts.extend(f for f in (setting.lr_range, setting.reference_batch) if f is not None)
    return facts


@pytest.mark.parametrize("name", list_optimizers())
def test_every_registered_optimizer_is_described_with_reasons(name: str) -> None:
    info = knowledge.get_info(name)
    assert info.name == name
    assert info.paper
    for fact in all_facts(info):
        assert isinstance(fact, Fact)
        assert len(fact.reason) > 10, fact
    assert info.batch_scaling.value in ("linear", "sqrt", "none")
    assert info.state_bytes.value >= 0


@pytest.mark.parametrize("name", list_optimizers())
@pytest.mark.parametrize("task", knowledge.TASKS)
def test_defaults_are_consistent(name: str, task: str) -> None:
    d = knowledge.defaults(name, task)
    lo, hi = d.lr_range.value
    assert 0 < lo < hi
    assert lo <= d.hparams["lr"].value <= hi, (name, task)
    # every default is an argument the optimizer's constructor takes
    factory = get_entry(name).factory
    accepted = set(inspect.signature(factory.__init__).parameters)
    assert set(d.hparams) <= accepted, set(d.hparams) - accepted
    if "betas" in d.hparams:
        assert all(0 <= b < 1 for b in d.hparams["betas"].value)
    assert d.hparams.get("weight_decay", Fact(0.0, "")).value >= 0


def value(name: str, key: str, task: str | None = None) -> object:
    return knowledge.defaults(name, task).hparams[key].value


def test_established_practice_values() -> None:
    # SGD: 0.1 @ 256, momentum 0.9, Nesterov, wd 1e-4 (5e-4 small data)
    assert value("sgd", "lr", "vision_cnn") == 0.1
    assert knowledge.defaults("sgd", "vision_cnn").reference_batch.value == 256
    assert value("sgd", "momentum") == 0.9 and value("sgd", "nesterov") is True
    assert value("sgd", "weight_decay", "vision_cnn") == 1e-4
    assert knowledge.get_info("sgd").extra["weight_decay_small_data"].value == 5e-4
    # AdamW
    assert value("adamw", "lr") == 1e-3 and value("adamw", "weight_decay") == 0.01
    lang = knowledge.defaults("adamw", "language_transformer")
    assert 1e-4 <= lang.hparams["lr"].value <= 5e-4
    assert lang.hparams["eps"].value == 1e-6
    assert 0.98 <= lang.hparams["betas"].value[1] <= 0.999
    vit = knowledge.defaults("adamw", "vision_transformer")
    assert 1e-3 <= vit.hparams["lr"].value <= 3e-3
    assert 0.05 <= vit.hparams["weight_decay"].value <= 0.3
    # Adam has no weight decay; RL and GAN settings
    for task in knowledge.TASKS:
        assert value("adam", "weight_decay", task) == 0.0
    assert value("adam", "lr", "rl_policy") == 3e-4
    assert value("adamw", "weight_decay", "rl_policy") == 0.0
    assert value("adam", "lr", "gan") == 2e-4 and value("adam", "betas", "gan") == (0.5, 0.999)
    # RMSprop, Adagrad
    assert value("rmsprop", "lr") == 1e-3 and value("rmsprop", "alpha") == 0.99
    assert value("adagrad", "lr") == 1e-2
    # scaling rules and state
    assert knowledge.get_info("sgd").batch_scaling.value == "linear"
    assert knowledge.get_info("adamw").batch_scaling.value == "sqrt"
    assert knowledge.get_info("adamw").state_bytes.value == 8
    assert knowledge.get_info("sgd").state_bytes.value == 4
    assert knowledge.LARGE_BATCH.value == 8192


def test_task_override_falls_back_to_general() -> None:
    d = knowledge.defaults("adamw", "vision_cnn")
    assert d.hparams["weight_decay"].value == 0.05
    assert d.hparams["lr"] is knowledge.defaults("adamw").hparams["lr"]
    assert d.lr_range is knowledge.lr_range("adamw")


def test_scale_lr() -> None:
    assert knowledge.scale_lr(0.1, 64, 256, "linear") == pytest.approx(0.025)
    assert knowledge.scale_lr(1e-3, 1024, 256, "sqrt") == pytest.approx(2e-3)
    assert knowledge.scale_lr(1e-3, 1024, 256, "none") == 1e-3
    assert math.isclose(knowledge.scale_lr(0.1, 8192, 256, "linear"), 3.2)
    with pytest.raises(ValueError, match="Invalid batch size: 0"):
        knowledge.scale_lr(0.1, 0, 256, "linear")
    with pytest.raises(ValueError, match="Unknown batch scaling rule 'cubic'"):
        knowledge.scale_lr(0.1, 1, 256, "cubic")  # type: ignore[arg-type]


def test_task_info_covers_every_task() -> None:
    for task in knowledge.TASKS:
        info = knowledge.task_info(task)
        assert info.name == task
        assert 0 <= info.warmup_fraction.value < 1
        knowledge.get_info(info.optimizer.value)


def test_unknown_names() -> None:
    with pytest.raises(ValueError, match=r"Unknown task family .visoin_cnn.*vision_cnn"):
        knowledge.check_task("visoin_cnn")
    with pytest.raises(ValueError, match="Unknown optimizer 'adamx'"):
        knowledge.get_info("adamx")


def test_info_validation() -> None:
    with pytest.raises(ValueError, match="needs lr_range"):
        knowledge.OptimizerInfo(
            name="x",
            display="X",
            family=Fact("sgd", "r"),
            paper="p",
            settings={"general": knowledge.Setting(hparams={"lr": Fact(1.0, "r")})},
            state_bytes=Fact(0.0, "r"),
            batch_scaling=Fact("none", "r"),
            warmup=Fact(False, "r"),
            best_for=Fact("x", "r"),
        )


def test_naive_setups_build_the_optimizers_their_keys_name() -> None:
    from optiwise.audit.runtime import identify_optimizer

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    assert set(knowledge.NAIVE_SETUPS) == {"adam", "sgd_plain"}
    for key, fact in knowledge.NAIVE_SETUPS.items():
        spec = dict(fact.value)
        opt = getattr(torch.optim, spec.pop("optimizer"))(model.parameters(), **spec)
        assert identify_optimizer(opt) == key and fact.reason
        assert opt.defaults["lr"] == spec["lr"]
    assert knowledge.NAIVE_SETUPS["adam"].value["lr"] == 1e-3
    assert knowledge.NAIVE_SETUPS["sgd_plain"].value["lr"] == 0.01


@pytest.mark.parametrize("name", list_optimizers())
def test_requirements_are_of_the_known_kinds(name: str) -> None:
    fact = knowledge.get_info(name).extra.get("requires")
    assert fact is None or fact.value in ("closure", "sparse_gradients", "2d_params")


def test_torch_optimizers_with_requirements_say_so() -> None:
    needs = {n: knowledge.get_info(n).extra["requires"].value for n in ("lbfgs", "sparse_adam")}
    assert needs == {"lbfgs": "closure", "sparse_adam": "sparse_gradients"}
    assert knowledge.get_info("muon_2d").extra["requires"].value == "2d_params"
    assert "step(closure)" in knowledge.get_info("lbfgs").best_for.value


@pytest.mark.parametrize(
    "word, task",
    [
        ("reinforcement_learning", "rl_policy"),
        ("PPO", "rl_policy"),
        ("Reinforcement-Learning", "rl_policy"),
        ("translation", "translation"),
        ("seq2seq", "translation"),
        ("machine translation", "translation"),
        ("LLM", "causal_lm"),
        ("language_modeling", "causal_lm"),
        ("pretraining", "causal_lm"),
        ("causal-lm", "causal_lm"),
        ("bert", "language_transformer"),
        ("masked_lm", "language_transformer"),
        ("lora", "adapter_fine_tuning"),
        ("peft", "adapter_fine_tuning"),
        ("finetune", "fine_tuning"),
        ("generative", "diffusion"),
        ("object-detection", "detection"),
        ("segmentation", "segmentation"),
        ("self_supervised", "contrastive"),
        ("SimCLR", "contrastive"),
        ("ctr", "recommendation"),
        ("gnn", "graph"),
        ("ASR", "speech"),
        ("tabular", "tabular_mlp"),
    ],
)
def test_task_words_people_use(word: str, task: str) -> None:
    assert knowledge.check_task(word) == task


def test_every_task_names_itself_and_synonyms_name_real_tasks() -> None:
    for task in knowledge.TASKS:
        assert knowledge.check_task(task) == task
        assert knowledge.check_task(task.upper().replace("_", "-")) == task
    assert set(knowledge.TASK_SYNONYMS.values()) == set(knowledge.TASKS)


def test_unknown_task_word_names_the_closest_and_the_families() -> None:
    with pytest.raises(ValueError, match=r"'translaton'.*did you mean 'translation'") as err:
        knowledge.check_task("translaton")
    assert "known task families: " in str(err.value) and "causal_lm" in str(err.value)
    with pytest.raises(ValueError, match=r"Unknown task family 'chess'; known task families"):
        knowledge.check_task("chess")
    with pytest.raises(ValueError, match="Invalid task: 3"):
        knowledge.check_task(3)  # type: ignore[arg-type]


def test_size_exponent_is_the_fit_of_gpt3_table() -> None:
    table = knowledge.GPT3_LR_BY_SIZE.value
    b = knowledge.LR_SIZE_EXPONENT.value
    # The fit passes through the table: its worst miss (GPT-3 Small) is below 40%.
    intercept = sum(math.log(lr) - b * math.log(n) for n, lr, _ in table) / len(table)
    for n, lr, _ in table:
        assert abs(math.log(lr) - (intercept + b * math.log(n))) < math.log(1.4), n
    assert -0.35 < b < -0.25
    # A fit through the two ends gives about the same slope.
    (n0, lr0, _), (n1, lr1, _) = table[0], table[-1]
    assert math.log(lr1 / lr0) / math.log(n1 / n0) == pytest.approx(b, abs=0.05)


def test_lr_for_size() -> None:
    b = knowledge.LR_SIZE_EXPONENT.value
    assert knowledge.lr_for_size(6e-4, 125_000_000, 125_000_000) == pytest.approx(6e-4)
    assert knowledge.lr_for_size(6e-4, 125_000_000, 1_250_000_000) == pytest.approx(6e-4 * 10**b)
    seven_b = knowledge.lr_for_size(6e-4, 125_000_000, 6_700_000_000)
    assert 1e-4 < seven_b < 2e-4  # GPT-3 6.7B trained at 1.2e-4
    tiny = knowledge.lr_for_size(6e-4, 125_000_000, 200_000)
    assert tiny > 10 * seven_b  # a 200k model and a 7B one get very different LRs
    lo, hi = knowledge.LR_SIZE_RANGE.value
    assert knowledge.lr_for_size(6e-4, 125_000_000, 10) == hi
    assert knowledge.lr_for_size(1e-5, 10, 10**15) == lo
    for bad in (0, -1, math.nan, True):
        with pytest.raises(ValueError, match="Invalid n_params"):
            knowledge.lr_for_size(1e-3, 10, bad)  # type: ignore[arg-type]


def test_new_task_families_are_sourced() -> None:
    for task in knowledge.TASKS:
        info = knowledge.task_info(task)
        for fact in (info.optimizer, info.schedule, info.warmup_fraction, info.clip_norm):
            assert len(fact.reason) > 10, (task, fact)
        for fact in info.schedule_extra.values():
            assert len(fact.reason) > 10, (task, fact)
    assert knowledge.task_info("causal_lm").schedule_extra["min_lr_ratio"].value == 0.1
    assert knowledge.task_info("diffusion").ema_decay is not None


def test_gpt3_lr_interpolates_the_table_and_extrapolates_the_fit() -> None:
    for n, lr, tokens in knowledge.GPT3_LR_BY_SIZE.value:
        got_lr, got_batch = knowledge.gpt3_lr(int(n))
        assert got_lr == pytest.approx(lr) and got_batch == pytest.approx(tokens / 2048)
    mid, batch = knowledge.gpt3_lr(1_000_000_000)  # between 760M (2.5e-4) and 1.3B (2e-4)
    assert 2e-4 < mid < 2.5e-4 and 256 < batch < 512
    small, batch = knowledge.gpt3_lr(1_250_000)  # 100x below GPT-3 Small
    assert small == pytest.approx(6e-4 * 100**-knowledge.LR_SIZE_EXPONENT.value)
    assert batch == 256
    with pytest.raises(ValueError, match="Invalid n_params: 0"):
        knowledge.gpt3_lr(0)


def test_roberta_lr_follows_its_batch_table() -> None:
    for batch, lr in knowledge.ROBERTA_LR_BY_BATCH.value:
        assert knowledge.roberta_lr(batch) == pytest.approx(lr)
    assert 7e-4 < knowledge.roberta_lr(4096) < 1e-3
    assert knowledge.roberta_lr(64) == pytest.approx(1e-4 / 2)  # sqrt rule below 256
    assert knowledge.roberta_lr(65536) == 1e-3
    with pytest.raises(ValueError, match="Invalid batch size: 0"):
        knowledge.roberta_lr(0)


def test_every_task_family_says_when_its_recipe_does_not_fit() -> None:
    described = [t for t in knowledge.TASKS if knowledge.task_info(t).limits]
    assert {"general", "causal_lm", "translation", "diffusion", "detection"} <= set(described)
