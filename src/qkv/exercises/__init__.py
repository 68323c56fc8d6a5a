"""Exercise checkers: a learner's function is tested on random inputs against the reference.

Each chapter registers its code exercises in its own module (``qkv.exercises.ch01``, ...). From a
notebook a learner calls::

    from qkv.exercises import check, check_all
    check("ch01-soft-lookup", my_soft_lookup)
    check_all("ch01")        # one line per exercise of the chapter: passed / failed / not tried

:func:`check` runs the learner's function and the reference on the same random inputs and prints
either a short success message or a plain-language explanation of the first difference. Besides
the values it checks, where the exercise says so, the gradients (for a differentiable function),
half precision (for exercises about masking and overflow) and that the function does not call
the package's own implementation of the exercise. It never raises for a wrong answer, so an
unfinished exercise does not stop the rest of the notebook.

Two environment variables serve grading (:mod:`qkv.exercises.grade`): ``QKV_CHECK_RECORD``, a
file to which every check appends its result as one JSON line, and ``QKV_EXTRA_CHECKS``, a
folder of a teacher's private checks (see :mod:`qkv.exercises.record`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch

from qkv.exercises import record
from qkv.exercises.compare import Mismatch, compare, describe_inputs
from qkv.exercises.guards import Forbidden, watch_calls

LOW_PRECISION_TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 2e-2}
"""Absolute and relative tolerance of a half-precision trial, against float64 on the same inputs."""


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
        forbidden: dotted names the learner's function must not call: the package's own
            implementation (a module such as ``"qkv.lookup"``, a function, or a built-in).
        gradients: also compare the gradients of the result with respect to every
            floating-point input (for differentiable functions).
        low_precision: dtypes (``torch.float16``, ``torch.bfloat16``) in which the function must
            also run, keep the dtype and match float64 on the same rounded inputs.
    """

    label: str
    task: str
    reference: Callable[..., Any]
    make_inputs: Callable[[torch.Generator], dict[str, Any]]
    wrong: Callable[..., Any]
    trials: int = 25
    atol: float = 1e-5
    rtol: float = 1e-4
    forbidden: tuple[str, ...] = ()
    gradients: bool = False
    low_precision: tuple[torch.dtype, ...] = ()

    @property
    def chapter(self) -> str:
        """``"ch01"`` for ``"ch01-soft-lookup"``."""
        return self.label.split("-", 1)[0]


REGISTRY: dict[str, Exercise] = {}
"""Every registered exercise, by label."""


def register(exercise: Exercise) -> Exercise:
    """Add ``exercise`` to :data:`REGISTRY`; labels must be unique."""
    if exercise.label in REGISTRY:
        raise ValueError(f"an exercise labelled {exercise.label!r} is already registered")
    REGISTRY[exercise.label] = exercise
    return exercise


STATUSES = ("passed", "failed", "error", "not attempted")
"""What a check can conclude: ``error`` when the function raised, ``not attempted`` when it
raised ``NotImplementedError`` (the unfinished template)."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`check`: a status from :data:`STATUSES` and the message shown."""

    label: str
    status: str
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return self.message


LATEST: dict[str, CheckResult] = {}
"""The latest result of every exercise checked in this session, by label (read by check_all)."""


