"""qkv.geometry's hyperbolic attention: weights from distances, outputs inside the ball."""

import math

import pytest
import torch

import qkv.geometry as G
from qkv.attention import masked_softmax

F64 = torch.float64


def ball_points(*shape, radius=0.9, seed=0, dtype=F64):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=generator, dtype=dtype)
    r = torch.rand(*shape[:-1], 1, generator=generator, dtype=dtype) * radius
    return x / x.norm(dim=-1, keepdim=True) * r


def test_weights_are_a_softmax_of_negative_distances_and_outputs_einstein_midpoints():
    q, k, v = ball_points(2, 3, 4, seed=1), ball_points(2, 5, 4, seed=2), ball_points(2, 5, 6, seed=3)
    output, weights = G.hyperbolic_attention(q, k, v, beta=1.7)
    expected = torch.softmax(-1.7 * G.poincare_distance(q[:, :, None], k[:, None]), dim=-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(output, G.einstein_midpoint(v, weights))
    assert output.shape == (2, 3, 6) and (output.pow(2).sum(-1) < 1).all()


def test_nearest_key_wins_at_low_temperature():
    k = ball_points(6, 2, seed=4)
    output, weights = G.hyperbolic_attention(k, k, k, beta=200.0)
    torch.testing.assert_close(weights, torch.eye(6, dtype=F64), atol=1e-6, rtol=0)
    torch.testing.assert_close(output, k, atol=1e-6, rtol=0)


def test_masked_keys_get_no_weight_and_empty_rows_give_the_origin():
    q, k = ball_points(3, 2, seed=5), ball_points(4, 2, seed=6)
    mask = torch.tensor([[True, False, True, True], [False] * 4, [True] * 4])
    for gate in ("sigmoid", "softmax"):
        output, weights = G.hyperbolic_attention(q, k, k, mask=mask, gate=gate)
        assert (weights[~mask] == 0).all() and torch.equal(output[1], torch.zeros(2, dtype=F64))
    torch.testing.assert_close(weights[[0, 2]].sum(-1), torch.ones(2, dtype=F64))  # softmax


def test_offset_cancels_under_softmax_but_not_under_sigmoid():
    q, k, v = ball_points(3, 2, seed=7), ball_points(5, 2, seed=8), ball_points(5, 2, seed=9)
    softmax_outputs = [G.hyperbolic_attention(q, k, v, offset=o)[0] for o in (-2.0, 3.0)]
    torch.testing.assert_close(*softmax_outputs)
    sigmoid_outputs = [G.hyperbolic_attention(q, k, v, offset=o, gate="sigmoid")[0]
                       for o in (-2.0, 3.0)]
    assert not torch.allclose(*sigmoid_outputs)


def test_module_learns_beta_and_offset_and_projects_float32_inputs():
    module = G.HyperbolicAttention(beta=2.0, offset=0.5, gate="sigmoid")
    assert module.beta.item() == pytest.approx(2.0)
    q = G.expmap0(torch.tensor([[30.0, 0.0], [0.1, 0.2]]))  # the first rounds onto the boundary
    k = G.expmap0(torch.tensor([[0.3, -0.2], [0.5, 0.5], [-1.0, 0.0]]))
    output, weights = module(q, k, k)
    assert output.dtype == torch.float32 and torch.isfinite(output).all()
    output.sum().backward()
    assert module.log_beta.grad is not None and module.offset.grad is not None
    assert "gate='sigmoid'" in repr(module)


def test_beta_for_perplexity_reaches_the_target_spread():
    points = ball_points(30, 2, seed=10)
    scores = -G.poincare_distance(points[:, None], points[None])
    mask = ~torch.eye(30, dtype=torch.bool)
    beta = G.beta_for_perplexity(scores, 5.0, mask)
    weights = masked_softmax(beta * scores, mask)
    entropy = -(weights * weights.clamp_min(1e-300).log()).sum(-1).mean()
    assert entropy.item() == pytest.approx(math.log(5.0), rel=1e-6)
    with pytest.raises(ValueError, match="perplexity must lie in"):
        G.beta_for_perplexity(scores, 40.0, mask)


def test_bad_input_gets_clear_errors():
    inside = ball_points(3, 2, seed=11)
    with pytest.raises(ValueError, match="gate must be one of"):
        G.hyperbolic_attention(inside, inside, inside, gate="relu")
    with pytest.raises(ValueError, match="inside the Poincaré ball"):
        G.hyperbolic_attention(inside, inside * 10, inside)
    with pytest.raises(ValueError, match="share D, keys and values L_k"):
        G.hyperbolic_attention(inside, inside, inside[:2])
    with pytest.raises(ValueError, match="beta must be a positive"):
        G.hyperbolic_attention(inside, inside, inside, beta=0.0)
    with pytest.raises(ValueError, match="does not broadcast"):
        G.hyperbolic_attention(inside, inside, inside, mask=torch.ones(2, 2, dtype=torch.bool))
