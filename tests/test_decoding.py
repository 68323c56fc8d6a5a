"""Tests of qkv.decoding: cached and uncached greedy decoding agree, beam 1 is greedy, and beam
search finds the exact optimum of a small bigram model when the beam holds every hypothesis.
"""

import itertools

import pytest
import torch

from qkv.decoding import beam_search, greedy_decode, length_penalty
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


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_of_one_is_greedy(seed):
    model, src = trained_looking_model(seed, True), random_source(seed)
    assert torch.equal(beam_search(model, src, beam_size=1, max_new_tokens=15),
                       greedy_decode(model, src, max_new_tokens=15))


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
