"""The advisor's result: a complete, explained, buildable training configuration.

:func:`recommend` validates the setup, inspects the model, runs the decision rules
(:mod:`optiwise.advisor.rules`) and returns a :class:`Recipe`, which can explain itself, be
written as a dict, YAML or a Python snippet, and build the optimizer, the scheduler and the
training-step :class:`~optiwise.train.Stepper`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from optiwise import _yaml, knowledge
from optiwise.advisor.inspect import FAMILIES, ModelProfile, inspect_model
from optiwise.advisor.rules import (
    PRIORITIES,
    RULES,
    Choice,
    Rule,
    Setup,
    apply_rules,
    memory_bytes,
    optimizer_steps,
)

if TYPE_CHECKING:
    from optiwise.train import Stepper

__all__ = ["MIXED_PRECISION", "Recipe", "recommend"]

MIXED_PRECISION: tuple[str | None, ...] = (None, "bf16", "fp16", "fp32")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_int(label: str, value: Any, minimum: int = 1) -> None:
    if value is not None and (not _is_int(value) or value < minimum):
        raise ValueError(f"Invalid {label}: {value!r} (must be an integer >= {minimum})")


def _check_positive(label: str, value: Any) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if value is not None and (not ok or not math.isfinite(value) or value <= 0):
        raise ValueError(f"Invalid {label}: {value!r} (must be a number > 0)")


@dataclass(frozen=True)
class Recipe:
    """A training configuration with the rule and the reason behind every choice.

    Made by :func:`recommend`.  ``choices`` maps each recipe key (``optimizer``,
    ``optimizer.lr``, ``schedule.warmup``, ``clip_norm``, ...) to its
    :class:`~optiwise.advisor.rules.Choice`.
    """

    setup: Setup
    choices: Mapping[str, Choice]
    given: Mapping[str, Choice] = field(default_factory=dict, repr=False)
    """Choices set by the caller over the rules' (:meth:`with_lr`); kept by :meth:`for_run`."""

    # ---- the decisions ---------------------------------------------------------------------

    def _value(self, key: str) -> Any:
        return self.choices[key].value

    @property
    def family(self) -> str:
        """Model family (:data:`optiwise.advisor.inspect.FAMILIES`)."""
        return self.setup.family

    @property
    def profile(self) -> ModelProfile | None:
        """What inspecting the model found (None without a model)."""
        return self.setup.profile

    @property
    def task(self) -> str:
        """The knowledge task family the recipe follows."""
        return str(self._value("task"))

    @property
    def optimizer(self) -> str:
        """Registry name of the optimizer."""
        return str(self._value("optimizer"))

    @property
    def hparams(self) -> dict[str, Any]:
        """The optimizer's hyperparameters, by torch's argument names."""
        prefix = "optimizer."
        return {k[len(prefix) :]: c.value for k, c in self.choices.items() if k.startswith(prefix)}

    @property
    def accumulation(self) -> int:
        """Batches accumulated per optimizer step."""
        return int(self._value("accumulation"))

    @property
    def effective_batch_size(self) -> int:
        """Samples per optimizer step (batch x world size x accumulation)."""
        return self.setup.global_batch * self.accumulation

    @property
    def total_steps(self) -> int | None:
        """Optimizer steps in the run (None until the epoch length is known)."""
        return optimizer_steps(self.setup, self.accumulation)

    @property
    def schedule(self) -> str | None:
        """Schedule name for :func:`optiwise.create_scheduler`, or None for a constant LR."""
        value = self._value("schedule")
        return None if value is None else str(value)

    @property
    def warmup_steps(self) -> int | None:
        """Warmup steps (None until the run length is known)."""
        value = self._value("schedule.warmup")
        return None if value is None else int(value)

    @property
    def schedule_hparams(self) -> dict[str, Any]:
        """Keyword arguments of :func:`optiwise.create_scheduler` (empty without a schedule)."""
        if self.schedule is None:
            return {}
        out: dict[str, Any] = {"total_steps": self.total_steps, "warmup": self.warmup_steps}
        for key, choice in self.choices.items():
            if key.startswith("schedule.") and key != "schedule.warmup":
                value = choice.value
                out[key[len("schedule.") :]] = list(value) if isinstance(value, tuple) else value
        return out

    @property
    def limits(self) -> str:
        """When the task family's recipe does not fit (empty when nothing is known)."""
        return knowledge.task_info(self.task).limits

    @property
    def no_decay(self) -> str:
        """The no-weight-decay rule for :func:`optiwise.param_groups`."""
        return str(self._value("no_decay"))

    @property
    def layer_decay(self) -> float | None:
        """Layer-wise LR decay factor, or None."""
        value = self._value("layer_decay")
        return None if value is None else float(value)

    @property
    def lr_mult(self) -> dict[str, float] | None:
        """LR multipliers by module prefix (the fine-tuning head), or None."""
        value = self._value("lr_mult")
        return None if value is None else dict(value)

    @property
    def clip_norm(self) -> float | None:
        """Global gradient-norm clipping threshold, or None."""
        value = self._value("clip_norm")
        return None if value is None else float(value)

    @property
    def amp(self) -> str | None:
        """Autocast dtype: ``"bf16"``, ``"fp16"`` or None."""
        value = self._value("amp")
        return None if value is None else str(value)

    @property
    def ema_decay(self) -> float | None:
        """Decay of the weight EMA, or None."""
        value = self._value("ema_decay")
        return None if value is None else float(value)

    # ---- run length ----------------------------------------------------------------------

    def for_run(self, steps_per_epoch: int | None) -> Recipe:
        """This recipe with the epoch length set (the rules re-run with it); ``None`` leaves
        it unchanged."""
        if steps_per_epoch is None or steps_per_epoch == self.setup.steps_per_epoch:
            return self
        _check_int("steps_per_epoch", steps_per_epoch)
        if self.setup.epochs is None:
            raise ValueError(
                f"this recipe was made for total_steps={self.setup.total_steps}; "
                "steps_per_epoch applies only to a recipe given epochs"
            )
        return _recipe(replace(self.setup, steps_per_epoch=steps_per_epoch), self.given)

    def with_lr(self, lr: float, *, reason: str, source: str = "caller") -> Recipe:
        """This recipe with the optimizer's LR (the peak of the schedule) set to ``lr``, e.g.
        the LR range test's recommendation; the choice records ``reason`` and ``source``
        and shows in :meth:`explain`, :meth:`to_dict` and :meth:`to_code`."""
        _check_positive("lr", lr)
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"Invalid reason: {reason!r} (say why this LR is used)")
        choice = Choice("optimizer.lr", float(lr), "lr-given", reason, source)
        given = {**self.given, choice.key: choice}
        return Recipe(self.setup, {**self.choices, choice.key: choice}, given)

    def with_optimizer(self, name: str, *, reason: str, source: str = "caller") -> Recipe:
        """This recipe with another optimizer (a registry name); its hyperparameters become
        that optimizer's knowledge defaults for the recipe's task and batch, and an LR set
        with :meth:`with_lr` for the old optimizer is dropped."""
        from optiwise.optim.registry import canonical_name

        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"Invalid reason: {reason!r} (say why this optimizer is used)")
        canonical = canonical_name(name)
        knowledge.get_info(canonical)  # a ValueError naming the known ones otherwise
        if canonical == self.optimizer:
            return self
        choice = Choice("optimizer", canonical, "optimizer-given", reason, source)
        given = {k: c for k, c in self.given.items() if not k.startswith("optimizer")}
        return _recipe(self.setup, {**given, "optimizer": choice})

    def _resolved(self, steps_per_epoch: int | None) -> Recipe:
        recipe = self.for_run(steps_per_epoch)
        if recipe.schedule is not None and recipe.total_steps is None:
            raise ValueError(
                f"the run length is unknown ({self.setup.epochs} epochs of an unknown number "
                "of batches); pass steps_per_epoch (batches per epoch, e.g. len(train_loader))"
            )
        return recipe

    # ---- building --------------------------------------------------------------------------

    def _optimizer_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"task": self.task, "no_decay": self.no_decay}
        if self.layer_decay is not None:
            kwargs["layer_decay"] = self.layer_decay
        if self.lr_mult is not None:
            kwargs["lr_mult"] = self.lr_mult
        kwargs.update(self.hparams)
        return kwargs

    def _stepper_kwargs(self) -> dict[str, Any]:
        return {
            "accumulation": self.accumulation,
            "clip_norm": self.clip_norm,
            "clip_value": None,
            "amp": self.amp,
            "ema_decay": self.ema_decay,
        }

    def build(
        self, model: nn.Module, steps_per_epoch: int | None = None
    ) -> tuple[Optimizer, LRScheduler | None, Stepper]:
        """The ready optimizer (with parameter groups), scheduler (None for a constant LR)
        and :class:`~optiwise.train.Stepper` for ``model``.

        ``steps_per_epoch`` (batches per epoch) is needed when the recipe was given epochs
        without a step count.
        """
        from optiwise.optim.registry import create_optimizer
        from optiwise.schedules import create_scheduler

        if not isinstance(model, nn.Module):
            raise TypeError(f"build needs the nn.Module to train, got {type(model).__name__}")
        recipe = self._resolved(steps_per_epoch)
        optimizer = create_optimizer(recipe.optimizer, model, **recipe._optimizer_kwargs())
        scheduler = None
        if recipe.schedule is not None:
            scheduler = create_scheduler(recipe.schedule, optimizer, **recipe.schedule_hparams)
        from optiwise.train import Stepper

        stepper = Stepper(optimizer, scheduler, model=model, **recipe._stepper_kwargs())
        return optimizer, scheduler, stepper

    def to_code(self, steps_per_epoch: int | None = None) -> str:
        """A Python snippet that builds the same objects as :meth:`build` with torch and
        optiwise; it expects the model in a variable named ``model``."""
        recipe = self._resolved(steps_per_epoch)

        def call(head: str, args: list[str], kwargs: Mapping[str, Any]) -> str:
            parts = [*args, *(f"{k}={v!r}" for k, v in kwargs.items())]
            return head + "(\n" + "".join(f"    {p},\n" for p in parts) + ")"

        lines = [
            f"# optiwise recipe: {recipe.optimizer} for {recipe.task}, "
            f"effective batch {recipe.effective_batch_size}.",
            "# `model` is the torch.nn.Module to train.",
            "import optiwise",
            "from optiwise.train import Stepper",
            "",
            "optimizer = "
            + call(
                "optiwise.create_optimizer",
                [repr(recipe.optimizer), "model"],
                recipe._optimizer_kwargs(),
            ),
        ]
        if recipe.schedule is None:
            lines.append("scheduler = None  # constant learning rate")
        else:
            lines.append(
                "scheduler = "
                + call(
                    "optiwise.create_scheduler",
                    [repr(recipe.schedule), "optimizer"],
                    recipe.schedule_hparams,
                )
            )
        lines.append(
            "stepper = "
            + call(
                "Stepper",
                ["optimizer", "scheduler"],
                {"model": _Name("model"), **recipe._stepper_kwargs()},
            )
        )
        return "\n".join(lines) + "\n"

    # ---- description -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON/YAML-ready): the optimizer's registry name under
        ``optimizer.name`` and its torch arguments under ``optimizer.hparams``; likewise for
        the schedule; every choice with its rule, reason and source under ``choices``."""

        def plain(value: Any) -> Any:
            if isinstance(value, tuple):
                return [plain(v) for v in value]
            if isinstance(value, Mapping):
                return {k: plain(v) for k, v in value.items()}
            return value

        n_params = self.profile.n_params if self.profile is not None else self.setup.n_params
        return {
            "family": self.family,
            "task": self.task,
            "model": self.profile.to_dict() if self.profile is not None else None,
            "n_params": n_params,
            "priority": self.setup.priority,
            "batch": {
                "batch_size": self.setup.batch_size,
                "world_size": self.setup.world_size,
                "accumulation": self.accumulation,
                "effective_batch_size": self.effective_batch_size,
            },
            "run": {
                "epochs": self.setup.epochs,
                "steps_per_epoch": self.setup.steps_per_epoch,
                "total_steps": self.total_steps,
            },
            "optimizer": {"name": self.optimizer, "hparams": plain(self.hparams)},
            "param_groups": {
                "no_decay": self.no_decay,
                "layer_decay": self.layer_decay,
                "lr_mult": self.lr_mult,
            },
            "schedule": {"name": self.schedule, "hparams": self.schedule_hparams},
            "clip_norm": self.clip_norm,
            "amp": self.amp,
            "ema_decay": self.ema_decay,
            "limits": self.limits,
            "choices": [plain(c.to_dict()) for c in self.choices.values()],
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)

    def to_yaml(self) -> str:
        """:meth:`to_dict` as a YAML document."""
        return _yaml.dump(self.to_dict())

    def explain(self) -> str:
        """The recipe in words: every choice, its value, the rule and the reason."""
        info = knowledge.get_info(self.optimizer)
        steps = f"{self.total_steps:,} optimizer steps" if self.total_steps else "steps unknown"
        head = [
            f"Recipe for a {self.family} model (task family {self.task}), priority "
            f"{self.setup.priority}",
            f"  batch {self.setup.batch_size} x {self.setup.world_size} process(es) x "
            f"{self.accumulation} accumulation = {self.effective_batch_size} per step; {steps}",
        ]
        if self.profile is not None:
            head.append(f"  model: {self.profile.summary()}")
        if self.limits:
            head.append(f"  when this recipe does not fit: {self.limits}")
        n = self.profile.n_params if self.profile is not None else self.setup.n_params
        if n is not None:
            head.append(
                f"  fp32 weights + gradients + {info.display} state: "
                f"{memory_bytes(n, self.optimizer) / 2**30:.3g} GiB"
            )
        body = []
        for key, choice in self.choices.items():
            value = choice.value
            if key == "optimizer":
                value = f"{info.display} ({value})"
            body.append(f"{key} = {value!r}" if not isinstance(value, str) else f"{key} = {value}")
            body.append(f"    [{choice.rule}] {choice.reason} (source: {choice.source})")
        return "\n".join([*head, "", *body])


class _Name:
    """A variable name inside generated code (its repr is the bare name)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def _recipe(setup: Setup, given: Mapping[str, Choice] | None = None) -> Recipe:
    given = dict(given or {})
    rules = RULES
    chosen = given.get("optimizer")
    if chosen is not None:
        # The optimizer is set before the hyperparameter rules, so its own defaults follow.
        at = next(i for i, r in enumerate(RULES) if r.name == "knowledge-defaults")
        override = Rule(
            chosen.rule,
            lambda s, d: True,
            lambda s, d: {"optimizer": chosen.value},
            chosen.reason,
            chosen.source,
        )
        rules = (*RULES[:at], override, *RULES[at:])
    draft = apply_rules(setup, rules)
    for key, choice in given.items():
        if key != "optimizer":
            draft.set(choice)
    return Recipe(setup=setup, choices=draft.choices(), given=given)


