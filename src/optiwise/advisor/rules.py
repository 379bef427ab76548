"""The advisor's decision framework, as data.

Each :class:`Rule` is a condition on the setup (and on what earlier rules chose), an action
that sets one or more recipe keys, the reason, and its source.  :func:`apply_rules` runs
:data:`RULES` in order; a later rule that fires overrides the keys an earlier one set, so the
list goes from the general default to the specific exception.  Every number comes from
:mod:`optiwise.knowledge`.

Recipe keys: ``task``, ``accumulation``, ``optimizer``, ``optimizer.<hparam>`` (torch's
argument names), ``no_decay``, ``layer_decay``, ``lr_mult``, ``schedule``,
``schedule.warmup`` (steps), ``clip_norm``, ``amp``, ``ema_decay``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from optiwise import knowledge
from optiwise.advisor.inspect import ModelProfile, family_task
from optiwise.knowledge import Fact

__all__ = [
    "PRIORITIES",
    "RULES",
    "Choice",
    "Draft",
    "Rule",
    "Setup",
    "apply_rules",
    "memory_bytes",
    "optimizer_steps",
    "warmup_steps",
]

PRIORITIES: tuple[str, ...] = ("final_quality", "fast_convergence", "low_memory", "no_tuning")
_TRANSFORMER_TASKS = ("language_transformer", "vision_transformer")
# Pretraining recipes tuned at large batches: a small batch accumulates to them.
_PRETRAIN_TASKS = ("language_transformer", "vision_transformer", "causal_lm")
_ADAM_LIKE = ("adam", "adamw")
# Optimizers whose LR is Adam's and moves with the model size (lr_for_size).
_SIZE_SCALED = ("adam", "adamw", "adamw8bit", "nadam", "radam", "muon")
# The memory ladder for Adam-family recipes, by falling optimizer-state bytes per parameter.
_LADDER_WITH_LION = ("lion", "adamw8bit", "lion8bit", "adafactor")
_LADDER = ("adamw8bit", "adafactor")
# Lion's facts cover these tasks; elsewhere (RL, GAN, RNN) its general LR/decay do not apply.
_LION_TASKS = ("general", "language_transformer", "vision_transformer", "fine_tuning")


@dataclass(frozen=True)
class Setup:
    """The validated inputs of :func:`optiwise.recommend`.

    ``batch_size`` is per process; ``steps_per_epoch`` counts batches of that size (one per
    ``backward``); ``total_steps`` counts optimizer steps.
    """

    family: str
    family_evidence: tuple[str, ...]
    profile: ModelProfile | None
    n_params: int | None
    task: str | None
    batch_size: int
    world_size: int = 1
    epochs: float | None = None
    total_steps: int | None = None
    steps_per_epoch: int | None = None
    dataset_size: int | None = None
    pretrained: bool = False
    priority: str = "final_quality"
    memory_budget_gb: float | None = None
    mixed_precision: str | None = None
    strong_augmentation: bool = False

    @property
    def global_batch(self) -> int:
        """Samples per ``backward`` over all processes."""
        return self.batch_size * self.world_size

    def to_dict(self) -> dict[str, Any]:
        """The inputs as plain data (the model as its profile)."""
        return {
            "family": self.family,
            "n_params": self.n_params,
            "task": self.task,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
            "epochs": self.epochs,
            "total_steps": self.total_steps,
            "steps_per_epoch": self.steps_per_epoch,
            "dataset_size": self.dataset_size,
            "pretrained": self.pretrained,
            "priority": self.priority,
            "memory_budget_gb": self.memory_budget_gb,
            "mixed_precision": self.mixed_precision,
            "strong_augmentation": self.strong_augmentation,
        }


@dataclass(frozen=True)
class Choice:
    """One decision of a recipe: the value, the rule that made it, why, and the source."""

    key: str
    value: Any
    rule: str
    reason: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form."""
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        if isinstance(value, Mapping):
            value = dict(value)
        return {
            "key": self.key,
            "value": value,
            "rule": self.rule,
            "reason": self.reason,
            "source": self.source,
        }


