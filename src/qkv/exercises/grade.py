"""Grade submitted notebooks, exercise by exercise, into a CSV table.

    python -m qkv.exercises.grade SUBMISSIONS... --out grades.csv [--timeout S]
        [--extra-checks DIR] [--exercises LABEL... | --assignment assignment.json]
        [--budget smoke]

A submission is a notebook (the student is its file name) or a folder of notebooks (the student
is the folder's name). Each notebook is copied into a temporary folder and executed there in a
fresh kernel, with a time limit for the whole notebook; the submission itself is never touched.
Every :func:`qkv.exercises.check` the notebook runs appends its result to a record file (see
:mod:`qkv.exercises.record`), and the grade of an exercise is read from that record, not from
printed text. ``--extra-checks`` points at a teacher's folder of private checks, which the
notebook's own ``check`` calls then run as well.

One row per student, notebook and expected exercise, with a status:

* ``passed``, ``failed``, ``error`` (the learner's function raised), ``not attempted`` (the
  template still raises ``NotImplementedError``, or the notebook never checks the exercise):
  as recorded, with the checker's message;
* ``error`` also when the exercise's cell raised before its check ran (the message is the
  exception), or when the notebook could not be read or run at all;
* ``timeout`` when the time limit ran out before the exercise was checked.

The exercises expected in a notebook are ``--exercises`` (or the assignment file's), otherwise
those of the chapter its name starts with (``03_...`` is chapter 3), otherwise the ones it checks.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from qkv.exercises import REGISTRY, record

_CHECK_CALL = re.compile(r"""check\(\s*["'](ch\d\d-[\w-]+)["']""")


@dataclass(frozen=True)
class Row:
    """One line of the grade table."""

    student: str
    notebook: str
    exercise: str
    status: str
    message: str


def submissions_of(paths: list[Path]) -> list[tuple[str, Path]]:
    """``(student, notebook)`` for every submission: a notebook, or a folder of notebooks."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            notebooks = sorted(p for p in path.rglob("*.ipynb")
                               if ".ipynb_checkpoints" not in p.parts)
            if not notebooks:
                raise FileNotFoundError(f"submission folder {path} holds no .ipynb file")
            found += [(path.name, notebook) for notebook in notebooks]
        elif path.suffix == ".ipynb" and path.is_file():
            found.append((path.stem, path))
        else:
            raise FileNotFoundError(f"submission {path} is neither a notebook nor a folder")
    return found


def expected_labels(notebook: Path, source: str, exercises: list[str] | None) -> list[str]:
    """The exercises a notebook is graded on (see the module's docstring)."""
    if exercises:
        return list(exercises)
    chapter = re.match(r"(\d\d)_", notebook.name)
    if chapter:
        labels = sorted(label for label in REGISTRY if label.startswith(f"ch{chapter[1]}-"))
        if labels:
            return labels
    return sorted(set(_CHECK_CALL.findall(source)))


def _cell_errors(notebook) -> dict[str, str]:
    """For every label whose checking cell raised: ``"Name: message"`` of the exception."""
    errors = {}
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                for label in _CHECK_CALL.findall(cell.source):
                    errors.setdefault(label, f"{output['ename']}: {output['evalue']}")
    return errors


def run_notebook(notebook: Path, timeout: float, extra_checks: Path | None,
                 budget: str) -> tuple[dict[str, dict], object, bool]:
    """Execute a copy of ``notebook`` in a fresh kernel; return (records, executed, timed_out).

    Every cell runs even after an error; the whole notebook gets ``timeout`` seconds.
    """
    import nbclient
    import nbformat

    with tempfile.TemporaryDirectory(prefix="qkv-grade-") as folder:
        copy = Path(folder) / notebook.name
        shutil.copy2(notebook, copy)
        executed = nbformat.read(copy, as_version=4)
        records = Path(folder) / "checks.jsonl"
        deadline = time.monotonic() + timeout
        settings = {record.RECORD_VARIABLE: str(records), "QKV_BUDGET": budget,
                    "QKV_STATIC_FIGURES": "1", "MPLBACKEND": "Agg",
                    # the kernel's "python" is this interpreter (the one with qkv installed)
                    "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                             os.environ.get("PATH", "")])}
        if extra_checks is not None:
            settings[record.EXTRA_VARIABLE] = str(Path(extra_checks).resolve())
        saved = {name: os.environ.get(name) for name in [*settings, record.EXTRA_VARIABLE]}
        os.environ.pop(record.EXTRA_VARIABLE, None)
        os.environ.update(settings)  # the kernel inherits them
        client = nbclient.NotebookClient(
            executed, kernel_name="python3", allow_errors=True,
            timeout_func=lambda cell: max(1, int(deadline - time.monotonic())),
            resources={"metadata": {"path": folder}})
        timed_out = False
        try:
            client.execute(stderr=subprocess.DEVNULL)  # the kernel's log is not the grade
        except nbclient.exceptions.CellTimeoutError:
            timed_out = True
        except Exception as error:  # a dead kernel: grade what was recorded before it died
            executed.metadata["grader_error"] = f"{type(error).__name__}: {error}"
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return record.read(records), executed, timed_out


def grade_notebook(student: str, notebook: Path, timeout: float, extra_checks: Path | None,
                   exercises: list[str] | None, budget: str) -> list[Row]:
    """The rows of one notebook; never raises for a broken submission."""
    try:
        source = notebook.read_text(encoding="utf-8")
        json.loads(source)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        labels = expected_labels(notebook, "", exercises) or ["(none)"]
        return [Row(student, notebook.name, label, "error",
                    f"the notebook could not be read: {type(error).__name__}: {error}")
                for label in labels]
    labels = expected_labels(notebook, source, exercises)
    try:
        records, executed, timed_out = run_notebook(notebook, timeout, extra_checks, budget)
    except Exception as error:  # e.g. not a valid notebook
        return [Row(student, notebook.name, label, "error",
                    f"the notebook could not be run: {type(error).__name__}: {error}")
                for label in labels]
    cell_errors = _cell_errors(executed)
    rows = []
    for label in labels:
        if label in records:
            entry = records[label]
            rows.append(Row(student, notebook.name, label, entry["status"], entry["message"]))
        elif label in cell_errors:
            rows.append(Row(student, notebook.name, label, "error",
                            f"the exercise's cell raised {cell_errors[label]}"))
        elif timed_out:
            rows.append(Row(student, notebook.name, label, "timeout",
                            f"the notebook ran past {timeout:g} s before this exercise was "
                            "checked"))
        elif "grader_error" in executed.metadata:
            rows.append(Row(student, notebook.name, label, "error",
                            f"the kernel stopped: {executed.metadata['grader_error']}"))
        elif f'"{label}"' in source or f"'{label}'" in source:
            rows.append(Row(student, notebook.name, label, "error",
                            "the notebook mentions this exercise, but its check never ran"))
        else:
            rows.append(Row(student, notebook.name, label, "not attempted",
                            "the notebook never checks this exercise"))
    return rows


def write_csv(rows: list[Row], out: Path) -> None:
    """Write the rows atomically (a temporary file renamed into place)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    with open(partial, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(Row.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    os.replace(partial, out)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description="Grade submitted notebooks into a CSV table.")
    parser.add_argument("submissions", nargs="+", type=Path,
                        help="notebooks (student = file name) or folders (student = folder name)")
    parser.add_argument("--out", type=Path, required=True, help="the CSV file to write")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds for each notebook (default 600)")
    parser.add_argument("--extra-checks", type=Path, help="folder of private checks")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--exercises", nargs="+", metavar="LABEL", help="exercises to grade")
    choice.add_argument("--assignment", type=Path,
                        help="assignment.json written by qkv.exercises.assign")
    parser.add_argument("--budget", default="smoke", choices=("smoke", "book", "full"),
                        help="QKV_BUDGET of the runs (default smoke)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out file")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive; got {args.timeout:g}")
    if args.out.exists() and not args.force:
        parser.error(f"--out {args.out} exists; pass --force to replace it")
    if args.extra_checks is not None and not args.extra_checks.is_dir():
        parser.error(f"--extra-checks {args.extra_checks} is not a folder")
    exercises = args.exercises
    if args.assignment is not None:
        exercises = json.loads(args.assignment.read_text(encoding="utf-8"))["exercises"]
    unknown = sorted(set(exercises or []) - set(REGISTRY))
    if unknown:
        parser.error(f"unknown exercise labels: {', '.join(unknown)}")
    try:
        submissions = submissions_of(args.submissions)
    except FileNotFoundError as error:
        parser.error(str(error))
    rows = []
    for student, notebook in submissions:
        print(f"grading {student}: {notebook.name} ...", file=sys.stderr, flush=True)
        rows += grade_notebook(student, notebook, args.timeout, args.extra_checks, exercises,
                               args.budget)
    write_csv(rows, args.out)
    for row in rows:
        print(f"{row.student:<16} {row.exercise:<28} {row.status}")
    print(f"{len(rows)} grades written to {args.out}")
    return rows


if __name__ == "__main__":
    main()
