"""Exercises of chapter 03, "Attention scoring functions": masks and the masked softmax.

* ``ch03-masked-softmax``: softmax over the allowed keys, all-zero weights for a query with none;
* ``ch03-causal-mask``: the causal mask, aligned to the end when there are more keys than queries;
* ``ch03-padding-mask``: the mask that hides padding, from valid lengths of shape (B,) or (B, L_q).

Each reference is the package's own function; each ``wrong`` is a mistake a learner plausibly makes.
"""

from __future__ import annotations

import torch

from qkv.attention import causal_mask, masked_softmax, padding_mask
from qkv.exercises import Exercise, register


def _count(generator: torch.Generator, low: int, high: int) -> int:
    """A random int in [low, high], both included."""
    return int(torch.randint(low, high + 1, (), generator=generator))


def _chance(generator: torch.Generator, probability: float) -> bool:
    return bool(torch.rand((), generator=generator) < probability)


# --- ch03-masked-softmax --------------------------------------------------------------------

def _masked_softmax_inputs(generator: torch.Generator) -> dict:
    """Scores (B, L_q, L_k) and a mask of the same shape or (B, 1, L_k), often with empty rows."""
    batch, num_queries, num_keys = (_count(generator, 1, 3), _count(generator, 1, 5),
                                    _count(generator, 2, 6))
    scores = 3 * torch.randn(batch, num_queries, num_keys, generator=generator,
                             dtype=torch.float64)
    per_query = _chance(generator, 0.5)
    mask_shape = (batch, num_queries if per_query else 1, num_keys)
    mask = torch.rand(mask_shape, generator=generator) < 0.6
    if _chance(generator, 0.8):  # empty a row: a query (or a whole sequence) sees no key
        b, q = _count(generator, 0, batch - 1), _count(generator, 0, mask_shape[1] - 1)
        mask[b, q] = False
    return {"scores": scores, "mask": mask}


def _masked_softmax_big_negative(scores, mask):
    """Fills masked scores with -1e9: a query with no allowed key gets uniform weights, not 0."""
    return torch.softmax(scores.masked_fill(~mask, -1e9), dim=-1)


register(Exercise(
    label="ch03-masked-softmax",
    task=("given float scores (B, L_q, L_k) and a bool mask broadcastable to them (True = may "
          "attend), return the weights (B, L_q, L_k): the softmax over the last axis of the "
          "allowed scores, exactly 0 where the mask is False, and a row of zeros (not NaN, not "
          "uniform) for a query whose keys are all masked"),
    reference=masked_softmax,
    make_inputs=_masked_softmax_inputs,
    wrong=_masked_softmax_big_negative,
    forbidden=("qkv.attention",),
    gradients=True,
    low_precision=(torch.float16, torch.bfloat16),
))


# --- ch03-causal-mask -----------------------------------------------------------------------

def _causal_inputs(generator: torch.Generator) -> dict:
    num_queries = _count(generator, 1, 6)
    return {"num_queries": num_queries, "num_keys": num_queries + _count(generator, 0, 4)}


def _causal_mask_aligned_to_start(num_queries, num_keys):
    """The lower triangle from the top-left corner: right only when num_keys == num_queries."""
    return torch.ones(num_queries, num_keys, dtype=torch.bool).tril()


register(Exercise(
    label="ch03-causal-mask",
    task=("given num_queries L_q and num_keys L_k >= L_q, return the bool (L_q, L_k) causal mask, "
          "True = may attend: the queries are the LAST L_q positions of a sequence of L_k, so "
          "query i may attend to key j exactly when j <= i + (L_k - L_q)"),
    reference=causal_mask,
    make_inputs=_causal_inputs,
    wrong=_causal_mask_aligned_to_start,
    trials=15,
    forbidden=("qkv.attention",),
))


# --- ch03-padding-mask ----------------------------------------------------------------------

def _padding_inputs(generator: torch.Generator) -> dict:
    batch, num_keys = _count(generator, 1, 4), _count(generator, 1, 7)
    shape = (batch,) if _chance(generator, 0.5) else (batch, _count(generator, 1, 4))
    return {"valid_lens": torch.randint(0, num_keys + 1, shape, generator=generator),
            "num_keys": num_keys}


def _padding_mask_off_by_one(valid_lens, num_keys):
    """Compares positions with ``<=``: lets every query see one padding key too many."""
    lens = valid_lens[:, None] if valid_lens.dim() == 1 else valid_lens
    return torch.arange(num_keys) <= lens[..., None]


register(Exercise(
    label="ch03-padding-mask",
    task=("given integer valid_lens of shape (B,) or (B, L_q) with values in [0, num_keys], "
          "return a bool mask (True = may attend) that lets a query see keys 0, ..., valid_len - 1 "
          "only: shape (B, 1, num_keys) for (B,) input (one length per sequence) and "
          "(B, L_q, num_keys) for (B, L_q) input (one length per query)"),
    reference=padding_mask,
    make_inputs=_padding_inputs,
    wrong=_padding_mask_off_by_one,
    forbidden=("qkv.attention",),
))
