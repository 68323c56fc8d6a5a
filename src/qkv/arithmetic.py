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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from qkv.attention import _require_count, causal_mask
from qkv.data.synthetic import ArithmeticSplit, ArithmeticTask
from qkv.positional import LearnedPositionalEncoding, RotaryEmbedding, SinusoidalPositionalEncoding
from qkv.runtime import dry_run_steps
from qkv.train import History, fit
from qkv.transformer import TransformerEncoder

POSITIONS = ("none", "sinusoidal", "learned", "rotary")
"""The position encodings the experiment compares."""


class _Backbone(nn.Module):
    """Token embedding, optional additive positions, a pre-LN encoder stack and a linear head."""

    def __init__(self, vocab_size: int, max_len: int, positions: str, d_model: int,
                 num_heads: int, num_layers: int, d_ff: int, dropout: float):
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(POSITIONS)}; got "
                             f"{positions!r}")
        _require_count("vocab_size", vocab_size)
        self.positions = positions
        self.embedding = nn.Embedding(vocab_size, d_model)
        # Learned positions start at the scale of the token vectors (nn.Embedding: N(0, 1)).
        additive = {"sinusoidal": lambda: SinusoidalPositionalEncoding(d_model, max_len=max_len),
                    "learned": lambda: LearnedPositionalEncoding(d_model, max_len, init_std=1.0)}
        self.add_positions = additive.get(positions, nn.Identity)()
        rotary = RotaryEmbedding(d_model // num_heads) if positions == "rotary" else None
        self.encoder = TransformerEncoder(num_layers, d_model, num_heads, d_ff, dropout,
                                          norm_first=True, rotary=rotary)
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
                eval_every: int | None = None, progress: bool = False):
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
