"""Callbacks that feed a :class:`~optiwise.Monitor` from the Hugging Face Trainer and from
PyTorch Lightning; both libraries are imported only when a callback is made.

Each callback builds its monitor when training starts (the framework has built the optimizer
by then), records every optimizer step and the validation metrics, and closes the monitor
when training ends; ``callback.monitor.diagnose()`` says what went wrong.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from optiwise.monitor.record import Monitor

__all__ = ["hf_callback", "lightning_callback"]


def _unwrap(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's AcceleratedOptimizer (which the HF Trainer
    hands to its callbacks)."""
    inner = getattr(optimizer, "optimizer", None)
    if type(optimizer).__name__ == "AcceleratedOptimizer" and isinstance(
        inner, torch.optim.Optimizer
    ):
        return inner
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"Invalid optimizer: {type(optimizer).__name__} is not an Optimizer")
    return optimizer


def _loss_of(output: Any) -> Tensor | None:
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    return loss if isinstance(loss, Tensor) and loss.numel() == 1 else None


def _val_metrics(metrics: Mapping[str, Any], prefixes: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if not key.startswith(prefixes):
            continue
        v = value.item() if isinstance(value, Tensor) and value.numel() == 1 else value
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def hf_callback(
    *, every: int = 1, log_dir: str | os.PathLike[str] | None = None, **monitor_kw: Any
) -> Any:
    """A ``transformers.TrainerCallback`` that records the run in ``callback.monitor``.

    The loss of each step is the mean of its micro-batches' ``loss`` outputs (read with a
    forward hook, as the Trainer passes no loss to callbacks); the gradient norms are the
    ones the optimizer steps with (after the Trainer's clipping at ``max_grad_norm``, which
    is recorded); ``eval_*`` metrics are recorded as validation metrics.

    Examples
    --------
    >>> callback = optiwise.monitor.hf_callback(log_dir="runs/hf")   # doctest: +SKIP
    >>> Trainer(..., callbacks=[callback]).train()                   # doctest: +SKIP
    >>> callback.monitor.diagnose()                                  # doctest: +SKIP
    """
    from transformers import TrainerCallback

    class MonitorCallback(TrainerCallback):
        def __init__(self) -> None:
            self.monitor: Monitor | None = None
            self._losses: list[Tensor] = []
            self._hook: Any = None

        def _forward_hook(self, module: nn.Module, args: Any, output: Any) -> None:
            if module.training and torch.is_grad_enabled():
                loss = _loss_of(output)
                if loss is not None:
                    self._losses.append(loss.detach())

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            model, optimizer = kw.get("model"), kw.get("optimizer")
            if not isinstance(model, nn.Module) or optimizer is None:
                raise ValueError("the Trainer passed no model or optimizer to the callback")
            options = dict(monitor_kw)
            options.setdefault("clip_norm", args.max_grad_norm or None)
            world = max(1, int(getattr(args, "world_size", 1) or 1))
            batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
            options.setdefault("batch_size", int(batch))
            self.monitor = Monitor(
                model, _unwrap(optimizer), every=every, log_dir=log_dir, **options
            )
            self._hook = model.register_forward_hook(self._forward_hook)

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.monitor is None:
                return
            losses, self._losses = self._losses, []
            loss = torch.stack(losses).mean() if losses else float("nan")
            self.monitor.step(loss)

        def on_evaluate(
            self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any
        ) -> None:
            if self.monitor is not None and metrics:
                values = _val_metrics(metrics, ("eval_",))
                values.pop("eval_runtime", None)
                for k in [k for k in values if k.endswith("_per_second")]:
                    values.pop(k)
                if values:
                    self.monitor.log_val(values)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self._hook is not None:
                self._hook.remove()
                self._hook = None
            if self.monitor is not None:
                self.monitor.close()

    return MonitorCallback()


def lightning_callback(
    *, every: int = 1, log_dir: str | os.PathLike[str] | None = None, **monitor_kw: Any
) -> Any:
    """A ``lightning.pytorch.Callback`` that records the run in ``callback.monitor``.

    The loss of each optimizer step is the mean of its micro-batches' ``training_step``
    losses; ``val*`` metrics logged with ``self.log`` are recorded at the end of each
    validation. Automatic optimization with one optimizer.

    Examples
    --------
    >>> callback = optiwise.monitor.lightning_callback()              # doctest: +SKIP
    >>> lightning.pytorch.Trainer(callbacks=[callback]).fit(module)   # doctest: +SKIP
    >>> callback.monitor.diagnose()                                   # doctest: +SKIP
    """
    from lightning.pytorch import Callback

    class MonitorCallback(Callback):
        def __init__(self) -> None:
            self.monitor: Monitor | None = None
            self._losses: list[Tensor] = []
            self._global_step = 0

        def on_train_start(self, trainer: Any, pl_module: nn.Module) -> None:
            optimizers = list(trainer.optimizers)
            if len(optimizers) != 1:
                raise ValueError(
                    f"the monitor follows one optimizer; this module has {len(optimizers)} "
                    "(make one Monitor per optimizer by hand)"
                )
            options = dict(monitor_kw)
            clip = getattr(trainer, "gradient_clip_val", None)
            if clip and getattr(trainer, "gradient_clip_algorithm", "norm") in (None, "norm"):
                options.setdefault("clip_norm", float(clip))
            self.monitor = Monitor(
                pl_module, _unwrap(optimizers[0]), every=every, log_dir=log_dir, **options
            )
            self._global_step = trainer.global_step

        def on_train_batch_end(
            self, trainer: Any, pl_module: nn.Module, outputs: Any, batch: Any, batch_idx: int
        ) -> None:
            if self.monitor is None:
                return
            loss = outputs if isinstance(outputs, Tensor) else _loss_of(outputs)
            if loss is not None:
                self._losses.append(loss.detach())
            if trainer.global_step == self._global_step:
                return  # inside an accumulation window: the optimizer has not stepped
            self._global_step = trainer.global_step
            losses, self._losses = self._losses, []
            self.monitor.step(torch.stack(losses).mean() if losses else float("nan"))

        def on_validation_end(self, trainer: Any, pl_module: nn.Module) -> None:
            if self.monitor is None or trainer.sanity_checking:
                return
            values = _val_metrics(trainer.callback_metrics, ("val",))
            if values:
                self.monitor.log_val(values)

        def on_train_end(self, trainer: Any, pl_module: nn.Module) -> None:
            if self.monitor is not None:
                self.monitor.close()

    return MonitorCallback()
