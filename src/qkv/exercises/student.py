"""The student edition: the book and its notebooks without the solutions.

Solutions in the chapters use sphinx-exercise's gated syntax, so they can hold code cells::

    ```{solution-start} ch01-ex-soft-lookup        <- a markdown cell
    ```
    ... markdown and code cells of the solution ...
    ```{solution-end}                              <- a markdown cell
    ```

:func:`strip_solutions` deletes every cell from a ``solution-start`` cell to its ``solution-end``
cell, both included (and any cell holding a one-piece ``{solution}`` directive). The command line
writes a complete student copy of the book, whose configuration also sets ``hide_solutions``::

    python -m qkv.exercises.student BOOK_DIR OUT_DIR [--force]

It refuses to write into an existing, non-empty ``OUT_DIR`` unless ``--force`` is given, so a
teacher's edited copy is never overwritten silently.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

_DIRECTIVE = r"^\s*(?:`{3,}|:{3,})\s*\{%s\}"
_START = re.compile(_DIRECTIVE % "solution-start", re.MULTILINE)
_END = re.compile(_DIRECTIVE % "solution-end", re.MULTILINE)
_WHOLE = re.compile(_DIRECTIVE % "solution", re.MULTILINE)

ANSWER_TAG = "shows-an-answer"
BADGE_TAG = "colab-badge"
STUDENT_BRANCH = "student-edition"
"""The branch whose ``chapters/`` holds the student notebooks; the student book's launch buttons
open them there."""

BOOK_FILES = ("_toc.yml", "intro.md", "notation.md", "results.md", "references.bib", "_static", "_ext",
              "benchmarks/results")
"""Files and folders copied unchanged into the student book (``_config.yml`` is rewritten);
``benchmarks/results`` is what the results page reads."""


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def strip_solutions(notebook: dict, name: str = "notebook") -> dict:
    """Return a copy of ``notebook`` (nbformat 4 JSON as a dict) without its solution cells.

    Raises:
        ValueError: if a ``solution-start`` has no matching ``solution-end`` or the reverse;
            ``name`` is used in the message.
    """
    kept, inside = [], None
    for index, cell in enumerate(notebook.get("cells", [])):
        text = _source(cell) if cell.get("cell_type") == "markdown" else ""
        if _START.search(text):
            if inside is not None:
                raise ValueError(f"{name}: cell {index} opens a solution inside the solution "
                                 f"opened at cell {inside}")
            inside = index
        elif _END.search(text):
            if inside is None:
                raise ValueError(f"{name}: cell {index} closes a solution that was never opened")
            inside = None
        elif inside is None and not _WHOLE.search(text):
            kept.append(cell)
    if inside is not None:
        raise ValueError(f"{name}: the solution opened at cell {inside} is never closed")
    return {**notebook, "cells": kept}


def student_notebook(notebook: dict, name: str = "notebook") -> dict:
    """``notebook`` without its solutions and with every ``shows-an-answer`` cell replaced by a
    note that says what was left out."""
    cells = []
    for cell in strip_solutions(notebook, name)["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if BADGE_TAG in tags:  # the "Open in Colab" badge opens this student notebook
            source = re.sub(r"/blob/[^/]+/chapters/", f"/blob/{STUDENT_BRANCH}/chapters/",
                            _source(cell))
            cell = {**cell, "source": source}
        if ANSWER_TAG in tags:
            shown = re.findall(r"show_source\((.*?)\)", _source(cell))
            what = f" (`{', '.join(shown)}`)" if shown else ""
            cell = {"cell_type": "markdown", "id": cell.get("id", "answer"), "metadata": {},
                    "source": f"*The book prints the package's code here{what}. An exercise of "
                              "this chapter asks you to write it, so the student edition leaves "
                              "it out.*"}
        cells.append(cell)
    return {**notebook, "cells": cells}


def prepare_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        if not force:
            raise FileExistsError(f"{out_dir} exists and is not empty; pass --force to replace it")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def export_notebooks(chapters_dir: Path, out_dir: Path) -> list[Path]:
    """Write the student copy (:func:`student_notebook`) of every ``*.ipynb`` in ``chapters_dir``
    into ``out_dir``."""
    notebooks = sorted(Path(chapters_dir).glob("*.ipynb"))
    if not notebooks:
        raise FileNotFoundError(f"no notebooks found in {chapters_dir}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in notebooks:
        stripped = student_notebook(json.loads(path.read_text(encoding="utf-8")), name=path.name)
        target = out_dir / path.name
        target.write_text(json.dumps(stripped, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    return written


def export_student_book(book_dir: Path, out_dir: Path, force: bool = False) -> Path:
    """Write a student copy of the whole book (config, contents, intro, chapters) to ``out_dir``.

    The copy's ``_config.yml`` sets sphinx-exercise's ``hide_solutions: true`` as a second line
    of defence, in case a solution were ever written outside the gated syntax, and the
    repository branch to :data:`STUDENT_BRANCH`, where the launch buttons find the notebooks.
    """
    import yaml  # installed with jupyter-book; only the teacher's export needs it

    book_dir, out_dir = Path(book_dir), Path(out_dir)
    if not (book_dir / "_config.yml").is_file():
        raise FileNotFoundError(f"book_dir {book_dir} has no _config.yml")
    prepare_out_dir(out_dir, force)
    config = yaml.safe_load((book_dir / "_config.yml").read_text(encoding="utf-8"))
    config["title"] = f"{config.get('title', 'Book')} (student edition)"
    config.setdefault("sphinx", {}).setdefault("config", {})["hide_solutions"] = True
    config.setdefault("repository", {})["branch"] = STUDENT_BRANCH
    (out_dir / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    for name in BOOK_FILES:
        source = book_dir / name
        if source.is_dir():
            shutil.copytree(source, out_dir / name)
        else:
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, out_dir / name)
    export_notebooks(book_dir / "chapters", out_dir / "chapters")
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the student edition of the book.")
    parser.add_argument("book_dir", type=Path, help="folder holding _config.yml and chapters/")
    parser.add_argument("out_dir", type=Path, help="folder to write the student book into")
    parser.add_argument("--force", action="store_true", help="replace a non-empty out_dir")
    args = parser.parse_args(argv)
    out = export_student_book(args.book_dir, args.out_dir, force=args.force)
    print(f"student edition written to {out}")


if __name__ == "__main__":
    main()
