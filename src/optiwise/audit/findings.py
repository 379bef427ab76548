"""Findings and their stable codes, shared by the runtime audit and the script linter.

A code names one known mistake whatever finds it: the runtime audit (live objects) and the
linter (source code) report the same code for the same mistake, possibly with different
severities (a linter sees less than a live object).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from optiwise._findings import Finding, Severity

__all__ = ["CODES", "Finding", "Rule", "Severity", "rule", "sort_findings"]


@dataclass(frozen=True)
class Rule:
    """A known mistake: stable code, short name, default severity, what to do, and why."""

    code: str
    name: str
    severity: Severity
    summary: str
    fix: str
    why: str


def _r(code: str, name: str, severity: Severity, summary: str, fix: str, why: str) -> Rule:
    return Rule(code, name, severity, summary, fix, why)


S = Severity
_CODES: dict[str, Rule] = {
    r.code: r
    for r in (
        # OW1xx: choice of optimizer
        _r(
            "OW101",
            "adam-coupled-weight-decay",
            S.CRITICAL,
            "Adam-family optimizer with weight_decay > 0 (coupled L2, not weight decay)",
            "use AdamW and retune weight_decay: AdamW's decay is decoupled and multiplied by "
            "the LR (each step w -= lr * weight_decay * w), so an Adam L2 coefficient does not "
            "map 1:1 onto it (nor does L2 / lr); start from AdamW's usual 0.01-0.1 and tune",
            "Adam adds wd*w to the gradient, which the adaptive denominator then rescales: "
            "parameters with large gradients are barely regularized, and the decay strength "
            "is tied to the gradient history (Loshchilov & Hutter 2019, Decoupled Weight Decay "
            "Regularization)",
        ),
        _r(
            "OW102",
            "sgd-without-nesterov",
            S.LOW,
            "SGD with momentum but without Nesterov",
            "pass nesterov=True",
            "Nesterov momentum costs nothing and is never worse, often slightly better "
            "(Sutskever et al. 2013)",
        ),
        _r(
            "OW103",
            "adam-on-transformer",
            S.MEDIUM,
            "Adam instead of AdamW on a transformer",
            "use AdamW with weight_decay 0.01 (language) or 0.05-0.3 (vision)",
            "every reference transformer recipe (BERT, GPT, ViT) uses decoupled weight decay",
        ),
        _r(
            "OW104",
            "large-batch-without-layerwise",
            S.MEDIUM,
            "very large batch without a layer-wise adaptive optimizer",
            "use LARS (vision) or LAMB (transformers) with warmup",
            "above ~8k samples per step SGD/Adam lose accuracy even with LR scaling "
            "(You et al. 2017, 2020)",
        ),
        _r(
            "OW105",
            "sgd-without-momentum",
            S.MEDIUM,
            "SGD without momentum on a deep network",
            "use momentum=0.9, nesterov=True",
            "momentum accelerates the ill-conditioned directions of deep-network losses; plain "
            "SGD converges much more slowly (Sutskever et al. 2013)",
        ),
        _r(
            "OW106",
            "extreme-momentum",
            S.MEDIUM,
            "momentum or betas outside the range that trains stably",
            "use momentum 0.9 (at most 0.99) and Adam betas (0.9, 0.95-0.999)",
            "beta2 below 0.9 averages the squared gradients over too few steps, so the "
            "per-parameter step size is noisy (transformer recipes use 0.95-0.999); momentum "
            "above 0.99 averages over more than 100 steps and overshoots (Sutskever et al. "
            "2013; Kingma & Ba 2015)",
        ),
        # OW2xx: learning rate and batch size
        _r(
            "OW201",
            "lr-out-of-range",
            S.MAJOR,
            "learning rate far outside the optimizer's typical range",
            "use an LR within the optimizer's range (optiwise list), or run the LR range test",
            "LRs are not portable between optimizers: an SGD LR of 0.1 makes Adam diverge, an "
            "Adam LR of 1e-3 makes SGD crawl",
        ),
        _r(
            "OW202",
            "lr-not-scaled-for-batch",
            S.MEDIUM,
            "learning rate not scaled for the batch size",
            "scale the LR from its reference batch (linear for SGD/LARS, square root for "
            "Adam-family)",
            "the gradient noise, and so the best LR, changes with the batch size "
            "(Goyal et al. 2017; Malladi et al. 2022)",
        ),
        # OW3xx: schedules
        _r(
            "OW301",
            "transformer-without-warmup",
            S.MAJOR,
            "transformer trained without LR warmup",
            "add a linear warmup (1-10% of the steps) before the decay",
            "without warmup, Adam's early updates on transformers are too large and training "
            "diverges or lands worse (Liu et al. 2020; Xiong et al. 2020)",
        ),
        _r(
            "OW302",
            "cyclic-total-steps-mismatch",
            S.MAJOR,
            "OneCycleLR/cyclic schedule whose length does not match the run",
            "set total_steps = epochs * steps_per_epoch (optimizer steps, after accumulation)",
            "a cycle shorter than the run raises mid-training; a longer one never anneals",
        ),
        _r(
            "OW303",
            "scheduler-step-granularity",
            S.CRITICAL,
            "per-batch scheduler stepped once per epoch (or the reverse)",
            "step OneCycleLR/CyclicLR and warmup schedules after every optimizer step; step "
            "epoch-based schedules once per epoch",
            "a per-batch schedule stepped per epoch stays in warmup for the whole run",
        ),
        _r(
            "OW304",
            "scheduler-before-optimizer",
            S.MAJOR,
            "scheduler.step() called before optimizer.step()",
            "call optimizer.step() first, then scheduler.step()",
            "since PyTorch 1.1 this skips the first value of the schedule",
        ),
        _r(
            "OW305",
            "plateau-without-metric",
            S.CRITICAL,
            "ReduceLROnPlateau.step() called without a metric",
            "pass the monitored value: scheduler.step(val_loss)",
            "ReduceLROnPlateau decides on the metric; without it the call fails",
        ),
        _r(
            "OW306",
            "large-batch-without-warmup",
            S.MAJOR,
            "large batch with a scaled LR and no warmup",
            "add a linear warmup (about 5 epochs at ImageNet scale)",
            "a linearly scaled LR is unstable in the first steps (Goyal et al. 2017)",
        ),
        _r(
            "OW307",
            "constant-lr",
            S.MEDIUM,
            "constant learning rate over a run of known length (no decay schedule)",
            "decay the LR over the run: the task family's standard schedule (warmup + cosine "
            "for vision models; optiwise recommend says which)",
            "at a constant LR the weights keep bouncing at the noise level that LR sets; "
            "annealing it at the end lowers the final loss and raises accuracy "
            "(Loshchilov & Hutter 2017; Goyal et al. 2017)",
        ),
        _r(
            "OW308",
            "plateau-on-training-loss",
            S.MAJOR,
            "ReduceLROnPlateau stepped with a training-batch loss",
            "step it once per epoch with a validation metric: scheduler.step(val_loss)",
            "a single batch's loss is noise: patience then counts noisy batches and the LR is "
            "cut for no reason (or, stepped every batch, after a few batches)",
        ),
        _r(
            "OW309",
            "lr-computed-not-applied",
            S.MAJOR,
            "a learning rate computed in the training loop but never given to the optimizer",
            "write it to every param group: for g in optimizer.param_groups: g['lr'] = lr",
            "the optimizer keeps the LR it was built with; the schedule the script computes "
            "(warmup, decay) never happens",
        ),
        # OW4xx: parameter groups
        _r(
            "OW401",
            "decay-on-bias-norm-embedding",
            S.MEDIUM,
            "weight decay applied to biases, normalization or embedding parameters",
            "use optiwise.param_groups(model, weight_decay) to exempt them",
            "decaying norm scales and biases fights the normalization and costs accuracy "
            "(Goyal et al. 2017; BERT; timm)",
        ),
        # OW5xx: the training step
        _r(
            "OW501",
            "missing-zero-grad",
            S.CRITICAL,
            "gradients never cleared in the training loop",
            "call optimizer.zero_grad(set_to_none=True) once per optimizer step",
            "gradients accumulate across iterations, so every step uses the sum of all past "
            "gradients",
        ),
        _r(
            "OW502",
            "clip-before-unscale",
            S.MAJOR,
            "gradient clipping before scaler.unscale_() in a mixed-precision loop",
            "call scaler.unscale_(optimizer) before clipping",
            "the gradients are still multiplied by the loss scale, so the clip threshold is "
            "meaningless",
        ),
        _r(
            "OW503",
            "zero-grad-before-step",
            S.CRITICAL,
            "gradients cleared between backward() and optimizer.step()",
            "call zero_grad() before the forward pass or after optimizer.step(), never between "
            "backward() and the step",
            "the step then sees zero gradients: with weight decay or momentum the weights "
            "still move, but not along the loss gradient",
        ),
        _r(
            "OW504",
            "scaled-gradients-stepped-directly",
            S.CRITICAL,
            "loss scaled by GradScaler but optimizer.step() called directly",
            "call scaler.step(optimizer) and scaler.update() instead of optimizer.step()",
            "the gradients are still multiplied by the loss scale (65536 at the start), so the "
            "update is that much too large, and inf/NaN steps are not skipped",
        ),
        _r(
            "OW505",
            "accumulation-loss-not-divided",
            S.MAJOR,
            "gradient accumulation without dividing the loss by the accumulation steps",
            "backward on loss / accumulation_steps",
            "the accumulated gradient is the sum of the micro-batch gradients, N times the "
            "mean: the effective LR (SGD) and the clipping threshold are off by N",
        ),
        _r(
            "OW506",
            "accumulation-step-every-micro-batch",
            S.MAJOR,
            "loss divided for accumulation but optimizer.step() called every micro-batch",
            "step (and zero the gradients) only when (i + 1) % accumulation_steps == 0",
            "every micro-batch then updates the weights with 1/N of its gradient: no "
            "accumulation happens and the effective LR is N times smaller",
        ),
        _r(
            "OW507",
            "accumulation-zero-grad-every-micro-batch",
            S.CRITICAL,
            "gradients cleared every micro-batch while the optimizer steps every N",
            "call zero_grad() right after optimizer.step(), inside the same condition",
            "each step then sees only the last micro-batch's gradient: the others are thrown away",
        ),
        _r(
            "OW508",
            "optimizer-recreated-in-loop",
            S.MAJOR,
            "optimizer constructed inside the epoch loop",
            "build the optimizer (and its scheduler) once, before the epoch loop",
            "every construction restarts the momentum / Adam moments and detaches any "
            "scheduler from the optimizer that is stepped",
        ),
        # OW6xx: numerics
        _r(
            "OW601",
            "fp16-eps-too-small",
            S.MAJOR,
            "Adam-family eps below 1e-7 with fp16",
            "use eps >= 1e-7 (1e-6 is common), or keep optimizer state in fp32",
            "fp16 cannot represent 1e-8: eps rounds to 0 and the update can divide by zero",
        ),
        # OW7xx: checkpoints and resume
        _r(
            "OW701",
            "resume-without-optimizer-state",
            S.MAJOR,
            "resumed run restores the model but not the optimizer state",
            "save and load optimizer.state_dict() (and the scheduler's) with the model",
            "Adam moments and momentum buffers restart from zero: the first steps after resume "
            "are uncalibrated and the run is not reproducible",
        ),
        _r(
            "OW702",
            "resume-without-scheduler-state",
            S.MEDIUM,
            "resumed run restores the optimizer but not the scheduler",
            "save and load scheduler.state_dict()",
            "the schedule restarts (e.g. warmup again) instead of continuing",
        ),
        _r(
            "OW703",
            "resume-without-scaler-state",
            S.LOW,
            "resumed mixed-precision run restores the model but not the GradScaler",
            "save and load scaler.state_dict() with the optimizer",
            "the loss scale restarts at 65536 and the first steps after resume are skipped "
            "while it backs off",
        ),
        # OW9xx: the linter itself
        _r(
            "OW900",
            "file-error",
            S.CRITICAL,
            "file could not be checked",
            "fix the file (syntax, encoding, permissions) or exclude it",
            "an unreadable file hides its findings",
        ),
    )
}
CODES: Mapping[str, Rule] = MappingProxyType(_CODES)


def rule(code: str) -> Rule:
    """The :class:`Rule` for ``code``."""
    try:
        return _CODES[code]
    except KeyError:
        raise ValueError(
            f"Unknown finding code {code!r}; known: {', '.join(sorted(_CODES))}"
        ) from None


def make_finding(
    code: str, message: str | None = None, *, severity: Severity | None = None, **kwargs: Any
) -> Finding:
    """A :class:`Finding` of rule ``code`` with the rule's texts as defaults."""
    r = rule(code)
    return Finding(
        code=code,
        severity=severity or r.severity,
        message=message or r.summary,
        fix=kwargs.pop("fix", r.fix),
        why=kwargs.pop("why", r.why),
        **kwargs,
    )


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Sorted by path, line, column, then severity and code."""
    return sorted(
        findings, key=lambda f: (f.path or "", f.line or 0, f.col or 0, f.severity.rank, f.code)
    )
