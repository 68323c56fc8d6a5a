"""Subword vocabulary and length-bucketed batches for translation (chapter 6).

* :class:`SubwordTokenizer`: byte-pair encoding (Sennrich et al., 2016) learned with the
  ``tokenizers`` library from the TRAINING sentences only (German and English together: one
  shared vocabulary, so names and numbers that both languages write alike get the same ids).
  Spaces are kept as a word-start marker (``▁``), so decoding gives back the cased,
  untokenized text that sacreBLEU scores.
* :func:`make_batches`: sentences of similar length go into the same batch, so little of a
  batch is padding, and each batch holds about ``max_tokens`` tokens.
* :func:`epoch_batches`: the batches in a fresh order every epoch, as a function of the step,
  which makes training exactly resumable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from qkv.attention import _require_count

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
"""Special tokens, with ids 0, 1, 2, 3 in this order."""
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


class SubwordTokenizer:
    """A BPE tokenizer with the special tokens of :data:`SPECIAL_TOKENS`.

    Build one with :meth:`train` or :meth:`load`. ``encode(text) -> list[int]`` (no special
    tokens added), ``decode(ids) -> str`` (stops at ``<eos>``, skips special tokens).
    """

    FILE = "tokenizer.json"

    def __init__(self, tokenizer):
        from tokenizers import Tokenizer

        if not isinstance(tokenizer, Tokenizer):
            raise TypeError(f"tokenizer must be a tokenizers.Tokenizer; got {type(tokenizer)}")
        for expected, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != expected:
                raise ValueError(f"the tokenizer must give {token} the id {expected}")
        self.tokenizer = tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2
              ) -> SubwordTokenizer:
        """Learn a BPE vocabulary of ``vocab_size`` tokens (specials included) from ``texts``.

        Text is NFC-normalised and split at spaces, which become the word-start marker ``▁``,
        and at punctuation; merges never cross these splits. Pass training sentences only: a
        vocabulary learned from the test set would leak it into the model.
        """
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        _require_count("vocab_size", vocab_size, minimum=len(SPECIAL_TOKENS) + 1)
        tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
        tokenizer.normalizer = normalizers.NFC()
        # Spaces become the word-start marker, then punctuation is cut off the words.
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
        tokenizer.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(SPECIAL_TOKENS), show_progress=False)
        tokenizer.train_from_iterator(texts, trainer)
        return cls(tokenizer)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no ``<bos>``/``<eos>`` added)."""
        return self.tokenizer.encode(text).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` for many texts at once (faster)."""
        return [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]

    def tokens(self, text: str) -> list[str]:
        """The subword strings of ``text``, e.g. ``['▁Ein', '▁Hund', '▁rennt', '.']``."""
        return self.tokenizer.encode(text).tokens

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` up to the first ``<eos>``; special tokens are skipped."""
        ids = [int(i) for i in ids]
        if EOS_ID in ids:
            ids = ids[: ids.index(EOS_ID)]
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def decode_batch(self, rows: Iterable[Iterable[int]]) -> list[str]:
        """:meth:`decode` for every row (e.g. of a (B, N) tensor from the decoders)."""
        return [self.decode(row) for row in rows]

    def save(self, folder: str | Path) -> Path:
        """Write ``tokenizer.json`` into ``folder`` (created if needed); return its path."""
        path = Path(folder) / self.FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path))
        return path

    @classmethod
    def load(cls, folder: str | Path) -> SubwordTokenizer:
        """Read the ``tokenizer.json`` that :meth:`save` wrote into ``folder``."""
        from tokenizers import Tokenizer

        path = Path(folder) / cls.FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {cls.FILE} in {folder}")
        json.loads(path.read_text(encoding="utf-8"))  # a clear error for a damaged file
        return cls(Tokenizer.from_file(str(path)))


@dataclass
class TranslationBatch:
    """A padded batch (``PAD_ID`` after the tokens), all int64.

    Attributes:
        src: (B, S) source ids.
        tgt_in: (B, T) decoder input: ``<bos>`` then the target tokens.
        tgt_out: (B, T) what the decoder must predict: the target tokens then ``<eos>``.
    """

    src: torch.Tensor
    tgt_in: torch.Tensor
    tgt_out: torch.Tensor

    @property
    def num_tokens(self) -> int:
        """Number of target tokens to predict (padding excluded)."""
        return int((self.tgt_out != PAD_ID).sum())


def pad(rows: Sequence[Sequence[int]], value: int = PAD_ID) -> torch.Tensor:
    """(B, max length) int64 tensor of ``rows``, right-padded with ``value``."""
    width = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def make_batches(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]],
                 max_tokens: int, max_len: int | None = None, seed: int = 0
                 ) -> list[TranslationBatch]:
    """Group sentence pairs of similar length into batches of about ``max_tokens`` tokens.

    Pairs are sorted by (source length, target length), ties broken at random, and cut into
    consecutive batches whose padded size ``B * max(S, T + 1)`` stays within ``max_tokens``.

    Args:
        sources, targets: token ids per sentence (without special tokens), aligned.
        max_tokens: padded tokens per batch (one side); a longer single pair gets its own batch.
        max_len: drop pairs whose source or target (+1 for ``<eos>``) is longer; None keeps all.
        seed: seed of the tie-breaking order.

    Returns:
        A list of :class:`TranslationBatch`, in order of length.
    """
    _require_count("max_tokens", max_tokens)
    if len(sources) != len(targets):
        raise ValueError(f"sources and targets must be aligned; got {len(sources)} and "
                         f"{len(targets)} sentences")
    keep = [i for i in range(len(sources)) if sources[i] and (
        max_len is None or (len(sources[i]) <= max_len and len(targets[i]) + 1 <= max_len))]
    ties = torch.rand(len(sources), generator=torch.Generator().manual_seed(seed)).tolist()
    keep.sort(key=lambda i: (len(sources[i]), len(targets[i]), ties[i]))
    batches, current, width = [], [], 0
    for i in keep:
        new_width = max(width, len(sources[i]), len(targets[i]) + 1)
        if current and new_width * (len(current) + 1) > max_tokens:
            batches.append(_collate([sources[j] for j in current], [targets[j] for j in current]))
            current, new_width = [], max(len(sources[i]), len(targets[i]) + 1)
        current.append(i)
        width = new_width
    if current:
        batches.append(_collate([sources[j] for j in current], [targets[j] for j in current]))
    return batches


def decoder_pair(targets: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher forcing: the decoder's input and the tokens it must predict.

    For each target sentence ``t_1 ... t_n`` the input is ``<bos> t_1 ... t_n`` and the
    prediction target is ``t_1 ... t_n <eos>``: position i sees the tokens before t_(i+1)
    and predicts it, and the last position predicts the end of the sentence.

    Args:
        targets: token ids per sentence, without special tokens.

    Returns:
        ``(tgt_in, tgt_out)``, both (B, 1 + longest n) int64, right-padded with ``PAD_ID``.
    """
    return pad([[BOS_ID, *t] for t in targets]), pad([[*t, EOS_ID] for t in targets])


def _collate(sources, targets) -> TranslationBatch:
    tgt_in, tgt_out = decoder_pair(targets)
    return TranslationBatch(src=pad(sources), tgt_in=tgt_in, tgt_out=tgt_out)


def epoch_batches(batches: Sequence[TranslationBatch], seed: int = 0
                  ) -> Callable[[int], TranslationBatch]:
    """``next_batch(step)``: every batch once per epoch, in an order shuffled per epoch.

    The order of epoch e is a permutation seeded with ``seed + e``, so the batch of any step
    is known without replaying the earlier ones (a resumed run sees the same batches).
    """
    if not batches:
        raise ValueError("batches is empty")
    orders: dict[int, list[int]] = {}

    def next_batch(step: int) -> TranslationBatch:
        epoch, index = divmod(step, len(batches))
        if epoch not in orders:
            generator = torch.Generator().manual_seed(seed + epoch)
            orders.clear()
            orders[epoch] = torch.randperm(len(batches), generator=generator).tolist()
        return batches[orders[epoch][index]]

    return next_batch
