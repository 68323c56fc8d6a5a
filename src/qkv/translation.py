"""German-to-English translation on Multi30k: recipes, training, checkpoints and a command line.

A :class:`Recipe` fixes everything a run does (vocabulary, model size, batches, schedule,
decoding); :data:`RECIPES` holds one per budget. :func:`train` learns a subword vocabulary
from the training split, trains a :class:`qkv.seq2seq.Seq2SeqTransformer` with
:func:`qkv.train.fit`, saves a checkpoint folder every ``checkpoint_every`` steps and can
resume from it. A checkpoint folder holds everything needed to translate:

* ``model.pt``: state dicts of the model and the optimizer and the step count (tensors
  only, loaded with ``torch.load(..., weights_only=True)``);
* ``tokenizer.json``: the subword vocabulary;
* ``config.json``: the model's arguments, the recipe and the training history.

The three are written as a set: into a new folder that is then renamed into place, so an
interrupted save never leaves files from two different steps (see :func:`save_translator`).
:func:`pack_translator` archives a folder for sharing, and :func:`fetch_translator` loads a
folder or a downloaded archive (checked against its SHA-256) instead of training.

Looking inside a trained model: :func:`cross_attention` gives the cross-attention of every
decoder layer and head while the model writes a translation, :func:`head_alignment` measures
how concentrated and how monotone each head is, and :func:`alignment_by_head` counts how often
each head reads the right source token where the answer is known (:func:`anchors`).

Command line::

    python -m qkv.translation train --budget {smoke,book,full} --out DIR [--resume]
    python -m qkv.translation translate --model DIR [--beam K] < german.txt > english.txt
    python -m qkv.translation evaluate --model DIR [--beam K] [--split {val,test_2016_flickr}]
    python -m qkv.translation evaluate --model DIR --src german.txt[.gz] --ref english.txt[.gz]
    python -m qkv.translation pack --model DIR --out model.tar.gz   # prints its SHA-256
    python -m qkv.translation translate --model URL --sha256 HEX < german.txt

``evaluate`` prints BLEU, chrF and lower-cased BLEU with their sacreBLEU signatures and 95 %
bootstrap confidence intervals (``--bootstrap 0`` for none). ``--model`` takes a checkpoint
folder, or the URL of an archive made by ``pack`` with its ``--sha256``
(:func:`fetch_translator`: downloaded once, checked, cached).

``translate`` reads one German sentence per line (UTF-8) and writes one English line per input
line (an empty line for an empty line); a line that is not UTF-8, or longer than the model can
read, ends the command with a message that names it. ``train`` reports validation scores;
``evaluate`` scores the validation split unless told otherwise, so test sets are scored only
when asked for.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from qkv.checkpoints import (complete_set, fetch_translator, load_snapshots, load_translator,
                             pack_translator, save_translator)
from qkv.data.multi30k import load_pairs
from qkv.data.text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SubwordTokenizer,
    epoch_batches,
    make_batches,
    pad,
)
from qkv.decoding import beam_search, greedy_decode
from qkv.metrics import TranslationScores, corpus_scores
from qkv.runtime import (BUDGETS, capped_steps, choose_device, live_progress, seed_everything,
                         set_threads)
from qkv.seq2seq import Seq2SeqTransformer, sequence_loss
from qkv.train import History, average_states, fit, to_device


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything one training run does. Budgets are counts (steps, sizes), never seconds.

    Data: ``train_sentences``/``test_sentences`` (None = all) and ``vocab_size`` of the joint
    BPE vocabulary. Model: the :class:`qkv.seq2seq.Seq2SeqTransformer` arguments (source and
    target share one embedding matrix, tied to the output layer). Optimisation: ``steps``
    updates of about ``max_tokens`` target tokens each, peak ``lr`` after ``warmup_steps``,
    then the ``schedule`` of :func:`qkv.train.warmup_lr`, label smoothing, weight decay.
    Checkpoint averaging: the final model is the mean of the weights at the last
    ``average_last`` checkpoints, taken every ``checkpoint_every`` steps (1: the last weights).
    Decoding: ``beam_size`` and the length-penalty exponent ``alpha``.
    """

    vocab_size: int = 8000
    d_model: int = 256
    num_heads: int = 4
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    d_ff: int = 1024
    dropout: float = 0.1
    norm_first: bool = True
    max_len: int = 128
    max_tokens: int = 4096
    steps: int = 1000
    lr: float = 1e-3
    warmup_steps: int = 200
    schedule: str = "cosine"
    label_smoothing: float = 0.1
    weight_decay: float = 0.0
    checkpoint_every: int = 500
    average_last: int = 1
    train_sentences: int | None = None
    test_sentences: int | None = None
    beam_size: int = 4
    alpha: float = 0.6
    seed: int = 0


