"""Chapter 5's experiment: the same small Transformer learns arithmetic with and without positions.

Two formulations of the task "a+b=" -> answer, both built from
:class:`qkv.transformer.TransformerEncoder`:

* :class:`ArithmeticEncoder`, bidirectional: the question's tokens are followed by W learned
  *answer slots*, one vector per answer character (distinct vectors, not tokens of the
  input). The encoder's output at slot k is read by a linear head as the k-th answer
  character; every answer character is predicted at once. Without positions every layer is
  permutation-equivariant, so the output at a slot is a function of the slot and of the
  **multiset** of question tokens: "12+01=" and "21+01=" get the same answer (up to the
  rounding of sums taken in another order).
* :class:`ArithmeticDecoder`, causal (decoder-only): it reads "a+b=" and writes the answer one
  character at a time, each position seeing only the ones before it. Without positions
  it is *not* permutation-equivariant: the causal mask breaks the symmetry (Haviv et al., 2022).

:func:`train_model` trains either with :func:`qkv.train.fit`; :func:`evaluate_model` measures
exact-match accuracy on held-out equations and on swapped-digit pairs.

The length-generalisation experiment (section 5.8) trains :class:`DigitSumModel`, a causal
model, on :func:`digit_sum_batch` sequences of one length with each of :data:`SCHEMES` and
measures, with :func:`accuracy_by_position`, how it does on longer ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from qkv.attention import _require_count, causal_mask
from qkv.data.synthetic import ArithmeticSplit, ArithmeticTask
from qkv.positional import (ALiBi, LearnedPositionalEncoding, RotaryEmbedding,
                            SinusoidalPositionalEncoding, T5RelativeBias)
from qkv.runtime import dry_run_steps
from qkv.train import History, fit
from qkv.transformer import TransformerEncoder

POSITIONS = ("none", "sinusoidal", "learned", "rotary")
"""The position encodings the arithmetic experiment compares."""

SCHEMES = POSITIONS + ("alibi", "t5")
"""The position schemes the length-generalisation experiment compares."""


def position_modules(positions: str, d_model: int, num_heads: int, max_len: int,
                     causal: bool = False) -> tuple[nn.Module, nn.Module | None]:
    """``(added, hooked)`` for one of :data:`SCHEMES`: the module that adds positions to the
    token vectors (``nn.Identity`` if none) and the scheme for the attention's position hook
    (None if none). Learned positions exist for ``max_len`` positions; the other schemes accept
    any length. T5's 16 buckets are one-directional in a causal model, with ``max_distance`` =
    ``max_len`` (at least 9): every longer distance shares the bucket of the longest distance
    trained.
    """
    if positions not in SCHEMES:
        raise ValueError(f"positions must be one of {', '.join(SCHEMES)}; got {positions!r}")
    # Learned positions start at the scale of the token vectors (nn.Embedding: N(0, 1)).
    longest = max(max_len, 4096)
    added = {"sinusoidal": lambda: SinusoidalPositionalEncoding(d_model, max_len=longest),
             "learned": lambda: LearnedPositionalEncoding(d_model, max_len, init_std=1.0)}
    hooked = {"rotary": lambda: RotaryEmbedding(d_model // num_heads),
              "alibi": lambda: ALiBi(num_heads),
              # 16 buckets: exact distances up to 7 (causal) need max_distance >= 9
              "t5": lambda: T5RelativeBias(num_heads, bidirectional=not causal, num_buckets=16,
                                           max_distance=max(max_len, 9))}
    return (added.get(positions, nn.Identity)(),
            hooked[positions]() if positions in hooked else None)


class _Backbone(nn.Module):
    """Token embedding, optional additive positions, a pre-LN encoder stack and a linear head."""

    def __init__(self, vocab_size: int, max_len: int, positions: str, d_model: int,
                 num_heads: int, num_layers: int, d_ff: int, dropout: float,
                 causal: bool = False):
        super().__init__()
        _require_count("vocab_size", vocab_size)
        self.positions = positions
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.add_positions, hooked = position_modules(positions, d_model, num_heads, max_len,
                                                      causal)
        self.encoder = TransformerEncoder(num_layers, d_model, num_heads, d_ff, dropout,
                                          norm_first=True, position=hooked)
        self.head = nn.Linear(d_model, vocab_size)

    def run(self, x: torch.Tensor, mask=None, need_weights: bool = False):
        """(B, L, d_model) vectors -> logits (B, L, vocab), [weights (B, H, L, L) per layer]."""
        x = self.add_positions(x)
        x, weights = self.encoder(x, mask, need_weights=True) if need_weights else (
            self.encoder(x, mask), None)
        return self.head(x), weights


class _ArithmeticModel(nn.Module):
    """What both arithmetic models share: the sizes, and a :class:`_Backbone` over L_q + W tokens."""

    def __init__(self, vocab_size: int, question_length: int, answer_width: int,
                 positions: str = "sinusoidal", d_model: int = 64, num_heads: int = 4,
                 num_layers: int = 3, d_ff: int = 128, dropout: float = 0.0):
        super().__init__()
        _require_count("question_length", question_length)
        _require_count("answer_width", answer_width)
        self.question_length, self.answer_width = question_length, answer_width
        self.backbone = _Backbone(vocab_size, question_length + answer_width, positions,
                                  d_model, num_heads, num_layers, d_ff, dropout)


class ArithmeticEncoder(_ArithmeticModel):
    """Bidirectional encoder that reads the question and W answer slots; predicts all at once.

    Args:
        vocab_size: size of the token vocabulary.
        question_length: L_q, tokens per question.
        answer_width: W, characters per answer (one slot each).
        positions: one of :data:`POSITIONS`.
        d_model, num_heads, num_layers, d_ff, dropout: the encoder's sizes (pre-LN).

    ``forward(questions (B, L_q) int64, need_weights=False)`` returns logits (B, W, vocab), or
    ``(logits, [weights (B, H, L_q + W, L_q + W) per layer])``.
    """

    causal = False

    def __init__(self, vocab_size: int, question_length: int, answer_width: int,
                 positions: str = "sinusoidal", d_model: int = 64, num_heads: int = 4,
                 num_layers: int = 3, d_ff: int = 128, dropout: float = 0.0):
        super().__init__(vocab_size, question_length, answer_width, positions, d_model,
                         num_heads, num_layers, d_ff, dropout)
        self.slots = nn.Parameter(torch.randn(answer_width, d_model))

    def forward(self, questions: torch.Tensor, need_weights: bool = False):
        _check_tokens("questions", questions, self.question_length)
        tokens = self.backbone.embedding(questions)  # (B, L_q, d)
        slots = self.slots.expand(len(questions), -1, -1)  # (B, W, d)
        logits, weights = self.backbone.run(torch.cat([tokens, slots], 1),
                                            need_weights=need_weights)
        logits = logits[:, self.question_length:]  # (B, W, vocab)
        return (logits, weights) if need_weights else logits

    def loss(self, questions: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the W answer characters; answers (B, W) int64."""
        return F.cross_entropy(self(questions).flatten(0, 1), answers.flatten())

    def predict(self, questions: torch.Tensor) -> torch.Tensor:
        """(B, L_q) -> the most likely answer (B, W) int64."""
        return self(questions).argmax(-1)


