"""qkv.geometry's tree tools: constructions, distortion, reconstruction scores, Nickel-Kiela."""

import math

import pytest
import torch

import qkv.geometry as G

F64 = torch.float64


def euclidean(points):
    return torch.cdist(points, points, compute_mode="donot_use_mm_for_euclid_dist")


@pytest.fixture(scope="module")
def tree():
    return G.balanced_tree(3, 5)


def test_balanced_tree_shape_and_distances(tree):
    assert tree.num_nodes == 364
    assert torch.bincount(tree.depth).tolist() == [1, 3, 9, 27, 81, 243]
    d = G.tree_distances(tree)
    assert torch.equal(d, d.T) and d.diagonal().eq(0).all()
    assert d[0].tolist()[:5] == [0, 1, 1, 1, 2]
    assert d[1, 2] == d[4, 5] == 2 and d[4, 13] == 1 and d[4, 7] == 4  # siblings, child, cousins
    assert d.max() == 10
    related = G.related_mask(tree)
    assert related.sum().item() == 2 * sum(3**k * k for k in range(6))  # 2 x 1641 pairs
    assert related[0, 1:].all() and not related[1, 2]


def test_tree_from_parents_checks_its_input():
    small = G.Tree.from_parents([-1, 0, 0, 1])
    assert small.depth.tolist() == [0, 1, 1, 2]
    assert small.children() == [[1, 2], [3], [], []]
    assert small.edges().tolist() == [[0, 1], [0, 2], [1, 3]]
    assert small.preorder() == [0, 1, 3, 2]
    order = G.balanced_tree(2, 3).preorder()
    assert sorted(order) == list(range(15)) and order[:4] == [0, 1, 3, 7]
    with pytest.raises(ValueError, match="starting with -1"):
        G.Tree.from_parents([0, 0])
    with pytest.raises(ValueError, match="parents first"):
        G.Tree.from_parents([-1, 2, 0])
    with pytest.raises(ValueError, match="branching must be an int >= 2"):
        G.balanced_tree(1, 3)


def test_sarkar_embedding_edges_have_the_edge_length_and_distortion_falls(tree):
    reference = G.tree_distances(tree)
    worst = []
    for edge_length in (2.0, 3.0, 5.0):
        points = G.sarkar_embedding(tree, edge_length)
        assert (points.pow(2).sum(-1) < 1).all()
        edges = tree.edges()
        lengths = G.poincare_distance(points[edges[:, 0]], points[edges[:, 1]])
        # deep nodes sit 3e-11 from the boundary at edge length 5: float64 keeps ~6 digits there
        torch.testing.assert_close(lengths, torch.full_like(lengths, edge_length), rtol=1e-5,
                                   atol=0)
        d = G.poincare_distance(points[:, None], points[None])
        worst.append(G.distortion(d, reference).worst)
    assert worst[0] > worst[1] > worst[2]
    assert worst[2] <= 1.2  # the chapter's target at a large edge length


def test_distortion_definitions():
    reference = torch.tensor([[0.0, 1, 2], [1, 0, 1], [2, 1, 0]])
    assert G.distortion(3 * reference, reference) == (1.0, 0.0)
    stretched = reference.clone()
    stretched[0, 2] = stretched[2, 0] = 4  # one pair twice as long
    worst, mean = G.distortion(stretched, reference)
    assert worst == 2.0 and mean == pytest.approx(1 / 3)
    assert G.distortion(torch.zeros(3, 3), reference).worst == math.inf
    with pytest.raises(ValueError, match="same shape|one shape"):
        G.distortion(torch.zeros(2, 2), reference)


def test_planar_lower_bound_and_what_planar_layouts_reach(tree):
    bound = G.planar_lower_bound(3, 5)
    assert bound == pytest.approx((math.sqrt(243) - 1) / 5) and 2.91 < bound < 2.92
    reference = G.tree_distances(tree)
    radial = G.radial_layout(tree, [0, 1, 2, 3, 4, 5])
    radial_worst = G.distortion(euclidean(radial), reference).worst
    assert radial_worst > bound
    refined = G.minimize_distortion(reference, radial, steps=30)
    assert G.distortion(euclidean(refined), reference).worst < radial_worst
    with pytest.raises(ValueError, match="one radius per depth"):
        G.radial_layout(tree, [0, 1, 2])


