"""Attention scoring functions, masks and attention pooling (chapter 3).

A query is compared with every key by a *scoring function*; a softmax over the keys turns the
scores into weights; the output is the weighted sum of the values. This module holds each of
those steps as a small function, plus thin ``nn.Module`` wrappers:

* masks: :func:`padding_mask` (from valid lengths) and :func:`causal_mask` (no peeking ahead);
* :func:`masked_softmax`: softmax over the keys a query may attend to;
* :func:`attention_pooling`: weights from any scores, then the weighted sum of the values;
* :func:`scaled_dot_product_attention`: scores ``q . k / sqrt(d)`` (Vaswani et al., 2017);
* :class:`DotProductAttention` and :class:`AdditiveAttention` (Bahdanau et al., 2015);
* :class:`BilinearAttention`: scores ``q^T W k`` with a learned W (Luong et al., 2015).

One mask convention holds everywhere: a **boolean** mask that is ``True`` where a query **may**
attend to a key (the convention of ``torch.nn.functional.scaled_dot_product_attention``;
``torch.nn.MultiheadAttention`` uses the opposite one). A query with no allowed key gets
all-zero weights and a zero output, never NaN.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from qkv.checks import check_count, check_probability, check_same, check_tensor

# The package's shared argument checks (qkv.checks), under the names later modules import.
_require_float, _require_count, _require_probability = check_tensor, check_count, check_probability

_INTEGER_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def check_mask(mask: torch.Tensor, shape: torch.Size, name: str = "mask") -> None:
    """Raise a clear error unless ``mask`` is a boolean tensor that broadcasts to ``shape``.

    Args:
        mask: the mask to check; must have dtype ``torch.bool`` (True = may attend).
        shape: the shape the mask must broadcast to, e.g. that of the scores (..., L_q, L_k).
        name: the argument's name, used in the error message.

    Raises:
        TypeError: if ``mask`` is not a boolean tensor.
        ValueError: if ``mask`` does not broadcast to ``shape``.
    """
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        kind = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise TypeError(f"{name} must be a boolean tensor (True = may attend); got {kind}")
    target = tuple(shape)
    try:
        broadcast = torch.broadcast_shapes(mask.shape, target)
    except RuntimeError:
        broadcast = None
    if broadcast != target:
        raise ValueError(
            f"{name} of shape {tuple(mask.shape)} does not broadcast to {target}, the shape of "
            "the attention scores"
        )


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the last axis, restricted to the keys each query may attend to.

    Masked scores are replaced by the most negative finite number of the scores' dtype (not a
    constant such as -1e9, which float16 cannot hold: its range ends at -65504), so their weights are exactly zero.
    A row whose keys are all masked gets all-zero weights (a plain softmax would spread it
    uniformly, and a fill of -inf would give NaN).

    Args:
        scores: floating-point tensor (..., L_q, L_k); any float dtype, float16/bfloat16 included.
        mask: optional boolean tensor broadcastable to ``scores``; True = may attend.

    Returns:
        Weights with the shape and dtype of ``scores``: non-negative, each row sums to 1, or to
        0 if the row has no allowed key.
    """
    _require_float("scores", scores)
    if mask is None:
        return torch.softmax(scores, dim=-1)
    check_mask(mask, scores.shape)
    lowest = torch.finfo(scores.dtype).min
    weights = torch.softmax(scores.masked_fill(~mask, lowest), dim=-1)
    # Only fully masked rows still have weight on masked keys (uniform); zero them.
    return weights.masked_fill(~mask, 0.0)


