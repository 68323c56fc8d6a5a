"""Exercises of chapter 04, "Multi-head attention": the reshapes around the heads, and the layer.

* ``ch04-split-heads``: (B, L, d_model) -> (B, H, L, d_model / H);
* ``ch04-merge-heads``: (B, H, L, D_h) -> (B, L, H * D_h), the inverse;
* ``ch04-mha-forward``: multi-head attention from four weight matrices, without biases.
"""

from __future__ import annotations

import math

import torch

from qkv.attention import padding_mask, scaled_dot_product_attention
from qkv.exercises import Exercise, register
from qkv.multihead import MultiHeadAttention


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """A random int in [low, high)."""
    return int(torch.randint(low, high, (), generator=generator))


def _heads_and_width(generator: torch.Generator) -> tuple[int, int]:
    """A random number of heads H in [1, 4] and head size D_h in [1, 4]."""
    return _randint(generator, 1, 5), _randint(generator, 1, 5)


# ------------------------------------------------------------------------ ch04-split-heads

def _split_inputs(generator: torch.Generator) -> dict:
    heads, head_dim = _heads_and_width(generator)
    batch, length = _randint(generator, 1, 4), _randint(generator, 1, 6)
    x = torch.randn(batch, length, heads * head_dim, generator=generator, dtype=torch.float64)
    return dict(x=x, num_heads=heads)


def _split_reference(x, num_heads):
    return MultiHeadAttention(x.shape[-1], num_heads).split_heads(x)


def _split_wrong_no_transpose(x, num_heads):
    """A common slip: reshape straight to (B, H, L, D_h), which mixes positions into heads."""
    batch, length, d_model = x.shape
    return x.reshape(batch, num_heads, length, d_model // num_heads)


register(Exercise(
    label="ch04-split-heads",
    task=("given x (B, L, d_model) and num_heads H dividing d_model, return (B, H, L, D_h) with "
          "D_h = d_model / H, where head h holds features h * D_h ... (h + 1) * D_h - 1 of every "
          "position."),
    reference=_split_reference,
    make_inputs=_split_inputs,
    wrong=_split_wrong_no_transpose,
    forbidden=("qkv.multihead",),
    gradients=True,
))


# ------------------------------------------------------------------------ ch04-merge-heads

def _merge_inputs(generator: torch.Generator) -> dict:
    heads, head_dim = _heads_and_width(generator)
    batch, length = _randint(generator, 1, 4), _randint(generator, 1, 6)
    return dict(x=torch.randn(batch, heads, length, head_dim, generator=generator,
                              dtype=torch.float64))


def _merge_reference(x):
    return MultiHeadAttention(x.shape[1] * x.shape[3], x.shape[1]).merge_heads(x)


def _merge_wrong_no_transpose(x):
    """A common slip: reshape (B, H, L, D_h) to (B, L, H * D_h) without moving the head axis."""
    batch, heads, length, head_dim = x.shape
    return x.reshape(batch, length, heads * head_dim)


register(Exercise(
    label="ch04-merge-heads",
    task=("given x (B, H, L, D_h), return (B, L, H * D_h): at every position the heads' "
          "features side by side, head 0 first (the inverse of splitting the heads)."),
    reference=_merge_reference,
    make_inputs=_merge_inputs,
    wrong=_merge_wrong_no_transpose,
    forbidden=("qkv.multihead",),
    gradients=True,
))


# ------------------------------------------------------------------------ ch04-mha-forward

def _mha_inputs(generator: torch.Generator) -> dict:
    heads, head_dim = _heads_and_width(generator)
    d_model = heads * head_dim
    batch, num_queries, num_keys = (_randint(generator, 1, 4), _randint(generator, 1, 5),
                                    _randint(generator, 1, 6))

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    valid_lens = torch.randint(1, num_keys + 1, (batch,), generator=generator)
    return dict(
        query=randn(batch, num_queries, d_model),
        key=randn(batch, num_keys, d_model),
        value=randn(batch, num_keys, d_model),
        W_q=randn(d_model, d_model), W_k=randn(d_model, d_model),
        W_v=randn(d_model, d_model), W_o=randn(d_model, d_model),
        num_heads=heads,
        mask=padding_mask(valid_lens, num_keys),  # (B, 1, L_k), True = may attend
    )


def _mha_reference(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask):
    """The package's layer run with these weights (nn.Linear stores W transposed: y = x W^T);
    through ``torch.func.functional_call``, so that gradients reach the weights."""
    layer = MultiHeadAttention(query.shape[-1], num_heads, bias=False).to(query.dtype)
    weights = {"W_q.weight": W_q.T, "W_k.weight": W_k.T, "W_v.weight": W_v.T,
               "W_o.weight": W_o.T}
    return torch.func.functional_call(layer, weights, (query, key, value),
                                      {"mask": mask})[0]


def _mha_wrong_scale(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask):
    """A common slip: scale the scores by sqrt(d_model) instead of sqrt(D_h), a head's size."""
    layer = MultiHeadAttention(query.shape[-1], num_heads, bias=False)
    q, k, v = (layer.split_heads(x @ w) for x, w in ((query, W_q), (key, W_k), (value, W_v)))
    rescale = math.sqrt(layer.head_dim / layer.d_model)  # sqrt(D_h) / sqrt(d_model)
    heads, _ = scaled_dot_product_attention(q * rescale, k, v, mask.unsqueeze(1))
    return layer.merge_heads(heads) @ W_o


register(Exercise(
    label="ch04-mha-forward",
    task=("given query (B, L_q, d), key and value (B, L_k, d), weights W_q, W_k, W_v, W_o "
          "(d, d) used as x @ W (columns h * D_h ... (h + 1) * D_h - 1 belong to head h), "
          "num_heads H and a boolean mask (B, 1, L_k) (True = may attend), return the "
          "multi-head attention output (B, L_q, d): project, split into H heads, scaled "
          "dot-product attention in each head (scale 1 / sqrt(D_h)), merge, then @ W_o."),
    reference=_mha_reference,
    make_inputs=_mha_inputs,
    wrong=_mha_wrong_scale,
    forbidden=("qkv.multihead", "torch.nn.functional.multi_head_attention_forward"),
    gradients=True,
))
