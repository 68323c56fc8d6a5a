"""A trained attention lab: reversing digit strings by attention alone (chapter 3).

The task needs alignment: to write the reversed string, output position t must read source
position n - 1 - t of a source of length n, and the lengths vary, so no fixed position will do.
A bidirectional GRU reads the source and gives every position a key (which can know how far the
position is from either end); the values are the digits' embeddings; each output position has
one learned query. An output is right only if its query's weight lands on the right source
position, so the learned weights *are* the alignment. Only the scoring function changes:

* ``"additive"``: :class:`qkv.attention.AdditiveAttention`, w_v . tanh(W_q q + W_k k)
  (Bahdanau et al., 2015);
* ``"dot"``: :class:`qkv.attention.DotProductAttention`, q . k / sqrt(d), no parameters;
* ``"bilinear"``: :class:`qkv.attention.BilinearAttention`, q^T W k (Luong et al., 2015);
* ``"uniform"``: a control without a score: every valid key gets the same weight.

Padding positions are masked with :func:`qkv.attention.padding_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from qkv.attention import (
    AdditiveAttention,
    BilinearAttention,
    DotProductAttention,
    _require_count,
    attention_pooling,
    padding_mask,
)

SCORES = ("additive", "dot", "bilinear", "uniform")


@dataclass
class ReversalData:
    """Padded digit strings and their reversals.

    Attributes:
        sources: (N, L) int64 digits 0..num_symbols-1, padded with ``pad_id`` after the end.
        valid_lens: (N,) int64 lengths n of the strings.
        targets: (N, L) int64, ``targets[i, t] = sources[i, n_i - 1 - t]`` for t < n_i, else
            ``pad_id``.
        pad_id: the id of padding (``num_symbols``).
    """

    sources: torch.Tensor
    valid_lens: torch.Tensor
    targets: torch.Tensor
    pad_id: int


def reversal_data(num_examples: int, min_len: int = 3, max_len: int = 8,
                  num_symbols: int = 10, seed: int = 0) -> ReversalData:
    """Draw ``num_examples`` random digit strings with lengths in [min_len, max_len].

    The id ``num_symbols`` is padding. Returns
    a :class:`ReversalData`; the same seed gives the same strings.
    """
    _require_count("num_examples", num_examples)
    _require_count("min_len", min_len)
    _require_count("num_symbols", num_symbols, minimum=2)
    if not isinstance(max_len, int) or max_len < min_len:
        raise ValueError(f"max_len must be an int >= min_len={min_len}; got {max_len!r}")
    generator = torch.Generator().manual_seed(seed)
    pad_id = num_symbols
    lens = torch.randint(min_len, max_len + 1, (num_examples,), generator=generator)
    digits = torch.randint(0, num_symbols, (num_examples, max_len), generator=generator)
    positions = torch.arange(max_len)  # (L,)
    valid = positions < lens[:, None]  # (N, L)
    sources = digits.masked_fill(~valid, pad_id)
    mirrored = (lens[:, None] - 1 - positions).clamp(min=0)  # (N, L): source index n - 1 - t
    targets = sources.gather(1, mirrored).masked_fill(~valid, pad_id)
    return ReversalData(sources, lens, targets, pad_id)


class UniformAttention(nn.Module):
    """The control without a score: all valid keys get the same weight (scores all zero)."""

    def forward(self, queries, keys, values, mask=None):
        scores = queries.new_zeros(*queries.shape[:-1], keys.shape[-2])  # (..., L_q, L_k)
        return attention_pooling(scores, values, mask)


def make_attention(score: str, num_hiddens: int) -> nn.Module:
    """The attention module for one of :data:`SCORES`, for queries and keys of size num_hiddens."""
    if score == "additive":
        return AdditiveAttention(num_hiddens, num_hiddens, num_hiddens)
    if score == "dot":
        return DotProductAttention()
    if score == "bilinear":
        return BilinearAttention(num_hiddens, num_hiddens)
    if score == "uniform":
        return UniformAttention()
    raise ValueError(f"score must be one of {SCORES}; got {score!r}")


class AlignmentModel(nn.Module):
    """Reverse a string by attention alone: a query per output position, a key per source digit.

    The keys are the states of a bidirectional GRU over the source, so the key of position j
    can know how far j is from either end of the string; the values are the embeddings of the
    source digits themselves, so an output can only be right if its weight sits on the one
    source position holding its digit. The query of output position t is a learned vector q_t
    (it cannot see the source): finding position n - 1 - t is left to the score.

    Args:
        score: one of :data:`SCORES`.
        max_len: L, the longest string (the number of queries).
        num_symbols: the digits 0..num_symbols-1 (id num_symbols is padding).
        embed_size: size of the digit embeddings (the values).
        num_hiddens: h, the size of a query and of a key (each GRU direction has h/2).

    ``forward(sources (B, L) int64, valid_lens (B,) int64)`` returns
    ``(logits (B, L, num_symbols), weights (B, L, L))``; ``weights[b, t]`` is the attention
    of output position t over the source positions (zero on padding).
    """

    def __init__(self, score: str, max_len: int, num_symbols: int = 10, embed_size: int = 32,
                 num_hiddens: int = 32):
        super().__init__()
        for name, value in (("max_len", max_len), ("embed_size", embed_size),
                            ("num_hiddens", num_hiddens)):
            _require_count(name, value)
        _require_count("num_symbols", num_symbols, minimum=2)
        if num_hiddens % 2:
            raise ValueError(f"num_hiddens must be even (two GRU directions); got {num_hiddens}")
        self.score, self.max_len, self.num_symbols = score, max_len, num_symbols
        self.embedding = nn.Embedding(num_symbols + 1, embed_size)
        self.encoder = nn.GRU(embed_size, num_hiddens // 2, batch_first=True, bidirectional=True)
        self.queries = nn.Parameter(torch.randn(max_len, num_hiddens))  # q_t, one per output
        self.attention = make_attention(score, num_hiddens)
        self.output = nn.Linear(embed_size, num_symbols)

    def forward(self, sources, valid_lens):
        batch, length = sources.shape
        if length > self.max_len:
            raise ValueError(f"sources have length {length} > max_len={self.max_len}")
        values = self.embedding(sources)  # (B, L, e): the digits
        packed = nn.utils.rnn.pack_padded_sequence(values, valid_lens.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        keys, _ = self.encoder(packed)
        keys, _ = nn.utils.rnn.pad_packed_sequence(keys, batch_first=True,
                                                   total_length=length)  # (B, L, h)
        queries = self.queries[:length].expand(batch, -1, -1)  # (B, L, h)
        mask = padding_mask(valid_lens, length)  # (B, 1, L): no weight on padding
        context, weights = self.attention(queries, keys, values, mask)  # (B, L, e), (B, L, L)
        return self.output(context), weights


def reversal_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Mean cross-entropy over the non-padding positions: logits (B, L, V), targets (B, L)."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id)


@dataclass
class LabResult:
    """What :func:`train_alignment` measured for one scoring function.

    Attributes:
        score: the scoring function's name.
        losses: the training loss of every step.
        token_accuracy: share of test output digits right, decoding greedily.
        exact_match: share of test strings reversed without an error.
        diagonal_weight: mean attention weight that output t puts on source n - 1 - t, the
            position it must copy (1 = perfect alignment; 1/n for uniform weights).
        weights: (L, L) attention weights of the first test string, for a heat map.
        length: that string's length n (the meaningful block is weights[:n, :n]).
        parameters: the number of parameters of the scoring function.
        model: the trained model (in eval mode).
    """

    score: str
    losses: list
    token_accuracy: float
    exact_match: float
    diagonal_weight: float
    weights: torch.Tensor
    length: int
    parameters: int
    model: nn.Module


def evaluate(model: AlignmentModel, data: ReversalData) -> tuple[float, float, float]:
    """Greedy decoding of ``data``: (token accuracy, exact match, mean weight on the mirror)."""
    model.eval()
    with torch.no_grad():
        logits, weights = model(data.sources, data.valid_lens)  # (N, L, V), (N, L, L)
    valid = data.targets != data.pad_id  # (N, L)
    right = (logits.argmax(-1) == data.targets) & valid
    token_accuracy = right.sum().item() / valid.sum().item()
    exact = (right | ~valid).all(-1).float().mean().item()
    length = data.sources.shape[1]
    mirrored = (data.valid_lens[:, None] - 1 - torch.arange(length)).clamp(min=0)  # (N, L)
    on_mirror = weights.gather(2, mirrored[..., None]).squeeze(-1)  # (N, L)
    diagonal = on_mirror[valid].mean().item()
    return token_accuracy, exact, diagonal


def train_alignment(score: str, steps: int, train: ReversalData, test: ReversalData,
                    batch_size: int = 64, lr: float = 5e-3, seed: int = 0,
                    num_hiddens: int = 32) -> LabResult:
    """Train :class:`AlignmentModel` with one scoring function and measure it on ``test``.

    Adam with gradient clipping at 1.0, for ``steps`` steps over random
    batches of ``train`` (the batches depend only on ``seed``, so every scoring function sees
    the same ones). Returns a :class:`LabResult`.
    """
    _require_count("steps", steps)
    _require_count("batch_size", batch_size)
    torch.manual_seed(seed)
    model = AlignmentModel(score, train.sources.shape[1], num_symbols=train.pad_id,
                           num_hiddens=num_hiddens)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(steps):
        rows = torch.randint(0, len(train.sources), (batch_size,), generator=generator)
        logits, _ = model(train.sources[rows], train.valid_lens[rows])
        loss = reversal_loss(logits, train.targets[rows], train.pad_id)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    token_accuracy, exact, diagonal = evaluate(model, test)
    with torch.no_grad():
        _, weights = model(test.sources[:1], test.valid_lens[:1])
    return LabResult(score, losses, token_accuracy, exact, diagonal, weights[0],
                     int(test.valid_lens[0]), sum(p.numel() for p in model.attention.parameters()),
                     model.eval())
