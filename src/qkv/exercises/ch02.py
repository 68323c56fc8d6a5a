"""Exercises of chapter 02: Nadaraya-Watson attention pooling.

Each reference is the package's own code; each ``wrong`` is a mistake a learner plausibly makes.
"""

from __future__ import annotations

import torch

from qkv.exercises import Exercise, register
from qkv.pooling import kernel_weights, leave_one_out_mask, nadaraya_watson


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)


def _count(generator: torch.Generator, low: int, high: int) -> int:
    return int(torch.randint(low, high + 1, (), generator=generator))


# --- ch02-epanechnikov-weights --------------------------------------------------------------

def _epanechnikov_inputs(generator: torch.Generator) -> dict:
    # Queries range beyond the keys, so some queries have no key within the bandwidth.
    return {
        "queries": _uniform(generator, _count(generator, 3, 8), 0.0, 10.0),
        "keys": _uniform(generator, _count(generator, 2, 10), 0.0, 5.0),
        "bandwidth": float(_uniform(generator, 1, 0.3, 1.5)),
    }


def _epanechnikov_reference(queries, keys, bandwidth):
    return kernel_weights(queries, keys, "epanechnikov", bandwidth)


def _epanechnikov_without_zero_row_rule(queries, keys, bandwidth):
    """Divides every row by its sum, so a query with no key in its window gets 0/0 = NaN."""
    u = (queries[:, None] - keys[None, :]) / bandwidth
    raw = (1 - u**2).clamp_min(0)
    return raw / raw.sum(dim=1, keepdim=True)


register(Exercise(
    label="ch02-epanechnikov-weights",
    task=("given 1-D queries (n,), keys (m,) and a float bandwidth h, return the (n, m) "
          "Epanechnikov weights: K(u) = max(0, 1 - u^2) with u = (q - k) / h, each row divided "
          "by its sum; a row whose kernel values are all 0 stays all 0 (no NaN)"),
    reference=_epanechnikov_reference,
    make_inputs=_epanechnikov_inputs,
    wrong=_epanechnikov_without_zero_row_rule,
    forbidden=("qkv.pooling",),
    gradients=True,
))


# --- ch02-nw-predict ------------------------------------------------------------------------

def _predict_inputs(generator: torch.Generator) -> dict:
    m = _count(generator, 2, 12)
    return {
        "queries": _uniform(generator, _count(generator, 1, 8), 0.0, 5.0),
        "keys": _uniform(generator, m, 0.0, 5.0),
        "values": _uniform(generator, m, -2.0, 2.0),
        "bandwidth": float(_uniform(generator, 1, 0.2, 2.0)),
    }


def _predict_reference(queries, keys, values, bandwidth):
    return nadaraya_watson(queries, keys, values, "gaussian", bandwidth)[0]


def _predict_dividing_by_h(queries, keys, values, bandwidth):
    """Uses scores -(q - k)^2 / (2h) instead of -(q - k)^2 / (2h^2)."""
    scores = -((queries[:, None] - keys[None, :]) ** 2) / (2 * bandwidth)
    return torch.softmax(scores, dim=1) @ values


register(Exercise(
    label="ch02-nw-predict",
    task=("given 1-D queries (n,), keys (m,), values (m,) and a float bandwidth h, return the "
          "(n,) Gaussian Nadaraya-Watson predictions: softmax over the keys of "
          "-(q - k)^2 / (2 h^2), times the values"),
    reference=_predict_reference,
    make_inputs=_predict_inputs,
    wrong=_predict_dividing_by_h,
    forbidden=("qkv.pooling",),
    gradients=True,
))


# --- ch02-loo-mask --------------------------------------------------------------------------

def _loo_inputs(generator: torch.Generator) -> dict:
    return {"n": _count(generator, 1, 8)}


def _loo_mask_reversed(n):
    """True on the diagonal: the opposite of the book's convention (True = may attend)."""
    return torch.eye(n, dtype=torch.bool)


register(Exercise(
    label="ch02-loo-mask",
    task=("given n, return the (n, n) bool leave-one-out mask of the book's convention: True "
          "where query i may attend to key j, that is everywhere except on the diagonal i == j"),
    reference=leave_one_out_mask,
    make_inputs=_loo_inputs,
    wrong=_loo_mask_reversed,
    trials=8,
    forbidden=("qkv.pooling",),
))
