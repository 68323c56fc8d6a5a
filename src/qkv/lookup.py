"""Lookups in a key-value table, from an exact match to a soft (differentiable) weighted sum.

A table holds ``m`` keys and ``m`` values. Every lookup here answers ``n`` queries at once and
works the same way: it builds a weight matrix ``weights`` of shape (n, m), one row per query and
one column per key, and returns the weighted sum of the values, ``outputs = weights @ values``.
The lookups differ only in how the weights are made:

* :func:`exact_lookup`: uniform over the keys equal to the query (one-hot for unique keys);
  a query whose key is missing gets a row of zeros, hence a zero output (see :func:`found_mask`);
* :func:`nearest_lookup`: one-hot on the nearest key;
* :func:`topk_lookup`: ``1/k`` on each of the ``k`` nearest keys;
* :func:`soft_lookup`: a softmax over similarity scores (:func:`soft_weights`); the only one of
  the four whose weights depend smoothly on the queries and keys, so gradients flow through it.

Shapes: ``keys`` (m, d) or (m,), ``values`` (m,) or (m, d_v), ``queries`` (n, d) or (n,); a
one-dimensional ``keys`` or ``queries`` means ``d = 1``. All three tensors share one
floating-point dtype and one device. Each lookup returns a :class:`LookupResult`, a named tuple
``(outputs, weights)`` with ``outputs`` of shape (n,) or (n, d_v) and ``weights`` of shape (n, m).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from qkv.checks import check_positive, check_same, check_tensor

SCORES = ("distance", "dot")
"""The similarity scores :func:`soft_weights` knows."""


class LookupResult(NamedTuple):
    """What a lookup returns: ``outputs`` (n,) or (n, d_v) and ``weights`` (n, m)."""

    outputs: torch.Tensor
    weights: torch.Tensor


def _check_rows(weights_name: str, columns: int, values: torch.Tensor) -> None:
    if values.shape[0] != columns:
        raise ValueError(
            f"{weights_name} has m={columns} but values has {values.shape[0]} rows "
            f"(values shape {tuple(values.shape)}); there must be one value per key"
        )


def _check_points(queries, keys) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate queries (n, d) or (n,) and keys (m, d) or (m,); return them as matrices.

    Chapter 2's kernel regression (:mod:`qkv.pooling`) checks its points here too.
    """
    check_tensor("queries", queries, (1, 2), "(n,) or (n, d)")
    check_tensor("keys", keys, (1, 2), "(m,) or (m, d)")
    check_same(queries=queries, keys=keys)
    if keys.shape[0] == 0:
        raise ValueError("keys is empty: the table needs at least one key-value pair")
    queries = queries.unsqueeze(-1) if queries.dim() == 1 else queries
    keys = keys.unsqueeze(-1) if keys.dim() == 1 else keys
    if queries.shape[1] != keys.shape[1]:
        raise ValueError(
            f"queries and keys must have the same size d; got queries with d={queries.shape[1]} "
            f"and keys with d={keys.shape[1]} (as matrices: {tuple(queries.shape)} and "
            f"{tuple(keys.shape)})"
        )
    return queries, keys


def _check_table(queries, keys, values) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a lookup's arguments; return ``queries`` (n, d) and ``keys`` (m, d) as matrices."""
    queries, keys = _check_points(queries, keys)
    check_tensor("values", values, (1, 2), "(m,) or (m, d_v)")
    check_same(queries=queries, keys=keys, values=values)
    _check_rows(f"keys (shape {tuple(keys.shape)})", keys.shape[0], values)
    return queries, keys


def _check_weight_mask(mask, n: int, m: int) -> None:
    """Raise unless ``mask`` is None or an (n, m) bool tensor (True = the query may see the key)."""
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool
                             or mask.shape != (n, m)):
        raise ValueError(f"mask must be a bool tensor of shape {(n, m)}; got "
                         f"{getattr(mask, 'dtype', type(mask).__name__)} "
                         f"{tuple(getattr(mask, 'shape', ()))}")


def _check_soft(queries, keys, temperature, score, mask):
    """Validate :func:`soft_weights`' arguments; return queries and keys as matrices and the
    temperature (a float or a 0-d tensor)."""
    q, k = _check_points(queries, keys)
    temperature = check_positive("temperature", temperature)
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}; got {score!r}")
    _check_weight_mask(mask, q.shape[0], k.shape[0])
    return q, k, temperature


