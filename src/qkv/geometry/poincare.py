"""The Poincaré ball: hyperbolic space of curvature -c inside the ball c |x|^2 < 1.

The ball ``B_c = {x in R^D : c |x|^2 < 1}`` carries the metric ``lambda_x^2 I`` with the
conformal factor ``lambda_x = 2 / (1 - c |x|^2)``: the same angles as Euclidean space, but
lengths that grow without bound towards the boundary. The formulas follow Ganea, Bécigneul and
Hofmann (2018), "Hyperbolic Neural Networks", written with ``c > 0`` for curvature ``-c``.

Every function takes points (..., D) of one floating dtype (float32 or float64), broadcasts
over the leading axes, and raises a ``ValueError`` for a point outside the open ball or for
``c <= 0``. Nothing is clamped silently: :func:`project` is the one function that moves points,
and the callers that need it (training, attention) call it explicitly.
"""

from __future__ import annotations

import torch

from qkv.geometry._checks import (
    require_count,
    require_curvature,
    require_inside_ball,
    require_pair,
    require_points,
    require_weights_for,
    safe_norm,
)

DEFAULT_EPS = 1e-5
"""Default margin of :func:`project`: points end at norm at most ``(1 - 1e-5) / sqrt(c)``
(the bound of Nickel and Kiela, 2017)."""


def _checked_point(name: str, x, c) -> None:
    require_points(name, x)
    require_inside_ball(name, x, c)


def _checked_pair(x, y, c, x_name: str = "x", y_name: str = "y"):
    c = require_curvature(c)
    require_points(x_name, x)
    require_points(y_name, y)
    require_pair(x_name, x, y_name, y)
    require_inside_ball(x_name, x, c)
    require_inside_ball(y_name, y, c)
    return c


def _lambda(x: torch.Tensor, c, keepdim: bool = True) -> torch.Tensor:
    return 2 / (1 - c * x.pow(2).sum(-1, keepdim=keepdim))


def conformal_factor(x: torch.Tensor, c=1.0, keepdim: bool = False) -> torch.Tensor:
    """``lambda_x = 2 / (1 - c |x|^2)``: the ball's metric at x is ``lambda_x^2`` times Euclid's.

    Args:
        x: points (..., D) inside the ball; c: positive curvature parameter.
        keepdim: keep the last axis (shape (..., 1) instead of (...)).

    Returns:
        (...) or (..., 1), the dtype of ``x``.
    """
    c = require_curvature(c)
    _checked_point("x", x, c)
    return _lambda(x, c, keepdim)


def _mobius_add(x: torch.Tensor, y: torch.Tensor, c) -> torch.Tensor:
    xy = (x * y).sum(-1, keepdim=True)
    x2 = x.pow(2).sum(-1, keepdim=True)
    y2 = y.pow(2).sum(-1, keepdim=True)
    numerator = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
    return numerator / (1 + 2 * c * xy + c**2 * x2 * y2)


def mobius_add(x: torch.Tensor, y: torch.Tensor, c=1.0) -> torch.Tensor:
    """Möbius addition ``x (+) y``: the hyperbolic analogue of ``x + y``.

    ``x (+) y = ((1 + 2c<x,y> + c|y|^2) x + (1 - c|x|^2) y) / (1 + 2c<x,y> + c^2|x|^2|y|^2)``.
    It is not commutative, but ``(-x) (+) (x (+) y) = y`` (left cancellation), and
    ``y -> x (+) y`` is an isometry of the ball that moves the origin to x.

    Args:
        x, y: points (..., D) inside the ball, one dtype, broadcastable leading axes.
        c: positive curvature parameter (curvature -c).

    Returns:
        (..., D) broadcast shape, the dtype of the inputs.
    """
    c = _checked_pair(x, y, c)
    return _mobius_add(x, y, c)


def _distance(x: torch.Tensor, y: torch.Tensor, c) -> torch.Tensor:
    # d = (1/sqrt c) arcosh(1 + 2c|x-y|^2 / ((1-c|x|^2)(1-c|y|^2))), written with
    # cosh t - 1 = 2 sinh^2(t/2) as an asinh: accurate for near and far points alike.
    gap = torch.linalg.vector_norm(x - y, dim=-1)
    room = (1 - c * x.pow(2).sum(-1)) * (1 - c * y.pow(2).sum(-1))
    return 2 / c**0.5 * torch.asinh(c**0.5 * gap / room.sqrt())