def test_classical_mds_recovers_euclidean_points():
    points = torch.randn(10, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    recovered = G.classical_mds(torch.cdist(points, points), dim=2)
    torch.testing.assert_close(torch.cdist(recovered, recovered), torch.cdist(points, points))


def test_reconstruction_metrics_perfect_and_known_values():
    tree = G.balanced_tree(3, 3)
    related = G.related_mask(tree)
    mean_rank, average_precision = G.reconstruction_metrics(G.tree_distances(tree), related)
    assert mean_rank >= 1 and average_precision <= 1
    ideal = torch.where(related, 1.0, 2.0).fill_diagonal_(0)  # relatives closer than the rest
    assert G.reconstruction_metrics(ideal, related) == (1.0, 1.0)
    # one node, relatives {1, 3} among {1, 2, 3} ranked 1, 2, 3 by distance
    d = torch.tensor([[0.0, 1, 2, 3], [1, 0, 9, 9], [2, 9, 0, 9], [3, 9, 9, 0]])
    rel = torch.zeros(4, 4, dtype=torch.bool)
    rel[0, 1] = rel[0, 3] = True
    mean_rank, average_precision = G.reconstruction_metrics(d, rel)
    assert mean_rank == 1.5  # ranks 1 and 2 (one unrelated node is closer than node 3)
    assert average_precision == pytest.approx((1 + 2 / 3) / 2)


def test_gromov_delta_is_zero_on_trees_and_positive_on_cycles():
    small = G.balanced_tree(2, 3)
    assert G.gromov_delta(G.tree_distances(small)) == 0.0
    n = 12
    index = torch.arange(n)
    gap = (index[:, None] - index[None]).abs()
    cycle = torch.minimum(gap, n - gap).double()
    assert G.gromov_delta(cycle) == pytest.approx(n / 4)  # opposite points on a 12-cycle


def test_nickel_kiela_loss_matches_its_definition():
    generator = torch.Generator().manual_seed(1)
    points = torch.randn(5, 2, generator=generator, dtype=F64)
    d = torch.cdist(points, points)
    related = torch.zeros(5, 5, dtype=torch.bool)
    related[0, 1] = related[1, 0] = related[2, 3] = related[3, 2] = True
    terms = []
    for u, v in related.nonzero().tolist():
        negatives = [w for w in range(5) if w != u and not related[u, w]]
        logits = torch.stack([-d[u, v]] + [-d[u, w] for w in negatives])
        terms.append(-torch.log_softmax(logits, 0)[0])
    torch.testing.assert_close(G.nickel_kiela_loss(d, related), torch.stack(terms).mean())


def test_riemannian_sgd_step_rescales_and_stays_inside():
    x = torch.tensor([[0.5, 0.0], [0.0, 0.0]], dtype=F64)
    grad = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=F64)
    step = G.riemannian_sgd_step(x, grad, lr=0.1)
    torch.testing.assert_close(step, x - 0.1 * grad * torch.tensor([[0.75**2 / 4], [0.25]],
                                                                    dtype=F64))
    huge = G.riemannian_sgd_step(x, -1e6 * grad, lr=1.0)
    assert (huge.norm(dim=-1) <= 1 - G.DEFAULT_EPS + 1e-15).all()


def test_training_in_the_disk_beats_the_plane_on_a_small_tree():
    tree = G.balanced_tree(2, 4)
    related = G.related_mask(tree)
    scores = {}
    for geometry, lr in (("poincare", 30.0), ("euclidean", 30.0)):
        result = G.train_tree_embedding(related, 2, geometry, epochs=60, lr=lr,
                                        generator=torch.Generator().manual_seed(0))
        assert result.losses[-1] < result.losses[0]
        x = result.points
        d = G.poincare_distance(x[:, None], x[None]) if geometry == "poincare" else torch.cdist(x, x)
        scores[geometry] = G.reconstruction_metrics(d, related)[1]
    assert scores["poincare"] > scores["euclidean"]
    with pytest.raises(ValueError, match="geometry must be one of"):
        G.train_tree_embedding(related, 2, "spherical", epochs=1, lr=1.0)
