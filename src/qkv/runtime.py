"""Where and how a chapter runs: device, seed, budget and threads.

Every chapter starts with ``run = qkv.runtime.setup()``, which seeds every random number
generator once, sets the number of CPU threads, picks the device, and reads the budget.

Budgets are counts, never wall-clock limits, so that a re-run prints the same numbers:

* ``smoke``: the whole chapter in well under a minute on a 2-core CPU (CI runs it with nbval);
* ``book``: what the published HTML book shows; minutes on a CPU;
* ``full``: the default when a CUDA GPU is present (Colab): the real experiment.

The budget comes from the environment variable ``QKV_BUDGET``; without it, ``full`` on a CUDA
machine and ``book`` elsewhere.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

BUDGETS = ("smoke", "book", "full")
"""The three budgets, from the cheapest to the most expensive."""

T = TypeVar("T")


def budget() -> str:
    """Return the active budget: ``QKV_BUDGET`` if set, else ``full`` with CUDA, else ``book``.

    Raises:
        ValueError: if ``QKV_BUDGET`` is set to something other than smoke, book or full.
    """
    name = os.environ.get("QKV_BUDGET", "").strip().lower()
    if not name:
        return "full" if torch.cuda.is_available() else "book"
    if name not in BUDGETS:
        raise ValueError(
            f"QKV_BUDGET must be one of {', '.join(BUDGETS)}; got {os.environ['QKV_BUDGET']!r}"
        )
    return name


def by_budget(smoke: T, book: T, full: T) -> T:
    """Pick the value that belongs to the active budget.

    Example: ``steps = by_budget(smoke=20, book=500, full=5000)``.
    """
    return {"smoke": smoke, "book": book, "full": full}[budget()]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every CUDA device)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def set_threads(num_threads: int | None = None) -> int:
    """Set the number of threads torch uses on the CPU and return it.

    With ``num_threads=None`` the environment variable ``QKV_THREADS`` decides; without it torch
    keeps its own default. On a shared 2-core machine, two processes that each use two threads
    run several times slower than with one thread each: use ``QKV_THREADS=1`` when notebooks
    run side by side.
    """
    if num_threads is None:
        env = os.environ.get("QKV_THREADS", "").strip()
        if not env:
            return torch.get_num_threads()
        if not env.isdigit():
            raise ValueError(f"QKV_THREADS must be a positive integer; got {env!r}")
        num_threads = int(env)
    if not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer; got {num_threads!r}")
    torch.set_num_threads(num_threads)
    return num_threads


def choose_device(prefer: str | None = None) -> torch.device:
    """Return ``prefer`` if given, else CUDA when available, else the CPU."""
    if prefer is not None:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"prefer={prefer!r} asks for CUDA, but no CUDA device is available")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Run:
    """What :func:`setup` decided: the seed, the budget, the device and the thread count."""

    seed: int
    budget: str
    device: torch.device
    threads: int

    def __str__(self) -> str:
        return (
            f"budget={self.budget}, device={self.device}, seed={self.seed}, "
            f"threads={self.threads}, torch={torch.__version__}"
        )


def setup(seed: int = 0, device: str | None = None, num_threads: int | None = None) -> Run:
    """Seed once, set threads, choose the device and read the budget; print and return them."""
    seed_everything(seed)
    run = Run(
        seed=seed,
        budget=budget(),
        device=choose_device(device),
        threads=set_threads(num_threads),
    )
    print(run)
    return run


def record(name: str, value: float | int | str, unit: str = "") -> None:
    """Print a headline result of a chapter, and save it when ``QKV_RESULTS_FILE`` is set.

    ``scripts/measure_chapters.py`` sets ``QKV_RESULTS_FILE`` while it executes a chapter and
    gathers these records into the book's results page, so that no number there is typed in
    by hand. Example: ``record("accuracy, sinusoidal positions", 0.995)``.

    Args:
        name: what was measured, readable on its own (it becomes a row of the results table).
        value: the number (or a short text).
        unit: optional unit, e.g. ``"s"`` or ``"BLEU"``.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string; got {name!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"value must be a number or a string; got {type(value).__name__}")
    shown = f"{value:.4g}" if isinstance(value, float) else str(value)
    print(f"result: {name} = {shown}{' ' + unit if unit else ''}")
    path = os.environ.get("QKV_RESULTS_FILE", "").strip()
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(json.dumps({"name": name, "value": value, "unit": unit}) + "\n")
