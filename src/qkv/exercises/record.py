"""What a check leaves for the grader, and the teacher's private checks it picks up.

* ``QKV_CHECK_RECORD=FILE``: every :func:`qkv.exercises.check` appends one JSON line
  ``{"label", "status", "message"}`` to FILE (written as it happens, so the checks that ran
  before a notebook crashed or timed out are kept).
* ``QKV_EXTRA_CHECKS=DIR``: every ``*.py`` file in DIR may define
  ``EXTRA_CHECKS = {label: make_inputs}`` (``make_inputs(generator) -> dict`` of keyword
  arguments, as in :class:`qkv.exercises.Exercise`) and ``EXTRA_TRIALS = n`` (default 50).
  A function that passes the public trials of ``label`` must then pass n trials on those
  inputs too. DIR lives outside the repository, so graded checks need not be public.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path

RECORD_VARIABLE = "QKV_CHECK_RECORD"
EXTRA_VARIABLE = "QKV_EXTRA_CHECKS"
DEFAULT_EXTRA_TRIALS = 50


def write(label: str, status: str, message: str) -> None:
    """Append one result to the record file, if ``QKV_CHECK_RECORD`` names one."""
    path = os.environ.get(RECORD_VARIABLE)
    if not path:
        return
    line = json.dumps({"label": label, "status": status, "message": message})
    with open(path, "a", encoding="utf-8") as file:
        file.write(line + "\n")


def read(path: Path) -> dict[str, dict]:
    """The last recorded result of every label in a record file (empty if there is none)."""
    results = {}
    if Path(path).exists():
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                entry = json.loads(line)
                results[entry["label"]] = entry
    return results


_LOADED: dict[str, dict[str, tuple[Callable, int]]] = {}


def _load(folder: str) -> dict[str, tuple[Callable, int]]:
    """Every extra check defined in ``folder``'s ``*.py`` files, by label."""
    if folder not in _LOADED:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{EXTRA_VARIABLE}={folder} is not a folder")
        checks = {}
        for path in sorted(Path(folder).glob("*.py")):
            spec = importlib.util.spec_from_file_location(f"qkv_extra_checks_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            trials = getattr(module, "EXTRA_TRIALS", DEFAULT_EXTRA_TRIALS)
            for label, make_inputs in getattr(module, "EXTRA_CHECKS", {}).items():
                checks[label] = (make_inputs, trials)
        _LOADED[folder] = checks
    return _LOADED[folder]


def extra_inputs(label: str) -> tuple[Callable, int] | None:
    """``(make_inputs, trials)`` of the teacher's extra check of ``label``, or None."""
    folder = os.environ.get(EXTRA_VARIABLE)
    return _load(folder).get(label) if folder else None
