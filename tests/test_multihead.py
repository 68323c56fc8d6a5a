"""Tests of qkv.multihead: parity with torch.nn.MultiheadAttention and d2l, fast vs readable
path, properties (hypothesis), gradcheck, half precision and every bad-input error.
"""

import pytest
import torch
from d2l import torch as d2l
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from qkv.attention import causal_mask, padding_mask
from qkv.multihead import MultiHeadAttention, fused_attention, mask_from_torch

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True)
SEEDS = st.integers(0, 2**31 - 1)


def randn(generator, *shape, dtype=torch.float64):
    return torch.randn(*shape, generator=generator, dtype=torch.float64).to(dtype)


def seeded_module(seed, *args, dtype=torch.float64, **kwargs):
    torch.manual_seed(seed)
    return MultiHeadAttention(*args, **kwargs).to(dtype)


# ----------------------------------------------------------------------------- torch parity

# PyTorch's nn.MultiheadAttention reads its BOOLEAN masks the other way round from ours and
# from F.scaled_dot_product_attention: True in attn_mask / key_padding_mask means "may NOT
# attend". The tests build PyTorch's masks, and ours with mask_from_torch (which inverts them).
CASES = {
    # name: (self_attention, bias, kdim, vdim, batch_first, masks)
    "self": (True, True, None, None, True, "none"),
    "self-padding-seq-first": (True, True, None, None, False, "padding"),
    "self-causal-nobias": (True, False, None, None, True, "attn"),
    "cross-both": (False, True, None, None, True, "both"),
    "cross-kvdim-padding": (False, True, 3, 5, True, "padding"),
    "cross-kvdim-nobias-seq-first": (False, False, 3, 5, False, "both"),
    "cross-per-head-mask": (False, True, 6, 6, True, "per_head"),
}


def torch_masks(kind, gen, batch, heads, num_queries, num_keys):
    """PyTorch-convention masks (True = may NOT attend); every query keeps an allowed key,
    because nn.MultiheadAttention returns NaN for a query whose keys are all masked."""
    masks = {}
    if kind in ("padding", "both"):
        valid_lens = torch.randint(1, num_keys + 1, (batch,), generator=gen)
        masks["key_padding_mask"] = torch.arange(num_keys) >= valid_lens[:, None]
    if kind in ("attn", "both"):
        masks["attn_mask"] = ~causal_mask(num_queries, num_keys)  # key 0 is always allowed
    if kind == "per_head":
        blocked = torch.rand(batch * heads, num_queries, num_keys, generator=gen) < 0.5
        blocked[..., 0] = False
        masks["attn_mask"] = blocked
    return masks


def run_torch(module, query, key, value, **masks):
    """nn.MultiheadAttention on batch-first inputs, whatever its batch_first: (out, weights)."""
    if not module.batch_first:
        query, key, value = (x.transpose(0, 1) for x in (query, key, value))
    output, weights = module(query, key, value, need_weights=True, average_attn_weights=False,
                             **masks)
    return (output if module.batch_first else output.transpose(0, 1)), weights


def make_case(name, dtype=torch.float64, seed=0):
    self_attention, bias, kdim, vdim, batch_first, mask_kind = CASES[name]
    gen = torch.Generator().manual_seed(seed)
    batch, heads, d_model, num_queries = 2, 2, 6, 4
    num_keys = num_queries if self_attention else 5
    torch.manual_seed(seed)
    reference = nn.MultiheadAttention(d_model, heads, bias=bias, kdim=kdim, vdim=vdim,
                                      batch_first=batch_first, dtype=dtype)
    with torch.no_grad():  # non-zero biases, so that copying them is tested too
        for name_, parameter in reference.named_parameters():
            if "bias" in name_:
                parameter.normal_(generator=gen)
    query = randn(gen, batch, num_queries, d_model, dtype=dtype)
    key = query if self_attention else randn(gen, batch, num_keys, kdim or d_model, dtype=dtype)
    value = query if self_attention else randn(gen, batch, num_keys, vdim or d_model, dtype=dtype)
    masks = torch_masks(mask_kind, gen, batch, heads, num_queries, num_keys)
    return reference, (query, key, value), masks


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", CASES)
def test_from_torch_computes_what_torch_computes(name, dtype):
    reference, inputs, masks = make_case(name, dtype)
    ours = MultiHeadAttention.from_torch(reference)
    assert next(ours.parameters()).dtype == dtype
    mask = mask_from_torch(**masks, num_heads=reference.num_heads)
    expected, expected_weights = run_torch(reference, *inputs, **masks)
    fast, no_weights = ours(*inputs, mask=mask)
    readable, weights = ours(*inputs, mask=mask, need_weights=True)
    assert no_weights is None
    torch.testing.assert_close(fast, expected)
    torch.testing.assert_close(readable, expected)
    torch.testing.assert_close(weights, expected_weights)


