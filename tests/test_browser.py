"""The built book as a reader meets it: every page opened in headless Chromium.

Skipped unless QKV_CHECK_BUILT_BOOK=1 (set by .ci/run after `make book` and `make student`).
Uses Debian's Chromium (/usr/bin/chromium, installed by .ci/run) through Playwright; no browser
is downloaded. A full-page screenshot of every page is saved in _build/screenshots/ for a person
to look at.
"""

import json
import os
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from built_book import BOOK, CHAPTERS, ROOT, STUDENT, describes_image, needs_built_book

pytestmark = needs_built_book
SHOTS = ROOT / "_build" / "screenshots"
CHROMIUM = os.environ.get("QKV_CHROMIUM", "/usr/bin/chromium")
PAGES = ["intro"] + [f"chapters/{stem}" for stem in CHAPTERS] + ["results"]
WITH_EXERCISES = [
    f"chapters/{stem}" for stem in CHAPTERS
    if "{exercise}" in (ROOT / "chapters" / f"{stem}.ipynb").read_text(encoding="utf-8")
]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (see .ci/run)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


def _open(browser, root, page_name):
    """Open a page, wait for MathJax, and return (page, console errors)."""
    path = root / f"{page_name}.html"
    assert path.is_file(), f"{path} was not built"
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri(), wait_until="load")
    if page.locator(".math").count():  # Sphinx loads MathJax only on pages with maths
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                               timeout=30_000)
        page.evaluate("() => MathJax.startup.promise")
    return page, errors


@pytest.mark.parametrize("page_name", PAGES)
def test_page_renders_cleanly(browser, page_name):
    page, errors = _open(browser, BOOK, page_name)
    try:
        assert errors == [], f"console errors: {errors}"
        # maths: every formula typeset, none left as TeX source, no MathJax error node
        assert page.locator("mjx-merror").count() == 0
        raw = page.evaluate("""() => Array.from(document.querySelectorAll('.math'))
            .filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 60))""")
        assert raw == [], f"formulas not typeset: {raw[:5]}"
        text = page.inner_text("article")
        assert "$$" not in text, "raw $$ in the page"
        # images: loaded, and described
        images = page.evaluate("""() => Array.from(document.querySelectorAll('article img'))
            .map(i => ({src: i.src, width: i.naturalWidth, alt: i.alt}))""")
        for image in images:
            assert image["width"] > 0, f"image did not load: {image['src']}"
            assert describes_image(image["alt"], image["src"]), \
                f"image without alt text of its own: {image['src']}"
        # internal links: the file exists and so does the anchor
        links = page.evaluate("""() => Array.from(document.querySelectorAll('a[href]'))
            .map(a => a.href).filter(h => h.startsWith('file:'))""")
        for link in sorted(set(links)):
            url = urlparse(link)
            target = Path(unquote(url.path))
            assert target.exists(), f"broken link {link}"
            if url.fragment and target.suffix == ".html":
                html = target.read_text(encoding="utf-8")
                assert f'id="{url.fragment}"' in html, f"missing anchor {link}"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{Path(page_name).name}.png"), full_page=True)
    finally:
        page.close()


@pytest.mark.parametrize("page_name", WITH_EXERCISES)
def test_exercises_shown_with_solutions_in_the_book(browser, page_name):
    page, _ = _open(browser, BOOK, page_name)
    try:
        exercises = page.locator(".exercise").count()
        assert exercises >= 4
        assert page.locator(".solution").count() == exercises
    finally:
        page.close()


@pytest.mark.parametrize("page_name", WITH_EXERCISES)
def test_student_edition_has_no_solution(browser, page_name):
    page, _ = _open(browser, STUDENT, page_name)
    try:
        assert page.locator(".exercise").count() >= 4
        assert page.locator(".solution").count() == 0
        text = page.text_content("body")  # hidden (collapsed) elements included
        assert "Solution to" not in text
    finally:
        page.close()
    # A solution's line may also be printed outside it, e.g. by show_source of the package:
    # only the lines the teacher's page shows nowhere but in solutions are secrets.
    book_text, shown_elsewhere = _text_inside_and_outside_solutions(browser, page_name)
    secrets = [line for line in _lines_only_in_solutions(ROOT / f"{page_name}.ipynb")
               if line not in shown_elsewhere]
    assert secrets, "no solution line to look for: the check would be empty"
    for line in secrets:
        assert line in book_text, f"the teacher's edition lacks solution line {line!r}"
        assert line not in text, f"solution code leaked into the student edition: {line!r}"


def _text_inside_and_outside_solutions(browser, page_name):
    """The teacher's page text, and its text with every solution removed (hidden parts too)."""
    page, _ = _open(browser, BOOK, page_name)
    try:
        whole = page.text_content("body")
        page.evaluate("() => document.querySelectorAll('.solution').forEach(e => e.remove())")
        return whole, page.text_content("body")
    finally:
        page.close()


def _lines_only_in_solutions(path):
    """Code lines (20+ characters) of solution cells that no other cell contains."""
    inside, in_solutions, elsewhere = False, set(), []
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and "{solution-start}" in text:
            inside = True
        elif cell["cell_type"] == "markdown" and "{solution-end}" in text:
            inside = False
        if cell["cell_type"] == "code" and inside:
            in_solutions |= {line.strip() for line in text.splitlines() if len(line.strip()) >= 20}
        else:
            elsewhere.append(text)
    other_text = "\n".join(elsewhere)
    return sorted(line for line in in_solutions if line not in other_text)
