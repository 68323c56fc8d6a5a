"""Tests of qkv.checks: the package's one set of argument checks, and who uses it."""

import math

import pytest
import torch

from qkv import attention, depth, lookup, pooling
from qkv.checks import check_count, check_positive, check_probability, check_same, check_tensor


def test_check_tensor_names_the_argument_and_what_it_saw():
    check_tensor("x", torch.zeros(2, 3), (2,))
    check_tensor("x", torch.zeros(2, 3, 4), min_rank=2)
    with pytest.raises(TypeError, match="x must be a floating-point tensor; got list"):
        check_tensor("x", [1.0])
    with pytest.raises(TypeError, match="x must be a floating-point tensor; got torch.int64"):
        check_tensor("x", torch.arange(3))
    with pytest.raises(ValueError, match=r"x must have shape \(n, d\); got \(3,\)"):
        check_tensor("x", torch.zeros(3), (2,), "(n, d)")
    with pytest.raises(ValueError, match=r"x must have shape 1 or 2 dimensions; got \(\)"):
        check_tensor("x", torch.tensor(1.0), (1, 2))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., L, D\); got \(4,\)"):
        check_tensor("x", torch.zeros(4), shape="(..., L, D)", min_rank=2)


def test_check_same_lists_dtypes_in_argument_order():
    check_same(a=torch.zeros(1), b=torch.zeros(2))
    with pytest.raises(TypeError, match="a, b and c must share one dtype; got torch.float32, "
                                        "torch.float64, torch.float32"):
        check_same(a=torch.zeros(1), b=torch.zeros(1, dtype=torch.float64), c=torch.zeros(1))


@pytest.mark.parametrize("value", [0, -1, 2.0, True, "3"])
def test_check_count(value):
    with pytest.raises(ValueError, match=rf"size must be an int >= 1; got {value!r}"):
        check_count("size", value)


@pytest.mark.parametrize("value", [-0.1, 1.0, True, None])
def test_check_probability(value):
    with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\)"):
        check_probability("p", value)


def test_check_positive_keeps_tensors_and_rejects_the_rest():
    assert check_positive("t", 2) == 2.0 and isinstance(check_positive("t", 2), float)
    t = torch.tensor([0.5], requires_grad=True)
    kept = check_positive("t", t)
    assert kept.shape == () and kept.requires_grad
    for bad in (0.0, -1.0, math.inf, math.nan, torch.tensor(0.0)):
        with pytest.raises(ValueError, match="t must be a finite number > 0"):
            check_positive("t", bad)
    for bad in ("1", None, True, torch.tensor(2)):
        with pytest.raises(TypeError, match="t must be a finite number > 0"):
            check_positive("t", bad)
    with pytest.raises(ValueError, match=r"t must be a scalar; got a tensor of shape \(2,\)"):
        check_positive("t", torch.ones(2))


def test_one_set_of_checks_and_one_distance_in_the_early_modules():
    """lookup, pooling, attention and depth share the checks; pooling reuses lookup's code."""
    for module in (lookup, pooling, attention, depth):
        assert not hasattr(module, "_check_tensor"), module.__name__
    assert attention._require_float is check_tensor and attention._require_count is check_count
    assert pooling._squared_distances is lookup._squared_distances
    assert pooling._check_points is lookup._check_points
    assert pooling.soft_weights is lookup.soft_weights


@pytest.mark.parametrize("call, name", [
    (lambda bad: lookup.soft_lookup(bad, torch.zeros(3), torch.zeros(3)), "queries"),
    (lambda bad: pooling.nadaraya_watson(torch.zeros(2), bad, torch.zeros(3)), "keys"),
    (lambda bad: attention.scaled_dot_product_attention(torch.zeros(1, 2, 3), torch.zeros(1, 4, 3),
                                                        bad), "values"),
])
def test_the_chapters_word_a_bad_dtype_the_same_way(call, name):
    with pytest.raises(TypeError, match=f"{name} must be a floating-point tensor; got torch.int64"):
        call(torch.zeros(3, dtype=torch.int64) if name != "values"
             else torch.zeros(1, 4, 2, dtype=torch.int64))
