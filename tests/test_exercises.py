"""qkv.exercises: every reference solution passes its checker and every planted mistake fails;
the notebooks' own solutions pass; calls into the package, missing gradients and half-precision
overflow are caught; check_all and the grading record report what ran."""

import ast
import json
import math
from pathlib import Path

import pytest
import torch

from qkv.attention import causal_mask, masked_softmax, padding_mask, scaled_dot_product_attention
from qkv.exercises import LATEST, REGISTRY, Exercise, check, check_all, register
from qkv.exercises.compare import compare
from qkv.geometry import mobius_add
from qkv.lookup import soft_lookup
from qkv.multihead import MultiHeadAttention
from qkv.pooling import leave_one_out_mask

from exercise_helpers import package_calls_allowed

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
    with package_calls_allowed(label):
        result = check(label, REGISTRY[label].reference, verbose=False)
    assert result.passed, result.message
    assert "passed" in result.message


def _solutions():
    """(chapter, label, source of the solution function) for every checked notebook solution."""
    found = []
    for path in CHAPTERS:
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] != "code" or "def solution_" not in source:
                continue
            tree = ast.parse(source)
            calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                     and getattr(node.func, "id", "") == "check"]
            for node in calls:
                label, name = node.args[0].value, node.args[1].id
                function = next(f for f in tree.body if getattr(f, "name", "") == name)
                found.append((path.stem, label, ast.get_source_segment(source, function)))
    return found


SOLUTIONS = _solutions()


def test_every_code_exercise_has_a_notebook_solution():
    assert sorted({label for _, label, _ in SOLUTIONS}) == LABELS


@pytest.mark.parametrize("chapter, label, source", SOLUTIONS, ids=[s[1] for s in SOLUTIONS])
def test_the_notebook_solution_passes_every_check(chapter, label, source):
    """The book's printed solution passes the homework checks: values, gradients, half
    precision, and no call into the package's own implementation."""
    namespace = {"torch": torch, "math": math, "F": torch.nn.functional,
                 "scaled_dot_product_attention": scaled_dot_product_attention}
    exec(compile(source, f"<{chapter} solution>", "exec"), namespace)
    result = check(label, namespace[source.split("(")[0].removeprefix("def ")], verbose=False)
    assert result.passed, result.message


def _soft_lookup_by_the_package(queries, keys, values, temperature):
    found = soft_lookup(queries, keys, values, temperature=temperature, score="distance")
    return found.outputs, found.weights


def _masked_softmax_through_a_helper(scores, mask):
    helper = masked_softmax  # an alias, one call deep: still the package
    return helper(scores, mask)


def _split_heads_by_the_module(x, num_heads):
    return MultiHeadAttention(x.shape[-1], num_heads).split_heads(x)


def _mobius_add_by_the_package(x, y, c):
    return mobius_add(x, y, c)


@pytest.mark.parametrize("label, package_call, name", [
    ("ch01-soft-lookup", _soft_lookup_by_the_package, "qkv.lookup.soft_lookup"),
    ("ch02-loo-mask", lambda n: leave_one_out_mask(n), "qkv.pooling.leave_one_out_mask"),
    ("ch03-masked-softmax", _masked_softmax_through_a_helper, "qkv.attention.masked_softmax"),
    ("ch03-causal-mask", causal_mask, "qkv.attention.causal_mask"),
    ("ch03-padding-mask", padding_mask, "qkv.attention.padding_mask"),
    ("ch04-split-heads", _split_heads_by_the_module, "qkv.multihead.MultiHeadAttention"),
    ("ch07-mobius-add", _mobius_add_by_the_package, "qkv.geometry"),
])
def test_calling_the_package_fails_and_says_which_function(label, package_call, name):
    with package_calls_allowed(label):  # it computes the right values ...
        assert check(label, package_call, verbose=False).passed
    result = check(label, package_call, verbose=False)  # ... but is not the learner's work
    assert result.status == "failed" and f"calls {name}" in result.message
    assert "package's own implementation" in result.message


def test_a_result_without_gradients_fails():
    def detached(scores, mask):
        weights = scores.detach().masked_fill(~mask, -math.inf).softmax(-1)
        return weights.nan_to_num(0.0)

    result = check("ch03-masked-softmax", detached, verbose=False)
    assert not result and "carries no gradient" in result.message