class ArithmeticDecoder(_ArithmeticModel):
    """Causal (decoder-only) model: reads "a+b=" and writes the answer character by character.

    Same arguments as :class:`ArithmeticEncoder`. ``forward(tokens (B, L) int64,
    need_weights=False)`` returns next-token logits (B, L, vocab) under a causal mask (or the
    pair with per-layer weights); the answer's first character is predicted at the last
    question position.
    """

    causal = True

    def forward(self, tokens: torch.Tensor, need_weights: bool = False):
        length = tokens.shape[-1] if isinstance(tokens, torch.Tensor) else 0
        _check_tokens("tokens", tokens, length)
        mask = causal_mask(length, device=tokens.device)
        logits, weights = self.backbone.run(self.backbone.embedding(tokens), mask, need_weights)
        return (logits, weights) if need_weights else logits

    def loss(self, questions: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: mean cross-entropy of each answer character given all before it."""
        tokens = torch.cat([questions, answers[:, :-1]], 1)
        logits = self(tokens)[:, self.question_length - 1:]  # (B, W, vocab)
        return F.cross_entropy(logits.flatten(0, 1), answers.flatten())

    def predict(self, questions: torch.Tensor) -> torch.Tensor:
        """Greedy decoding of W characters: (B, L_q) -> (B, W) int64."""
        tokens = questions
        for _ in range(self.answer_width):
            next_token = self(tokens)[:, -1].argmax(-1, keepdim=True)
            tokens = torch.cat([tokens, next_token], 1)
        return tokens[:, self.question_length:]


def _check_tokens(name: str, tokens, length: int) -> None:
    if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long or tokens.dim() != 2:
        kind = (f"{tokens.dtype} {tuple(tokens.shape)}" if isinstance(tokens, torch.Tensor)
                else type(tokens).__name__)
        raise ValueError(f"{name} must be an int64 tensor (B, L); got {kind}")
    if tokens.shape[1] != length or length == 0:
        raise ValueError(f"{name} must have {length} tokens per row; got {tuple(tokens.shape)}")


@dataclass(frozen=True)
class ExperimentConfig:
    """One configuration of the experiment: the model, its positions, and the training budget."""

    positions: str = "sinusoidal"
    causal: bool = False
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 3
    d_ff: int = 128
    steps: int = 1500
    batch_size: int = 128
    lr: float = 5e-3
    warmup_steps: int = 200
    weight_decay: float = 0.0
    seed: int = 0


def build_model(task: ArithmeticTask, config: ExperimentConfig) -> nn.Module:
    """The model ``config`` describes, for ``task``'s vocabulary and lengths (seeded)."""
    torch.manual_seed(config.seed)
    cls = ArithmeticDecoder if config.causal else ArithmeticEncoder
    return cls(len(task.vocab), task.question_length, task.answer_width, config.positions,
               config.d_model, config.num_heads, config.num_layers, config.d_ff)


@torch.no_grad()
def predict(model: nn.Module, data: ArithmeticSplit, batch_size: int = 2048) -> torch.Tensor:
    """The model's answers (M, W) int64 to every question of ``data``, on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    chunks = [model.predict(data.questions[i:i + batch_size].to(device)).cpu()
              for i in range(0, len(data), batch_size)]
    return torch.cat(chunks)


def evaluate_model(model: nn.Module, task: ArithmeticTask, split: str = "test") -> dict[str, float]:
    """Exact-match accuracy of ``model`` on a split and on its swapped-digit pairs.

    Returns a dict of fractions in [0, 1]:

    * ``exact``: equations whose whole answer is right;
    * ``pairs_both``: swapped-digit pairs ("12+01", "21+01") with both answers right;
    * ``pairs_same``: pairs given the same answer (then at least one of the two is wrong,
      since the true answers differ).
    """
    data = task.split(split)
    answers = predict(model, data)
    right = (answers == data.answers).all(-1)
    i, j = task.swapped_pairs(split)
    return {
        "exact": right.float().mean().item(),
        "pairs_both": (right[i] & right[j]).float().mean().item(),
        "pairs_same": (answers[i] == answers[j]).all(-1).float().mean().item(),
    }


def multiset_bound(task: ArithmeticTask, split: str = "test") -> float:
    """The best exact-match accuracy on ``split`` of ANY function of the multiset of question
    tokens (such as the encoder without positions).

    Questions with the same characters in any order must get the same answer; within each such
    group at most the equations sharing the group's most common answer can be right.
    """
    data = task.split(split)
    groups: dict[tuple, dict[tuple, int]] = {}
    for question, answer in zip(data.questions.sort(dim=1).values.tolist(),
                                data.answers.tolist()):
        counts = groups.setdefault(tuple(question), {})
        counts[tuple(answer)] = counts.get(tuple(answer), 0) + 1
    return sum(max(counts.values()) for counts in groups.values()) / len(data)


def train_model(task: ArithmeticTask, config: ExperimentConfig, device=None,
                eval_every: int | None = None, progress: bool | None = None):
    """Build and train the model of ``config`` on ``task``'s training split.

    Returns ``(model, history)``; ``history.evals`` holds :func:`evaluate_model` on the test
    split every ``eval_every`` steps and at the end. In a dry run (``QKV_DRY_RUN_STEPS``, a
    test hook) the steps are capped, and the warm-up shortened to fit in them.
    """
    # Not runtime.capped_steps: the chapters' counts already passed through it (step_budget),
    # and a second notice of the capped count would split their loops for the estimate.
    steps, warmup_steps = config.steps, config.warmup_steps
    cap = dry_run_steps()
    if cap is not None:
        steps = min(steps, cap)
        warmup_steps = min(warmup_steps, steps - 1)
    model = build_model(task, config)
    history: History = fit(
        model, task.batches(config.batch_size, seed=config.seed),
        lambda m, batch: m.loss(*batch), steps, lr=config.lr,
        warmup_steps=warmup_steps, schedule="cosine", weight_decay=config.weight_decay,
        eval_every=eval_every, evaluate=lambda m: evaluate_model(m, task), device=device,
        seed=config.seed, progress=progress)
    return model, history


# ------------------------------------------------------------- length generalisation (5.8)

def digit_sum_batch(batch_size: int, length: int, generator: torch.Generator | None = None):
    """Random digit sequences and their targets: ``y_t = (x_{t-1} + x_t) mod 10`` (x_{-1} = 0).

    Each answer needs the current digit and the one just before it, at any length: the
    kind of local dependence that dominates language modelling.

    Returns:
        ``(tokens, targets)``, both int64 (batch_size, length), digits 0-9.
    """
    _require_count("batch_size", batch_size)
    _require_count("length", length)
    tokens = torch.randint(0, 10, (batch_size, length), generator=generator)
    previous = F.pad(tokens[:, :-1], (1, 0))  # (B, L): 0 before the first digit
    return tokens, (previous + tokens) % 10


class DigitSumModel(nn.Module):
    """A causal (decoder-only) Transformer that writes ``(x_{t-1} + x_t) mod 10`` at every t.

    Pre-LN encoder blocks under a causal mask (:class:`_Backbone`), with one of
    :data:`SCHEMES`. ``forward(tokens (B, L) int64)`` returns logits (B, L, 10); a model with
    learned positions rejects L > ``train_length``.
    """

    def __init__(self, positions: str, train_length: int, d_model: int = 64, num_heads: int = 4,
                 num_layers: int = 2, d_ff: int = 128):
        super().__init__()
        self.train_length = train_length
        self.backbone = _Backbone(10, train_length, positions, d_model, num_heads, num_layers,
                                  d_ff, 0.0, causal=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[-1] if isinstance(tokens, torch.Tensor) else 0
        _check_tokens("tokens", tokens, length)
        mask = causal_mask(length, device=tokens.device)
        return self.backbone.run(self.backbone.embedding(tokens), mask)[0]

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over every position; targets (B, L) int64."""
        return F.cross_entropy(self(tokens).flatten(0, 1), targets.flatten())


@dataclass(frozen=True)
class LengthConfig:
    """One run of the length experiment: the scheme, the training length and the budget."""

    positions: str = "alibi"
    train_length: int = 16
    d_model: int = 64
    num_heads: int = 4
    num_layers: int = 2
    d_ff: int = 128
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    warmup_steps: int = 60
    seed: int = 0


def train_length_model(config: LengthConfig, device=None) -> tuple[DigitSumModel, History]:
    """Train a :class:`DigitSumModel` on sequences of exactly ``config.train_length`` digits.

    A causal model trained on length L is trained on every prefix, so on every length up to L:
    the answer at position t sees t + 1 digits. Fresh random sequences at every step.
    """
    steps, warmup_steps = config.steps, config.warmup_steps
    cap = dry_run_steps()
    if cap is not None:
        steps = min(steps, cap)
        warmup_steps = min(warmup_steps, steps - 1)
    torch.manual_seed(config.seed)
    model = DigitSumModel(config.positions, config.train_length, config.d_model,
                          config.num_heads, config.num_layers, config.d_ff)

    def batches(step: int):  # a function of the step: the same batches on every run
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        return digit_sum_batch(config.batch_size, config.train_length, generator)

    history = fit(model, batches,
                  lambda m, batch: m.loss(*batch), steps, lr=config.lr,
                  warmup_steps=warmup_steps, schedule="cosine", device=device,
                  seed=config.seed)
    return model, history


@torch.no_grad()
def accuracy_by_position(model: DigitSumModel, length: int, num_sequences: int = 512,
                         seed: int = 1234) -> torch.Tensor:
    """Fraction of right answers at each position t = 0, ..., length - 1 (float64 (length,)).

    Under the causal mask the answer at t depends on the first t + 1 digits only, so the
    accuracy over positions 0, ..., n - 1 is the accuracy on sequences of length n.
    """
    model.eval()
    device = next(model.parameters()).device
    tokens, targets = digit_sum_batch(num_sequences, length,
                                      torch.Generator().manual_seed(seed))
    right = model(tokens.to(device)).argmax(-1).cpu() == targets
    return right.double().mean(0)