RECIPES = {
    # A few seconds: proves the pipeline runs end to end; the translations are nonsense.
    "smoke": Recipe(vocab_size=600, d_model=32, num_heads=2, num_encoder_layers=1,
                    num_decoder_layers=1, d_ff=64, max_tokens=512, steps=30, lr=3e-3,
                    warmup_steps=10, checkpoint_every=15, train_sentences=2000,
                    test_sentences=20, beam_size=2),
    # Sized to train and greedily decode the 1,000-sentence test set within about 7 minutes
    # on a 2-core CPU (chapter 6 prints the measured time): a small model (1.7M parameters),
    # small batches, a high rate, 3000 steps (under 7 epochs), and the mean of the weights at
    # steps 2400-3000. Chosen on the validation split (benchmarks/translation_levers.py,
    # results/levers-cpu.json): 3000 steps instead of 1600 gained about 3 BLEU (seed 0);
    # dropout 0.1 lowered the validation loss but also BLEU (seed 0), so there is none; a
    # 4000-token vocabulary lost about 0.8 BLEU (seed 0); averaging the last 4 checkpoints
    # gained about 0.2 greedy BLEU and alpha 1.0 instead of 0.6 about 0.2 beam BLEU (seeds
    # 0-2); beams of 5 to 8 gained nothing over 4.
    "book": Recipe(vocab_size=6000, d_model=128, num_heads=4, num_encoder_layers=2,
                   num_decoder_layers=2, d_ff=512, dropout=0.0, max_tokens=1024, steps=3000,
                   lr=3e-3, warmup_steps=150, checkpoint_every=200, average_last=4, alpha=1.0),
    # One GPU. NOT measured (no GPU was available while writing): a starting point, sized for
    # roughly 40 epochs, with the regularisation a larger model needs on 29,000 pairs.
    "full": Recipe(vocab_size=10000, d_model=384, num_heads=6, num_encoder_layers=4,
                   num_decoder_layers=4, d_ff=1536, dropout=0.3, max_tokens=4096, steps=4000,
                   lr=1e-3, warmup_steps=800, weight_decay=0.01, checkpoint_every=1000,
                   beam_size=5),
}
"""The recipe of each budget."""


def _head(items: list, count: int | None) -> list:
    return items if count is None else items[:count]


def build_model(recipe: Recipe, tokenizer: SubwordTokenizer) -> Seq2SeqTransformer:
    """The recipe's model for the tokenizer's (joint) vocabulary."""
    vocab = tokenizer.vocab_size
    return Seq2SeqTransformer(vocab, vocab, recipe.d_model, recipe.num_heads,
                              recipe.num_encoder_layers, recipe.num_decoder_layers, recipe.d_ff,
                              recipe.dropout, recipe.norm_first, recipe.max_len,
                              share_embeddings=True, tie_output=True, pad_id=PAD_ID,
                              bos_id=BOS_ID, eos_id=EOS_ID)


def translation_loss(label_smoothing: float):
    """``loss_fn(model, batch)`` for :func:`qkv.train.fit`: label-smoothed cross-entropy of
    the next target token, padding excluded."""
    def loss_fn(model, batch):
        logits = model(batch.src, batch.tgt_in)
        return sequence_loss(logits, batch.tgt_out, PAD_ID, label_smoothing)
    return loss_fn