def padding_mask(valid_lens: torch.Tensor, num_keys: int) -> torch.Tensor:
    """Mask that lets each query see only the first ``valid_lens`` keys (padding comes after).

    Follows d2l's semantics for valid lengths: one length per sequence, shape (B,), shared by
    all its queries; or one length per query, shape (B, L_q).

    Args:
        valid_lens: integer tensor (B,) or (B, L_q), each value in [0, num_keys].
        num_keys: L_k, the number of keys (the padded length).

    Returns:
        Boolean mask, True = may attend: (B, 1, L_k) for (B,) input, (B, L_q, L_k) for (B, L_q)
        input; both broadcast to (B, L_q, L_k), and ``mask.unsqueeze(1)`` adds the head axis.

    Raises:
        TypeError: if ``valid_lens`` is not an integer tensor.
        ValueError: if it has another rank, or a length is negative or larger than ``num_keys``.
    """
    _require_count("num_keys", num_keys)
    if not isinstance(valid_lens, torch.Tensor) or valid_lens.dtype not in _INTEGER_DTYPES:
        kind = valid_lens.dtype if isinstance(valid_lens, torch.Tensor) else type(valid_lens)
        raise TypeError(f"valid_lens must be an integer tensor; got {kind}")
    if valid_lens.dim() not in (1, 2):
        raise ValueError(
            f"valid_lens must have shape (B,) or (B, L_q); got shape {tuple(valid_lens.shape)}"
        )
    if valid_lens.numel() and (valid_lens.min() < 0 or valid_lens.max() > num_keys):
        raise ValueError(
            f"valid_lens must lie in [0, num_keys={num_keys}]; got values from "
            f"{valid_lens.min().item()} to {valid_lens.max().item()}"
        )
    lens = valid_lens[:, None] if valid_lens.dim() == 1 else valid_lens  # (B, 1) or (B, L_q)
    positions = torch.arange(num_keys, device=valid_lens.device)  # (L_k,)
    return positions < lens[..., None]


