"""The student edition: solutions removed, exercises kept, nothing overwritten silently."""

import json
import re
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


def _implementation(label):
    """Qualified names of the package functions that exercise ``label``'s reference runs: the
    code that answers the exercise."""
    import sys

    import torch

    from qkv.exercises import REGISTRY

    package = str((ROOT / "src" / "qkv").resolve())
    names = set()

    def profile(frame, event, arg):
        filename = str(Path(frame.f_code.co_filename).resolve())
        if event == "call" and filename.startswith(package) and "exercises" not in filename:
            names.add(frame.f_code.co_qualname)

    exercise = REGISTRY[label]
    inputs = exercise.make_inputs(torch.Generator().manual_seed(0))
    sys.setprofile(profile)
    try:
        exercise.reference(**inputs)
    finally:
        sys.setprofile(None)
    return names


# The one printed listing a student may see although an exercise's reference runs it: chapter 4
# teaches MultiHeadAttention.forward as a module (projections as nn.Linear, masks of every shape);
# its exercise asks for the same computation written functionally with explicit weight matrices.
ALLOWED_LISTINGS = {"ch04-mha-forward": {"MultiHeadAttention.forward",
                                         "MultiHeadAttention.attend_heads"}}


@pytest.mark.parametrize("path", sorted((ROOT / "chapters").glob("*.ipynb")), ids=lambda p: p.stem)
def test_the_student_edition_prints_no_answer_to_its_exercises(path):
    from qkv.exercises import REGISTRY
    from qkv.exercises.student import student_notebook

    notebook = student_notebook(json.loads(path.read_text(encoding="utf-8")), path.name)
    shown = {name.strip() for cell in notebook["cells"] if cell["cell_type"] == "code"
             for call in re.findall(r"show_source\((.*?)\)", "".join(cell["source"]))
             for name in call.split(",")}
    chapter = f"ch{path.name[:2]}"
    for label in [label for label in REGISTRY if label.startswith(chapter + "-")]:
        answers = _implementation(label) - ALLOWED_LISTINGS.get(label, set())
        leaks = {name for name in shown for answer in answers
                 if name == answer or name.endswith("." + answer)}
        assert not leaks, f"the student edition of {path.name} prints {leaks}, the answer to {label}"


def test_answer_cells_become_a_note_and_launch_buttons_open_the_student_branch(tmp_path):
    from qkv.exercises.student import STUDENT_BRANCH, student_notebook

    shown = _code("show_source(qkv.lookup.soft_lookup)")
    shown["metadata"]["tags"] = ["shows-an-answer"]
    notebook = student_notebook({"cells": [_md("Intro"), shown, _code("x = 1")]})
    assert [c["cell_type"] for c in notebook["cells"]] == ["markdown", "markdown", "code"]
    assert "`qkv.lookup.soft_lookup`" in notebook["cells"][1]["source"]
    assert "leaves it out" in notebook["cells"][1]["source"]
    out = export_student_book(ROOT, tmp_path / "student")
    config = yaml.safe_load((out / "_config.yml").read_text())
    assert config["repository"]["branch"] == STUDENT_BRANCH != "main"


def test_assign_writes_the_chapters_a_readme_and_the_list_for_grading(tmp_path, capsys):
    from qkv.exercises import assign

    out = tmp_path / "week3"
    assign.main(["--exercises", "ch03-masked-softmax", "ch01-soft-lookup", str(out)])
    assert sorted(p.name for p in out.iterdir()) == [
        "01_queries_keys_values.ipynb", "03_attention_scoring.ipynb", "README.md",
        "assignment.json"]
    manifest = json.loads((out / "assignment.json").read_text())
    assert manifest["exercises"] == ["ch03-masked-softmax", "ch01-soft-lookup"]
    for name in manifest["notebooks"]:
        text = (out / name).read_text()
        assert "{solution" not in text and "def solution_" not in text
    readme = (out / "README.md").read_text()
    assert "Write the soft lookup" in readme and "`ch03-masked-softmax`" in readme
    assert 'check_all("ch01")' in readme and 'check_all("ch03")' in readme
    with pytest.raises(SystemExit):  # a filled folder is not replaced without --force
        assign.main(["--exercises", "ch01-soft-lookup", str(out)])
    assert "pass --force" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        assign.main(["--exercises", "ch01-nope", str(tmp_path / "other")])
    assert "unknown exercise labels: ch01-nope" in capsys.readouterr().err
