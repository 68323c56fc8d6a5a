"""The chapter 3 checkers accept solutions written from the task text and explain the slips.

(That every registered reference passes and every `wrong` fails is the generic test's job.)
"""

import torch

from qkv.exercises import REGISTRY, check

LABELS = ("ch03-masked-softmax", "ch03-causal-mask", "ch03-padding-mask")


def written_masked_softmax(scores, mask):
    mask = mask.expand_as(scores)
    exp = torch.where(mask, (scores - scores.amax(-1, keepdim=True)).exp(), 0.0)
    total = exp.sum(-1, keepdim=True)
    return exp / torch.where(total > 0, total, 1.0)


def written_causal_mask(num_queries, num_keys):
    query = torch.arange(num_queries)[:, None] + (num_keys - num_queries)
    return torch.arange(num_keys)[None, :] <= query


def written_padding_mask(valid_lens, num_keys):
    lens = valid_lens.unsqueeze(-1) if valid_lens.dim() == 2 else valid_lens.view(-1, 1, 1)
    return torch.arange(num_keys) < lens


def _trials(label):
    exercise = REGISTRY[label]
    generator = torch.Generator().manual_seed(0)
    return [exercise.make_inputs(generator) for _ in range(exercise.trials)]


def test_chapter_3_registers_its_three_code_exercises():
    assert all(label in REGISTRY for label in LABELS)


def test_solutions_written_from_the_task_text_pass():
    assert check("ch03-masked-softmax", written_masked_softmax, verbose=False)
    assert check("ch03-causal-mask", written_causal_mask, verbose=False)
    assert check("ch03-padding-mask", written_padding_mask, verbose=False)


def test_masked_softmax_trials_contain_empty_rows_and_both_mask_shapes():
    trials = _trials("ch03-masked-softmax")
    empty_rows = [(~t["mask"].any(-1)).any().item() for t in trials]
    assert sum(empty_rows) >= len(trials) // 2
    assert {t["mask"].shape[1] == 1 for t in trials if t["scores"].shape[1] > 1} == {True, False}


def test_causal_trials_have_more_keys_than_queries_and_square_ones():
    trials = _trials("ch03-causal-mask")
    extra = {t["num_keys"] - t["num_queries"] for t in trials}
    assert 0 in extra and max(extra) > 0


def test_padding_trials_use_both_shapes_and_the_extreme_lengths():
    trials = _trials("ch03-padding-mask")
    assert {t["valid_lens"].dim() for t in trials} == {1, 2}
    assert any((t["valid_lens"] == 0).any() for t in trials)
    assert any((t["valid_lens"] == t["num_keys"]).any() for t in trials)


def test_the_minus_1e9_fill_is_caught_on_an_empty_row():
    result = check("ch03-masked-softmax", REGISTRY["ch03-masked-softmax"].wrong, verbose=False)
    assert not result and "expected 0, got" in result.message


def test_a_minus_infinity_fill_is_caught_as_nan():
    def minus_infinity(scores, mask):
        return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)

    result = check("ch03-masked-softmax", minus_infinity, verbose=False)
    assert not result and "NaN" in result.message


def test_a_float_causal_mask_is_rejected_for_its_dtype():
    def float_mask(num_queries, num_keys):
        return written_causal_mask(num_queries, num_keys).float()

    result = check("ch03-causal-mask", float_mask, verbose=False)
    assert not result and "dtype torch.bool" in result.message


def test_a_padding_mask_without_the_query_axis_is_rejected_for_its_shape():
    def no_query_axis(valid_lens, num_keys):
        return torch.arange(num_keys) < valid_lens[..., None]

    result = check("ch03-padding-mask", no_query_axis, verbose=False)
    assert not result and "should have shape" in result.message
