"""Grading, as a teacher does it: assign two exercises, then grade six fixture submissions
(correct, wrong, crashing, endless loop, calling the package, missing an exercise) into a CSV
whose rows are right; the submissions are untouched."""

import csv
import hashlib

import nbformat
import pytest

from qkv.exercises import assign, grade

EXERCISES = ["ch03-causal-mask", "ch03-masked-softmax"]

SETUP = "import torch\nfrom qkv.exercises import check\n"

CAUSAL = '''def my_causal_mask(num_queries, num_keys):
    ones = torch.ones(num_queries, num_keys, dtype=torch.bool)
    return ones.tril(diagonal=num_keys - num_queries)

check("ch03-causal-mask", my_causal_mask)
'''

SOFTMAX = '''def my_masked_softmax(scores, mask):
    weights = scores.masked_fill(~mask, torch.finfo(scores.dtype).min).softmax(-1)
    return weights.masked_fill(~mask, 0.0)

check("ch03-masked-softmax", my_masked_softmax)
'''

SUBMISSIONS = {
    "correct": [SETUP, CAUSAL, SOFTMAX],
    "wrong": [SETUP, CAUSAL.replace("num_keys - num_queries", "0"),
              SOFTMAX.replace("torch.finfo(scores.dtype).min", "-1e9")],
    "crashing": [SETUP, "import a_module_that_does_not_exist\n",
                 CAUSAL.replace("ones = ", "ones = 1 / 0\n    ones = "),
                 "print(undefined_name)\n" + SOFTMAX],
    "endless": [SETUP, CAUSAL, "while True:\n    pass\n", SOFTMAX],
    "package": [SETUP, 'from qkv.attention import causal_mask\n'
                       'check("ch03-causal-mask", causal_mask)\n', SOFTMAX],
    "missing": [SETUP, SOFTMAX],
}

EXPECTED = {  # (student, exercise): (status, a fragment of the message)
    ("correct", "ch03-causal-mask"): ("passed", "passed"),
    ("correct", "ch03-masked-softmax"): ("passed", "float16 and bfloat16"),
    ("wrong", "ch03-causal-mask"): ("failed", "differs at index"),
    ("wrong", "ch03-masked-softmax"): ("error", "float16 trial"),  # -1e9 overflows
    ("crashing", "ch03-causal-mask"): ("error", "ZeroDivisionError"),
    ("crashing", "ch03-masked-softmax"): ("error", "NameError"),
    ("endless", "ch03-causal-mask"): ("passed", "passed"),
    ("endless", "ch03-masked-softmax"): ("timeout", "ran past"),
    ("package", "ch03-causal-mask"): ("failed", "calls qkv.attention.causal_mask"),
    ("package", "ch03-masked-softmax"): ("passed", "passed"),
    ("missing", "ch03-causal-mask"): ("not attempted", "never checks"),
    ("missing", "ch03-masked-softmax"): ("passed", "passed"),
}


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def submissions(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    paths = []
    for student, cells in SUBMISSIONS.items():
        notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}
        path = folder / student / "03_attention_scoring.ipynb"
        path.parent.mkdir()
        nbformat.write(notebook, path)
        paths.append(path.parent)
    return paths


def test_six_fixture_submissions_are_graded_right(submissions, tmp_path):
    assign.main(["--exercises", *EXERCISES, str(tmp_path / "assignment")])
    before = {p: _digest(p / "03_attention_scoring.ipynb") for p in submissions}
    out = tmp_path / "grades.csv"
    grade.main([*map(str, submissions), "--out", str(out), "--timeout", "40",
                "--assignment", str(tmp_path / "assignment" / "assignment.json")])
    with open(out, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == len(EXPECTED)
    for row in rows:
        status, fragment = EXPECTED[row["student"], row["exercise"]]
        assert row["status"] == status, row
        assert fragment in row["message"], row
        assert row["notebook"] == "03_attention_scoring.ipynb"
    assert {p: _digest(p / "03_attention_scoring.ipynb") for p in submissions} == before
    assert not list(tmp_path.glob(".*partial"))


def test_the_chapter_is_taken_from_the_file_name_and_bad_files_give_rows(tmp_path):
    broken = tmp_path / "03_attention_scoring.ipynb"
    broken.write_text("{ not json", encoding="utf-8")
    rows = grade.grade_notebook("zoe", broken, 30, None, None, "smoke")
    assert [row.exercise for row in rows] == ["ch03-causal-mask", "ch03-masked-softmax",
                                              "ch03-padding-mask"]
    assert all(row.status == "error" and "could not be read" in row.message for row in rows)


def test_command_line_errors_name_the_argument(tmp_path, capsys):
    existing = tmp_path / "grades.csv"
    existing.write_text("a teacher's file\n")
    with pytest.raises(SystemExit):
        grade.main([str(tmp_path), "--out", str(existing)])
    assert "exists; pass --force" in capsys.readouterr().err
    assert existing.read_text() == "a teacher's file\n"
    with pytest.raises(SystemExit):
        grade.main([str(tmp_path), "--out", str(tmp_path / "g.csv"), "--exercises", "ch99-x"])
    assert "unknown exercise labels: ch99-x" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        grade.main([str(tmp_path / "nothing"), "--out", str(tmp_path / "g.csv")])
    assert "neither a notebook nor a folder" in capsys.readouterr().err
