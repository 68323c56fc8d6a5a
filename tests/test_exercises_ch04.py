"""The chapter 4 checkers accept solutions written from the task text and catch the usual slips.

(That every registered reference passes and every `wrong` fails is the generic test's job.)
"""

import math

import torch

from qkv.exercises import check


def written_split_heads(x, num_heads):
    batch, length, d_model = x.shape
    return x.view(batch, length, num_heads, d_model // num_heads).permute(0, 2, 1, 3)


def written_merge_heads(x):
    return torch.cat(x.unbind(dim=1), dim=-1)  # heads side by side, head 0 first


def written_mha(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask):
    head_dim = query.shape[-1] // num_heads
    q, k, v = (written_split_heads(x @ w, num_heads)
               for x, w in ((query, W_q), (key, W_k), (value, W_v)))
    scores = q @ k.transpose(-1, -2) / math.sqrt(head_dim)
    scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
    return written_merge_heads(scores.softmax(-1) @ v) @ W_o


def test_solutions_written_from_the_task_text_pass():
    assert check("ch04-split-heads", written_split_heads, verbose=False)
    assert check("ch04-merge-heads", written_merge_heads, verbose=False)
    assert check("ch04-mha-forward", written_mha, verbose=False)


def test_splitting_the_wrong_end_of_the_features_is_caught():
    def heads_interleaved(x, num_heads):  # feature j goes to head j % H instead of j // D_h
        batch, length, d_model = x.shape
        return x.view(batch, length, d_model // num_heads, num_heads).permute(0, 3, 1, 2)

    assert not check("ch04-split-heads", heads_interleaved, verbose=False)


def test_ignoring_the_mask_or_the_output_projection_is_caught():
    def no_mask(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask):
        everything = torch.ones_like(mask)
        return written_mha(query, key, value, W_q, W_k, W_v, W_o, num_heads, everything)

    def no_output_projection(query, key, value, W_q, W_k, W_v, W_o, num_heads, mask):
        identity = torch.eye(W_o.shape[0], dtype=W_o.dtype)
        return written_mha(query, key, value, W_q, W_k, W_v, identity, num_heads, mask)

    result = check("ch04-mha-forward", no_mask, verbose=False)
    assert not result and "Task:" in result.message
    assert not check("ch04-mha-forward", no_output_projection, verbose=False)


def test_the_split_checker_explains_a_wrong_shape():
    def forgot_to_split(x, num_heads):
        return x

    result = check("ch04-split-heads", forgot_to_split, verbose=False)
    assert not result and "shape" in result.message
