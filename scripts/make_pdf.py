"""Print the built HTML book to one PDF with headless Chromium, then check it.

    python scripts/make_pdf.py _build/html _build/pdf/queries-keys-values.pdf

Every page of ``_toc.yml`` (the introduction, the seven chapters, the results) is printed by
Chromium (Debian's package, driven by Playwright, as in the browser tests) once MathJax has
typeset it, and the pages are joined into one PDF whose outline has one entry per page, titled
with the page's first heading. The file is written atomically. The check fails unless the PDF
opens, has pages, and its outline holds every chapter's title, in the book's order.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import yaml
from playwright.sync_api import sync_playwright
from pypdf import PdfReader, PdfWriter

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("QKV_CHROMIUM", "/usr/bin/chromium")
TYPESET = ("() => !window.MathJax || !MathJax.startup || !MathJax.startup.promise || "
           "MathJax.startup.promise.then(() => true)")


def toc_pages() -> list[str]:
    """The book's pages in order, as paths without suffix: the root, then every chapter entry."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return [toc["root"]] + [entry["file"] for entry in toc.get("chapters", [])]


def print_book(html_dir: Path, out: Path) -> list[str]:
    """Print every page to ``out``; return the titles of the outline entries."""
    writer, titles = PdfWriter(), []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        for name in toc_pages():
            path = html_dir / f"{name}.html"
            if not path.is_file():
                raise SystemExit(f"{path} does not exist: run make book first")
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_function(TYPESET, timeout=120_000)
            title = page.locator("main h1").first.inner_text().strip().rstrip("#").strip()
            printed = page.pdf(format="A4", print_background=True,
                               margin={"top": "15mm", "bottom": "15mm", "left": "12mm",
                                       "right": "12mm"})
            first = len(writer.pages)
            writer.append(PdfReader(io.BytesIO(printed)))
            writer.add_outline_item(title=title, page_number=first)
            titles.append(title)
        browser.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    with open(partial, "wb") as file:
        writer.write(file)
    os.replace(partial, out)
    return titles


def chapter_titles() -> list[str]:
    """The first heading of every chapter notebook, in the book's order."""
    import nbformat

    titles = []
    for name in toc_pages():
        path = ROOT / f"{name}.ipynb"
        if path.exists():
            notebook = nbformat.read(path, as_version=4)
            heading = next(line for cell in notebook.cells if cell.cell_type == "markdown"
                           for line in cell.source.splitlines() if line.startswith("# "))
            titles.append(heading[2:].strip())
    return titles


def check_pdf(path: Path, chapters: list[str]) -> int:
    """Raise SystemExit unless ``path`` opens and its outline lists ``chapters`` in order;
    return the number of pages."""
    reader = PdfReader(path)
    if len(reader.pages) == 0:
        raise SystemExit(f"{path} has no pages")
    outline = [item.title for item in reader.outline if not isinstance(item, list)]
    positions = []
    for title in chapters:
        found = [i for i, entry in enumerate(outline) if entry.startswith(title)]
        if not found:
            raise SystemExit(f"{path}: no section {title!r} in the outline {outline}")
        positions.append(found[0])
    if positions != sorted(positions):
        raise SystemExit(f"{path}: the chapters are out of order in the outline {outline}")
    return len(reader.pages)


def main() -> None:
    html_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    print_book(html_dir, out)
    chapters = chapter_titles()
    pages = check_pdf(out, chapters)
    print(f"{out}: {pages} pages; outline: one section for each of the {len(chapters)} chapters")


if __name__ == "__main__":
    main()
