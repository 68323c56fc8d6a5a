"""Keep every chapter ready for Colab, from one place: pyproject.toml's version.

    python scripts/sync_colab.py           # rewrite the chapters that are out of date
    python scripts/sync_colab.py --check   # only report them (exit 1 if any)

For every chapter notebook it makes sure that

* the notebook's metadata asks Colab for a GPU (``accelerator: GPU``, a T4);
* the cell after the title is an "Open in Colab" badge linking to the notebook itself on the
  repository's branch (tagged ``remove-cell``: the HTML book has its own launch button; the
  student edition points it at the student branch);
* the Colab cell installs the released package, ``git+<repository>.git@v<version>``, never
  whatever main holds that day. Releasing a new version: change ``version`` in pyproject.toml,
  run this script, commit, and tag ``v<version>`` (the release workflow does the rest).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

import nbformat
import yaml

from qkv.exercises.student import BADGE_TAG

ROOT = Path(__file__).resolve().parents[1]
INSTALL = re.compile(r'"git\+(https://github\.com/[^"@]+)\.git(?:@[^"]*)?"')


def release() -> str:
    """The tag the Colab cell installs: ``v`` + pyproject.toml's version."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return "v" + project["project"]["version"]


def badge_source(repository: str, branch: str, notebook: str) -> str:
    url = (f"https://colab.research.google.com/github/{repository.removeprefix('https://github.com/')}"
           f"/blob/{branch}/chapters/{notebook}")
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def sync(notebook, name: str, repository: str, branch: str, tag: str) -> bool:
    """Bring one notebook (nbformat object) up to date; return whether anything changed."""
    before = nbformat.writes(notebook)
    notebook.metadata["accelerator"] = "GPU"
    notebook.metadata.setdefault("colab", {})["gpuType"] = "T4"
    badge = badge_source(repository, branch, name)
    cells = notebook.cells
    existing = [c for c in cells if BADGE_TAG in c.metadata.get("tags", [])]
    if existing:
        existing[0].source = badge
    else:
        cell = nbformat.v4.new_markdown_cell(badge)
        cell.metadata["tags"] = [BADGE_TAG, "remove-cell"]
        cells.insert(1, cell)
    colab = next(c for c in cells if c.cell_type == "code")
    colab.source = INSTALL.sub(lambda m: f'"git+{m[1]}.git@{tag}"', colab.source)
    return nbformat.writes(notebook) != before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="report, do not write")
    args = parser.parse_args(argv)
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    repository, branch = config["repository"]["url"], config["repository"]["branch"]
    tag, stale = release(), []
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        if sync(notebook, path.name, repository, branch, tag):
            stale.append(path.name)
            if not args.check:
                nbformat.write(notebook, path)
    verb = "out of date" if args.check else "updated"
    print(f"{verb}: {', '.join(stale)}" if stale else f"every chapter installs {tag}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
