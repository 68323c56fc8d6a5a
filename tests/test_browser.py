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
PAGES = ["intro"] + [f"chapters/{stem}" for stem in CHAPTERS] + ["notation", "results"]
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


def _open(browser, root, page_name, width=1400):
    """Open a page ``width`` pixels wide, wait for MathJax, and return (page, console errors)."""
    path = root / f"{page_name}.html"
    assert path.is_file(), f"{path} was not built"
    page = browser.new_page(viewport={"width": width, "height": 1000})
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


# What a reader must never meet, found in the rendered page: the text outside code and maths
# (TeX left raw, placeholders), and every box wider than what shows of it.
LAYOUT_PROBLEMS = r"""(wide) => {
  const article = document.querySelector('article');
  const copy = article.cloneNode(true);
  copy.querySelectorAll('pre, code, mjx-container, script, style, .highlight')
      .forEach(e => e.remove());
  const text = copy.textContent;
  const problems = [];
  const tex = text.match(/\$[^$\n]{1,60}\$|\\(mathbf|lVert|rVert|frac|operatorname|sqrt|cdot|mathbb|sum)\b/);
  if (tex) problems.push('raw TeX: ' + tex[0]);
  const placeholder = text.match(/\b(TODO|FIXME|TBD|XXX)\b|committed yet|lorem ipsum/i);
  if (placeholder) problems.push('placeholder: ' + placeholder[0]);
  const scrolls = e => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
  const right = article.getBoundingClientRect().right + 2;
  const describe = e => (e.textContent || '').trim().slice(0, 50);
  document.querySelectorAll('mjx-container[display="true"]').forEach(e => {
    if (e.scrollWidth > e.clientWidth + 1 && (wide || !scrolls(e)))
      problems.push((wide ? 'maths wider than the column: ' : 'maths cut: ') + describe(e));
    if (e.getBoundingClientRect().right > right) problems.push('maths past the column: ' + describe(e));
  });
  document.querySelectorAll('.cell_output pre').forEach(e => {
    if (e.scrollWidth > e.clientWidth + 1) problems.push('output wider than its box: ' + describe(e));
  });
  document.querySelectorAll('pre').forEach(e => {
    if (e.scrollWidth > e.clientWidth + 1 && !scrolls(e)) problems.push('code cut: ' + describe(e));
  });
  // Figures: drawn at 100 dpi with no text under 8 pt (tests/test_plot.py), so a figure shown at
  // less than 80 % of its natural width has text under 9 px. On a phone a wide figure scrolls
  // inside its output; at 1280 px every figure (at most 840 px wide) fits the column whole.
  document.querySelectorAll('.cell_output img, figure img').forEach(e => {
    if (e.naturalWidth > 0 && e.clientWidth < 0.8 * e.naturalWidth)
      problems.push(`figure text too small (shown at ${Math.round(100 * e.clientWidth / e.naturalWidth)} %): ` + (e.alt || e.src).slice(0, 50));
    const box = e.closest('.cell_output') || e.parentElement;
    if (wide && box && box.scrollWidth > box.clientWidth + 1)
      problems.push('figure wider than the column: ' + (e.alt || e.src).slice(0, 50));
  });
  document.querySelectorAll('article table').forEach(t => {
    const box = t.closest('.pst-scrollable-table-container, .cell_output table') || t;
    if (t.getBoundingClientRect().right > right && !scrolls(box) && !scrolls(t))
      problems.push('table past the column: ' + describe(t));
  });
  return problems;
}"""


@pytest.mark.parametrize("width", [1280, 390])
@pytest.mark.parametrize("page_name", PAGES)
def test_nothing_raw_cut_or_unfinished(browser, page_name, width):
    """No raw TeX or placeholder in the text; display maths fits the column at 1280 px and
    scrolls inside it on a phone; code and tables fit or scroll; output wraps; on a phone no
    figure is shrunk until its text is under 9 px. A screenshot of each width is saved for a
    person to look at."""
    page, _ = _open(browser, BOOK, page_name, width)
    try:
        problems = page.evaluate(LAYOUT_PROBLEMS, width >= 1280)
        assert problems == [], f"{len(problems)} problems at {width} px:\n" + "\n".join(problems[:15])
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{Path(page_name).name}-{width}.png"), full_page=True)
    finally:
        page.close()