class Draft:
    """The choices made so far, by key."""

    def __init__(self) -> None:
        self._choices: dict[str, Choice] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._choices

    def __iter__(self) -> Iterator[str]:
        return iter(self._choices)

    def __getitem__(self, key: str) -> Any:
        return self._choices[key].value

    def get(self, key: str, default: Any = None) -> Any:
        """The value chosen for ``key``, or ``default``."""
        choice = self._choices.get(key)
        return default if choice is None else choice.value

    def choice(self, key: str) -> Choice:
        """The :class:`Choice` for ``key``."""
        return self._choices[key]

    def set(self, choice: Choice) -> None:
        """Record ``choice``, replacing any earlier one for its key."""
        self._choices[choice.key] = choice

    def drop(self, prefix: str) -> None:
        """Forget every key starting with ``prefix``."""
        for key in [k for k in self._choices if k.startswith(prefix)]:
            del self._choices[key]

    def choices(self) -> dict[str, Choice]:
        """Every choice, by key, in the order first made."""
        return dict(self._choices)


Condition = Callable[[Setup, Draft], bool]
Action = Callable[[Setup, Draft], Mapping[str, Any]]


@dataclass(frozen=True)
class Rule:
    """A decision rule: when ``condition`` holds, ``action`` sets recipe keys.

    A value returned by the action may be a :class:`~optiwise.knowledge.Fact`; its own reason
    is then added to the rule's.  ``reason`` may be a function of the setup and draft.
    """

    name: str
    condition: Condition
    action: Action
    reason: str | Callable[[Setup, Draft], str]
    source: str

    def fire(self, setup: Setup, draft: Draft) -> bool:
        """Apply the rule to ``draft`` if its condition holds; whether it fired."""
        if not self.condition(setup, draft):
            return False
        reason = self.reason(setup, draft) if callable(self.reason) else self.reason
        for key, value in self.action(setup, draft).items():
            if isinstance(value, Fact):
                text = f"{reason}: {value.reason}" if reason else value.reason
                draft.set(Choice(key, value.value, self.name, text, self.source))
            else:
                draft.set(Choice(key, value, self.name, reason, self.source))
        return True


# --------------------------------------------------------------------------------------------
# Derived quantities
# --------------------------------------------------------------------------------------------


def effective_batch(setup: Setup, draft: Draft) -> int:
    """Samples per optimizer step: global batch times accumulation."""
    return setup.global_batch * int(draft.get("accumulation", 1))


def optimizer_steps(setup: Setup, accumulation: int) -> int | None:
    """Optimizer steps in the run, or None when the length is not known yet."""
    if setup.total_steps is not None:
        return setup.total_steps
    per_epoch = setup.steps_per_epoch
    if per_epoch is None and setup.dataset_size is not None:
        per_epoch = math.ceil(setup.dataset_size / setup.global_batch)
    if setup.epochs is None or per_epoch is None:
        return None
    return max(1, math.ceil(setup.epochs * per_epoch / accumulation))


def _steps(setup: Setup, draft: Draft) -> int | None:
    return optimizer_steps(setup, int(draft.get("accumulation", 1)))


def warmup_steps(task: str, total: int | None) -> int | None:
    """Warmup steps of ``task``'s schedule for a run of ``total`` optimizer steps."""
    if total is None:
        return None
    info = knowledge.task_info(task)
    cap = round(info.warmup_fraction.value * total)
    if info.warmup_fraction.value > 0:
        cap = max(1, cap)
    if info.warmup_steps.value is not None:
        return min(info.warmup_steps.value, cap)
    return cap


def memory_bytes(n_params: int, optimizer: str) -> int:
    """fp32 weights, gradients and optimizer state of ``n_params`` parameters."""
    fp32 = torch.float32.itemsize
    return math.ceil(n_params * (2 * fp32 + knowledge.get_info(optimizer).state_bytes.value))


def _n_params(setup: Setup) -> int | None:
    return setup.profile.n_params if setup.profile is not None else setup.n_params


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def _budget(setup: Setup) -> float:
    assert setup.memory_budget_gb is not None
    return setup.memory_budget_gb * 2**30


def _info(name: str) -> knowledge.OptimizerInfo:
    return knowledge.get_info(name)


def _always(setup: Setup, draft: Draft) -> bool:
    return True


# --------------------------------------------------------------------------------------------
# Actions that need more than one line
# --------------------------------------------------------------------------------------------


