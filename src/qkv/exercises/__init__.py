"""Exercise checkers: a learner's function is tested on random inputs against the reference.

Each chapter registers its code exercises in its own module (``qkv.exercises.ch01``, ...). From a
notebook a learner calls::

    from qkv.exercises import check
    check("ch01-soft-lookup", my_soft_lookup)

:func:`check` runs the learner's function and the reference on the same random inputs and prints
either a short success message or a plain-language explanation of the first difference. It never
raises for a wrong answer, so an unfinished exercise does not stop the rest of the notebook.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import textwrap

import torch

from qkv.exercises.compare import Mismatch, compare, describe_inputs


@dataclass(frozen=True)
class Exercise:
    """A code exercise with a reference solution and a generator of random test inputs.

    Attributes:
        label: the name a learner passes to :func:`check`, e.g. ``"ch01-soft-lookup"``.
        task: one sentence saying what the function must do (shown when a check fails).
        reference: the reference solution.
        make_inputs: ``make_inputs(generator) -> dict`` of keyword arguments for one trial.
        wrong: a plausible wrong solution; the tests prove the checker rejects it.
        trials: how many random inputs are tried.
        atol, rtol: tolerances for comparing floating-point results.
    """

    label: str
    task: str
    reference: Callable[..., Any]
    make_inputs: Callable[[torch.Generator], dict[str, Any]]
    wrong: Callable[..., Any]
    trials: int = 25
    atol: float = 1e-5
    rtol: float = 1e-4


REGISTRY: dict[str, Exercise] = {}
"""Every registered exercise, by label."""


def register(exercise: Exercise) -> Exercise:
    """Add ``exercise`` to :data:`REGISTRY`; labels must be unique."""
    if exercise.label in REGISTRY:
        raise ValueError(f"an exercise labelled {exercise.label!r} is already registered")
    REGISTRY[exercise.label] = exercise
    return exercise


@dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`check`: ``passed`` and the message shown to the learner."""

    label: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return self.message


def _clone(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Copy tensors so that a function that changes its inputs in place cannot fool the check."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def check(label: str, candidate: Callable[..., Any], seed: int = 0, verbose: bool = True) -> CheckResult:
    """Test ``candidate`` against the reference of exercise ``label`` on random inputs.

    Args:
        label: the exercise's label (see :data:`REGISTRY`).
        candidate: the learner's function, called with the same keyword arguments as the
            reference.
        seed: seed of the random inputs (the same seed gives the same trials).
        verbose: print the message (the default); the result is returned either way.

    Returns:
        A :class:`CheckResult`; ``bool(result)`` is True when every trial matched.
    """
    if label not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"no exercise is labelled {label!r}; known labels: {known}")
    if not callable(candidate):
        raise TypeError(f"candidate must be a function; got {type(candidate).__name__}")
    exercise = REGISTRY[label]
    generator = torch.Generator().manual_seed(seed)
    result = None
    for trial in range(1, exercise.trials + 1):
        inputs = exercise.make_inputs(generator)
        expected = exercise.reference(**_clone(inputs))
        where = f"On trial {trial} of {exercise.trials}, with {describe_inputs(inputs)}"
        try:
            got = candidate(**_clone(inputs))
        except NotImplementedError:
            result = CheckResult(label, False, f"[{label}] not attempted yet: your function "
                                 f"raises NotImplementedError. Task: {exercise.task}")
            break
        except Exception as error:  # the learner's bug, explained rather than raised
            result = CheckResult(label, False, f"[{label}] {where}, your function raised "
                                 f"{type(error).__name__}: {error}")
            break
        mismatch: Mismatch | None = compare(expected, got, atol=exercise.atol, rtol=exercise.rtol)
        if mismatch is not None:
            result = CheckResult(label, False, f"[{label}] {where}: {mismatch}. "
                                 f"Task: {exercise.task}")
            break
    if result is None:
        result = CheckResult(label, True, f"[{label}] passed: {exercise.trials} random trials "
                             "match the reference.")
    if verbose:  # wrapped, so that it reads well in a notebook and in the book
        print(textwrap.fill(result.message, width=88, subsequent_indent="  "))
    return result


# Registering the chapters' exercises (imported for their side effect on REGISTRY).
from qkv.exercises import ch01, ch02, ch03, ch04, ch05, ch06, ch07  # noqa: E402,F401

__all__ = ["Exercise", "CheckResult", "REGISTRY", "register", "check"]
