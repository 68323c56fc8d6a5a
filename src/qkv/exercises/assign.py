"""Write an assignment: the chosen exercises' chapters as student notebooks, with a README.

    python -m qkv.exercises.assign --exercises LABEL... OUT [--book DIR] [--force]

LABEL is a checker's label, e.g. ``ch03-masked-softmax`` (the exercise in the book is labelled
``ch03-ex-masked-softmax``). OUT receives, for every chapter involved, its notebook without the
solutions (:func:`qkv.exercises.student.strip_solutions`); a ``README.md`` telling the learner
which exercises to do, how to check them and what to hand in; and ``assignment.json``, which
``python -m qkv.exercises.grade --assignment OUT/assignment.json`` reads. A non-empty OUT is
replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from qkv.exercises import REGISTRY
from qkv.exercises.student import prepare_out_dir, student_notebook

_TITLE = r"^\s*`{3,}\s*\{exercise\}\s*(?P<title>.*?)\s*\n:label:\s*%s\s*$"


def exercise_title(notebook: dict, label: str) -> str:
    """The title of the exercise whose book label corresponds to checker ``label``."""
    chapter, rest = label.split("-", 1)
    pattern = re.compile(_TITLE % re.escape(f"{chapter}-ex-{rest}"), re.MULTILINE)
    for cell in notebook["cells"]:
        match = pattern.search("".join(cell["source"]))
        if match:
            return match["title"]
    raise ValueError(f"no exercise labelled {chapter}-ex-{rest} in the chapter of {label}")


def write_assignment(labels: list[str], out_dir: Path, book_dir: Path = Path("."),
                     force: bool = False) -> list[Path]:
    """Write the assignment of ``labels`` to ``out_dir``; return the files written."""
    unknown = sorted(set(labels) - set(REGISTRY))
    if unknown:
        raise ValueError(f"unknown exercise labels: {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(REGISTRY))}")
    chapters = {}
    for label in labels:
        number = REGISTRY[label].chapter.removeprefix("ch")
        found = sorted((Path(book_dir) / "chapters").glob(f"{number}_*.ipynb"))
        if not found:
            raise FileNotFoundError(f"no chapter notebook {number}_*.ipynb in {book_dir}/chapters")
        chapters.setdefault(found[0], []).append(label)
    prepare_out_dir(Path(out_dir), force)
    written, lines = [], []
    for path, chapter_labels in chapters.items():
        notebook = student_notebook(json.loads(path.read_text(encoding="utf-8")), path.name)
        target = Path(out_dir) / path.name
        target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n",
                          encoding="utf-8")
        written.append(target)
        for label in chapter_labels:
            lines.append(f"| `{path.name}` | {exercise_title(notebook, label)} | `{label}` |")
    check_alls = " and ".join(f'`check_all("{chapter}")`'
                              for chapter in sorted({REGISTRY[label].chapter for label in labels}))
    readme = Path(out_dir) / "README.md"
    readme.write_text(f"""# Assignment

Exercises to do ({len(labels)}):

| notebook | exercise | checker |
|---|---|---|
{chr(10).join(lines)}

1. Open the notebook (Jupyter, or upload it to Colab) and run it from the top.
2. Find each exercise above by its title, write the function where the cell says
   `raise NotImplementedError  # your code here`, and run the cell: `check(...)` tells you
   whether it passes, and if not, where it first goes wrong. Write the function with plain
   PyTorch: a function that calls the book's package (`qkv`) to do the exercise fails.
3. Before handing in, run `from qkv.exercises import check_all`, then {check_alls}: one line
   per exercise of the chapter, passed, failed or not tried.
4. Hand in the notebook file, saved, with the name it has here. Your teacher runs it from the
   top in a fresh kernel, with a time limit, and may run more checks than the notebook shows.
""", encoding="utf-8")
    manifest = Path(out_dir) / "assignment.json"
    manifest.write_text(json.dumps({"exercises": list(labels),
                                    "notebooks": [p.name for p in written]}, indent=1) + "\n",
                        encoding="utf-8")
    return [*written, readme, manifest]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write an assignment for learners.")
    parser.add_argument("--exercises", nargs="+", required=True, metavar="LABEL",
                        help="checker labels, e.g. ch03-masked-softmax")
    parser.add_argument("out_dir", type=Path, nargs="?", help="folder to write the assignment into")
    parser.add_argument("--book", type=Path, default=Path("."), help="the book's folder")
    parser.add_argument("--force", action="store_true", help="replace a non-empty out_dir")
    args = parser.parse_args(argv)
    if args.out_dir is None and len(args.exercises) > 1:  # "--exercises A B OUT": OUT is last
        args.out_dir = Path(args.exercises.pop())
    if args.out_dir is None:
        parser.error("the following arguments are required: out_dir")
    try:
        files = write_assignment(args.exercises, args.out_dir, args.book, args.force)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        parser.error(str(error))
    print("\n".join(f"wrote {path}" for path in files))


if __name__ == "__main__":
    main()