def causal_mask(
    num_queries: int, num_keys: int | None = None, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Mask that lets query i attend to key j only if j <= i + (L_k - L_q).

    With L_k = L_q this is the lower triangle, diagonal included. With more keys than queries
    the triangle is aligned to the end: the queries are the *last* L_q positions of the
    sequence, as when a decoder with a key-value cache processes new tokens.

    Args:
        num_queries: L_q.
        num_keys: L_k >= L_q; defaults to L_q.
        device: where to create the mask (default: the CPU).

    Returns:
        Boolean tensor (L_q, L_k), True = may attend; broadcasts to (B, H, L_q, L_k).
    """
    num_keys = num_queries if num_keys is None else num_keys
    _require_count("num_queries", num_queries)
    _require_count("num_keys", num_keys)
    if num_keys < num_queries:
        raise ValueError(
            f"causal_mask needs num_keys >= num_queries; got num_queries={num_queries}, "
            f"num_keys={num_keys}"
        )
    ones = torch.ones(num_queries, num_keys, dtype=torch.bool, device=device)
    return ones.tril(diagonal=num_keys - num_queries)


def attention_pooling(
    scores: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn scores into weights (masked softmax) and pool the values with them.

    This is the part every attention mechanism shares; only the scoring function differs.

    Args:
        scores: (..., L_q, L_k), floating point.
        values: (..., L_k, D_v), same dtype; leading dimensions broadcast with the scores'.
        mask: optional boolean mask broadcastable to ``scores``; True = may attend.
        dropout_p: probability of dropping a weight before pooling (applied whenever > 0).

    Returns:
        ``(output, weights)``: output (..., L_q, D_v) and the weights (..., L_q, L_k) *before*
        dropout (each row sums to 1, or 0 when its keys are all masked).
    """
    _require_float("scores", scores)
    _require_float("values", values)
    _require_probability("dropout_p", dropout_p)
    if values.dtype != scores.dtype:
        raise TypeError(f"values must have the scores' dtype {scores.dtype}; got {values.dtype}")
    if values.dim() < 2 or values.shape[-2] != scores.shape[-1]:
        raise ValueError(
            f"values must have shape (..., L_k, D_v) with L_k = {scores.shape[-1]} keys as in "
            f"the scores {tuple(scores.shape)}; got {tuple(values.shape)}"
        )
    weights = masked_softmax(scores, mask)
    pooled = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    return pooled @ values, weights


def _check_qkv(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Check floats of one dtype and one rank >= 2, matching L_k, broadcasting batch dims."""
    for name, tensor in (("queries", queries), ("keys", keys), ("values", values)):
        check_tensor(name, tensor, shape="(..., L, D)", min_rank=2)
    shapes = (
        f"queries {tuple(queries.shape)}, keys {tuple(keys.shape)}, values {tuple(values.shape)}"
    )
    check_same(queries=queries, keys=keys, values=values)
    if not queries.dim() == keys.dim() == values.dim():
        raise ValueError(f"queries, keys and values must have the same rank; got {shapes}")
    if keys.shape[-2] != values.shape[-2]:
        raise ValueError(f"keys and values must hold the same number of items L_k; got {shapes}")
    try:
        torch.broadcast_shapes(queries.shape[:-2], keys.shape[:-2], values.shape[:-2])
    except RuntimeError:
        raise ValueError(f"the leading (batch) dimensions do not broadcast; got {shapes}") from None


def check_dot_product_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    score_bias: torch.Tensor | None = None,
) -> None:
    """Raise a clear error unless q, k, v (mask and score bias) fit dot-product attention.

    q (..., L_q, D), k (..., L_k, D), v (..., L_k, D_v): floats of one dtype and rank, leading
    dimensions that broadcast; mask None or boolean and broadcastable to (..., L_q, L_k);
    score_bias None or a float of q's dtype broadcastable to (..., L_q, L_k).
    """
    _check_qkv(q, k, v)
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"q and k must have the same feature size D; got q {tuple(q.shape)}, k {tuple(k.shape)}"
        )
    if mask is not None:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
        check_mask(mask, (*batch, q.shape[-2], k.shape[-2]))
    if score_bias is not None:
        _require_float("score_bias", score_bias)
        if score_bias.dtype != q.dtype:
            raise TypeError(f"score_bias must have the dtype of q, {q.dtype}; got "
                            f"{score_bias.dtype}")
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2])
        target = (*batch, q.shape[-2], k.shape[-2])
        try:
            fits = torch.broadcast_shapes(score_bias.shape, target) == target
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(f"score_bias of shape {tuple(score_bias.shape)} does not broadcast "
                             f"to {target}, the shape of the attention scores")


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    score_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention, written out so that the weights can be inspected.

    ``weights = masked_softmax(q @ k^T / sqrt(D) + score_bias, mask)`` and
    ``output = weights @ v``. It computes what
    ``torch.nn.functional.scaled_dot_product_attention`` computes (there, a float
    ``attn_mask`` is the score bias), and like it applies dropout to the weights whenever
    ``dropout_p > 0`` (a module passes 0 in eval mode). Masked keys get exactly zero weight
    whatever their bias.

    Args:
        q: queries (..., L_q, D), floating point.
        k: keys (..., L_k, D), same dtype and rank.
        v: values (..., L_k, D_v), same dtype and rank; leading dimensions broadcast.
        mask: optional boolean mask broadcastable to (..., L_q, L_k); True = may attend.
        dropout_p: probability of dropping an attention weight, in [0, 1).
        score_bias: optional float tensor of q's dtype, broadcastable to (..., L_q, L_k),
            added to the scores before the softmax (relative positions, chapter 5).

    Returns:
        ``(output, weights)``: output (..., L_q, D_v) and weights (..., L_q, L_k) before dropout.
    """
    check_dot_product_inputs(q, k, v, mask, score_bias)
    # Scaling q before the product keeps float16 products in range for longer.
    scores = (q / math.sqrt(q.shape[-1])) @ k.transpose(-2, -1)
    if score_bias is not None:
        scores = scores + score_bias  # a bias per query-key pair, e.g. by offset (chapter 5)
    return attention_pooling(scores, v, mask, dropout_p)


class DotProductAttention(nn.Module):
    """Scaled dot-product attention as a module (no parameters; dropout only in training).

    ``forward(queries (..., L_q, D), keys (..., L_k, D), values (..., L_k, D_v), mask=None)``
    returns ``(output (..., L_q, D_v), weights (..., L_q, L_k))``; see
    :func:`scaled_dot_product_attention`.
    """

    def __init__(self, dropout: float = 0.0):
        super().__init__()
        _require_probability("dropout", dropout)
        self.dropout = dropout

    def forward(self, queries, keys, values, mask=None):
        dropout_p = self.dropout if self.training else 0.0
        return scaled_dot_product_attention(queries, keys, values, mask, dropout_p)


class AdditiveAttention(nn.Module):
    """Additive (Bahdanau) attention: score(q, k) = w_v . tanh(W_q q + W_k k).

    Queries and keys may have different sizes; a one-hidden-layer network scores each pair.

    Args:
        key_size: D_k, the size of a key.
        query_size: D_q, the size of a query.
        num_hiddens: the width of the hidden layer.
        dropout: dropout on the weights, in training only.

    ``forward(queries (..., L_q, D_q), keys (..., L_k, D_k), values (..., L_k, D_v), mask=None)``
    returns ``(output (..., L_q, D_v), weights (..., L_q, L_k))``.
    """

    def __init__(self, key_size: int, query_size: int, num_hiddens: int, dropout: float = 0.0):
        super().__init__()
        for name, value in (("key_size", key_size), ("query_size", query_size),
                            ("num_hiddens", num_hiddens)):
            _require_count(name, value)
        _require_probability("dropout", dropout)
        self.W_q = nn.Linear(query_size, num_hiddens, bias=False)
        self.W_k = nn.Linear(key_size, num_hiddens, bias=False)
        self.w_v = nn.Linear(num_hiddens, 1, bias=False)
        self.dropout = dropout

    def forward(self, queries, keys, values, mask=None):
        _check_qkv(queries, keys, values)
        for name, tensor, layer in (("queries", queries, self.W_q), ("keys", keys, self.W_k)):
            if tensor.shape[-1] != layer.in_features:
                raise ValueError(
                    f"{name} must have {layer.in_features} features; got {tuple(tensor.shape)}"
                )
        # (..., L_q, 1, h) + (..., 1, L_k, h) -> (..., L_q, L_k, h): every query-key pair.
        features = torch.tanh(self.W_q(queries).unsqueeze(-2) + self.W_k(keys).unsqueeze(-3))
        scores = self.w_v(features).squeeze(-1)  # (..., L_q, L_k)
        dropout_p = self.dropout if self.training else 0.0
        return attention_pooling(scores, values, mask, dropout_p)


class BilinearAttention(nn.Module):
    """Bilinear ("general") attention of Luong et al. (2015): score(q, k) = q^T W k.

    A learned matrix W sits between the query and the key, so queries and keys may have
    different sizes (as in additive attention), but a score is still one product per pair (as
    in dot-product attention). With W the identity it is the unscaled dot product.

    Args:
        key_size: D_k, the size of a key.
        query_size: D_q, the size of a query.
        dropout: dropout on the weights, in training only.

    ``forward(queries (..., L_q, D_q), keys (..., L_k, D_k), values (..., L_k, D_v), mask=None)``
    returns ``(output (..., L_q, D_v), weights (..., L_q, L_k))``.
    """

    def __init__(self, key_size: int, query_size: int, dropout: float = 0.0):
        super().__init__()
        _require_count("key_size", key_size)
        _require_count("query_size", query_size)
        _require_probability("dropout", dropout)
        self.W = nn.Linear(key_size, query_size, bias=False)  # k -> W k, of size D_q
        self.dropout = dropout

    def forward(self, queries, keys, values, mask=None):
        _check_qkv(queries, keys, values)
        for name, tensor, size in (("queries", queries, self.W.out_features),
                                   ("keys", keys, self.W.in_features)):
            if tensor.shape[-1] != size:
                raise ValueError(f"{name} must have {size} features; got {tuple(tensor.shape)}")
        scores = queries @ self.W(keys).transpose(-2, -1)  # (..., L_q, D_q) @ (..., D_q, L_k)
        dropout_p = self.dropout if self.training else 0.0
        return attention_pooling(scores, values, mask, dropout_p)
