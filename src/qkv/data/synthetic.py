"""Synthetic tasks: arithmetic equations (chapter 5) and copy / reverse (chapter 6).

Every task is generated, never downloaded, and split deterministically: the same arguments give
the same train and test sets on every machine, and no example is in both.

* :class:`ArithmeticTask`: "a+b=c" and "a-b=c" with operands ``0 <= a, b < max_operand``, one
  token per character. Operands are zero-padded to a fixed number of digits and answers to a
  fixed width (a leading "-" for negative results), so every question and every answer has the
  same length. Answers can be written least-significant digit first (``lsd_first``).
  :meth:`ArithmeticTask.swapped_pairs` pairs equations whose first operands are digit
  reversals of each other ("12+01" and "21+01"): the same characters in another order, with
  different answers. Both members of a pair are always in the same split.
* :class:`SequenceTask`: random symbol strings to copy or to reverse.

Batches are functions of the step (:func:`epoch_batches`), so a training run can be resumed
exactly (see :func:`qkv.train.fit`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from qkv.attention import _require_count

SPECIALS = ("<pad>", "<bos>", "<eos>")
"""Special tokens, first in every vocabulary: padding (id 0), begin and end of sequence."""


class CharVocab:
    """A vocabulary of single characters after the special tokens.

    Args:
        characters: the characters, each a token, in id order after the specials.
        specials: the special tokens, ids 0, 1, ... (default :data:`SPECIALS`).
    """

    def __init__(self, characters: str | Sequence[str], specials: Sequence[str] = SPECIALS):
        tokens = list(specials) + list(characters)
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"tokens must be distinct; got {tokens}")
        self.tokens = tokens
        self.specials = tuple(specials)
        self.index = {token: i for i, token in enumerate(tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"CharVocab({len(self)} tokens: {' '.join(self.tokens)})"

    @property
    def pad_id(self) -> int:
        return self.index["<pad>"]

    @property
    def bos_id(self) -> int:
        return self.index["<bos>"]

    @property
    def eos_id(self) -> int:
        return self.index["<eos>"]

    def encode(self, text: str | Sequence[str]) -> list[int]:
        """Token ids of the characters of ``text`` (or of a sequence of tokens)."""
        unknown = sorted({t for t in text if t not in self.index})
        if unknown:
            raise ValueError(f"text contains characters outside the vocabulary: {unknown}")
        return [self.index[t] for t in text]

    def decode(self, ids, skip_specials: bool = True) -> str:
        """The characters of the ids (a list or a 1-D tensor), specials left out by default."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if any(not 0 <= i < len(self) for i in ids):
            raise ValueError(f"ids must lie in [0, {len(self)}); got {ids}")
        tokens = (self.tokens[i] for i in ids)
        return "".join(t for t in tokens if not (skip_specials and t in self.specials))


def epoch_batches(num_items: int, batch_size: int, seed: int = 0) -> Callable[[int], torch.Tensor]:
    """A function ``step -> indices (batch_size,)`` that walks through shuffled epochs.

    Epoch e is a permutation of ``range(num_items)`` drawn from a generator seeded with
    ``(seed, e)``; step s takes the next ``batch_size`` indices (an epoch's last batch is
    completed from the next epoch). The same step always gives the same batch, so training
    can be split into several calls and still see the same data.
    """
    _require_count("num_items", num_items)
    _require_count("batch_size", batch_size)
    cache: dict[int, torch.Tensor] = {}

    def permutation(epoch: int) -> torch.Tensor:
        if epoch not in cache:
            cache.clear()  # keep only the epochs in use
            generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            cache[epoch] = torch.randperm(num_items, generator=generator)
        return cache[epoch]

    def indices(step: int) -> torch.Tensor:
        _require_count("step", step, minimum=0)
        start = step * batch_size
        positions = torch.arange(start, start + batch_size)
        epochs = positions // num_items
        return torch.cat([permutation(int(e))[positions[epochs == e] % num_items]
                          for e in epochs.unique()])

    return indices


