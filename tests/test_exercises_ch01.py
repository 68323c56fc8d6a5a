"""The chapter 1 checkers accept solutions written from the task text and explain the slips.

(That every registered reference passes and every `wrong` fails is the generic test's job.)
"""

import torch

from qkv.exercises import REGISTRY, check


def written_soft_lookup(queries, keys, values, temperature):
    scores = -((queries[:, None, :] - keys[None, :, :]) ** 2).sum(-1) / temperature
    weights = scores.softmax(dim=-1)
    return weights @ values, weights


def written_topk_weights(queries, keys, k):
    nearest = torch.cdist(queries, keys).topk(k, largest=False).indices
    return torch.zeros(len(queries), len(keys), dtype=queries.dtype).scatter(1, nearest, 1 / k)


def written_exact_weights(queries, keys):
    matches = (queries[:, None, :] == keys[None, :, :]).all(-1).to(queries.dtype)
    return matches / matches.sum(-1, keepdim=True).clamp_min(1)


def test_solutions_written_from_the_task_text_pass():
    assert check("ch01-soft-lookup", written_soft_lookup, verbose=False)
    assert check("ch01-topk-weights", written_topk_weights, verbose=False)
    assert check("ch01-exact-weights", written_exact_weights, verbose=False)


def test_the_exact_checker_points_at_the_nan_row():
    result = check("ch01-exact-weights", REGISTRY["ch01-exact-weights"].wrong, verbose=False)
    assert not result and "NaN" in result.message


def test_forgetting_the_temperature_is_caught():
    def no_temperature(queries, keys, values, temperature):
        return written_soft_lookup(queries, keys, values, temperature=1.0)

    assert not check("ch01-soft-lookup", no_temperature, verbose=False)
