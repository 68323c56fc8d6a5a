"""Turning a trained :class:`qkv.seq2seq.Seq2SeqTransformer` into translations (chapter 6).

* :func:`greedy_decode`: at each step, append the most likely next token. With the key/value
  cache (the default) every step feeds only the newest token through the decoder, which
  reuses the keys and values of all earlier positions; without it each step re-runs the
  whole prefix. Both produce the same tokens; the cache turns a quadratic amount of decoder
  work into a linear one.
* :func:`beam_search`: keep the ``beam_size`` best partial translations at every step and
  pick the best finished one, comparing hypotheses of different lengths with the length
  penalty of Wu et al. (2016), ``lp(n) = ((5 + n) / 6) ** alpha``.

Both return (B, N) int64 tokens: the generated tokens after ``bos_id``, ending with
``eos_id`` (unless the sentence's step limit ran out first), then ``pad_id`` up to the
longest row. A sentence's result does not depend on the other sentences of its batch.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from qkv.attention import _require_count


def _step_limits(model, valid: torch.Tensor, max_new_tokens: int | None) -> torch.Tensor:
    """Most tokens each sentence may generate, (B,) int64: ``max_new_tokens`` if given, else
    1.5 x its own source length + 10; never more than ``model.max_len - 1``.

    Limits per sentence (not per padded batch) make a translation independent of the batch
    it was decoded in.
    """
    if max_new_tokens is None:
        limits = (1.5 * valid.sum(dim=1)).long() + 10
    else:
        _require_count("max_new_tokens", max_new_tokens)
        limits = torch.full((valid.shape[0],), max_new_tokens, device=valid.device)
    return limits.clamp(max=model.max_len - 1)


@torch.no_grad()
def greedy_decode(model, src: torch.Tensor, max_new_tokens: int | None = None,
                  use_cache: bool = True) -> torch.Tensor:
    """Greedy decoding: always take the most likely next token.

    Args:
        model: a :class:`qkv.seq2seq.Seq2SeqTransformer` (put it in eval mode first).
        src: source ids (B, S) int64, padded with the model's ``pad_id``.
        max_new_tokens: most tokens to generate per sentence (default: 1.5 x the sentence's
            source length + 10; never more than ``model.max_len - 1``).
        use_cache: feed one token per step through a key/value cache (True) or re-run the
            whole prefix at each step (False); the tokens are the same.

    Returns:
        (B, N) int64 tokens, N <= max_new_tokens; see the module docstring.
    """
    memory, valid = model.encode(src)
    limits = _step_limits(model, valid, max_new_tokens)
    cache = model.new_cache() if use_cache else None
    tokens = torch.full((src.shape[0], 1), model.bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for step in range(int(limits.max())):
        new_input = tokens[:, -1:] if use_cache else tokens
        logits = model.decode(new_input, memory, valid, cache, last_only=True)[:, -1]
        next_token = logits.argmax(dim=-1).masked_fill(finished, model.pad_id)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        finished |= (next_token == model.eos_id) | (limits <= step + 1)
        if finished.all():
            break
    return tokens[:, 1:]


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """Wu et al. (2016): ``((5 + n) / 6) ** alpha`` for hypothesis lengths n (any shape).

    Dividing a log-probability (a negative number) by it favours longer hypotheses as
    ``alpha`` grows; ``alpha = 0`` compares raw log-probabilities.
    """
    return ((5.0 + lengths.float()) / 6.0) ** alpha


@torch.no_grad()
def beam_search(model, src: torch.Tensor, beam_size: int = 4, alpha: float = 0.6,
                max_new_tokens: int | None = None) -> torch.Tensor:
    """Beam search with a key/value cache and a length penalty.

    Every step extends each of the ``beam_size`` hypotheses of a sentence by every token and
    keeps the best ``beam_size`` candidates, ranked by log-probability divided by
    :func:`length_penalty`. A hypothesis that has produced ``eos_id`` is finished: it stays
    a candidate with its score and length frozen. The search ends when every beam is
    finished; the best-ranked hypothesis wins. With ``beam_size=1`` this is greedy decoding.

    Args:
        model: a :class:`qkv.seq2seq.Seq2SeqTransformer` in eval mode.
        src: source ids (B, S) int64, padded with ``pad_id``.
        beam_size: K, hypotheses kept per sentence.
        alpha: the length-penalty exponent (0.6 in Wu et al.; 0 = none).
        max_new_tokens: as in :func:`greedy_decode`.

    Returns:
        (B, N) int64 tokens of the best hypothesis of each sentence.
    """
    _require_count("beam_size", beam_size)
    if not isinstance(alpha, (int, float)) or alpha < 0:
        raise ValueError(f"alpha must be a number >= 0; got {alpha!r}")
    batch, device = src.shape[0], src.device
    memory, valid = model.encode(src)
    limits = _step_limits(model, valid, max_new_tokens).repeat_interleave(beam_size)  # (B K,)
    memory, valid = memory.repeat_interleave(beam_size, 0), valid.repeat_interleave(beam_size, 0)
    cache = model.new_cache()
    rows = batch * beam_size
    tokens = torch.full((rows, 1), model.bos_id, dtype=torch.long, device=device)
    scores = torch.zeros(batch, beam_size, device=device)
    scores[:, 1:] = float("-inf")  # all beams start identical: keep only the first
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)
    row_offsets = (torch.arange(batch, device=device) * beam_size)[:, None]  # (B, 1)
    for step in range(int(limits.max())):
        logits = model.decode(tokens[:, -1:], memory, valid, cache, last_only=True)[:, -1]
        log_probs = F.log_softmax(logits.float(), dim=-1)  # (B K, V)
        vocab = log_probs.shape[-1]
        # A finished hypothesis continues only with padding, at no cost and no extra length.
        log_probs[finished] = float("-inf")
        log_probs[finished, model.pad_id] = 0.0
        totals = scores.reshape(rows, 1) + log_probs  # (B K, V)
        new_lengths = lengths + (~finished).long()  # (B K,)
        ranked = totals / length_penalty(new_lengths, alpha)[:, None]
        _, best = ranked.reshape(batch, beam_size * vocab).topk(beam_size, dim=-1)  # (B, K)
        origin = (row_offsets + best // vocab).reshape(rows)  # rows the winners extend
        next_token = (best % vocab).reshape(rows)
        scores = totals.reshape(batch, -1).gather(1, best)
        tokens = torch.cat([tokens[origin], next_token[:, None]], dim=1)
        lengths, finished = new_lengths[origin], finished[origin] | (next_token == model.eos_id)
        finished |= limits <= step + 1  # (rows of one sentence share its limit)
        cache.reorder(origin)
        if finished.all():
            break
    final = scores / length_penalty(lengths.reshape(batch, beam_size), alpha)
    winner = (row_offsets[:, 0] + final.argmax(dim=-1))  # (B,)
    return tokens[winner, 1:]