def test_a_wrong_gradient_fails_although_the_values_match():
    class SwallowGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return 2 * grad

    def doubled_gradient(scores, mask):
        weights = scores.masked_fill(~mask, torch.finfo(scores.dtype).min).softmax(-1)
        return SwallowGradient.apply(weights.masked_fill(~mask, 0.0))

    result = check("ch03-masked-softmax", doubled_gradient, verbose=False)
    assert not result and "the gradient with respect to scores differs" in result.message


def test_the_minus_1e9_fill_fails_in_half_precision():
    def minus_1e9(scores, mask):
        weights = scores.masked_fill(~mask, -1e9).softmax(-1)
        return weights.masked_fill(~mask, 0.0)

    result = check("ch03-masked-softmax", minus_1e9, verbose=False)
    assert not result and "float16 trial" in result.message and "RuntimeError" in result.message

    def dtype_aware(scores, mask):
        weights = scores.masked_fill(~mask, torch.finfo(scores.dtype).min).softmax(-1)
        return weights.masked_fill(~mask, 0.0)

    result = check("ch03-masked-softmax", dtype_aware, verbose=False)
    assert result and "float16 and bfloat16" in result.message


def test_a_function_that_leaves_half_precision_fails():
    def upcast(scores, mask):
        scores = scores.double()
        weights = scores.masked_fill(~mask, torch.finfo(scores.dtype).min).softmax(-1)
        return weights.masked_fill(~mask, 0.0)

    result = check("ch03-masked-softmax", upcast, verbose=False)
    assert not result and "should stay in torch.float16" in result.message


def test_check_all_reports_each_exercise_of_the_chapter(capsys):
    for label in [label for label in LATEST if label.startswith("ch03-")]:
        del LATEST[label]
    check("ch03-causal-mask", REGISTRY["ch03-causal-mask"].wrong, verbose=False)
    statuses = check_all(3)
    assert statuses == {"ch03-causal-mask": "failed", "ch03-masked-softmax": "not tried",
                        "ch03-padding-mask": "not tried"}
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].split() == ["ch03-causal-mask", "failed"]
    assert check_all("ch03", verbose=False) == statuses
    with pytest.raises(KeyError, match="no registered exercises"):
        check_all("ch99")


def test_checks_append_to_the_record_file_and_run_the_extra_checks(tmp_path, monkeypatch):
    from qkv.exercises import record

    extra = tmp_path / "private"
    extra.mkdir()
    (extra / "more.py").write_text(
        "import torch\n"
        "EXTRA_TRIALS = 5\n"
        "def long_rows(generator):\n"
        "    return {'scores': torch.randn(2, 3, 40, generator=generator, dtype=torch.float64),\n"
        "            'mask': torch.rand(2, 1, 40, generator=generator) < 0.5}\n"
        "EXTRA_CHECKS = {'ch03-masked-softmax': long_rows}\n")
    monkeypatch.setenv("QKV_CHECK_RECORD", str(tmp_path / "record.jsonl"))
    monkeypatch.setenv("QKV_EXTRA_CHECKS", str(extra))

    def only_short_rows(scores, mask):  # right on the public inputs (at most 6 keys) only
        weights = scores.masked_fill(~mask, torch.finfo(scores.dtype).min).softmax(-1)
        weights = weights.masked_fill(~mask, 0.0)
        return weights if scores.shape[-1] <= 6 else weights.flip(-1)

    hidden = check("ch03-masked-softmax", only_short_rows, verbose=False)
    assert not hidden and "hidden trial" in hidden.message
    check("ch03-causal-mask", REGISTRY["ch03-causal-mask"].wrong, verbose=False)
    recorded = record.read(tmp_path / "record.jsonl")
    assert {label: entry["status"] for label, entry in recorded.items()} == {
        "ch03-masked-softmax": "failed", "ch03-causal-mask": "failed"}
    assert recorded["ch03-masked-softmax"]["message"] == hidden.message


@pytest.mark.parametrize("label", LABELS)
def test_planted_mistake_fails_with_an_explanation(label):
    with package_calls_allowed(label):  # some slips reuse package helpers
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
