"""The sphere and a rolled-up strip: two isometric embeddings in Euclidean space, compared.

* On the unit sphere the dot product of two points is ``cos d`` and their chordal distance
  ``2 sin(d/2)``, where d is the geodesic (great-circle) distance: both are monotone in d, so
  ranking by dot product ranks by geodesic distance.
* A flat strip rolled up like a carpet (:func:`roll_up_strip`) is isometric to the strip, yet
  points on neighbouring turns are close in R^3 and far apart along the sheet: the chordal
  order of the pairs differs from the geodesic one. :func:`order_violations` counts how often.
"""

from __future__ import annotations

import torch

from qkv.geometry._checks import require_pair, require_points, require_positive


def sphere_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Great-circle distance ``arccos(x . y)`` between unit vectors, in [0, pi].

    Computed as ``2 atan2(|x - y|, |x + y|)``, which equals ``arccos(x . y)`` for unit vectors
    and stays accurate for nearly equal and nearly opposite points, where arccos does not.

    Args:
        x, y: unit vectors (..., D) (norms within 1000 machine epsilons of 1), one dtype,
            broadcastable leading axes.

    Returns:
        (...) broadcast shape.
    """
    for name, point in (("x", x), ("y", y)):
        require_points(name, point)
        with torch.no_grad():
            error = (torch.linalg.vector_norm(point.detach(), dim=-1) - 1).abs()
            if (~(error <= 1000 * torch.finfo(point.dtype).eps)).any():
                raise ValueError(f"{name} must hold unit vectors (points of the sphere); the "
                                 f"norms differ from 1 by up to {error.max().item():.3g}. "
                                 f"Normalise with {name} / {name}.norm(dim=-1, keepdim=True).")
    require_pair("x", x, "y", y)
    difference = torch.linalg.vector_norm(x - y, dim=-1)
    total = torch.linalg.vector_norm(x + y, dim=-1)
    return 2 * torch.atan2(difference, total)


def roll_up_strip(points: torch.Tensor, gap: float = 1.0) -> torch.Tensor:
    """Roll the flat strip {(s, v): s > 0} into a spiral carpet in R^3, isometrically.

    The coordinate s runs along the involute of a circle, ``gamma(t) = a (cos t + t sin t,
    sin t - t cos t)`` with ``a = gap / (2 pi)``, whose arc length from t = 0 is ``a t^2 / 2``;
    so ``(s, v) -> (gamma(sqrt(2 s / a)), v)`` has orthonormal partial derivatives: lengths
    and angles of curves on the strip are kept exactly. Successive turns lie ``gap`` apart.

    Args:
        points: (..., 2) strip coordinates (s, v) with s > 0, floating point.
        gap: distance between neighbouring turns of the roll, > 0.

    Returns:
        (..., 3) points in R^3, the dtype of ``points``.
    """
    require_points("points", points, size=2)
    gap = require_positive("gap", gap)
    if (~(points.detach()[..., 0] > 0)).any():
        raise ValueError("the strip coordinate s = points[..., 0] must be positive")
    a = gap / (2 * torch.pi)
    t = (2 * points[..., 0] / a).sqrt()
    curve_x = a * (torch.cos(t) + t * torch.sin(t))
    curve_y = a * (torch.sin(t) - t * torch.cos(t))
    return torch.stack([curve_x, curve_y, points[..., 1]], dim=-1)


def order_violations(reference: torch.Tensor, candidate: torch.Tensor,
                     chunk: int = 64) -> float:
    """How often ``candidate`` orders the neighbours of a point differently from ``reference``.

    Over all triplets (i, j, k) with j, k different from i and ``reference[i, j] <
    reference[i, k]``, the fraction with ``candidate[i, j] > candidate[i, k]`` (a tie in
    ``candidate`` counts one half). 0 means every point ranks its neighbours in the same order,
    0.5 means no agreement beyond chance. For attention: pass tree or geodesic distances as
    ``reference`` and negative scores as ``candidate``.

    Args:
        reference, candidate: (n, n) matrices of one dtype (distances, or dissimilarities).
        chunk: anchors processed at once (memory: chunk * n^2 booleans).

    Returns:
        The fraction, a float in [0, 1].
    """
    for name, matrix in (("reference", reference), ("candidate", candidate)):
        if (not isinstance(matrix, torch.Tensor) or matrix.dim() != 2
                or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 3):
            shape = tuple(matrix.shape) if isinstance(matrix, torch.Tensor) else type(matrix)
            raise ValueError(f"{name} must be a square (n, n) tensor with n >= 3; got {shape}")
    if reference.shape != candidate.shape:
        raise ValueError(f"reference and candidate must have the same shape; got "
                         f"{tuple(reference.shape)} and {tuple(candidate.shape)}")
    n = reference.shape[0]
    others = ~torch.eye(n, dtype=torch.bool, device=reference.device)
    ordered = violated = 0.0
    for start in range(0, n, chunk):
        rows = slice(start, start + chunk)
        valid = others[rows, :, None] & others[rows, None, :]  # (chunk, n, n): j, k != i
        closer = (reference[rows, :, None] < reference[rows, None, :]) & valid
        swapped = candidate[rows, :, None] > candidate[rows, None, :]
        tied = candidate[rows, :, None] == candidate[rows, None, :]
        ordered += closer.sum().item()
        violated += (closer & swapped).sum().item() + 0.5 * (closer & tied).sum().item()
    if ordered == 0:
        raise ValueError("reference has no strictly ordered pair of neighbours")
    return violated / ordered
