"""Exercises of chapter 07, "Riemannian geometry": three formulas of the Poincaré ball.

* ``ch07-mobius-add``: Möbius addition ``x (+) y`` in the ball of curvature -c;
* ``ch07-poincare-distance``: the geodesic distance in that ball;
* ``ch07-einstein-midpoint``: weighted Einstein midpoints, the aggregation of hyperbolic
  attention.
"""

from __future__ import annotations

import torch

from qkv.exercises import Exercise, register
from qkv.geometry import einstein_midpoint, mobius_add, poincare_distance

CURVATURES = (0.5, 1.0, 2.0)


def _curvature(generator: torch.Generator) -> float:
    return CURVATURES[int(torch.randint(0, len(CURVATURES), (), generator=generator))]


def _ball_points(n: int, d: int, c: float, generator: torch.Generator) -> torch.Tensor:
    """(n, d) float64 points with sqrt(c) |x| uniform in [0, 0.9)."""
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    radius = 0.9 * torch.rand(n, 1, generator=generator, dtype=torch.float64)
    return x / x.norm(dim=-1, keepdim=True) * radius / c**0.5


def _pair_inputs(generator: torch.Generator) -> dict:
    n = int(torch.randint(1, 6, (), generator=generator))
    d = int(torch.randint(2, 5, (), generator=generator))
    c = _curvature(generator)
    return dict(x=_ball_points(n, d, c, generator), y=_ball_points(n, d, c, generator), c=c)


# ------------------------------------------------------------------------- ch07-mobius-add

def _mobius_add_reference(x, y, c):
    return mobius_add(x, y, c)


def _mobius_add_wrong_sign(x, y, c):
    """A common slip: both <x, y> terms with the wrong sign, all else unchanged.

    This is not x (+) (-y), which would also flip the sign of the y term.
    """
    xy = (x * y).sum(-1, keepdim=True)
    x2, y2 = x.pow(2).sum(-1, keepdim=True), y.pow(2).sum(-1, keepdim=True)
    return (((1 - 2 * c * xy + c * y2) * x + (1 - c * x2) * y)
            / (1 - 2 * c * xy + c**2 * x2 * y2))


register(Exercise(
    label="ch07-mobius-add",
    task=("given points x and y of shape (n, d) inside the ball c|x|^2 < 1 and a float c > 0, "
          "return the (n, d) Möbius sums x (+) y = ((1 + 2c<x,y> + c|y|^2) x + (1 - c|x|^2) y) "
          "/ (1 + 2c<x,y> + c^2 |x|^2 |y|^2), row by row."),
    reference=_mobius_add_reference,
    make_inputs=_pair_inputs,
    wrong=_mobius_add_wrong_sign,
    atol=1e-9,
    rtol=1e-7,
    forbidden=("qkv.geometry", "geoopt"),
    gradients=True,
))


# ------------------------------------------------------------------ ch07-poincare-distance

def _distance_reference(x, y, c):
    return poincare_distance(x, y, c)


def _distance_wrong_missing_c(x, y, c):
    """A common slip: the formula of the unit ball (c = 1), whatever c is."""
    room = (1 - x.pow(2).sum(-1)) * (1 - y.pow(2).sum(-1))
    return torch.acosh(1 + 2 * (x - y).pow(2).sum(-1) / room)


register(Exercise(
    label="ch07-poincare-distance",
    task=("given points x and y of shape (n, d) inside the ball c|x|^2 < 1 and a float c > 0, "
          "return the (n,) distances d_c(x, y) = (1/sqrt c) arcosh(1 + 2c|x - y|^2 / "
          "((1 - c|x|^2)(1 - c|y|^2))), row by row."),
    reference=_distance_reference,
    make_inputs=_pair_inputs,
    wrong=_distance_wrong_missing_c,
    atol=1e-7,
    rtol=1e-6,
    forbidden=("qkv.geometry", "geoopt"),
    gradients=True,
))


# ------------------------------------------------------------------ ch07-einstein-midpoint

def _midpoint_inputs(generator: torch.Generator) -> dict:
    m = int(torch.randint(2, 7, (), generator=generator))
    n = int(torch.randint(1, 4, (), generator=generator))
    d = int(torch.randint(2, 4, (), generator=generator))
    return dict(points=_ball_points(m, d, 1.0, generator),
                weights=torch.rand(n, m, generator=generator, dtype=torch.float64))


def _midpoint_reference(points, weights):
    return einstein_midpoint(points, weights)


def _midpoint_wrong_no_gamma(points, weights):
    """A common slip: a plain weighted average in the Klein model, without Lorentz factors."""
    klein = 2 * points / (1 + points.pow(2).sum(-1, keepdim=True))
    average = weights @ klein / weights.sum(-1, keepdim=True)
    return average / (1 + (1 - average.pow(2).sum(-1, keepdim=True)).sqrt())


register(Exercise(
    label="ch07-einstein-midpoint",
    task=("given points (m, d) of the unit Poincaré ball and non-negative weights (n, m), "
          "return the (n, d) weighted Einstein midpoints as points of the Poincaré ball: map "
          "to Klein coordinates k = 2x / (1 + |x|^2), average the k_j with weights w_j gamma_j "
          "where gamma_j = 1 / sqrt(1 - |k_j|^2) (normalised to sum to 1), and map back with "
          "x = k / (1 + sqrt(1 - |k|^2))."),
    reference=_midpoint_reference,
    make_inputs=_midpoint_inputs,
    wrong=_midpoint_wrong_no_gamma,
    atol=1e-9,
    rtol=1e-7,
    forbidden=("qkv.geometry", "geoopt"),
    gradients=True,
))
