"""Tests of qkv.metrics: the scores are sacreBLEU's, on cased detokenized text."""

import pytest
import sacrebleu

from qkv.metrics import corpus_scores

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