@pytest.mark.parametrize("need_weights", [False, True], ids=["fast", "readable"])
@pytest.mark.parametrize("name", ["self-padding-seq-first", "cross-kvdim-nobias-seq-first",
                                  "cross-per-head-mask"])
def test_from_torch_gradients_match_torch(name, need_weights):
    reference, inputs, masks = make_case(name, seed=1)
    ours = MultiHeadAttention.from_torch(reference)
    mask = mask_from_torch(**masks, num_heads=reference.num_heads)
    query, key, value = (x.detach().clone().requires_grad_() for x in inputs)
    cotangent = torch.randn(query.shape, generator=torch.Generator().manual_seed(2),
                            dtype=torch.float64)

    def gradients(output, module):
        loss = (output * cotangent).sum()
        return torch.autograd.grad(loss, [query, key, value, *module.parameters()])

    mine = gradients(ours(query, key, value, mask, need_weights)[0], ours)
    theirs = gradients(run_torch(reference, query, key, value, **masks)[0], reference)
    for got, expected in zip(mine[:3], theirs[:3]):  # inputs
        torch.testing.assert_close(got, expected)
    ours_by_name = dict(zip([n for n, _ in ours.named_parameters()], mine[3:]))
    torch_by_name = dict(zip([n for n, _ in reference.named_parameters()], theirs[3:]))
    if "in_proj_weight" in torch_by_name:
        in_proj = torch.cat([ours_by_name[f"W_{n}.weight"] for n in "qkv"])
        torch.testing.assert_close(in_proj, torch_by_name["in_proj_weight"])
    else:
        for n in "qkv":
            expected = torch_by_name[f"{n}_proj_weight"]
            torch.testing.assert_close(ours_by_name[f"W_{n}.weight"], expected)
    torch.testing.assert_close(ours_by_name["W_o.weight"], torch_by_name["out_proj.weight"])
    if "in_proj_bias" in torch_by_name:
        in_bias = torch.cat([ours_by_name[f"W_{n}.bias"] for n in "qkv"])
        torch.testing.assert_close(in_bias, torch_by_name["in_proj_bias"])
        torch.testing.assert_close(ours_by_name["W_o.bias"], torch_by_name["out_proj.bias"])


def test_from_torch_matches_torch_inference_fast_path():
    # Eval mode, batch first, self-attention, no autograd: conditions for PyTorch's fused path.
    reference, (query, _, _), masks = make_case("self", dtype=torch.float32)
    reference.eval()
    ours = MultiHeadAttention.from_torch(reference)
    assert not ours.training
    with torch.no_grad():
        expected = reference(query, query, query, need_weights=False)[0]
        torch.testing.assert_close(ours(query, query, query)[0], expected)


def test_mask_from_torch_inverts_and_combines():
    attn_mask = torch.tensor([[False, True], [False, False]])  # query 0 may not see key 1
    key_padding_mask = torch.tensor([[False, False], [False, True]])  # sequence 1: key 1 is padding
    mask = mask_from_torch(attn_mask, key_padding_mask)
    assert mask.shape == (2, 1, 2, 2)
    assert mask[:, 0].tolist() == [[[True, False], [True, True]], [[True, False], [True, False]]]
    per_head = torch.zeros(2 * 3, 2, 2, dtype=torch.bool)
    per_head[4, 1, 0] = True  # sequence 1, head 1, query 1, key 0
    converted = mask_from_torch(per_head, num_heads=3)
    assert converted.shape == (2, 3, 2, 2) and converted.sum() == 23 and not converted[1, 1, 1, 0]
    assert mask_from_torch() is None


