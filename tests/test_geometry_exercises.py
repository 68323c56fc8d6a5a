"""Chapter 7's checkers accept solutions written from the task text and reject the slips.

(The lead adds ch07 to qkv.exercises' import line; until then this module imports it.)
"""

import math

import torch

import qkv.exercises.ch07  # noqa: F401  (registers the chapter's exercises)
from qkv.exercises import REGISTRY, check

from exercise_helpers import package_calls_allowed

LABELS = ["ch07-mobius-add", "ch07-poincare-distance", "ch07-einstein-midpoint"]


def written_mobius_add(x, y, c):
    xy = (x * y).sum(-1, keepdim=True)
    x2, y2 = (x * x).sum(-1, keepdim=True), (y * y).sum(-1, keepdim=True)
    return ((1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y) / (1 + 2 * c * xy + c * c * x2 * y2)


def written_distance(x, y, c):
    ratio = 2 * c * ((x - y) ** 2).sum(-1) / ((1 - c * (x * x).sum(-1)) * (1 - c * (y * y).sum(-1)))
    return torch.acosh(1 + ratio) / math.sqrt(c)


def written_midpoint(points, weights):
    klein = 2 * points / (1 + (points**2).sum(-1, keepdim=True))
    gamma = 1 / torch.sqrt(1 - (klein**2).sum(-1))
    scaled = weights * gamma
    average = scaled @ klein / scaled.sum(-1, keepdim=True)
    return average / (1 + torch.sqrt(1 - (average**2).sum(-1, keepdim=True)))


def test_solutions_written_from_the_task_text_pass():
    for label, solution in zip(LABELS, (written_mobius_add, written_distance, written_midpoint)):
        assert check(label, solution, verbose=False), label


def test_references_pass_and_planted_slips_fail():
    for label in LABELS:
        with package_calls_allowed(label):
            assert check(label, REGISTRY[label].reference, verbose=False)
            result = check(label, REGISTRY[label].wrong, verbose=False)
        assert not result and "Task:" in result.message


def test_the_distance_checker_tries_curvatures_other_than_one():
    def ignores_c(x, y, c):
        return written_distance(x, y, 1.0)

    assert not check("ch07-poincare-distance", ignores_c, verbose=False)
