"""Tests of qkv.data.text: the subword tokenizer and length-bucketed batches."""

import pytest
import torch

from qkv.data.text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    SubwordTokenizer,
    epoch_batches,
    make_batches,
    pad,
)

CORPUS = [
    "Ein Mann fährt Fahrrad.", "A man rides a bike.", "Zwei Hunde spielen im Schnee!",
    "Two dogs play in the snow!", "Eine Frau, die lacht.", "A woman who is laughing.",
    "Kinder spielen am Strand.", "Children play on the beach.",
] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return SubwordTokenizer.train(CORPUS, vocab_size=120)


def test_special_tokens_have_fixed_ids(tokenizer):
    assert [tokenizer.tokenizer.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert (PAD_ID, BOS_ID, EOS_ID) == (0, 1, 2)
    assert tokenizer.vocab_size <= 120


@pytest.mark.parametrize("text", ["Ein Mann fährt Fahrrad.", "Two dogs, play!", "",
                                  "Kinder spielen im Schnee am Strand.", "Eine Frau, die  lacht!"])
def test_round_trip_gives_back_the_cased_untokenized_text(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_decode_stops_at_eos_and_skips_specials(tokenizer):
    ids = tokenizer.encode("A man.")
    assert tokenizer.decode([BOS_ID, *ids, EOS_ID, *tokenizer.encode("Two")]) == "A man."
    assert tokenizer.decode_batch(torch.tensor([[*ids, EOS_ID, PAD_ID]]).tolist()) == ["A man."]
    assert tokenizer.tokens("Hunde!")[-1] == "!"  # punctuation is its own token


def test_characters_never_seen_in_training_become_unknown(tokenizer):
    assert UNK_ID in tokenizer.encode("Ein Mann (50) fährt.")
    assert tokenizer.decode(tokenizer.encode("Ein Mann (50) fährt.")) != "Ein Mann (50) fährt."


def test_save_and_load_give_the_same_ids(tokenizer, tmp_path):
    tokenizer.save(tmp_path)
    loaded = SubwordTokenizer.load(tmp_path)
    assert loaded.encode_batch(CORPUS[:8]) == tokenizer.encode_batch(CORPUS[:8])
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        SubwordTokenizer.load(tmp_path / "missing")


def test_pad_and_make_batches_keep_every_pair_within_the_token_budget():
    gen = torch.Generator().manual_seed(0)
    sources = [list(range(4, 4 + int(n))) for n in torch.randint(1, 20, (200,), generator=gen)]
    targets = [list(range(5, 5 + int(n))) for n in torch.randint(1, 20, (200,), generator=gen)]
    batches = make_batches(sources, targets, max_tokens=100)
    seen = []
    for batch in batches:
        assert batch.src.numel() <= 100 and batch.tgt_in.numel() <= 100
        assert torch.all(batch.tgt_in[:, 0] == BOS_ID)
        assert torch.equal(batch.tgt_in != PAD_ID, batch.tgt_out != PAD_ID)
        for row_src, row_in, row_out in zip(batch.src.tolist(), batch.tgt_in.tolist(),
                                            batch.tgt_out.tolist()):
            source = [t for t in row_src if t != PAD_ID]
            target = [t for t in row_out if t != PAD_ID]
            assert target[-1] == EOS_ID and row_in[1:len(target)] == target[:-1]
            seen.append((tuple(source), tuple(target[:-1])))
    assert sorted(seen) == sorted(zip(map(tuple, sources), map(tuple, targets)))
    # Bucketing: far less padding than batches of random pairs would have.
    padded = sum(b.src.numel() for b in batches)
    assert padded < 1.15 * sum(map(len, sources))
    assert pad([[5], [6, 7]]).tolist() == [[5, PAD_ID], [6, 7]]


def test_make_batches_drops_too_long_pairs_and_checks_alignment():
    batches = make_batches([[4] * 3, [4] * 9], [[5] * 2, [5] * 2], max_tokens=50, max_len=5)
    assert len(batches) == 1 and batches[0].src.shape == (1, 3)
    with pytest.raises(ValueError, match="aligned"):
        make_batches([[4]], [], max_tokens=10)
    with pytest.raises(ValueError, match="max_tokens"):
        make_batches([[4]], [[5]], max_tokens=0)


def test_epoch_batches_visit_each_batch_once_per_epoch_in_a_new_order():
    batches = make_batches([[4] * n for n in range(1, 21)], [[5]] * 20, max_tokens=20)
    next_batch = epoch_batches(batches, seed=3)
    n = len(batches)
    first = [id(next_batch(s)) for s in range(n)]
    second = [id(next_batch(s)) for s in range(n, 2 * n)]
    assert sorted(first) == sorted(second) == sorted(map(id, batches)) and first != second
    assert [id(epoch_batches(batches, seed=3)(s)) for s in range(n)] == first  # resumable
