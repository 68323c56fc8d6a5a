"""The student edition: solutions removed, exercises kept, nothing overwritten silently."""

import json
from pathlib import Path

import pytest
import yaml

from qkv import report
from qkv.exercises.student import export_student_book, strip_solutions

ROOT = Path(__file__).resolve().parents[1]


def _md(text):
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _code(text):
    return {"cell_type": "code", "metadata": {}, "source": text, "outputs": [], "execution_count": None}


def test_strip_removes_gated_solutions_and_keeps_the_rest():
    cells = [
        _md("```{exercise} One\n:label: ex-1\nDo it.\n```"),
        _code("def mine(): raise NotImplementedError"),
        _md("```{solution-start} ex-1\n:class: dropdown\n```"),
        _md("The answer is"),
        _code("def answer(): return 42"),
        _md("```{solution-end}\n```"),
        _md("````{solution} ex-1\nA one-piece solution.\n````"),
        _md("After the exercise."),
    ]
    stripped = strip_solutions({"cells": cells, "metadata": {}, "nbformat": 4})
    assert [c["source"] for c in stripped["cells"]] == [
        cells[0]["source"], cells[1]["source"], "After the exercise."]


@pytest.mark.parametrize(
    "cells, message",
    [
        ([_md("```{solution-start} a\n```")], "never closed"),
        ([_md("```{solution-end}\n```")], "never opened"),
        ([_md("```{solution-start} a\n```"), _md("```{solution-start} b\n```")], "inside the solution"),
    ],
)
def test_unbalanced_solutions_are_errors(cells, message):
    with pytest.raises(ValueError, match=message):
        strip_solutions({"cells": cells}, name="x.ipynb")


@pytest.mark.parametrize("path", sorted((ROOT / "chapters").glob("*.ipynb")), ids=lambda p: p.stem)
def test_real_chapters_lose_every_solution_and_keep_every_exercise(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    stripped = json.dumps(strip_solutions(notebook, name=path.name))
    original = json.dumps(notebook)
    assert "{solution" not in stripped
    assert stripped.count("{exercise}") == original.count("{exercise}")
    if original.count("{exercise}"):
        assert original.count("{exercise}") >= 4, "every written chapter has at least four exercises"
        assert original.count("{solution-start}") == original.count("{exercise}")


def test_export_writes_a_complete_student_book_and_refuses_to_overwrite(tmp_path):
    out = export_student_book(ROOT, tmp_path / "student")
    config = yaml.safe_load((out / "_config.yml").read_text())
    assert config["sphinx"]["config"]["hide_solutions"] is True
    assert config["title"].endswith("(student edition)")
    for name in ("_toc.yml", "intro.md", "references.bib"):
        assert (out / name).read_text() == (ROOT / name).read_text()
    # the results page reads benchmarks/results relative to the book, so the copy needs them too
    assert report.load_results(out / "benchmarks" / "results") == report.load_results(
        ROOT / "benchmarks" / "results")
    chapters = sorted(p.name for p in (out / "chapters").glob("*.ipynb"))
    assert chapters == sorted(p.name for p in (ROOT / "chapters").glob("*.ipynb"))
    (out / "teacher-notes.md").write_text("mine")
    with pytest.raises(FileExistsError, match="pass --force"):
        export_student_book(ROOT, out)
    assert (out / "teacher-notes.md").read_text() == "mine"
    export_student_book(ROOT, out, force=True)
    assert not (out / "teacher-notes.md").exists()
