"""Tests of qkv.attention: masks, masked softmax, scaled dot-product and additive attention.

References: torch.nn.functional.scaled_dot_product_attention, d2l's implementations, closed
forms; properties with hypothesis; every bad-input error.
"""

import pytest
import torch
import torch.nn.functional as F
from d2l import torch as d2l
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.nn.attention.bias import causal_lower_right

from qkv.attention import (
    AdditiveAttention,
    DotProductAttention,
    attention_pooling,
    causal_mask,
    masked_softmax,
    padding_mask,
    scaled_dot_product_attention,
)

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True)
SEEDS = st.integers(0, 2**31 - 1)
HALF_TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 2e-2}


def randn(generator, *shape, dtype=torch.float64, scale=1.0):
    return scale * torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)


def random_mask(generator, *shape, p_allowed=0.6):
    return torch.rand(*shape, generator=generator) < p_allowed


def rows_with_keys(mask, shape):
    """(..., L_q) boolean: which query rows of a mask broadcast to `shape` allow some key."""
    return mask.expand(shape).any(dim=-1)


# ----------------------------------------------------------------------------- masks


def test_padding_mask_known_values():
    mask = padding_mask(torch.tensor([1, 3]), num_keys=4)
    assert mask.shape == (2, 1, 4) and mask.dtype == torch.bool
    assert mask.squeeze(1).tolist() == [[True, False, False, False], [True, True, True, False]]
    per_query = padding_mask(torch.tensor([[0, 2], [4, 1]]), num_keys=4)
    assert per_query.tolist() == [
        [[False, False, False, False], [True, True, False, False]],
        [[True, True, True, True], [True, False, False, False]],
    ]


def test_causal_mask_known_values_and_end_alignment():
    lower = [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_mask(3).tolist() == lower
    # Two new queries after two cached keys: query 0 is position 2 of the sequence.
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]


@pytest.mark.parametrize("num_queries, num_keys", [(1, 1), (3, 3), (2, 5), (1, 4), (4, 7)])
def test_causal_mask_matches_torch_lower_right_causal_bias(num_queries, num_keys):
    expected = causal_lower_right(num_queries, num_keys)._materialize(torch.device("cpu"))
    assert torch.equal(causal_mask(num_queries, num_keys), expected)


# ----------------------------------------------------------------------------- masked softmax


@PROPERTY
@given(seed=SEEDS, rows=st.integers(1, 6), cols=st.integers(1, 7), scale=st.sampled_from([1, 30]))
def test_masked_softmax_is_softmax_over_allowed_keys(seed, rows, cols, scale):
    gen = torch.Generator().manual_seed(seed)
    scores = randn(gen, 2, rows, cols, scale=scale)
    mask = random_mask(gen, 2, rows, cols)
    weights = masked_softmax(scores, mask)
    # Closed form: exp(s - max over allowed) on allowed keys, normalised; empty rows stay zero.
    shifted = scores - scores.masked_fill(~mask, -torch.inf).amax(-1, keepdim=True)
    numerators = torch.where(mask, shifted.exp(), torch.zeros(()).double())
    totals = numerators.sum(-1, keepdim=True)
    expected = torch.where(totals > 0, numerators / totals, torch.zeros(()).double())
    torch.testing.assert_close(weights, expected, rtol=1e-12, atol=1e-14)
    assert (weights >= 0).all() and (weights[~mask] == 0).all()
    row_sums = weights.sum(-1)
    has_key = mask.any(-1)
    torch.testing.assert_close(row_sums[has_key], torch.ones_like(row_sums[has_key]))
    assert (row_sums[~has_key] == 0).all()


def test_masked_softmax_without_mask_is_softmax():
    scores = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(masked_softmax(scores), torch.softmax(scores, -1))


