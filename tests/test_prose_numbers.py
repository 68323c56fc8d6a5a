"""No chapter's prose types a number that the chapter measures.

Each chapter records its headline results with :func:`qkv.runtime.record`; the result files
under ``benchmarks/results/`` keep them. A sentence that quotes one of them must take it from
the run (myst-nb's ``{glue:text}``), never type it: typed, it disagrees with the output printed
under it as soon as the chapter runs on another machine, seed or thread count.
"""

import json
import math
import re
from pathlib import Path

import pytest

from qkv import report

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))


def recorded_values(chapter: str) -> set[float]:
    """Every float result the chapter recorded at the book or full budget, in any result file,
    seed and thread count. (Smoke results are not results: a smoke run only shows that the
    chapter runs, and the prose never discusses them.)"""
    values = set()
    for data in report.load_results():
        for run in data.get("chapters", []) + data.get("runs", []):
            if run["chapter"] == chapter and run["budget"] in ("book", "full"):
                values |= {r["value"] for r in run["results"] if isinstance(r["value"], float)}
    return values


REFERENCE = re.compile(
    r"^#+\s+[\d.]+|(?:[Ss]ections?|§|[Ff]ig(?:ure)?s?\.?|[Ee]xercises?|[Tt]ables?|[Cc]hapters?)"
    r"\s+\d+(?:\.\d+)*", re.MULTILINE)
"""Numbers that name a part of the book (headings, "section 6.7", "Fig. 2.5"), not a value."""


_IN_SENTENCE = r"(?:[^.!?]|[.!?](?=\S))*"  # a full stop ends a sentence, a decimal point does not
CITED_SENTENCE = re.compile(_IN_SENTENCE + r"\{cite(?::[pt])?\}`[^`]*`" + _IN_SENTENCE + r"[.!?]?")
"""A sentence that cites a source: its numbers are the source's, not this book's results."""


def prose_of(path: Path) -> str:
    """The chapter's markdown, without the numbers that name parts of the book or that a
    citation in the same sentence vouches for."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    prose = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return CITED_SENTENCE.sub(" ", REFERENCE.sub(" ", prose))


def spellings(value: float) -> set[str]:
    """How prose would type ``value``: 1 to 3 decimals, and as a percentage for a fraction.

    Round numbers (1.0, 50 %) and spellings with fewer than two significant digits are left
    out: they occur in prose for other reasons.
    """
    if not math.isfinite(value):  # e.g. a scheme that cannot run there: nothing to type
        return set()
    texts = {f"{value:.{d}f}" for d in (1, 2, 3)}
    if 0 < value < 1:
        texts |= {f"{100 * value:.{d}f} %" for d in (0, 1)}
        texts |= {f"{100 * value:.{d}f}%" for d in (0, 1)}
    kept = set()
    for text in texts:
        number = float(text.rstrip(" %"))
        digits = text.rstrip(" %").replace(".", "").replace("-", "").lstrip("0")
        if number != int(number) and len(digits) >= 2:
            kept.add(text)
    return kept


def test_numbers_a_citation_vouches_for_are_not_results(tmp_path):
    text = ("Ours reaches 0.95. A baseline was reported to reach MAP 0.95 on WordNet in "
            "{cite:p}`poincare2019issue35`, and 0.93 elsewhere. Then 0.91 again.")
    kept = CITED_SENTENCE.sub(" ", text)
    assert "Ours reaches 0.95." in kept and "Then 0.91 again." in kept
    assert "0.93" not in kept and "WordNet" not in kept


def test_references_to_parts_of_the_book_are_not_values():
    text = "## 6.7 Looking inside\nAs section 6.1 and Fig. 2.5 show, the ratio is 6.1."
    assert REFERENCE.sub(" ", text).count("6.1") == 1 and "2.5" not in REFERENCE.sub(" ", text)


def test_spellings():
    assert spellings(float("nan")) == set()
    assert spellings(0.2523) == {"0.25", "0.252", "25.2 %", "25.2%"}
    assert "33.6" in spellings(33.6123) and "1.0" not in spellings(0.999)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_prose_does_not_type_a_recorded_result(path):
    prose = prose_of(path)
    typed = sorted({text for value in recorded_values(path.stem) for text in spellings(value)
                    if re.search(rf"(?<![\d.]){re.escape(text)}(?![\d])", prose)})
    assert not typed, (f"{path.name} types measured results {typed} in its prose: "
                       "take them from the run with qkv.runtime.glue and {glue:text}")