# ----------------------------------------------------------------------------- d2l parity


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("per_query", [False, True], ids=["valid_lens (B,)", "valid_lens (B, L_q)"])
def test_matches_d2l_multi_head_attention_with_copied_weights(per_query, bias):
    gen = torch.Generator().manual_seed(3)
    batch, num_queries, num_keys, d_model, heads = 2, 4, 6, 8, 2
    query = randn(gen, batch, num_queries, d_model, dtype=torch.float32)
    key = randn(gen, batch, num_keys, 3, dtype=torch.float32)
    value = randn(gen, batch, num_keys, 5, dtype=torch.float32)
    shape = (batch, num_queries) if per_query else (batch,)
    # d2l fills masked scores with -1e6, so rows without a valid key differ by design.
    valid_lens = torch.randint(1, num_keys + 1, shape, generator=gen)
    ours = seeded_module(4, d_model, heads, bias=bias, kdim=3, vdim=5, dtype=torch.float32).eval()
    reference = d2l.MultiHeadAttention(d_model, heads, dropout=0.0, bias=bias).eval()
    reference(query, key, value, valid_lens)  # materialise d2l's lazy layers
    reference.load_state_dict(ours.state_dict())  # same names: W_q, W_k, W_v, W_o
    expected = reference(query, key, value, valid_lens)
    mask = padding_mask(valid_lens, num_keys)  # 3-D: the module adds the head axis
    for need_weights in (False, True):
        torch.testing.assert_close(ours(query, key, value, mask, need_weights)[0], expected)


# ----------------------------------------------------------------------------- fast vs readable

MASK_SHAPES = ["none", "2d", "3d_padding", "3d_full", "4d_full", "4d_broadcast"]


def our_mask(kind, gen, batch, heads, num_queries, num_keys):
    shapes = {
        "2d": (num_queries, num_keys),
        "3d_full": (batch, num_queries, num_keys),
        "4d_full": (batch, heads, num_queries, num_keys),
        "4d_broadcast": (1, heads, num_queries, 1),
    }
    if kind == "none":
        return None
    if kind == "3d_padding":
        return padding_mask(torch.randint(0, num_keys + 1, (batch,), generator=gen), num_keys)
    return torch.rand(shapes[kind], generator=gen) < 0.6  # may leave a row without keys