def _hparams(setup: Setup, draft: Draft) -> dict[str, Any]:
    name, task = draft["optimizer"], draft["task"]
    info = _info(name)
    dflt = knowledge.defaults(name, task)
    batch = effective_batch(setup, draft)
    scaling = knowledge.task_info(task).batch_scaling or info.batch_scaling
    out: dict[str, Any] = {}
    for key, fact in dflt.hparams.items():
        if key == "lr":
            ref, rule = dflt.reference_batch.value, scaling.value
            scaled = knowledge.scale_lr(fact.value, batch, ref, rule)
            if batch != ref and rule != "none":
                fact = Fact(
                    scaled,
                    f"{fact.value:g} at batch {ref} ({fact.reason}), scaled by the {rule} "
                    f"rule to batch {batch} ({scaling.reason})",
                )
        out[f"optimizer.{key}"] = fact
    draft.drop("optimizer.")
    return out


def _ladder(setup: Setup, draft: Draft) -> tuple[str, ...]:
    return _LADDER_WITH_LION if draft["task"] in _LION_TASKS else _LADDER


def _over_budget(setup: Setup, draft: Draft) -> bool:
    n = _n_params(setup)
    if setup.memory_budget_gb is None or n is None or draft["optimizer"] not in _ADAM_LIKE:
        return False
    return memory_bytes(n, draft["optimizer"]) > _budget(setup)


def _fit_budget(setup: Setup, draft: Draft) -> dict[str, Any]:
    n = _n_params(setup)
    assert n is not None
    ladder = _ladder(setup, draft)
    for name in ladder:
        if memory_bytes(n, name) <= _budget(setup):
            return {"optimizer": name}
    return {"optimizer": ladder[-1]}


def _budget_reason(setup: Setup, draft: Draft) -> str:
    n = _n_params(setup)
    assert n is not None
    current = draft["optimizer"]
    parts = [f"{name} {_gib(memory_bytes(n, name))}" for name in (current, *_ladder(setup, draft))]
    return (
        f"fp32 weights + gradients + optimizer state of {n:,} parameters exceed the "
        f"{setup.memory_budget_gb:g} GiB budget with {current}; first that fits, by state "
        f"bytes per parameter ({', '.join(parts)}; activations not counted)"
    )


def _schedule(setup: Setup, draft: Draft) -> dict[str, Any]:
    task = draft["task"]
    info = knowledge.task_info(task)
    total = _steps(setup, draft)
    warm = warmup_steps(task, total)
    if info.schedule.value == "constant" and info.warmup_fraction.value == 0:
        return {"schedule": Fact(None, info.schedule.reason), "schedule.warmup": 0}
    if info.warmup_steps.value is not None:
        reason = f"{info.warmup_steps.reason}; {info.warmup_fraction.reason}"
    else:
        reason = f"{info.warmup_fraction.value:.0%} of the run: {info.warmup_fraction.reason}"
    out: dict[str, Any] = {"schedule": info.schedule, "schedule.warmup": Fact(warm, reason)}
    for key, fact in info.schedule_extra.items():
        if key == "milestones":
            # Fractions of the run, counted from the end of the warmup (the torch schedule
            # starts after it).
            steps = (
                None
                if total is None or warm is None
                else [max(1, round(f * total) - warm) for f in fact.value]
            )
            out["schedule.milestones"] = Fact(steps, fact.reason)
        else:
            out[f"schedule.{key}"] = fact
    return out


def _needs_batch_warmup(setup: Setup, draft: Draft) -> bool:
    batch = effective_batch(setup, draft)
    linear = _info(draft["optimizer"]).batch_scaling.value == "linear"
    large = batch >= knowledge.LARGE_BATCH.value or (
        linear and batch >= knowledge.WARMUP_BATCH.value
    )
    if not large:
        return False
    warm = draft.get("schedule.warmup")
    total = _steps(setup, draft)
    if total is None:
        return draft.get("schedule") is None
    return (warm or 0) < round(knowledge.SCHEDULE_WARMUP_FRACTION.value * total)


def _batch_warmup(setup: Setup, draft: Draft) -> dict[str, Any]:
    total = _steps(setup, draft)
    warm = (
        None if total is None else max(1, round(knowledge.SCHEDULE_WARMUP_FRACTION.value * total))
    )
    out: dict[str, Any] = {"schedule.warmup": Fact(warm, knowledge.SCHEDULE_WARMUP_FRACTION.reason)}
    if draft.get("schedule") is None:
        out["schedule"] = "warmup_constant"
    return out


