"""Learned tree attention: matched parameters, the three scores' formulas, training, aggregation."""

import math
import warnings

import pytest
import torch

import qkv.geometry as G

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    warnings.simplefilter("ignore", DeprecationWarning)
    import geoopt

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning:geoopt")

F64 = torch.float64


@pytest.mark.parametrize("dim", [2, 5])
def test_the_three_scores_have_the_same_parameters(dim):
    counts = {score: G.num_parameters(G.TreeAttention(40, dim, score)) for score in G.SCORES}
    assert set(counts.values()) == {40 * dim + 2 * dim * dim + 1}


@pytest.mark.parametrize("c", [0.5, 1.0, 2.0])
def test_scores_match_their_formulas(c):
    models = {s: G.TreeAttention(12, 3, s, c=c, generator=torch.Generator().manual_seed(3))
              for s in G.SCORES}
    with torch.no_grad():
        for model in models.values():
            model.log_beta.fill_(math.log(1.7))
        q, k = models["dot"].queries_and_keys()
        torch.testing.assert_close(models["dot"](), 1.7 * q @ k.T)
        torch.testing.assert_close(models["euclidean"](), -1.7 * torch.cdist(q, k))
        hq, hk = models["hyperbolic"].queries_and_keys()
        torch.testing.assert_close(hq, G.expmap0(q, c))  # short tangent vectors: no projection
        ball = geoopt.PoincareBall(c=torch.tensor(c, dtype=F64))
        torch.testing.assert_close(models["hyperbolic"](), -1.7 * ball.dist(hq[:, None], hk[None]))


def test_long_tangent_vectors_are_projected_inside_the_ball():
    model = G.TreeAttention(6, 2, "hyperbolic", generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.nodes.mul_(1e3)
        q, k = model.queries_and_keys()
        assert (q.norm(dim=-1) <= 1 - 1e-5 + 1e-12).all() and (k.norm(dim=-1) < 1).all()
        assert torch.isfinite(model()).all()


def test_ancestor_relation_of_a_small_tree():
    tree = G.Tree.from_parents([-1, 0, 0, 1])
    relation = G.ancestor_relation(tree)
    assert relation.nonzero().tolist() == [[1, 0], [2, 0], [3, 0], [3, 1]]


@pytest.mark.parametrize("score", G.SCORES)
def test_training_lowers_the_loss_and_is_reproducible(score):
    tree = G.balanced_tree(2, 3)
    first = G.train_tree_attention(tree, 4, score, steps=60, lr=0.05, seed=1)
    again = G.train_tree_attention(tree, 4, score, steps=60, lr=0.05, seed=1)
    assert first.losses[-1] < first.losses[0]
    assert first.losses == again.losses and first.map == again.map
    assert 0 < first.map <= 1 and first.mean_rank >= 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="score must be one of"):
        G.TreeAttention(5, 2, "cosine")
    with pytest.raises(ValueError, match="steps"):
        G.train_tree_attention(G.balanced_tree(2, 2), 2, "dot", steps=-1)


# ------------------------------------------------------------------ tangent-space aggregation

def test_tangent_midpoint_is_exp_of_the_mean_log():
    generator = torch.Generator().manual_seed(5)
    v = 0.8 * torch.randn(7, 3, generator=generator, dtype=F64)
    points = G.expmap0(v, 2.0)
    weights = torch.rand(4, 7, generator=generator, dtype=F64)
    expected = G.expmap0(weights @ v / weights.sum(-1, keepdim=True), 2.0)
    torch.testing.assert_close(G.tangent_midpoint(points, weights, 2.0), expected)


def test_tangent_and_einstein_midpoints_agree_on_a_geodesic_through_the_origin():
    # two points symmetric about the origin, equal weights: both give the origin; one point
    # alone: both give the point; on a diameter both lie on the diameter
    x = torch.tensor([[0.6, 0.0], [-0.6, 0.0]], dtype=F64)
    half = torch.tensor([[0.5, 0.5]], dtype=F64)
    for mean in (G.tangent_midpoint, G.einstein_midpoint):
        torch.testing.assert_close(mean(x, half), torch.zeros(1, 2, dtype=F64))
        torch.testing.assert_close(mean(x, torch.tensor([[1.0, 0.0]], dtype=F64)), x[:1])
    # off the origin they differ: the Einstein midpoint of two points is the geodesic
    # midpoint, the tangent-space mean in general is not
    a, b = torch.tensor([0.1, 0.6], dtype=F64), torch.tensor([0.5, -0.2], dtype=F64)
    pair = torch.stack([a, b])
    einstein, tangent = G.einstein_midpoint(pair, half)[0], G.tangent_midpoint(pair, half)[0]
    assert G.poincare_distance(einstein, a).item() == pytest.approx(
        G.poincare_distance(einstein, b).item())
    assert G.poincare_distance(einstein, tangent).item() > 1e-3


def test_tangent_midpoint_errors():
    with pytest.raises(ValueError, match="non-negative"):
        G.tangent_midpoint(torch.zeros(3, 2, dtype=F64), -torch.ones(1, 3, dtype=F64))
    with pytest.raises(ValueError, match="same L_k"):
        G.tangent_midpoint(torch.zeros(3, 2, dtype=F64), torch.ones(1, 4, dtype=F64))
