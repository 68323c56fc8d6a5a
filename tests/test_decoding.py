"""Tests of qkv.decoding: cached and uncached greedy decoding (and beam search) agree, beam 1 is
greedy, beam search finds the exact optimum of a small model when the beam holds every
hypothesis, and a finished hypothesis is kept apart from the live beam. The fast cached path
(FastCachedDecoder) gives the logits of the readable paths and is what decoding uses.
"""

import itertools
import math

import pytest
import torch

from qkv.decoding import (
    FastCachedDecoder,
    _ReadableSteps,
    beam_search,
    decoding_steps,
    greedy_decode,
    length_penalty,
)
from qkv.seq2seq import Seq2SeqTransformer

PAD, BOS, EOS = 0, 1, 2


def trained_looking_model(seed, norm_first):
    """A random model whose output layer is sharpened, so decoding produces varied lengths."""
    torch.manual_seed(seed)
    model = Seq2SeqTransformer(30, 30, d_model=16, num_heads=2, num_encoder_layers=2,
                               num_decoder_layers=2, d_ff=32, dropout=0.0, max_len=40,
                               norm_first=norm_first, tie_output=False)
    with torch.no_grad():
        model.output.weight.mul_(4.0)
        model.output.weight[EOS] += 0.3 * model.output.weight.mean(0)
    return model.eval()


def random_source(seed, batch=4, length=7):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(3, 30, (batch, length), generator=gen)
    src[1, 3:] = PAD  # a padded sentence
    return src


@pytest.mark.parametrize("seed,norm_first", [(0, True), (1, False), (2, True)])
def test_cached_greedy_equals_uncached_greedy(seed, norm_first):
    model, src = trained_looking_model(seed, norm_first), random_source(seed)
    cached = greedy_decode(model, src, max_new_tokens=15)
    uncached = greedy_decode(model, src, max_new_tokens=15, use_cache=False)
    assert torch.equal(cached, uncached)
    assert cached.shape[0] == 4 and cached.shape[1] <= 15


@pytest.mark.parametrize("seed,norm_first", [(0, True), (1, False)])
def test_fast_and_readable_cached_paths_give_the_same_tokens(seed, norm_first):
    model, src = trained_looking_model(seed, norm_first), random_source(seed)
    for decode, options in ((greedy_decode, {}), (beam_search, {"beam_size": 3})):
        fast = decode(model, src, max_new_tokens=15, **options)
        assert torch.equal(fast, decode(model, src, max_new_tokens=15, fast=False, **options))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_of_one_is_greedy(seed):
    model, src = trained_looking_model(seed, True), random_source(seed)
    assert torch.equal(beam_search(model, src, beam_size=1, max_new_tokens=15),
                       greedy_decode(model, src, max_new_tokens=15))


@pytest.mark.parametrize("seed,beam_size", [(0, 2), (1, 4), (2, 5)])
def test_cached_beam_search_equals_uncached_beam_search(seed, beam_size):
    model, src = trained_looking_model(seed, seed != 1), random_source(seed)
    cached = beam_search(model, src, beam_size=beam_size, max_new_tokens=12)
    assert torch.equal(cached, beam_search(model, src, beam_size=beam_size, max_new_tokens=12,
                                           use_cache=False))


@pytest.mark.parametrize("beam_size", [1, 3])
def test_a_sentence_decodes_the_same_alone_or_in_a_padded_batch(beam_size):
    model, src = trained_looking_model(3, True), random_source(3)
    src[2, 5:] = PAD
    out = beam_search(model, src, beam_size=beam_size)  # default, per-sentence step limits
    for i, row in enumerate(out.tolist()):
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1:])
        length = int((src[i] != PAD).sum())
        alone = beam_search(model, src[i:i + 1, :length], beam_size=beam_size)[0].tolist()
        assert row[:len(alone)] == alone and all(t == PAD for t in row[len(alone):])
        assert len([t for t in alone if t != PAD]) <= int(1.5 * length) + 10


# ----------------------------------------------------------------------------- the fast path

def float64_logits_by_path(model, src, tokens):
    """Next-token logits (B, T, V) after each prefix of ``tokens`` (B, T): uncached, readable
    cached and fast, in float64."""
    model = model.double()
    memory, valid = model.encode(src)
    paths = [decoding_steps(model, memory, valid, tokens.shape[1], use_cache, fast)
             for use_cache, fast in ((False, False), (True, False), (True, True))]
    assert [type(p) for p in paths] == [_ReadableSteps, _ReadableSteps, FastCachedDecoder]
    return [torch.stack([step(tokens[:, :t + 1]) for t in range(tokens.shape[1])], 1)
            for step in paths]