def _ema_fits(setup: Setup, draft: Draft) -> bool:
    total = _steps(setup, draft)
    if total is None:
        return False
    horizon = 1.0 / (1.0 - knowledge.EMA_DECAY.value)
    return horizon <= knowledge.EMA_MAX_HORIZON_FRACTION.value * total


def _head_mult() -> Fact[float]:
    return _info("adamw").extra["head_lr_mult"]


def _sized(setup: Setup, draft: Draft) -> bool:
    anchor = knowledge.task_info(draft["task"]).size_anchor
    return (
        anchor is not None
        and _n_params(setup) is not None
        and draft["optimizer"] in _SIZE_SCALED
        and "optimizer.lr" in draft
    )


def _table_factor(setup: Setup, draft: Draft) -> float:
    """GPT-3's LR at this size over its LR at the anchor, with the batch of the table at
    this size (the recipe's LR was scaled from the anchor's batch)."""
    info = knowledge.task_info(draft["task"])
    assert info.size_anchor is not None
    n = _n_params(setup)
    assert n is not None
    lr_n, batch_n = knowledge.gpt3_lr(n)
    lr_a, batch_a = knowledge.gpt3_lr(info.size_anchor.value)
    scaling = info.batch_scaling or _info(draft["optimizer"]).batch_scaling
    return (lr_n / lr_a) * (knowledge.scale_lr(1.0, round(batch_a), round(batch_n), scaling.value))


def _size_lr(setup: Setup, draft: Draft) -> dict[str, Any]:
    info = knowledge.task_info(draft["task"])
    anchor = info.size_anchor
    n = _n_params(setup)
    assert anchor is not None and n is not None
    lr = float(draft["optimizer.lr"])
    if info.size_table:
        lo, hi = knowledge.LR_SIZE_RANGE.value
        return {"optimizer.lr": min(hi, max(lo, lr * _table_factor(setup, draft)))}
    return {"optimizer.lr": knowledge.lr_for_size(lr, anchor.value, n)}


def _size_reason(setup: Setup, draft: Draft) -> str:
    info = knowledge.task_info(draft["task"])
    anchor = info.size_anchor
    n = _n_params(setup)
    assert anchor is not None and n is not None
    b = knowledge.LR_SIZE_EXPONENT
    lo, hi = knowledge.LR_SIZE_RANGE.value
    start = (
        f"{draft['optimizer.lr']:.3g} ({draft.choice('optimizer.lr').reason}) is the LR of a "
        f"{anchor.value:,}-parameter model ({anchor.reason}); this one has {n:,}"
    )
    if info.size_table:
        lr_n, batch_n = knowledge.gpt3_lr(n)
        scaling = info.batch_scaling or _info(draft["optimizer"]).batch_scaling
        moved = (
            f"kept at this batch ({scaling.reason})"
            if scaling.value == "none"
            else f"moved to this batch by the {scaling.value} rule"
        )
        return (
            f"{start}: GPT-3's table gives {lr_n:.3g} at {batch_n:.0f} sequences per batch at "
            f"this size ({knowledge.GPT3_LR_BY_SIZE.reason}; interpolated in log-log, "
            f"extrapolated as N^{b.value:g} outside 125M-175B), {moved}, kept within "
            f"[{lo:g}, {hi:g}]"
        )
    return (
        f"{start}, so x ({n:,} / {anchor.value:,})^{b.value:g} ({b.reason}), kept within "
        f"[{lo:g}, {hi:g}]"
    )


def _has_sparse_tables(setup: Setup, draft: Draft) -> bool:
    return setup.profile is not None and bool(setup.profile.sparse_tables)


def _task_ema(setup: Setup, draft: Draft) -> bool:
    return (
        knowledge.task_info(draft["task"]).ema_decay is not None
        and setup.priority != "low_memory"
        and _ema_fits(setup, draft)
    )


# --------------------------------------------------------------------------------------------
# The rules, in order
# --------------------------------------------------------------------------------------------

_K = "optiwise.knowledge"

