"""Turning a trained :class:`qkv.seq2seq.Seq2SeqTransformer` into translations (chapter 6).

* :func:`greedy_decode`: at each step, append the most likely next token. With the key/value
  cache (the default) every step feeds only the newest token through the decoder, which
  reuses the keys and values of all earlier positions; without it each step re-runs the
  whole prefix. Both produce the same tokens; the cache turns a quadratic amount of decoder
  work into a linear one.
* :class:`FastCachedDecoder`: the fast path of the cache, which both decoders use by default.
  It computes what the readable cached path (``model.decode`` with a
  :class:`qkv.transformer.KVCache`, shown in chapter 6) computes, but prepares once per batch
  what that path repeats at every step, so that a step of a small model is not mostly Python
  and dispatch overhead (tested to agree with both other paths).
* :func:`beam_search`: keep the ``beam_size`` best live partial translations at every step;
  a hypothesis that ends leaves the beam for a list of finished ones, and the best finished
  one wins, comparing hypotheses of different lengths with the length penalty of Wu et al.
  (2016), ``lp(n) = ((5 + n) / 6) ** alpha``.

Both return (B, N) int64 tokens: the generated tokens after ``bos_id``, ending with
``eos_id`` (unless the sentence's step limit ran out first), then ``pad_id`` up to the
longest row. A sentence's result does not depend on the other sentences of its batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from qkv.attention import _require_count
from qkv.positional import _AdditivePositions
from qkv.seq2seq import Seq2SeqTransformer
from qkv.transformer import DecoderBlock


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
                  use_cache: bool = True, fast: bool = True) -> torch.Tensor:
    """Greedy decoding: always take the most likely next token.

    Args:
        model: a :class:`qkv.seq2seq.Seq2SeqTransformer` (put it in eval mode first).
        src: source ids (B, S) int64, padded with the model's ``pad_id``.
        max_new_tokens: most tokens to generate per sentence (default: 1.5 x the sentence's
            source length + 10; never more than ``model.max_len - 1``).
        use_cache: feed one token per step through a key/value cache (True) or re-run the
            whole prefix at each step (False); the tokens are the same.
        fast: with the cache, use :class:`FastCachedDecoder` (True, where the model allows:
            see :meth:`FastCachedDecoder.supports`) or the readable cached path of
            ``model.decode`` (False); the tokens are the same.

    Returns:
        (B, N) int64 tokens, N <= max_new_tokens; see the module docstring.
    """
    memory, valid = model.encode(src)
    limits = _step_limits(model, valid, max_new_tokens)
    steps = int(limits.max())
    next_logits = decoding_steps(model, memory, valid, steps, use_cache, fast)
    tokens = torch.full((src.shape[0], 1), model.bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for n in range(1, steps + 1):  # n: tokens generated after this step
        # max(...).indices is argmax (the first of equal maxima), with a faster CPU kernel
        next_token = next_logits(tokens).max(dim=-1).indices.masked_fill(finished, model.pad_id)
        tokens = torch.cat([tokens, next_token[:, None]], dim=1)
        finished |= (next_token == model.eos_id) | (limits <= n)
        if finished.all():
            break
    return tokens[:, 1:]


def decoding_steps(model, memory: torch.Tensor, valid: torch.Tensor, steps: int,
                   use_cache: bool = True, fast: bool = True):
    """The next-token logits of a decoding loop, one step per call.

    Args:
        model: a :class:`qkv.seq2seq.Seq2SeqTransformer` (or an object with its ``decode``
            and ``new_cache``).
        memory, valid: what ``model.encode`` returned, (B, S, d_model) and (B, S) bool.
        steps: the most steps that will be taken (room for the fast path's buffers).
        use_cache, fast: as in :func:`greedy_decode`.

    Returns:
        A callable ``step(tokens (B, t) int64) -> logits (B, V) float``, the logits of the
        token after ``tokens`` (``<bos>`` and every token so far; the cached paths read only
        the last one), with a method ``reorder(index (B',) int64, sources: bool)`` that keeps
        the batch rows ``index`` in that order, for beam search (``sources``: whether the
        rows' source sentences changed too, or only their order among equal sources).
    """
    if use_cache and fast and FastCachedDecoder.supports(model):
        return FastCachedDecoder(model, memory, valid, steps)
    return _ReadableSteps(model, memory, valid, model.new_cache() if use_cache else None)


class _ReadableSteps:
    """:func:`decoding_steps` through ``model.decode``: the whole prefix at each step (no
    cache), or only the newest token with a :class:`qkv.transformer.KVCache`."""

    def __init__(self, model, memory, valid, cache):
        self.model, self.memory, self.valid, self.cache = model, memory, valid, cache

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        new = tokens if self.cache is None else tokens[:, -1:]
        return self.model.decode(new, self.memory, self.valid, self.cache, last_only=True)[:, -1]

    def reorder(self, index: torch.Tensor, sources: bool = True) -> None:
        if sources:
            self.memory, self.valid = self.memory[index], self.valid[index]
        if self.cache is not None:
            self.cache.reorder(index)


@dataclass(slots=True)
class _FastBlock:
    """One decoder block's weights and cache as :class:`FastCachedDecoder` uses them.

    A linear map is a pair ``(weight_t (n_in, n_out), bias (n_out,) or None)`` with the
    matrix stored transposed and contiguous (see :func:`_affine`).
    """

    norms: tuple  # LayerNorm arguments (shape, weight, bias, eps) of the three sublayers
    qkv: tuple  # self-attention W_q, W_k, W_v side by side: (d_model, 3 d_model)
    out: tuple  # self-attention W_o
    cross_q: tuple  # cross-attention W_q
    cross_out: tuple  # cross-attention W_o
    ffn_in: tuple  # (d_model, d_ff)
    ffn_out: tuple  # (d_ff, d_model)
    memory_keys: torch.Tensor  # (B, H, S, D_h): cross-attention keys of the source, once
    memory_values: torch.Tensor  # (B, H, S, D_h)
    kv: torch.Tensor  # (B, 2, H, steps, D_h): self-attention keys and values, in place
    keys: torch.Tensor | None = None  # kv[:, 0], (B, H, steps, D_h)
    values: torch.Tensor | None = None  # kv[:, 1]

    def __post_init__(self):
        self.keys, self.values = self.kv[:, 0], self.kv[:, 1]


class FastCachedDecoder:
    """The fast path of cached decoding: one new token per call, little work besides the maths.

    It computes what the readable cached path computes, ``model.decode(tokens[:, -1:], memory,
    valid, cache, last_only=True)`` with a :class:`qkv.transformer.KVCache` (see
    ``DecoderBlock._cached_self_attention``), and gives the same tokens (tested, and equal
    logits in float64 to 1e-10). The readable path is written for the page; for a small model
    one of its steps is mostly Python and dispatch overhead and re-reading the weights, so this
    class does once per batch what that path repeats at every step:

    * it takes every weight out of its module (no module calls and no input checks per step);
    * it stacks each block's query, key and value matrices into one (one product, not three);
    * it stores every matrix transposed and contiguous, (n_in, n_out): its product with a few
      rows (``torch.addmm``) ran faster on the CPUs tried than ``F.linear``, which multiplies
      by the transposed view of the (n_out, n_in) weight;
    * it projects the encoder output to cross-attention keys and values once, and turns the
      source padding into a float bias of the scores (0, or -inf at padding) once;
    * it allocates key/value buffers for all ``steps`` positions and writes each step's key
      and value into them in place;
    * it builds no mask for the self-attention: the newest position may attend to every
      cached one, itself included.

    The weights are copied when the decoder is made: make a new one after changing them.

    Args:
        model: a :class:`qkv.seq2seq.Seq2SeqTransformer` in eval mode (see :meth:`supports`).
        memory: the encoder output (B, S, d_model) from ``model.encode``.
        valid: (B, S) bool, True at real source tokens (from ``model.encode``).
        steps: the most tokens that will be fed (at most ``model.max_len``).

    Calling it with ``tokens`` (B, t) int64 (``<bos>`` and the tokens so far; only the last
    one, at position t - 1, is read) returns the logits (B, V) of the next token, in the
    dtype of ``memory``, without autograd. :meth:`reorder` serves beam search.
    """

    @staticmethod
    def supports(model) -> bool:
        """Whether ``model`` is a :class:`qkv.seq2seq.Seq2SeqTransformer` this class can run:
        in eval mode (this path has no dropout), with additive positions and the package's
        :class:`qkv.transformer.DecoderBlock` s."""
        return (isinstance(model, Seq2SeqTransformer) and not model.training
                and isinstance(model.positions, _AdditivePositions)
                and all(type(block) is DecoderBlock for block in model.transformer.decoder.layers))

    @torch.no_grad()
    def __init__(self, model, memory: torch.Tensor, valid: torch.Tensor, steps: int):
        if not self.supports(model):
            raise ValueError("model must be a Seq2SeqTransformer in eval mode with the "
                             "package's decoder blocks (see FastCachedDecoder.supports)")
        _require_count("steps", steps, minimum=0)
        if steps > model.max_len:
            raise ValueError(f"steps must be at most model.max_len={model.max_len}; got {steps}")
        decoder = model.transformer.decoder
        attention = decoder.layers[0].self_attn
        self.heads, self.head_dim = attention.num_heads, attention.head_dim
        self.pre_ln = decoder.layers[0].res_self.norm_first
        self.steps, self.length = steps, 0
        self.embedding, self.scale = model.tgt_embed.weight.detach(), math.sqrt(model.d_model)
        self.positions = model.positions.table()[:steps].detach().to(memory.dtype)
        self.final_norm = (_norm_args(decoder.norm) if isinstance(decoder.norm, nn.LayerNorm)
                           else None)
        self.output = _transposed(model.output)  # (d_model, V)
        # Source padding as a bias of the scores; a source without tokens attends to all of
        # them and gets a zero output, as in qkv.multihead.fused_attention.
        has_source = valid.any(dim=1)  # (B,)
        hidden = ~(valid | ~has_source[:, None])[:, None, None, :]  # (B, 1, 1, S)
        self.memory_bias = None if not hidden.any() else torch.zeros(
            hidden.shape, dtype=memory.dtype, device=memory.device).masked_fill(
            hidden, float("-inf"))
        self.no_source = None if bool(has_source.all()) else ~has_source[:, None, None, None]
        self.blocks = [self._block(block, memory, steps) for block in decoder.layers]

    def _block(self, block, memory, steps) -> _FastBlock:
        sa, ca = block.self_attn, block.cross_attn
        w_qkv = torch.cat([sa.W_q.weight, sa.W_k.weight, sa.W_v.weight])  # (3 d, d)
        b_qkv = None if sa.W_q.bias is None else torch.cat([sa.W_q.bias, sa.W_k.bias,
                                                            sa.W_v.bias])
        return _FastBlock(
            norms=tuple(_norm_args(r.norm) for r in (block.res_self, block.res_cross,
                                                       block.res_ffn)),
            qkv=(w_qkv.t().contiguous(), b_qkv), out=_transposed(sa.W_o),
            cross_q=_transposed(ca.W_q), cross_out=_transposed(ca.W_o),
            ffn_in=_transposed(block.ffn.linear1), ffn_out=_transposed(block.ffn.linear2),
            memory_keys=ca.split_heads(ca.W_k(memory)),  # (B, H, S, D_h)
            memory_values=ca.split_heads(ca.W_v(memory)),
            kv=memory.new_empty(memory.shape[0], 2, self.heads, steps, self.head_dim))

    def _sublayer_in(self, x, norm):  # ResidualNorm.before
        return torch.layer_norm(x, *norm) if self.pre_ln else x

    def _sublayer_out(self, x, update, norm):  # ResidualNorm.after
        return x + update if self.pre_ln else torch.layer_norm(x + update, *norm)

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        t = self.length  # the position of the newest token
        if t >= self.steps:
            raise ValueError(f"the decoder was made for {self.steps} steps; all are used")
        self.length = t + 1
        x = torch.embedding(self.embedding, tokens[:, -1]) * self.scale + self.positions[t]
        qkv_shape = (-1, 3, self.heads, 1, self.head_dim)  # (B, q k v, H, 1 position, D_h)
        q_shape = (-1, self.heads, 1, self.head_dim)
        for b in self.blocks:  # x: (B, d_model) throughout
            # 1. self-attention: store this position's key and value, attend to positions 0..t
            qkv = _affine(self._sublayer_in(x, b.norms[0]), *b.qkv).view(qkv_shape)
            b.kv[:, :, :, t:t + 1] = qkv[:, 1:]  # (B, 2, H, 1, D_h)
            heads = F.scaled_dot_product_attention(qkv[:, 0], b.keys[:, :, :t + 1],
                                                   b.values[:, :, :t + 1])  # (B, H, 1, D_h)
            x = self._sublayer_out(x, _affine(heads.reshape(x.shape), *b.out), b.norms[0])
            # 2. cross-attention: the query against the source's keys and values
            q = _affine(self._sublayer_in(x, b.norms[1]), *b.cross_q).view(q_shape)
            heads = F.scaled_dot_product_attention(q, b.memory_keys, b.memory_values,
                                                   attn_mask=self.memory_bias)
            if self.no_source is not None:
                heads = heads.masked_fill(self.no_source, 0.0)
            x = self._sublayer_out(x, _affine(heads.reshape(x.shape), *b.cross_out),
                                   b.norms[1])
            # 3. the feed-forward network
            h = torch.relu(_affine(self._sublayer_in(x, b.norms[2]), *b.ffn_in))  # (B, d_ff)
            x = self._sublayer_out(x, _affine(h, *b.ffn_out), b.norms[2])
        if self.final_norm is not None:
            x = torch.layer_norm(x, *self.final_norm)
        return _affine(x, *self.output)  # (B, V)

    def reorder(self, index: torch.Tensor, sources: bool = True) -> None:
        """Keep the batch rows ``index`` (B',) int64, in that order. With ``sources=False``
        the rows' source sentences are known to be unchanged (beams of one sentence trading
        places), so only the self-attention keys and values move."""
        t = self.length  # only the filled positions are copied
        for b in self.blocks:
            kv = b.kv.new_empty(len(index), *b.kv.shape[1:])
            torch.index_select(b.kv[:, :, :, :t], 0, index, out=kv[:, :, :, :t])
            b.kv, b.keys, b.values = kv, kv[:, 0], kv[:, 1]
            if sources:
                b.memory_keys = b.memory_keys.index_select(0, index)
                b.memory_values = b.memory_values.index_select(0, index)
        if sources and self.memory_bias is not None:
            self.memory_bias = self.memory_bias.index_select(0, index)
        if sources and self.no_source is not None:
            self.no_source = self.no_source.index_select(0, index)


def _affine(x: torch.Tensor, weight_t: torch.Tensor, bias: torch.Tensor | None):
    """``x (B, n_in) @ weight_t (n_in, n_out) + bias``: a linear layer, matrix transposed."""
    return torch.mm(x, weight_t) if bias is None else torch.addmm(bias, x, weight_t)


def _transposed(linear: nn.Linear) -> tuple:
    """``(weight.T (n_in, n_out) contiguous, bias or None)`` of ``linear``, for :func:`_affine`."""
    bias = None if linear.bias is None else linear.bias.detach()
    return linear.weight.detach().t().contiguous(), bias


def _norm_args(norm: nn.LayerNorm) -> tuple:
    """The arguments of ``torch.layer_norm`` after the input, for a ``nn.LayerNorm``."""
    weight = None if norm.weight is None else norm.weight.detach()
    bias = None if norm.bias is None else norm.bias.detach()
    return tuple(norm.normalized_shape), weight, bias, norm.eps


def length_penalty(lengths: torch.Tensor, alpha: float) -> torch.Tensor:
    """Wu et al. (2016): ``((5 + n) / 6) ** alpha`` for hypothesis lengths n (any shape).

    Dividing a log-probability (a negative number) by it favours longer hypotheses as
    ``alpha`` grows; ``alpha = 0`` compares raw log-probabilities.
    """
    return ((5.0 + lengths.float()) / 6.0) ** alpha


@torch.no_grad()
def beam_search(model, src: torch.Tensor, beam_size: int = 4, alpha: float = 0.6,
                max_new_tokens: int | None = None, use_cache: bool = True,
                fast: bool = True) -> torch.Tensor:
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
        use_cache, fast: as in :func:`greedy_decode`; the tokens are the same.

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
    next_logits = decoding_steps(model, memory, valid, int(limits.max()), use_cache, fast)
    active = torch.arange(src.shape[0], device=device)  # sentences still searching, (A,)
    tokens = torch.full((len(active) * k, 1), model.bos_id, dtype=torch.long, device=device)
    scores = torch.full((len(active), k), float("-inf"), device=device)  # live log p, (A, K)
    scores[:, 0] = 0.0  # all K beams start identical: keep only the first
    finished = _Finished(src.shape[0], alpha)
    for step in range(int(limits.max())):
        n = step + 1  # tokens in every candidate of this step, its last one included
        log_probs = F.log_softmax(next_logits(tokens).float(), dim=-1)  # (A K, V)
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
        # the cached rows follow their beams; the rows of finished sentences go
        next_logits.reorder(origin[keep_rows], sources=len(keep) < len(done))
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