@pytest.mark.parametrize("per_query", [False, True], ids=["valid_lens (B,)", "valid_lens (B, L_q)"])
def test_masked_softmax_matches_d2l(per_query):
    gen = torch.Generator().manual_seed(1)
    batch, num_queries, num_keys = 3, 4, 6
    scores = randn(gen, batch, num_queries, num_keys)
    shape = (batch, num_queries) if per_query else (batch,)
    # At least one valid key: d2l fills masked scores with -1e6, so its fully masked rows are
    # uniform by design, where ours are zero.
    valid_lens = torch.randint(1, num_keys + 1, shape, generator=gen)
    expected = d2l.masked_softmax(scores.clone(), valid_lens)  # d2l writes into its input
    torch.testing.assert_close(masked_softmax(scores, padding_mask(valid_lens, num_keys)), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_masked_softmax_half_precision_has_no_nan(dtype):
    gen = torch.Generator().manual_seed(2)
    # Scores near the top of float16's range; a fill of -1e9 would be -inf in float16.
    scores = randn(gen, 4, 5, 6, dtype=dtype, scale=2e4)
    mask = random_mask(gen, 4, 5, 6)
    mask[0, 0] = False  # one fully masked row
    weights = masked_softmax(scores, mask)
    assert weights.dtype == dtype and torch.isfinite(weights).all()
    assert (weights[0, 0] == 0).all()
    expected = masked_softmax(scores.double(), mask)
    tol = HALF_TOLERANCE[dtype]
    torch.testing.assert_close(weights.double(), expected, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- scaled dot product

MASK_KINDS = ["none", "random", "padding", "causal", "causal_bias"]


def make_mask(kind, gen, batch, heads, num_queries, num_keys):
    """Our boolean mask (True = may attend) and SDPA's arguments that mean the same thing."""
    if kind == "none":
        return None, {}
    if kind == "random":
        mask = random_mask(gen, batch, heads, num_queries, num_keys)
    elif kind == "padding":
        valid_lens = torch.randint(0, num_keys + 1, (batch,), generator=gen)
        mask = padding_mask(valid_lens, num_keys).unsqueeze(1)
    elif kind == "causal" and num_queries == num_keys:
        return causal_mask(num_queries), {"is_causal": True}
    else:  # keys beyond the queries: PyTorch's is_causal aligns top-left, so use its bias
        mask = causal_mask(num_queries, num_keys)
        return mask, {"attn_mask": causal_lower_right(num_queries, num_keys)}
    return mask, {"attn_mask": mask}


@PROPERTY
@given(
    seed=SEEDS,
    sizes=st.tuples(*(st.integers(1, n) for n in (3, 3, 5, 6, 6, 5))),
    kind=st.sampled_from(MASK_KINDS),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_scaled_dot_product_attention_matches_torch(seed, sizes, kind, dtype):
    batch, heads, num_queries, num_keys, dim, value_dim = sizes
    num_keys = max(num_keys, num_queries)  # causal masks need L_k >= L_q
    gen = torch.Generator().manual_seed(seed)
    q = randn(gen, batch, heads, num_queries, dim, dtype=dtype)
    k = randn(gen, batch, heads, num_keys, dim, dtype=dtype)
    v = randn(gen, batch, heads, num_keys, value_dim, dtype=dtype)
    mask, torch_args = make_mask(kind, gen, batch, heads, num_queries, num_keys)
    output, weights = scaled_dot_product_attention(q, k, v, mask)
    expected = F.scaled_dot_product_attention(q, k, v, **torch_args)
    assert output.shape == expected.shape and weights.shape == (*q.shape[:-1], num_keys)
    has_key = torch.ones(q.shape[:-1], dtype=torch.bool)
    if mask is not None:
        has_key = rows_with_keys(mask, weights.shape)
    # Compare rows with an allowed key; what torch returns for empty rows has changed across
    # versions, ours is zero by definition.
    torch.testing.assert_close(output[has_key], expected[has_key])
    assert (output[~has_key] == 0).all() and (weights[~has_key] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("length", [1, 4, 9])
def test_causal_mask_gives_torch_is_causal_attention(length, dtype):
    gen = torch.Generator().manual_seed(length)
    q, k, v = (randn(gen, 2, 3, length, 4, dtype=dtype) for _ in range(3))
    output, _ = scaled_dot_product_attention(q, k, v, causal_mask(length))
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(output, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scaled_dot_product_attention_gradients_match_torch(dtype):
    gen = torch.Generator().manual_seed(3)
    shapes = [(2, 3, 4, 5), (2, 3, 6, 5), (2, 3, 6, 2)]
    q, k, v = (randn(gen, *s, dtype=dtype).requires_grad_() for s in shapes)
    mask = random_mask(gen, 2, 3, 4, 6)
    mask[..., 0] = True  # every query may attend somewhere, so torch's gradient is defined
    cotangent = randn(gen, 2, 3, 4, 2, dtype=dtype)
    output, _ = scaled_dot_product_attention(q, k, v, mask)
    ours = torch.autograd.grad((output * cotangent).sum(), (q, k, v))
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    theirs = torch.autograd.grad((reference * cotangent).sum(), (q, k, v))
    for mine, expected in zip(ours, theirs):
        torch.testing.assert_close(mine, expected)


def test_scaled_dot_product_attention_gradcheck_with_an_empty_row():
    gen = torch.Generator().manual_seed(4)
    q, k, v = (randn(gen, 2, n, 3).requires_grad_() for n in (3, 4, 4))
    mask = random_mask(gen, 2, 3, 4)
    mask[1, 2] = False
    assert torch.autograd.gradcheck(lambda *x: scaled_dot_product_attention(*x, mask)[0], (q, k, v))


@PROPERTY
@given(seed=SEEDS, num_keys=st.integers(2, 6), use_additive=st.booleans())
def test_values_and_keys_beyond_valid_length_do_not_matter(seed, num_keys, use_additive):
    gen = torch.Generator().manual_seed(seed)
    valid_lens = torch.randint(0, num_keys + 1, (3,), generator=gen)
    mask = padding_mask(valid_lens, num_keys)
    q, k, v = randn(gen, 3, 2, 4), randn(gen, 3, num_keys, 4), randn(gen, 3, num_keys, 5)
    padded = ~mask.squeeze(1)  # (B, L_k): the positions that are padding
    k2, v2 = k.clone(), v.clone()
    k2[padded] = randn(gen, int(padded.sum()), 4, scale=100)
    v2[padded] = randn(gen, int(padded.sum()), 5)
    attend = AdditiveAttention(4, 4, 6).double() if use_additive else DotProductAttention()
    before, weights = attend(q, k, v, mask)
    after, _ = attend(q, k2, v2, mask)
    assert torch.equal(before, after)
    assert (before[valid_lens == 0] == 0).all() and (weights[valid_lens == 0] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_scaled_dot_product_attention_half_precision_with_masks(dtype):
    gen = torch.Generator().manual_seed(5)
    mask = random_mask(gen, 2, 1, 5, 5)
    mask[1, 0, 3] = False
    for scale, compare in ((2.0, True), (40.0, False)):  # moderate, then huge scores
        q, k, v = (randn(gen, 2, 2, 5, 8, dtype=dtype, scale=s) for s in (scale, scale, 1))
        output, weights = scaled_dot_product_attention(q, k, v, mask)
        assert output.dtype == dtype and torch.isfinite(output).all()
        assert torch.isfinite(weights).all() and (output[1, :, 3] == 0).all()
        if compare:  # against float64 on the same (rounded) inputs
            expected, _ = scaled_dot_product_attention(q.double(), k.double(), v.double(), mask)
            tol = 2 * HALF_TOLERANCE[dtype]
            torch.testing.assert_close(output.double(), expected, rtol=tol, atol=tol)


def test_dropout_drops_weights_and_rescales_the_rest():
    gen = torch.Generator().manual_seed(6)
    q, k = randn(gen, 4, 6, 3), randn(gen, 4, 8, 3)
    values = torch.eye(8, dtype=torch.float64).expand(4, 8, 8)  # output = the dropped weights
    torch.manual_seed(0)
    output, weights = scaled_dot_product_attention(q, k, values, dropout_p=0.25)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4, 6, dtype=torch.float64))
    kept = output != 0
    assert 0 < kept.float().mean() < 1
    torch.testing.assert_close(output[kept], weights[kept] / 0.75)


def test_dot_product_attention_module_drops_only_in_training():
    gen = torch.Generator().manual_seed(7)
    q, k, v = randn(gen, 2, 3, 4), randn(gen, 2, 5, 4), randn(gen, 2, 5, 4)
    module = DotProductAttention(dropout=0.5)
    plain, _ = scaled_dot_product_attention(q, k, v)
    assert torch.equal(module.eval()(q, k, v)[0], plain)
    assert not torch.allclose(module.train()(q, k, v)[0], plain)


# ----------------------------------------------------------------------------- d2l parity


def d2l_inputs(per_query, seed=8, query_size=5, key_size=5):
    gen = torch.Generator().manual_seed(seed)
    batch, num_queries, num_keys = 3, 4, 6
    q = randn(gen, batch, num_queries, query_size, dtype=torch.float32)
    k = randn(gen, batch, num_keys, key_size, dtype=torch.float32)
    v = randn(gen, batch, num_keys, 3, dtype=torch.float32)
    shape = (batch, num_queries) if per_query else (batch,)
    valid_lens = torch.randint(1, num_keys + 1, shape, generator=gen)
    return q, k, v, valid_lens


@pytest.mark.parametrize("per_query", [False, True], ids=["valid_lens (B,)", "valid_lens (B, L_q)"])
def test_dot_product_attention_matches_d2l(per_query):
    q, k, v, valid_lens = d2l_inputs(per_query)
    reference = d2l.DotProductAttention(dropout=0.0).eval()
    expected = reference(q, k, v, valid_lens)
    output, weights = DotProductAttention().eval()(q, k, v, padding_mask(valid_lens, k.shape[1]))
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, reference.attention_weights)


@pytest.mark.parametrize("per_query", [False, True], ids=["valid_lens (B,)", "valid_lens (B, L_q)"])
def test_additive_attention_matches_d2l_with_copied_weights(per_query):
    q, k, v, valid_lens = d2l_inputs(per_query, query_size=5, key_size=7)
    ours = AdditiveAttention(key_size=7, query_size=5, num_hiddens=8).eval()
    reference = d2l.AdditiveAttention(num_hiddens=8, dropout=0.0).eval()
    reference(q, k, v, valid_lens)  # materialise d2l's lazy layers
    with torch.no_grad():
        for name in ("W_q", "W_k", "w_v"):
            getattr(reference, name).weight.copy_(getattr(ours, name).weight)
    expected = reference(q, k, v, valid_lens)
    output, weights = ours(q, k, v, padding_mask(valid_lens, k.shape[1]))
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, reference.attention_weights)


# ----------------------------------------------------------------------------- bad input


def test_padding_mask_rejects_bad_valid_lengths():
    with pytest.raises(ValueError, match=r"valid_lens must lie in \[0, num_keys=3\].*-1 to 2"):
        padding_mask(torch.tensor([-1, 2]), 3)
    with pytest.raises(ValueError, match=r"valid_lens must lie in \[0, num_keys=3\].*0 to 4"):
        padding_mask(torch.tensor([[0, 4]]), 3)
    with pytest.raises(TypeError, match="valid_lens must be an integer tensor; got torch.float32"):
        padding_mask(torch.tensor([1.0, 2.0]), 3)
    with pytest.raises(TypeError, match="valid_lens must be an integer tensor; got torch.bool"):
        padding_mask(torch.tensor([True]), 3)
    with pytest.raises(ValueError, match=r"shape \(B,\) or \(B, L_q\); got shape \(1, 1, 2\)"):
        padding_mask(torch.tensor([[[1, 2]]]), 3)
    with pytest.raises(ValueError, match="num_keys must be an int >= 1; got 0"):
        padding_mask(torch.tensor([0]), 0)


def test_causal_mask_rejects_bad_sizes():
    with pytest.raises(ValueError, match="num_keys >= num_queries; got num_queries=3, num_keys=2"):
        causal_mask(3, 2)
    with pytest.raises(ValueError, match="num_queries must be an int >= 1; got 2.0"):
        causal_mask(2.0)


def test_masked_softmax_rejects_bad_masks_and_scores():
    scores = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"shape \(2, 3, 5\) does not broadcast to \(2, 3, 4"):
        masked_softmax(scores, torch.ones(2, 3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 2, 3, 4\) does not broadcast"):
        masked_softmax(scores, torch.ones(2, 2, 3, 4, dtype=torch.bool))  # would grow the scores
    with pytest.raises(TypeError, match="mask must be a boolean tensor .*got torch.int64"):
        masked_softmax(scores, torch.ones(2, 3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="scores must be a floating-point tensor; got torch.int64"):
        masked_softmax(torch.zeros(2, 3, dtype=torch.long))


def test_scaled_dot_product_attention_rejects_mismatched_inputs():
    q, k, v = torch.zeros(2, 3, 4), torch.zeros(2, 5, 4), torch.zeros(2, 5, 6)
    with pytest.raises(ValueError, match=r"same feature size D; got q \(2, 3, 4\), k \(2, 5, 3\)"):
        scaled_dot_product_attention(q, torch.zeros(2, 5, 3), v)
    with pytest.raises(ValueError, match=r"same number of items L_k; got .*values \(2, 4, 6\)"):
        scaled_dot_product_attention(q, k, torch.zeros(2, 4, 6))
    with pytest.raises(ValueError, match=r"same rank; got queries \(3, 4\)"):
        scaled_dot_product_attention(torch.zeros(3, 4), k, v)
    with pytest.raises(ValueError, match=r"batch\) dimensions do not broadcast; got queries \(3, "):
        scaled_dot_product_attention(torch.zeros(3, 3, 4), k, v)
    with pytest.raises(ValueError, match=r"queries must have shape \(..., L, D\); got \(4,\)"):
        scaled_dot_product_attention(torch.zeros(4), k, v)
    with pytest.raises(TypeError, match="share one dtype; got torch.float32, torch.float64"):
        scaled_dot_product_attention(q, k.double(), v)
    with pytest.raises(TypeError, match="keys must be a floating-point tensor; got torch.int64"):
        scaled_dot_product_attention(q, k.long(), v)
    with pytest.raises(ValueError, match=r"mask of shape \(5, 3\) does not broadcast to \(2, 3, 5"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 5, dtype=torch.bool).T)
    with pytest.raises(ValueError, match=r"dropout_p must be a number in \[0, 1\); got 1.0"):
        scaled_dot_product_attention(q, k, v, dropout_p=1.0)


def test_attention_pooling_and_modules_reject_bad_input():
    with pytest.raises(ValueError, match=r"L_k = 4 keys as in the scores \(2, 3, 4\); got \(2, 5"):
        attention_pooling(torch.zeros(2, 3, 4), torch.zeros(2, 5, 6))
    with pytest.raises(TypeError, match="values must have the scores' dtype torch.float32"):
        attention_pooling(torch.zeros(2, 3, 4), torch.zeros(2, 4, 6, dtype=torch.float64))
    additive = AdditiveAttention(key_size=4, query_size=3, num_hiddens=5)
    with pytest.raises(ValueError, match=r"queries must have 3 features; got \(2, 3, 4\)"):
        additive(torch.zeros(2, 3, 4), torch.zeros(2, 5, 4), torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match=r"keys must have 4 features; got \(2, 5, 3\)"):
        additive(torch.zeros(2, 3, 3), torch.zeros(2, 5, 3), torch.zeros(2, 5, 2))
    with pytest.raises(ValueError, match="num_hiddens must be an int >= 1; got 0"):
        AdditiveAttention(4, 3, 0)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\); got -0.1"):
        DotProductAttention(dropout=-0.1)
