"""The Lorentz (hyperboloid) and Klein models, and the Einstein midpoint.

The same hyperbolic space of curvature -c has several coordinate systems:

* the **Poincaré ball** (:mod:`qkv.geometry.poincare`): points x with ``c |x|^2 < 1``;
* the **Lorentz model**: points ``(x_0, x_1, ..., x_D)`` of the upper sheet of the hyperboloid
  ``<x, x>_L = -1/c``, ``x_0 > 0``, where ``<x, y>_L = -x_0 y_0 + sum_i x_i y_i``; the distance
  is ``(1/sqrt c) arcosh(-c <x, y>_L)``;
* the **Klein model**: points k with ``c |k|^2 < 1`` whose geodesics are straight chords, which
  makes weighted averages easy: the Einstein midpoint.

The maps between them are isometries. Points are (..., D) tensors (Lorentz: (..., D + 1)), of
one floating dtype, broadcast over the leading axes.
"""

from __future__ import annotations

import math

import torch

from qkv.geometry._checks import (
    require_curvature,
    require_inside_ball,
    require_pair,
    require_points,
    require_weights_for,
)


def lorentz_inner(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The Minkowski bilinear form ``<x, y>_L = -x_0 y_0 + sum_{i>=1} x_i y_i``.

    Args:
        x, y: (..., D + 1) with D >= 1, one dtype, broadcastable leading axes.

    Returns:
        (...) broadcast shape.
    """
    for name, point in (("x", x), ("y", y)):
        require_points(name, point)
        if point.shape[-1] < 2:
            raise ValueError(f"{name} must have shape (..., D + 1) with D >= 1; got "
                             f"{tuple(point.shape)}")
    require_pair("x", x, "y", y)
    return _inner(x, y)


def _inner(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:] * y[..., 1:]).sum(-1) - x[..., 0] * y[..., 0]


def _require_on_hyperboloid(name: str, x: torch.Tensor, c) -> None:
    """Raise unless ``<x, x>_L = -1/c`` (to a dtype-relative tolerance) and ``x_0 > 0``."""
    with torch.no_grad():
        x = x.detach()
        residual = (_inner(x, x) + 1 / c).abs()
        tolerance = math.sqrt(torch.finfo(x.dtype).eps) * (1 / c + x[..., 0].pow(2))
        bad = ~((residual <= tolerance) & (x[..., 0] > 0))
        if bad.any():
            index = tuple(bad.nonzero()[0].tolist())
            raise ValueError(
                f"{name} must lie on the upper sheet of the hyperboloid <x, x>_L = -1/c with "
                f"x_0 > 0 (c = {float(c):g}); the point at batch index {index} has <x, x>_L = "
                f"{_inner(x, x)[index].item():.6g} and x_0 = {x[index + (0,)].item():.6g}")


def lorentz_distance(x: torch.Tensor, y: torch.Tensor, c=1.0) -> torch.Tensor:
    """Geodesic distance on the hyperboloid of curvature -c: ``(1/sqrt c) arcosh(-c <x, y>_L)``.

    Evaluated as ``(2/sqrt c) asinh(sqrt(c <x - y, x - y>_L) / 2)``, the same number written
    without the cancellation of arcosh near 1.

    Args:
        x, y: points (..., D + 1) on the hyperboloid, one dtype, broadcastable leading axes.
        c: positive curvature parameter.

    Returns:
        (...) broadcast shape.
    """
    c = require_curvature(c)
    lorentz_inner(x, y)  # checks shapes and dtypes
    _require_on_hyperboloid("x", x, c)
    _require_on_hyperboloid("y", y, c)
    gap = x - y
    squared = _inner(gap, gap).clamp_min(0)  # >= 0 in exact arithmetic: gap is space-like
    return 2 / c**0.5 * torch.asinh((c * squared).sqrt() / 2)


def poincare_to_lorentz(x: torch.Tensor, c=1.0) -> torch.Tensor:
    """Ball -> hyperboloid: ``x -> ((1 + c|x|^2) / sqrt c, 2x) / (1 - c|x|^2)``, an isometry.

    Args:
        x: points (..., D) inside the ball ``c |x|^2 < 1``; c: positive curvature.

    Returns:
        (..., D + 1) points with ``<y, y>_L = -1/c`` and ``y_0 > 0``.
    """
    c = require_curvature(c)
    require_points("x", x)
    require_inside_ball("x", x, c)
    x2 = x.pow(2).sum(-1, keepdim=True)
    return torch.cat([(1 + c * x2) / c**0.5, 2 * x], dim=-1) / (1 - c * x2)


def lorentz_to_poincare(x: torch.Tensor, c=1.0) -> torch.Tensor:
    """Hyperboloid -> ball: ``(x_0, x_s) -> x_s / (1 + sqrt c x_0)``, the inverse of
    :func:`poincare_to_lorentz`.

    Args:
        x: points (..., D + 1) on the hyperboloid; c: positive curvature.

    Returns:
        (..., D) points inside the ball.
    """
    c = require_curvature(c)
    lorentz_inner(x, x)  # checks the shape
    _require_on_hyperboloid("x", x, c)
    return x[..., 1:] / (1 + c**0.5 * x[..., :1])


def poincare_to_klein(x: torch.Tensor, c=1.0) -> torch.Tensor:
    """Ball -> Klein: ``k = 2x / (1 + c|x|^2)`` (same direction, larger radius).

    Args:
        x: points (..., D) inside the ball; c: positive curvature.

    Returns:
        (..., D) points with ``c |k|^2 < 1``.
    """
    c = require_curvature(c)
    require_points("x", x)
    require_inside_ball("x", x, c)
    return 2 * x / (1 + c * x.pow(2).sum(-1, keepdim=True))


def klein_to_poincare(k: torch.Tensor, c=1.0) -> torch.Tensor:
    """Klein -> ball: ``x = k / (1 + sqrt(1 - c|k|^2))``, the inverse of :func:`poincare_to_klein`.

    Args:
        k: points (..., D) with ``c |k|^2 < 1``; c: positive curvature.

    Returns:
        (..., D) points inside the ball.
    """
    c = require_curvature(c)
    require_points("k", k)
    require_inside_ball("k", k, c)
    return k / (1 + (1 - c * k.pow(2).sum(-1, keepdim=True)).sqrt())


def einstein_midpoint(points: torch.Tensor, weights: torch.Tensor, c=1.0) -> torch.Tensor:
    """Weighted Einstein midpoints of ball points, computed in the Klein model.

    In Klein coordinates ``k_j`` with Lorentz factors ``gamma_j = 1 / sqrt(1 - c|k_j|^2)`` the
    midpoint is ``m = sum_j w_j gamma_j k_j / sum_j w_j gamma_j``: a convex combination of the
    k_j, so it stays inside the ball. (With equal weights and two points it is the midpoint of
    the geodesic between them.) The factor ``gamma_j`` is evaluated from the ball coordinates,
    ``(1 + c|x_j|^2) / (1 - c|x_j|^2)``, which keeps its precision near the boundary.

    Args:
        points: ball points (..., L_k, D).
        weights: non-negative weights (..., L_q, L_k), e.g. attention weights; a row need not
            sum to 1 (only ratios matter). A row of zeros gives the origin.
        c: positive curvature.

    Returns:
        (..., L_q, D) ball points, one midpoint per row of ``weights``.
    """
    c = require_curvature(c)
    require_points("points", points)
    require_inside_ball("points", points, c)
    require_weights_for(points, weights)
    x2 = points.pow(2).sum(-1, keepdim=True)  # (..., L_k, 1)
    klein = 2 * points / (1 + c * x2)
    gamma = ((1 + c * x2) / (1 - c * x2)).squeeze(-1)  # (..., L_k)
    scaled = weights * gamma.unsqueeze(-2)  # (..., L_q, L_k)
    total = scaled.sum(-1, keepdim=True)
    midpoint = (scaled @ klein) / torch.where(total > 0, total, torch.ones_like(total))
    return midpoint / (1 + (1 - c * midpoint.pow(2).sum(-1, keepdim=True)).clamp_min(0).sqrt())