def poincare_distance(x: torch.Tensor, y: torch.Tensor, c=1.0) -> torch.Tensor:
    """Geodesic distance in the Poincaré ball of curvature -c.

    ``d_c(x, y) = (2/sqrt c) artanh(sqrt c |(-x) (+) y|)
    = (1/sqrt c) arcosh(1 + 2c|x - y|^2 / ((1 - c|x|^2)(1 - c|y|^2)))``, computed in the
    equivalent form ``(2/sqrt c) asinh(sqrt c |x - y| / sqrt((1 - c|x|^2)(1 - c|y|^2)))``,
    which keeps its precision both for nearby points and near the boundary, and has finite
    gradients there (and a zero gradient at x = y, like the Euclidean norm).

    Args:
        x, y: points (..., D) inside the ball, one dtype, broadcastable leading axes (pass
            ``x[:, None]`` and ``y[None]`` for all pairwise distances).
        c: positive curvature parameter.

    Returns:
        (...) broadcast shape, the dtype of the inputs.
    """
    c = _checked_pair(x, y, c)
    return _distance(x, y, c)


def _expmap0(v: torch.Tensor, c) -> torch.Tensor:
    norm = safe_norm(v, keepdim=True)
    return torch.tanh(c**0.5 * norm) * v / (c**0.5 * norm)


def _logmap0(y: torch.Tensor, c) -> torch.Tensor:
    norm = safe_norm(y, keepdim=True)
    return torch.atanh(c**0.5 * norm) * y / (c**0.5 * norm)


def expmap0(v: torch.Tensor, c=1.0) -> torch.Tensor:
    """Exponential map at the origin: the point reached along the geodesic with velocity v.

    ``exp_0(v) = tanh(sqrt c |v|) v / (sqrt c |v|)``. Mathematically always inside the ball; in
    floating point, tangent vectors longer than about 9 / sqrt c (float32) or 19 / sqrt c
    (float64) land exactly on the boundary: pass the result through :func:`project` when that
    can happen (as :class:`qkv.geometry.HyperbolicAttention` does).

    Args:
        v: tangent vectors at the origin (..., D), any length; c: positive curvature.

    Returns:
        (..., D), the dtype of ``v``.
    """
    c = require_curvature(c)
    require_points("v", v)
    return _expmap0(v, c)


def logmap0(y: torch.Tensor, c=1.0) -> torch.Tensor:
    """Logarithmic map at the origin, the inverse of :func:`expmap0`.

    ``log_0(y) = artanh(sqrt c |y|) y / (sqrt c |y|)``; its length is half the distance d(0, y)
    (the conformal factor at the origin is 2).

    Args:
        y: points (..., D) inside the ball; c: positive curvature.

    Returns:
        (..., D) tangent vectors at the origin, the dtype of ``y``.
    """
    c = require_curvature(c)
    _checked_point("y", y, c)
    return _logmap0(y, c)


def _expmap(x: torch.Tensor, v: torch.Tensor, c) -> torch.Tensor:
    norm = safe_norm(v, keepdim=True)
    step = torch.tanh(c**0.5 * _lambda(x, c) * norm / 2) * v / (c**0.5 * norm)
    return _mobius_add(x, step, c)


def expmap(x: torch.Tensor, v: torch.Tensor, c=1.0) -> torch.Tensor:
    """Exponential map at x: follow the geodesic from x with initial velocity v for unit time.

    ``exp_x(v) = x (+) (tanh(sqrt c lambda_x |v| / 2) v / (sqrt c |v|))``. The Riemannian
    length of v is ``lambda_x |v|``, which is the distance from x to ``exp_x(v)``. Like
    :func:`expmap0`, very long steps can round onto the boundary.

    Args:
        x: base points (..., D) inside the ball; v: tangent vectors at x (..., D); one dtype,
            broadcastable leading axes.
        c: positive curvature.

    Returns:
        (..., D) broadcast shape.
    """
    c = require_curvature(c)
    require_points("x", x)
    require_points("v", v)
    require_pair("x", x, "v", v)
    require_inside_ball("x", x, c)
    return _expmap(x, v, c)


def _logmap(x: torch.Tensor, y: torch.Tensor, c) -> torch.Tensor:
    # |log_x(y)| = d(x, y) / lambda_x along the direction of (-x) (+) y; using the accurate
    # distance avoids artanh of a number that rounds to 1 near the boundary.
    direction = _mobius_add(-x, y, c)
    scale = _distance(x, y, c).unsqueeze(-1) / _lambda(x, c)
    return scale * direction / safe_norm(direction, keepdim=True)


def logmap(x: torch.Tensor, y: torch.Tensor, c=1.0) -> torch.Tensor:
    """Logarithmic map at x, the inverse of :func:`expmap`: the velocity that reaches y.

    ``log_x(y) = (2 / (sqrt c lambda_x)) artanh(sqrt c |(-x) (+) y|) ((-x) (+) y) / |(-x) (+) y|``.

    Args:
        x, y: points (..., D) inside the ball, one dtype, broadcastable leading axes.
        c: positive curvature.

    Returns:
        (..., D) tangent vectors at x; zero where y == x.
    """
    c = _checked_pair(x, y, c)
    return _logmap(x, y, c)