@PROPERTY
@given(
    seed=SEEDS,
    sizes=st.tuples(st.integers(1, 3), st.sampled_from([1, 2, 4]), st.integers(1, 5),
                    st.integers(1, 5)),
    kind=st.sampled_from(MASK_SHAPES),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_fast_and_readable_paths_agree(seed, sizes, kind, dtype):
    batch, heads, num_queries, num_keys = sizes
    gen = torch.Generator().manual_seed(seed)
    module = seeded_module(seed, 8, heads, kdim=3, vdim=5, dtype=dtype)
    query = randn(gen, batch, num_queries, 8, dtype=dtype).requires_grad_()
    key = randn(gen, batch, num_keys, 3, dtype=dtype)
    value = randn(gen, batch, num_keys, 5, dtype=dtype).requires_grad_()
    mask = our_mask(kind, gen, batch, heads, num_queries, num_keys)
    fast, _ = module(query, key, value, mask)
    readable, weights = module(query, key, value, mask, need_weights=True)
    assert weights.shape == (batch, heads, num_queries, num_keys)
    torch.testing.assert_close(fast, readable)
    fast_grads = torch.autograd.grad(fast.sum(), (query, value))
    readable_grads = torch.autograd.grad(readable.sum(), (query, value))
    for got, expected in zip(fast_grads, readable_grads):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("need_weights", [False, True], ids=["fast", "readable"])
def test_query_without_allowed_keys_gets_zero_attention_output(need_weights):
    # nn.MultiheadAttention returns NaN here; we return W_o applied to a zero vector (its bias).
    gen = torch.Generator().manual_seed(5)
    module = seeded_module(5, 4, 2)
    query = randn(gen, 2, 3, 4).requires_grad_()
    mask = torch.ones(2, 3, 3, dtype=torch.bool)
    mask[1, 2] = False
    output, _ = module(query, query, query, mask, need_weights)
    torch.testing.assert_close(output[1, 2], module.W_o.bias)
    (gradient,) = torch.autograd.grad(output.sum(), query)
    assert torch.isfinite(gradient).all()


# ----------------------------------------------------------------------------- properties


@PROPERTY
@given(seed=SEEDS, length=st.integers(2, 6), masked=st.booleans(), need_weights=st.booleans())
def test_self_attention_is_permutation_equivariant(seed, length, masked, need_weights):
    gen = torch.Generator().manual_seed(seed)
    module = seeded_module(seed, 4, 2)
    x = randn(gen, 2, length, 4)
    mask = (torch.rand(2, length, length, generator=gen) < 0.6) if masked else None
    perm = torch.randperm(length, generator=gen)
    output, _ = module(x, x, x, mask, need_weights)
    # Permuting the tokens (and the mask's rows and columns) permutes the output's rows.
    permuted_mask = mask[:, perm][:, :, perm] if masked else None
    permuted, _ = module(x[:, perm], x[:, perm], x[:, perm], permuted_mask, need_weights)
    torch.testing.assert_close(permuted, output[:, perm])


@PROPERTY
@given(seed=SEEDS, num_keys=st.integers(1, 6), need_weights=st.booleans())
def test_keys_and_values_at_padding_do_not_matter(seed, num_keys, need_weights):
    gen = torch.Generator().manual_seed(seed)
    module = seeded_module(seed, 4, 2, kdim=3, vdim=5)
    valid_lens = torch.randint(0, num_keys + 1, (3,), generator=gen)
    padded = torch.arange(num_keys) >= valid_lens[:, None]  # (B, L_k)
    query, key, value = randn(gen, 3, 2, 4), randn(gen, 3, num_keys, 3), randn(gen, 3, num_keys, 5)
    key2, value2 = key.clone(), value.clone()
    key2[padded] = 100 * randn(gen, int(padded.sum()), 3)
    value2[padded] = randn(gen, int(padded.sum()), 5)
    mask = padding_mask(valid_lens, num_keys)
    before, _ = module(query, key, value, mask, need_weights)
    after, _ = module(query, key2, value2, mask, need_weights)
    torch.testing.assert_close(before, after, rtol=0, atol=1e-14)


@pytest.mark.parametrize("need_weights", [False, True], ids=["fast", "readable"])
def test_gradcheck_inputs_and_parameters(need_weights):
    gen = torch.Generator().manual_seed(6)
    module = seeded_module(6, 4, 2, kdim=3)
    names = [name for name, _ in module.named_parameters()]
    parameters = tuple(p.detach().clone().requires_grad_() for p in module.parameters())
    query, key, value = (randn(gen, 2, n, d).requires_grad_() for n, d in ((3, 4), (4, 3), (4, 4)))
    mask = torch.rand(2, 1, 3, 4, generator=gen) < 0.6
    mask[0, 0, 1] = False  # a query without keys

    def attend(*tensors):
        state = dict(zip(names, tensors[3:]))
        return functional_call(module, state, (*tensors[:3], mask, need_weights))[0]

    assert torch.autograd.gradcheck(attend, (query, key, value, *parameters))


def skip_unless_cpu_supports(dtype):
    """Skip if this torch build lacks CPU kernels for linear layers or SDPA in ``dtype``."""
    probe = torch.ones(1, 1, 2, 2, dtype=dtype)
    try:
        nn.functional.linear(probe, probe[0, 0])
        nn.functional.scaled_dot_product_attention(probe, probe, probe)
    except (RuntimeError, NotImplementedError) as error:  # pragma: no cover - old builds
        pytest.skip(f"{dtype} is not supported on this CPU build: {error}")


@pytest.mark.parametrize("need_weights", [False, True], ids=["fast", "readable"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_with_masks_has_no_nan(dtype, need_weights):
    gen = torch.Generator().manual_seed(7)
    module = seeded_module(7, 16, 4, dtype=torch.float32)
    x = 4 * randn(gen, 2, 6, 16, dtype=torch.float32)
    mask = causal_mask(6) & (torch.rand(2, 1, 6, 6, generator=gen) < 0.7)
    mask[1, 0, 0] = False  # a query without keys
    skip_unless_cpu_supports(dtype)
    output, _ = module.to(dtype)(x.to(dtype), x.to(dtype), x.to(dtype), mask, need_weights)
    assert output.dtype == dtype and torch.isfinite(output).all()
    reference, _ = module.float()(x, x, x, mask, need_weights)
    tol = {torch.float16: 1e-2, torch.bfloat16: 6e-2}[dtype]
    torch.testing.assert_close(output.float(), reference, rtol=tol, atol=tol)


def test_dropout_only_in_training_and_weights_before_dropout():
    gen = torch.Generator().manual_seed(8)
    module = seeded_module(8, 8, 2, dropout=0.5)
    x = randn(gen, 2, 5, 8)
    for need_weights in (False, True):
        plain = seeded_module(8, 8, 2)(x, x, x, need_weights=need_weights)[0]
        torch.testing.assert_close(module.eval()(x, x, x, need_weights=need_weights)[0], plain)
        assert not torch.allclose(module.train()(x, x, x, need_weights=need_weights)[0], plain)
    _, weights = module.train()(x, x, x, need_weights=True)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 5, dtype=torch.float64))


def test_split_and_merge_heads():
    module = MultiHeadAttention(6, 3)
    x = torch.arange(2 * 4 * 6.0).reshape(2, 4, 6)
    heads = module.split_heads(x)
    assert heads.shape == (2, 3, 4, 2)
    assert torch.equal(heads[1, 2, 3], x[1, 3, 4:6])  # head h holds features 2h, 2h + 1
    assert torch.equal(module.merge_heads(heads), x)


def test_parameter_count_matches_torch():
    ours = MultiHeadAttention(8, 2, kdim=3, vdim=5)
    reference = nn.MultiheadAttention(8, 2, kdim=3, vdim=5)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours) == count(reference) == 8 * 8 + 3 * 8 + 5 * 8 + 8 * 8 + 4 * 8


