"""The domain knowledge optiwise reasons with, as plain typed data.

Every fact is a :class:`Fact`: a value and a one-line reason (with its source where there is
one).  The advisor, the auditor, the LR finder, the registry and the CLI read these tables;
no other module hard-codes an LR range or a default hyperparameter.

Optimizer facts are keyed by the registry's canonical names.  Per optimizer there is a
``"general"`` setting and optional per-task overrides; :func:`defaults` merges them.
"""

from __future__ import annotations

import difflib
import itertools
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
    "causal_lm",
    "translation",
    "adapter_fine_tuning",
    "diffusion",
    "contrastive",
    "recommendation",
    "graph",
    "speech",
    "detection",
    "segmentation",
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
    "causal_lm",
    "translation",
    "adapter_fine_tuning",
    "diffusion",
    "contrastive",
    "recommendation",
    "graph",
    "speech",
    "detection",
    "segmentation",
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
    warmup_steps: Fact[int | None] = Fact(
        None, "the warmup is a fraction of the run (warmup_fraction)"
    )
    """When set, the warmup is this many steps, capped at ``warmup_fraction`` of the run."""
    schedule_extra: Mapping[str, Fact[Any]] = field(default_factory=dict)
    """Further ``create_scheduler`` arguments (``min_lr_ratio``, ``power``, ``gamma``;
    ``milestones`` as fractions of the run)."""
    ema_decay: Fact[float] | None = None
    """The weight EMA of the family's reference recipe, if it has one."""
    size_anchor: Fact[int] | None = None
    """Parameter count of the model the family's reference LR was published for; the LR of
    Adam-family optimizers is moved from it with :func:`lr_for_size`."""
    size_table: bool = False
    """The LR by size follows GPT-3's table (:func:`gpt3_lr`, its batch included) rather than
    the power law from ``size_anchor``."""
    batch_scaling: Fact[ScalingRule] | None = None
    """Overrides the optimizer's batch-scaling rule for this family."""
    limits: str = ""
    """When the family's recipe does not fit (shown in the recipe's explanation)."""


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
LR_FINDER_DIVERGE: Fact[float] = _f(
    4.0,
    "the range test stops once the smoothed loss exceeds 4x its best: past that point the "
    "LR is clearly too high (Smith 2017; fastai's and torch-lr-finder's stop rule)",
)
LR_FINDER_SMOOTHING: Fact[float] = _f(
    0.98,
    "EMA factor of the range test's loss curve (fastai and Lightning use 0.98, "
    "bias-corrected), which evens out mini-batch noise over ~50 steps",
)
LR_FINDER_BACKOFF: Fact[float] = _f(
    10**-0.25,
    "the LR range test recommends a quarter decade below the best of its short confirmation "
    "runs: the best peak LR falls as runs get longer (Bjorck et al. 2024), and the final "
    "loss climbs faster above the best LR than below it",
)
TUNE_HORIZON_EXPONENT: Fact[float] = _f(
    -1 / 3,
    "the best peak LR falls with the run length as a power law, LR* ~ steps^-b with b about "
    "0.3 for AdamW language models (Bjorck et al. 2024); optiwise.tune uses it to extrapolate "
    "when its rungs cannot fit their own slope",
)
TUNE_HORIZON_EXPONENT_RANGE: Fact[tuple[float, float]] = _f(
    (-0.6, 0.0),
    "a slope of the best LR against the run length fitted over a few short rungs is clamped to "
    "[-0.6, 0]: longer runs never want a higher LR (Bjorck et al. 2024), and slopes beyond "
    "-0.6 come from noise in short trials, not from the workload",
)
TUNE_WARMUP_FLOOR: Fact[int] = _f(
    10,
    "a trial's warmup is measured in steps and never shorter than ~10 of them: a 2-step "
    "warmup (5% of a 50-step trial) blows up SGD + BatchNorm LRs that a 12-step warmup trains "
    "well (val loss 1.93 vs 0.23 on a BatchNorm CNN, optiwise benchmark)",
)
TUNE_MIN_TRIAL_STEPS: Fact[int] = _f(
    20,
    "a trial shorter than ~20 optimizer steps ranks LRs by how fast the loss first drops, "
    "not by where the run ends (the bias of 50-step confirmations toward high LRs, measured "
    "on small data in the optiwise benchmark)",
)
TUNE_VAL_BATCHES: Fact[int] = _f(
    20,
    "20 validation batches give a trial's score a standard error of a few percent of the "
    "between-LR differences at a fraction of a full evaluation's cost; the same batches "
    "score every trial",
)
LR_CONSTANT_OF_PEAK: Fact[float] = _f(
    0.5,
    "a constant LR matching a warmup + cosine run at peak LR p is ~p/2: the mean LR of a "
    "cosine decay to 0 is p/2, and a run without decay needs a lower LR to settle",
)
MIN_BETA2: Fact[float] = _f(
    0.9,
    "Adam's beta2 below 0.9 averages the squared gradients over fewer than ~10 steps, so the "
    "per-parameter step size swings with each batch; stable recipes use 0.95-0.999 "
    "(GPT-3 0.95, BERT 0.999; Kingma & Ba 2015)",
)
MAX_MOMENTUM: Fact[float] = _f(
    0.99,
    "momentum (or beta1) above 0.99 averages the gradient over more than 100 steps: the "
    "update lags the loss surface and overshoots; 0.9 is the standard value "
    "(Sutskever et al. 2013)",
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
SMALL_BATCH: Fact[int] = _f(
    16,
    "below ~16 samples per device BatchNorm statistics are too noisy and SGD recipes tuned at "
    "256 degrade (Wu & He 2018); Adam-family optimizers cope better with small batches",
)
MIN_PRETRAIN_BATCH: Fact[int] = _f(
    256,
    "transformer pretraining recipes were tuned at effective batches of at least ~256 (BERT 256 "
    "sequences, GPT-2 512, DeiT 1024 images); below it, accumulate gradients to reach it",
)
LAYER_DECAY: Fact[float] = _f(
    0.75,
    "layer-wise LR decay for fine-tuning a transformer of numbered blocks: MAE fine-tunes "
    "ViT-L/H with 0.75 (ViT-B 0.65), ELECTRA uses 0.8 (He et al. 2022; Clark et al. 2020)",
)
EMA_DECAY: Fact[float] = _f(
    0.9999,
    "an exponential moving average of the weights (decay 0.9999: an average over the last ~10k "
    "steps) adds a little final accuracy to image models at no training cost (EfficientNet, "
    "Tan & Le 2019; ConvNeXt, Liu et al. 2022)",
)
EMA_MAX_HORIZON_FRACTION: Fact[float] = _f(
    0.1,
    "an EMA helps only when its horizon 1 / (1 - decay) is a small part of the run (<= ~10%); "
    "on shorter runs it lags behind the weights",
)
FP16_EPS: Fact[float] = _f(
    1e-6,
    "the usual Adam eps under fp16 (BERT's 1e-6): a decade above the smallest safe value, so "
    "the denominator never rounds to zero",
)
MIXED_PRECISION: Fact[str] = _f(
    "bf16",
    "bf16 autocast keeps fp32's exponent range (no loss scaling, no eps or overflow trouble) "
    "and halves activation memory; use fp16 with a GradScaler only where bf16 is missing "
    "(GPUs before Ampere)",
)
LR_BATCH_MISMATCH_FACTOR: Fact[float] = _f(
    2.0,
    "an LR that stays at its reference-batch value although the batch change moves the scaled "
    "LR by 2x or more is not scaled; smaller differences are within tuning noise",
)
FAMILY_MIN_SHARE: Fact[float] = _f(
    0.1,
    "a kind of layer (convolution, attention, recurrence) characterises a model when it holds "
    "at least ~10% of the parameters outside the embeddings (attention is ~25% of BERT/GPT-2, "
    "convolutions ~90% of ResNet-50)",
)
EMBEDDING_HEAVY_SHARE: Fact[float] = _f(
    0.5,
    "when embedding tables hold more than half of the parameters (recommenders, word-vector "
    "models) their sparse row updates, not the dense layers, decide the training",
)

ENCODER_LARGE_BATCH: Fact[int] = _f(
    2048,
    "RoBERTa pretrains at 2k-8k sequences per step with beta2 0.98, BERT at 256 with 0.999 "
    "(Liu et al. 2019)",
)
ROBERTA_LR_BY_BATCH: Fact[tuple[tuple[int, float], ...]] = _f(
    ((256, 1e-4), (2048, 7e-4), (8192, 1e-3)),
    "batch (sequences) and tuned peak LR of BERT-base-size encoders: 1e-4 at 256, 7e-4 at 2k, "
    "1e-3 at 8k (Liu et al. 2019, RoBERTa, Table 3); the LR grows about linearly to 2k, not "
    "with the square root",
)


def roberta_lr(batch_size: int) -> float:
    """The peak LR of a BERT-base-size encoder at ``batch_size`` sequences per step, from
    RoBERTa's batch-size table (interpolated in log-log; the square-root rule below 256,
    the 8k value above 8k)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"Invalid batch size: {batch_size!r} (must be a positive integer)")
    table = ROBERTA_LR_BY_BATCH.value
    if batch_size <= table[0][0]:
        return scale_lr(table[0][1], batch_size, table[0][0], "sqrt")
    if batch_size >= table[-1][0]:
        return table[-1][1]
    for (b0, lr0), (b1, lr1) in itertools.pairwise(table):
        if b0 <= batch_size <= b1:
            t = math.log(batch_size / b0) / math.log(b1 / b0)
            return math.exp((1 - t) * math.log(lr0) + t * math.log(lr1))
    raise AssertionError(batch_size)  # pragma: no cover


ADAPTER_MAX_SHARE: Fact[float] = _f(
    0.1,
    "a model trains adapters when at most ~10% of its parameters are trainable and most of "
    "those are low-rank matrices: LoRA trains 0.01-1% (Hu et al. 2021)",
)
ADAPTER_MAX_RANK_RATIO: Fact[float] = _f(
    0.25,
    "a low-rank adapter matrix is at most a quarter as wide in one dimension as in the other "
    "(LoRA ranks 1-64 on 768-12288-wide layers, Hu et al. 2021)",
)
SIMCLR_SQRT_BATCH: Fact[int] = _f(
    1024,
    "at batches up to ~1k SimCLR's square-root rule 0.075 sqrt(B) beats its linear rule "
    "0.3 B/256 (Chen et al. 2020, App. B.1)",
)
SIMCLR_SQRT_LR: Fact[float] = _f(
    0.075, "SimCLR's square-root rule: LR = 0.075 sqrt(B) (Chen et al. 2020, App. B.1)"
)

MUON_TASKS: Fact[tuple[str, ...]] = _f(
    ("causal_lm", "language_transformer", "vision_transformer"),
    "Muon speeds up transformer pretraining from scratch, where the hidden 2-D matrices hold "
    "most parameters (Jordan et al. 2024 NanoGPT speedruns; Liu et al. 2025: ~2x AdamW's "
    "compute efficiency); convolution filters stay on AdamW in optiwise's Muon, and "
    "fine-tuning an AdamW-pretrained model with Muon loses the gain (Liu et al. 2025)",
)
SOAP_SPEEDUP: Fact[str] = _f(
    "soap",
    "SOAP needs 40% fewer iterations than AdamW on 360M-660M LM pretraining (Vyas et al. "
    "2024) at ~3x AdamW's optimizer memory (both Kronecker factors and their eigenbases)",
)

GPT3_LR_BY_SIZE: Fact[tuple[tuple[float, float, float], ...]] = _f(
    (
        (125e6, 6.0e-4, 2**19),
        (350e6, 3.0e-4, 2**19),
        (760e6, 2.5e-4, 2**19),
        (1.3e9, 2.0e-4, 2**20),
        (2.7e9, 1.6e-4, 2**20),
        (6.7e9, 1.2e-4, 2**21),
        (13e9, 1.0e-4, 2**21),
        (175e9, 0.6e-4, 3.2e6),
    ),
    "parameters, peak AdamW LR and batch in tokens of the eight GPT-3 models (Brown et al. "
    "2020, Table 2.1; its '0.5M' tokens are 256 sequences of 2048)",
)
GPT3_CONTEXT: Fact[int] = _f(2048, "GPT-3's sequences are 2048 tokens long (Brown et al. 2020)")


def _size_exponent(table: tuple[tuple[float, float, float], ...]) -> float:
    xs = [math.log(row[0]) for row in table]
    ys = [math.log(row[1]) for row in table]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


_EXPONENT = round(_size_exponent(GPT3_LR_BY_SIZE.value), 3)
LR_SIZE_EXPONENT: Fact[float] = _f(
    _EXPONENT,
    f"the peak Adam LR falls with the parameter count as N^{_EXPONENT}: the least-squares "
    "slope of log LR on log N over GPT-3's Table 2.1 (125M-175B, Brown et al. 2020)",
)
LR_SIZE_RANGE: Fact[tuple[float, float]] = _f(
    (1e-5, 1e-2),
    "the size rule stays inside Adam's usable range: below 1e-5 nothing moves, above 1e-2 most "
    "networks diverge",
)


def _check_sizes(**values: float) -> None:
    for label, value in values.items():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not value > 0 or not math.isfinite(value):
            raise ValueError(f"Invalid {label}: {value!r} (must be a number > 0)")


def lr_for_size(lr: float, anchor_params: int, n_params: int) -> float:
    """The Adam-family LR for a model of ``n_params`` parameters, given that ``lr`` is the
    published LR of a model of ``anchor_params`` in the same family.

    ``lr * (n_params / anchor_params) ** LR_SIZE_EXPONENT``, clipped to
    :data:`LR_SIZE_RANGE`; the exponent is fitted to GPT-3's LR-by-size table.
    """
    _check_sizes(lr=lr, anchor_params=anchor_params, n_params=n_params)
    lo, hi = LR_SIZE_RANGE.value
    scaled = lr * (n_params / anchor_params) ** LR_SIZE_EXPONENT.value
    return min(hi, max(lo, scaled))


def gpt3_lr(n_params: int) -> tuple[float, float]:
    """GPT-3's peak LR and batch (in sequences of 2048 tokens) for a decoder of ``n_params``.

    Inside the table (125M-175B) both are interpolated linearly in log-log; outside it the
    LR follows the fitted power law (:data:`LR_SIZE_EXPONENT`) from the nearest end, clipped
    to :data:`LR_SIZE_RANGE`, and the batch is that end's.
    """
    _check_sizes(n_params=n_params)
    table = GPT3_LR_BY_SIZE.value
    context = GPT3_CONTEXT.value
    if n_params <= table[0][0] or n_params >= table[-1][0]:
        n0, lr0, tokens = table[0] if n_params <= table[0][0] else table[-1]
        return lr_for_size(lr0, int(n0), n_params), tokens / context
    for (n0, lr0, b0), (n1, lr1, b1) in itertools.pairwise(table):
        if n0 <= n_params <= n1:
            t = math.log(n_params / n0) / math.log(n1 / n0)
            lr = math.exp((1 - t) * math.log(lr0) + t * math.log(lr1))
            tokens = math.exp((1 - t) * math.log(b0) + t * math.log(b1))
            return lr, tokens / context
    raise AssertionError(n_params)  # pragma: no cover


# --------------------------------------------------------------------------------------------
# Reading a recorded run (optiwise.monitor's diagnosis)
# --------------------------------------------------------------------------------------------

UPDATE_RATIO_TARGET: Fact[float] = _f(
    1e-3,
    "a healthy step moves each weight matrix by about 1e-3 of its norm (CS231n's rule of "
    "thumb for the update/weight ratio; 1e-3 to 6e-3 on the healthy digits runs of the tests)",
)
UPDATE_RATIO_HIGH: Fact[float] = _f(
    1e-2,
    "updates above ~1e-2 of the weight norm per step, sustained, mean the LR is too high: "
    "the weights are rewritten every ~100 steps (10x CS231n's 1e-3)",
)
UPDATE_RATIO_LOW: Fact[float] = _f(
    1e-4,
    "updates below ~1e-4 of the weight norm per step (10x under CS231n's 1e-3) move the "
    "weights by a few percent over a thousand steps: the LR is too low unless the loss falls",
)
LOSS_DIVERGE: Fact[float] = _f(
    4.0,
    "a smoothed loss above 4x its best (or its start) has diverged: the LR range test's stop "
    "rule (Smith 2017; fastai, torch-lr-finder)",
)
LOSS_SMOOTHING_WINDOW: Fact[int] = _f(
    10,
    "a running median over ~10 recorded steps removes mini-batch noise from the loss while "
    "keeping a divergence or a plateau visible within a few dozen steps",
)
MIN_PROGRESS: Fact[float] = _f(
    0.1,
    "a run whose smoothed loss falls by less than 10% of its start has not learned: with a "
    "tiny update ratio the LR is too low; otherwise the loss has plateaued",
)
PLATEAU_FRACTION: Fact[float] = _f(
    0.5,
    "a plateau is the last half of the run without a 1% improvement of the best smoothed "
    "loss: long enough not to be noise, early enough that an LR decay still pays",
)
PLATEAU_TOLERANCE: Fact[float] = _f(
    0.01,
    "improvements below 1% of the loss are within the mini-batch noise of a smoothed curve",
)
PLATEAU_LR_FACTOR: Fact[float] = _f(
    0.1,
    "on a plateau, cut the LR by 10x (ReduceLROnPlateau's default factor; the step decays "
    "of ResNet training, He et al. 2016)",
)
GRAD_SPIKE: Fact[float] = _f(
    20.0,
    "a gradient norm 20x above the median of its neighbouring steps is an explosion, not "
    "noise: healthy runs of the tests stay under ~5x, an unclipped RNN jumps 100x or more "
    "(Pascanu et al. 2013 clip such steps)",
)
VANISHING_RATIO: Fact[float] = _f(
    1e-3,
    "a weight matrix whose gradient is 1000x smaller than the largest layer's hardly "
    "learns: deep plain sigmoid/tanh stacks show it (Glorot & Bengio 2010)",
)
AMP_MAX_SKIP_FRACTION: Fact[float] = _f(
    0.01,
    "GradScaler halves the scale on overflow and doubles it after 2000 clean steps, so a "
    "healthy fp16 run skips ~1 step in 2000 once calibrated; skipping over 1% means the "
    "gradients themselves overflow fp16",
)
AMP_CALIBRATION_STEPS: Fact[int] = _f(
    25,
    "GradScaler starts at 2**16 and halves per overflow: the first ~25 steps may be skipped "
    "while it finds a scale, and do not count as overflow",
)
GRADS_NOT_CLEARED_FRACTION: Fact[float] = _f(
    0.5,
    "gradients found uncleared before most backward passes after a step are never cleared "
    "(a missing zero_grad), not a deliberate accumulation window",
)
OVERFIT_RISE: Fact[float] = _f(
    0.1,
    "a validation loss 10% above its best for the last two evaluations while the training "
    "loss keeps falling is overfitting, not evaluation noise",
)
WEIGHT_DECAY_STEP: Fact[float] = _f(
    3.0,
    "against overfitting raise weight decay by ~3x (one half-decade step of a log grid); with "
    "none, start from the optimizer's default for the task",
)
LOSS_NOISE: Fact[float] = _f(
    0.5,
    "a loss whose step-to-step deviation from its running median exceeds half the median is "
    "dominated by mini-batch noise (Adam on digits: 0.54 at batch 2, 0.41 at batch 4, 0.28 at "
    "batch 64); below SMALL_BATCH, half of that already counts",
)
BATCH_INCREASE: Fact[int] = _f(
    4,
    "a 4x larger batch (or accumulation over 4 micro-batches) halves the gradient noise's "
    "standard deviation (it falls as 1/sqrt(batch), McCandlish et al. 2018)",
)
WARMUP_EARLY_FRACTION: Fact[float] = _f(
    0.2,
    "instability confined to the first ~20% of a run, at an LR that trains well afterwards, "
    "is what a warmup removes (Liu et al. 2020; Xiong et al. 2020)",
)
WARMUP_RISE: Fact[float] = _f(
    1.2,
    "an early smoothed loss 20% above the starting loss is a blow-up, not noise",
)
WARMUP_JUMP: Fact[float] = _f(
    1.15,
    "a loss 15% above its start within the first ~10 steps, after which the run never "
    "learns, is the collapse a warmup prevents (an 8-layer post-LN transformer on digits at "
    "Adam 5e-3: 2.44 -> 2.89, then stuck at 2.34; with a 30-step warmup it reaches 0.87)",
)

NAIVE_SETUPS: Mapping[str, Fact[Mapping[str, Any]]] = MappingProxyType(
    {
        "adam": _f(
            MappingProxyType({"optimizer": "Adam", "lr": 1e-3}),
            "torch.optim.Adam at 1e-3 (the default LR of torch and of Kingma & Ba 2015) on "
            "model.parameters() with no schedule: the most common untuned setup",
        ),
        "sgd_plain": _f(
            MappingProxyType({"optimizer": "SGD", "lr": 1e-2}),
            "torch.optim.SGD at 0.01 without momentum on model.parameters() with no schedule: "
            "the first loop of many tutorials",
        ),
    }
)
"""The common untuned setups ``optiwise demo`` trains beside a recipe: a ``torch.optim``
class name and its keyword arguments, by registry name.  Baselines to compare against, not
advice."""

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
        limits="no task family matched: these are forgiving AdamW defaults, not a published "
        "recipe; give task= (any word of knowledge.TASK_SYNONYMS) or family= when you know it",
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
        _f(
            0.05,
            "5 warmup epochs of a ~100-epoch cosine run ('Bag of Tricks', He et al. 2019; "
            "torchvision's recipes): cheap at batch 256, necessary above ~1k (Goyal et al. 2017)",
        ),
        _f(None, "BatchNorm CNNs train stably without clipping"),
        limits="tuned for image classification from scratch with BatchNorm at batch ~256; "
        "detection and segmentation have their own recipes (task='detection', "
        "'segmentation'), contrastive pretraining too (task='simclr')",
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
        "encoder (masked-LM) transformer pretraining (BERT, RoBERTa)",
        _f("adamw", "BERT, GPT-2/3, LLaMA all pretrain with AdamW"),
        _f("warmup_linear", "BERT: linear warmup then linear decay; GPT uses cosine"),
        _f(
            0.1,
            "at most 10% of the run: BERT's 10k warmup steps are 1% of its 1M-step run but "
            "10% of a 100k-step one; longer warmups only delay training",
        ),
        _f(1.0, "BERT and GPT clip the global norm at 1.0"),
        _f(
            10_000,
            "BERT warms up over 10k steps (Devlin et al. 2019); Adam's second moment is "
            "unreliable early",
        ),
        size_anchor=_f(110_000_000, "BERT-base (110M parameters) pretrains at 1e-4"),
        limits="a decoder-only (causal) LM takes GPT's recipe instead (task='causal_lm')",
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
        size_anchor=_f(876_929, "the 877k-parameter char LSTM whose Adam LR was measured"),
        limits="the LR is measured on one char-level LSTM and moved to other sizes by GPT-3's "
        "size exponent; word-level LSTMs with large softmaxes and AWD-LSTM's SGD/ASGD recipe "
        "(Merity et al. 2018) are not covered",
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
        limits="an MLP of an RL agent takes task='rl' and a recommender's towers "
        "task='recommendation'; this recipe is for supervised tabular data",
    ),
    "causal_lm": TaskInfo(
        "causal_lm",
        "decoder-only (causal) language-model pretraining (GPT, Pythia, LLaMA)",
        _f("adamw", "GPT-3, Pythia and LLaMA all pretrain with AdamW"),
        _f(
            "warmup_cosine",
            "linear warmup, then cosine decay to 10% of the peak (GPT-3, Brown et al. 2020 "
            "App. B; LLaMA, Touvron et al. 2023)",
        ),
        _f(0.01, "Pythia warms up over 1% of its steps (Biderman et al. 2023)"),
        _f(1.0, "GPT-3, Pythia and LLaMA clip the global norm at 1.0"),
        _f(
            2_000,
            "LLaMA warms up over 2000 steps (Touvron et al. 2023); Adam's second moment is "
            "unreliable early",
        ),
        schedule_extra={
            "min_lr_ratio": _f(0.1, "the cosine ends at 10% of the peak LR (GPT-3 App. B; LLaMA)"),
        },
        size_anchor=_f(125_000_000, "GPT-3 Small (125M parameters) pretrains at 6e-4"),
        size_table=True,
        batch_scaling=_f(
            "none",
            "decoder LM recipes set the LR by model size and keep it across 0.5M-4M-token "
            "batches: Pythia trains at GPT-3's LRs with 2M-token batches (Biderman et al. 2023)",
        ),
        limits="the LR follows GPT-3's LR-by-size table, tuned for runs of ~300B tokens at "
        "0.5M-3M tokens per batch; much shorter runs tolerate higher LRs (optiwise.tune finds "
        "them), and a pretrained decoder is fine-tuned, not pretrained (pretrained=True)",
    ),
    "translation": TaskInfo(
        "translation",
        "encoder-decoder (sequence-to-sequence) transformers: machine translation, summarisation",
        _f(
            "adamw",
            "the Transformer trains with Adam, betas (0.9, 0.98) (Vaswani et al. 2017); fairseq "
            "adds decoupled decay",
        ),
        _f(
            "inverse_sqrt",
            "Vaswani et al. 2017: linear warmup, then decay with the inverse square root of "
            "the step",
        ),
        _f(0.1, "a cap for short runs: the 4000 warmup steps are 4% of Transformer base's 100k"),
        _f(
            None,
            "neither Vaswani et al. 2017 nor fairseq's WMT recipe (--clip-norm 0) clip",
        ),
        _f(4_000, "Transformer base warms up over 4000 steps (Vaswani et al. 2017)"),
        size_anchor=_f(65_000_000, "Transformer base has 65M parameters (Vaswani et al. 2017)"),
        limits="label smoothing (0.1 in Vaswani et al. 2017) and dropout are out of scope; "
        "the LR is Vaswani's peak for d_model 512 at ~25k tokens per batch",
    ),
    "adapter_fine_tuning": TaskInfo(
        "adapter_fine_tuning",
        "parameter-efficient fine-tuning: only low-rank adapters (LoRA) or other small "
        "added modules train, the pretrained weights are frozen",
        _f("adamw", "LoRA and QLoRA train the adapters with AdamW (Hu et al. 2021)"),
        _f(
            "warmup_linear",
            "LoRA's GPT-2 recipe: linear warmup then linear decay (Hu et al. 2021, Table 11)",
        ),
        _f(0.03, "QLoRA warms up over 3% of the steps (Dettmers et al. 2023)"),
        _f(0.3, "QLoRA clips the global norm at 0.3 (Dettmers et al. 2023)"),
        limits="the adapters start from zero (LoRA's B = 0) and take ~10x the LR of full "
        "fine-tuning; when the whole model trains, this is plain fine-tuning",
    ),
    "diffusion": TaskInfo(
        "diffusion",
        "denoising diffusion / score models (DDPM, ADM, EDM U-Nets, DiT)",
        _f(
            "adamw",
            "DDPM trains with Adam, ADM with AdamW, both without weight decay "
            "(Ho et al. 2020; Dhariwal & Nichol 2021)",
        ),
        _f("warmup_constant", "DDPM and ADM keep the LR constant after warmup"),
        _f(0.05, "a cap for short runs: DDPM's 5000 warmup steps are <1% of its 800k"),
        _f(1.0, "DDPM clips the global gradient norm at 1.0 (Ho et al. 2020, official code)"),
        _f(5_000, "DDPM warms up over 5000 steps (Ho et al. 2020, App. B)"),
        ema_decay=_f(
            0.9999,
            "samples are drawn from an EMA of the weights, decay 0.9999 (DDPM, Ho et al. "
            "2020; ADM, Dhariwal & Nichol 2021)",
        ),
        limits="the LR is DDPM's for 32x32 images at batch 128; DDPM used 2e-5 at 256x256 "
        "and EDM preconditions its network differently (Karras et al. 2022)",
    ),
    "contrastive": TaskInfo(
        "contrastive",
        "contrastive / self-supervised pretraining at large batch (SimCLR, MoCo, BYOL)",
        _f(
            "lars",
            "SimCLR trains with LARS at batches up to 8192 (Chen et al. 2020, Sec. 2.2)",
        ),
        _f("warmup_cosine", "SimCLR: linear warmup, then cosine decay without restarts"),
        _f(0.1, "SimCLR warms up for 10 of its 100 epochs (Chen et al. 2020, App. B.1)"),
        _f(None, "SimCLR does not clip gradients"),
        limits="SimCLR's LR 0.3 x B/256 was tuned at batch 4096; at small batches "
        "(<= 1024) SimCLR's square-root rule 0.075 sqrt(B) is better (Chen et al. 2020, "
        "App. B.1) and the advisor switches to it",
    ),
    "recommendation": TaskInfo(
        "recommendation",
        "recommenders and CTR models: large embedding tables beside small dense towers "
        "(DLRM, DCN, two-tower)",
        _f(
            "adamw",
            "dense towers train with Adam-family optimizers (DCN-V2, Wang et al. 2021); with "
            "sparse tables the advisor pairs SparseAdam with AdamW",
        ),
        _f("constant", "DLRM's reference trains at a constant LR (Naumov et al. 2019)"),
        _f(0.0, "no warmup in DLRM's reference"),
        _f(None, "DLRM does not clip gradients"),
        limits="models whose tables do not fit one device need row-wise sharded optimizers "
        "(TorchRec's fused row-wise Adagrad), which are outside optiwise",
    ),
    "graph": TaskInfo(
        "graph",
        "graph neural networks (GCN, GAT, GraphSAGE, message passing)",
        _f(
            "adamw",
            "GCN and GAT train with Adam; AdamW's decoupled decay replaces their L2 term",
        ),
        _f(
            "constant",
            "GCN and GAT train at a constant LR for ~200 epochs with early stopping "
            "(Kipf & Welling 2017; Velickovic et al. 2018)",
        ),
        _f(0.0, "no warmup in the GCN/GAT recipes"),
        _f(None, "GCN/GAT do not clip gradients"),
        batch_scaling=_f(
            "none",
            "GCN/GAT train full-batch and mini-batch GNN recipes quote one LR whatever the "
            "batch of nodes (OGB baselines): no batch rule applies",
        ),
        limits="the recipe is for small citation-style graphs; deep GNNs on large graphs "
        "(OGB) tune LR in 1e-3..1e-2 and add dropout",
    ),
    "speech": TaskInfo(
        "speech",
        "speech models: a convolutional front-end before a transformer/conformer or "
        "recurrent encoder (wav2vec 2.0, Conformer, DeepSpeech)",
        _f("adamw", "wav2vec 2.0 and Conformer train with Adam-family optimizers"),
        _f(
            "warmup_linear",
            "wav2vec 2.0 pretraining: linear warmup, then linear decay (Baevski et al. 2020)",
        ),
        _f(0.08, "wav2vec 2.0 BASE warms up over 32k of 400k updates (Baevski et al. 2020)"),
        _f(5.0, "ESPnet2's trainer clips the global norm at 5 by default (Watanabe et al.)"),
        size_anchor=_f(95_000_000, "wav2vec 2.0 BASE has 95M parameters (Baevski et al. 2020)"),
        limits="this is pretraining from scratch; wav2vec 2.0 is fine-tuned with a tri-stage "
        "schedule (10% warmup, 40% hold, 50% decay) at ~5e-5 (Baevski et al. 2020), which "
        "pretrained=True (the general fine-tuning recipe) does not reproduce",
    ),
    "detection": TaskInfo(
        "detection",
        "object detection and instance segmentation (Faster/Mask R-CNN, RetinaNet; DETR)",
        _f(
            "sgd_momentum",
            "Detectron2 and mmdetection train R-CNNs with heavy-ball momentum SGD",
        ),
        _f(
            "multistep",
            "the '1x' schedule: the LR drops 10x at epochs 8 and 11 of 12 (Detectron2, "
            "mmdetection)",
        ),
        _f(0.05, "a cap for short runs: 500 warmup iterations are <1% of the 1x schedule"),
        _f(None, "Detectron2's and mmdetection's R-CNN configs do not clip"),
        _f(500, "Detectron2 and mmdetection warm up linearly over 500 iterations"),
        schedule_extra={
            "milestones": _f(
                (8 / 12, 11 / 12),
                "the 1x schedule's LR drops at 8/12 and 11/12 of the run (Detectron2)",
            ),
            "gamma": _f(0.1, "each drop divides the LR by 10 (Detectron2, mmdetection)"),
        },
        limits="the recipe assumes an ImageNet-pretrained backbone as in the 1x schedule; "
        "DETR-like detectors (attention decoders) train with AdamW and the advisor switches "
        "to it when the model has attention",
    ),
    "segmentation": TaskInfo(
        "segmentation",
        "semantic segmentation (DeepLab, PSPNet, UPerNet)",
        _f(
            "sgd_momentum",
            "mmsegmentation's DeepLabV3/PSPNet schedules use momentum SGD",
        ),
        _f(
            "warmup_poly",
            "the 'poly' schedule (1 - t/T)^0.9 (Chen et al. 2017, DeepLab; mmsegmentation)",
        ),
        _f(0.0, "mmsegmentation's DeepLabV3 80k schedule has no warmup"),
        _f(None, "the DeepLab/PSPNet configs do not clip"),
        schedule_extra={
            "power": _f(0.9, "poly power 0.9 (Chen et al. 2017, DeepLab)"),
            "min_lr_ratio": _f(0.01, "mmsegmentation decays to min_lr 1e-4, 1% of the peak 1e-2"),
        },
        limits="transformer segmenters (SegFormer, Mask2Former) train with AdamW instead",
    ),
}
TASK_INFO: Mapping[str, TaskInfo] = MappingProxyType(_TASKS)

# --------------------------------------------------------------------------------------------
# The words people use for their task
# --------------------------------------------------------------------------------------------

_SYNONYMS: dict[str, tuple[str, ...]] = {
    "general": ("default", "other", "unknown", "generic"),
    "vision_cnn": (
        "cnn",
        "convnet",
        "image_classification",
        "resnet",
        "vision",
    ),
    "vision_transformer": ("vit", "deit", "image_transformer"),
    "language_transformer": (
        "masked_lm",
        "mlm",
        "bert",
        "roberta",
        "encoder_pretraining",
        "encoder",
    ),
    "causal_lm": (
        "language_modeling",
        "language_model",
        "lm",
        "llm",
        "pretraining",
        "gpt",
        "decoder",
        "decoder_only",
        "autoregressive",
        "next_token",
        "clm",
    ),
    "translation": (
        "seq2seq",
        "mt",
        "machine_translation",
        "nmt",
        "encoder_decoder",
        "summarization",
        "summarisation",
        "t5",
    ),
    "fine_tuning": ("finetune", "finetuning", "fine_tune", "transfer", "transfer_learning"),
    "adapter_fine_tuning": ("lora", "qlora", "peft", "adapter", "adapters"),
    "rnn": ("lstm", "gru", "recurrent", "char_rnn"),
    "rl_policy": (
        "rl",
        "ppo",
        "reinforcement_learning",
        "reinforcement",
        "a2c",
        "policy",
        "policy_gradient",
        "actor_critic",
    ),
    "gan": ("adversarial", "dcgan", "stylegan"),
    "tabular_mlp": ("tabular", "mlp", "structured"),
    "diffusion": (
        "generative",
        "score",
        "score_model",
        "ddpm",
        "denoising",
        "image_generation",
    ),
    "contrastive": (
        "self_supervised",
        "ssl",
        "simclr",
        "moco",
        "byol",
        "representation_learning",
    ),
    "recommendation": ("ctr", "recsys", "recommender", "dlrm", "click_through"),
    "graph": ("gnn", "gcn", "gat", "graph_neural_network", "node_classification"),
    "speech": ("asr", "audio", "speech_recognition", "wav2vec", "conformer"),
    "detection": (
        "object_detection",
        "detector",
        "instance_segmentation",
        "rcnn",
        "faster_rcnn",
        "mask_rcnn",
        "detr",
    ),
    "segmentation": ("semantic_segmentation", "deeplab"),
}


def _norm_task(word: str) -> str:
    return "_".join(word.strip().lower().replace("-", " ").replace("_", " ").split())


TASK_SYNONYMS: Mapping[str, str] = MappingProxyType(
    {_norm_task(w): task for task, words in _SYNONYMS.items() for w in (task, *words)}
)
"""Every word :func:`check_task` accepts (lower case, ``_`` for spaces and hyphens), with the
task family it names."""


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

_RNN_BATCH = _f(
    32,
    "the batch of the optiwise benchmark's shakespeare-char-lstm sweep, where the recurrent "
    "LR was measured",
)
_RNN_LR = _f(
    5e-3,
    "measured: a 2-layer LSTM of 877k parameters (optiwise's shakespeare-char-lstm, batch 32, "
    "1000 AdamW steps) ends at 2.69/2.36/2.26/2.50 bits per char at LR 1e-3/3e-3/6e-3/1.2e-2, "
    "best near 5e-3 (benchmarks/advisor_lr_sweep.py); other sizes follow lr_for_size",
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
    "detection": Setting(
        hparams={
            "lr": _f(
                0.02,
                "Faster/Mask R-CNN: 0.02 at 16 images per batch (Detectron2, mmdetection)",
            ),
            "momentum": _f(0.9, "Detectron2 and mmdetection use momentum 0.9"),
            "nesterov": _f(False, "Detectron2's SGD is heavy-ball, not Nesterov"),
            "weight_decay": _f(1e-4, "Detectron2 and mmdetection use 1e-4"),
        },
        lr_range=_f((2e-3, 0.08), "0.02 at batch 16, linearly scaled with the batch"),
        reference_batch=_f(16, "the 1x schedule's 16 images per batch (2 per GPU on 8)"),
    ),
    "segmentation": Setting(
        hparams={
            "lr": _f(0.01, "DeepLabV3/PSPNet: 0.01 at 16 images per batch (mmsegmentation)"),
            "momentum": _f(0.9, "mmsegmentation uses momentum 0.9"),
            "nesterov": _f(False, "mmsegmentation's SGD is heavy-ball"),
            "weight_decay": _f(5e-4, "mmsegmentation's DeepLab/PSPNet use 5e-4"),
        },
        lr_range=_f((1e-3, 0.05), "0.01 at batch 16, linearly scaled with the batch"),
        reference_batch=_f(16, "mmsegmentation's 16 images per batch (2 per GPU on 8)"),
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
            "rnn": Setting(
                hparams={"lr": _RNN_LR},
                reference_batch=_RNN_BATCH,
            ),
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
            "rnn": Setting(
                hparams={"lr": _RNN_LR},
                reference_batch=_RNN_BATCH,
            ),
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
            "translation": Setting(
                hparams={
                    "lr": _f(
                        7e-4,
                        "the peak of Vaswani et al. 2017's schedule, d_model^-0.5 x "
                        "warmup^-0.5 = 512^-0.5 x 4000^-0.5 = 7.0e-4",
                    ),
                    "betas": _f((0.9, 0.98), "Vaswani et al. 2017: beta2 0.98"),
                    "eps": _f(1e-9, "Vaswani et al. 2017: eps 1e-9"),
                    "weight_decay": _f(
                        1e-4,
                        "fairseq's WMT recipe decays 1e-4, decoupled (Ott et al. 2018); "
                        "Vaswani et al. 2017 used none",
                    ),
                },
                lr_range=_f(
                    (1e-4, 1e-3), "fairseq's WMT recipes peak at 5e-4..1e-3 (Ott et al. 2018)"
                ),
                reference_batch=_f(
                    1024,
                    "~25k source and 25k target tokens per batch (Vaswani et al. 2017): about "
                    "1000 sentence pairs",
                ),
            ),
            "causal_lm": Setting(
                hparams={
                    "lr": _f(
                        6e-4,
                        "GPT-3 Small (125M): 6e-4 at 0.5M tokens per batch (Brown et al. 2020, "
                        "Table 2.1); other sizes follow gpt3_lr",
                    ),
                    "betas": _f(
                        (0.9, 0.95),
                        "GPT-3 (App. B), Pythia and LLaMA use beta2 0.95 for stability",
                    ),
                    "eps": _f(1e-8, "GPT-3 uses eps 1e-8 (Brown et al. 2020, App. B)"),
                    "weight_decay": _f(0.1, "GPT-3 and LLaMA use decoupled weight decay 0.1"),
                },
                lr_range=_f(
                    (3e-5, 3e-3),
                    "GPT-3's table runs from 6e-4 (125M) to 6e-5 (175B); small models take "
                    "up to a few 1e-3",
                ),
                reference_batch=_f(
                    256, "GPT-3 Small's 0.5M tokens per batch: 256 sequences of 2048 tokens"
                ),
            ),
            "adapter_fine_tuning": Setting(
                hparams={
                    "lr": _f(
                        2e-4,
                        "LoRA adapters: 2e-4 (GPT-2 M, Hu et al. 2021 Table 11; QLoRA on "
                        "7B-13B, Dettmers et al. 2023), ~10x full fine-tuning's 2e-5",
                    ),
                    "weight_decay": _f(0.01, "LoRA's GPT-2 recipe uses 0.01 (Hu et al. 2021)"),
                },
                lr_range=_f(
                    (5e-5, 1e-3),
                    "LoRA LRs: 1e-4 (QLoRA 33B-65B) to 5e-4 (RoBERTa-base, Hu et al. 2021)",
                ),
                reference_batch=_f(16, "QLoRA's batch of 16 (Dettmers et al. 2023)"),
            ),
            "diffusion": Setting(
                hparams={
                    "lr": _f(
                        2e-4,
                        "DDPM on CIFAR-10: 2e-4 at batch 128 (Ho et al. 2020); ADM 1e-4 at "
                        "256 (Dhariwal & Nichol 2021)",
                    ),
                    "betas": _f((0.9, 0.999), "DDPM and ADM keep Adam's defaults"),
                    "weight_decay": _f(0.0, "DDPM and ADM use no weight decay"),
                },
                lr_range=_f((2e-5, 5e-4), "DDPM: 2e-4 at 32x32, 2e-5 at 256x256 (Ho et al. 2020)"),
                reference_batch=_f(128, "DDPM's CIFAR-10 batch"),
            ),
            "recommendation": Setting(
                hparams={
                    "lr": _f(
                        1e-3,
                        "Adam at 1e-3 trains CTR models' dense towers and tables (DCN-V2, "
                        "Wang et al. 2021, tunes 1e-4..1e-3)",
                    ),
                    "weight_decay": _f(
                        0.0,
                        "embedding rows are regularized by how rarely they are seen, not by "
                        "decay; DLRM uses none",
                    ),
                },
                lr_range=_f((1e-4, 1e-2), "DCN-V2's and DLRM's Adam-family LRs"),
                reference_batch=_f(512, "DCN-V2's batch of 512"),
            ),
            "graph": Setting(
                hparams={
                    "lr": _f(
                        1e-2,
                        "GCN: Adam at 0.01 (Kipf & Welling 2017); GAT 5e-3 (Velickovic et al. "
                        "2018)",
                    ),
                    "weight_decay": _f(
                        5e-4,
                        "GCN and GAT use 5e-4 (as an L2 term under Adam; as AdamW's decoupled "
                        "decay it is weaker, so raise it if the model overfits)",
                    ),
                },
                lr_range=_f(
                    (1e-3, 1e-2), "GNN LRs reported between 1e-3 and 1e-2 (GCN 1e-2, GAT 5e-3)"
                ),
                reference_batch=_f(1, "GCN/GAT take one full-graph step per epoch"),
            ),
            "speech": Setting(
                hparams={
                    "lr": _f(
                        5e-4,
                        "wav2vec 2.0 BASE peaks at 5e-4, LARGE at 3e-4 (Baevski et al. 2020)",
                    ),
                    "betas": _f((0.9, 0.98), "wav2vec 2.0 and Conformer use beta2 0.98"),
                    "eps": _f(1e-6, "wav2vec 2.0 uses eps 1e-6"),
                    "weight_decay": _f(0.01, "wav2vec 2.0 uses weight decay 0.01"),
                },
                lr_range=_f(
                    (1e-4, 2e-3),
                    "wav2vec 2.0 3e-4..5e-4; Conformer's schedule peaks near 2e-3 "
                    "(Gulati et al. 2020)",
                ),
                reference_batch=_f(
                    384,
                    "wav2vec 2.0 BASE's 1.6 h of audio per batch: ~400 utterances of ~15 s",
                ),
            ),
            "detection": Setting(
                hparams={
                    "lr": _f(
                        1e-4,
                        "DETR: AdamW at 1e-4 (backbone 1e-5) at batch 64 (Carion et al. 2020)",
                    ),
                    "weight_decay": _f(1e-4, "DETR uses weight decay 1e-4"),
                },
                lr_range=_f((2e-5, 5e-4), "DETR-family LRs (DETR, Deformable DETR 2e-4)"),
                reference_batch=_f(64, "DETR's batch of 64 images"),
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
            "betas_large_batch_encoder": _f(
                (0.9, 0.98),
                "RoBERTa: beta2 0.98 improves stability at large batch sizes (Liu et al. 2019, "
                "Sec. 3.1)",
            ),
            "detr_clip_norm": _f(0.1, "DETR clips the global norm at 0.1 (Carion et al. 2020)"),
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

# torch.optim's other optimizers: closure-driven, sparse-only and 2-D-only ones say so in
# extra["requires"] ("closure", "sparse_gradients" or "2d_params").

_add(
    OptimizerInfo(
        name="asgd",
        display="ASGD (averaged SGD)",
        family=_f("sgd", "plain SGD with a decaying step and a running average of the iterates"),
        paper="Polyak & Juditsky 1992, 'Acceleration of Stochastic Approximation by "
        "Averaging'; step schedule from Bottou 2012, 'Stochastic Gradient Descent Tricks'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(1e-2, "torch default; the step decays as lr / (1 + lambd lr t)^alpha"),
                    "lambd": _f(1e-4, "decay term of the step schedule (torch default)"),
                    "alpha": _f(0.75, "power of the step decay: Bottou 2012's 3/4 for ASGD"),
                    "t0": _f(
                        1e6,
                        "averaging starts after t0 steps; torch's 1e6 means a shorter run never "
                        "averages: lower it to the step where the loss plateaus",
                    ),
                    "weight_decay": _f(0.0, "coupled L2; the averaging already regularizes"),
                },
                lr_range=_f((1e-3, 1e-1), "plain SGD without momentum, as on linear models"),
                reference_batch=_f(256, "typical mini-batch, as for SGD"),
            ),
        },
        state_bytes=_f(4.0, "one fp32 running average of the weights (ax) plus 0-dim scalars"),
        batch_scaling=_f("linear", "plain SGD: linear scaling rule (Goyal et al. 2017)"),
        warmup=_f(False, "the step starts large and decays; no warmup in Bottou 2012"),
        best_for=_f(
            "convex problems (linear and logistic models) where the averaged iterate is the "
            "answer; evaluate state['ax']",
            "averaging reaches the optimal asymptotic rate of stochastic approximation "
            "(Polyak & Juditsky 1992)",
        ),
        extra={
            "averaged_weights": _f(
                "ax",
                "torch's ASGD keeps the average in state['ax'] and never writes it into the "
                "parameters: copy it in to evaluate the averaged model",
            ),
        },
    )
)

_add(
    OptimizerInfo(
        name="rprop",
        display="Rprop",
        family=_f("sign", "per-weight steps grown or shrunk by the sign agreement of gradients"),
        paper="Riedmiller & Braun 1993, 'A Direct Adaptive Method for Faster Backpropagation "
        "Learning: The RPROP Algorithm'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(1e-2, "the initial per-weight step size (torch default)"),
                    "etas": _f((0.5, 1.2), "Riedmiller & Braun 1993: shrink by 0.5, grow by 1.2"),
                    "step_sizes": _f(
                        (1e-6, 50.0), "Riedmiller & Braun 1993: steps kept in [1e-6, 50]"
                    ),
                },
                lr_range=_f(
                    (1e-4, 1e-1), "only the first step: Rprop adapts each weight's step from it"
                ),
                reference_batch=_f(
                    256, "nominal: Rprop is meant for full-batch gradients, whatever their size"
                ),
            ),
        },
        state_bytes=_f(8.0, "the previous gradient and the per-weight step size, fp32"),
        batch_scaling=_f("none", "the steps follow gradient signs, not the batch size"),
        warmup=_f(False, "the per-weight steps start small and grow by themselves"),
        best_for=_f(
            "small networks trained on full-batch gradients",
            "sign-agreement steps break under mini-batch noise, the reason RMSprop was "
            "introduced (Tieleman & Hinton 2012)",
        ),
    )
)

_add(
    OptimizerInfo(
        name="lbfgs",
        display="L-BFGS",
        family=_f("second_order", "quasi-Newton: curvature from the last gradient differences"),
        paper="Liu & Nocedal 1989, 'On the Limited Memory BFGS Method for Large Scale "
        "Optimization'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(1.0, "a quasi-Newton step has the natural scale 1 (torch default)"),
                    "max_iter": _f(20, "up to 20 iterations per step(closure) (torch default)"),
                    "history_size": _f(
                        10,
                        "3-20 correction pairs suffice (Nocedal & Wright 2006); scipy's "
                        "L-BFGS-B keeps 10, where torch's 100 costs 800 bytes per parameter",
                    ),
                    "line_search_fn": _f(
                        "strong_wolfe",
                        "without a line search the fixed step can diverge on non-convex "
                        "losses; strong Wolfe is L-BFGS's standard search (Nocedal & Wright 2006)",
                    ),
                },
                lr_range=_f(
                    (0.1, 1.0), "the line search scales the step; far below 1 L-BFGS crawls"
                ),
                reference_batch=_f(
                    256, "nominal: L-BFGS needs full-batch (deterministic) gradients"
                ),
            ),
        },
        state_bytes=_f(
            88.0,
            "history_size=10 pairs of fp32 (s, y) vectors (80 bytes) plus the direction and "
            "the previous gradient (8)",
        ),
        batch_scaling=_f("none", "full-batch method: the batch is the whole data set"),
        warmup=_f(False, "the line search picks each step"),
        best_for=_f(
            "small deterministic problems: full-batch fits, physics-informed networks, style "
            "transfer; it steps only as step(closure)",
            "curvature pairs converge in far fewer iterations on smooth full-batch losses "
            "(Liu & Nocedal 1989)",
        ),
        extra={
            "requires": _f(
                "closure",
                "LBFGS.step re-evaluates the loss up to max_eval times: call it as "
                "optimizer.step(closure)",
            ),
        },
    )
)

_add(
    OptimizerInfo(
        name="sparse_adam",
        display="SparseAdam",
        family=_f("adaptive", "Adam whose moments are updated only where the gradient is"),
        paper="Kingma & Ba 2015, with lazy row-wise updates (torch.optim.SparseAdam)",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(1e-3, "Adam's default (torch default)"),
                    "betas": _ADAM_BETAS,
                    "eps": _ADAM_EPS,
                },
                lr_range=_f((1e-5, 1e-2), "as Adam: a step of ~lr per touched coordinate"),
                reference_batch=_f(256, "typical mini-batch, as for Adam"),
            ),
        },
        state_bytes=_f(8.0, "two fp32 moment buffers; a step reads only the touched rows"),
        batch_scaling=_f("sqrt", "adaptive method (Malladi et al. 2022)"),
        warmup=_f(False, "rows are touched rarely, so early noisy steps stay local"),
        best_for=_f(
            "large embedding tables with sparse gradients (nn.Embedding(sparse=True)), "
            "beside a dense optimizer for the rest (MultiOptimizer)",
            "lazy updates touch only the looked-up rows: a step costs the rows used, not the table",
        ),
        extra={
            "requires": _f(
                "sparse_gradients",
                "SparseAdam refuses dense gradients: give it only nn.Embedding(sparse=True) "
                "weights and the rest to another optimizer",
            ),
        },
    )
)

_add(
    OptimizerInfo(
        name="sparse_adam_adamw",
        display="SparseAdam + AdamW",
        family=_f(
            "adaptive",
            "lazy Adam on the sparse embedding tables, AdamW on the dense layers (one LR)",
        ),
        paper="Kingma & Ba 2015; Loshchilov & Hutter 2019; lazy row-wise updates as "
        "torch.optim.SparseAdam",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(1e-3, "Adam's default, for both parts"),
                    "betas": _ADAM_BETAS,
                    "eps": _ADAM_EPS,
                    "weight_decay": _f(
                        0.0,
                        "applies to the dense part only (SparseAdam has none); recommenders "
                        "train without decay (DLRM)",
                    ),
                },
                lr_range=_f((1e-5, 1e-2), "as Adam: a step of ~lr per touched coordinate"),
                reference_batch=_f(512, "DCN-V2's batch of 512"),
            ),
        },
        state_bytes=_f(8.0, "two fp32 moment buffers on both parts"),
        batch_scaling=_f("sqrt", "adaptive method (Malladi et al. 2022)"),
        warmup=_f(False, "rows are touched rarely, so early noisy steps stay local"),
        best_for=_f(
            "models with nn.Embedding(sparse=True) / nn.EmbeddingBag(sparse=True) tables",
            "dense optimizers refuse sparse gradients and SparseAdam refuses dense ones: "
            "the tables and the dense layers each get the Adam that takes their gradients",
        ),
    )
)

_add(
    OptimizerInfo(
        name="adadelta",
        display="Adadelta",
        family=_f("adaptive", "steps scaled by the ratio of RMS updates to RMS gradients"),
        paper="Zeiler 2012, 'ADADELTA: An Adaptive Learning Rate Method'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(1.0, "Zeiler 2012 has no global LR: 1 is the paper's method"),
                    "rho": _f(0.95, "Zeiler 2012's decay on MNIST (torch defaults to 0.9)"),
                    "eps": _f(1e-6, "Zeiler 2012 and torch default"),
                    "weight_decay": _f(0.0, "coupled L2; rarely used with Adadelta"),
                },
                lr_range=_f((0.1, 2.0), "a multiplier of the unit-corrected step around 1"),
                reference_batch=_f(256, "typical mini-batch"),
            ),
        },
        state_bytes=_f(8.0, "running averages of squared gradients and squared updates"),
        batch_scaling=_f("sqrt", "adaptive method"),
        warmup=_f(False, "the update accumulator starts at zero, so early steps are small"),
        best_for=_f(
            "a historical LR-free method; prefer Prodigy when no LR can be tuned",
            "unit-corrected steps need no global LR (Zeiler 2012), but Adam-family methods "
            "with an estimated step train faster (Mishchenko & Defazio 2023)",
        ),
    )
)

_MUON_COMMON: dict[str, Any] = dict(
    family=_f(
        "orthogonalized",
        "momentum SGD whose update matrix is orthogonalized by Newton-Schulz iterations",
    ),
    paper="Jordan et al. 2024, 'Muon: An optimizer for hidden layers in neural networks'; "
    "Liu et al. 2025, 'Muon is Scalable for LLM Training'",
)
_MUON_HPARAMS: dict[str, Fact[Any]] = {
    "momentum": _f(0.95, "Jordan et al. 2024: momentum 0.95 is usually fine"),
    "nesterov": _f(True, "Jordan et al. 2024 use Nesterov momentum"),
    "ns_steps": _f(5, "5 quintic Newton-Schulz iterations (Jordan et al. 2024)"),
}

_add(
    OptimizerInfo(
        name="muon_2d",
        display="Muon (2-D parameters only)",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(
                        0.02,
                        "Jordan et al. 2024: 0.02 in spectral-norm units, with the original "
                        "sqrt(max(1, A/B)) shape scaling",
                    ),
                    "weight_decay": _f(
                        0.0,
                        "Jordan et al.'s default; at scale Liu et al. 2025 add decoupled decay "
                        "(use 'muon', which matches AdamW's)",
                    ),
                    **_MUON_HPARAMS,
                },
                lr_range=_f(
                    (5e-3, 0.1), "the speedruns' spectral-norm LRs are 0.02-0.05 (Jordan et al.)"
                ),
                reference_batch=_f(
                    256, "nominal: Muon's LRs are quoted per run, not per batch size"
                ),
            ),
        },
        state_bytes=_f(4.0, "one fp32 momentum buffer"),
        batch_scaling=_f(
            "sqrt", "treated like the Adam family: the orthogonal step has a set norm"
        ),
        warmup=_f(False, "the orthogonalized step has a bounded norm from the first step"),
        best_for=_f(
            "hidden weight matrices when the rest of the model has its own optimizer; 'muon' "
            "routes a whole model",
            "Jordan et al. 2024: embeddings, the head, norms and biases belong to AdamW",
        ),
        extra={
            "requires": _f(
                "2d_params",
                "torch.optim.Muon refuses parameters that are not 2-D matrices",
            ),
        },
        **_MUON_COMMON,
    )
)

# --------------------------------------------------------------------------------------------
# optiwise's own optimizers (optiwise.optim)
# --------------------------------------------------------------------------------------------

_ADAMW = _OPTIMIZERS["adamw"]

_LION_GENERAL = Setting(
    hparams={
        "lr": _f(
            1e-4,
            "Chen et al. 2023: 3-10x below AdamW's LR, since the sign update has a larger "
            "norm than Adam's; AdamW's 1e-3 / 10",
        ),
        "betas": _f(
            (0.9, 0.99),
            "Chen et al. 2023 defaults: beta1 interpolates the update, beta2 tracks momentum",
        ),
        "weight_decay": _f(
            0.1,
            "3-10x above AdamW's decay so that lr x wd, the effective decay strength, stays "
            "the same (Chen et al. 2023); AdamW's 0.01 x 10",
        ),
    },
    lr_range=_f((1e-6, 1e-3), "AdamW's range divided by 3-10 (Chen et al. 2023)"),
    reference_batch=_f(256, "as AdamW, from which Lion's LR is derived"),
)
_LION_SETTINGS: dict[str, Setting] = {
    "general": _LION_GENERAL,
    "language_transformer": Setting(
        hparams={
            "lr": _f(3e-5, "AdamW's BERT/GPT LR (1e-4) divided by ~3 (Chen et al. 2023)"),
            "betas": _f(
                (0.95, 0.98),
                "Chen et al. 2023 use beta1 0.95, beta2 0.98 on language models for stability",
            ),
            "weight_decay": _f(0.1, "AdamW's 0.01-0.03 times 3-10 (Chen et al. 2023)"),
        },
        lr_range=_f((1e-5, 3e-4), "AdamW's language-model range divided by 3-10"),
    ),
    "vision_transformer": Setting(
        hparams={
            "lr": _f(3e-4, "AdamW's ViT LR (3e-3) divided by 10 (Chen et al. 2023)"),
            "weight_decay": _f(1.0, "AdamW's ViT decay (0.1-0.3) times 3-10 (Chen et al. 2023)"),
        },
        lr_range=_f((1e-4, 1e-3), "AdamW's ViT range divided by 3-10"),
        reference_batch=_f(4096, "ViT's reference batch, as for AdamW"),
    ),
    "fine_tuning": Setting(
        hparams={
            "lr": _f(5e-6, "AdamW's fine-tuning LR (2e-5) divided by ~4"),
            "weight_decay": _f(0.05, "AdamW's 0.01 times ~4, keeping lr x wd"),
        },
        lr_range=_f((1e-6, 3e-5), "AdamW's fine-tuning range divided by 3-10"),
        reference_batch=_f(32, "BERT fine-tuning batch, as for AdamW"),
    ),
}
_LION_COMMON: dict[str, Any] = dict(
    family=_f("sign", "the update is the sign of an interpolated momentum"),
    paper="Chen et al. 2023, 'Symbolic Discovery of Optimization Algorithms'",
    settings=_LION_SETTINGS,
    batch_scaling=_f(
        "sqrt",
        "treated like the Adam family; Chen et al. find Lion's advantage grows with the batch",
    ),
    warmup=_f(True, "Chen et al. keep AdamW's warmup when switching to Lion"),
)

_add(
    OptimizerInfo(
        name="lion",
        display="Lion",
        state_bytes=_f(4.0, "one fp32 momentum buffer: half of AdamW's state"),
        best_for=_f(
            "transformers and large vision models when optimizer memory matters",
            "AdamW-level quality with one state buffer instead of two (Chen et al. 2023)",
        ),
        **_LION_COMMON,
    )
)
_EIGHT_BIT_EXTRA: dict[str, Fact[Any]] = {
    "min_8bit_numel": _f(
        4096, "tensors below 4096 elements keep fp32 state: the saving is negligible"
    ),
    "block_size": _f(
        256,
        "one fp32 absmax per 256 elements costs 0.016 bytes per element and isolates outliers "
        "better than the paper's 2048 (bitsandbytes' block-wise optimizers also use 256)",
    ),
}

_add(
    OptimizerInfo(
        name="lion8bit",
        display="Lion (8-bit state)",
        state_bytes=_f(1.02, "int8 momentum codes plus one fp32 absmax per 256-element block"),
        best_for=_f(
            "Lion under the tightest memory budget",
            "a quarter of Lion's state; block-wise quantization keeps the sign of the update "
            "(Dettmers et al. 2022)",
        ),
        extra=_EIGHT_BIT_EXTRA,
        **_LION_COMMON,
    )
)

_add(
    OptimizerInfo(
        name="adamw8bit",
        display="AdamW (8-bit state)",
        family=_f("adaptive", "AdamW with block-wise 8-bit quantized moments"),
        paper="Dettmers et al. 2022, '8-bit Optimizers via Block-wise Quantization'",
        settings=_ADAMW.settings,
        state_bytes=_f(
            2.03,
            "two 8-bit moment codes plus one fp32 absmax per 256-element block and moment: "
            "a quarter of AdamW's 8 bytes",
        ),
        batch_scaling=_ADAMW.batch_scaling,
        warmup=_ADAMW.warmup,
        best_for=_f(
            "AdamW's recipes under a memory budget",
            "matches 32-bit AdamW's quality with 75% less state (Dettmers et al. 2022)",
        ),
        extra=_EIGHT_BIT_EXTRA,
    )
)

_add(
    OptimizerInfo(
        name="lamb",
        display="LAMB",
        family=_f("layerwise", "Adam moments with a per-tensor trust ratio ||w|| / ||update||"),
        paper="You et al. 2020, 'Large Batch Optimization for Deep Learning: Training BERT "
        "in 76 minutes'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(
                        4e-3,
                        "BERT pretraining at batch 32k: 4e-3 (NVIDIA's LAMB recipe, phase 2; "
                        "6e-3 at 64k); the trust ratio makes the LR relative to ||w||",
                    ),
                    "betas": _f((0.9, 0.999), "You et al. 2020 defaults"),
                    "eps": _f(1e-6, "You et al. 2020 and BERT use eps 1e-6"),
                    "weight_decay": _f(0.01, "decoupled decay as BERT's 0.01"),
                },
                lr_range=_f((1e-3, 1e-2), "LAMB LRs reported at batch 32k-64k"),
                reference_batch=_f(32768, "LAMB's target regime: BERT at batch 32k"),
            ),
        },
        state_bytes=_f(8.0, "two fp32 moment buffers, as Adam"),
        batch_scaling=_f("sqrt", "You et al. 2020 scale LAMB's LR with the square root"),
        warmup=_f(True, "You et al. 2020 warm up linearly; large batches need it"),
        best_for=_f(
            "transformer pretraining at very large batches (>= 8k)",
            "per-layer trust ratios keep BERT's accuracy up to batch 64k (You et al. 2020)",
        ),
    )
)

_add(
    OptimizerInfo(
        name="lars",
        display="LARS",
        family=_f(
            "layerwise",
            "momentum SGD with a per-tensor trust ratio eta ||w|| / (||g|| + wd ||w||)",
        ),
        paper="You et al. 2017, 'Large Batch Training of Convolutional Networks'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(
                        0.3,
                        "0.3 x batch/256 with trust coefficient 1e-3 (SimCLR, Chen et al. "
                        "2020); the trust ratio sets each layer's step relative to ||w||",
                    ),
                    "momentum": _f(0.9, "You et al. 2017 use momentum 0.9"),
                    "weight_decay": _f(
                        1e-4, "as momentum SGD on ImageNet; large-batch recipes use 5e-5..1e-4"
                    ),
                    "trust_coefficient": _f(
                        1e-3, "eta = 0.001 (You et al. 2017): the step is ~0.1% of ||w||"
                    ),
                },
                lr_range=_f((0.1, 1.0), "global LRs at batch 256 before linear scaling"),
                reference_batch=_f(256, "LARS LRs are quoted per 256 samples, then scaled"),
            ),
            "contrastive": Setting(
                hparams={
                    "lr": _f(
                        0.3, "SimCLR: 0.3 x B/256 (4.8 at batch 4096; Chen et al. 2020, App. B.1)"
                    ),
                    "momentum": _f(0.9, "SimCLR's LARS momentum 0.9"),
                    "weight_decay": _f(1e-6, "SimCLR uses weight decay 1e-6"),
                    "trust_coefficient": _f(1e-3, "SimCLR's LARS eta 0.001"),
                },
            ),
        },
        state_bytes=_f(4.0, "one fp32 momentum buffer"),
        batch_scaling=_f("linear", "LARS keeps the linear scaling rule (You et al. 2017)"),
        warmup=_f(True, "large-batch LARS runs warm up for ~5 epochs (You et al. 2017)"),
        best_for=_f(
            "CNNs (ResNet) and contrastive learning at very large batches (>= 8k)",
            "trust ratios keep ResNet-50's accuracy up to batch 32k (You et al. 2017)",
        ),
    )
)

_add(
    OptimizerInfo(
        name="sophiag",
        display="SophiaG",
        family=_f(
            "second_order",
            "momentum divided by an EMA of a diagonal Hessian estimate, clipped per coordinate",
        ),
        paper="Liu et al. 2023, 'Sophia: A Scalable Stochastic Second-order Optimizer for "
        "Language Model Pre-training'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(1e-4, "the official SophiaG default"),
                    "betas": _f(
                        (0.965, 0.99),
                        "Liu et al. 2023: beta1 for the gradient EMA, beta2 for the Hessian EMA",
                    ),
                    "rho": _f(
                        0.04,
                        "the clipping scale gamma (rho): larger rho, fewer clipped coordinates "
                        "(official default)",
                    ),
                    "weight_decay": _f(0.1, "GPT-2 pretraining decay used with Sophia"),
                },
                lr_range=_f((1e-5, 1e-3), "GPT-2 small-to-large Sophia LRs lie in 1e-4..6e-4"),
                reference_batch=_f(480, "GPT-2 pretraining batch of 480 sequences (nanoGPT)"),
            ),
        },
        state_bytes=_f(8.0, "gradient EMA and Hessian EMA, both fp32"),
        batch_scaling=_f("sqrt", "treated like the Adam family"),
        warmup=_f(True, "Liu et al. 2023 warm up as for AdamW (2k steps on GPT-2)"),
        best_for=_f(
            "language-model pretraining, where it reaches AdamW's loss in fewer steps",
            "Liu et al. 2023 report ~2x fewer steps than AdamW on GPT-2",
        ),
        extra={
            "hessian_interval": _f(
                10,
                "refresh the Hessian estimate every k=10 steps, which keeps its overhead near "
                "5% of training (Liu et al. 2023)",
            ),
        },
    )
)

_add(
    OptimizerInfo(
        name="schedule_free_adamw",
        display="Schedule-free AdamW",
        family=_f(
            "schedule_free",
            "AdamW on an interpolation of an SGD-like sequence and its running average",
        ),
        paper="Defazio et al. 2024, 'The Road Less Scheduled'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(
                        2.5e-3,
                        "Defazio et al. 2024: schedule-free runs take 1-10x the tuned AdamW "
                        "LR; 2.5e-3 is the reference implementation's default",
                    ),
                    "betas": _f(
                        (0.9, 0.999),
                        "beta1 is the interpolation weight (0.9 as Adam's momentum)",
                    ),
                    "eps": _ADAM_EPS,
                    "weight_decay": _f(0.01, "as AdamW; decoupled"),
                },
                lr_range=_f((1e-4, 3e-2), "AdamW's range shifted up by up to 10x"),
                reference_batch=_f(
                    256, "AdamW's reference batch: its LRs are quoted relative to AdamW's"
                ),
            ),
        },
        state_bytes=_f(8.0, "the z sequence and the second moment, both fp32"),
        batch_scaling=_f("sqrt", "treated like the Adam family"),
        warmup=_f(
            True,
            "needs a warmup (its warmup_steps argument) but no decaying schedule "
            "(Defazio et al. 2024)",
        ),
        best_for=_f(
            "runs whose length is not known in advance; no schedule to tune",
            "matches tuned cosine schedules without one (Defazio et al. 2024, AlgoPerf winner)",
        ),
    )
)


def _with_muon(setting: Setting, general: bool) -> Setting:
    """AdamW's setting for one task with Muon's own hyperparameters added to the general one."""
    extra = _MUON_HPARAMS if general else {}
    return Setting(
        hparams={**setting.hparams, **extra},
        lr_range=setting.lr_range,
        reference_batch=setting.reference_batch,
    )


_add(
    OptimizerInfo(
        name="muon",
        display="Muon + AdamW (RMS-matched)",
        settings={
            task: _with_muon(setting, task == "general")
            for task, setting in _ADAMW.settings.items()
        },
        state_bytes=_f(
            4.0,
            "one fp32 momentum buffer on the hidden matrices, most of a transformer's "
            "parameters; AdamW's 8 bytes on embeddings, the head, norms and biases",
        ),
        batch_scaling=_ADAMW.batch_scaling,
        warmup=_ADAMW.warmup,
        best_for=_f(
            "transformer pretraining (language and vision) when loss per step and time "
            "matter, with AdamW's LR and weight decay",
            "Liu et al. 2025: Muon with weight decay and RMS-matched updates has ~2x AdamW's "
            "computational efficiency at compute-optimal training, reusing AdamW's "
            "hyperparameters",
        ),
        extra={
            "update_rms_scale": _f(
                0.2,
                "Liu et al. 2025 scale the orthogonal update by 0.2 sqrt(max(A, B)) to give it "
                "AdamW's typical update RMS of 0.2-0.4, so AdamW's LR and decay transfer",
            ),
        },
        **_MUON_COMMON,
    )
)

_add(
    OptimizerInfo(
        name="prodigy",
        display="Prodigy",
        family=_f("adaptive", "Adam whose step size is an on-line estimate of the distance D"),
        paper="Mishchenko & Defazio 2023, 'Prodigy: An Expeditiously Adaptive Parameter-Free "
        "Learner'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(
                        1.0,
                        "lr multiplies the estimated step: leave it at 1 (Mishchenko & "
                        "Defazio 2023; prodigyopt's advice)",
                    ),
                    "betas": _f((0.9, 0.999), "Adam's defaults, as prodigyopt"),
                    "eps": _ADAM_EPS,
                    "weight_decay": _f(
                        0.01, "decoupled decay as AdamW's default (prodigyopt decouples it)"
                    ),
                    "d0": _f(
                        1e-6,
                        "the estimate starts tiny and grows on its own; rarely needs changing "
                        "(prodigyopt default)",
                    ),
                    "d_coef": _f(
                        1.0,
                        "multiplier of the estimate; 0.5-2 is the knob to turn, not lr "
                        "(prodigyopt)",
                    ),
                },
                lr_range=_f(
                    (0.5, 2.0), "a multiplier of the estimated step around 1, not an LR to tune"
                ),
                reference_batch=_f(
                    256, "nominal: the step is estimated for whatever batch is used"
                ),
            ),
        },
        state_bytes=_f(
            16.0, "Adam's two moments, the weighted gradient sum s and the initial weights"
        ),
        batch_scaling=_f("none", "the step size is estimated, not set: nothing to scale"),
        warmup=_f(
            True,
            "keep a warmup with a decaying schedule; pass safeguard_warmup=True with it "
            "(prodigyopt's advice)",
        ),
        best_for=_f(
            "runs with no LR budget: no range test or sweep, Adam-level results",
            "Mishchenko & Defazio 2023: the estimated step matches hand-tuned Adam across "
            "vision and language benchmarks",
        ),
    )
)

_add(
    OptimizerInfo(
        name="soap",
        display="SOAP",
        family=_f(
            "second_order",
            "Adam in the eigenbasis of Shampoo's Kronecker-factored preconditioner",
        ),
        paper="Vyas et al. 2024, 'SOAP: Improving and Stabilizing Shampoo using Adam'",
        settings={
            "general": Setting(
                hparams={
                    "lr": _f(3e-3, "the authors' recommended setting (SOAP's README)"),
                    "betas": _f((0.95, 0.95), "Vyas et al. 2024 use beta1 = beta2 = 0.95 (README)"),
                    "eps": _ADAM_EPS,
                    "weight_decay": _f(0.01, "decoupled decay 0.01 (SOAP's README)"),
                    "precondition_frequency": _f(
                        10,
                        "refresh the eigenbases every 10 steps: the paper's default, with "
                        "little loss up to ~100 (Vyas et al. 2024)",
                    ),
                },
                lr_range=_f((1e-4, 1e-2), "Adam-like step sizes; the paper sweeps around 3e-3"),
                reference_batch=_f(
                    256, "Vyas et al. 2024 train 360M/660M LMs at batch 256 (and 2M tokens)"
                ),
            ),
        },
        state_bytes=_f(
            24.0,
            "Adam's two moments (8) plus L, R and their eigenbases: 8 (m^2 + n^2) / (m n) "
            "bytes, 16 on a square matrix (1-D tensors: 8)",
        ),
        batch_scaling=_f("sqrt", "treated like the Adam family"),
        warmup=_f(True, "Vyas et al. 2024 keep AdamW's warmup"),
        best_for=_f(
            "language-model pretraining at large batch, where a second-order preconditioner "
            "pays for its matrix work",
            "Vyas et al. 2024: over 40% fewer iterations and 35% less wall-clock time than "
            "AdamW on 360M/660M LMs",
        ),
    )
)

LOOKAHEAD_K: Fact[int] = _f(5, "Zhang et al. 2019: sync every k=5 fast steps")
LOOKAHEAD_ALPHA: Fact[float] = _f(0.5, "Zhang et al. 2019: slow weights move halfway")
#: ``lookahead_<name>`` is Lookahead around the optimizer ``<name>``.
LOOKAHEAD_PREFIX = "lookahead_"


def lookahead_keys(inner: str) -> tuple[str, str]:
    """The hyperparameter names of Lookahead's ``k`` and ``alpha`` around ``inner``.

    ``("k", "alpha")``, or ``("lookahead_k", "lookahead_alpha")`` when the inner optimizer
    has a hyperparameter of either name (RMSprop's ``alpha``), so the two never collide.
    """
    base = get_info(inner)
    taken = {key for setting in base.settings.values() for key in setting.hparams}
    if {"k", "alpha"} & taken:
        return "lookahead_k", "lookahead_alpha"
    return "k", "alpha"


def lookahead_info(inner: str) -> OptimizerInfo:
    """The facts of ``Lookahead`` wrapped around the optimizer named ``inner``.

    Same settings as the inner optimizer plus ``k`` and ``alpha`` (named as
    :func:`lookahead_keys` says); 4 more state bytes per parameter for the slow weights.
    """
    base = get_info(inner)
    general = base.settings["general"]
    k_key, alpha_key = lookahead_keys(inner)
    settings = {
        **base.settings,
        "general": Setting(
            hparams={**general.hparams, k_key: LOOKAHEAD_K, alpha_key: LOOKAHEAD_ALPHA},
            lr_range=general.lr_range,
            reference_batch=general.reference_batch,
        ),
    }
    return OptimizerInfo(
        name=f"{LOOKAHEAD_PREFIX}{inner}",
        display=f"Lookahead({base.display})",
        family=_f("wrapper", f"Lookahead around {base.display}"),
        paper=f"Zhang et al. 2019, 'Lookahead Optimizer: k steps forward, 1 step back'; "
        f"inner: {base.paper}",
        settings=settings,
        state_bytes=_f(
            base.state_bytes.value + 4.0,
            f"{base.display}'s state plus one fp32 copy of the slow weights",
        ),
        batch_scaling=base.batch_scaling,
        warmup=base.warmup,
        best_for=_f(
            f"{base.display} with less sensitivity to the LR and less variance",
            "Zhang et al. 2019: lower variance, robust to inner-optimizer hyperparameters",
        ),
        extra=base.extra,
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
    """The task family that ``task`` names (``None`` means ``"general"``).

    Any word of :data:`TASK_SYNONYMS` is accepted, in any case, with hyphens, spaces or
    underscores (``"reinforcement-learning"`` is ``"rl_policy"``); an unknown word raises a
    ValueError naming the closest known words and the task families.
    """
    if task is None:
        return "general"
    if not isinstance(task, str):
        raise ValueError(f"Invalid task: {task!r} (a task name such as 'causal_lm')")
    found = TASK_SYNONYMS.get(_norm_task(task))
    if found is None:
        close = difflib.get_close_matches(_norm_task(task), list(TASK_SYNONYMS), n=3, cutoff=0.6)
        hint = (
            "did you mean "
            + ", ".join(
                f"{c!r} ({TASK_SYNONYMS[c]})" if TASK_SYNONYMS[c] != c else repr(c) for c in close
            )
            + "? "
            if close
            else ""
        )
        raise ValueError(
            f"Unknown task family {task!r}; {hint}known task families: {', '.join(TASKS)}"
        )
    return found


def get_info(name: str) -> OptimizerInfo:
    """The :class:`OptimizerInfo` of the optimizer with canonical name ``name``.

    ``lookahead_<inner>`` gives :func:`lookahead_info` of ``<inner>`` for every known inner
    optimizer (one level: Lookahead is not wrapped in Lookahead).
    """
    info = _OPTIMIZERS.get(name)
    if info is not None:
        return info
    inner = name[len(LOOKAHEAD_PREFIX) :] if name.startswith(LOOKAHEAD_PREFIX) else None
    if inner is not None and inner in _OPTIMIZERS:
        return lookahead_info(inner)
    raise _unknown("optimizer", name, list(_OPTIMIZERS))


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
