"""Translation metrics through sacreBLEU (chapter 6): corpus scores with confidence intervals,
paired significance tests, and the per-sentence measures behind an error analysis.

BLEU (Papineni et al., 2002) and chrF (Popović, 2015) are computed by sacreBLEU (Post, 2018)
on detokenized, cased text, never by hand: BLEU scores depend on tokenization, casing and
smoothing, and only a shared implementation with a printed *signature* (which records those
choices) makes two numbers comparable.

* :func:`corpus_scores`: BLEU and chrF, plus BLEU on lower-cased text (as many Multi30k papers
  report it), each with its signature and, with ``n_bootstrap``, sacreBLEU's 95 % bootstrap
  confidence interval (Koehn, 2004).
* :func:`paired_test`: sacreBLEU's paired bootstrap resampling test of two systems on the same
  sentences: how likely a difference at least as large as the observed one is by chance.
* :func:`scores_by_length`, :func:`worst_sentences`, :func:`output_statistics`: where a
  system fails (by source length, sentence by sentence) and what its output looks like
  (length ratio, repeated words, words copied from the source).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_SEED = 12345
"""sacreBLEU's own default seed for bootstrap resampling."""


@dataclass(frozen=True)
class TranslationScores:
    """Corpus BLEU and chrF (both 0-100) with the sacreBLEU signatures that define them.

    ``bleu_lc`` is BLEU on lower-cased text (same 13a tokenization). The ``*_interval`` fields
    are sacreBLEU's 95 % bootstrap confidence intervals, ``(low, high)``, when
    :func:`corpus_scores` was asked for them (else None); the signatures then record the
    number of resamples (``bs``) and the seed.
    """

    bleu: float
    chrf: float
    bleu_signature: str
    chrf_signature: str
    bleu_lc: float | None = None
    bleu_lc_signature: str | None = None
    bleu_interval: tuple[float, float] | None = None
    chrf_interval: tuple[float, float] | None = None
    bleu_lc_interval: tuple[float, float] | None = None

    def __str__(self) -> str:
        rows = [("BLEU", self.bleu, self.bleu_interval, self.bleu_signature),
                ("chrF", self.chrf, self.chrf_interval, self.chrf_signature)]
        if self.bleu_lc is not None:
            rows.append(("BLEU, lower-cased", self.bleu_lc, self.bleu_lc_interval,
                         self.bleu_lc_signature))
        return "\n".join(f"{name} = {value:.2f}{_interval_text(interval)} ({signature})"
                         for name, value, interval, signature in rows)


