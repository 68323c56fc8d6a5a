"""Turning a trained :class:`qkv.seq2seq.Seq2SeqTransformer` into translations (chapter 6).

* :func:`greedy_decode`: at each step, append the most likely next token. With the key/value
  cache (the default) every step feeds only the newest token through the decoder, which
  reuses the keys and values of all earlier positions; without it each step re-runs the
  whole prefix. Both produce the same tokens; the cache turns a quadratic amount of decoder
  work into a linear one.
* :func:`beam_search`: keep the ``beam_size`` best live partial translations at every step;
  a hypothesis that ends leaves the beam for a list of finished ones, and the best finished
  one wins, comparing hypotheses of different lengths with the length penalty of Wu et al.
  (2016), ``lp(n) = ((5 + n) / 6) ** alpha``.

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
                max_new_tokens: int | None = None, use_cache: bool = True) -> torch.Tensor:
    """Beam search: the ``beam_size`` best live hypotheses per sentence, finished ones apart.

    Every step extends each of the K live hypotheses of a sentence by every token and ranks
    the K x V candidates by their log-probability (all candidates of a step have the same
    length, so no normalisation is needed to rank them). Then, as in fairseq and Hugging Face:

    * a candidate that ends with ``eos_id`` and ranks among the best K *leaves the beam*: it
      joins the sentence's list of finished hypotheses with its length-normalised score
      ``log p / lp(n)``, n counting the generated tokens with ``eos_id`` (:func:`length_penalty`);
      an ``eos_id`` ranked below the best K is ignored, as it would have fallen off the beam;
    * the best K candidates that did not end become the live beam, so the beam stays full of
      hypotheses that can still grow, however many have finished.

    A sentence stops when K hypotheses have finished (fairseq's rule); or when no live one can
    still beat the best finished one (a continuation's log-probability only falls, so its best
    possible score is ``log p / lp(step limit)`` for ``alpha >= 0``); or at its step limit,
    where the live hypotheses join the finished list unfinished. Its best finished hypothesis
    (highest normalised score) is the answer. With ``beam_size=1`` this is greedy decoding;
    with a beam as large as the number of possible hypotheses nothing is pruned and it returns
    the best hypothesis of all (both tested).

    Args:
        model: a :class:`qkv.seq2seq.Seq2SeqTransformer` in eval mode.
        src: source ids (B, S) int64, padded with ``pad_id``.
        beam_size: K, live hypotheses kept per sentence.
        alpha: the length-penalty exponent (0.6 in Wu et al.; 0 = none).
        max_new_tokens: as in :func:`greedy_decode`.
        use_cache: feed one token per step through a key/value cache (True) or re-run every
            prefix (False); the tokens are the same.

    Returns:
        (B, N) int64 tokens of the best hypothesis of each sentence; see the module docstring.
    """
    _require_count("beam_size", beam_size)
    if not isinstance(alpha, (int, float)) or alpha < 0:
        raise ValueError(f"alpha must be a number >= 0; got {alpha!r}")
    k, device = beam_size, src.device
    memory, valid = model.encode(src)
    limits = _step_limits(model, valid, max_new_tokens)  # (B,)
    memory, valid = memory.repeat_interleave(k, 0), valid.repeat_interleave(k, 0)  # (A K, ...)
    cache = model.new_cache() if use_cache else None
    active = torch.arange(src.shape[0], device=device)  # sentences still searching, (A,)
    tokens = torch.full((len(active) * k, 1), model.bos_id, dtype=torch.long, device=device)
    scores = torch.full((len(active), k), float("-inf"), device=device)  # live log p, (A, K)
    scores[:, 0] = 0.0  # all K beams start identical: keep only the first
    finished = _Finished(src.shape[0], alpha)
    for step in range(int(limits.max())):
        n = step + 1  # tokens in every candidate of this step, its last one included
        logits = model.decode(tokens[:, -1:] if use_cache else tokens, memory, valid, cache,
                              last_only=True)[:, -1]
        log_probs = F.log_softmax(logits.float(), dim=-1)  # (A K, V)
        vocab = log_probs.shape[-1]
        totals = (scores.reshape(-1, 1) + log_probs).reshape(len(active), k * vocab)
        candidates, index = totals.topk(min(2 * k, k * vocab), dim=-1)  # (A, 2K), best first
        beam, token = index // vocab, index % vocab
        ends = token == model.eos_id
        rows = torch.arange(len(active), device=device)[:, None] * k + beam  # (A, 2K)
        # 1. An <eos> among the K best candidates finishes its hypothesis, outside the beam.
        for a, r in (ends[:, :k] & candidates[:, :k].isfinite()).nonzero().tolist():
            finished.add(active[a], candidates[a, r], tokens[rows[a, r], 1:], n, model.eos_id)
        # 2. The K best candidates that did not end are the new live beam.
        scores, pick = candidates.masked_fill(ends, float("-inf")).topk(k, dim=-1)  # (A, K)
        origin = rows.gather(1, pick).reshape(-1)  # (A K,) the rows the live beam extends
        tokens = torch.cat([tokens[origin], token.gather(1, pick).reshape(-1, 1)], dim=1)
        # 3. A sentence at its step limit finishes its live hypotheses; is it done?
        at_limit = limits[active] <= n  # (A,)
        for a in at_limit.nonzero()[:, 0].tolist():
            for b in range(k):
                if scores[a, b].isfinite():
                    finished.add(active[a], scores[a, b], tokens[a * k + b, 1:], n)
        done = at_limit | finished.settled(active, scores, limits[active], k)
        # 4. Search on with the sentences that are not done.
        keep = (~done).nonzero()[:, 0]  # (A',)
        if len(keep) == 0:
            break
        keep_rows = (keep[:, None] * k + torch.arange(k, device=device)).reshape(-1)
        active, scores, tokens = active[keep], scores[keep], tokens[keep_rows]
        origin = origin[keep_rows]
        if len(keep) < len(done):  # the memory rows of the finished sentences go
            memory, valid = memory[origin], valid[origin]
        if cache is not None:
            cache.reorder(origin)
    return finished.best_tokens(model.pad_id, device)


class _Finished:
    """The finished hypotheses of each sentence of a :func:`beam_search` call."""

    def __init__(self, sentences: int, alpha: float):
        self.alpha = alpha
        self.lists: list[list[tuple[float, list[int]]]] = [[] for _ in range(sentences)]

    def add(self, sentence, log_p, prefix: torch.Tensor, n: int, last: int | None = None):
        """Keep the hypothesis ``prefix`` (+ ``last``) of n tokens and log-probability log_p."""
        score = float(log_p) / float(length_penalty(torch.tensor(n), self.alpha))
        self.lists[int(sentence)].append((score, prefix.tolist() + ([] if last is None
                                                                    else [last])))

    def best_score(self, sentence) -> float:
        return max((s for s, _ in self.lists[int(sentence)]), default=float("-inf"))

    def settled(self, active: torch.Tensor, live: torch.Tensor, limits: torch.Tensor,
                k: int) -> torch.Tensor:
        """(A,) bool: K hypotheses have finished, or no live one (log p ``live`` (A, K)) can
        beat the best finished one at any length up to the step limit ``limits`` (A,)."""
        bound = live.max(dim=1).values / length_penalty(limits, self.alpha)  # (A,)
        return torch.tensor([len(self.lists[int(s)]) >= k or self.best_score(s) >= float(b)
                             for s, b in zip(active, bound)], dtype=torch.bool,
                            device=active.device)

    def best_tokens(self, pad_id: int, device) -> torch.Tensor:
        """(B, N) int64: each sentence's best finished hypothesis, padded with ``pad_id``."""
        best = [max(hyps, key=lambda h: h[0])[1] if hyps else [] for hyps in self.lists]
        out = torch.full((len(best), max(map(len, best), default=0)), pad_id, dtype=torch.long)
        for row, hypothesis in enumerate(best):
            out[row, :len(hypothesis)] = torch.tensor(hypothesis, dtype=torch.long)
        return out.to(device)
