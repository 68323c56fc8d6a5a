"""Tests of qkv.metrics: the scores are sacreBLEU's, on cased detokenized text."""

import pytest
import sacrebleu

from qkv.metrics import (
    corpus_scores,
    output_statistics,
    paired_test,
    scores_by_length,
    worst_sentences,
)

REFERENCES = ["A man rides a red bike down the street.", "Two dogs play in the snow.",
              "A woman is laughing at a joke."]
HYPOTHESES = ["A man rides a bike along the street.", "Two dogs are playing in snow.",
              "A woman laughs at a joke."]


def test_scores_equal_sacrebleu_and_carry_the_signatures():
    scores = corpus_scores(HYPOTHESES, REFERENCES)
    assert scores.bleu == pytest.approx(sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score)
    assert scores.chrf == pytest.approx(sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES]).score)
    assert "case:mixed" in scores.bleu_signature and "tok:13a" in scores.bleu_signature
    assert "nc:6" in scores.chrf_signature
    assert "BLEU = " in str(scores) and scores.bleu_signature in str(scores)


def test_known_values_and_case_sensitivity():
    assert corpus_scores(REFERENCES, REFERENCES).bleu == pytest.approx(100.0)
    lowered = corpus_scores([r.lower() for r in REFERENCES], REFERENCES)
    assert lowered.bleu < 90  # cased: "a man" does not match "A man"
    assert 0 <= corpus_scores(["Nothing alike here ."] * 3, REFERENCES).bleu < 5


def test_bad_inputs():
    with pytest.raises(ValueError, match="aligned"):
        corpus_scores(HYPOTHESES[:2], REFERENCES)
    with pytest.raises(TypeError, match="strings"):
        corpus_scores([1, 2, 3], REFERENCES)
    with pytest.raises(ValueError, match="empty"):
        corpus_scores([], [])


# ----------------------------------------------------------------------------- intervals, tests

CORPUS_REFS = [f"A dog number {i} runs across the green field ." if i % 2 else
               f"Two children play with ball {i} in the park ." for i in range(60)]
CORPUS_HYPS = [r.replace("green", "big") if i % 3 else r.replace("play", "are playing")
               for i, r in enumerate(CORPUS_REFS)]


def test_intervals_contain_the_scores_and_are_deterministic():
    scores = corpus_scores(CORPUS_HYPS, CORPUS_REFS, n_bootstrap=200, seed=7)
    for value, (low, high) in ((scores.bleu, scores.bleu_interval),
                               (scores.chrf, scores.chrf_interval),
                               (scores.bleu_lc, scores.bleu_lc_interval)):
        assert low < value < high
    assert "bs:200" in scores.bleu_signature and "seed:7" in scores.bleu_signature
    assert "case:lc" in scores.bleu_lc_signature and "tok:13a" in scores.bleu_lc_signature
    assert corpus_scores(CORPUS_HYPS, CORPUS_REFS, n_bootstrap=200, seed=7) == scores
    other_seed = corpus_scores(CORPUS_HYPS, CORPUS_REFS, n_bootstrap=200, seed=8)
    assert other_seed.bleu == scores.bleu and other_seed.bleu_interval != scores.bleu_interval
    assert "95 % CI" in str(scores) and "lower-cased" in str(scores)
    assert corpus_scores(CORPUS_HYPS, CORPUS_REFS).bleu_interval is None


def test_lower_cased_bleu_ignores_case():
    upper = [h.upper() for h in CORPUS_HYPS]
    assert corpus_scores(upper, CORPUS_REFS).bleu_lc == pytest.approx(
        corpus_scores(CORPUS_HYPS, CORPUS_REFS).bleu_lc)
    assert corpus_scores(upper, CORPUS_REFS).bleu < 5