@pytest.mark.parametrize("seed,norm_first", [(0, True), (1, False), (2, True)])
def test_fast_logits_equal_uncached_and_readable_cached_logits_in_float64(seed, norm_first):
    model, src = trained_looking_model(seed, norm_first), random_source(seed)
    src[3] = PAD  # a source without a single token: zero cross-attention, as in the module
    tokens = torch.randint(3, 30, (4, 12), generator=torch.Generator().manual_seed(seed))
    tokens[:, 0] = BOS
    uncached, readable, fast = float64_logits_by_path(model, src, tokens)
    assert uncached.dtype == fast.dtype == torch.float64 and fast.shape == (4, 12, 30)
    assert (fast - uncached).abs().max() < 1e-10
    assert (fast - readable).abs().max() < 1e-10


def test_fast_logits_follow_model_options():
    """Untied output with a bias, separate embeddings, no final norm (post-LN), one head."""
    torch.manual_seed(4)
    model = Seq2SeqTransformer(25, 30, d_model=12, num_heads=1, num_encoder_layers=1,
                               num_decoder_layers=3, d_ff=20, dropout=0.0, max_len=20,
                               norm_first=False, tie_output=False).eval()
    model.output = torch.nn.Linear(12, 30, bias=True)
    src = torch.randint(3, 25, (2, 5), generator=torch.Generator().manual_seed(0))
    tokens = torch.randint(3, 30, (2, 8), generator=torch.Generator().manual_seed(1))
    uncached, _, fast = float64_logits_by_path(model, src, tokens)
    assert (fast - uncached).abs().max() < 1e-10


def test_fast_reorder_follows_the_rows():
    """Reordered after three steps, the fast path goes on as if the rows had always been
    in the new order; so does the readable cached path."""
    model, src = trained_looking_model(5, True), random_source(5)
    model = model.double()
    tokens = torch.randint(3, 30, (4, 7), generator=torch.Generator().manual_seed(5))
    memory, valid = model.encode(src)
    fast = FastCachedDecoder(model, memory, valid, 7)
    readable = decoding_steps(model, memory, valid, 7, fast=False)
    for t in range(3):
        fast(tokens[:, :t + 1]), readable(tokens[:, :t + 1])
    order = torch.tensor([2, 0, 0, 1, 3])
    fast.reorder(order), readable.reorder(order)
    new_tokens = torch.cat([tokens[order, :3], tokens[order, 3:].roll(1, 0)], 1)
    ordered = FastCachedDecoder(model, memory[order], valid[order], 7)
    for t in range(3):
        ordered(new_tokens[:, :t + 1])
    for t in range(3, 7):
        expected = ordered(new_tokens[:, :t + 1])
        assert (fast(new_tokens[:, :t + 1]) - expected).abs().max() < 1e-10
        assert (readable(new_tokens[:, :t + 1]) - expected).abs().max() < 1e-10
    same_source = torch.tensor([1, 2])  # rows 1 and 2 of the order both hold sentence 0
    fast.reorder(same_source, sources=False)
    assert fast.blocks[0].kv.shape[0] == 2


def test_decoding_uses_the_fast_path_where_it_can():
    model, src = trained_looking_model(0, True), random_source(0)
    memory, valid = model.encode(src)
    assert isinstance(decoding_steps(model, memory, valid, 5), FastCachedDecoder)
    assert isinstance(decoding_steps(model, memory, valid, 5, fast=False), _ReadableSteps)
    assert not FastCachedDecoder.supports(model.train())  # dropout: the readable path
    assert isinstance(decoding_steps(model, memory, valid, 5), _ReadableSteps)
    with pytest.raises(ValueError, match="eval mode"):
        FastCachedDecoder(model, memory, valid, 5)
    model.eval()
    with pytest.raises(ValueError, match="steps must be at most model.max_len=40"):
        FastCachedDecoder(model, memory, valid, 41)
    step = FastCachedDecoder(model, memory, valid, 1)
    step(torch.full((4, 1), BOS))
    with pytest.raises(ValueError, match="made for 1 steps"):
        step(torch.full((4, 2), BOS))


# ----------------------------------------------------------------------------- exact beam search

