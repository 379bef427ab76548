"""One optimizer step done right: gradient accumulation, clipping, mixed precision, skipping
non-finite steps and an EMA of the weights.

A :class:`Stepper` owns the step of one optimizer (and optionally its scheduler). Per
micro-batch, compute the loss under :meth:`Stepper.autocast` and hand it to
:meth:`Stepper.backward`; the stepper scales it for accumulation (and for fp16 loss
scaling), and when a window of ``accumulation`` micro-batches is complete it unscales the
gradients, measures their global norm, skips the step if any gradient is NaN/Inf, clips,
steps the optimizer, the scheduler and the EMA. At the end of an epoch :meth:`Stepper.flush`
closes a shorter last window, averaging its gradients over its real size.

The order inside a step is the one a careful hand-written loop uses::

    scaler.unscale_(optimizer)         # fp16 only
    norm = total gradient norm         # before clipping; reported in StepResult.grad_norm
    if not finite(norm): skip         # no parameter, optimizer state, scheduler or EMA moves
    clip (by norm or by value)
    scaler.step(optimizer); scaler.update()   # or optimizer.step()
    scheduler.step(); ema.update_parameters(model)

Optimizers with ``train()`` / ``eval()`` methods (schedule-free) are put in train mode when
the stepper is built and switched to eval mode only inside :meth:`Stepper.evaluate`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import ReduceLROnPlateau
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from optiwise.optim._validation import check_positive, check_range

__all__ = ["AmpMode", "StepResult", "Stepper", "has_train_eval_modes"]

AmpMode = Literal["bf16", "fp16"]

_AMP_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}

#: Keys of :meth:`Stepper.state_dict`.
_COUNTERS = ("step_count", "micro_batch_count", "nonfinite_count", "last_nonfinite_param")


@dataclass(frozen=True)
class StepResult:
    """What one closed accumulation window did.

    Attributes
    ----------
    stepped:
        Whether the optimizer stepped (False: non-finite gradients, the step was skipped).
    step:
        Optimizer steps taken so far, this one included.
    grad_norm:
        Global L2 norm of the window's gradients after unscaling and before clipping
        (NaN or Inf when the step was skipped).
    lrs:
        The LR of each param group for this step (before the scheduler moved it on).
    micro_batches:
        Number of micro-batches in the window (``accumulation``, or fewer for a last window
        closed by :meth:`Stepper.flush`).
    nonfinite_param:
        Name of the first parameter whose gradient was not finite; None when it stepped.
    scale:
        The fp16 loss scale used for this window; None without a GradScaler.
    """

    stepped: bool
    step: int
    grad_norm: float
    lrs: tuple[float, ...]
    micro_batches: int
    nonfinite_param: str | None = None
    scale: float | None = None


#: ``hook(result, window_mean_loss)``, see :meth:`Stepper.add_step_hook`.
StepHook = Callable[["StepResult", Tensor], None]


def has_train_eval_modes(optimizer: Any) -> bool:
    """Whether ``optimizer`` has ``train()`` / ``eval()`` modes (schedule-free optimizers).

    torch's :class:`~torch.optim.Optimizer` has neither method, so their presence is the signal.
    """
    return callable(getattr(optimizer, "train", None)) and callable(
        getattr(optimizer, "eval", None)
    )


def _normalize_amp(amp: Any) -> AmpMode | None:
    if amp is None or amp is False:
        return None
    if amp == "bf16" or amp == "bfloat16":
        return "bf16"
    if amp == "fp16" or amp == "float16":
        return "fp16"
    raise ValueError(
        f"Invalid amp: {amp!r} (use None for full precision, 'bf16' for bfloat16 autocast, "
        "or 'fp16' for float16 autocast with a GradScaler)"
    )


def _check_scheduler(scheduler: Any, optimizer: Optimizer) -> None:
    if isinstance(scheduler, ReduceLROnPlateau):
        raise ValueError(
            "ReduceLROnPlateau steps on a validation metric, not once per optimizer step: "
            "pass scheduler=None to Stepper and call scheduler.step(metric) after evaluating"
        )
    if not callable(getattr(scheduler, "step", None)):
        raise ValueError(f"Invalid scheduler: {scheduler!r} has no step() method")
    owner = getattr(scheduler, "optimizer", None)
    if owner is None or owner is optimizer:
        return
    # Wrappers (Lookahead) pass the inner optimizer's param groups through: the same dicts.
    if [id(g) for g in owner.param_groups] != [id(g) for g in optimizer.param_groups]:
        raise ValueError(
            f"the scheduler drives another optimizer ({type(owner).__name__}, not the "
            f"{type(optimizer).__name__} given); build the scheduler on the same optimizer"
        )


def _total_norm(grads: list[Tensor]) -> Tensor:
    """Global L2 norm of ``grads`` (a 0-dim tensor; 0 for no gradients)."""
    get_total_norm = getattr(torch.nn.utils, "get_total_norm", None)
    if get_total_norm is not None:  # torch >= 2.6
        return get_total_norm(grads, 2.0, error_if_nonfinite=False)
    if not grads:  # pragma: no cover - torch 2.5 only
        return torch.zeros(())
    device = grads[0].device  # pragma: no cover - torch 2.5 only
    return torch.linalg.vector_norm(  # pragma: no cover - torch 2.5 only
        torch.stack([torch.linalg.vector_norm(g).to(device) for g in grads])
    )


def _clip_to_norm(params: list[Tensor], max_norm: float, total: Tensor) -> None:
    """Scale gradients so their global norm is at most ``max_norm`` (torch's rule)."""
    clip_with_norm = getattr(torch.nn.utils, "clip_grads_with_norm_", None)
    if clip_with_norm is not None:  # torch >= 2.6
        clip_with_norm(params, max_norm, total)
    else:  # pragma: no cover - torch 2.5 only
        torch.nn.utils.clip_grad_norm_(params, max_norm)


class Stepper:
    """Owns one optimizer step: accumulation, clipping, AMP, non-finite skips and EMA.

    Parameters
    ----------
    optimizer:
        Any :class:`torch.optim.Optimizer` (wrappers such as Lookahead included).
    scheduler:
        Optional LR scheduler stepped once per optimizer step that was taken (never on a
        skipped step). ReduceLROnPlateau is refused: step it yourself on a metric.
    model:
        The model being trained: needed for ``ema_decay`` and :meth:`evaluate`, and used to
        name parameters in reports.
    accumulation:
        Micro-batches per optimizer step (each loss is divided by it).
    clip_norm, clip_value:
        Clip gradients to this global L2 norm, or each element to ``[-v, v]`` (one of the
        two), after fp16 unscaling.
    amp:
        None (full precision), ``"bf16"`` (bfloat16 autocast; no loss scaling needed) or
        ``"fp16"`` (float16 autocast with a :class:`torch.amp.GradScaler`; on CPU only where
        torch supports float16 autocast).
    ema_decay:
        Keep an exponential moving average of the weights (parameters and buffers) with
        this decay in :attr:`ema_model`, a :class:`torch.optim.swa_utils.AveragedModel`
        updated after every optimizer step taken.
    scaler:
        Your own GradScaler for ``amp="fp16"`` (one is made otherwise).

    Examples
    --------
    >>> stepper = Stepper(optimizer, scheduler, model=model, accumulation=4, clip_norm=1.0)
    >>> for x, y in loader:                                       # doctest: +SKIP
    ...     with stepper.autocast():
    ...         loss = loss_fn(model(x), y)
    ...     result = stepper.backward(loss)     # a StepResult when a window closed
    >>> stepper.flush()                         # the epoch's last, shorter window
    """

    def __init__(
        self,
        optimizer: Optimizer,
        scheduler: Any = None,
        *,
        model: nn.Module | None = None,
        accumulation: int = 1,
        clip_norm: float | None = None,
        clip_value: float | None = None,
        amp: AmpMode | None = None,
        ema_decay: float | None = None,
        scaler: torch.amp.GradScaler | None = None,
    ) -> None:
        if not isinstance(optimizer, Optimizer):
            raise ValueError(
                f"Invalid optimizer: {type(optimizer).__name__} is not a torch.optim.Optimizer"
            )
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if not params:
            raise ValueError("Invalid optimizer: it has no parameters")
        if scheduler is not None:
            _check_scheduler(scheduler, optimizer)
        if isinstance(accumulation, bool) or not isinstance(accumulation, int) or accumulation < 1:
            raise ValueError(
                f"Invalid accumulation: {accumulation!r} (must be an int >= 1 micro-batches "
                "per optimizer step)"
            )
        if clip_norm is not None and clip_value is not None:
            raise ValueError(
                f"Invalid clipping: clip_norm={clip_norm!r} and clip_value={clip_value!r} both "
                "given; choose one (clip_norm, the global-norm clip, is the usual choice)"
            )
        if clip_norm is not None:
            check_positive("clip_norm", clip_norm)
        if clip_value is not None:
            check_positive("clip_value", clip_value)
        amp_mode = _normalize_amp(amp)
        if ema_decay is not None:
            check_range("ema_decay", ema_decay, 0.0, 1.0, low_open=True, high_open=True)
            if model is None:
                raise ValueError("ema_decay needs the model: pass model= to Stepper")
        if model is not None:
            if not isinstance(model, nn.Module):
                raise ValueError(f"Invalid model: {type(model).__name__} is not an nn.Module")
            owned = {id(p) for p in model.parameters()}
            if not any(id(p) in owned for p in params):
                raise ValueError(
                    "the model and the optimizer do not match: none of the optimizer's "
                    "parameters belongs to the model"
                )
        device_type = params[0].device.type
        if scaler is not None:
            if amp_mode != "fp16":
                raise ValueError(
                    f"a GradScaler is only used with amp='fp16' (got amp={amp!r}); bf16 and "
                    "full precision need no loss scaling"
                )
            if not isinstance(scaler, torch.amp.GradScaler):
                raise ValueError(f"Invalid scaler: {type(scaler).__name__} is not a GradScaler")
        elif amp_mode == "fp16":
            scaler = torch.amp.GradScaler(device_type)

        self.optimizer = optimizer
        self.scheduler = scheduler
        self.model = model
        self.accumulation = accumulation
        self.clip_norm = clip_norm
        self.clip_value = clip_value
        self.amp: AmpMode | None = amp_mode
        self.device_type = device_type
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.ema_model: AveragedModel | None = None
        if ema_decay is not None and model is not None:
            self.ema_model = AveragedModel(
                model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True
            )
        self.ema_decay = ema_decay

        self.step_count = 0
        self.micro_batch_count = 0
        self.nonfinite_count = 0
        self.last_nonfinite_param: str | None = None
        self.last_result: StepResult | None = None
        self._pending = 0
        self._eval_depth = 0
        self._step_hooks: list[StepHook] = []
        self._window_loss: Tensor | None = None
        if has_train_eval_modes(optimizer):
            optimizer.train()  # type: ignore[attr-defined]

    # ----------------------------------------------------------------------------------------
    # Reading
    # ----------------------------------------------------------------------------------------

    @property
    def lrs(self) -> list[float]:
        """The current LR of each param group (the LR the next step will use)."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    @property
    def pending(self) -> int:
        """Micro-batches accumulated in the current, not yet closed window."""
        return self._pending

    @property
    def evaluating(self) -> bool:
        """Whether the stepper is inside :meth:`evaluate`."""
        return self._eval_depth > 0

    def __repr__(self) -> str:
        return (
            f"Stepper({type(self.optimizer).__name__}, step={self.step_count}, "
            f"accumulation={self.accumulation}, amp={self.amp!r}, "
            f"nonfinite={self.nonfinite_count})"
        )

    # ----------------------------------------------------------------------------------------
    # Training
    # ----------------------------------------------------------------------------------------

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Context for the forward pass and loss: autocast in the ``amp`` dtype (a no-op
        without ``amp``)."""
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=_AMP_DTYPES[self.amp])

    def backward(self, loss: Tensor) -> StepResult | None:
        """Backpropagate one micro-batch's loss; step when the window is complete.

        The loss is divided by ``accumulation`` (and multiplied by the fp16 loss scale).
        Gradients are zeroed at the start of each window.

        Returns
        -------
        StepResult or None
            The result of the window this micro-batch completed, else None.
        """
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
            raise ValueError(f"Invalid loss: {shape} (must be a scalar tensor; reduce it first)")
        if not loss.requires_grad:
            raise ValueError(
                "Invalid loss: it does not require grad (computed under torch.no_grad() or "
                "inside stepper.evaluate()?)"
            )
        if self._eval_depth:
            raise RuntimeError("cannot train inside stepper.evaluate(); leave the block first")
        if self._pending == 0:
            self.optimizer.zero_grad(set_to_none=True)
            self._window_loss = None
        if self._step_hooks:
            part = loss.detach()
            self._window_loss = part if self._window_loss is None else self._window_loss + part
        scaled = loss / self.accumulation if self.accumulation > 1 else loss
        if self.scaler is not None:
            scaled = self.scaler.scale(scaled)
        scaled.backward()
        self._pending += 1
        self.micro_batch_count += 1
        if self._pending == self.accumulation:
            return self.flush()
        return None

    def flush(self) -> StepResult | None:
        """Close the current window now and step, averaging over its real size.

        Call it at the end of an epoch: a last window of ``k < accumulation`` micro-batches
        has its gradients rescaled by ``accumulation / k``, so every step uses the mean
        gradient of its window. Returns None when no micro-batch is pending.
        """
        if self._pending == 0:
            return None
        if self._eval_depth:
            raise RuntimeError("cannot step inside stepper.evaluate(); leave the block first")
        window = self._pending
        self._pending = 0
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        scale = self.scaler.get_scale() if self.scaler is not None else None
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        with_grad = [p for p in params if p.grad is not None]
        grads = [p.grad for p in with_grad if p.grad is not None]
        if window != self.accumulation and grads:
            torch._foreach_mul_(grads, self.accumulation / window)
        total = _total_norm(grads)
        grad_norm = float(total)
        lrs = tuple(self.lrs)

        if not torch.isfinite(total):
            bad = self._first_nonfinite(with_grad)
            self.nonfinite_count += 1
            self.last_nonfinite_param = bad
            if self.scaler is not None:
                self.scaler.update()  # lowers the scale; nothing else moves
            result = StepResult(False, self.step_count, grad_norm, lrs, window, bad, scale)
            self._run_step_hooks(result, window)
            self.optimizer.zero_grad(set_to_none=True)
            self.last_result = result
            return result

        if self.clip_norm is not None:
            _clip_to_norm(with_grad, self.clip_norm, total)
        elif self.clip_value is not None:
            torch.nn.utils.clip_grad_value_(with_grad, self.clip_value)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.step_count += 1
        if self.scheduler is not None:
            self.scheduler.step()
        if self.ema_model is not None and self.model is not None:
            self.ema_model.update_parameters(self.model)
        result = StepResult(True, self.step_count, grad_norm, lrs, window, None, scale)
        self._run_step_hooks(result, window)
        self.optimizer.zero_grad(set_to_none=True)
        self.last_result = result
        return result

    # ----------------------------------------------------------------------------------------
    # Hooks
    # ----------------------------------------------------------------------------------------

    def add_step_hook(self, hook: StepHook) -> None:
        """Call ``hook(result, loss)`` after every closed window (stepped or skipped), before
        the gradients are cleared; ``loss`` is the window's mean loss (a detached tensor).
        :class:`optiwise.Monitor` uses it (:meth:`optiwise.Monitor.attach`)."""
        if not callable(hook):
            raise ValueError(f"Invalid step hook: {hook!r} is not callable")
        self._step_hooks.append(hook)

    def remove_step_hook(self, hook: StepHook) -> None:
        """Stop calling ``hook`` (a no-op when it was not added)."""
        self._step_hooks = [h for h in self._step_hooks if h is not hook and h != hook]

    def _run_step_hooks(self, result: StepResult, window: int) -> None:
        if not self._step_hooks:
            return
        loss = self._window_loss
        self._window_loss = None
        mean = loss / window if loss is not None else torch.tensor(float("nan"))
        for hook in list(self._step_hooks):
            hook(result, mean)

    def _first_nonfinite(self, params: list[Tensor]) -> str | None:
        """Name of the first parameter (in param-group order) with a non-finite gradient."""
        for p in params:
            g = p.grad
            if g is not None and not torch.isfinite(torch.linalg.vector_norm(g)):
                return self.param_name(p)
        return None

    def param_name(self, param: Tensor) -> str:
        """The model's name for ``param``; else the group's ``param_names`` entry; else its
        position ``param_groups[g][i]``."""
        if self.model is not None:
            for name, p in self.model.named_parameters():
                if p is param:
                    return name
        for gi, group in enumerate(self.optimizer.param_groups):
            for i, p in enumerate(group["params"]):
                if p is param:
                    names = group.get("param_names")
                    if names is not None and i < len(names):
                        return str(names[i])
                    return f"param_groups[{gi}][{i}]"
        return "<unknown parameter>"

    # ----------------------------------------------------------------------------------------
    # Evaluation
    # ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def evaluate(self, *, ema: bool = False) -> Iterator[nn.Module]:
        """Context for evaluation; yields the module to evaluate.

        Puts the model in eval mode and, for an optimizer with ``train()``/``eval()``
        (schedule-free), the optimizer in eval mode so the model holds its evaluation
        weights; runs under ``torch.no_grad()``; restores both modes on exit, also on error.
        With ``ema=True`` it yields :attr:`ema_model` (in eval mode) instead; the live
        model's weights are then left as they are.
        """
        model = self.model
        if model is None:
            raise ValueError("evaluate() needs the model: pass model= to Stepper")
        if ema and self.ema_model is None:
            raise ValueError("evaluate(ema=True) needs an EMA: pass ema_decay= to Stepper")
        target: nn.Module = self.ema_model if ema and self.ema_model is not None else model
        was_training = target.training
        switch = not ema and self._eval_depth == 0 and has_train_eval_modes(self.optimizer)
        if switch:
            self.optimizer.eval()  # type: ignore[attr-defined]
        target.eval()
        self._eval_depth += 1
        try:
            with torch.no_grad():
                yield target
        finally:
            self._eval_depth -= 1
            target.train(was_training)
            if switch:
                self.optimizer.train()  # type: ignore[attr-defined]

    # ----------------------------------------------------------------------------------------
    # State
    # ----------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The counters, as plain data. Refused in the middle of an accumulation window
        (its gradients are not part of any checkpoint)."""
        if self._pending:
            raise RuntimeError(
                f"cannot save the stepper state with {self._pending} micro-batch(es) "
                "accumulated and not stepped; save right after a step or call flush() first"
            )
        return {
            "step_count": self.step_count,
            "micro_batch_count": self.micro_batch_count,
            "nonfinite_count": self.nonfinite_count,
            "last_nonfinite_param": self.last_nonfinite_param,
        }

    def validate_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Raise a ValueError when ``state_dict`` is not a :meth:`state_dict` of a Stepper."""
        if not isinstance(state_dict, Mapping) or set(state_dict) != set(_COUNTERS):
            keys = sorted(state_dict) if isinstance(state_dict, Mapping) else type(state_dict)
            raise ValueError(
                f"cannot load the stepper state: expected keys {sorted(_COUNTERS)}, got {keys}"
            )
        for key in _COUNTERS[:3]:
            value = state_dict[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"cannot load the stepper state: {key} = {value!r} is not an int >= 0"
                )
        name = state_dict["last_nonfinite_param"]
        if name is not None and not isinstance(name, str):
            raise ValueError(
                f"cannot load the stepper state: last_nonfinite_param = {name!r} is not a str"
            )

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore the counters from :meth:`state_dict` (validated first; on error nothing
        changes). Refused in the middle of an accumulation window."""
        if self._pending:
            raise RuntimeError(
                f"cannot load the stepper state with {self._pending} micro-batch(es) "
                "accumulated; load before training or after flush()"
            )
        self.validate_state_dict(state_dict)
        self.step_count = int(state_dict["step_count"])
        self.micro_batch_count = int(state_dict["micro_batch_count"])
        self.nonfinite_count = int(state_dict["nonfinite_count"])
        self.last_nonfinite_param = state_dict["last_nonfinite_param"]