def _clone(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Copy tensors so that a function that changes its inputs in place cannot fool the check."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def _cast(kwargs: dict[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """Floating-point tensors of ``kwargs`` in ``dtype``; everything else unchanged."""
    return {k: v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v
            for k, v in kwargs.items()}


def _tensors(result: Any) -> list[torch.Tensor]:
    """The floating-point tensors in a result (a tensor, or a tuple or list of them)."""
    items = result if isinstance(result, (tuple, list)) else [result]
    return [t for t in items if isinstance(t, torch.Tensor) and t.is_floating_point()]


def _gradients(function, inputs: dict[str, Any], directions: list[torch.Tensor] | None):
    """Gradients of sum(result * directions) with respect to the floating-point inputs.

    Returns ``(names, gradients, directions)``, or a message when the result carries no
    gradient; ``directions`` are drawn (fixed seed) when not given, shaped like the result.
    """
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inputs.items()
              if isinstance(v, torch.Tensor) and v.is_floating_point()}
    outputs = _tensors(function(**{**_clone(inputs), **leaves}))
    if directions is None:
        generator = torch.Generator().manual_seed(1234)
        directions = [torch.randn(t.shape, generator=generator, dtype=torch.float64)
                      for t in outputs]
    if not any(t.requires_grad for t in outputs):
        return ("your result carries no gradient (was .detach(), .item(), .tolist() or NumPy "
                "used inside the function?)")
    total = sum((t * d.to(t.dtype)).sum() for t, d in zip(outputs, directions) if t.requires_grad)
    grads = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
    grads = tuple(torch.zeros_like(x) if g is None else g for x, g in zip(leaves.values(), grads))
    return list(leaves), grads, directions


def _gradient_mismatch(exercise: Exercise, candidate, inputs: dict[str, Any]) -> Mismatch | None:
    names, expected, directions = _gradients(exercise.reference, inputs, None)
    got = _gradients(candidate, inputs, directions)
    if isinstance(got, str):
        return got
    for name, e, g in zip(names, expected, got[1]):
        mismatch = compare(e, g, exercise.atol, exercise.rtol,
                           path=f"the gradient with respect to {name}")
        if mismatch is not None:
            return mismatch
    return None


def _trial(exercise: Exercise, candidate, inputs: dict[str, Any], where: str,
           forbidden: Forbidden, dtype: torch.dtype | None = None) -> CheckResult | None:
    """Run one trial; return the failure, or None when the candidate passed it."""
    label = exercise.label
    rounded = inputs if dtype is None else _cast(_cast(inputs, dtype), torch.float64)
    expected = exercise.reference(**_clone(rounded))
    with watch_calls(forbidden) as called:
        try:
            got = candidate(**_clone(inputs if dtype is None else _cast(inputs, dtype)))
        except NotImplementedError:
            return CheckResult(label, "not attempted", f"[{label}] not attempted yet: your "
                               f"function raises NotImplementedError. Task: {exercise.task}")
        except Exception as error:  # the learner's bug, explained rather than raised
            return CheckResult(label, "error", f"[{label}] {where}, your function raised "
                               f"{type(error).__name__}: {error}")
    if called:
        return CheckResult(label, "failed", f"[{label}] your function calls {called[0]}, the "
                           "package's own implementation: write it with plain PyTorch. "
                           f"Task: {exercise.task}")
    if dtype is None:
        mismatch = compare(expected, got, atol=exercise.atol, rtol=exercise.rtol)
        if mismatch is None and exercise.gradients:
            mismatch = _gradient_mismatch(exercise, candidate, inputs)
    else:
        wrong_dtype = [t.dtype for t in _tensors(got) if t.dtype != dtype]
        tolerance = LOW_PRECISION_TOLERANCE[dtype]
        mismatch = (f"the result should stay in {dtype}, but yours is {wrong_dtype[0]}"
                    if wrong_dtype else compare(expected, got, atol=tolerance, rtol=tolerance))
    if mismatch is not None:
        return CheckResult(label, "failed", f"[{label}] {where}: {mismatch}. "
                           f"Task: {exercise.task}")
    return None


def _trials(exercise: Exercise, candidate, seed: int, what: str = "") -> CheckResult | None:
    """Every trial of ``exercise`` (float64, then each low-precision dtype); the first failure."""
    forbidden = Forbidden(exercise.forbidden)
    generator = torch.Generator().manual_seed(seed)
    for trial in range(1, exercise.trials + 1):
        inputs = exercise.make_inputs(generator)
        where = f"On {what}trial {trial} of {exercise.trials}, with {describe_inputs(inputs)}"
        failure = _trial(exercise, candidate, inputs, where, forbidden)
        if failure is not None:
            return failure
    for dtype in exercise.low_precision:
        inputs = exercise.make_inputs(generator)
        where = (f"On a {str(dtype).removeprefix('torch.')} {what}trial, with "
                 f"{describe_inputs(_cast(inputs, dtype))}")
        failure = _trial(exercise, candidate, inputs, where, forbidden, dtype)
        if failure is not None:
            return failure
    return None


def _success_message(exercise: Exercise, hidden: Exercise | None) -> str:
    extras = [f"{exercise.trials} random trials match the reference"]
    if exercise.gradients:
        extras.append("so do the gradients")
    if exercise.low_precision:
        extras.append("it works in " + " and ".join(str(d).removeprefix("torch.")
                                                   for d in exercise.low_precision))
    if hidden is not None:
        extras.append(f"{hidden.trials} hidden trials pass")
    return f"[{exercise.label}] passed: " + "; ".join(extras) + "."


def check(label: str, candidate: Callable[..., Any], seed: int = 0,
          verbose: bool = True) -> CheckResult:
    """Test ``candidate`` against the reference of exercise ``label`` on random inputs.

    Args:
        label: the exercise's label (see :data:`REGISTRY`).
        candidate: the learner's function, called with the same keyword arguments as the
            reference.
        seed: seed of the random inputs (the same seed gives the same trials).
        verbose: print the message (the default); the result is returned either way.

    Returns:
        A :class:`CheckResult`; ``bool(result)`` is True when every trial matched. It is also
        kept in :data:`LATEST` and, under grading, appended to the record file.
    """
    if label not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"no exercise is labelled {label!r}; known labels: {known}")
    if not callable(candidate):
        raise TypeError(f"candidate must be a function; got {type(candidate).__name__}")
    exercise = REGISTRY[label]
    result = _trials(exercise, candidate, seed)
    hidden = record.extra_inputs(label)
    if hidden is not None:
        hidden = replace(exercise, make_inputs=hidden[0], trials=hidden[1])
        if result is None:
            result = _trials(hidden, candidate, seed + 1, what="a hidden ")
    if result is None:
        result = CheckResult(label, "passed", _success_message(exercise, hidden))
    LATEST[label] = result
    record.write(result.label, result.status, result.message)
    if verbose:  # wrapped, so that it reads well in a notebook and in the book
        print(textwrap.fill(result.message, width=88, subsequent_indent="  "))
    return result


def check_all(chapter: str | int, verbose: bool = True) -> dict[str, str]:
    """One line per code exercise of ``chapter`` (``"ch03"`` or 3): its latest check's status.

    Returns:
        ``{label: status}``, with ``"not tried"`` for an exercise not checked in this session.
    """
    prefix = f"ch{int(chapter):02d}" if isinstance(chapter, int) else str(chapter)
    labels = sorted(label for label, exercise in REGISTRY.items() if exercise.chapter == prefix)
    if not labels:
        raise KeyError(f"chapter {chapter!r} has no registered exercises")
    statuses = {label: LATEST[label].status if label in LATEST else "not tried"
                for label in labels}
    if verbose:
        width = max(map(len, labels))
        for label, status in statuses.items():
            print(f"{label:<{width}}  {status}")
    return statuses


# Registering the chapters' exercises (imported for their side effect on REGISTRY).
from qkv.exercises import ch01, ch02, ch03, ch04, ch05, ch06, ch07  # noqa: E402,F401

__all__ = ["Exercise", "CheckResult", "REGISTRY", "STATUSES", "LATEST", "register", "check",
           "check_all"]
