"""Two-dimensional test functions for the toy workloads.

Each :class:`ToyFunction` has a closed form, a known minimum value of 0, a standard start
point and a plotting window; :class:`Point` is the "model" the optimizers move.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["TOY_FUNCTIONS", "Point", "ToyFunction", "beale", "quadratic", "rosenbrock"]


def rosenbrock(x: Tensor, y: Tensor) -> Tensor:
    """``(1 - x)^2 + 100 (y - x^2)^2``; minimum 0 at (1, 1) at the end of a curved valley."""
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def beale(x: Tensor, y: Tensor) -> Tensor:
    """Beale's function; minimum 0 at (3, 0.5), flat plateaus and steep ridges elsewhere."""
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


# Ill-conditioned quadratic: curvatures 0.1 and 10 (condition number 100) along axes rotated
# by 30 degrees, so no coordinate-wise method sees the eigenbasis.
_ANGLE = math.pi / 6
_CURV = (0.1, 10.0)


def quadratic(x: Tensor, y: Tensor, curvature: tuple[float, float] = _CURV) -> Tensor:
    """``0.5 (h1 u^2 + h2 v^2)`` with ``(u, v)`` the point rotated by 30 degrees."""
    c, s = math.cos(_ANGLE), math.sin(_ANGLE)
    u = c * x + s * y
    v = -s * x + c * y
    return 0.5 * (curvature[0] * u**2 + curvature[1] * v**2)


# The noisy quadratic: axis-aligned curvatures 1 and 0.1, gradient noise of variance
# sigma^2 * h per coordinate (the noisy quadratic model of Zhang et al. 2019, in 2-D).
_NOISY_CURV = (1.0, 0.1)


def noisy_quadratic(x: Tensor, y: Tensor) -> Tensor:
    """``0.5 (x^2 + 0.1 y^2)``: the noise-free loss of the noisy-quadratic workload."""
    return 0.5 * (_NOISY_CURV[0] * x**2 + _NOISY_CURV[1] * y**2)


@dataclass(frozen=True)
class ToyFunction:
    """A 2-D test function with its start point, minimizer and plotting window.

    ``noise`` is the standard deviation scale of the gradient noise: a step's gradient is
    ``grad f + xi`` with ``xi_i ~ N(0, noise^2 h_i)`` (0 means exact gradients).
    """

    name: str
    fn: Callable[[Tensor, Tensor], Tensor]
    start: tuple[float, float]
    minimum: tuple[float, float]
    window: tuple[float, float, float, float]  # xmin, xmax, ymin, ymax
    noise: float = 0.0
    noise_curvature: tuple[float, float] = (1.0, 1.0)
    log_contours: bool = True


TOY_FUNCTIONS: dict[str, ToyFunction] = {
    "rosenbrock": ToyFunction("rosenbrock", rosenbrock, (-1.2, 1.0), (1.0, 1.0), (-2, 2, -1, 3)),
    "beale": ToyFunction("beale", beale, (1.0, 1.5), (3.0, 0.5), (-1, 4.5, -1.5, 2.5)),
    "ill-conditioned": ToyFunction(
        "ill-conditioned", quadratic, (-3.0, 2.0), (0.0, 0.0), (-4, 4, -3, 3)
    ),
    "noisy-quadratic": ToyFunction(
        "noisy-quadratic",
        noisy_quadratic,
        (-2.0, 3.0),
        (0.0, 0.0),
        (-3, 3, -2, 4),
        noise=1.0,
        noise_curvature=_NOISY_CURV,
    ),
}


class Point(nn.Module):
    """A single 2-D parameter ``xy``; ``forward()`` is the function's value there."""

    def __init__(self, toy: ToyFunction) -> None:
        super().__init__()
        self.toy = toy
        self.xy = nn.Parameter(torch.tensor(toy.start, dtype=torch.float64))

    def forward(self) -> Tensor:
        return self.toy.fn(self.xy[0], self.xy[1])
