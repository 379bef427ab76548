"""The domain knowledge optiwise reasons with, as plain typed data.

Every fact is a :class:`Fact`: a value and a one-line reason (with its source where there is
one).  The advisor, the auditor, the LR finder, the registry and the CLI read these tables;
no other module hard-codes an LR range or a default hyperparameter.

Optimizer facts are keyed by the registry's canonical names.  Per optimizer there is a
``"general"`` setting and optional per-task overrides; :func:`defaults` merges them.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")

Task = Literal[
    "general",
    "vision_cnn",
    "vision_transformer",
    "language_transformer",
    "fine_tuning",
    "rnn",
    "rl_policy",
    "gan",
    "tabular_mlp",
]
ScalingRule = Literal["linear", "sqrt", "none"]

TASKS: tuple[str, ...] = (
    "general",
    "vision_cnn",
    "vision_transformer",
    "language_transformer",
    "fine_tuning",
    "rnn",
    "rl_policy",
    "gan",
    "tabular_mlp",
)


@dataclass(frozen=True)
class Fact(Generic[T]):
    """A value with the one-line reason it holds."""

    value: T
    reason: str

    def __str__(self) -> str:
        return f"{self.value!r} ({self.reason})"


@dataclass(frozen=True)
class Setting:
    """An optimizer's defaults for one task family.

    ``hparams`` uses the constructor's argument names (``lr``, ``betas``, ``momentum``,
    ``nesterov``, ``eps``, ``weight_decay``, ...).  In a per-task override every field is
    optional; missing entries fall back to the optimizer's ``"general"`` setting.
    """

    hparams: Mapping[str, Fact[Any]] = field(default_factory=dict)
    lr_range: Fact[tuple[float, float]] | None = None
    reference_batch: Fact[int] | None = None


@dataclass(frozen=True)
class Defaults:
    """The merged defaults of one optimizer for one task (see :func:`defaults`)."""

    optimizer: str
    task: str
    hparams: Mapping[str, Fact[Any]]
    lr_range: Fact[tuple[float, float]]
    reference_batch: Fact[int]


@dataclass(frozen=True)
class OptimizerInfo:
    """Everything optiwise knows about one optimizer.

    Attributes
    ----------
    name:
        Canonical registry name.
    display:
        Human-readable name (``"AdamW"``).
    family:
        Algorithm family: ``sgd``, ``adaptive``, ``sign``, ``layerwise``, ``second_order``,
        ``factored``, ``schedule_free`` or ``wrapper``.
    paper:
        Citation of the method.
    settings:
        ``"general"`` plus per-task overrides, see :class:`Setting`.
    state_bytes:
        fp32 optimizer-state bytes per parameter.
    batch_scaling:
        How the LR moves with the batch size: ``linear``, ``sqrt`` or ``none``.
    warmup:
        Whether the optimizer generally needs an LR warmup.
    best_for:
        What the optimizer is the right default for.
    extra:
        Further named facts (e.g. weight decay on small data sets).
    """

    name: str
    display: str
    family: Fact[str]
    paper: str
    settings: Mapping[str, Setting]
    state_bytes: Fact[float]
    batch_scaling: Fact[ScalingRule]
    warmup: Fact[bool]
    best_for: Fact[str]
    extra: Mapping[str, Fact[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        general = self.settings.get("general")
        if general is None or general.lr_range is None or general.reference_batch is None:
            raise ValueError(
                f"{self.name}: the 'general' setting needs lr_range and reference_batch"
            )
        if "lr" not in general.hparams:
            raise ValueError(f"{self.name}: the 'general' setting needs an 'lr'")
        unknown = set(self.settings) - set(TASKS)
        if unknown:
            raise ValueError(f"{self.name}: unknown task families {sorted(unknown)}")


@dataclass(frozen=True)
class TaskInfo:
    """Facts about a task family that hold whatever the optimizer."""

    name: str
    description: str
    optimizer: Fact[str]
    schedule: Fact[str]
    warmup_fraction: Fact[float]
    clip_norm: Fact[float | None]


def _f(value: T, reason: str) -> Fact[T]:
    return Fact(value, reason)


# --------------------------------------------------------------------------------------------
# Facts that do not belong to a single optimizer
# --------------------------------------------------------------------------------------------

LARGE_BATCH: Fact[int] = _f(
    8192,
    "above ~8k samples per step, plain SGD/Adam lose accuracy even with LR scaling and "
    "warmup; layer-wise trust ratios (LARS, LAMB) keep it (You et al. 2017, 2020)",
)
WARMUP_BATCH: Fact[int] = _f(
    1024,
    "linear LR scaling beyond ~1k samples per step needs a warmup to survive the first "
    "steps (Goyal et al. 2017 use 5 epochs when scaling ResNet-50 to 8k)",
)
FP16_MIN_EPS: Fact[float] = _f(
    1e-7,
    "fp16's smallest subnormal is ~6e-8: an eps below ~1e-7 rounds to 0 when optimizer "
    "arithmetic runs in fp16, and the Adam denominator can divide by zero",
)
CLIP_NORM: Fact[float] = _f(
    1.0,
    "global-norm clipping at 1.0 is the standard for transformers and RNNs (BERT, GPT-2, "
    "AWD-LSTM use 0.25-1.0); it only bites on loss spikes",
)
SMALL_DATASET: Fact[int] = _f(
    100_000,
    "below ~100k training examples (CIFAR-scale) models overfit sooner and take more "
    "weight decay (5e-4 for SGD on CIFAR vs 1e-4 on ImageNet)",
)
LR_FINDER_WIDEN: Fact[float] = _f(
    10.0,
    "the range test sweeps one decade beyond each end of the optimizer's typical range, "
    "so a good LR at the edge of that range is still bracketed",
)
LR_OUT_OF_RANGE_FACTOR: Fact[float] = _f(
    3.0,
    "an LR more than 3x outside the typical range is a likely mistake (e.g. an SGD LR used "
    "with Adam), not a tuning choice",
)
SCHEDULE_WARMUP_FRACTION: Fact[float] = _f(
    0.05,
    "a warmup of ~5% of the run (at least a few hundred steps on long runs) is a safe "
    "default for adaptive optimizers; BERT used 1%, GPT-3 ~0.1% of a much longer run",
)
HESSIAN_UPDATE_INTERVAL: Fact[int] = _f(
    10,
    "Sophia refreshes its diagonal Hessian estimate every k=10 steps, which keeps the "
    "estimate's overhead near 5% of training (Liu et al. 2023)",
)


# --------------------------------------------------------------------------------------------
# Per-task facts
# --------------------------------------------------------------------------------------------

_TASKS: dict[str, TaskInfo] = {
    "general": TaskInfo(
        "general",
        "anything not covered below",
        _f("adamw", "AdamW is the most forgiving default across architectures"),
        _f("warmup_cosine", "warmup + cosine to a small floor is a robust default"),
        _f(0.05, "a short warmup costs little and protects adaptive optimizers"),
        _f(None, "no clipping unless the model is recurrent or a transformer"),
    ),
    "vision_cnn": TaskInfo(
        "vision_cnn",
        "convolutional image models with BatchNorm (ResNet, VGG, EfficientNet)",
        _f(
            "sgd",
            "SGD + Nesterov momentum gives the best final accuracy on CNNs with "
            "BatchNorm (He et al. 2016; Wilson et al. 2017)",
        ),
        _f(
            "warmup_cosine",
            "cosine decay matches step decay and needs no milestones "
            "(Loshchilov & Hutter 2017; He et al. 2019 'Bag of Tricks')",
        ),
        _f(0.0, "no warmup at batch <= 1k; large batches add one (see WARMUP_BATCH)"),
        _f(None, "BatchNorm CNNs train stably without clipping"),
    ),
    "vision_transformer": TaskInfo(
        "vision_transformer",
        "ViT-style models: patch embedding followed by transformer blocks",
        _f("adamw", "ViT/DeiT train with AdamW; SGD underperforms on transformers"),
        _f("warmup_cosine", "ViT and DeiT use linear warmup then cosine decay"),
        _f(0.05, "DeiT warms up 5 of 300 epochs; ViT 10k steps"),
        _f(1.0, "ViT clips the global norm at 1.0"),
    ),
    "language_transformer": TaskInfo(
        "language_transformer",
        "transformer language-model pretraining (BERT, GPT)",
        _f("adamw", "BERT, GPT-2/3, LLaMA all pretrain with AdamW"),
        _f("warmup_linear", "BERT: linear warmup then linear decay; GPT uses cosine"),
        _f(0.01, "BERT warms up 10k of 1M steps; Adam's second moment is unreliable early"),
        _f(1.0, "BERT and GPT clip the global norm at 1.0"),
    ),
    "fine_tuning": TaskInfo(
        "fine_tuning",
        "adapting a pretrained model to a downstream task",
        _f("adamw", "low-LR AdamW is the standard for fine-tuning (Devlin et al. 2019)"),
        _f("warmup_linear", "BERT fine-tuning: short warmup, linear decay to 0"),
        _f(0.1, "BERT fine-tuning recipes warm up over the first 6-10% of steps"),
        _f(1.0, "clipping at 1.0 guards the pretrained weights against early spikes"),
    ),
    "rnn": TaskInfo(
        "rnn",
        "recurrent models (LSTM, GRU) over sequences",
        _f("adam", "Adam at 1e-3 with clipping is the standard for LSTMs"),
        _f("warmup_cosine", "a decaying schedule helps the final perplexity"),
        _f(0.0, "LSTMs with Adam rarely need warmup"),
        _f(1.0, "exploding gradients through time need global-norm clipping (Pascanu 2013)"),
    ),
    "rl_policy": TaskInfo(
        "rl_policy",
        "policy/value networks in reinforcement learning (PPO, A2C)",
        _f("adam", "PPO uses Adam at 3e-4 without weight decay (Schulman et al. 2017)"),
        _f("warmup_linear", "PPO anneals the LR linearly to 0"),
        _f(0.0, "RL data is non-stationary; no warmup in the reference setups"),
        _f(0.5, "PPO implementations clip the global norm at 0.5"),
    ),
    "gan": TaskInfo(
        "gan",
        "generative adversarial networks",
        _f("adam", "DCGAN: Adam lr 2e-4, betas (0.5, 0.999) (Radford et al. 2016)"),
        _f("constant", "GANs are usually trained at a constant LR"),
        _f(0.0, "no warmup in the reference setups"),
        _f(None, "clipping is not part of the DCGAN recipe"),
    ),
    "tabular_mlp": TaskInfo(
        "tabular_mlp",
        "MLPs on tabular or flat feature vectors",
        _f("adamw", "AdamW is the standard for tabular MLPs (Gorishniy et al. 2021)"),
        _f("warmup_cosine", "a decaying schedule improves the final loss"),
        _f(0.0, "small MLPs train stably without warmup"),
        _f(None, "small MLPs rarely need clipping"),
    ),
}
TASK_INFO: Mapping[str, TaskInfo] = MappingProxyType(_TASKS)


# --------------------------------------------------------------------------------------------
# Per-optimizer facts
# --------------------------------------------------------------------------------------------

_ADAM_BETAS = _f((0.9, 0.999), "Kingma & Ba 2015 defaults")
_ADAM_EPS = _f(1e-8, "Kingma & Ba 2015 default; raise it to >= 1e-7 for fp16 state")
_NO_WD_ADAM = _f(
    0.0,
    "Adam's weight_decay is an L2 term scaled by the adaptive denominator, not true weight "
    "decay; use AdamW for decoupled decay (Loshchilov & Hutter 2019)",
)

_SGD_GENERAL = Setting(
    hparams={
        "lr": _f(0.1, "0.1 at batch 256 with momentum 0.9 (Goyal et al. 2017)"),
        "momentum": _f(0.9, "momentum 0.9 is the universal default for SGD"),
        "nesterov": _f(
            True,
            "Nesterov momentum is never worse and often slightly better (Sutskever et al. 2013)",
        ),
        "weight_decay": _f(1e-4, "1e-4 on ImageNet-scale data (He et al. 2016)"),
    },
    lr_range=_f((0.01, 0.5), "0.1 at batch 256 is typical; below 1e-2 momentum SGD crawls"),
    reference_batch=_f(256, "ResNet's reference batch (Goyal et al. 2017)"),
)
_SGD_TASKS: dict[str, Setting] = {
    "general": _SGD_GENERAL,
    "vision_cnn": Setting(
        hparams={"weight_decay": _f(1e-4, "ResNet ImageNet recipe; 5e-4 on CIFAR-size data")},
    ),
    "fine_tuning": Setting(
        hparams={
            "lr": _f(0.01, "fine-tuning a CNN uses ~1/10 of the from-scratch LR"),
            "weight_decay": _f(1e-4, "keep the pretraining decay"),
        },
        lr_range=_f((1e-3, 0.05), "pretrained features are destroyed above ~0.05"),
    ),
}
_SGD_COMMON: dict[str, Any] = dict(
    family=_f("sgd", "stochastic gradient descent with a momentum buffer"),
    paper="Robbins & Monro 1951; Polyak 1964; Nesterov 1983; Sutskever et al. 2013",
    batch_scaling=_f(
        "linear", "linear scaling rule: lr proportional to batch size (Goyal et al. 2017)"
    ),
    warmup=_f(False, "not needed at batch <= 1k; large batches need a warmup"),
    extra={
        "weight_decay_small_data": _f(
            5e-4, "CIFAR-scale data sets take 5e-4 (Zagoruyko & Komodakis 2016)"
        ),
    },
)

_OPTIMIZERS: dict[str, OptimizerInfo] = {}


def _add(info: OptimizerInfo) -> None:
    _OPTIMIZERS[info.name] = info


_add(
    OptimizerInfo(
        name="sgd",
        display="SGD (Nesterov)",
        settings=_SGD_TASKS,
        state_bytes=_f(4.0, "one fp32 momentum buffer"),
        best_for=_f(
            "vision CNNs with BatchNorm trained from scratch; best final accuracy",
            "SGD generalizes at least as well as adaptive methods on CNNs (Wilson et al. 2017)",
        ),
        **_SGD_COMMON,
    )
)
_add(
    OptimizerInfo(
        name="sgd_momentum",
        display="SGD (heavy-ball momentum)",
        settings={
            **_SGD_TASKS,
            "general": Setting(
                hparams={
                    **_SGD_GENERAL.hparams,
                    "nesterov": _f(False, "heavy-ball (Polyak) momentum"),
                },
                lr_range=_SGD_GENERAL.lr_range,
                reference_batch=_SGD_GENERAL.reference_batch,
            ),
        },
        state_bytes=_f(4.0, "one fp32 momentum buffer"),
        best_for=_f(
            "the classic ResNet recipe; prefer the Nesterov variant",
            "identical cost, Nesterov is never worse",
        ),
        **_SGD_COMMON,
    )
)
_add(
    OptimizerInfo(
        name="sgd_plain",
        display="SGD (no momentum)",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(
                        0.1,
                        "without momentum the effective step is 10x smaller than "
                        "momentum-0.9 SGD at the same LR, so plain SGD needs a larger LR",
                    ),
                    "momentum": _f(0.0, "plain SGD: the step is -lr * gradient"),
                    "nesterov": _f(False, "Nesterov needs momentum"),
                    "weight_decay": _f(1e-4, "as for momentum SGD"),
                },
                lr_range=_f((0.01, 1.0), "plain SGD tolerates up to ~10x the momentum-SGD LR"),
                reference_batch=_f(256, "as for momentum SGD"),
            ),
        },
        state_bytes=_f(0.0, "no optimizer state"),
        best_for=_f(
            "convex problems and teaching; add momentum for deep networks",
            "momentum accelerates ill-conditioned problems (Polyak 1964)",
        ),
        **{**_SGD_COMMON, "extra": {}},
    )
)

_add(
    OptimizerInfo(
        name="adam",
        display="Adam",
        family=_f("adaptive", "per-parameter step from first/second moment estimates"),
        paper="Kingma & Ba 2015, 'Adam: A Method for Stochastic Optimization'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(1e-3, "Kingma & Ba default; works for most small/medium models"),
                    "betas": _ADAM_BETAS,
                    "eps": _ADAM_EPS,
                    "weight_decay": _NO_WD_ADAM,
                },
                lr_range=_f(
                    (1e-5, 1e-2),
                    "Adam steps are ~lr per coordinate: above 1e-2 "
                    "diverges on most nets, below 1e-5 barely moves",
                ),
                reference_batch=_f(256, "typical mini-batch for the general default"),
            ),
            "rnn": Setting(hparams={"lr": _f(1e-3, "LSTM LMs: Adam 1e-3 with clipping")}),
            "rl_policy": Setting(
                hparams={
                    "lr": _f(3e-4, "PPO's Adam LR (Schulman et al. 2017)"),
                    "eps": _f(1e-5, "PPO/baselines use eps 1e-5 for stability"),
                },
                lr_range=_f(
                    (1e-5, 1e-3), "policy gradients are noisy; LRs above 1e-3 collapse the policy"
                ),
                reference_batch=_f(64, "PPO minibatch size"),
            ),
            "gan": Setting(
                hparams={
                    "lr": _f(2e-4, "DCGAN (Radford et al. 2016)"),
                    "betas": _f(
                        (0.5, 0.999),
                        "beta1 0.5 damps the oscillation between "
                        "generator and discriminator (DCGAN)",
                    ),
                },
                lr_range=_f((5e-5, 5e-4), "GAN training is unstable above ~5e-4"),
                reference_batch=_f(128, "DCGAN batch size"),
            ),
        },
        state_bytes=_f(8.0, "two fp32 moment buffers"),
        batch_scaling=_f("sqrt", "square-root scaling for adaptive methods (Malladi et al. 2022)"),
        warmup=_f(
            True,
            "early second-moment estimates are noisy; warmup avoids bad first "
            "steps on transformers (Liu et al. 2020)",
        ),
        best_for=_f(
            "RNNs, RL, GANs, and quick baselines without weight decay",
            "fast, forgiving convergence; use AdamW when you want weight decay",
        ),
    )
)

_add(
    OptimizerInfo(
        name="adamw",
        display="AdamW",
        family=_f("adaptive", "Adam with decoupled weight decay"),
        paper="Loshchilov & Hutter 2019, 'Decoupled Weight Decay Regularization'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(1e-3, "the general Adam-family default"),
                    "betas": _ADAM_BETAS,
                    "eps": _ADAM_EPS,
                    "weight_decay": _f(0.01, "decoupled decay 0.01 is the standard default"),
                },
                lr_range=_f((1e-5, 1e-2), "as Adam: above 1e-2 diverges on most nets"),
                reference_batch=_f(256, "typical mini-batch for the general default"),
            ),
            "vision_cnn": Setting(
                hparams={"weight_decay": _f(0.05, "ConvNeXt trains with AdamW wd 0.05")},
            ),
            "vision_transformer": Setting(
                hparams={
                    "lr": _f(
                        3e-3, "ViT-B/16 on ImageNet: 3e-3 at batch 4096 (Dosovitskiy et al. 2021)"
                    ),
                    "weight_decay": _f(
                        0.3, "ViT from scratch uses wd 0.3 (0.05 with DeiT's strong augmentation)"
                    ),
                },
                lr_range=_f((1e-3, 3e-3), "ViT/DeiT LRs at batch 4096"),
                reference_batch=_f(4096, "ViT's reference batch"),
            ),
            "language_transformer": Setting(
                hparams={
                    "lr": _f(1e-4, "BERT-base pretraining: 1e-4 at batch 256 (Devlin et al. 2019)"),
                    "eps": _f(1e-6, "BERT uses eps 1e-6"),
                    "weight_decay": _f(0.01, "BERT uses decoupled decay 0.01"),
                },
                lr_range=_f(
                    (5e-5, 1e-3),
                    "BERT 1e-4 at batch 256, GPT-2/3 small 6e-4 at "
                    "batch 512; larger models take lower LRs",
                ),
                reference_batch=_f(256, "BERT's batch of 256 sequences"),
            ),
            "fine_tuning": Setting(
                hparams={
                    "lr": _f(2e-5, "BERT fine-tuning: 2e-5..5e-5 at batch 32 (Devlin et al. 2019)"),
                    "weight_decay": _f(0.01, "keep the pretraining decay"),
                },
                lr_range=_f(
                    (1e-5, 1e-4), "above ~1e-4 fine-tuning forgets the pretrained features"
                ),
                reference_batch=_f(32, "BERT fine-tuning batch"),
            ),
            "rnn": Setting(hparams={"lr": _f(1e-3, "LSTM LMs train at 1e-3 with clipping")}),
            "rl_policy": Setting(
                hparams={
                    "lr": _f(3e-4, "PPO's Adam LR (Schulman et al. 2017)"),
                    "eps": _f(1e-5, "PPO/baselines use eps 1e-5"),
                    "weight_decay": _f(0.0, "RL policies are not regularized by weight decay"),
                },
                lr_range=_f(
                    (1e-5, 1e-3), "policy gradients are noisy; LRs above 1e-3 collapse the policy"
                ),
                reference_batch=_f(64, "PPO minibatch size"),
            ),
            "gan": Setting(
                hparams={
                    "lr": _f(2e-4, "DCGAN (Radford et al. 2016)"),
                    "betas": _f((0.5, 0.999), "beta1 0.5 damps the adversarial oscillation"),
                    "weight_decay": _f(0.0, "the DCGAN recipe has no weight decay"),
                },
                lr_range=_f((5e-5, 5e-4), "GAN training is unstable above ~5e-4"),
                reference_batch=_f(128, "DCGAN batch size"),
            ),
            "tabular_mlp": Setting(
                hparams={
                    "weight_decay": _f(
                        1e-5,
                        "tabular MLP baselines tune wd in [0, 1e-3] "
                        "and land low (Gorishniy et al. 2021)",
                    )
                },
            ),
        },
        state_bytes=_f(8.0, "two fp32 moment buffers"),
        batch_scaling=_f("sqrt", "square-root scaling for adaptive methods (Malladi et al. 2022)"),
        warmup=_f(
            True,
            "early second-moment estimates are noisy; transformers need warmup (Liu et al. 2020)",
        ),
        best_for=_f(
            "transformers (language and vision), fine-tuning, and a strong general default",
            "decoupled decay makes wd and LR independent to tune",
        ),
        extra={
            "betas_language_large": _f(
                (0.9, 0.95), "GPT-3/LLaMA use beta2 0.95 for stability at scale"
            ),
            "weight_decay_strong_augmentation": _f(0.05, "DeiT: wd 0.05 with strong augmentation"),
            "head_lr_mult": _f(
                10.0, "fine-tuning: a freshly initialised head learns at ~10x the backbone LR"
            ),
        },
    )
)

_add(
    OptimizerInfo(
        name="nadam",
        display="NAdam",
        family=_f("adaptive", "Adam with Nesterov momentum"),
        paper="Dozat 2016, 'Incorporating Nesterov Momentum into Adam'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(2e-3, "Dozat's default (as torch)"),
                    "betas": _ADAM_BETAS,
                    "eps": _ADAM_EPS,
                    "weight_decay": _f(
                        0.0,
                        "coupled L2 by default; pass "
                        "decoupled_weight_decay=True for AdamW-style decay",
                    ),
                },
                lr_range=_f(
                    (1e-5, 1e-2),
                    "Adam-family step of ~lr per coordinate: above 1e-2 diverges on most nets",
                ),
                reference_batch=_f(256, "typical mini-batch, as for Adam"),
            ),
        },
        state_bytes=_f(8.0, "two fp32 moment buffers (plus a scalar mu product)"),
        batch_scaling=_f("sqrt", "adaptive method (Malladi et al. 2022)"),
        warmup=_f(True, "noisy early second-moment estimates, as with Adam (Liu et al. 2020)"),
        best_for=_f(
            "a drop-in Adam alternative that sometimes converges faster",
            "Nesterov look-ahead on the first moment",
        ),
    )
)

_add(
    OptimizerInfo(
        name="radam",
        display="RAdam",
        family=_f("adaptive", "Adam with a rectified adaptive term"),
        paper="Liu et al. 2020, 'On the Variance of the Adaptive Learning Rate and Beyond'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(1e-3, "Liu et al. use Adam's default LR"),
                    "betas": _ADAM_BETAS,
                    "eps": _ADAM_EPS,
                    "weight_decay": _f(
                        0.0,
                        "coupled L2 by default; pass "
                        "decoupled_weight_decay=True for AdamW-style decay",
                    ),
                },
                lr_range=_f(
                    (1e-5, 1e-2),
                    "Adam-family step of ~lr per coordinate: above 1e-2 diverges on most nets",
                ),
                reference_batch=_f(256, "typical mini-batch, as for Adam"),
            ),
        },
        state_bytes=_f(8.0, "two fp32 moment buffers"),
        batch_scaling=_f("sqrt", "adaptive method (Malladi et al. 2022)"),
        warmup=_f(False, "the rectifier does what warmup does for Adam (Liu et al. 2020)"),
        best_for=_f("Adam without a warmup schedule", "rectification tames early variance"),
    )
)

_add(
    OptimizerInfo(
        name="adamax",
        display="Adamax",
        family=_f("adaptive", "Adam with an infinity-norm second moment"),
        paper="Kingma & Ba 2015, section 7",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(2e-3, "Kingma & Ba's Adamax default"),
                    "betas": _ADAM_BETAS,
                    "eps": _ADAM_EPS,
                    "weight_decay": _f(0.0, "coupled L2, like Adam's; prefer AdamW for decay"),
                },
                lr_range=_f(
                    (1e-5, 1e-2),
                    "Adam-family step of ~lr per coordinate: above 1e-2 diverges on most nets",
                ),
                reference_batch=_f(256, "typical mini-batch, as for Adam"),
            ),
        },
        state_bytes=_f(8.0, "first moment and infinity-norm buffers"),
        batch_scaling=_f("sqrt", "adaptive method"),
        warmup=_f(False, "the max-norm denominator is stable early"),
        best_for=_f(
            "embedding-heavy models with sparse, spiky gradients",
            "the infinity norm is robust to rare large gradients",
        ),
    )
)

_add(
    OptimizerInfo(
        name="rmsprop",
        display="RMSprop",
        family=_f("adaptive", "scales the step by a running RMS of gradients"),
        paper="Tieleman & Hinton 2012, Lecture 6.5",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(1e-3, "the usual RMSprop LR (torch's 1e-2 is too high for most nets)"),
                    "alpha": _f(0.99, "smoothing constant of the squared-gradient average"),
                    "eps": _f(1e-8, "torch default"),
                    "momentum": _f(0.0, "plain RMSprop"),
                    "weight_decay": _f(0.0, "coupled L2; rarely used with RMSprop"),
                },
                lr_range=_f((1e-5, 1e-2), "adaptive step of ~lr per coordinate"),
                reference_batch=_f(256, "typical mini-batch"),
            ),
            "rl_policy": Setting(
                hparams={
                    "lr": _f(7e-4, "A2C's RMSprop LR (Mnih et al. 2016)"),
                    "eps": _f(1e-5, "A2C uses eps 1e-5"),
                },
                reference_batch=_f(80, "A2C: 16 workers x 5 steps"),
            ),
        },
        state_bytes=_f(4.0, "one squared-average buffer (+4 with momentum or centered)"),
        batch_scaling=_f("sqrt", "adaptive method"),
        warmup=_f(False, "no warmup in the reference setups"),
        best_for=_f(
            "RL (A2C/DQN) and RNNs, where it was the historical default",
            "adaptive steps without a first moment",
        ),
    )
)

_add(
    OptimizerInfo(
        name="adagrad",
        display="Adagrad",
        family=_f("adaptive", "accumulates all squared gradients"),
        paper="Duchi et al. 2011, 'Adaptive Subgradient Methods'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(1e-2, "Duchi et al.'s usual LR (torch default)"),
                    "eps": _f(1e-10, "torch default"),
                    "weight_decay": _f(0.0, "coupled L2; rarely used with Adagrad"),
                },
                lr_range=_f(
                    (1e-3, 1e-1),
                    "the accumulator shrinks steps over time, so Adagrad starts higher than Adam",
                ),
                reference_batch=_f(256, "typical mini-batch"),
            ),
        },
        state_bytes=_f(4.0, "one squared-gradient accumulator"),
        batch_scaling=_f("sqrt", "adaptive method"),
        warmup=_f(False, "the accumulator starts at zero, steps are already small later"),
        best_for=_f(
            "sparse features and embeddings (recommendation, linear models)",
            "rare features keep large steps",
        ),
    )
)

_add(
    OptimizerInfo(
        name="adafactor",
        display="Adafactor",
        family=_f("factored", "factored second moment: row and column statistics only"),
        paper="Shazeer & Stern 2018, 'Adafactor: Adaptive Learning Rates with Sublinear "
        "Memory Cost'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(
                        1e-2,
                        "a relative step: scaled by max(eps2, RMS(param)) "
                        "(Shazeer & Stern; torch default)",
                    ),
                    "beta2_decay": _f(-0.8, "beta2_t = 1 - t^-0.8 (Shazeer & Stern)"),
                    "weight_decay": _f(0.0, "torch's Adafactor decay is decoupled; T5 used none"),
                },
                lr_range=_f((1e-3, 3e-2), "relative step size; T5 used 1e-2..1e-3"),
                reference_batch=_f(128, "T5's batch of 128 sequences"),
            ),
        },
        state_bytes=_f(
            0.01,
            "4*(rows+cols) bytes per rows x cols matrix, e.g. 0.008 "
            "bytes/param on 1024x1024; 1-D tensors keep 4 bytes/param",
        ),
        batch_scaling=_f("sqrt", "adaptive method"),
        warmup=_f(True, "T5 used 10k steps of constant-then-inverse-sqrt warmup"),
        best_for=_f(
            "large transformers under a tight memory budget",
            "near-zero optimizer memory on 2-D weights",
        ),
    )
)

OPTIMIZERS: Mapping[str, OptimizerInfo] = MappingProxyType(_OPTIMIZERS)


def register_info(info: OptimizerInfo) -> None:
    """Add (or replace) the facts about an optimizer, keyed by ``info.name``."""
    _OPTIMIZERS[info.name] = info


# --------------------------------------------------------------------------------------------
# Accessors
# --------------------------------------------------------------------------------------------


def _unknown(kind: str, name: str, choices: list[str]) -> ValueError:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return ValueError(f"Unknown {kind} {name!r}; {hint}known: {', '.join(sorted(choices))}")


def check_task(task: str | None) -> str:
    """Return ``task`` (``None`` means ``"general"``) or raise a ValueError naming it."""
    if task is None:
        return "general"
    if task not in TASKS:
        raise _unknown("task family", task, list(TASKS))
    return task


def get_info(name: str) -> OptimizerInfo:
    """The :class:`OptimizerInfo` of the optimizer with canonical name ``name``."""
    try:
        return _OPTIMIZERS[name]
    except KeyError:
        raise _unknown("optimizer", name, list(_OPTIMIZERS)) from None


def task_info(task: str | None) -> TaskInfo:
    """The :class:`TaskInfo` of a task family (``None`` means ``"general"``)."""
    return _TASKS[check_task(task)]


def defaults(name: str, task: str | None = None) -> Defaults:
    """Merged defaults of optimizer ``name`` for ``task`` (general values where the task is
    silent)."""
    info = get_info(name)
    task = check_task(task)
    general = info.settings["general"]
    override = info.settings.get(task, Setting())
    assert general.lr_range is not None and general.reference_batch is not None
    return Defaults(
        optimizer=name,
        task=task,
        hparams=MappingProxyType({**general.hparams, **override.hparams}),
        lr_range=override.lr_range or general.lr_range,
        reference_batch=override.reference_batch or general.reference_batch,
    )


def lr_range(name: str, task: str | None = None) -> Fact[tuple[float, float]]:
    """Typical LR range of optimizer ``name`` for ``task`` at its reference batch size."""
    return defaults(name, task).lr_range


def scale_lr(lr: float, batch_size: int, reference_batch: int, rule: ScalingRule) -> float:
    """Scale ``lr`` tuned at ``reference_batch`` to ``batch_size`` under ``rule``.

    ``linear``: ``lr * B / B_ref``; ``sqrt``: ``lr * sqrt(B / B_ref)``; ``none``: ``lr``.
    """
    if batch_size <= 0:
        raise ValueError(f"Invalid batch size: {batch_size} (must be a positive integer)")
    if reference_batch <= 0:
        raise ValueError(f"Invalid reference batch size: {reference_batch} (must be > 0)")
    ratio = batch_size / reference_batch
    if rule == "linear":
        return lr * ratio
    if rule == "sqrt":
        return lr * math.sqrt(ratio)
    if rule == "none":
        return lr
    raise ValueError(f"Unknown batch scaling rule {rule!r}; use 'linear', 'sqrt' or 'none'")