class BigramModel:
    """A stand-in for Seq2SeqTransformer whose next-token log-probabilities depend only on the
    last token (a fixed table), so every hypothesis' score can be enumerated."""

    pad_id, bos_id, eos_id, max_len = PAD, BOS, EOS, 50

    def __init__(self, seed, vocab=5):
        gen = torch.Generator().manual_seed(seed)
        table = 2 * torch.randn(vocab, vocab, generator=gen)
        table[:, [PAD, BOS]] = -1e4  # never produced
        self.log_probs = torch.log_softmax(table, dim=-1)

    def encode(self, src):
        return torch.zeros(src.shape[0], 1, 1), torch.ones(src.shape[0], 1, dtype=torch.bool)

    def new_cache(self):
        class NoCache:
            length = 0

            def reorder(self, index):
                pass
        return NoCache()

    def decode(self, tgt, memory, valid, cache=None, last_only=False):
        logits = self.log_probs[tgt]  # (B, T, V): logits of the token after each input token
        return logits[:, -1:] if last_only else logits

    def score(self, sequence):
        previous, total = BOS, 0.0
        for token in sequence:
            total += self.log_probs[previous, token].item()
            previous = token
        return total


def best_by_enumeration(model, steps, alpha):
    words = [t for t in range(model.log_probs.shape[0]) if t not in (PAD, BOS)]
    candidates = []
    for n in range(1, steps + 1):
        for seq in itertools.product(words, repeat=n):
            if EOS in seq[:-1] or (n < steps and seq[-1] != EOS):
                continue  # finished at its first EOS, or unfinished only at the step limit
            lp = length_penalty(torch.tensor(n), alpha).item()
            candidates.append((model.score(seq) / lp, list(seq)))
    return max(candidates)


@pytest.mark.parametrize("seed,alpha", [(0, 0.0), (1, 0.6), (2, 1.0), (3, 0.6)])
def test_wide_beam_finds_the_exact_best_hypothesis(seed, alpha):
    model, steps = BigramModel(seed), 4
    best_score, best = best_by_enumeration(model, steps, alpha)
    out = beam_search(model, torch.zeros(1, 3, dtype=torch.long), beam_size=64, alpha=alpha,
                      max_new_tokens=steps)[0].tolist()
    found = [t for t in out if t != PAD]
    assert found == best, (found, best, best_score)


class PrefixTableModel:
    """A stand-in for Seq2SeqTransformer whose next-token log-probabilities are a fixed table
    indexed by the whole prefix (a tuple of tokens after <bos>), so that every hypothesis'
    score is known. Its cache records the prefixes, so it follows beam search's reordering."""

    pad_id, bos_id, eos_id, max_len = PAD, BOS, EOS, 50

    def __init__(self, table, vocab):
        self.table, self.vocab = table, vocab  # {prefix: {token: probability}}

    def encode(self, src):
        return torch.zeros(src.shape[0], 1, 1), torch.ones(src.shape[0], 1, dtype=torch.bool)

    def new_cache(self):
        class PrefixCache:
            tokens = None

            def reorder(self, index):
                self.tokens = self.tokens[index]
        return PrefixCache()

    def log_prob(self, prefix, token):
        row = self.table.get(tuple(prefix), {})
        rest = 1 - sum(row.values())  # spread over the words the row does not name
        unnamed = [t for t in range(3, self.vocab) if t not in row] + ([EOS] * (EOS not in row))
        p = row.get(token, rest / len(unnamed) if token in unnamed else 0.0)
        return math.log(p) if p > 0 else -1e4

    def decode(self, tgt, memory, valid, cache=None, last_only=False):
        if cache is not None:  # tgt holds only the new tokens
            cache.tokens = tgt if cache.tokens is None else torch.cat([cache.tokens, tgt], 1)
            tgt = cache.tokens
        logits = torch.tensor([[self.log_prob(row[1:], t) for t in range(self.vocab)]
                               for row in tgt.tolist()])
        return logits[:, None, :]  # only the last position: what decoding asks for

    def score(self, sequence):
        return sum(self.log_prob(sequence[:i], t) for i, t in enumerate(sequence))


def random_prefix_table(seed, vocab, steps):
    """Random next-token distributions over <eos> and the words, one per prefix of words."""
    gen = torch.Generator().manual_seed(seed)
    words = list(range(3, vocab))
    table = {}
    for n in range(steps):
        for prefix in itertools.product(words, repeat=n):
            probs = torch.softmax(2 * torch.randn(len(words) + 1, generator=gen), 0).tolist()
            table[prefix] = dict(zip([EOS, *words], probs))
    return PrefixTableModel(table, vocab)


