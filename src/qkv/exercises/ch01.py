"""Exercises of chapter 01, "Queries, keys and values": the weights of three lookups.

* ``ch01-soft-lookup``: soft lookup with distance scores and a temperature;
* ``ch01-topk-weights``: the (n, m) weight matrix of the top-k lookup;
* ``ch01-exact-weights``: the weight matrix of the exact lookup, zero rows for missing keys.
"""

from __future__ import annotations

import torch

from qkv.exercises import Exercise, register
from qkv.lookup import exact_lookup, soft_lookup, topk_lookup


def _sizes(generator: torch.Generator) -> tuple[int, int, int]:
    """Random table sizes (n queries, m keys, d) for one trial."""
    n, m, d = (int(torch.randint(low, high, (), generator=generator))
               for low, high in [(1, 5), (2, 7), (1, 4)])
    return n, m, d


# ------------------------------------------------------------------------ ch01-soft-lookup

def _soft_lookup_inputs(generator: torch.Generator) -> dict:
    n, m, d = _sizes(generator)
    d_v = int(torch.randint(1, 4, (), generator=generator))
    temperatures = (0.1, 0.5, 2.0, 5.0)
    return dict(
        queries=torch.randn(n, d, generator=generator, dtype=torch.float64),
        keys=torch.randn(m, d, generator=generator, dtype=torch.float64),
        values=torch.randn(m, d_v, generator=generator, dtype=torch.float64),
        temperature=temperatures[int(torch.randint(0, len(temperatures), (), generator=generator))],
    )


def _soft_lookup_reference(queries, keys, values, temperature):
    return tuple(soft_lookup(queries, keys, values, temperature=temperature, score="distance"))


def _soft_lookup_wrong_axis(queries, keys, values, temperature):
    """A common slip: the softmax normalises over the queries (dim 0) instead of the keys."""
    scores = -torch.cdist(queries, keys) ** 2 / temperature
    weights = torch.softmax(scores, dim=0)
    return weights @ values, weights


register(Exercise(
    label="ch01-soft-lookup",
    task=("given queries (n, d), keys (m, d), values (m, d_v) and a temperature > 0, return "
          "(outputs, weights): weights (n, m) is the softmax over the keys of "
          "-||q - k||^2 / temperature, and outputs (n, d_v) = weights @ values."),
    reference=_soft_lookup_reference,
    make_inputs=_soft_lookup_inputs,
    wrong=_soft_lookup_wrong_axis,
    forbidden=("qkv.lookup",),
    gradients=True,
))


# ----------------------------------------------------------------------- ch01-topk-weights

def _topk_inputs(generator: torch.Generator) -> dict:
    n, m, d = _sizes(generator)
    return dict(
        queries=torch.randn(n, d, generator=generator, dtype=torch.float64),
        keys=torch.randn(m, d, generator=generator, dtype=torch.float64),
        k=int(torch.randint(1, m + 1, (), generator=generator)),
    )


def _topk_reference(queries, keys, k):
    values = torch.zeros(keys.shape[0], dtype=queries.dtype)  # the weights do not need values
    return topk_lookup(queries, keys, values, k=k).weights


def _topk_wrong_farthest(queries, keys, k):
    """A common slip: torch.topk picks the LARGEST distances unless told largest=False."""
    chosen = torch.topk(torch.cdist(queries, keys), k).indices
    weights = torch.zeros(queries.shape[0], keys.shape[0], dtype=queries.dtype)
    return weights.scatter(1, chosen, 1 / k)


register(Exercise(
    label="ch01-topk-weights",
    task=("given queries (n, d), keys (m, d) and an int k, return the (n, m) weight matrix with "
          "1/k on each of the k keys nearest to the query (Euclidean distance) and 0 elsewhere."),
    reference=_topk_reference,
    make_inputs=_topk_inputs,
    wrong=_topk_wrong_farthest,
    forbidden=("qkv.lookup",),
))


# ---------------------------------------------------------------------- ch01-exact-weights

def _exact_inputs(generator: torch.Generator) -> dict:
    """Small whole-number keys, so that some queries match (some keys twice) and some miss."""
    n, m, d = _sizes(generator)
    n, d = n + 3, min(d, 2)  # enough queries, few coordinates: most trials hit and miss
    return dict(
        queries=torch.randint(0, 3, (n, d), generator=generator).double(),
        keys=torch.randint(0, 3, (m, d), generator=generator).double(),
    )


def _exact_reference(queries, keys):
    values = torch.zeros(keys.shape[0], dtype=queries.dtype)
    return exact_lookup(queries, keys, values).weights


def _exact_wrong_nan_rows(queries, keys):
    """A common slip: dividing by the number of matches gives 0/0 = NaN for a missing key."""
    matches = (queries[:, None, :] == keys[None, :, :]).all(-1).double()
    return matches / matches.sum(-1, keepdim=True)


register(Exercise(
    label="ch01-exact-weights",
    task=("given queries (n, d) and keys (m, d), return the (n, m) weights of an exact lookup: "
          "uniform over the keys equal to the query in every coordinate (1 for a unique match), "
          "and a row of zeros (not NaN) when no key matches."),
    reference=_exact_reference,
    make_inputs=_exact_inputs,
    wrong=_exact_wrong_nan_rows,
    forbidden=("qkv.lookup",),
))
