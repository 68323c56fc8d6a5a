"""The Poincaré half-plane: the points (x, y) with y > 0, and the metric (dx^2 + dy^2) / (c y^2).

This is the metric ``(1/y^2) I`` of the chapter (for c = 1): the same angles as the Euclidean
plane, but a ruler that shrinks as y falls, so the x-axis is infinitely far away. The Cayley
map sends the half-plane isometrically onto the Poincaré disk, which lets this module reuse
the disk's geodesics.

Points are tensors (..., 2) whose last axis holds (x, y); float32 or float64; leading axes
broadcast. A point with y <= 0 raises a ``ValueError``.
"""

from __future__ import annotations

import torch

from qkv.geometry._checks import (
    require_count,
    require_curvature,
    require_inside_ball,
    require_pair,
    require_points,
    require_upper_half,
)
from qkv.geometry.poincare import poincare_geodesic


def halfplane_distance(p: torch.Tensor, q: torch.Tensor, c=1.0) -> torch.Tensor:
    """Geodesic distance of the half-plane with metric ``(dx^2 + dy^2) / (c y^2)``.

    ``d(p, q) = (1/sqrt c) arcosh(1 + |p - q|^2 / (2 y_p y_q))``, evaluated as the equivalent
    ``(2/sqrt c) asinh(|p - q| / (2 sqrt(y_p y_q)))`` (accurate for close points too).

    Args:
        p, q: points (..., 2) with y > 0, one dtype, broadcastable leading axes.
        c: positive curvature parameter (curvature -c).

    Returns:
        (...) broadcast shape, the dtype of the inputs.
    """
    c = require_curvature(c)
    for name, point in (("p", p), ("q", q)):
        require_points(name, point, size=2)
        require_upper_half(name, point)
    require_pair("p", p, "q", q)
    gap = torch.linalg.vector_norm(p - q, dim=-1)
    return 2 / c**0.5 * torch.asinh(gap / (2 * (p[..., 1] * q[..., 1]).sqrt()))


def cayley_to_disk(p: torch.Tensor, c=1.0) -> torch.Tensor:
    """The Cayley map ``w = (z - i) / (z + i)``: half-plane -> Poincaré disk, an isometry.

    With z = x + iy, ``w = (x^2 + y^2 - 1, -2x) / (x^2 + (y + 1)^2)`` in the unit disk; for
    curvature -c the disk has radius 1/sqrt c and w is divided by sqrt c. The point (0, 1)
    goes to the centre and the x-axis to the boundary circle.

    Args:
        p: points (..., 2) with y > 0; c: positive curvature.

    Returns:
        (..., 2) points of the disk ``c |w|^2 < 1``, the dtype of ``p``.
    """
    c = require_curvature(c)
    require_points("p", p, size=2)
    require_upper_half("p", p)
    x, y = p[..., 0], p[..., 1]
    denominator = x.pow(2) + (y + 1).pow(2)
    w = torch.stack([x.pow(2) + y.pow(2) - 1, -2 * x], dim=-1) / denominator.unsqueeze(-1)
    return w / c**0.5


def disk_to_halfplane(w: torch.Tensor, c=1.0) -> torch.Tensor:
    """The inverse Cayley map ``z = i (1 + w) / (1 - w)``: Poincaré disk -> half-plane.

    For ``w = (a, b)`` in the unit disk, ``z = (-2b, 1 - a^2 - b^2) / ((1 - a)^2 + b^2)``.

    Args:
        w: points (..., 2) of the disk ``c |w|^2 < 1``; c: positive curvature.

    Returns:
        (..., 2) points with y > 0, the dtype of ``w``.
    """
    c = require_curvature(c)
    require_points("w", w, size=2)
    require_inside_ball("w", w, c)
    unit = w * c**0.5
    a, b = unit[..., 0], unit[..., 1]
    denominator = (1 - a).pow(2) + b.pow(2)
    return torch.stack([-2 * b, 1 - a.pow(2) - b.pow(2)], dim=-1) / denominator.unsqueeze(-1)


def halfplane_geodesic(p: torch.Tensor, q: torch.Tensor, steps: int = 65, c=1.0) -> torch.Tensor:
    """Points along the half-plane geodesic from p to q, at equal hyperbolic spacing.

    The geodesics are the vertical rays and the semicircles centred on the x-axis; this
    function finds them by mapping to the disk, following the disk's geodesic
    (:func:`qkv.geometry.poincare_geodesic`) and mapping back.

    Args:
        p, q: points (..., 2) with y > 0, one dtype; steps: number of points (>= 2).

    Returns:
        (..., steps, 2), from p to q.
    """
    require_count("steps", steps, minimum=2)
    disk = [cayley_to_disk(point, c) for point in (p, q)]
    return disk_to_halfplane(poincare_geodesic(*disk, steps=steps, c=c), c)
