"""SophiaG (Liu et al. 2023) and its two diagonal Hessian estimators.

The optimizer divides a gradient EMA by an EMA of a diagonal Hessian estimate and clips the
result per coordinate. The estimate is refreshed every ``k`` steps (10 in the paper) by a
separate forward/backward pass, outside :meth:`SophiaG.step`:

- Gauss-Newton-Bartlett (GNB, the paper's SophiaG): sample labels from the model's own
  output distribution, take the gradient ``g`` of the loss on those labels (mean over ``B``
  labels); ``B g^2`` is an unbiased estimate of the diagonal of the Gauss-Newton matrix.
  :func:`gnb_loss` builds that loss, :func:`gnb_hessian` returns the estimates, and
  ``SophiaG.update_hessian(batch_size=B)`` reads them from ``.grad`` after
  ``gnb_loss(...).backward()``, as the official code does.
- Hutchinson (SophiaH): ``u * (H u)`` with ``u`` Rademacher, via a Hessian-vector product
  (:func:`hutchinson_hessian`); its expectation is ``diag(H)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.nn import functional as F

from optiwise.optim._base import OptiwiseOptimizer, StateKind
from optiwise.optim._fused import check_fused_args
from optiwise.optim._kernels import (
    sophiag_fused,
    sophiag_hessian_multi_tensor,
    sophiag_hessian_single_tensor,
    sophiag_multi_tensor,
    sophiag_single_tensor,
)
from optiwise.optim._validation import check_positive, validate_hparams

__all__ = ["SophiaG", "gnb_hessian", "gnb_loss", "hutchinson_hessian"]


def _param_list(params: Iterable[Tensor]) -> list[Tensor]:
    out = list(params)
    if not out:
        raise ValueError("no parameters given: pass the tensors the optimizer updates")
    for p in out:
        if not isinstance(p, Tensor) or not p.requires_grad:
            raise ValueError(
                "every parameter must be a tensor with requires_grad=True; drop frozen "
                "parameters (e.g. [p for p in model.parameters() if p.requires_grad])"
            )
    return out


def gnb_loss(logits: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Cross-entropy of ``logits`` on labels sampled from their own softmax distribution.

    Parameters
    ----------
    logits:
        Model outputs of shape ``(..., classes)`` (e.g. ``(batch, classes)`` or
        ``(batch, time, vocab)``), still attached to the graph.
    generator:
        Random generator for the label draws (on the logits' device).

    Returns
    -------
    Tensor
        The mean loss over the ``logits.numel() // classes`` sampled labels; the gradient of
        this loss, squared and multiplied by that count, is the Gauss-Newton-Bartlett
        estimate of the Hessian diagonal.
    """
    if not isinstance(logits, Tensor) or logits.ndim < 1 or logits.shape[-1] < 1:
        raise ValueError(
            "logits must be a tensor of shape (..., classes) with at least one class, got "
            f"{tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__}"
        )
    flat = logits.reshape(-1, logits.shape[-1])
    with torch.no_grad():
        probs = torch.softmax(flat.detach().float(), dim=-1)
        labels = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return F.cross_entropy(flat, labels)


def gnb_hessian(
    logits: Tensor,
    params: Iterable[Tensor],
    *,
    generator: torch.Generator | None = None,
    retain_graph: bool = False,
) -> dict[Tensor, Tensor]:
    """Gauss-Newton-Bartlett estimates of the Hessian diagonal: ``B * grad(gnb_loss)^2``.

    Parameters
    ----------
    logits:
        Model outputs ``(..., classes)`` computed from ``params``; ``B`` is the number of
        predictions, ``logits.numel() // classes``.
    params:
        The parameters to estimate for (e.g. ``model.parameters()``).
    generator:
        Random generator for the sampled labels.
    retain_graph:
        Keep the graph of ``logits`` for another backward pass.

    Returns
    -------
    dict
        ``{param: estimate}`` for every parameter the logits depend on; pass it to
        :meth:`SophiaG.update_hessian`. ``.grad`` is left untouched.
    """
    plist = _param_list(params)
    loss = gnb_loss(logits, generator=generator)
    batch = logits.numel() // logits.shape[-1]
    grads = torch.autograd.grad(loss, plist, retain_graph=retain_graph, allow_unused=True)
    return {p: g.square().mul_(batch) for p, g in zip(plist, grads, strict=True) if g is not None}