def project(x: torch.Tensor, c=1.0, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """Pull points back inside the ball: rescale those with ``sqrt c |x| > 1 - eps`` onto that radius.

    This is the one function that moves points on purpose. Training needs it: a gradient step
    may leave the ball, and ``tanh`` of a long tangent vector rounds to 1. Points already
    within the radius are returned unchanged.

    Args:
        x: points (..., D), anywhere (NaN is not accepted).
        c: positive curvature; eps: relative margin, in [4 * machine epsilon, 1).

    Returns:
        (..., D), the dtype of ``x``, every point with ``sqrt c |x| <= 1 - eps``.
    """
    c = require_curvature(c)
    require_points("x", x)
    smallest = 4 * torch.finfo(x.dtype).eps  # a smaller margin rounds to the boundary itself
    if not (isinstance(eps, float) and smallest <= eps < 1):
        raise ValueError(f"eps must be a float in [{smallest:.3g}, 1) for {x.dtype}; got {eps!r}")
    if torch.isnan(x).any():
        raise ValueError("x contains NaN: there is no point to project")
    norm = safe_norm(x, keepdim=True)
    radius = (1 - eps) / c**0.5
    return torch.where(norm > radius, x * (radius / norm), x)


def poincare_geodesic(x: torch.Tensor, y: torch.Tensor, steps: int = 65, c=1.0) -> torch.Tensor:
    """Points along the geodesic from x to y at equal hyperbolic spacing.

    ``gamma(t) = exp_x(t log_x(y))`` for ``t = 0, 1/(steps-1), ..., 1``.

    Args:
        x, y: points (..., D) inside the ball; steps: number of points (>= 2); c: curvature.

    Returns:
        (..., steps, D): ``[..., 0, :]`` is x and ``[..., -1, :]`` is y (up to rounding).
    """
    c = _checked_pair(x, y, c)
    require_count("steps", steps, minimum=2)
    t = torch.linspace(0, 1, steps, dtype=x.dtype, device=x.device)[:, None]  # (steps, 1)
    velocity = _logmap(x, y, c).unsqueeze(-2)  # (..., 1, D)
    return _expmap(x.unsqueeze(-2), t * velocity, c)


def riemannian_gradient(x: torch.Tensor, euclidean_grad: torch.Tensor, c=1.0) -> torch.Tensor:
    """Turn a Euclidean gradient at x into the Riemannian one: divide by ``lambda_x^2``.

    ``grad_R = ((1 - c|x|^2)^2 / 4) grad_E``: the metric is ``lambda_x^2`` times Euclid's, so the
    steepest-ascent direction of unit Riemannian length is that much shorter near the boundary.

    Args:
        x: points (..., D) inside the ball; euclidean_grad: (..., D), same shape and dtype.

    Returns:
        (..., D).
    """
    c = require_curvature(c)
    _checked_point("x", x, c)
    require_points("euclidean_grad", euclidean_grad)
    if euclidean_grad.shape != x.shape or euclidean_grad.dtype != x.dtype:
        raise ValueError(f"euclidean_grad must match x in shape and dtype; got "
                         f"{tuple(euclidean_grad.shape)} {euclidean_grad.dtype} for x "
                         f"{tuple(x.shape)} {x.dtype}")
    return euclidean_grad / _lambda(x, c).pow(2)


def tangent_midpoint(points: torch.Tensor, weights: torch.Tensor, c=1.0) -> torch.Tensor:
    """Weighted mean taken in the tangent space at the origin: ``exp_0(sum_j w_j log_0(x_j))``.

    The simplest way to average ball points: map them to the (flat) tangent space at the
    origin with :func:`logmap0`, take the weighted mean there, and map it back with
    :func:`expmap0`. Unlike the Einstein midpoint (:func:`qkv.geometry.einstein_midpoint`)
    it depends on the choice of the origin: it treats the origin as special.

    Args:
        points: ball points (..., L_k, D).
        weights: non-negative weights (..., L_q, L_k); each row is normalised to sum 1. A row
            of zeros gives the origin.
        c: positive curvature.

    Returns:
        (..., L_q, D) ball points, one mean per row of ``weights``.
    """
    c = require_curvature(c)
    _checked_point("points", points, c)
    require_weights_for(points, weights)
    total = weights.sum(-1, keepdim=True)  # (..., L_q, 1)
    mean = (weights @ _logmap0(points, c)) / torch.where(total > 0, total, torch.ones_like(total))
    return _expmap0(mean, c)  # (..., L_q, D)