def _split_order(num_groups: int, test_fraction: float, seed: int) -> torch.Tensor:
    """Boolean (num_groups,): True for the groups that go to the test set (a seeded choice)."""
    if not isinstance(test_fraction, float) or not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be a float in (0, 1); got {test_fraction!r}")
    num_test = max(1, round(test_fraction * num_groups))
    if num_test >= num_groups:
        raise ValueError(f"test_fraction={test_fraction} leaves no training data for "
                         f"{num_groups} groups")
    order = torch.randperm(num_groups, generator=torch.Generator().manual_seed(seed))
    is_test = torch.zeros(num_groups, dtype=torch.bool)
    is_test[order[:num_test]] = True
    return is_test


def _digits(values: torch.Tensor, width: int) -> torch.Tensor:
    """(M,) non-negative ints -> (M, width) decimal digits, most significant first."""
    powers = 10 ** torch.arange(width - 1, -1, -1)
    return values[:, None] // powers % 10


def _reverse_digits(values: torch.Tensor, width: int) -> torch.Tensor:
    """Read each zero-padded ``width``-digit number backwards: 12 -> 21, 10 -> 01 = 1."""
    return (_digits(values, width).flip(-1) * 10 ** torch.arange(width - 1, -1, -1)).sum(-1)


@dataclass(frozen=True)
class ArithmeticSplit:
    """One split of an :class:`ArithmeticTask`, M equations.

    Attributes:
        a, b: (M,) int64 operands; minus: (M,) bool, True for "a-b"; result: (M,) int64.
        questions: (M, L_q) int64 token ids of "a+b=" (operands zero-padded).
        answers: (M, W) int64 token ids of the answer (fixed width W).
    """

    a: torch.Tensor
    b: torch.Tensor
    minus: torch.Tensor
    result: torch.Tensor
    questions: torch.Tensor
    answers: torch.Tensor

    def __len__(self) -> int:
        return len(self.a)


