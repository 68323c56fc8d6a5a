"""Exercises of chapter 06, "The Transformer": teacher forcing, label smoothing, one step of
beam search, and attention with a key/value cache.

Each ``wrong`` is a mistake a learner plausibly makes; the tests prove the checkers reject it.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from qkv.attention import scaled_dot_product_attention
from qkv.data.text import BOS_ID, EOS_ID, PAD_ID, decoder_pair
from qkv.exercises import Exercise, register


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """A random int in [low, high)."""
    return int(torch.randint(low, high, (), generator=generator))


def _randn(generator: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=generator, dtype=torch.float64)


# ------------------------------------------------------------------ ch06-teacher-forcing

def _forcing_inputs(generator: torch.Generator) -> dict:
    batch, width = _randint(generator, 1, 5), _randint(generator, 1, 7)
    targets = torch.randint(4, 50, (batch, width), generator=generator)
    lengths = torch.randint(1, width + 1, (batch,), generator=generator)
    lengths[_randint(generator, 0, batch)] = width  # one sentence fills the width
    targets[torch.arange(width) >= lengths[:, None]] = PAD_ID
    return dict(targets=targets)


def _forcing_reference(targets):
    return decoder_pair([[t for t in row if t != PAD_ID] for row in targets.tolist()])


def _forcing_eos_after_padding(targets):
    """Appends <eos> as a last column, after the padding instead of after each sentence."""
    column = torch.full((targets.shape[0], 1), BOS_ID)
    return (torch.cat([column, targets], dim=1),
            torch.cat([targets, torch.full_like(column, EOS_ID)], dim=1))


register(Exercise(
    label="ch06-teacher-forcing",
    task=(f"given targets (B, T) int64, sentences right-padded with {PAD_ID}, return (tgt_in, "
          f"tgt_out), both (B, T + 1): tgt_in = <bos>={BOS_ID} then the sentence, tgt_out = the "
          f"sentence then <eos>={EOS_ID}, each padded with {PAD_ID} after that"),
    reference=_forcing_reference,
    make_inputs=_forcing_inputs,
    wrong=_forcing_eos_after_padding,
    forbidden=("qkv.data.text", "qkv.seq2seq", "qkv.translation"),
))


# ------------------------------------------------------------------ ch06-label-smoothing

def _smoothing_inputs(generator: torch.Generator) -> dict:
    count, vocab = _randint(generator, 1, 8), _randint(generator, 2, 12)
    return dict(logits=3 * _randn(generator, count, vocab),
                targets=torch.randint(0, vocab, (count,), generator=generator),
                eps=float(torch.rand((), generator=generator, dtype=torch.float64)) * 0.5)


def _smoothing_reference(logits, targets, eps):
    return F.cross_entropy(logits, targets, label_smoothing=eps)


def _smoothing_over_other_classes(logits, targets, eps):
    """Spreads eps over the V - 1 wrong classes only (another convention, not PyTorch's)."""
    vocab = logits.shape[-1]
    goal = torch.full_like(logits, eps / (vocab - 1))
    goal.scatter_(1, targets[:, None], 1 - eps)
    return -(goal * logits.log_softmax(-1)).sum(-1).mean()


register(Exercise(
    label="ch06-label-smoothing",
    task=("given logits (N, V), targets (N,) int64 and eps, return the mean cross-entropy "
          "against the smoothed distribution (1 - eps) one_hot(target) + eps / V (all V "
          "classes, the true one included), as a scalar tensor"),
    reference=_smoothing_reference,
    make_inputs=_smoothing_inputs,
    wrong=_smoothing_over_other_classes,
    forbidden=("qkv.seq2seq", "qkv.translation"),
    gradients=True,
))


# ------------------------------------------------------------------ ch06-beam-step

def _beam_inputs(generator: torch.Generator) -> dict:
    beams, vocab = _randint(generator, 1, 5), _randint(generator, 5, 12)
    return dict(scores=-5 * torch.rand(beams, generator=generator, dtype=torch.float64),
                log_probs=_randn(generator, beams, vocab).log_softmax(-1),
                beam_size=_randint(generator, 1, beams + 2))


def _beam_reference(scores, log_probs, beam_size):
    totals = (scores[:, None] + log_probs).flatten()
    best, index = totals.topk(beam_size)
    vocab = log_probs.shape[1]
    return best, index // vocab, index % vocab


def _beam_best_token_per_beam(scores, log_probs, beam_size):
    """Extends each beam by its own best tokens only, instead of ranking all K x V candidates."""
    per_beam = -(-beam_size // scores.shape[0])  # ceil(beam_size / K) tokens from each beam
    top, tokens = log_probs.topk(min(per_beam, log_probs.shape[1]), dim=1)
    totals = (scores[:, None] + top).flatten()
    best, index = totals.topk(beam_size)
    origin = index // top.shape[1]
    return best, origin, tokens.flatten()[index]


register(Exercise(
    label="ch06-beam-step",
    task=("given scores (K,) of K hypotheses, log_probs (K, V) of their next token and "
          "beam_size, return (new_scores, origin, token), each (beam_size,), the best "
          "beam_size of all K x V extensions scores[k] + log_probs[k, v], best first"),
    reference=_beam_reference,
    make_inputs=_beam_inputs,
    wrong=_beam_best_token_per_beam,
    forbidden=("qkv.decoding",),
))


# ------------------------------------------------------------------ ch06-cached-attention

def _cache_inputs(generator: torch.Generator) -> dict:
    batch, cached, dim = _randint(generator, 1, 4), _randint(generator, 1, 7), _randint(
        generator, 1, 6)
    return dict(q=_randn(generator, batch, 1, dim), k_cache=_randn(generator, batch, cached, dim),
                v_cache=_randn(generator, batch, cached, dim), k_new=_randn(generator, batch, 1,
                                                                              dim),
                v_new=_randn(generator, batch, 1, dim))


def _cache_reference(q, k_cache, v_cache, k_new, v_new):
    keys, values = torch.cat([k_cache, k_new], dim=1), torch.cat([v_cache, v_new], dim=1)
    output, _ = scaled_dot_product_attention(q, keys, values)
    return output, keys, values


def _cache_without_own_key(q, k_cache, v_cache, k_new, v_new):
    """Attends to the cached positions only: the new token never sees itself."""
    output, _ = scaled_dot_product_attention(q, k_cache, v_cache)
    return output, torch.cat([k_cache, k_new], dim=1), torch.cat([v_cache, v_new], dim=1)


register(Exercise(
    label="ch06-cached-attention",
    task=("given the new token's query q (B, 1, D), the cached keys and values (B, t, D) and "
          "the new token's key and value (B, 1, D), return (output (B, 1, D), keys (B, t + 1, "
          "D), values (B, t + 1, D)): the grown cache and scaled dot-product attention of q "
          "over all t + 1 positions"),
    reference=_cache_reference,
    make_inputs=_cache_inputs,
    wrong=_cache_without_own_key,
    forbidden=("qkv.decoding", "qkv.transformer", "qkv.multihead"),
    gradients=True,
))
