"""Gromov's delta relative to the diameter: trees, brute force, known small metrics, sampling."""

import itertools
import math

import pytest
import torch

import qkv.geometry as G

F64 = torch.float64


def brute_force_delta(d):
    """Half the largest gap between the largest and the second largest of the three pair sums."""
    n, best = d.shape[0], 0.0
    for x, y, z, w in itertools.product(range(n), repeat=4):
        sums = sorted([d[x, y] + d[z, w], d[x, z] + d[y, w], d[x, w] + d[y, z]])
        best = max(best, (sums[2] - sums[1]).item() / 2)
    return best


def random_metric(n, seed):
    points = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return torch.cdist(points, points)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_four_point_delta_matches_brute_force(seed):
    d = random_metric(7, seed)
    assert G.gromov_delta(d) == pytest.approx(brute_force_delta(d), abs=1e-12)
    assert G.relative_delta(d) == pytest.approx(2 * brute_force_delta(d) / d.max().item())


@pytest.mark.parametrize("seed", [0, 1])
def test_one_base_point_lies_between_half_delta_and_delta(seed):
    d = random_metric(9, seed)
    delta = G.gromov_delta(d)
    for w in range(9):
        assert delta / 2 - 1e-12 <= G.delta_at(d, w) <= delta + 1e-12
    assert max(G.delta_at(d, w) for w in range(9)) == pytest.approx(delta)


def test_tree_metric_has_delta_zero_in_every_sample():
    d = G.tree_distances(G.balanced_tree(3, 4))
    assert G.relative_delta(d) == 0
    estimate = G.delta_hyperbolicity(d, num_samples=3, sample_size=30, is_distance=True,
                                     generator=torch.Generator().manual_seed(0))
    assert estimate.values == [0.0, 0.0, 0.0] and estimate.mean == 0 and estimate.std == 0


def test_known_small_metrics():
    # four corners of a unit square (l1 = the 4-cycle): sums 2, 2, 4 -> delta 1, diameter 2
    cycle = torch.tensor([[0, 1, 2, 1], [1, 0, 1, 2], [2, 1, 0, 1], [1, 2, 1, 0]], dtype=F64)
    assert G.gromov_delta(cycle) == 1.0 and G.relative_delta(cycle) == 1.0
    # four equidistant points: all sums equal -> delta 0 (a star, which is a tree)
    simplex = 1 - torch.eye(4, dtype=F64)
    assert G.relative_delta(simplex) == 0.0
    # Euclidean square of side 1: sums 2, 2, 2 sqrt 2 -> delta = sqrt 2 - 1, diameter sqrt 2
    corners = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=F64)
    d = torch.cdist(corners, corners)
    assert G.relative_delta(d) == pytest.approx(2 * (math.sqrt(2) - 1) / math.sqrt(2))


def test_points_and_distances_give_the_same_estimate():
    points = torch.randn(40, 5, generator=torch.Generator().manual_seed(3), dtype=F64)
    from_points = G.delta_hyperbolicity(points, num_samples=2, sample_size=12,
                                        generator=torch.Generator().manual_seed(4))
    from_distances = G.delta_hyperbolicity(torch.cdist(points, points), num_samples=2,
                                           sample_size=12, is_distance=True,
                                           generator=torch.Generator().manual_seed(4))
    assert from_points.values == pytest.approx(from_distances.values)
    assert all(0 <= v <= 1 for v in from_points.values)
    # base_point=0: Khrulkov et al.'s convention, at least half the four-point value
    khrulkov = G.delta_hyperbolicity(points, num_samples=2, sample_size=12, base_point=0,
                                     generator=torch.Generator().manual_seed(4))
    for one, four in zip(khrulkov.values, from_points.values):
        assert four / 2 - 1e-12 <= one <= four + 1e-12


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="distances must be"):
        G.relative_delta(torch.zeros(3, 4, dtype=F64))
    with pytest.raises(ValueError, match="diameter is 0"):
        G.relative_delta(torch.zeros(4, 4, dtype=F64))
    with pytest.raises(ValueError, match="at least 4 points"):
        G.delta_hyperbolicity(torch.randn(3, 2))
    with pytest.raises(ValueError, match="base_point"):
        G.delta_at(torch.ones(5, 5, dtype=F64), 7)
    with pytest.raises(ValueError, match="num_samples"):
        G.delta_hyperbolicity(torch.randn(8, 2), num_samples=0)