@torch.no_grad()
def translate(model: Seq2SeqTransformer, tokenizer: SubwordTokenizer, sentences: Sequence[str],
              beam_size: int = 1, alpha: float = 0.6, max_tokens: int = 6000) -> list[str]:
    """Translate ``sentences``; returns one string per sentence, in order.

    Sentences are sorted by length and decoded in batches of about ``max_tokens`` source
    tokens (greedy for ``beam_size=1``, else beam search); empty or blank sentences give "".
    A sentence of more subword tokens than the model's ``max_len`` raises ValueError naming it
    (it is never cut silently): split it into shorter sentences.
    """
    model.eval()
    device = next(model.parameters()).device
    ids = tokenizer.encode_batch([s.strip() for s in sentences])
    for number, row in enumerate(ids, start=1):
        if len(row) > model.max_len:
            raise ValueError(f"sentence {number} is {len(row)} subword tokens long; this model "
                             f"reads at most {model.max_len}: split it into shorter sentences")
    out = [""] * len(sentences)
    for chunk in _length_groups([len(row) for row in ids], max_tokens):
        src = pad([ids[i] for i in chunk]).to(device)
        tokens = (greedy_decode(model, src) if beam_size == 1
                  else beam_search(model, src, beam_size, alpha))
        for i, text in zip(chunk, tokenizer.decode_batch(tokens.tolist())):
            out[i] = text.replace("\n", " ")
    return out