def all_hypotheses(model, steps):
    """Every hypothesis of at most ``steps`` tokens: ended by its first <eos>, or unfinished at
    the step limit."""
    words = [t for t in range(model.vocab) if t not in (PAD, BOS)]
    for n in range(1, steps + 1):
        for seq in itertools.product(words, repeat=n):
            if EOS not in seq[:-1] and (n == steps or seq[-1] == EOS):
                yield list(seq)


@pytest.mark.parametrize("seed,vocab,steps,alpha",
                         [(0, 6, 4, 0.0), (1, 6, 4, 0.6), (2, 6, 4, 1.0), (3, 5, 5, 0.6),
                          (4, 5, 5, 2.0)])
def test_a_beam_holding_every_hypothesis_returns_the_exhaustive_best(seed, vocab, steps, alpha):
    model = random_prefix_table(seed, vocab, steps)
    hypotheses = list(all_hypotheses(model, steps))
    normalised = [model.score(h) / length_penalty(torch.tensor(len(h)), alpha).item()
                  for h in hypotheses]
    best = hypotheses[max(range(len(hypotheses)), key=normalised.__getitem__)]
    out = beam_search(model, torch.zeros(1, 3, dtype=torch.long), beam_size=len(hypotheses),
                      alpha=alpha, max_new_tokens=steps)[0].tolist()
    assert [t for t in out if t != PAD] == best


def test_a_finished_hypothesis_is_kept_when_live_ones_outrank_it():
    """<eos> first is the best sentence (p = 0.2). With a beam of 3 it ranks second at step 1,
    but at step 2 three live extensions (p = 0.21 each) outrank it, and all of them end badly.
    A search that keeps finished hypotheses inside the beam, competing with live ones for
    its K places (as this module once did), pushes it out at step 2 and returns a sentence
    of p <= 0.105."""
    a, b, c = 3, 4, 5
    table = {(): {a: 0.7, EOS: 0.2, b: 0.05, c: 0.05},
             (a,): {a: 0.3, b: 0.3, c: 0.3, EOS: 0.1}}
    for first in (a, b, c):
        for second in (a, b, c):
            table[(first, second)] = {EOS: 0.5, a: 0.2, b: 0.2, c: 0.1}
    model = PrefixTableModel(table, 6)
    out = beam_search(model, torch.zeros(1, 2, dtype=torch.long), beam_size=3, alpha=0.0,
                      max_new_tokens=5)[0].tolist()
    assert out == [EOS]
    assert model.score([EOS]) > max(model.score([a, x, EOS]) for x in (a, b, c))


@pytest.mark.parametrize("alpha,steps", [(0.0, 1), (1.0, 2)])
def test_the_stopping_rules(alpha, steps):
    """After step 1, <eos> (p = 0.6) has finished and "a" (p = 0.4) is live. With alpha = 0 no
    continuation of "a" can beat 0.6: the search stops. With alpha = 1 a long continuation
    could (the bound divides by lp(30)), so it goes on until K = 2 hypotheses have finished."""
    a = 3
    table = {(): {EOS: 0.6, a: 0.4}, (a,): {EOS: 0.9, a: 0.1}}
    model = PrefixTableModel(table, 4)
    calls = []
    decode = model.decode
    model.decode = lambda *args, **kwargs: calls.append(1) or decode(*args, **kwargs)
    out = beam_search(model, torch.zeros(1, 2, dtype=torch.long), beam_size=2, alpha=alpha,
                      max_new_tokens=30)[0].tolist()
    assert len(calls) == steps
    assert out == [EOS]  # 0.6 beats 0.36 ** (1 / lp(2)) too


def test_length_penalty_and_bad_arguments():
    assert length_penalty(torch.tensor(1), 0.6).item() == pytest.approx(1.0)
    assert length_penalty(torch.tensor(7), 0.5).item() == pytest.approx(2 ** 0.5)
    assert length_penalty(torch.tensor(9), 0.0).item() == 1.0
    model, src = trained_looking_model(0, True), random_source(0)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, src, beam_size=0)
    with pytest.raises(ValueError, match="alpha"):
        beam_search(model, src, alpha=-1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_decode(model, src, max_new_tokens=0)
