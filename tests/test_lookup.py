"""Tests of qkv.lookup: known values, weight properties, invariances, limits, gradients, errors."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qkv.lookup import (
    exact_lookup,
    found_mask,
    nearest_lookup,
    pool,
    soft_lookup,
    soft_weights,
    topk_lookup,
)

F64 = torch.float64

# A tiny table: positions along a line (keys) and a value at each (values).
KEYS = torch.tensor([0.0, 2.0, 4.0, 6.0, 8.0], dtype=F64)
VALUES = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0], dtype=F64)

sizes = dict(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 5),
    m=st.integers(1, 7),
    d=st.integers(1, 3),
    d_v=st.integers(1, 3),
)


def random_table(seed, n, m, d, d_v):
    """Continuous random queries (n, d), keys (m, d), values (m, d_v) in float64 (no ties)."""
    g = torch.Generator().manual_seed(seed)
    shapes = [(n, d), (m, d), (m, d_v)]
    return tuple(torch.randn(*shape, generator=g, dtype=F64) for shape in shapes)


def squared_distances(queries, keys):
    return torch.cdist(queries, keys) ** 2


# ---------------------------------------------------------------------------- known values

def test_exact_lookup_known_values_and_missing_keys():
    queries = torch.tensor([4.0, 5.0, 0.0], dtype=F64)
    outputs, weights = exact_lookup(queries, KEYS, VALUES)
    assert torch.equal(outputs, torch.tensor([30.0, 0.0, 10.0], dtype=F64))
    assert torch.equal(weights[1], torch.zeros(5, dtype=F64))  # 5 is missing: a zero row
    assert torch.equal(found_mask(weights), torch.tensor([True, False, True]))
    assert not torch.isnan(outputs).any()


def test_exact_lookup_averages_duplicate_keys_and_matches_all_coordinates():
    keys = torch.tensor([[1.0, 2.0], [1.0, 3.0], [1.0, 2.0]])
    values = torch.tensor([[2.0], [100.0], [4.0]])
    outputs, weights = exact_lookup(torch.tensor([[1.0, 2.0], [2.0, 1.0]]), keys, values)
    assert torch.equal(weights, torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.0, 0.0]]))
    assert torch.equal(outputs, torch.tensor([[3.0], [0.0]]))


def test_nearest_lookup_known_values_and_tie_to_lowest_index():
    queries = torch.tensor([4.2, 5.0, -3.0, 100.0], dtype=F64)  # 5.0 is halfway between 4 and 6
    outputs, weights = nearest_lookup(queries, KEYS, VALUES)
    assert torch.equal(outputs, torch.tensor([30.0, 30.0, 10.0, 50.0], dtype=F64))
    assert torch.equal(weights.argmax(-1), torch.tensor([2, 2, 0, 4]))


def test_topk_lookup_known_values():
    outputs, weights = topk_lookup(torch.tensor([3.0, 7.5], dtype=F64), KEYS, VALUES, k=2)
    assert torch.equal(outputs, torch.tensor([25.0, 45.0], dtype=F64))  # (20+30)/2, (40+50)/2
    assert torch.equal(weights[0], torch.tensor([0.0, 0.5, 0.5, 0.0, 0.0], dtype=F64))


def test_soft_lookup_known_values_closed_form():
    # query 1 is halfway between keys 0 and 2 (squared distance 1), keys 4, 6, 8 are at 9, 25, 49
    outputs, weights = soft_lookup(torch.tensor([1.0], dtype=F64), KEYS, VALUES, temperature=2.0)
    scores = torch.tensor([-1.0, -1.0, -9.0, -25.0, -49.0], dtype=F64) / 2.0
    expected = scores.exp() / scores.exp().sum()
    torch.testing.assert_close(weights[0], expected)
    torch.testing.assert_close(outputs[0], (expected * VALUES).sum())


def test_pool_is_the_weighted_sum_and_uniform_weights_average():
    values = torch.tensor([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]])
    uniform = torch.full((1, 3), 1 / 3)
    torch.testing.assert_close(pool(uniform, values), values.mean(0, keepdim=True))
    one_hot = torch.tensor([[0.0, 1.0, 0.0]])
    assert torch.equal(pool(one_hot, values), values[1:2])


def test_vector_values_and_one_dimensional_queries_agree_with_matrix_form():
    values = torch.stack([VALUES, -VALUES], dim=1)  # (m, 2)
    queries = torch.tensor([1.5, 6.5], dtype=F64)
    for lookup in (exact_lookup, nearest_lookup, soft_lookup):
        flat = lookup(queries, KEYS, values)
        matrix = lookup(queries[:, None], KEYS[:, None], values)
        assert flat.outputs.shape == (2, 2) and flat.weights.shape == (2, 5)
        torch.testing.assert_close(flat.outputs, matrix.outputs)


# ------------------------------------------------------------------------- weight properties

@settings(max_examples=40, deadline=None)
@given(**sizes)
def test_nearest_weights_are_one_hot_on_the_argmin(seed, n, m, d, d_v):
    queries, keys, values = random_table(seed, n, m, d, d_v)
    outputs, weights = nearest_lookup(queries, keys, values)
    nearest = squared_distances(queries, keys).argmin(-1)
    assert torch.equal(weights, torch.nn.functional.one_hot(nearest, m).to(F64))
    assert torch.equal(outputs, values[nearest])


@settings(max_examples=40, deadline=None)
@given(**sizes, data=st.data())
def test_topk_weights_pick_the_k_nearest_and_sum_to_one(seed, n, m, d, d_v, data):
    k = data.draw(st.integers(1, m), label="k")
    queries, keys, values = random_table(seed, n, m, d, d_v)
    outputs, weights = topk_lookup(queries, keys, values, k=k)
    nearest = torch.topk(squared_distances(queries, keys), k, largest=False).indices
    expected = torch.zeros(n, m, dtype=F64).scatter(1, nearest, 1 / k)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(weights.sum(-1), torch.ones(n, dtype=F64))
    torch.testing.assert_close(outputs, values[nearest].mean(1))


@settings(max_examples=40, deadline=None)
@given(**sizes, temperature=st.floats(0.01, 100.0), score=st.sampled_from(["distance", "dot"]))
def test_soft_weights_are_a_convex_combination(seed, n, m, d, d_v, temperature, score):
    queries, keys, values = random_table(seed, n, m, d, d_v)
    outputs, weights = soft_lookup(queries, keys, values, temperature=temperature, score=score)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(n, dtype=F64))
    # a convex combination stays inside the values' bounding box
    assert (outputs >= values.min(0).values - 1e-12).all()
    assert (outputs <= values.max(0).values + 1e-12).all()


@settings(max_examples=40, deadline=None)
@given(**sizes, k_fraction=st.floats(0.0, 1.0), score=st.sampled_from(["distance", "dot"]))
def test_permuting_the_table_leaves_outputs_unchanged(seed, n, m, d, d_v, k_fraction, score):
    queries, keys, values = random_table(seed, n, m, d, d_v)
    perm = torch.randperm(m, generator=torch.Generator().manual_seed(seed + 1))
    k = 1 + round(k_fraction * (m - 1))
    lookups = {
        "exact": lambda q, ks, vs: exact_lookup(q, ks.round(), vs),  # rounding makes duplicates
        "nearest": nearest_lookup,
        "topk": lambda q, ks, vs: topk_lookup(q, ks, vs, k=k),
        "soft": lambda q, ks, vs: soft_lookup(q, ks, vs, temperature=0.7, score=score),
    }
    for name, lookup in lookups.items():
        original = lookup(queries.round() if name == "exact" else queries, keys, values)
        permuted = lookup(queries.round() if name == "exact" else queries, keys[perm], values[perm])
        torch.testing.assert_close(permuted.outputs, original.outputs, msg=name)
        torch.testing.assert_close(permuted.weights, original.weights[:, perm], msg=name)


def test_soft_dot_scores_match_pytorch_scaled_dot_product_attention():
    queries, keys, values = random_table(3, n=4, m=6, d=3, d_v=2)
    outputs, _ = soft_lookup(queries, keys, values, temperature=0.5, score="dot")
    reference = torch.nn.functional.scaled_dot_product_attention(queries, keys, values, scale=2.0)
    torch.testing.assert_close(outputs, reference)


@settings(max_examples=40, deadline=None)
@given(**sizes, temperature=st.floats(0.01, 100.0), score=st.sampled_from(["distance", "dot"]))
def test_soft_weights_are_the_weights_of_soft_lookup(seed, n, m, d, d_v, temperature, score):
    queries, keys, values = random_table(seed, n, m, d, d_v)
    result = soft_lookup(queries, keys, values, temperature=temperature, score=score)
    assert torch.equal(soft_weights(queries, keys, temperature, score), result.weights)


@settings(max_examples=40, deadline=None)
@given(**sizes, data=st.data())
def test_masked_soft_weights_are_the_soft_lookup_over_the_visible_keys(seed, n, m, d, d_v, data):
    queries, keys, values = random_table(seed, n, m, d, d_v)
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, m, generator=g) < data.draw(st.floats(0.0, 1.0), label="keep")
    weights = soft_weights(queries, keys, 0.7, mask=mask)
    assert (weights[~mask] == 0).all() and torch.isfinite(weights).all()
    for i in range(n):
        visible = mask[i].nonzero().squeeze(-1)
        if len(visible) == 0:  # a query that may see no key: a row of zeros, never NaN
            assert (weights[i] == 0).all()
            continue
        alone = soft_lookup(queries[i:i + 1], keys[visible], values[visible], temperature=0.7)
        torch.testing.assert_close(weights[i, visible], alone.weights[0])


def test_masked_cold_soft_weights_pick_the_nearest_visible_key_without_underflow():
    keys = torch.tensor([0.0, 1.0, 3.0, 7.0], dtype=F64)
    leave_one_out = ~torch.eye(4, dtype=torch.bool)
    weights = soft_weights(keys, keys, temperature=1e-6, mask=leave_one_out)
    # exp(-1 / 1e-6) underflows for every visible key: the softmax's shift keeps one at 1
    expected = torch.zeros(4, 4, dtype=F64)
    expected[[0, 1, 2, 3], [1, 0, 1, 2]] = 1.0
    torch.testing.assert_close(weights, expected)


def test_a_temperature_tensor_passes_its_gradient():
    queries, keys, values = random_table(5, n=3, m=4, d=2, d_v=1)
    temperature = torch.tensor(0.9, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: soft_lookup(queries, keys, values, temperature=t).outputs, (temperature,))
    torch.testing.assert_close(soft_weights(queries, keys, temperature).detach(),
                               soft_weights(queries, keys, 0.9))


# -------------------------------------------------------------------------------- temperature

@settings(max_examples=30, deadline=None)
@given(**sizes)
def test_temperature_limits_nearest_and_average(seed, n, m, d, d_v):
    queries, keys, values = random_table(seed, n, m, d, d_v)
    cold = soft_lookup(queries, keys, values, temperature=1e-9)
    torch.testing.assert_close(cold.weights, nearest_lookup(queries, keys, values).weights)
    hot = soft_lookup(queries, keys, values, temperature=1e9)
    torch.testing.assert_close(hot.weights, torch.full((n, m), 1 / m, dtype=F64))
    torch.testing.assert_close(hot.outputs, values.mean(0).expand(n, d_v))


def test_raising_the_temperature_spreads_the_weights():
    queries, keys, values = random_table(7, n=5, m=8, d=2, d_v=1)
    temperatures = [0.01, 0.1, 1.0, 10.0, 100.0]
    weights = torch.stack([soft_lookup(queries, keys, values, t).weights for t in temperatures])
    entropy = -(weights * weights.clamp_min(1e-300).log()).sum(-1)  # (temperatures, n)
    largest = weights.max(-1).values
    assert (entropy.diff(dim=0) > 0).all()
    assert (largest.diff(dim=0) < 0).all()


# --------------------------------------------------------------------------------- gradients

def test_gradients_flow_through_soft_lookup_to_queries_keys_and_values():
    queries, keys, values = (t.requires_grad_() for t in random_table(11, n=3, m=5, d=2, d_v=2))
    for score in ("distance", "dot"):
        assert torch.autograd.gradcheck(
            lambda q, k, v: soft_lookup(q, k, v, temperature=0.8, score=score).outputs,
            (queries, keys, values),
        )
    outputs, _ = soft_lookup(queries, keys, values)
    grads = torch.autograd.grad(outputs.sum(), (queries, keys, values))
    assert all(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize(
    "lookup",
    [exact_lookup, nearest_lookup, lambda q, k, v: topk_lookup(q, k, v, k=2)],
    ids=["exact", "nearest", "topk"],
)
def test_hard_lookups_give_no_gradient_to_queries(lookup):
    queries = torch.tensor([2.0, 5.3], dtype=F64, requires_grad=True)
    values = VALUES.clone().requires_grad_()
    outputs, weights = lookup(queries, KEYS, values)
    assert not weights.requires_grad  # the weights are piecewise constant in the queries
    grad_queries, grad_values = torch.autograd.grad(
        outputs.sum(), (queries, values), allow_unused=True, materialize_grads=True
    )
    assert torch.equal(grad_queries, torch.zeros_like(queries))
    torch.testing.assert_close(grad_values, weights.sum(0))  # values still get their share


# ------------------------------------------------------------------------------------ errors

@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        (dict(queries=[1.0]), TypeError, r"queries must be a floating-point tensor; got list"),
        (dict(keys=torch.arange(5)), TypeError,
         r"keys must be a floating-point tensor; got torch\.int64"),
        (dict(values=VALUES.float()), TypeError,
         r"queries, keys and values must share one dtype; got torch\.float64, torch\.float64, "
         r"torch\.float32"),
        (dict(queries=torch.zeros(1, 1, 1, dtype=F64)), ValueError,
         r"queries must have shape \(n,\) or \(n, d\); got \(1, 1, 1\)"),
        (dict(values=VALUES[:4]), ValueError, r"has m=5 but values has 4 rows"),
        (dict(queries=torch.zeros(2, 3, dtype=F64)), ValueError,
         r"same size d; got queries with d=3 and keys with d=1"),
        (dict(keys=KEYS[:0], values=VALUES[:0]), ValueError, r"keys is empty"),
    ],
)
@pytest.mark.parametrize("lookup", [exact_lookup, nearest_lookup, soft_lookup])
def test_bad_tables_raise_clear_errors(lookup, arguments, error, match):
    kwargs = dict(queries=torch.tensor([1.0], dtype=F64), keys=KEYS, values=VALUES) | arguments
    with pytest.raises(error, match=match):
        lookup(**kwargs)


@pytest.mark.parametrize("k", [0, 6, 2.0, True])
def test_topk_rejects_bad_k(k):
    with pytest.raises(ValueError, match=rf"k must be an int with 1 <= k <= m=5.*got {k!r}"):
        topk_lookup(KEYS, KEYS, VALUES, k=k)


@pytest.mark.parametrize(
    ("temperature", "error"),
    [(0.0, ValueError), (-1.0, ValueError), (math.inf, ValueError), (math.nan, ValueError),
     (torch.tensor(-2.0), ValueError), ("1", TypeError), (None, TypeError), (True, TypeError)],
)
def test_soft_lookup_rejects_bad_temperature(temperature, error):
    with pytest.raises(error, match="temperature must be a finite number > 0"):
        soft_lookup(KEYS, KEYS, VALUES, temperature=temperature)
    with pytest.raises(ValueError, match=r"temperature must be a scalar; got a tensor of shape"):
        soft_lookup(KEYS, KEYS, VALUES, temperature=torch.ones(2))


def test_soft_lookup_rejects_unknown_score():
    with pytest.raises(ValueError, match="score must be one of distance, dot; got 'cosine'"):
        soft_lookup(KEYS, KEYS, VALUES, score="cosine")


def test_pool_checks_its_arguments():
    with pytest.raises(ValueError, match=r"weights must have shape \(n, m\); got \(5,\)"):
        pool(torch.ones(5, dtype=F64), VALUES)
    with pytest.raises(ValueError, match=r"has m=3 but values has 5 rows"):
        pool(torch.ones(2, 3, dtype=F64), VALUES)


def test_soft_weights_check_the_mask():
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of shape \(5, 5\)"):
        soft_weights(KEYS, KEYS, mask=torch.ones(5, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of shape \(5, 5\)"):
        soft_weights(KEYS, KEYS, mask=torch.ones(5, 5))