class ArithmeticTask:
    """Equations "a+b=c" and "a-b=c" with ``0 <= a, b < max_operand``, tokenised per character.

    Args:
        max_operand: operands are below this bound (100: two-digit operands).
        ops: which operations, "+", "-" or "+-".
        test_fraction: share of the swapped-digit groups held out for testing.
        lsd_first: write the answer's characters in reverse order, least-significant digit
            first ("013" becomes "310", "-07" becomes "70-").
        seed: seed of the train/test split.

    Each equation belongs to a group: itself and its swapped-digit partner (first operand read
    backwards), if it has one. Groups, not equations, are split, so both members of a pair are
    in the same split and :meth:`swapped_pairs` finds all pairs of a split.
    """

    def __init__(self, max_operand: int = 100, ops: str = "+-", test_fraction: float = 0.2,
                 lsd_first: bool = False, seed: int = 0):
        _require_count("max_operand", max_operand, minimum=2)
        if not ops or any(op not in "+-" for op in ops) or len(set(ops)) != len(ops):
            raise ValueError(f"ops must be '+', '-' or '+-'; got {ops!r}")
        self.max_operand, self.ops, self.lsd_first = max_operand, ops, lsd_first
        self.vocab = CharVocab("0123456789+-=")
        self.operand_width = len(str(max_operand - 1))
        largest = 2 * (max_operand - 1) if "+" in ops else max_operand - 1
        self.answer_width = max(len(str(largest)), self.operand_width + 1 if "-" in ops else 1)
        self.question_length = 2 * self.operand_width + 2
        a, b, minus = self._all_equations()
        group = self._group_ids(a, b, minus)
        is_test = _split_order(int(group.max()) + 1, test_fraction, seed)[group]
        self._splits = {name: self._make_split(a[keep], b[keep], minus[keep])
                        for name, keep in (("train", ~is_test), ("test", is_test))}

    def _all_equations(self):
        n = self.max_operand
        a = torch.arange(n).repeat_interleave(n).repeat(len(self.ops))
        b = torch.arange(n).repeat(n * len(self.ops))
        minus = torch.tensor([op == "-" for op in self.ops]).repeat_interleave(n * n)
        return a, b, minus

    def _group_ids(self, a, b, minus):
        """Equal ids for an equation and its swapped-digit partner; ids 0, 1, ... in order."""
        low = torch.minimum(a, _reverse_digits(a, self.operand_width))
        key = (minus.long() * self.max_operand + low) * self.max_operand + b
        return torch.unique(key, return_inverse=True)[1]

    def _make_split(self, a, b, minus) -> ArithmeticSplit:
        result = torch.where(minus, a - b, a + b)
        ids = torch.tensor(self.vocab.encode("0123456789+-="))  # digit d has id ids[d]
        plus_id, minus_id, equals_id = ids[10], ids[11], ids[12]
        w = self.operand_width
        questions = torch.cat([
            ids[_digits(a, w)],
            torch.where(minus, minus_id, plus_id)[:, None],
            ids[_digits(b, w)],
            equals_id.expand(len(a), 1),
        ], dim=1)
        answers = ids[_digits(result.abs(), self.answer_width)]
        answers[:, 0] = torch.where(result < 0, minus_id, answers[:, 0])
        if self.lsd_first:
            answers = answers.flip(-1)
        return ArithmeticSplit(a, b, minus, result, questions, answers)

    def split(self, name: str) -> ArithmeticSplit:
        """The "train" or "test" equations, in a fixed order."""
        if name not in self._splits:
            raise ValueError(f"split must be 'train' or 'test'; got {name!r}")
        return self._splits[name]

    def text(self, split: str, index: int) -> str:
        """The equation as a string, e.g. "12+01=013" (answer as the model writes it)."""
        data = self.split(split)
        return self.vocab.decode(data.questions[index]) + self.vocab.decode(data.answers[index])

    def answer_text(self, ids: torch.Tensor) -> str:
        """Answer token ids (W,) as written (in reading order if ``lsd_first``, reversed back)."""
        text = self.vocab.decode(ids)
        return text[::-1] if self.lsd_first else text

    def swapped_pairs(self, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
        """Index pairs (i, j), i < j, of equations of ``split`` whose first operands are digit
        reversals of each other, with the same operation and second operand ("12+01" and
        "21+01"). Their questions hold the same characters in different orders, and their
        answers differ.

        Returns:
            Two (P,) int64 tensors of indices into the split.
        """
        data = self.split(split)
        n = self.max_operand
        reversed_a = _reverse_digits(data.a, self.operand_width)
        code = (data.minus.long() * n + data.a) * n + data.b
        partner = (data.minus.long() * n + reversed_a.clamp(max=n - 1)) * n + data.b
        where = torch.full((2 * n * n,), -1, dtype=torch.long)
        where[code] = torch.arange(len(code))
        i, j = torch.arange(len(code)), where[partner]
        keep = (j > i) & (reversed_a < n)  # a partner exists, is in this split, counted once
        return i[keep], j[keep]

    def batches(self, batch_size: int, seed: int = 0):
        """``step -> (questions (B, L_q), answers (B, W))`` from the training split."""
        data = self.split("train")
        indices = epoch_batches(len(data), batch_size, seed)

        def batch(step: int):
            chosen = indices(step)
            return data.questions[chosen], data.answers[chosen]

        return batch


@dataclass(frozen=True)
class SequenceBatch:
    """A padded batch of a :class:`SequenceTask`: ids (B, L) int64 and valid (B, L) bool."""

    source: torch.Tensor
    source_valid: torch.Tensor
    target: torch.Tensor
    target_valid: torch.Tensor


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int = 0):
    """Right-pad lists of ids: returns ids (B, L_max) int64 and valid (B, L_max) bool."""
    if not sequences:
        raise ValueError("sequences is empty")
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.as_tensor(list(sequence), dtype=torch.long)
    lengths = torch.tensor([len(s) for s in sequences])
    return ids, torch.arange(longest) < lengths[:, None]