def _interval_text(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f" [95 % CI {interval[0]:.2f} to {interval[1]:.2f}]"


@contextlib.contextmanager
def _sacrebleu_seed(seed: int):
    """sacreBLEU reads its resampling seed from the environment variable SACREBLEU_SEED."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 1:
        raise ValueError(f"seed must be a positive integer (sacreBLEU treats 0 as no seed); "
                         f"got {seed!r}")
    before = os.environ.get("SACREBLEU_SEED")
    os.environ["SACREBLEU_SEED"] = str(seed)
    try:
        yield
    finally:
        if before is None:
            del os.environ["SACREBLEU_SEED"]
        else:
            os.environ["SACREBLEU_SEED"] = before


def _check_aligned(hypotheses, references, sources=None) -> tuple[list[str], ...]:
    named = [("hypotheses", hypotheses), ("references", references)]
    if sources is not None:
        named.append(("sources", sources))
    lists = []
    for name, texts in named:
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError(f"{name} must be a sequence of strings")
        lists.append(texts)
    if len({len(t) for t in lists}) > 1:
        counts = ", ".join(f"{len(t)} {name}" for (name, _), t in zip(named, lists))
        raise ValueError(f"{', '.join(n for n, _ in named)} must be aligned; got {counts}")
    if not lists[0]:
        raise ValueError("hypotheses is empty")
    return tuple(lists)


def _with_intervals(metrics: dict, hypotheses: list[str], n_bootstrap: int) -> dict:
    """``{name: (score, interval, signature)}`` for sacreBLEU metrics that cache their
    references, with sacreBLEU's 95 % bootstrap interval: the resamples' mean +- half the
    range between their 2.5th and 97.5th percentiles.

    The resampling is sacreBLEU's own (its paired test computes the baseline's interval;
    with one system that is all it does). ``corpus_score(..., n_bootstrap=...)`` would do the
    same, but sacreBLEU 2.6 fails there when a resample of a poor system scores exactly 0.
    """
    from sacrebleu.significance import PairedTest as SacrePairedTest

    signatures, results = SacrePairedTest([("system", hypotheses)], metrics, references=None,
                                          test_type="bs", n_samples=n_bootstrap)()
    out = {}
    for name, key in zip(metrics, (k for k in results if k != "System")):
        result = results[key][0]
        interval = (float(result.mean - result.ci), float(result.mean + result.ci))
        out[name] = (float(result.score), interval, str(signatures[key]))
    return out


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str], n_bootstrap: int = 0,
                  seed: int = DEFAULT_SEED) -> TranslationScores:
    """sacreBLEU's corpus BLEU (13a tokenization, cased, exp smoothing), chrF, and BLEU on
    lower-cased text, optionally with 95 % bootstrap confidence intervals.

    Args:
        hypotheses: one detokenized system translation per sentence.
        references: one detokenized reference per sentence, aligned with ``hypotheses``.
        n_bootstrap: resamples of the sentences for the confidence intervals (1,000 is
            sacreBLEU's usual number); 0 = none.
        seed: the resampling seed (a positive integer), recorded in the signatures; the same
            seed gives the same intervals.

    Returns:
        :class:`TranslationScores`; ``print`` it to show the scores with their signatures.
    """
    from sacrebleu.metrics import BLEU, CHRF

    hypotheses, references = _check_aligned(hypotheses, references)
    if not isinstance(n_bootstrap, int) or n_bootstrap < 0 or n_bootstrap == 1:
        raise ValueError(f"n_bootstrap must be 0 (no interval) or at least 2; got "
                         f"{n_bootstrap!r}")
    metrics = {"bleu": BLEU(references=[references]), "chrf": CHRF(references=[references])}
    lowercase = {"bleu_lc": BLEU(lowercase=True, references=[references])}
    with _sacrebleu_seed(seed):
        if n_bootstrap:  # one call per BLEU: sacreBLEU names both "BLEU"
            found = {**_with_intervals(metrics, hypotheses, n_bootstrap),
                     **_with_intervals(lowercase, hypotheses, n_bootstrap)}
        else:
            found = {name: (metric.corpus_score(hypotheses, None).score, None,
                            str(metric.get_signature()))
                     for name, metric in {**metrics, **lowercase}.items()}
    (bleu, bleu_ci, bleu_sig), (chrf, chrf_ci, chrf_sig), (lc, lc_ci, lc_sig) = (
        found[name] for name in ("bleu", "chrf", "bleu_lc"))
    return TranslationScores(bleu, chrf, bleu_sig, chrf_sig, lc, lc_sig, bleu_ci, chrf_ci, lc_ci)


@dataclass(frozen=True)
class PairedTest:
    """The outcome of :func:`paired_test` for one metric."""

    metric: str
    baseline: float
    system: float
    p_value: float
    signature: str

    def __str__(self) -> str:
        return (f"{self.metric}: baseline {self.baseline:.2f}, system {self.system:.2f}, "
                f"difference {self.system - self.baseline:+.2f}, p = {self.p_value:.4f} "
                f"({self.signature})")


def paired_test(baseline: Sequence[str], system: Sequence[str], references: Sequence[str],
                n_samples: int = 1000, seed: int = DEFAULT_SEED) -> dict[str, PairedTest]:
    """sacreBLEU's paired bootstrap resampling test (Koehn, 2004) of two systems' translations
    of the same sentences, for BLEU and chrF.

    ``n_samples`` times, the same random resample of the sentences (with replacement) is
    scored for both systems; the spread of those differences, shifted to mean zero, is what
    chance alone produces, and the p-value is the share of it at least as far from zero as
    the observed difference (with sacreBLEU's +1 correction). A small p-value (say < 0.05)
    means that a difference this large is unlikely if the systems were equally good.

    sacreBLEU counts with a strict inequality, so two *identical* outputs would get its
    smallest p-value, 1 / (n_samples + 1); there is no difference to test then, and this
    function returns p = 1.

    Args:
        baseline, system: one detokenized translation per sentence, aligned with
            ``references``.
        references: the references.
        n_samples: bootstrap resamples (sacreBLEU's default is 1,000).
        seed: the resampling seed (a positive integer), recorded in the signatures.

    Returns:
        ``{"BLEU": PairedTest, "chrF": PairedTest}``.
    """
    from sacrebleu.metrics import BLEU, CHRF
    from sacrebleu.significance import PairedTest as SacrePairedTest

    baseline, references = _check_aligned(baseline, references)
    system, _ = _check_aligned(system, references)
    if not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an integer >= 2; got {n_samples!r}")
    metrics = {"BLEU": BLEU(references=[references]), "chrF": CHRF(references=[references])}
    with _sacrebleu_seed(seed):
        test = SacrePairedTest([("baseline", baseline), ("system", system)], metrics,
                               references=None, test_type="bs", n_samples=n_samples)
        signatures, results = test()
    out = {}
    for ours, theirs in zip(("BLEU", "chrF"), (k for k in results if k != "System")):
        base, other = results[theirs]
        p_value = 1.0 if baseline == system else float(other.p_value)
        out[ours] = PairedTest(ours, base.score, other.score, p_value, str(signatures[theirs]))
    return out


# ----------------------------------------------------------------------------- analysis

def _words(text: str) -> list[str]:
    """sacreBLEU's 13a tokens of ``text`` (words and punctuation marks split apart)."""
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()(text).split()


def scores_by_length(sources: Sequence[str], hypotheses: Sequence[str],
                     references: Sequence[str],
                     edges: Sequence[int] = (0, 10, 15, 20)) -> list[dict]:
    """Corpus BLEU and chrF of the sentences in each source-length bucket.

    Args:
        sources, hypotheses, references: aligned sentences.
        edges: increasing lower bounds of the buckets, in source words (13a tokens); the
            last bucket is open-ended. ``(0, 10, 15, 20)``: 0-9, 10-14, 15-19, 20 or more.

    Returns:
        One dict per non-empty bucket, in order: ``{"bucket": "10-14", "sentences": n,
        "bleu": ..., "chrf": ...}``.
    """
    hypotheses, references, sources = _check_aligned(hypotheses, references, sources)
    edges = list(edges)
    if not edges or any(not isinstance(e, int) or e < 0 for e in edges) or \
            any(a >= b for a, b in zip(edges, edges[1:])):
        raise ValueError(f"edges must be increasing integers >= 0; got {edges}")
    lengths = [len(_words(s)) for s in sources]
    rows = []
    for low, high in zip(edges, edges[1:] + [math.inf]):
        chosen = [i for i, n in enumerate(lengths) if low <= n < high]
        if not chosen:
            continue
        scores = corpus_scores([hypotheses[i] for i in chosen], [references[i] for i in chosen])
        label = f"{low}-{high - 1}" if high != math.inf else f"{low}+"
        rows.append({"bucket": label, "sentences": len(chosen), "bleu": scores.bleu,
                     "chrf": scores.chrf})
    return rows


def worst_sentences(sources: Sequence[str], hypotheses: Sequence[str],
                    references: Sequence[str], count: int = 10) -> list[dict]:
    """The ``count`` sentences with the lowest sentence-level chrF (sacreBLEU), worst first.

    Returns:
        Dicts ``{"index", "chrf", "source", "reference", "hypothesis"}``; ties keep the
        order of the input.
    """
    from sacrebleu.metrics import CHRF

    hypotheses, references, sources = _check_aligned(hypotheses, references, sources)
    chrf = CHRF()
    scored = [(chrf.sentence_score(h, [r]).score, i)
              for i, (h, r) in enumerate(zip(hypotheses, references))]
    return [{"index": i, "chrf": score, "source": sources[i], "reference": references[i],
             "hypothesis": hypotheses[i]} for score, i in sorted(scored)[:count]]


def output_statistics(sources: Sequence[str], hypotheses: Sequence[str],
                      references: Sequence[str]) -> dict[str, float]:
    """How the output looks, counted on 13a tokens (words and punctuation marks).

    * ``length_ratio``: output tokens / reference tokens over the corpus (BLEU's brevity
      penalty starts below 1);
    * ``repetition``: share of the output's token 2-grams (lower-cased) that already occurred
      earlier in the same sentence ("a man in a man in" repeats two of five);
    * ``copy``: share of the output's word tokens (with a letter) that also occur, with the
      same spelling, in the source sentence: names and numbers, or untranslated words;
    * ``reference_repetition``, ``reference_copy``: the same for the references, the level
      a human translation has.
    """
    hypotheses, references, sources = _check_aligned(hypotheses, references, sources)
    src_words = [_words(s) for s in sources]
    stats = {"length_ratio": sum(len(_words(h)) for h in hypotheses)
             / max(1, sum(len(_words(r)) for r in references))}
    for prefix, texts in (("", hypotheses), ("reference_", references)):
        words = [_words(t) for t in texts]
        stats[prefix + "repetition"] = _repeated_bigram_share(words)
        stats[prefix + "copy"] = _copied_share(words, src_words)
    return stats


def _repeated_bigram_share(sentences: list[list[str]]) -> float:
    repeated = total = 0
    for tokens in sentences:
        seen = set()
        for pair in zip((t.lower() for t in tokens), (t.lower() for t in tokens[1:])):
            repeated += pair in seen
            total += 1
            seen.add(pair)
    return repeated / total if total else 0.0


def _copied_share(sentences: list[list[str]], sources: list[list[str]]) -> float:
    copied = total = 0
    for tokens, source in zip(sentences, sources):
        source = set(source)
        for token in tokens:
            if any(c.isalpha() for c in token):
                copied += token in source
                total += 1
    return copied / total if total else 0.0