RULES: tuple[Rule, ...] = (
    # ---- task family --------------------------------------------------------------------
    Rule(
        "task-from-family",
        _always,
        lambda s, d: {"task": family_task(s.family)},
        lambda s, d: f"the model is a {s.family} ({'; '.join(s.family_evidence)})",
        "optiwise.advisor.inspect",
    ),
    Rule(
        "fine-tuning",
        lambda s, d: s.pretrained and s.task is None and d["task"] != "adapter_fine_tuning",
        lambda s, d: {"task": "fine_tuning"},
        "the model starts from pretrained weights",
        f"{_K}.TASK_INFO['fine_tuning']",
    ),
    Rule(
        "task-given",
        lambda s, d: s.task is not None,
        lambda s, d: {"task": s.task},
        "task family given",
        "caller",
    ),
    # ---- batch --------------------------------------------------------------------------
    Rule(
        "no-accumulation",
        _always,
        lambda s, d: {"accumulation": 1},
        "the batch already matches the recipe",
        "default",
    ),
    Rule(
        "accumulate-to-pretraining-batch",
        lambda s, d: (
            d["task"] in _PRETRAIN_TASKS and s.global_batch < knowledge.MIN_PRETRAIN_BATCH.value
        ),
        lambda s, d: {
            "accumulation": Fact(
                math.ceil(knowledge.MIN_PRETRAIN_BATCH.value / s.global_batch),
                knowledge.MIN_PRETRAIN_BATCH.reason,
            )
        },
        lambda s, d: f"a batch of {s.global_batch} is small for transformer pretraining",
        f"{_K}.MIN_PRETRAIN_BATCH",
    ),
    # ---- optimizer ----------------------------------------------------------------------
    Rule(
        "task-default-optimizer",
        _always,
        lambda s, d: {"optimizer": knowledge.task_info(d["task"]).optimizer},
        lambda s, d: f"the standard optimizer for {d['task']}",
        f"{_K}.TASK_INFO",
    ),
    Rule(
        "small-batch-adam",
        lambda s, d: (
            d["task"] == "vision_cnn"
            and d["optimizer"] == "sgd"
            and s.batch_size < knowledge.SMALL_BATCH.value
        ),
        lambda s, d: {"optimizer": Fact("adamw", knowledge.SMALL_BATCH.reason)},
        lambda s, d: f"{s.batch_size} samples per device is a small batch",
        f"{_K}.SMALL_BATCH",
    ),
    Rule(
        "fast-convergence-adam",
        lambda s, d: (
            d["task"] == "vision_cnn"
            and d["optimizer"] == "sgd"
            and s.priority == "fast_convergence"
        ),
        lambda s, d: {"optimizer": "adamw"},
        "priority is fast convergence: Adam-family optimizers reach a good loss in fewer "
        "epochs, while SGD's advantage is the final accuracy (Wilson et al. 2017)",
        f"{_K}.OPTIMIZERS['sgd'].best_for",
    ),
    Rule(
        "large-batch-lars",
        lambda s, d: (
            d["task"] == "vision_cnn" and effective_batch(s, d) >= knowledge.LARGE_BATCH.value
        ),
        lambda s, d: {"optimizer": Fact("lars", knowledge.LARGE_BATCH.reason)},
        lambda s, d: f"a vision CNN at batch {effective_batch(s, d)}",
        f"{_K}.LARGE_BATCH; You et al. 2017",
    ),
    Rule(
        "large-batch-lamb",
        lambda s, d: (
            d["task"] in _TRANSFORMER_TASKS and effective_batch(s, d) >= knowledge.LARGE_BATCH.value
        ),
        lambda s, d: {"optimizer": Fact("lamb", knowledge.LARGE_BATCH.reason)},
        lambda s, d: f"a transformer at batch {effective_batch(s, d)}",
        f"{_K}.LARGE_BATCH; You et al. 2020",
    ),
    Rule(
        "low-memory-8bit",
        lambda s, d: s.priority == "low_memory" and d["optimizer"] in _ADAM_LIKE,
        lambda s, d: {"optimizer": Fact("adamw8bit", _info("adamw8bit").best_for.reason)},
        lambda s, d: (
            f"priority is low memory: 8-bit AdamW keeps {d['optimizer']}'s recipe with "
            f"{_info('adamw8bit').state_bytes.value:g} instead of "
            f"{_info(d['optimizer']).state_bytes.value:g} state bytes per parameter"
        ),
        f"{_K}.OPTIMIZERS['adamw8bit']",
    ),
    Rule(
        "detection-transformer",
        lambda s, d: (
            d["task"] == "detection" and s.profile is not None and bool(s.profile.attention)
        ),
        lambda s, d: {"optimizer": "adamw"},
        "a detector with attention (DETR-like) trains with AdamW, not the R-CNN SGD recipe "
        "(Carion et al. 2020)",
        f"{_K}.OPTIMIZERS['adamw'].settings['detection']",
    ),
    Rule(
        "memory-budget",
        _over_budget,
        _fit_budget,
        _budget_reason,
        f"{_K}.OPTIMIZERS[...].state_bytes",
    ),
    Rule(
        "fast-pretraining-muon",
        lambda s, d: (
            s.priority == "fast_convergence"
            and not s.pretrained
            and d["task"] in knowledge.MUON_TASKS.value
            and d["optimizer"] == "adamw"
        ),
        lambda s, d: {"optimizer": Fact("muon", knowledge.MUON_TASKS.reason)},
        lambda s, d: (
            f"priority is fast convergence on {d['task']} from scratch: "
            f"{_info('muon').best_for.reason}"
        ),
        f"{_K}.MUON_TASKS; {_K}.OPTIMIZERS['muon']",
    ),
    Rule(
        "fast-pretraining-soap",
        lambda s, d: (
            s.priority == "fast_convergence"
            and not s.pretrained
            and d["task"] in ("causal_lm", "language_transformer")
            and d["optimizer"] == "muon"
            and s.memory_budget_gb is not None
            and _n_params(s) is not None
            and memory_bytes(_n_params(s) or 0, "soap") <= _budget(s)
        ),
        lambda s, d: {"optimizer": knowledge.SOAP_SPEEDUP},
        lambda s, d: (
            f"language-model pretraining for fast convergence, and SOAP's "
            f"{_gib(memory_bytes(_n_params(s) or 0, 'soap'))} fits the "
            f"{s.memory_budget_gb:g} GiB budget"
        ),
        f"{_K}.SOAP_SPEEDUP; {_K}.OPTIMIZERS['soap']",
    ),
    Rule(
        "no-tuning-prodigy",
        lambda s, d: s.priority == "no_tuning" and d["optimizer"] in _ADAM_LIKE,
        lambda s, d: {"optimizer": Fact("prodigy", _info("prodigy").best_for.reason)},
        "priority is no LR tuning: Prodigy estimates its own step size",
        f"{_K}.OPTIMIZERS['prodigy']",
    ),
    Rule(
        "sparse-embeddings",
        _has_sparse_tables,
        lambda s, d: {
            "optimizer": Fact("sparse_adam_adamw", _info("sparse_adam_adamw").best_for.reason)
        },
        lambda s, d: (
            "the embedding table(s) "
            f"{', '.join(s.profile.sparse_tables if s.profile else ())} have sparse gradients "
            "(sparse=True)"
        ),
        f"{_K}.OPTIMIZERS['sparse_adam_adamw']",
    ),
    # ---- hyperparameters ----------------------------------------------------------------
    Rule(
        "knowledge-defaults",
        _always,
        _hparams,
        lambda s, d: f"{_info(d['optimizer']).display} for {d['task']}",
        f"{_K}.defaults",
    ),
    Rule(
        "prodigy-safeguard-warmup",
        lambda s, d: d["optimizer"] == "prodigy",
        lambda s, d: {"optimizer.safeguard_warmup": True},
        lambda s, d: _info("prodigy").warmup.reason,
        f"{_K}.OPTIMIZERS['prodigy'].warmup",
    ),
    Rule(
        "encoder-lr-by-batch",
        lambda s, d: (
            d["task"] == "language_transformer"
            and d["optimizer"] in ("adamw", "adamw8bit")
            and effective_batch(s, d) > knowledge.ROBERTA_LR_BY_BATCH.value[0][0]
        ),
        lambda s, d: {
            "optimizer.lr": Fact(
                knowledge.roberta_lr(effective_batch(s, d)), knowledge.ROBERTA_LR_BY_BATCH.reason
            )
        },
        lambda s, d: f"an encoder pretrained at batch {effective_batch(s, d)}",
        f"{_K}.ROBERTA_LR_BY_BATCH; Liu et al. 2019 (RoBERTa)",
    ),
    Rule(
        "lr-by-model-size",
        _sized,
        _size_lr,
        _size_reason,
        f"{_K}.lr_for_size; {_K}.GPT3_LR_BY_SIZE",
    ),
    Rule(
        "encoder-large-batch-betas",
        lambda s, d: (
            d["task"] == "language_transformer"
            and d["optimizer"] in ("adamw", "adamw8bit")
            and effective_batch(s, d) >= knowledge.ENCODER_LARGE_BATCH.value
        ),
        lambda s, d: {"optimizer.betas": _info("adamw").extra["betas_large_batch_encoder"]},
        lambda s, d: (
            f"an encoder pretrained at batch {effective_batch(s, d)} "
            f"({knowledge.ENCODER_LARGE_BATCH.reason})"
        ),
        f"{_K}.ENCODER_LARGE_BATCH; Liu et al. 2019 (RoBERTa)",
    ),
    Rule(
        "contrastive-small-batch-sqrt",
        lambda s, d: (
            d["task"] == "contrastive"
            and d["optimizer"] == "lars"
            and effective_batch(s, d) <= knowledge.SIMCLR_SQRT_BATCH.value
        ),
        lambda s, d: {
            "optimizer.lr": Fact(
                knowledge.SIMCLR_SQRT_LR.value * math.sqrt(effective_batch(s, d)),
                knowledge.SIMCLR_SQRT_LR.reason,
            )
        },
        lambda s, d: (
            f"batch {effective_batch(s, d)} is small for SimCLR's linear rule "
            f"({knowledge.SIMCLR_SQRT_BATCH.reason})"
        ),
        f"{_K}.SIMCLR_SQRT_BATCH",
    ),
    Rule(
        "small-dataset-weight-decay",
        lambda s, d: (
            d["task"] == "vision_cnn"
            and d["optimizer"] == "sgd"
            and s.dataset_size is not None
            and s.dataset_size < knowledge.SMALL_DATASET.value
        ),
        lambda s, d: {"optimizer.weight_decay": _info("sgd").extra["weight_decay_small_data"]},
        lambda s, d: (
            f"{s.dataset_size:,} examples is a small data set ({knowledge.SMALL_DATASET.reason})"
        ),
        f"{_K}.SMALL_DATASET",
    ),
    Rule(
        "vit-strong-augmentation",
        lambda s, d: (
            d["task"] == "vision_transformer"
            and s.strong_augmentation
            and d["optimizer"] in ("adamw", "adamw8bit")
        ),
        lambda s, d: {
            "optimizer.weight_decay": _info("adamw").extra["weight_decay_strong_augmentation"]
        },
        "strong augmentation (RandAugment, Mixup, CutMix) regularizes already",
        "Touvron et al. 2021 (DeiT)",
    ),
    Rule(
        "fp16-eps",
        lambda s, d: (
            s.mixed_precision == "fp16"
            and d.get("optimizer.eps") is not None
            and d["optimizer.eps"] < knowledge.FP16_MIN_EPS.value
        ),
        lambda s, d: {"optimizer.eps": knowledge.FP16_EPS},
        lambda s, d: f"fp16 training: {knowledge.FP16_MIN_EPS.reason}",
        f"{_K}.FP16_MIN_EPS",
    ),
    # ---- parameter groups ---------------------------------------------------------------
    Rule(
        "no-decay-bias-norm-embedding",
        _always,
        lambda s, d: {"no_decay": "auto"},
        "no weight decay on biases, normalization layers, embeddings and tokens (decided by "
        "module type and shape): decaying them fights the normalization and costs accuracy",
        "Goyal et al. 2017; BERT; optiwise.params",
    ),
    Rule(
        "one-lr",
        _always,
        lambda s, d: {"layer_decay": None, "lr_mult": None},
        lambda s, d: (
            "one learning rate for every parameter group"
            if d["task"] != "fine_tuning"
            else "one learning rate for every parameter group: no model was given to find "
            "numbered blocks or an output head in"
            if s.profile is None
            else "one learning rate for every parameter group: no numbered blocks of a vision "
            "transformer and no separate output head were found to give their own LR"
        ),
        "default",
    ),
    Rule(
        "fine-tune-layer-decay",
        lambda s, d: (
            d["task"] == "fine_tuning"
            and s.family == "vision_transformer"
            and s.profile is not None
            and s.profile.n_blocks > 0
        ),
        lambda s, d: {"layer_decay": knowledge.LAYER_DECAY},
        lambda s, d: (
            f"fine-tuning a vision transformer of {s.profile.n_blocks if s.profile else 0} "
            "numbered blocks: lower blocks hold general features and move least"
        ),
        f"{_K}.LAYER_DECAY",
    ),
    Rule(
        "fine-tune-head-lr",
        lambda s, d: (
            d["task"] == "fine_tuning"
            and d["layer_decay"] is None
            and s.profile is not None
            and s.profile.head is not None
        ),
        lambda s, d: {
            "lr_mult": Fact(
                {s.profile.head if s.profile else "": _head_mult().value}, _head_mult().reason
            )
        },
        lambda s, d: (
            f"fine-tuning: the backbone keeps the low fine-tuning LR and the head "
            f"'{s.profile.head if s.profile else ''}' learns faster"
        ),
        f"{_K}.OPTIMIZERS['adamw'].extra['head_lr_mult']",
    ),
    # ---- schedule -----------------------------------------------------------------------
    Rule(
        "task-schedule",
        _always,
        _schedule,
        lambda s, d: f"the standard schedule for {d['task']}",
        f"{_K}.TASK_INFO",
    ),
    Rule(
        "large-batch-warmup",
        _needs_batch_warmup,
        _batch_warmup,
        lambda s, d: (
            f"batch {effective_batch(s, d)} with a scaled LR needs a warmup "
            f"({knowledge.WARMUP_BATCH.reason})"
        ),
        f"{_K}.WARMUP_BATCH; Goyal et al. 2017",
    ),
    # ---- clipping, precision, EMA -------------------------------------------------------
    Rule(
        "task-clipping",
        _always,
        lambda s, d: {"clip_norm": knowledge.task_info(d["task"]).clip_norm},
        lambda s, d: f"gradient clipping for {d['task']}",
        f"{_K}.TASK_INFO",
    ),
    Rule(
        "detection-transformer-clipping",
        lambda s, d: d["task"] == "detection" and d["optimizer"] == "adamw",
        lambda s, d: {"clip_norm": _info("adamw").extra["detr_clip_norm"]},
        "a DETR-like detector",
        f"{_K}.OPTIMIZERS['adamw'].extra['detr_clip_norm']",
    ),
    Rule(
        "precision-advice",
        lambda s, d: s.mixed_precision is None,
        lambda s, d: {"amp": None},
        f"full precision, as none was requested; on a GPU with bf16 pass "
        f"mixed_precision='bf16': {knowledge.MIXED_PRECISION.reason}",
        f"{_K}.MIXED_PRECISION",
    ),
    Rule(
        "precision-requested",
        lambda s, d: s.mixed_precision is not None,
        lambda s, d: {"amp": None if s.mixed_precision == "fp32" else s.mixed_precision},
        lambda s, d: {
            "bf16": "bf16 autocast, as requested",
            "fp16": "fp16 autocast with loss scaling, as requested; "
            + knowledge.MIXED_PRECISION.reason,
            "fp32": "full fp32 precision, as requested",
        }[str(s.mixed_precision)],
        f"{_K}.MIXED_PRECISION",
    ),
    Rule(
        "no-ema",
        _always,
        lambda s, d: {"ema_decay": None},
        "no weight EMA: not part of this family's reference recipe (or the run is too short "
        "or memory is the priority)",
        "default",
    ),
    Rule(
        "ema-vision",
        lambda s, d: (
            d["task"] in ("vision_cnn", "vision_transformer")
            and s.priority == "final_quality"
            and _ema_fits(s, d)
        ),
        lambda s, d: {"ema_decay": knowledge.EMA_DECAY},
        "an image model trained from scratch for final quality over a long run "
        f"({knowledge.EMA_MAX_HORIZON_FRACTION.reason})",
        f"{_K}.EMA_DECAY",
    ),
    Rule(
        "ema-task",
        _task_ema,
        lambda s, d: {"ema_decay": knowledge.task_info(d["task"]).ema_decay},
        lambda s, d: (
            f"part of the {d['task']} reference recipe, and the run is long enough "
            f"({knowledge.EMA_MAX_HORIZON_FRACTION.reason})"
        ),
        f"{_K}.TASK_INFO[...].ema_decay",
    ),
)


def apply_rules(setup: Setup, rules: tuple[Rule, ...] = RULES) -> Draft:
    """Run ``rules`` in order on ``setup``; the resulting choices."""
    draft = Draft()
    for rule in rules:
        rule.fire(setup, draft)
    return draft