def recommend(
    model: nn.Module | None = None,
    *,
    family: str | None = None,
    task: str | None = None,
    batch_size: int,
    epochs: float | None = None,
    total_steps: int | None = None,
    steps_per_epoch: int | None = None,
    dataset_size: int | None = None,
    pretrained: bool = False,
    priority: str = "final_quality",
    memory_budget_gb: float | None = None,
    world_size: int = 1,
    mixed_precision: str | None = None,
    n_params: int | None = None,
    strong_augmentation: bool = False,
) -> Recipe:
    """Recommend a complete, explained training recipe for a model and setup.

    Parameters
    ----------
    model:
        The model; inspected for its family, size, head and numbered blocks.  Without it,
        give ``family`` (and ``n_params`` for memory advice).
    family:
        Model family (:data:`optiwise.advisor.inspect.FAMILIES`); overrides the inspection.
    task:
        Task family, for what a model cannot show; overrides the family's task.  Any word of
        :data:`optiwise.knowledge.TASK_SYNONYMS` (``"ppo"``, ``"seq2seq"``, ``"llm"``,
        ``"lora"``, ``"diffusion"``, ...), in any case; an unknown word raises a ValueError
        naming the closest ones.
    batch_size:
        Samples per ``backward`` per process.
    epochs, total_steps:
        The run length: epochs (with ``steps_per_epoch`` or ``dataset_size``, or later at
        :meth:`Recipe.build`) or optimizer steps.  One of them is required.
    steps_per_epoch:
        Batches per epoch (``len(train_loader)``).
    dataset_size:
        Training examples; sets ``steps_per_epoch`` when it is not given and the small-data
        weight decay.
    pretrained:
        Fine-tuning from pretrained weights.
    priority:
        ``"final_quality"``, ``"fast_convergence"`` (Muon, or SOAP within a memory budget, for
        transformer pretraining), ``"low_memory"`` or ``"no_tuning"`` (Prodigy: no LR to
        tune).
    memory_budget_gb:
        GiB available for fp32 weights, gradients and optimizer state (activations excluded).
    world_size:
        Data-parallel processes.
    mixed_precision:
        ``"bf16"``, ``"fp16"``, ``"fp32"`` or None (not decided: the recipe says what to use).
    n_params:
        Parameter count when no model is given.
    strong_augmentation:
        RandAugment/Mixup/CutMix-style augmentation (lowers a ViT's weight decay).
    """
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if model is not None and n_params is not None:
        raise ValueError("give a model or n_params, not both (the model's count is used)")
    _check_int("batch_size", batch_size)
    _check_int("world_size", world_size)
    _check_int("total_steps", total_steps)
    _check_int("steps_per_epoch", steps_per_epoch)
    _check_int("dataset_size", dataset_size)
    _check_int("n_params", n_params)
    _check_positive("epochs", epochs)
    _check_positive("memory_budget_gb", memory_budget_gb)
    if epochs is None and total_steps is None:
        raise ValueError(
            "the run length is missing: give epochs (with steps_per_epoch or dataset_size) "
            "or total_steps"
        )
    if epochs is not None and total_steps is not None:
        raise ValueError("give epochs or total_steps, not both")
    if priority not in PRIORITIES:
        raise ValueError(f"Invalid priority: {priority!r} (use one of {', '.join(PRIORITIES)})")
    if mixed_precision not in MIXED_PRECISION:
        raise ValueError(
            f"Invalid mixed_precision: {mixed_precision!r} (use 'bf16', 'fp16', 'fp32' or None)"
        )
    if not isinstance(pretrained, bool):
        raise ValueError(f"Invalid pretrained: {pretrained!r} (must be True or False)")
    if family is not None and family not in FAMILIES:
        raise knowledge._unknown("model family", family, list(FAMILIES))
    if task is not None:
        task = knowledge.check_task(task)  # a synonym ("ppo", "seq2seq") names its family

    profile = inspect_model(model) if model is not None else None
    if memory_budget_gb is not None and profile is None and n_params is None:
        raise ValueError("memory_budget_gb needs the parameter count: give a model or n_params")
    if family is not None:
        evidence: tuple[str, ...] = ("family given",)
        if profile is not None and profile.family != family:
            evidence = (f"family given (inspection found {profile.family})",)
    elif profile is not None:
        family, evidence = profile.family, profile.evidence
    else:
        family = "unknown"
        evidence = ("no model or family given: using the general defaults",)
    setup = Setup(
        family=family,
        family_evidence=evidence,
        profile=profile,
        n_params=profile.n_params if profile is not None else n_params,
        task=task,
        batch_size=batch_size,
        world_size=world_size,
        epochs=epochs,
        total_steps=total_steps,
        steps_per_epoch=steps_per_epoch,
        dataset_size=dataset_size,
        pretrained=pretrained,
        priority=priority,
        memory_budget_gb=memory_budget_gb,
        mixed_precision=mixed_precision,
        strong_augmentation=strong_augmentation,
    )
    return _recipe(setup)
