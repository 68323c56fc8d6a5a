"""Tests of the chapter-3 attention lab: BilinearAttention and qkv.alignment."""

import math

import pytest
import torch

from qkv.alignment import (SCORES, AlignmentModel, UniformAttention, evaluate, make_attention,
                           reversal_data, train_alignment)
from qkv.attention import BilinearAttention, masked_softmax, padding_mask


def test_bilinear_with_identity_is_the_unscaled_dot_product():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 5), torch.randn(2, 4, 5), torch.randn(2, 4, 6)
    attention = BilinearAttention(key_size=5, query_size=5)
    with torch.no_grad():
        attention.W.weight.copy_(torch.eye(5))
    output, weights = attention(q, k, v)
    expected = (q @ k.transpose(1, 2)).softmax(-1)
    assert torch.allclose(weights, expected, atol=1e-6)
    assert torch.allclose(output, expected @ v, atol=1e-6)


def test_bilinear_scores_are_q_W_k_for_different_sizes_with_a_mask():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, length, size, dtype=torch.float64)
               for length, size in ((3, 6), (4, 3), (4, 2)))
    attention = BilinearAttention(key_size=3, query_size=6).double()
    mask = padding_mask(torch.tensor([4, 2]), 4)
    output, weights = attention(q, k, v, mask)
    W = attention.W.weight  # (D_q, D_k)
    scores = torch.einsum("bqi,ij,bkj->bqk", q, W, k)
    assert torch.allclose(weights, masked_softmax(scores, mask))
    assert not weights[1, :, 2:].any()
    assert output.shape == (2, 3, 2)
    assert sum(p.numel() for p in attention.parameters()) == 6 * 3


def test_bilinear_errors_name_the_argument():
    attention = BilinearAttention(key_size=3, query_size=6)
    with pytest.raises(ValueError, match="keys must have 3 features"):
        attention(torch.randn(1, 2, 6), torch.randn(1, 4, 5), torch.randn(1, 4, 2))
    with pytest.raises(ValueError, match="queries must have 6 features"):
        attention(torch.randn(1, 2, 5), torch.randn(1, 4, 3), torch.randn(1, 4, 2))
    with pytest.raises(ValueError, match="key_size"):
        BilinearAttention(key_size=0, query_size=2)


def test_reversal_data_reverses_within_the_valid_length():
    data = reversal_data(50, min_len=2, max_len=6, seed=3)
    assert data.sources.shape == data.targets.shape == (50, 6)
    assert data.valid_lens.min() >= 2 and data.valid_lens.max() <= 6
    for source, target, n in zip(data.sources, data.targets, data.valid_lens.tolist()):
        assert target[:n].tolist() == source[:n].flip(0).tolist()
        assert (source[n:] == data.pad_id).all() and (target[n:] == data.pad_id).all()
        assert (source[:n] < data.pad_id).all()
    again = reversal_data(50, min_len=2, max_len=6, seed=3)
    assert torch.equal(again.sources, data.sources)


def test_uniform_attention_spreads_over_the_valid_keys():
    mask = padding_mask(torch.tensor([3, 5]), 5)
    _, weights = UniformAttention()(torch.randn(2, 4, 8), torch.randn(2, 5, 8),
                                    torch.randn(2, 5, 3), mask)
    assert torch.allclose(weights[0, :, :3], torch.full((4, 3), 1 / 3))
    assert not weights[0, :, 3:].any()
    assert torch.allclose(weights[1], torch.full((4, 5), 0.2))


@pytest.mark.parametrize("score", SCORES)
def test_model_shapes_and_no_weight_on_padding(score):
    torch.manual_seed(0)
    data = reversal_data(6, min_len=2, max_len=7, seed=0)
    model = AlignmentModel(score, max_len=7)
    logits, weights = model(data.sources, data.valid_lens)
    assert logits.shape == (6, 7, 10) and weights.shape == (6, 7, 7)
    valid = padding_mask(data.valid_lens, 7)  # (B, 1, L)
    assert not (weights * ~valid).any()
    assert torch.allclose(weights.sum(-1), torch.ones(6, 7))


def test_make_attention_rejects_unknown_scores():
    with pytest.raises(ValueError, match="score must be one of"):
        make_attention("cosine", 8)
    with pytest.raises(ValueError, match="num_hiddens must be even"):
        AlignmentModel("dot", max_len=4, num_hiddens=7)


def test_evaluate_scores_a_perfect_model_as_perfect():
    data = reversal_data(20, min_len=3, max_len=5, seed=1)

    class Oracle(torch.nn.Module):
        def forward(self, sources, valid_lens):
            logits = torch.nn.functional.one_hot(data.targets.clamp(max=9), 10).float()
            mirrored = (valid_lens[:, None] - 1 - torch.arange(5)).clamp(min=0)
            weights = torch.nn.functional.one_hot(mirrored, 5).float()
            return logits, weights

    token_accuracy, exact, diagonal = evaluate(Oracle(), data)
    assert token_accuracy == exact == diagonal == 1.0


def test_train_alignment_is_seeded_and_measures():
    train, test = reversal_data(64, max_len=5, seed=0), reversal_data(16, max_len=5, seed=1)
    first = train_alignment("additive", 3, train, test, batch_size=8, seed=2)
    second = train_alignment("additive", 3, train, test, batch_size=8, seed=2)
    assert first.losses == second.losses and len(first.losses) == 3
    assert all(math.isfinite(x) for x in first.losses)
    assert 0.0 <= first.token_accuracy <= 1.0 and 0.0 <= first.diagonal_weight <= 1.0
    assert first.parameters == 2 * 32 * 32 + 32  # W_q, W_k and w_v of the additive score
    assert first.weights.shape == (5, 5) and not first.model.training