def test_paired_test_on_identical_and_on_different_systems():
    same = paired_test(CORPUS_HYPS, list(CORPUS_HYPS), CORPUS_REFS, n_samples=200)
    assert same["BLEU"].p_value == 1.0 and same["chrF"].p_value == 1.0
    assert same["BLEU"].baseline == same["BLEU"].system
    one_changed = list(CORPUS_HYPS)
    one_changed[3] = one_changed[3].replace("dog", "cat")
    close = paired_test(CORPUS_HYPS, one_changed, CORPUS_REFS, n_samples=200)
    assert close["BLEU"].p_value > 0.05  # one word in 60 sentences: no evidence
    bad = paired_test(CORPUS_HYPS, ["Nothing alike ."] * 60, CORPUS_REFS, n_samples=200)
    assert bad["BLEU"].p_value < 0.01 and bad["chrF"].p_value < 0.01
    assert bad["BLEU"].system < bad["BLEU"].baseline
    again = paired_test(CORPUS_HYPS, one_changed, CORPUS_REFS, n_samples=200)
    assert again == close and "bs:200" in close["BLEU"].signature
    assert "p = " in str(close["BLEU"])
    with pytest.raises(ValueError, match="seed"):
        paired_test(CORPUS_HYPS, one_changed, CORPUS_REFS, seed=0)
    with pytest.raises(ValueError, match="aligned"):
        paired_test(CORPUS_HYPS, one_changed[:5], CORPUS_REFS)


# ----------------------------------------------------------------------------- analysis

def test_scores_by_length_buckets():
    sources = ["eins zwei", "eins zwei drei vier", "a b c d e f", "x"]
    refs = ["one two", "one two three four", "a b c d e f", "x"]
    hyps = [refs[0], "nothing", refs[2], refs[3]]
    rows = scores_by_length(sources, hyps, refs, edges=(0, 3, 5))
    assert [(r["bucket"], r["sentences"]) for r in rows] == [("0-2", 2), ("3-4", 1), ("5+", 1)]
    assert rows[0]["chrf"] == pytest.approx(100.0) and rows[2]["bleu"] == pytest.approx(100.0)
    assert rows[1]["bleu"] == pytest.approx(0.0) and rows[1]["chrf"] < 10
    rows = scores_by_length(sources[:2], hyps[:2], refs[:2], edges=(0, 3, 5))
    assert [r["bucket"] for r in rows] == ["0-2", "3-4"]  # empty buckets are left out
    rows = scores_by_length(sources, hyps, refs, edges=(0, 4))
    assert [(r["bucket"], r["sentences"]) for r in rows] == [("0-3", 2), ("4+", 2)]
    with pytest.raises(ValueError, match="edges"):
        scores_by_length(sources, hyps, refs, edges=(5, 3))


def test_worst_sentences_are_the_lowest_chrf_first():
    refs = ["a red car", "two dogs run", "a woman sings", "the sun shines"]
    hyps = ["a red car", "zzz", "a woman dances", "qqq"]
    worst = worst_sentences(["s0", "s1", "s2", "s3"], hyps, refs, count=3)
    assert [w["index"] for w in worst[:2]] in ([1, 3], [3, 1]) and worst[2]["index"] == 2
    assert worst[0]["chrf"] <= worst[1]["chrf"] < worst[2]["chrf"] < 100
    assert worst[2]["source"] == "s2" and worst[2]["reference"] == refs[2]
    assert worst[2]["hypothesis"] == hyps[2]


def test_output_statistics_on_known_sentences():
    sources = ["Ein Mann namens Peter .", "Zwei Hunde ."]
    refs = ["A man called Peter .", "Two dogs ."]
    hyps = ["A man in a man in", "Zwei Hunde ."]
    stats = output_statistics(sources, hyps, refs)
    assert stats["length_ratio"] == pytest.approx(9 / 8)
    assert stats["repetition"] == pytest.approx(2 / 7)  # 5 + 2 bigrams, two repeated
    assert stats["copy"] == pytest.approx(2 / 8)  # "Zwei", "Hunde" of 8 word tokens
    assert stats["reference_copy"] == pytest.approx(1 / 6)  # "Peter"
    assert stats["reference_repetition"] == 0.0