class SequenceTask:
    """Copy or reverse random strings of symbols "a", "b", ... (no special tokens inside).

    Args:
        kind: "copy" (target = source) or "reverse" (target = source backwards).
        num_symbols: size of the alphabet, 2 to 26.
        min_len, max_len: the lengths of the strings.
        size: number of distinct strings, split into train and test.
        test_fraction: share of the strings held out.
        seed: seed of the strings and of the split.

    ``split(name)`` returns the list of ``(source, target)`` id lists; a string is never in
    both splits. Targets carry no <bos>/<eos>: a model adds what it needs.
    """

    def __init__(self, kind: str = "copy", num_symbols: int = 10, min_len: int = 2,
                 max_len: int = 8, size: int = 2000, test_fraction: float = 0.2,
                 seed: int = 0):
        if kind not in ("copy", "reverse"):
            raise ValueError(f"kind must be 'copy' or 'reverse'; got {kind!r}")
        _require_count("num_symbols", num_symbols, minimum=2)
        if num_symbols > 26:
            raise ValueError(f"num_symbols must be at most 26; got {num_symbols}")
        _require_count("min_len", min_len)
        _require_count("max_len", max_len, minimum=min_len)
        _require_count("size", size, minimum=2)
        possible = sum(num_symbols ** n for n in range(min_len, max_len + 1))
        if size > possible // 2:
            raise ValueError(f"size={size} is more than half of the {possible} possible strings; "
                             "use longer strings or more symbols")
        self.kind = kind
        self.vocab = CharVocab("abcdefghijklmnopqrstuvwxyz"[:num_symbols])
        strings = self._distinct_strings(num_symbols, min_len, max_len, size, seed)
        is_test = _split_order(size, test_fraction, seed + 1)
        self._splits = {
            "train": [self._pair(s) for s, t in zip(strings, is_test) if not t],
            "test": [self._pair(s) for s, t in zip(strings, is_test) if t],
        }

    def _distinct_strings(self, num_symbols, min_len, max_len, size, seed):
        generator = torch.Generator().manual_seed(seed)
        first_symbol = len(self.vocab.specials)
        seen, strings = set(), []
        while len(strings) < size:
            length = int(torch.randint(min_len, max_len + 1, (), generator=generator))
            ids = (torch.randint(0, num_symbols, (length,), generator=generator)
                   + first_symbol).tolist()
            if tuple(ids) not in seen:
                seen.add(tuple(ids))
                strings.append(ids)
        return strings

    def _pair(self, source: list[int]) -> tuple[list[int], list[int]]:
        return source, (list(source) if self.kind == "copy" else source[::-1])

    def split(self, name: str) -> list[tuple[list[int], list[int]]]:
        """The (source, target) id lists of the "train" or "test" split."""
        if name not in self._splits:
            raise ValueError(f"split must be 'train' or 'test'; got {name!r}")
        return self._splits[name]

    def batch(self, pairs: Sequence[tuple[list[int], list[int]]]) -> SequenceBatch:
        """Pad some (source, target) pairs into a :class:`SequenceBatch`."""
        source, source_valid = pad_batch([s for s, _ in pairs], self.vocab.pad_id)
        target, target_valid = pad_batch([t for _, t in pairs], self.vocab.pad_id)
        return SequenceBatch(source, source_valid, target, target_valid)

    def batches(self, batch_size: int, seed: int = 0) -> Callable[[int], SequenceBatch]:
        """``step -> SequenceBatch`` of training pairs (see :func:`epoch_batches`)."""
        pairs = self.split("train")
        indices = epoch_batches(len(pairs), batch_size, seed)
        return lambda step: self.batch([pairs[i] for i in indices(step).tolist()])
