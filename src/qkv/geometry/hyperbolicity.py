"""How tree-like is a point cloud? Gromov's delta, relative to the diameter, on samples.

Gromov's four-point condition: for any four points x, y, z, w of a metric space, form the three
sums ``d(x,y) + d(z,w)``, ``d(x,z) + d(y,w)`` and ``d(x,w) + d(y,z)``. The space is
delta-hyperbolic when the largest sum never exceeds the second largest by more than ``2 delta``
(Gromov, 1987). A tree metric has delta = 0; delta is at most half the diameter for any metric.
Equivalently, with the Gromov product at a base point w,
``(x|y)_w = (d(x,w) + d(y,w) - d(x,y)) / 2``, delta is the largest
``min((x|z)_w, (z|y)_w) - (x|y)_w`` over all x, y, z and w (:func:`qkv.geometry.gromov_delta`
computes it this way).

Khrulkov et al. (2020), "Hyperbolic Image Embeddings", compare data sets by the scale-free
``delta_rel = 2 delta / diam``, in [0, 1], computed on random subsets of the data, and in their
code at the single base point w = the first point of a subset. A fixed base point gives a
number ``delta_w`` with ``delta_w <= delta <= 2 delta_w`` (Gromov's lemma), so the two
conventions differ by at most a factor of 2: :func:`delta_hyperbolicity` uses all base points
(``base_point=None``) unless told otherwise.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from qkv.geometry._checks import require_count
from qkv.geometry.trees import gromov_delta


def _check_distances(distances: torch.Tensor) -> None:
    if not isinstance(distances, torch.Tensor) or not distances.is_floating_point():
        raise TypeError("distances must be a floating-point torch.Tensor")
    if distances.dim() != 2 or distances.shape[0] != distances.shape[1]:
        raise ValueError(f"distances must be (n, n); got {tuple(distances.shape)}")


def delta_at(distances: torch.Tensor, base_point: int) -> float:
    """Gromov's delta at one base point w: the largest ``min((x|z)_w, (z|y)_w) - (x|y)_w``.

    This is what Khrulkov et al. (2020) compute (with w the first point). Costs O(n^3).

    Args:
        distances: (n, n) symmetric distances; base_point: the index of w.

    Returns:
        ``delta_w`` as a float, between ``delta / 2`` and ``delta``.
    """
    _check_distances(distances)
    n = distances.shape[0]
    if not isinstance(base_point, int) or not 0 <= base_point < n:
        raise ValueError(f"base_point must be an int in [0, {n}); got {base_point!r}")
    d = distances.double()
    product = (d[:, base_point, None] + d[None, base_point, :] - d) / 2  # (n, n): (x|y)_w
    reach = torch.minimum(product[:, :, None], product[None, :, :]).amax(1)  # max-min product
    return (reach - product).max().item()


def relative_delta(distances: torch.Tensor, base_point: int | None = None) -> float:
    """``2 delta / diameter`` of a finite metric: 0 for a tree, at most 1 for any metric.

    Args:
        distances: (n, n) symmetric distances, not all zero.
        base_point: None for the four-point delta (all base points, O(n^4) time); an index for
            the one-base-point delta of Khrulkov et al. (O(n^3)).

    Returns:
        A float in [0, 1].
    """
    _check_distances(distances)
    diameter = distances.max().item()
    if not diameter > 0:
        raise ValueError("distances are all zero: the diameter is 0 and delta_rel undefined")
    delta = gromov_delta(distances) if base_point is None else delta_at(distances, base_point)
    return 2 * delta / diameter


class DeltaEstimate(NamedTuple):
    """What :func:`delta_hyperbolicity` returns."""

    mean: float  # mean of delta_rel over the samples
    std: float  # their standard deviation (0 for one sample)
    values: list[float]  # delta_rel of every sample


def delta_hyperbolicity(x: torch.Tensor, num_samples: int = 5, sample_size: int | None = 100,
                        is_distance: bool = False, base_point: int | None = None,
                        generator: torch.Generator | None = None) -> DeltaEstimate:
    """``delta_rel = 2 delta / diam`` of random subsets of a point cloud or a metric.

    Each sample draws ``sample_size`` distinct points (all of them if None or if there are
    fewer), computes their Euclidean distances (or takes the rows and columns of the given
    distance matrix) and their ``delta_rel`` (:func:`relative_delta`). The four-point delta of
    a subset is at most that of the whole set, and the diameter of a subset at most the whole
    diameter: a sample estimates the ratio, it does not bound it.

    Args:
        x: (n, D) points, or (n, n) distances with ``is_distance=True``.
        num_samples: how many subsets; sample_size: points per subset (about 100 keeps the
            O(size^4) four-point delta to a fraction of a second).
        base_point: None (all base points) or 0 (the first point of every subset, as Khrulkov
            et al. do).
        generator: for the subsets.

    Returns:
        A :class:`DeltaEstimate`.
    """
    require_count("num_samples", num_samples)
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 2:
        raise ValueError("x must be a floating-point tensor: (n, D) points, or (n, n) "
                         f"distances with is_distance=True; got {getattr(x, 'shape', type(x))}")
    if is_distance:
        _check_distances(x)
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"x must hold at least 4 points (four-point condition); got {n}")
    size = n if sample_size is None else min(n, sample_size)
    require_count("sample_size", size, minimum=4)
    values = []
    for _ in range(num_samples):
        index = torch.randperm(n, generator=generator)[:size]
        if is_distance:
            d = x[index][:, index].double()
        else:
            points = x[index].double()
            d = torch.cdist(points, points, compute_mode="donot_use_mm_for_euclid_dist")
        values.append(relative_delta(d, base_point))
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return DeltaEstimate(mean, std, values)
