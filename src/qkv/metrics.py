"""Corpus-level translation metrics through sacreBLEU (chapter 6).

BLEU (Papineni et al., 2002) and chrF (Popović, 2015) are computed by sacreBLEU (Post, 2018)
on detokenized, cased text, never by hand: BLEU scores depend on tokenization, casing and
smoothing, and only a shared implementation with a printed *signature* (which records those
choices) makes two numbers comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TranslationScores:
    """Corpus BLEU and chrF (both 0-100) with the sacreBLEU signatures that define them."""

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str

    def __str__(self) -> str:
        return (f"BLEU = {self.bleu:.2f} ({self.bleu_signature})\n"
                f"chrF = {self.chrf:.2f} ({self.chrf_signature})")


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> TranslationScores:
    """sacreBLEU's corpus BLEU (13a tokenization, cased, exp smoothing) and chrF.

    Args:
        hypotheses: one detokenized system translation per sentence.
        references: one detokenized reference per sentence, aligned with ``hypotheses``.

    Returns:
        :class:`TranslationScores`; ``print`` it to show the scores with their signatures.
    """
    from sacrebleu.metrics import BLEU, CHRF

    hypotheses, references = list(hypotheses), list(references)
    for name, texts in (("hypotheses", hypotheses), ("references", references)):
        if not all(isinstance(t, str) for t in texts):
            raise TypeError(f"{name} must be a sequence of strings")
    if len(hypotheses) != len(references):
        raise ValueError(f"hypotheses and references must be aligned; got {len(hypotheses)} "
                         f"hypotheses and {len(references)} references")
    if not hypotheses:
        raise ValueError("hypotheses is empty")
    bleu, chrf = BLEU(), CHRF()
    bleu_score = bleu.corpus_score(hypotheses, [references])
    chrf_score = chrf.corpus_score(hypotheses, [references])
    return TranslationScores(bleu_score.score, chrf_score.score, str(bleu.get_signature()),
                             str(chrf.get_signature()))