def hutchinson_hessian(
    loss: Tensor,
    params: Iterable[Tensor],
    *,
    samples: int = 1,
    generator: torch.Generator | None = None,
    retain_graph: bool = False,
) -> dict[Tensor, Tensor]:
    """Hutchinson estimates of the Hessian diagonal: the mean of ``u * (H u)`` over draws.

    Parameters
    ----------
    loss:
        A scalar loss computed from ``params`` (its graph is used twice: gradient with
        ``create_graph=True``, then Hessian-vector products).
    params:
        The parameters to estimate for.
    samples:
        Number of Rademacher vectors ``u`` to average (each costs one Hessian-vector
        product).
    generator:
        Random generator for ``u``.
    retain_graph:
        Keep the graph of ``loss`` for another backward pass.

    Returns
    -------
    dict
        ``{param: estimate}`` for every parameter ``loss`` depends on. Estimates can be
        negative (the Hessian is not positive definite); :class:`SophiaG` then takes a
        clipped sign step for that coordinate. ``.grad`` is left untouched.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"Invalid samples: {samples!r} (must be an int >= 1)")
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise ValueError("loss must be a scalar tensor (reduce it, e.g. with .mean())")
    plist = _param_list(params)
    grads = torch.autograd.grad(loss, plist, create_graph=True, allow_unused=True)
    used = [(p, g) for p, g in zip(plist, grads, strict=True) if g is not None]
    curved = [(p, g) for p, g in used if g.requires_grad]
    out = {p: torch.zeros_like(p) for p, _ in used}
    for s in range(samples):
        if not curved:
            break
        us = [
            torch.randint(0, 2, p.shape, generator=generator, device=p.device).to(p.dtype) * 2 - 1
            for p, _ in curved
        ]
        hvps = torch.autograd.grad(
            [g for _, g in curved],
            [p for p, _ in curved],
            grad_outputs=us,
            retain_graph=retain_graph or s < samples - 1,
            allow_unused=True,
        )
        for (p, _), u, hv in zip(curved, us, hvps, strict=True):
            if hv is not None:
                out[p].addcmul_(u, hv.detach())
    for est in out.values():
        est.div_(samples)
    return out


class SophiaG(OptiwiseOptimizer):
    r"""SophiaG: clipped, Hessian-preconditioned momentum (Liu et al. 2023, "Sophia: A Scalable
    Stochastic Second-order Optimizer for Language Model Pre-training", Algorithm 3).

    Per step, with gradient ``g``::

        w <- w (1 - lr wd)
        m <- b1 m + (1 - b1) g
        w <- w - lr clamp(m / max(rho h, eps), -1, 1)

    and every ``k`` steps, with a diagonal Hessian estimate ``e``
    (:meth:`update_hessian`)::

        h <- b2 h + (1 - b2) e

    This is the paper's form with ``gamma = rho``. The official code
    (``SophiaG.step(bs=...)``) keeps ``h`` as the EMA of the plain squared gradient and
    divides by ``rho * bs * h + 1e-15`` with ``sign(m) * min(|m| / (...), 1)``; here the
    batch-size factor is applied when ``h`` is refreshed (``update_hessian(batch_size=B)``
    stores ``B g^2``, so ``rho`` means the same in both), and ``eps`` is a floor instead of
    an addend. The two agree whenever ``rho h`` is positive and far above ``eps``; where the
    estimate is negative (Hutchinson), the official form would step *up* the gradient
    while this one takes the clipped sign step ``lr sign(m)``.

    The training loop (``k = 10`` in the paper)::

        for t, (x, y) in enumerate(batches):
            if t % k == 0:                      # refresh h on the current batch
                opt.zero_grad()
                gnb_loss(model(x)).backward()   # labels sampled from the model itself
                opt.update_hessian(batch_size=x.shape[0])
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()

    ``opt.update_hessian(gnb_hessian(model(x), model.parameters()))`` or
    ``opt.update_hessian(hutchinson_hessian(loss, model.parameters()))`` do the same from
    estimates without touching ``.grad``. Until the first refresh ``h = 0`` and every step
    is ``lr sign(m)``.

    Parameters
    ----------
    params:
        Parameters or param-group dicts.
    lr:
        Learning rate (the largest step per coordinate).
    betas:
        ``(b1, b2)``: EMA rates of the gradient and of the Hessian estimate.
    rho:
        Clipping scale (the paper's gamma): the step is unclipped where
        ``|m| < rho h``.
    weight_decay:
        Decoupled weight decay.
    eps:
        Floor of the denominator ``rho h``.
    maximize:
        Maximize the objective (the gradient is negated; the Hessian estimate is used
        as given).
    foreach:
        Use the multi-tensor path (``_foreach`` ops).
    fused:
        Use the compiled one-pass path for :meth:`step` (see docs/performance.md;
        ``update_hessian`` stays eager: it runs every ``k`` steps). ``None`` (with
        ``foreach=None``) picks it on CPU and CUDA for groups of at least 2^20 elements,
        else the multi-tensor path on CUDA and the per-tensor path on CPU.

    State
    -----
    ``step`` (int): steps taken; ``exp_avg``: gradient EMA ``m``; ``hessian``: Hessian EMA
    ``h``. All three are part of ``state_dict()``.
    """

    state_keys: ClassVar[Mapping[str, StateKind]] = {
        "step": "scalar",
        "exp_avg": "param",
        "hessian": "param",
    }
    counter_types: ClassVar[Mapping[str, type]] = {"step": int}

    def __init__(
        self,
        params: Any,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.965, 0.99),
        rho: float = 0.04,
        weight_decay: float = 0.1,
        *,
        eps: float = 1e-15,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        validate_hparams({"lr": lr, "betas": betas, "weight_decay": weight_decay})
        check_positive("rho", rho)
        check_positive("epsilon value", eps)
        check_fused_args(fused, foreach)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            rho=rho,
            weight_decay=weight_decay,
            eps=eps,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )
        super().__init__(params, defaults)

    def _state_of(self, p: Tensor) -> dict[str, Any]:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One SophiaG step from the current gradients (see the class docstring)."""
        loss = self._run_closure(closure)
        for group in self.param_groups:
            params, grads = self._params_with_grads(group)
            exp_avgs: list[Tensor] = []
            hessians: list[Tensor] = []
            for p in params:
                state = self._state_of(p)
                state["step"] += 1
                exp_avgs.append(state["exp_avg"])
                hessians.append(state["hessian"])
            lr = float(group["lr"])
            if self._use_fused(group, params, sophiag_fused):
                self._fused_step(
                    sophiag_fused, group, params, grads, [exp_avgs, hessians],
                    ["exp_avg", "hessian"], decay=1 - lr * group["weight_decay"],
                    weight1=1 - group["betas"][0], rho=group["rho"], eps=group["eps"],
                    neg_lr=-lr, sign=-1.0 if group["maximize"] else 1.0,
                )  # fmt: skip
                continue
            fn = (
                sophiag_multi_tensor
                if self._use_foreach(group["foreach"], params)
                else sophiag_single_tensor
            )
            real = self._real_views  # complex tensors as (real, imaginary) pairs
            fn(
                real(params),
                real(grads),
                real(exp_avgs),
                real(hessians),
                lr=lr,
                beta1=group["betas"][0],
                rho=group["rho"],
                eps=group["eps"],
                weight_decay=group["weight_decay"],
                maximize=group["maximize"],
            )
        return loss

    @torch.no_grad()
    def update_hessian(
        self,
        estimates: Mapping[Tensor, Tensor] | None = None,
        *,
        batch_size: int | None = None,
    ) -> None:
        """Refresh the Hessian EMA: ``h <- b2 h + (1 - b2) e``.

        Parameters
        ----------
        estimates:
            ``{param: diagonal Hessian estimate}`` from :func:`gnb_hessian` or
            :func:`hutchinson_hessian`; parameters left out keep their ``h``. When
            ``None``, the estimate is Gauss-Newton-Bartlett from ``.grad``:
            ``e = batch_size * grad^2``, after ``gnb_loss(logits).backward()``.
        batch_size:
            Number of sampled labels the GNB loss averaged over (tokens, for a language
            model); required without ``estimates`` and refused with them.
        """
        if estimates is None:
            if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
                raise ValueError(
                    f"Invalid batch_size: {batch_size!r}; update_hessian() without estimates "
                    "reads .grad of gnb_loss(...) and needs batch_size=B, the number of "
                    "sampled labels (an int >= 1)"
                )
            square_scale: float | None = float(batch_size)
        else:
            if batch_size is not None:
                raise ValueError(
                    "batch_size is only for update_hessian() from .grad; estimates from "
                    "gnb_hessian/hutchinson_hessian are already scaled"
                )
            square_scale = None
            self._check_estimates(estimates)
        # Collect and check everything first: a refused input leaves the state unchanged.
        plan: list[tuple[dict[str, Any], list[Tensor], list[Tensor]]] = []
        for group in self.param_groups:
            params: list[Tensor] = []
            values: list[Tensor] = []
            for p in group["params"]:
                value = p.grad if estimates is None else estimates.get(p)
                if value is None:
                    continue
                if value.is_sparse:
                    raise RuntimeError(
                        "SophiaG does not support sparse gradients or estimates; use dense ones"
                    )
                params.append(p)
                values.append(value.to(dtype=p.dtype))
            plan.append((group, params, values))
        for group, params, values in plan:
            hessians = [self._state_of(p)["hessian"] for p in params]
            fn = (
                sophiag_hessian_multi_tensor
                if self._use_foreach(group["foreach"], params)
                else sophiag_hessian_single_tensor
            )
            real = self._real_views
            fn(real(hessians), real(values), beta2=group["betas"][1], square_scale=square_scale)

    def _check_estimates(self, estimates: Mapping[Tensor, Tensor]) -> None:
        if not isinstance(estimates, Mapping):
            raise ValueError(
                "estimates must be a mapping {param: estimate}, as gnb_hessian and "
                f"hutchinson_hessian return; got {type(estimates).__name__}"
            )
        mine = {p for g in self.param_groups for p in g["params"]}
        for p, e in estimates.items():
            if p not in mine:
                raise ValueError(
                    f"estimates hold a tensor of shape {tuple(p.shape)} that is not one of "
                    "this optimizer's parameters; estimate for the parameters it updates"
                )
            if not isinstance(e, Tensor) or e.shape != p.shape:
                shape = tuple(e.shape) if isinstance(e, Tensor) else type(e).__name__
                raise ValueError(
                    f"the estimate for a parameter of shape {tuple(p.shape)} has shape {shape}"
                )