def _length_groups(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices of the non-empty items, sorted by length, cut into groups whose padded size
    (count x longest) stays within ``max_tokens`` (a group holds at least one item)."""
    order = sorted((i for i, n in enumerate(lengths) if n), key=lambda i: lengths[i])
    groups, current = [], []
    for i in order:
        if current and lengths[i] * (len(current) + 1) > max_tokens:
            groups.append(current)
            current = []
        current.append(i)
    return groups + [current] if current else groups


def evaluate(model, tokenizer, sources: Sequence[str], references: Sequence[str],
             beam_size: int = 1, alpha: float = 0.6, n_bootstrap: int = 0
             ) -> tuple[TranslationScores, list[str]]:
    """Translate ``sources`` and score them against ``references`` with sacreBLEU (with 95 %
    bootstrap confidence intervals from ``n_bootstrap`` resamples; 0 = none)."""
    hypotheses = translate(model, tokenizer, sources, beam_size, alpha)
    return corpus_scores(hypotheses, references, n_bootstrap), hypotheses


# ----------------------------------------------------------------------------- looking inside

@dataclasses.dataclass
class CrossAttention:
    """What :func:`cross_attention` returns for one sentence.

    ``weights`` (layers, H, T, S) float: row t is the decoding step that wrote output token t
    (``output_tokens[t]``; the final ``<eos>`` is left out), column s is source token s.
    """

    source_tokens: list[str]
    output_tokens: list[str]
    translation: str
    weights: torch.Tensor


@torch.no_grad()
def cross_attention(model: Seq2SeqTransformer, tokenizer: SubwordTokenizer, sentence: str,
                    translation: str | None = None, max_new_tokens: int | None = None
                    ) -> CrossAttention:
    """The cross-attention weights of every decoder layer and head while the model writes a
    translation of ``sentence``: its greedy translation, or ``translation`` (say, its beam
    search output), re-tokenized and fed through the decoder."""
    model.eval()
    device = next(model.parameters()).device
    src = tokenizer.encode(sentence)
    if not src:
        raise ValueError("sentence has no tokens")
    if translation is None:
        output = greedy_decode(model, torch.tensor([src], device=device), max_new_tokens)
        output = output[0].tolist()
        output = output[:output.index(EOS_ID)] if EOS_ID in output else output
    else:
        output = tokenizer.encode(translation)
    weights = _teacher_forced_cross(model, [src], [output])[0]
    return CrossAttention(tokenizer.tokens(sentence),
                          [tokenizer.tokenizer.id_to_token(t) for t in output],
                          tokenizer.decode(output), weights)


@torch.no_grad()
def _teacher_forced_cross(model, sources: list[list[int]], outputs: list[list[int]],
                          batch_size: int = 64) -> list[torch.Tensor]:
    """Per sentence, the cross-attention (layers, H, T, S) of the decoder fed ``<bos>`` and the
    output tokens; row t is the step that predicts output token t."""
    device = next(model.parameters()).device
    found = []
    for start in range(0, len(sources), batch_size):
        src = pad(sources[start:start + batch_size]).to(device)
        outs = outputs[start:start + batch_size]
        tgt_in = pad([[BOS_ID, *out] for out in outs]).to(device)
        memory, valid = model.encode(src)
        _, layers = model.decode(tgt_in, memory, valid, need_weights=True)
        cross = torch.stack([c for _, c in layers], dim=1).cpu().float()  # (B, layers, H, T, S)
        for b, out in enumerate(outs):
            found.append(cross[b, :, :, :len(out), :len(sources[start + b])])
    return found


def head_alignment(weights: torch.Tensor) -> dict[str, torch.Tensor]:
    """How much each head's cross-attention looks like a word alignment.

    Args:
        weights: (..., T, S) attention weights, rows summing to 1 (e.g. (layers, H, T, S)).

    Returns:
        ``{"concentration": (...), "monotonicity": (...)}`` float tensors:
        concentration is the mean over rows of the largest weight (1: every step looks at one
        source token; 1/S: uniform); monotonicity is the share of consecutive steps whose
        most-attended source position moves forward (1: left to right, one step after the
        other; 0: never moves forward, such as a head fixed on one token). With T = 1 it is 0.
    """
    if not isinstance(weights, torch.Tensor) or weights.dim() < 2 or 0 in weights.shape[-2:]:
        shape = tuple(weights.shape) if isinstance(weights, torch.Tensor) else type(weights)
        raise ValueError(f"weights must be a tensor (..., T, S) with T, S >= 1; got {shape}")
    peaks = weights.argmax(dim=-1)  # (..., T)
    forward = (peaks[..., 1:] > peaks[..., :-1]).float()  # (..., T - 1)
    monotonicity = forward.mean(-1) if forward.shape[-1] else torch.zeros(peaks.shape[:-1])
    return {"concentration": weights.max(dim=-1).values.mean(-1), "monotonicity": monotonicity}


def anchors(source_tokens: Sequence[str], output_tokens: Sequence[str]) -> list[tuple[int, int]]:
    """(output position, source position) pairs whose alignment is known: an output token
    spelled exactly like a source token that occurs once in the source and once in the output,
    and has a letter or digit (names, numbers, words both languages share, such as "in")."""
    def once(tokens):
        return {t: i for i, t in enumerate(tokens)
                if tokens.count(t) == 1 and any(c.isalnum() for c in t)}
    src, out = once(list(source_tokens)), once(list(output_tokens))
    return sorted((out[t], src[t]) for t in out.keys() & src.keys())


def alignment_by_head(model: Seq2SeqTransformer, tokenizer: SubwordTokenizer,
                      sources: Sequence[str], translations: Sequence[str]
                      ) -> dict[str, torch.Tensor]:
    """:func:`head_alignment` averaged over sentences, and the share of anchor steps
    (:func:`anchors`) at which each head's largest weight falls on the anchor's source token.

    Args:
        sources: sentences the model translated.
        translations: its translations of them (re-tokenized and fed through the decoder);
            pairs with an empty side are skipped.

    Returns:
        ``{"concentration", "monotonicity", "anchor_hits": (layers, H) float,
        "anchor_chance": the hit rate of a head that picks a source token at random (the
        mean of 1 / S over the anchor steps), "anchors": the number of anchor steps,
        "sentences": the number of sentences used}`` (tensors).
    """
    if len(sources) != len(translations):
        raise ValueError(f"sources and translations must be aligned; got {len(sources)} and "
                         f"{len(translations)}")
    pairs = [(tokenizer.encode(s), tokenizer.encode(t)) for s, t in zip(sources, translations)]
    pairs = [(s, t) for s, t in pairs if s and t]
    if not pairs:
        raise ValueError("no pair of sources and translations has tokens on both sides")
    model.eval()
    weights = _teacher_forced_cross(model, [s for s, _ in pairs], [t for _, t in pairs])
    totals, hits, count, chance = {}, 0.0, 0, 0.0
    for (src, out), seen in zip(pairs, weights):
        for name, value in head_alignment(seen).items():
            totals[name] = totals.get(name, 0.0) + value
        names = tokenizer.tokenizer.id_to_token
        for row, column in anchors([names(t) for t in src], [names(t) for t in out]):
            hits = hits + (seen[:, :, row].argmax(-1) == column).float()
            count, chance = count + 1, chance + 1 / len(src)
    out = {name: value / len(pairs) for name, value in totals.items()}
    out["anchor_hits"] = hits / count if count else torch.full_like(out["concentration"],
                                                                    float("nan"))
    out["anchor_chance"] = torch.tensor(chance / count if count else float("nan"))
    out["anchors"], out["sentences"] = torch.tensor(count), torch.tensor(len(pairs))
    return out


# ----------------------------------------------------------------------------- training

@dataclasses.dataclass
class TrainingRun:
    """What :func:`train` returns: the model (eval mode), tokenizer, recipe and history
    (``{"step": [...], "loss": [...], "lr": [...], "evals": [{"step", "val_loss"}, ...]}``,
    and for a recipe with ``average_last > 1``, once the run is complete, ``"average":
    {"steps": the checkpoints averaged, "val_loss": of the averaged model}``)."""

    model: Seq2SeqTransformer
    tokenizer: SubwordTokenizer
    recipe: Recipe
    history: dict
    seconds: float


def _merge(history: dict, part: History) -> dict:
    history.setdefault("step", []).extend(part.steps)
    history.setdefault("loss", []).extend(part.loss)
    history.setdefault("lr", []).extend(part.lr)
    history.setdefault("evals", []).extend(part.evals)
    return history


def _val_loss(model, batches) -> dict[str, float]:
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for batch in batches:
        batch = to_device(batch, device)
        tokens = batch.num_tokens
        total += sequence_loss(model(batch.src, batch.tgt_in), batch.tgt_out).item() * tokens
        count += tokens
    return {"val_loss": total / count}


def capped(recipe: Recipe) -> Recipe:
    """The recipe itself, or in a dry run (``QKV_DRY_RUN_STEPS=N``, a test hook) the recipe
    cut to at most N steps, with its warm-up and checkpoint interval cut to fit.

    Only counts of steps change; the model, the data and every size stay the recipe's.
    """
    steps = capped_steps(recipe.steps)
    if steps == recipe.steps:
        return recipe
    return dataclasses.replace(recipe, steps=steps,
                               warmup_steps=min(recipe.warmup_steps, steps - 1),
                               checkpoint_every=min(recipe.checkpoint_every, steps))


def train(recipe: Recipe, out: str | Path | None = None, resume: bool = False,
          device: torch.device | str | None = None, progress: bool | None = None,
          until: int | None = None) -> TrainingRun:
    """Train the recipe's model on Multi30k (German to English).

    Args:
        recipe: what to do (see :data:`RECIPES`); in a dry run (``QKV_DRY_RUN_STEPS``) its
            step counts are capped (see :func:`capped`).
        out: checkpoint folder, written every ``recipe.checkpoint_every`` steps and at the end
            (None: no checkpoints). With ``recipe.average_last = k > 1`` it also holds the
            weights of the last k checkpoints; at the end of the run the model (returned and
            saved) is their average.
        resume: continue from the checkpoint in ``out`` (its tokenizer, weights, optimizer
            and step) instead of starting again.
        device: where to train (default: CUDA if available, else the CPU).
        progress: show progress bars and a line per checkpoint; None (the default): only when
            a person runs the notebook (:func:`qkv.runtime.live_progress`).
        until: stop after this many steps (default ``recipe.steps``); the schedule still
            spans ``recipe.steps``, so a later ``resume=True`` call continues the same run.
            Long runs are split this way into several notebook cells.

    Returns:
        A :class:`TrainingRun`.
    """
    start_time = time.perf_counter()
    progress = live_progress() if progress is None else progress
    recipe = capped(recipe)
    if not isinstance(recipe.average_last, int) or recipe.average_last < 1:
        raise ValueError(f"recipe.average_last must be a positive integer; got "
                         f"{recipe.average_last!r}")
    device = choose_device(device) if not isinstance(device, torch.device) else device
    seed_everything(recipe.seed)
    sources, targets = (_head(side, recipe.train_sentences) for side in load_pairs("train"))
    history, done, state, snapshots = {}, 0, None, []
    if resume:
        if out is None or not (complete_set(Path(out)) / "model.pt").is_file():
            raise FileNotFoundError(f"resume=True needs a checkpoint in out={out}")
        model, tokenizer, config, state = load_translator(out, device)
        if config["recipe"] != dataclasses.asdict(recipe):
            raise ValueError(f"the checkpoint in {out} was trained with another recipe: "
                             f"{config['recipe']}")
        history, done = config["history"], state["step"]
        snapshots = load_snapshots(out, device)
    else:
        tokenizer = SubwordTokenizer.train(sources + targets, recipe.vocab_size)
        model = build_model(recipe, tokenizer).to(device)
    batches = make_batches(tokenizer.encode_batch(sources), tokenizer.encode_batch(targets),
                           recipe.max_tokens, max_len=recipe.max_len, seed=recipe.seed)
    val_sources, val_targets = load_pairs("val")
    val_batches = make_batches(tokenizer.encode_batch(val_sources),
                               tokenizer.encode_batch(val_targets), recipe.max_tokens,
                               max_len=recipe.max_len)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, betas=(0.9, 0.98),
                                  weight_decay=recipe.weight_decay)
    if state is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    next_batch = epoch_batches(batches, seed=recipe.seed)
    stop = recipe.steps if until is None else min(until, recipe.steps)
    while done < stop:
        chunk = min(recipe.checkpoint_every - done % recipe.checkpoint_every, stop - done)
        part = fit(model, next_batch, translation_loss(recipe.label_smoothing), chunk,
                   lr=recipe.lr, warmup_steps=recipe.warmup_steps, schedule=recipe.schedule,
                   total_steps=recipe.steps, optimizer=optimizer, start_step=done,
                   evaluate=lambda m: _val_loss(m, val_batches), device=device,
                   seed=recipe.seed + done, progress=progress)
        done += chunk
        _merge(history, part)
        if recipe.average_last > 1 and (done % recipe.checkpoint_every == 0
                                        or done == recipe.steps):
            weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            snapshots = [*snapshots, (done, weights)][-recipe.average_last:]
            if done == recipe.steps:  # the end of the run: the model becomes the average
                model.load_state_dict(average_states([w for _, w in snapshots]))
                model.eval()
                with torch.no_grad():
                    history["average"] = {"steps": [s for s, _ in snapshots],
                                          **_val_loss(model, val_batches)}
        if out is not None:
            save_translator(out, model, tokenizer, recipe, optimizer, done, history,
                            snapshots if recipe.average_last > 1 else None)
        if progress:
            print(f"step {done}/{recipe.steps}: train loss {part.loss[-1]:.3f}, "
                  f"val loss {part.evals[-1]['val_loss']:.3f}", file=sys.stderr)
    return TrainingRun(model.eval(), tokenizer, recipe, history,
                       time.perf_counter() - start_time)


# ----------------------------------------------------------------------------- command line

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m qkv.translation",
                                     description="German-to-English Transformer on Multi30k.")
    commands = parser.add_subparsers(dest="command", required=True)
    train_cmd = commands.add_parser("train", help="train and save a checkpoint folder")
    train_cmd.add_argument("--budget", choices=BUDGETS, required=True)
    train_cmd.add_argument("--out", required=True, help="checkpoint folder")
    train_cmd.add_argument("--resume", action="store_true", help="continue the run in --out")
    train_cmd.add_argument("--device", default=None, help="cpu or cuda (default: cuda if any)")
    train_cmd.add_argument("--threads", type=int, default=None, help="CPU threads")
    train_cmd.add_argument("--quiet", action="store_true", help="no progress output")
    for name, help_text in (("translate", "German lines on stdin, English lines on stdout"),
                            ("evaluate", "sacreBLEU and chrF on a Multi30k split")):
        cmd = commands.add_parser(name, help=help_text)
        cmd.add_argument("--model", required=True,
                         help="checkpoint folder, or URL of an archive made by `pack`")
        cmd.add_argument("--sha256", default=None, help="the archive's SHA-256 (with a URL)")
        cmd.add_argument("--beam", type=int, default=None,
                         help="beam size (default: the recipe's; 1 = greedy)")
        cmd.add_argument("--alpha", type=float, default=None, help="length-penalty exponent")
        cmd.add_argument("--device", default=None)
        cmd.add_argument("--threads", type=int, default=None)
    evaluate_cmd = commands.choices["evaluate"]
    evaluate_cmd.add_argument("--split", default="val", choices=("val", "test_2016_flickr"),
                              help="Multi30k split to score (default: val; the test set is "
                                   "scored only when asked for)")
    evaluate_cmd.add_argument("--src", default=None,
                              help="German file to translate instead of a split (plain or .gz)")
    evaluate_cmd.add_argument("--ref", default=None, help="its English references (plain or .gz)")
    evaluate_cmd.add_argument("--bootstrap", type=int, default=1000,
                              help="resamples for 95%% confidence intervals (0 = none)")
    pack_cmd = commands.add_parser("pack", help="archive a checkpoint folder for sharing")
    pack_cmd.add_argument("--model", required=True, help="checkpoint folder")
    pack_cmd.add_argument("--out", required=True, help="archive to write (.tar.gz)")
    return parser


def read_lines(data: bytes, what: str) -> list[str]:
    """The lines of ``data`` decoded as UTF-8 (final newline and carriage returns dropped);
    a line that is not UTF-8 raises ValueError naming ``what`` and the line number."""
    if not data:
        return []
    lines = data.removesuffix(b"\n").split(b"\n")
    decoded = []
    for number, line in enumerate(lines, start=1):
        try:
            decoded.append(line.removesuffix(b"\r").decode("utf-8"))
        except UnicodeDecodeError as error:
            raise ValueError(f"line {number} of {what} is not valid UTF-8 (byte "
                             f"{error.start + 1} of the line): save it as UTF-8") from None
    return decoded


def _read_file(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    data = file.read_bytes()
    if data[:2] == b"\x1f\x8b":  # gzip's magic number
        data = gzip.decompress(data)
    return read_lines(data, path)


def _pairs_to_score(args) -> tuple[str, list[str], list[str]]:
    """(name, sources, references) that ``evaluate`` scores: --src/--ref, else --split."""
    if (args.src is None) != (args.ref is None):
        raise ValueError("--src and --ref go together: give both files or neither")
    if args.src is None:
        sources, references = load_pairs(args.split)
        return args.split, sources, references
    sources, references = _read_file(args.src), _read_file(args.ref)
    if len(sources) != len(references):
        raise ValueError(f"--src has {len(sources)} lines but --ref has {len(references)}: "
                         "they must be parallel, one sentence per line")
    return args.src, sources, references


def _decoding(args, recipe: dict) -> tuple[int, float]:
    beam = recipe["beam_size"] if args.beam is None else args.beam
    return beam, recipe["alpha"] if args.alpha is None else args.alpha


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m qkv.translation``; returns the exit status.

    Missing checkpoints or data and bad values end with a one-line message and status 1.
    """
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (FileNotFoundError, FileExistsError, ConnectionError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run(args) -> int:
    set_threads(getattr(args, "threads", None))
    if args.command == "train":
        recipe = RECIPES[args.budget]
        run = train(recipe, args.out, args.resume, args.device, progress=not args.quiet)
        sources, references = (_head(side, recipe.test_sentences) for side in load_pairs("val"))
        scores = {"split": "val"}
        for beam in sorted({1, recipe.beam_size}):
            result, _ = evaluate(run.model, run.tokenizer, sources, references, beam,
                                 recipe.alpha)
            scores[f"beam{beam}"] = dataclasses.asdict(result)
            print(f"val ({len(sources)} sentences), beam {beam}:\n{result}")
        (Path(args.out) / "scores.json").write_text(json.dumps(scores, indent=1))
        print(f"trained in {run.seconds:.0f} s; checkpoint in {args.out}")
        return 0
    if args.command == "pack":
        print(f"{pack_translator(args.model, args.out)}  {args.out}")  # as sha256sum writes it
        return 0
    model, tokenizer, config, _ = fetch_translator(args.model, args.sha256, device=args.device)
    beam, alpha = _decoding(args, config["recipe"])
    if args.command == "translate":
        lines = read_lines(sys.stdin.buffer.read(), "the input")
        for line in translate(model, tokenizer, lines, beam, alpha):
            print(line)
        return 0
    name, sources, references = _pairs_to_score(args)
    result, _ = evaluate(model, tokenizer, sources, references, beam, alpha, args.bootstrap)
    print(f"{name} ({len(sources)} sentences), beam {beam}:\n{result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