def test_layout_checks_fail_on_a_broken_page(browser, tmp_path):
    """The layout checks can fail: a page with raw TeX, a placeholder, cut maths and a long
    output line is reported on every count."""
    page = browser.new_page(viewport={"width": 390, "height": 800})
    try:
        page.set_content("""<article style="width: 300px">
            <p>The norm $\\lVert q \\rVert$ here. TODO: finish.</p>
            <mjx-container display="true" style="display: block; overflow: hidden; width: 300px">
              <div style="width: 900px">wide maths</div></mjx-container>
            <div class="cell_output"><img alt="a wide figure" style="width: 300px" src="data:image/svg+xml,"""
            + "%3Csvg xmlns='http://www.w3.org/2000/svg' width='1200' height='100'/%3E"
            + """"></div>
            <div class="cell_output"><pre style="white-space: pre; overflow: hidden">"""
            + "x" * 300 + "</pre></div></article>")
        page.wait_for_timeout(200)
        problems = page.evaluate(LAYOUT_PROBLEMS, False)
        kinds = {problem.split(":")[0] for problem in problems}
        assert {"raw TeX", "placeholder", "maths cut", "output wider than its box", "code cut"} <= kinds
        assert any(problem.startswith("figure text too small") for problem in problems)
        page.set_content("""<article style="width: 300px"><div class="cell_output"
            style="overflow-x: auto"><img alt="a figure held wide" style="min-width: 900px" src="data:image/svg+xml,"""
            + "%3Csvg xmlns='http://www.w3.org/2000/svg' width='1000' height='100'/%3E"
            + """"></div></article>""")
        page.wait_for_timeout(200)
        assert any(problem.startswith("figure wider than the column")
                   for problem in page.evaluate(LAYOUT_PROBLEMS, True))
    finally:
        page.close()


def test_contents_button_opens_the_chapter_list_on_a_phone(browser):
    """At 390 px the chapter list is hidden; the one contents button shows every chapter."""
    page, _ = _open(browser, BOOK, f"chapters/{CHAPTERS[0]}", width=390)
    try:
        toggles = page.locator(".primary-toggle")
        visible = [toggles.nth(i) for i in range(toggles.count()) if toggles.nth(i).is_visible()]
        assert len(visible) == 1, f"{len(visible)} visible contents buttons"
        chapter_links = page.locator(".bd-sidebar-primary a.reference.internal")
        assert chapter_links.count() >= len(CHAPTERS)
        visible[0].click()
        page.wait_for_timeout(500)
        shown = [chapter_links.nth(i).is_visible() for i in range(chapter_links.count())]
        assert all(shown), f"after the click, {shown.count(False)} chapter links still hidden"
    finally:
        page.close()


# Tables that a phone reader would have to scroll sideways to read: wider than their box, or
# with a labelled cell whose label does not show.
TABLES_TOO_WIDE = r"""() => Array.from(document.querySelectorAll('.cell_output table'))
  .filter(t => t.scrollWidth > t.clientWidth + 1
          || t.getBoundingClientRect().right > document.documentElement.clientWidth)
  .map(t => (t.textContent || '').trim().slice(0, 40))"""


def test_results_tables_fit_a_phone(browser):
    """At 390 px every table of the results page fits the screen: each row is a card of
    "column: value" lines, so no value hides behind a sideways scroll."""
    page, _ = _open(browser, BOOK, "results", width=390)
    try:
        assert page.locator(".cell_output table").count() >= 3
        assert page.evaluate(TABLES_TOO_WIDE) == []
        assert page.locator(".cell_output table.stacked td[data-label]").count() > 20
    finally:
        page.close()


def test_the_table_check_fails_on_a_page_without_stacked_tables(browser):
    """Without the script that stacks them, the results tables run past a phone's screen and
    the check above says so."""
    context = browser.new_context(viewport={"width": 390, "height": 1000}, java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto((BOOK / "results.html").as_uri(), wait_until="load")
        assert page.evaluate(TABLES_TOO_WIDE) != []
    finally:
        context.close()


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
