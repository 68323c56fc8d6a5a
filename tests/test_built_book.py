"""Checks of the built HTML book and of the student edition (run by .ci/run after the builds).

Skipped unless QKV_CHECK_BUILT_BOOK=1, so that `make test` never judges a stale build.
"""

import re

import pytest
import yaml
from bs4 import BeautifulSoup
from built_book import BOOK, CHAPTERS, ROOT, STUDENT, describes_image, needs_built_book

pytestmark = needs_built_book
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())


def _page(root, stem):
    path = root / "chapters" / f"{stem}.html"
    assert path.is_file(), f"{path} was not built"
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


@pytest.mark.parametrize("stem", CHAPTERS)
def test_every_chapter_page_is_built_without_tracebacks(stem):
    text = _page(BOOK, stem).get_text()
    assert "Traceback (most recent call last)" not in text


@pytest.mark.parametrize("stem", CHAPTERS)
def test_colab_button_opens_this_chapter_on_the_configured_branch(stem):
    repo = CONFIG["repository"]["url"].removeprefix("https://github.com/")
    expected = (f"https://colab.research.google.com/github/{repo}/blob/"
                f"{CONFIG['repository']['branch']}/chapters/{stem}.ipynb")
    links = [a["href"] for a in _page(BOOK, stem).find_all("a", href=True)]
    assert expected in links, f"no Colab link to {expected}"


@pytest.mark.parametrize("stem", CHAPTERS)
def test_written_chapters_have_captioned_figures_with_alt_text_and_maths(stem):
    page = _page(BOOK, stem)
    images = page.select("main img, article img")
    assert images, "a written chapter has figures"
    for image in images:
        assert describes_image(image.get("alt", ""), image["src"]), \
            f"image {image['src']} has no alt text of its own (metadata mystnb.image.alt)"
        assert (BOOK / "chapters" / image["src"]).resolve().is_file(), image["src"]
    captions = page.select("figure figcaption")
    assert len(captions) >= 2
    assert page.select(".math"), "maths is marked up for MathJax"


@pytest.mark.parametrize("stem", CHAPTERS)
def test_book_shows_exercises_with_solutions(stem):
    page = _page(BOOK, stem)
    exercises = page.select(".exercise")
    assert len(exercises) >= 4
    assert len(page.select(".solution")) == len(exercises)


@pytest.mark.parametrize("stem", CHAPTERS)
def test_student_edition_shows_exercises_and_no_solution(stem):
    page = _page(STUDENT, stem)
    assert len(page.select(".exercise")) >= 4
    assert not page.select(".solution")
    assert not re.search(r"\bSolution to\b", page.get_text())


def _solution_free(notebook_path):
    """Fail if a notebook holds a solution or a cell that prints an exercise's answer."""
    import json

    notebook = json.loads(notebook_path.read_text(encoding="utf-8"))
    text = "".join("".join(cell["source"]) for cell in notebook["cells"])
    assert "{solution" not in text and "def solution_" not in text, notebook_path
    assert not any("shows-an-answer" in cell.get("metadata", {}).get("tags", [])
                   for cell in notebook["cells"]), notebook_path


@pytest.mark.parametrize("stem", CHAPTERS)
def test_every_student_launch_and_download_link_reaches_a_notebook_without_solutions(stem):
    """The student book's Colab button opens chapters/NN.ipynb on the student branch, whose
    content is what `make student-branch` publishes; its download button serves _sources."""
    from qkv.exercises.student import STUDENT_BRANCH

    repo = CONFIG["repository"]["url"].removeprefix("https://github.com/")
    prefix = f"https://colab.research.google.com/github/{repo}/blob/"
    links = [a["href"] for a in _page(STUDENT, stem).find_all("a", href=True)]
    launches = [link for link in links if link.startswith(prefix)]
    assert launches, "the student page has a Colab button"
    branch_folder = ROOT / "_build" / "student-branch"
    for link in launches:
        branch, _, path = link.removeprefix(prefix).partition("/")
        assert branch == STUDENT_BRANCH, f"{link} opens branch {branch}, not the student one"
        _solution_free(branch_folder / path)
    downloads = [link for link in links if "_sources/" in link and link.endswith(".ipynb")]
    assert downloads, "the student page offers its notebook for download"
    for link in downloads:
        _solution_free((STUDENT / "chapters" / link).resolve())


@pytest.mark.parametrize("stem", CHAPTERS)
def test_figures_and_exercises_are_numbered_within_their_chapter(stem):
    """Fig. 6.1, 6.2, ... and Exercise 6.1, ... (see _ext/qkv_book.py), in captions and titles."""
    page, chapter = _page(BOOK, stem), int(stem[:2])
    figures = [span.get_text() for span in page.select("figcaption .caption-number")]
    assert figures == [f"Fig. {chapter}.{i} " for i in range(1, len(figures) + 1)]
    exercises = re.findall(r"Exercise (\d+(?:\.\d+)?)", page.get_text())
    assert exercises and all(number.startswith(f"{chapter}.") for number in exercises)