def _squared_distances(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """(n, d), (m, d) -> (n, m) matrix of squared Euclidean distances ``||q_i - k_j||^2``."""
    return (queries[:, None, :] - keys[None, :, :]).pow(2).sum(-1)


def _nearest_first(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """(n, d), (m, d) -> (n, m) key indices from the nearest to the farthest, ties by index."""
    return torch.sort(_squared_distances(queries, keys), dim=-1, stable=True).indices


def pool(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Attention pooling: the weighted sum of the values, ``weights @ values``.

    Args:
        weights: (n, m) float, one row of weights per query.
        values: (m,) or (m, d_v), same dtype, one value per key.

    Returns:
        (n,) or (n, d_v): row ``i`` is ``sum_j weights[i, j] * values[j]``.
    """
    check_tensor("weights", weights, (2,), "(n, m)")
    check_tensor("values", values, (1, 2), "(m,) or (m, d_v)")
    check_same(weights=weights, values=values)
    _check_rows(f"weights (shape {tuple(weights.shape)})", weights.shape[1], values)
    return weights @ values


def found_mask(weights: torch.Tensor) -> torch.Tensor:
    """(n, m) weights of :func:`exact_lookup` -> (n,) bool, True where the query's key exists."""
    return weights.sum(-1) > 0


def exact_lookup(queries, keys, values) -> LookupResult:
    """Exact match: uniform weights over the keys equal to the query (all ``d`` entries).

    With unique keys each row of ``weights`` is one-hot. A query that matches no key gets a row
    of zeros and a zero output, never NaN; :func:`found_mask` tells found from missing.

    Returns:
        :class:`LookupResult` ``(outputs (n,) or (n, d_v), weights (n, m))``.
    """
    q, k = _check_table(queries, keys, values)
    matches = (q[:, None, :] == k[None, :, :]).all(-1).to(values.dtype)
    weights = matches / matches.sum(-1, keepdim=True).clamp_min(1)
    return LookupResult(weights @ values, weights)


def nearest_lookup(queries, keys, values) -> LookupResult:
    """Approximate match: one-hot weights on the key nearest to the query (Euclidean).

    Ties go to the key with the lowest index.

    Returns:
        :class:`LookupResult` ``(outputs (n,) or (n, d_v), weights (n, m))``.
    """
    return topk_lookup(queries, keys, values, k=1)


def topk_lookup(queries, keys, values, k: int) -> LookupResult:
    """Top-k: weight ``1/k`` on each of the ``k`` keys nearest to the query (Euclidean).

    Among keys at equal distance, those with the lower index come first.

    Args:
        k: how many keys each query averages, an int with ``1 <= k <= m``.

    Returns:
        :class:`LookupResult` ``(outputs (n,) or (n, d_v), weights (n, m))``.
    """
    q, key_matrix = _check_table(queries, keys, values)
    m = key_matrix.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= m:
        raise ValueError(f"k must be an int with 1 <= k <= m={m} (the number of keys); got {k!r}")
    chosen = _nearest_first(q, key_matrix)[:, :k]
    weights = torch.zeros(q.shape[0], m, dtype=values.dtype, device=values.device)
    weights.scatter_(1, chosen, 1.0 / k)
    return LookupResult(weights @ values, weights)


def soft_weights(queries, keys, temperature=1.0, score: str = "distance", *,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """The weights of a soft lookup: a softmax over the keys of ``score / temperature``.

    The score of query ``q`` and key ``k`` is ``-||q - k||^2`` for ``score="distance"`` or
    ``q . k`` for ``score="dot"``. Chapter 2's Gaussian kernel regression is this function with
    distance scores at ``temperature = 2 h^2`` (``h`` the bandwidth).

    Args:
        queries: (n, d) or (n,); keys: (m, d) or (m,); floating point, one dtype and device.
        temperature: a finite number > 0, or such a scalar tensor (gradients flow through it).
        score: ``"distance"`` or ``"dot"``.
        mask: optional (n, m) bool, True where a query may see a key; a masked key gets weight
            exactly 0, and a query that may see no key at all gets a row of zeros (never NaN).

    Returns:
        (n, m) weights, one row per query; each row sums to 1 (or is all 0, see ``mask``).
    """
    q, k, temperature = _check_soft(queries, keys, temperature, score, mask)
    scores = -_squared_distances(q, k) if score == "distance" else q @ k.T  # (n, m)
    if mask is None:
        return torch.softmax(scores / temperature, dim=-1)  # each row sums to 1
    # A hidden key gets the lowest score, hence weight 0; a row with no key left is all 0.
    scores = (scores / temperature).masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) * mask.any(dim=-1, keepdim=True)


def soft_lookup(
    queries, keys, values, temperature=1.0, score: str = "distance"
) -> LookupResult:
    """Soft lookup: softmax weights over all keys, so every key contributes a little.

    The weights are those of :func:`soft_weights`: each row is the softmax of
    ``-||q - k||^2 / temperature`` (``score="distance"``) or ``q . k / temperature``
    (``score="dot"``) over the keys. A small temperature approaches :func:`nearest_lookup`
    (for distance scores), a large one the plain average of the values. Unlike the other
    lookups, the weights are smooth functions of queries and keys.

    Args:
        temperature: a finite number > 0 (or such a scalar tensor).
        score: ``"distance"`` or ``"dot"``.

    Returns:
        :class:`LookupResult` ``(outputs (n,) or (n, d_v), weights (n, m))``.
    """
    _check_table(queries, keys, values)
    weights = soft_weights(queries, keys, temperature, score)  # (n, m), rows sum to 1
    return LookupResult(weights @ values, weights)  # (n,) or (n, d_v)