# ----------------------------------------------------------------------------- bad input


def test_constructor_rejects_bad_sizes():
    with pytest.raises(ValueError, match="divisible by num_heads; got d_model=6, num_heads=4"):
        MultiHeadAttention(6, 4)
    with pytest.raises(ValueError, match="num_heads must be an int >= 1; got 0"):
        MultiHeadAttention(6, 0)
    with pytest.raises(ValueError, match="kdim must be an int >= 1; got -2"):
        MultiHeadAttention(6, 2, kdim=-2)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\); got 1.5"):
        MultiHeadAttention(6, 2, dropout=1.5)


def test_forward_rejects_mismatched_inputs():
    module = MultiHeadAttention(4, 2, kdim=3)
    query, key, value = torch.zeros(2, 5, 4), torch.zeros(2, 6, 3), torch.zeros(2, 6, 4)
    with pytest.raises(ValueError, match=r"query must have shape \(B, L, 4\); got \(5, 4\)"):
        module(query[0], key, value)
    with pytest.raises(ValueError, match=r"key must have shape \(B, L, 3\); got \(2, 6, 4\)"):
        module(query, value, value)
    with pytest.raises(ValueError, match=r"share B, .* got query \(2, 5, 4\), key \(1, 6, 3\)"):
        module(query, key[:1], value)
    with pytest.raises(ValueError, match=r"key and value L_k; .* value \(2, 5, 4\)"):
        module(query, key, value[:, :5])
    with pytest.raises(TypeError, match="value must be a floating-point tensor; got torch.int64"):
        module(query, key, value.long())


def test_forward_rejects_bad_masks():
    module = MultiHeadAttention(4, 2)
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ValueError, match=r"mask must have shape \(L_q, L_k\), .*; got \(3,\)"):
        module(x, x, x, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask of shape \(3, 3, 3\) does not broadcast to \(2, 3"):
        module(x, x, x, torch.ones(3, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(2, 4, 3, 3\) does not broadcast to \(2, 2, 3, 3"):
        module(x, x, x, torch.ones(2, 4, 3, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a boolean tensor .*got torch.float32"):
        module(x, x, x, torch.zeros(3, 3))
    heads = module.split_heads(x)
    with pytest.raises(ValueError, match=r"\(2, 1, 3, 2\) does not broadcast to \(2, 2, 3, 3"):
        fused_attention(heads, heads, heads, torch.ones(2, 1, 3, 2, dtype=torch.bool))


def test_from_torch_and_mask_from_torch_reject_what_they_cannot_convert():
    with pytest.raises(TypeError, match="module must be a torch.nn.MultiheadAttention"):
        MultiHeadAttention.from_torch(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="add_bias_kv or add_zero_attn"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(4, 2, add_bias_kv=True))
    with pytest.raises(ValueError, match="add_bias_kv or add_zero_attn"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(4, 2, add_zero_attn=True))
    with pytest.raises(TypeError, match="attn_mask must be a boolean tensor"):
        mask_from_torch(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"num_heads \(needed for a 3-D attn_mask\) must be"):
        mask_from_torch(torch.zeros(4, 3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\(B \* H, L_q, L_k\) with H = 3; got \(4, 3, 3\)"):
        mask_from_torch(torch.zeros(4, 3, 3, dtype=torch.bool), num_heads=3)
    with pytest.raises(ValueError, match=r"key_padding_mask must have shape \(B, L_k\); got \(3"):
        mask_from_torch(key_padding_mask=torch.zeros(3, dtype=torch.bool))
