"""Tests of qkv.pooling: Nadaraya-Watson kernel regression as attention pooling."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qkv.lookup import soft_lookup, soft_weights
from qkv.pooling import (
    KERNELS,
    NadarayaWatson,
    fit_bandwidth,
    gaussian_scores,
    kernel_profile,
    kernel_weights,
    leave_one_out_mask,
    make_regression_data,
    nadaraya_watson,
    regression_target,
)

F64 = torch.float64


def _random(*shape, seed=0, scale=1.0):
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _direct_gaussian_nw(queries, keys, values, h):
    """Textbook formula with explicit loops over keys: sum_i exp(-d_i^2 / 2h^2) v_i / sum_j ..."""
    out = []
    for q in queries:
        kernel = [math.exp(-float(((q - k) ** 2).sum()) / (2 * h * h)) for k in keys]
        total = sum(kernel)
        out.append(sum(w * v for w, v in zip(kernel, values)) / total)
    return torch.stack(out)


# --- parity -------------------------------------------------------------------------------

def test_gaussian_matches_direct_float64_formula():
    q, k, v = _random(7, 3, seed=1), _random(11, 3, seed=2), _random(11, 2, seed=3)
    predictions, _ = nadaraya_watson(q, k, v, "gaussian", 1.3)
    torch.testing.assert_close(predictions, _direct_gaussian_nw(q, k, v, 1.3), rtol=1e-12,
                               atol=1e-12)


def test_gaussian_is_softmax_of_gaussian_scores_times_values():
    q, k, v = _random(5, 2, seed=4), _random(9, 2, seed=5), _random(9, seed=6)
    predictions, weights = nadaraya_watson(q, k, v, bandwidth=0.7)
    expected = torch.softmax(gaussian_scores(q, k, 0.7), dim=-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(predictions, expected @ v)
    assert predictions.shape == (5,)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 6), m=st.integers(1, 8), d=st.integers(1, 3), h=st.floats(0.05, 5.0),
       seed=st.integers(0, 10_000), masked=st.booleans())
def test_gaussian_weights_are_soft_lookup_weights_at_temperature_two_h_squared(n, m, d, h, seed,
                                                                                masked):
    """Gaussian Nadaraya-Watson is chapter 1's soft lookup with distance scores and tau = 2 h^2."""
    q, k, v = _random(n, d, seed=seed), _random(m, d, seed=seed + 1), _random(m, 2, seed=seed + 2)
    predictions, weights = nadaraya_watson(q, k, v, "gaussian", h)
    lookup = soft_lookup(q, k, v, temperature=2 * h**2, score="distance")
    torch.testing.assert_close(weights, lookup.weights, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(predictions, lookup.outputs, rtol=1e-12, atol=1e-12)
    if masked:
        mask = torch.rand(n, m, generator=torch.Generator().manual_seed(seed)) < 0.6
        torch.testing.assert_close(kernel_weights(q, k, "gaussian", h, mask=mask),
                                   soft_weights(q, k, 2 * h**2, mask=mask), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("kernel", KERNELS)
def test_weights_are_the_normalised_kernel_profile(kernel):
    q, k = _random(6, seed=7, scale=2), _random(10, seed=8, scale=2)
    raw = kernel_profile((q[:, None] - k[None, :]) / 2.5, kernel)
    expected = raw / raw.sum(-1, keepdim=True)  # every row has support at these sizes
    assert (raw.sum(-1) > 0).all()
    torch.testing.assert_close(kernel_weights(q, k, kernel, 2.5), expected)


def test_kernel_profile_known_values():
    u = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=F64)
    torch.testing.assert_close(kernel_profile(u, "gaussian"), torch.exp(-u**2 / 2))
    torch.testing.assert_close(kernel_profile(u, "boxcar"), torch.tensor([1, 1, 1, 0.0], dtype=F64))
    torch.testing.assert_close(kernel_profile(-u, "epanechnikov"),
                               torch.tensor([1, 0.75, 0, 0], dtype=F64))
    torch.testing.assert_close(kernel_profile(u, "constant"), torch.ones(4, dtype=F64))


def test_kernel_bridge_unit_vectors_distance_scores_equal_dot_product_scores():
    q = torch.nn.functional.normalize(_random(6, 8, seed=9), dim=-1)
    k = torch.nn.functional.normalize(_random(10, 8, seed=10), dim=-1)
    h = 0.6
    distance_scores, dot_scores = gaussian_scores(q, k, h), q @ k.T / h**2
    # -|q-k|^2/(2h^2) = q.k/h^2 - 1/h^2 for unit vectors: a constant shift ...
    torch.testing.assert_close(distance_scores - dot_scores, torch.full((6, 10), -1 / h**2,
                                                                          dtype=F64))
    # ... which the softmax cancels.
    torch.testing.assert_close(torch.softmax(distance_scores, -1), torch.softmax(dot_scores, -1))
    # Keys of different norms break the equality.
    k_scaled = k * torch.linspace(0.5, 2.0, 10, dtype=F64)[:, None]
    assert not torch.allclose(torch.softmax(gaussian_scores(q, k_scaled, h), -1),
                              torch.softmax(q @ k_scaled.T / h**2, -1))


# --- properties (hypothesis) --------------------------------------------------------------

_sizes = st.tuples(st.integers(1, 6), st.integers(1, 8), st.integers(1, 3))
_settings = settings(max_examples=40, deadline=None)


@_settings
@given(sizes=_sizes, kernel=st.sampled_from(KERNELS), h=st.floats(0.05, 5.0),
       seed=st.integers(0, 10_000))
def test_rows_are_convex_combinations_or_zero(sizes, kernel, h, seed):
    n, m, d = sizes
    q, k, v = _random(n, d, seed=seed), _random(m, d, seed=seed + 1), _random(m, seed=seed + 2)
    predictions, weights = nadaraya_watson(q, k, v, kernel, h)
    assert weights.shape == (n, m) and (weights >= 0).all()
    sums = weights.sum(-1)
    assert torch.all(torch.isclose(sums, torch.ones_like(sums)) | (sums == 0))
    assert torch.isfinite(predictions).all()
    inside = weights.sum(-1) > 0  # a convex combination lies between the extreme values
    assert (predictions[inside] >= v.min() - 1e-12).all()
    assert (predictions[inside] <= v.max() + 1e-12).all()
    assert (predictions[~inside] == 0).all()


@_settings
@given(sizes=_sizes, kernel=st.sampled_from(KERNELS), seed=st.integers(0, 10_000))
def test_permuting_key_value_pairs_together_leaves_predictions_unchanged(sizes, kernel, seed):
    n, m, d = sizes
    q, k, v = _random(n, d, seed=seed), _random(m, d, seed=seed + 1), _random(m, 2, seed=seed + 2)
    perm = torch.randperm(m, generator=torch.Generator().manual_seed(seed))
    before, weights = nadaraya_watson(q, k, v, kernel, 0.8)
    after, weights_after = nadaraya_watson(q, k[perm], v[perm], kernel, 0.8)
    torch.testing.assert_close(after, before)
    torch.testing.assert_close(weights_after, weights[:, perm])


@_settings
@given(sizes=_sizes, h=st.floats(0.01, 100.0), seed=st.integers(0, 10_000))
def test_constant_kernel_gives_the_mean_of_the_values(sizes, h, seed):
    n, m, d = sizes
    q, k, v = _random(n, d, seed=seed), _random(m, d, seed=seed + 1), _random(m, 3, seed=seed + 2)
    predictions, _ = nadaraya_watson(q, k, v, "constant", h)
    torch.testing.assert_close(predictions, v.mean(0).expand(n, 3))


# --- limits of the bandwidth --------------------------------------------------------------

@pytest.mark.parametrize("kernel", ["gaussian", "boxcar", "epanechnikov"])
def test_huge_bandwidth_gives_the_mean(kernel):
    q, k, v = _random(5, 2, seed=11), _random(12, 2, seed=12), _random(12, seed=13)
    predictions, _ = nadaraya_watson(q, k, v, kernel, 1e6)
    torch.testing.assert_close(predictions, v.mean().expand(5), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_tiny_gaussian_bandwidth_picks_the_nearest_key_without_nan(dtype):
    q, k = _random(20, 2, seed=14).to(dtype), _random(15, 2, seed=15).to(dtype)
    v = _random(15, seed=16)
    h = 1e-4  # exp(-d^2 / 2h^2) underflows to 0 for every key: a naive ratio is 0/0
    naive = torch.exp(-torch.cdist(q, k) ** 2 / (2 * h * h))
    assert (naive.sum(-1) == 0).any()
    predictions, weights = nadaraya_watson(q, k, v.to(dtype), "gaussian", h)
    nearest = torch.cdist(q, k).argmin(-1)
    assert torch.isfinite(weights).all()
    torch.testing.assert_close(predictions, v.to(dtype)[nearest])


@pytest.mark.parametrize("kernel", ["boxcar", "epanechnikov"])
def test_compact_kernels_give_zero_rows_and_zero_predictions_without_support(kernel):
    keys = torch.tensor([0.0, 1.0, 2.0], dtype=F64)
    queries = torch.tensor([0.5, 10.0], dtype=F64)  # the second query is far from every key
    predictions, weights = nadaraya_watson(queries, keys, torch.tensor([1.0, 2.0, 3.0], dtype=F64),
                                           kernel, 0.9)
    assert weights[0].sum().item() == pytest.approx(1.0)
    assert (weights[1] == 0).all() and predictions[1].item() == 0.0


def test_mask_excludes_keys_and_fully_masked_rows_are_zero():
    q, k, v = _random(3, seed=17), _random(4, seed=18), _random(4, seed=19)
    mask = torch.tensor([[True, False, True, True], [False] * 4, [True] * 4])
    for kernel in KERNELS:
        predictions, weights = nadaraya_watson(q, k, v, kernel, 50.0, mask=mask)
        assert (weights[~mask] == 0).all() and (weights[1] == 0).all() and predictions[1] == 0
        torch.testing.assert_close(predictions[0], v[[0, 2, 3]].mean(), rtol=1e-3, atol=1e-3)


def test_leave_one_out_mask():
    mask = leave_one_out_mask(4)
    assert mask.dtype == torch.bool and not mask.diagonal().any() and mask.sum() == 12


# --- learning the bandwidth ---------------------------------------------------------------

@pytest.mark.parametrize("kernel", ["gaussian", "epanechnikov"])
def test_gradient_with_respect_to_bandwidth_is_finite_and_nonzero(kernel):
    data = make_regression_data(30, 10, generator=torch.Generator().manual_seed(0))
    h = torch.tensor(0.7, requires_grad=True)
    predictions, _ = nadaraya_watson(data.x_test, data.x_train, data.y_train, kernel, h)
    (predictions - data.y_test).pow(2).mean().backward()
    assert torch.isfinite(h.grad) and h.grad != 0


def test_module_parameterises_the_log_bandwidth_and_matches_the_function():
    model = NadarayaWatson(bandwidth=0.5)
    assert model.bandwidth.item() == pytest.approx(0.5)
    q, k, v = _random(4, seed=20).float(), _random(6, seed=21).float(), _random(6, seed=22).float()
    torch.testing.assert_close(model(q, k, v), nadaraya_watson(q, k, v, bandwidth=0.5)[0])
    model(k, k, v, exclude_self=True).sum().backward()
    assert torch.isfinite(model.log_bandwidth.grad)


def test_exclude_self_is_leave_one_out():
    k, v = _random(5, seed=23).float(), _random(5, seed=24).float()
    predictions = NadarayaWatson(bandwidth=0.8)(k, k, v, exclude_self=True)
    for i in range(5):
        others = [j for j in range(5) if j != i]
        expected, _ = nadaraya_watson(k[i:i + 1], k[others], v[others], bandwidth=0.8)
        torch.testing.assert_close(predictions[i:i + 1], expected)


def test_fit_bandwidth_reduces_the_leave_one_out_loss():
    data = make_regression_data(40, 10, generator=torch.Generator().manual_seed(1))
    model, losses = fit_bandwidth(data.x_train, data.y_train, bandwidth=2.0, steps=30, lr=0.05)
    assert len(losses) == 31 and losses[-1] < 0.8 * losses[0]
    assert model.bandwidth.item() < 2.0


def test_fitting_without_leave_one_out_shrinks_the_bandwidth():
    data = make_regression_data(40, 10, generator=torch.Generator().manual_seed(1))
    model, losses = fit_bandwidth(data.x_train, data.y_train, bandwidth=0.3, steps=60,
                                  exclude_self=False, lr=0.1)
    assert model.bandwidth.item() < 0.1 and losses[-1] < losses[0]


def test_make_regression_data():
    data = make_regression_data(25, 8, noise=0.0, generator=torch.Generator().manual_seed(2))
    assert data.x_train.shape == (25,) and data.x_test.shape == (8,)
    assert (data.x_train.diff() >= 0).all()
    assert (0 <= data.x_train).all() and (data.x_train < 5).all()
    torch.testing.assert_close(data.y_train, regression_target(data.x_train))
    torch.testing.assert_close(data.y_test, data.truth_test)
    torch.testing.assert_close(regression_target(torch.tensor([0.0, 1.0])),
                               torch.tensor([0.0, 2 * math.sin(1.0) + 1.0]))


# --- errors -------------------------------------------------------------------------------

_q, _k, _v = torch.zeros(3, 2), torch.zeros(4, 2), torch.zeros(4)


@pytest.mark.parametrize("bandwidth", [0.0, -1.0, float("nan"), float("inf"), torch.tensor(-0.5)])
def test_non_positive_bandwidth(bandwidth):
    with pytest.raises(ValueError, match="bandwidth"):
        nadaraya_watson(_q, _k, _v, bandwidth=bandwidth)


@pytest.mark.parametrize("bandwidth", ["1.0", True, None])
def test_bandwidth_of_the_wrong_type(bandwidth):
    with pytest.raises(TypeError, match="bandwidth"):
        nadaraya_watson(_q, _k, _v, bandwidth=bandwidth)


def test_non_scalar_bandwidth_tensor():
    with pytest.raises(ValueError, match="bandwidth must be a scalar"):
        kernel_weights(_q, _k, "gaussian", torch.ones(2))


def test_mismatched_key_and_value_counts():
    with pytest.raises(ValueError, match=r"has m=4 but values has 3 rows"):
        nadaraya_watson(_q, _k, torch.zeros(3))


def test_query_and_key_dimension_mismatch():
    with pytest.raises(ValueError, match=r"same size d.*\(3, 5\).*\(4, 2\)"):
        nadaraya_watson(torch.zeros(3, 5), _k, _v)


def test_unknown_kernel_lists_the_known_ones():
    with pytest.raises(ValueError, match="known kernels: gaussian, boxcar, epanechnikov, constant"):
        nadaraya_watson(_q, _k, _v, kernel="triangle")
    with pytest.raises(ValueError, match="unknown kernel"):
        NadarayaWatson(kernel="cosine")


@pytest.mark.parametrize("name, args", [
    ("keys", (_q, torch.zeros(4, 2, 1), _v)),
    ("queries", (torch.zeros(1, 3, 2), _k, _v)),
    ("values", (_q, _k, torch.zeros(4, 1, 1))),
    ("queries", (torch.tensor(1.0), _k, _v)),
])
def test_wrong_ranks(name, args):
    with pytest.raises(ValueError, match=f"{name} must have shape"):
        nadaraya_watson(*args)


@pytest.mark.parametrize("args, name", [
    (([[0.0]], _k, _v), "queries"),
    ((_q, _k.numpy(), _v), "keys"),
    ((_q, _k, [0.0] * 4), "values"),
    ((_q, _k.long(), _v), "keys"),
])
def test_non_tensor_or_integer_input(args, name):
    with pytest.raises(TypeError, match=name):
        nadaraya_watson(*args)


def test_mixed_dtypes_and_empty_keys():
    with pytest.raises(TypeError, match="one dtype"):
        nadaraya_watson(_q.double(), _k, _v)
    with pytest.raises(TypeError, match="values must share one dtype; got torch.float32, "
                                        "torch.float32, torch.float64"):
        nadaraya_watson(_q, _k, _v.double())
    with pytest.raises(ValueError, match="keys is empty"):
        nadaraya_watson(_q, torch.zeros(0, 2), torch.zeros(0))


def test_bad_mask_and_bad_exclude_self():
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of shape \(3, 4\)"):
        kernel_weights(_q, _k, mask=torch.ones(3, 4))
    with pytest.raises(ValueError, match="exclude_self=True needs as many queries as keys"):
        NadarayaWatson()(_q, _k, _v, exclude_self=True)
    with pytest.raises(ValueError, match="n must be an int >= 1; got 0"):
        leave_one_out_mask(0)


def test_bad_data_and_fit_arguments():
    with pytest.raises(ValueError, match="n_train"):
        make_regression_data(0, 5)
    with pytest.raises(ValueError, match="noise"):
        make_regression_data(5, 5, noise=-1.0)
    with pytest.raises(ValueError, match="steps"):
        fit_bandwidth(_k, _v, steps=-1)
    with pytest.raises(ValueError, match="differentiable in the bandwidth"):
        fit_bandwidth(_k, _v, kernel="boxcar")
