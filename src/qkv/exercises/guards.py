"""Watch a learner's function for calls into the package's own solution of the exercise.

An exercise names what the learner must write without, as dotted names: a module
(``"qkv.lookup"``: every function defined in that file), a Python function
(``"qkv.attention.masked_softmax"``) or a built-in (``"torch.nn.functional.scaled_dot_product_attention"``).
:func:`watch_calls` records the first such call made while the function runs, through
:func:`sys.setprofile`, so an alias (``from qkv.lookup import soft_lookup as mine``) or a call
hidden in a helper is caught as well.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Iterator
from pathlib import Path


def _module_paths(name: str) -> list[str] | None:
    """The source file of module ``name`` (every file under it for a package), without
    importing it; None when ``name`` is not a module."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return [str(Path(folder).resolve()) + os.sep for folder in spec.submodule_search_locations]
    return [str(Path(spec.origin).resolve())] if spec.origin else None


def _resolve(name: str):
    """Import the object a dotted ``name`` refers to: an attribute of a module."""
    module, _, attribute = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ImportError(f"forbidden name {name!r} is neither a module nor an attribute of "
                          "one") from error


class Forbidden:
    """The resolved form of dotted names: source files, code objects and built-ins."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.paths: list[tuple[str, str]] = []  # (file, or folder ending in a separator; name)
        self.codes: dict[object, str] = {}
        self.builtins: dict[int, str] = {}
        for name in names:
            paths = _module_paths(name)
            if paths is not None:
                self.paths += [(path, name) for path in paths]
                continue
            target = _resolve(name)
            if inspect.isfunction(inspect.unwrap(target)):
                self.codes[inspect.unwrap(target).__code__] = name
            else:  # a built-in or C function: seen through 'c_call' events
                self.builtins[id(target)] = name
        self._resolved_files: dict[str, str | None] = {}

    def _module_of(self, filename: str) -> str | None:
        resolved = str(Path(filename).resolve())
        for path, name in self.paths:
            if resolved == path or (path.endswith(os.sep) and resolved.startswith(path)):
                return name
        return None

    def match(self, frame, event: str, arg) -> str | None:
        """The forbidden name a profiler event calls into, or None."""
        if event == "c_call":
            return self.builtins.get(id(arg))
        if event != "call":
            return None
        code = frame.f_code
        if code in self.codes:
            return self.codes[code]
        if not self.paths:
            return None
        filename = code.co_filename
        if filename not in self._resolved_files:
            self._resolved_files[filename] = self._module_of(filename)
        module = self._resolved_files[filename]
        if module is None:
            return None
        return f"{module}.{getattr(code, 'co_qualname', code.co_name)}"


@contextlib.contextmanager
def watch_calls(forbidden: Forbidden) -> Iterator[list[str]]:
    """Yield a list that receives the forbidden names called inside the ``with`` block."""
    seen: list[str] = []
    previous = sys.getprofile()

    def profile(frame, event, arg):
        if not seen:
            hit = forbidden.match(frame, event, arg)
            if hit is not None:
                seen.append(hit)

    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(previous)
