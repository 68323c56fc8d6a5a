"""Where the built books are, and the marker that skips their checks unless asked for.

Shared by ``test_built_book.py`` (the HTML as files) and ``test_browser.py`` (the HTML in
Chromium). Both run only with QKV_CHECK_BUILT_BOOK=1, which .ci/run sets after `make book` and
`make student`, so that `make test` never judges a stale or missing build.
"""

import os
from pathlib import Path

import pytest

needs_built_book = pytest.mark.skipif(
    os.environ.get("QKV_CHECK_BUILT_BOOK") != "1",
    reason="set QKV_CHECK_BUILT_BOOK=1 after `make book` and `make student` (as .ci/run does)",
)

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "_build" / "html"
STUDENT = ROOT / "_build" / "student" / "_build" / "html"
CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("*.ipynb"))


def describes_image(alt: str, src: str) -> bool:
    """True if ``alt`` describes the image: not empty, and not the file name that Sphinx writes
    when a figure has no alt text of its own (e.g. alt="../_images/3120...png")."""
    alt = alt.strip()
    return bool(alt) and alt.rsplit("/", 1)[-1] != src.rsplit("/", 1)[-1]
