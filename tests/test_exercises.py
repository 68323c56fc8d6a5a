"""qkv.exercises: every reference solution passes its checker and every planted mistake fails."""

import json
from pathlib import Path

import pytest
import torch

from qkv.exercises import REGISTRY, Exercise, check, register
from qkv.exercises.compare import compare

LABELS = sorted(REGISTRY)


CHAPTERS = sorted((Path(__file__).resolve().parents[1] / "chapters").glob("*.ipynb"))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_with_exercises_has_checkers_and_uses_them(path):
    text = path.read_text(encoding="utf-8")
    if "{exercise}" not in text:
        pytest.skip(f"{path.stem} is an outline without exercises yet")
    chapter = f"ch{path.name[:2]}"
    labels = [label for label in LABELS if label.startswith(chapter + "-")]
    assert len(labels) >= 2, f"{chapter} registers {len(labels)} code exercises"
    cells = "".join("".join(c["source"]) for c in json.loads(text)["cells"])
    for label in labels:
        assert f'check("{label}"' in cells, f"{path.name} never calls check({label!r}, ...)"


@pytest.mark.parametrize("label", LABELS)
def test_reference_passes(label):
    result = check(label, REGISTRY[label].reference, verbose=False)
    assert result.passed, result.message
    assert "passed" in result.message


@pytest.mark.parametrize("label", LABELS)
def test_planted_mistake_fails_with_an_explanation(label):
    result = check(label, REGISTRY[label].wrong, verbose=False)
    assert not result.passed
    assert result.message.startswith(f"[{label}] On trial")
    assert "Task:" in result.message or "raised" in result.message


@pytest.mark.parametrize("label", LABELS)
def test_not_attempted_is_reported_not_raised(label, capsys):
    def unfinished(**kwargs):
        raise NotImplementedError

    result = check(label, unfinished)
    assert not result.passed
    assert "not attempted yet" in capsys.readouterr().out


def test_a_crashing_candidate_is_explained():
    label = LABELS[0]

    def crashes(**kwargs):
        raise RuntimeError("boom")

    result = check(label, crashes, verbose=False)
    assert not result.passed and "your function raised RuntimeError: boom" in result.message


def test_check_bad_arguments():
    with pytest.raises(KeyError, match="no exercise is labelled 'nope'"):
        check("nope", lambda: None)
    with pytest.raises(TypeError, match="candidate must be a function"):
        check(LABELS[0], 3)


def test_register_rejects_duplicate_labels():
    existing = REGISTRY[LABELS[0]]
    with pytest.raises(ValueError, match="already registered"):
        register(existing)


def test_inputs_are_cloned_so_in_place_changes_cannot_fool_the_check():
    def make_inputs(generator):
        return {"x": torch.rand(4, generator=generator)}

    exercise = Exercise(label="test-clone", task="double x", reference=lambda x: 2 * x,
                        make_inputs=make_inputs, wrong=lambda x: x, trials=3)
    REGISTRY[exercise.label] = exercise
    try:
        def cheat(x):  # changes its input so that the reference would see doubled values
            return x.mul_(2)

        assert check("test-clone", cheat, verbose=False).passed  # gives the right answer ...
        assert not check("test-clone", lambda x: x + 1, verbose=False).passed
    finally:
        del REGISTRY[exercise.label]


@pytest.mark.parametrize(
    "expected, got, fragment",
    [
        (torch.zeros(2, 3), torch.zeros(3, 2), "should have shape (2, 3), but yours has shape (3, 2)"),
        (torch.zeros(2), [0.0, 0.0], "should be a tensor"),
        (torch.zeros(2), torch.tensor([0.0, float("nan")]), "contains NaN at index (1,)"),
        (torch.zeros(2), torch.tensor([0.0, 0.5]), "differs at index (1,): expected 0, got 0.5"),
        ((torch.zeros(1), torch.ones(1)), (torch.zeros(1), torch.zeros(1)), "item 1 of the result"),
        ((torch.zeros(1), torch.ones(1)), torch.zeros(1), "should be a tuple of 2 items"),
        (torch.tensor([True]), torch.tensor([False]), "differs at index (0,)"),
        (1.0, 1.5, "should be 1, but yours is 1.5"),
        ("a", "b", "should be 'a', but yours is 'b'"),
    ],
)
def test_compare_explains_the_first_difference(expected, got, fragment):
    message = compare(expected, got, atol=1e-6, rtol=1e-6)
    assert message is not None and fragment in message


def test_compare_accepts_equal_results():
    assert compare((torch.ones(3), 2.0), (torch.ones(3) + 1e-9, 2.0), atol=1e-6, rtol=1e-6) is None
