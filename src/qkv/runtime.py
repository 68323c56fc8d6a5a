"""Where and how a chapter runs: device, seed, budget and threads.

Every chapter starts with ``run = qkv.runtime.setup()``, which seeds every random number
generator once, sets the number of CPU threads, picks the device, and reads the budget.

Budgets are counts, never wall-clock limits, so that a re-run prints the same numbers:

* ``smoke``: the whole chapter in well under a minute on a 2-core CPU (CI runs it with nbval);
* ``book``: what the published HTML book shows; minutes on a CPU;
* ``full``: the default when a CUDA GPU is present (Colab): the real experiment.

The budget comes from the environment variable ``QKV_BUDGET``; without it, ``full`` on a CUDA
machine and ``book`` elsewhere.

The same seed still prints different numbers on another CPU, torch release, thread count or a
GPU. So a chapter states what it measured in two ways that cannot drift from the output:

* :func:`claim` asserts a property of a trained, sampled or timed outcome (a claim the text
  makes), checked by ``scripts/check_claims.py`` for several seeds (``QKV_SEED``) and threads;
* :func:`glue` hands a measured number to the prose (myst-nb's ``{glue:text}`` role), so the
  text never types a figure that a cell computes.

One test hook, ``QKV_DRY_RUN_STEPS``, caps every step count chosen with :func:`step_budget`
(sizes stay as the budget sets them) and turns failed claims into printed notes: the test suite
runs the full budget's code path on the CPU this way, for a few steps.
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


def live_progress() -> bool:
    """Whether training loops should draw progress bars: only when a person runs the notebook.

    True in a Jupyter kernel (Colab, JupyterLab) unless ``QKV_BUDGET`` is set (the book build,
    the tests and the scripts all set it), ``CI`` is set, or ``QKV_PROGRESS=0``; so the built HTML
    and CI logs never hold a progress bar. ``QKV_PROGRESS=1`` forces bars on.
    """
    forced = os.environ.get("QKV_PROGRESS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if os.environ.get("QKV_BUDGET", "").strip() or os.environ.get("CI", "").strip():
        return False
    import sys

    return "ipykernel" in sys.modules


def dry_run_steps() -> int | None:
    """The step cap of a dry run (``QKV_DRY_RUN_STEPS``, a test hook), or None normally."""
    env = os.environ.get("QKV_DRY_RUN_STEPS", "").strip()
    if not env:
        return None
    if not env.isdigit() or int(env) < 1:
        raise ValueError(f"QKV_DRY_RUN_STEPS must be a positive integer; got {env!r}")
    return int(env)


STEP_LISTENERS: list = []
"""Callables ``listener(steps, capped)`` told of every count that :func:`capped_steps` sees
(``benchmarks/full_budget_estimate.py`` uses it to attribute work to training loops)."""


def capped_steps(steps: int) -> int:
    """A count of training steps (or epochs), capped at ``QKV_DRY_RUN_STEPS`` in a dry run.

    Every step count of the book passes through here (:func:`step_budget` for the chapters'
    counts, the package for counts it holds, such as a translation recipe's).
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be a non-negative int; got {steps!r}")
    cap = dry_run_steps()
    capped = steps if cap is None else min(steps, cap)
    for listener in STEP_LISTENERS:
        listener(steps, capped)
    return capped


def step_budget(smoke: int, book: int, full: int) -> int:
    """Like :func:`by_budget`, for a count of training steps (or epochs) only.

    In a dry run (``QKV_DRY_RUN_STEPS=N``, a test hook) the count is capped at N (see
    :func:`capped_steps`), so the test suite can run the full budget's models and data for a
    few steps on the CPU.
    """
    return capped_steps(by_budget(smoke=smoke, book=book, full=full))


def seed_from_environment(seed: int) -> tuple[int, bool]:
    """``(QKV_SEED, True)`` when that variable is set, else ``(seed, False)``."""
    env = os.environ.get("QKV_SEED", "").strip()
    if not env:
        return seed, False
    if not env.isdigit():
        raise ValueError(f"QKV_SEED must be a non-negative integer; got {env!r}")
    return int(env), True


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
    seed_from_environment: bool = False

    def __str__(self) -> str:
        seed = f"{self.seed} (from QKV_SEED)" if self.seed_from_environment else str(self.seed)
        dry = f", dry run of {dry_run_steps()} steps" if dry_run_steps() else ""
        return (
            f"budget={self.budget}, device={self.device}, seed={seed}, "
            f"threads={self.threads}, torch={torch.__version__}{dry}"
        )


def setup(seed: int = 0, device: str | None = None, num_threads: int | None = None) -> Run:
    """Seed once, set threads, choose the device and read the budget; print and return them.

    The environment variable ``QKV_SEED`` overrides ``seed`` (the printed line says so), so
    that any chapter can be re-run with another seed.
    """
    seed, from_environment = seed_from_environment(seed)
    seed_everything(seed)
    run = Run(
        seed=seed,
        budget=budget(),
        device=choose_device(device),
        threads=set_threads(num_threads),
        seed_from_environment=from_environment,
    )
    print(run)
    return run


def claim(holds, statement: str) -> bool:
    """Check a claim the text makes about a trained, sampled or timed outcome.

    Use it for what can change with the seed, the machine or the thread count (an accuracy
    above a margin, one model beating another); exact facts (parity with PyTorch, an identity)
    keep a plain ``assert``. A false claim raises ``AssertionError(statement)``, except:

    * with ``QKV_CLAIMS_FILE`` set (``scripts/check_claims.py``), every claim is appended to that
      file as a JSON line ``{"claim", "holds"}`` and a false one is printed, not raised, so one
      run reports every claim;
    * in a dry run (``QKV_DRY_RUN_STEPS``), a false claim is printed: a few steps prove the code
      runs, not what training reaches.

    Args:
        holds: the outcome of the check (anything ``bool()`` accepts, e.g. a 0-d tensor).
        statement: the claim in words, as the text makes it.

    Returns:
        Whether the claim holds.
    """
    if not isinstance(statement, str) or not statement.strip():
        raise ValueError(f"statement must be a non-empty string; got {statement!r}")
    holds = bool(holds)
    path = os.environ.get("QKV_CLAIMS_FILE", "").strip()
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(json.dumps({"claim": statement, "holds": holds}) + "\n")
    if not holds:
        if path or dry_run_steps():
            print(f"claim does not hold here: {statement}")
        else:
            raise AssertionError(f"claim does not hold: {statement}")
    return holds


class _Text:
    """A string that IPython displays without quotes (for ``{glue:text}``)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def glue(name: str, value):
    """Hand a measured value to the chapter's prose and return it unchanged.

    In the built book, ``{glue:text}`name``` (or ``{glue:text}`name:.2f``` for a number) shows
    the value in a sentence, so prose and output cannot disagree. Outside the book build
    (Colab, a plain Jupyter kernel without myst-nb) nothing is shown.

    Args:
        name: the key the prose uses; letters, digits and underscores.
        value: a number or a short string.
    """
    if not isinstance(name, str) or not name.replace("_", "").isalnum():
        raise ValueError(f"name must be letters, digits and underscores; got {name!r}")
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"value must be a number or a string; got {type(value).__name__}")
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        return value
    myst_glue(name, _Text(value) if isinstance(value, str) else value, display=False)
    return value


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
