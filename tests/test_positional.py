"""Tests of qkv.positional and of MultiHeadAttention's position hook: the paper's formula, parity
with d2l, the rotation property, RoPE's relative-position property, ALiBi's slopes, T5's
buckets, translation invariance of the score biases, parity of the readable and fused paths with
every scheme, and permutation (in)variance of self-attention without and with positions.
"""

import math

import numpy as np
import pytest
import torch
from d2l import torch as d2l
from hypothesis import given, settings
from hypothesis import strategies as st

from qkv.attention import causal_mask, padding_mask, scaled_dot_product_attention
from qkv.multihead import MultiHeadAttention, fused_attention
from qkv.positional import (
    ALiBi,
    LearnedPositionalEncoding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    T5RelativeBias,
    alibi_bias,
    alibi_slopes,
    frequencies,
    rotate_pairs,
    shift_matrix,
    sinusoidal_encoding,
    t5_relative_bucket,
)

PROPERTY = settings(max_examples=25, deadline=None, derandomize=True)


def paper_formula(max_len, d_model, base=10000.0):
    """PE(t, 2k) = sin(t / base^(2k/d)), PE(t, 2k+1) = cos(t / base^(2k/d)), written out."""
    table = np.zeros((max_len, d_model))
    for t in range(max_len):
        for i in range(d_model):
            k = i // 2
            angle = t / base ** (2 * k / d_model)
            table[t, i] = math.sin(angle) if i % 2 == 0 else math.cos(angle)
    return torch.from_numpy(table)


def swapped_seed_version(max_len, d_model):
    """The snippet in one of the seeds: cosine on the EVEN dimensions (swapped)."""
    position = np.arange(max_len)
    freqs = 1e-4 ** (2 * (np.arange(d_model) // 2) / d_model)
    angles = position.reshape(-1, 1) * freqs.reshape(1, -1)
    angles[:, ::2] = np.cos(angles[:, ::2])
    angles[:, 1::2] = np.sin(angles[:, 1::2])
    return torch.from_numpy(angles)


# ------------------------------------------------------------------------ sinusoidal table

@pytest.mark.parametrize("max_len, d_model, base", [(50, 16, 10000.0), (7, 5, 10000.0),
                                                    (12, 1, 100.0), (30, 6, 50.0)])
def test_sinusoidal_matches_the_paper_formula(max_len, d_model, base):
    table = sinusoidal_encoding(max_len, d_model, base=base, dtype=torch.float64)
    assert table.shape == (max_len, d_model) and table.dtype == torch.float64
    torch.testing.assert_close(table, paper_formula(max_len, d_model, base), atol=1e-12, rtol=0)


def test_sinusoidal_matches_d2l_table_P():
    reference = d2l.PositionalEncoding(32, 0.0, max_len=500).P[0]  # (max_len, d), float32
    ours = sinusoidal_encoding(500, 32)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours, reference, atol=2e-4, rtol=0)  # d2l works in float32


def test_the_seed_snippet_has_sin_and_cos_swapped():
    ours = sinusoidal_encoding(20, 8, dtype=torch.float64)
    seed = swapped_seed_version(20, 8)
    assert not torch.allclose(ours, seed)
    torch.testing.assert_close(ours[:, 0::2], seed[:, 1::2])  # same angles, roles exchanged
    torch.testing.assert_close(ours[:, 1::2], seed[:, 0::2])
    assert (ours[0, 0::2] == 0).all() and (ours[0, 1::2] == 1).all()  # sin 0 = 0, cos 0 = 1


def test_frequencies_are_geometric_from_one_to_one_over_base():
    omega = frequencies(8, base=10000.0)
    torch.testing.assert_close(omega, 10000.0 ** (-torch.arange(0, 8, 2).double() / 8))
    assert omega[0] == 1.0 and frequencies(9).shape == (5,)


def test_sinusoidal_values_are_bounded_and_rows_have_constant_norm():
    table = sinusoidal_encoding(200, 10, dtype=torch.float64)
    assert table.abs().max() <= 1
    torch.testing.assert_close(table.norm(dim=1), torch.full((200,), math.sqrt(5.0),
                                                             dtype=torch.float64))


# -------------------------------------------------------------------- the rotation property

def test_rotation_property_for_many_positions_offsets_and_frequencies():
    """M(phi) [sin, cos](w t) = [sin, cos](w (t + phi)), with M(phi) independent of t."""
    t = torch.linspace(-50, 300, 97, dtype=torch.float64)
    for omega in frequencies(16).tolist():
        for phi in (-7.5, -1.0, 0.0, 0.3, 1.0, 2.0, 13.0, 100.0):
            a = omega * phi
            rotation = torch.tensor([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]],
                                    dtype=torch.float64)
            now = torch.stack([torch.sin(omega * t), torch.cos(omega * t)])  # (2, n)
            later = torch.stack([torch.sin(omega * (t + phi)), torch.cos(omega * (t + phi))])
            torch.testing.assert_close(rotation @ now, later, atol=1e-10, rtol=0)
            assert torch.allclose(rotation @ rotation.T, torch.eye(2, dtype=torch.float64))


@pytest.mark.parametrize("phi", [0, 1, 3, 17, 40])
def test_shift_matrix_moves_every_row_of_the_table_by_phi(phi):
    table = sinusoidal_encoding(100, 12, dtype=torch.float64)
    shift = shift_matrix(phi, 12)
    torch.testing.assert_close(table[: 100 - phi] @ shift.T, table[phi:], atol=1e-10, rtol=0)
    torch.testing.assert_close(shift @ shift.T, torch.eye(12, dtype=torch.float64))


def test_shift_matrix_rejects_odd_d_model():
    with pytest.raises(ValueError, match="d_model must be even"):
        shift_matrix(1, 5)


# ---------------------------------------------------------------------- additive encodings

def test_sinusoidal_module_adds_the_table_with_offset():
    module = SinusoidalPositionalEncoding(6, max_len=20).double()
    x = torch.randn(3, 5, 6, dtype=torch.float64)
    table = sinusoidal_encoding(20, 6, dtype=torch.float64)
    torch.testing.assert_close(module(x), x + table[:5])
    torch.testing.assert_close(module(x, offset=4), x + table[4:9])
    assert list(module.state_dict()) == []  # nothing learned, nothing stored


def test_sinusoidal_module_matches_d2l_module():
    torch.manual_seed(0)
    x = torch.randn(2, 9, 16)
    reference = d2l.PositionalEncoding(16, 0.0, max_len=50).eval()
    ours = SinusoidalPositionalEncoding(16, max_len=50).eval()
    torch.testing.assert_close(ours(x), reference(x), atol=1e-5, rtol=0)


def test_learned_module_adds_a_trainable_vector_per_position():
    torch.manual_seed(0)
    assert LearnedPositionalEncoding(8, 500).embedding.std().item() == pytest.approx(0.02, rel=0.1)
    assert LearnedPositionalEncoding(8, 500, init_std=1.0).embedding.std().item() == (
        pytest.approx(1.0, rel=0.1))
    module = LearnedPositionalEncoding(4, max_len=10)
    x = torch.zeros(2, 3, 4)
    out = module(x, offset=2)
    torch.testing.assert_close(out, module.embedding[2:5].expand(2, 3, 4))
    out.sum().backward()
    assert module.embedding.grad[2:5].eq(2).all() and module.embedding.grad[:2].eq(0).all()


@pytest.mark.parametrize("cls, kwargs", [(SinusoidalPositionalEncoding, {}),
                                         (LearnedPositionalEncoding, {})])
def test_additive_encodings_reject_bad_input(cls, kwargs):
    module = cls(4, max_len=6, **kwargs)
    with pytest.raises(ValueError, match=r"positions up to 6 .*max_len=6"):
        module(torch.zeros(1, 7, 4))
    with pytest.raises(ValueError, match=r"positions up to 6 .*offset=2"):
        module(torch.zeros(1, 5, 4), offset=2)
    with pytest.raises(ValueError, match=r"x must have shape \(B, L, 4\); got \(1, 5, 3\)"):
        module(torch.zeros(1, 5, 3))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        module(torch.zeros(1, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="offset must be an int >= 0"):
        module(torch.zeros(1, 5, 4), offset=-1)


def test_constructor_errors():
    with pytest.raises(ValueError, match="max_len must be an int >= 1"):
        sinusoidal_encoding(0, 4)
    with pytest.raises(ValueError, match="d_model must be an int >= 1"):
        sinusoidal_encoding(4, 0)
    with pytest.raises(ValueError, match="base must be a number > 1"):
        sinusoidal_encoding(4, 4, base=1.0)
    with pytest.raises(ValueError, match="dropout must be a number in"):
        SinusoidalPositionalEncoding(4, dropout=1.5)
    with pytest.raises(ValueError, match="head_dim must be even"):
        RotaryEmbedding(5)
    with pytest.raises(ValueError, match="init_std must be a positive number"):
        LearnedPositionalEncoding(4, 8, init_std=0.0)


# --------------------------------------------------------------------------------- RoPE

def test_rope_is_the_identity_at_position_zero_and_preserves_norms():
    rope = RotaryEmbedding(8)
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    rotated = rope(x)
    torch.testing.assert_close(rotated[..., 0, :], x[..., 0, :], atol=0, rtol=0)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    assert not torch.allclose(rotated[..., 1:, :], x[..., 1:, :])


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), m=st.integers(0, 200), n=st.integers(0, 200),
       shift=st.integers(0, 300))
def test_rope_scores_depend_only_on_the_offset(seed, m, n, shift):
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 16, generator=gen, dtype=torch.float64)
    rope = RotaryEmbedding(16)

    def score(position_q, position_k):
        return rope(q[None], offset=position_q)[0] @ rope(k[None], offset=position_k)[0]

    expected = rope(k[None], offset=n - m)[0] @ q if n >= m else rope(q[None], offset=m - n)[0] @ k
    torch.testing.assert_close(score(m, n), expected, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(score(m + shift, n + shift), score(m, n), atol=1e-10, rtol=1e-10)


def test_rope_offset_equals_slicing_a_longer_sequence():
    rope = RotaryEmbedding(6)
    x = torch.randn(2, 10, 6, dtype=torch.float64)
    torch.testing.assert_close(rope(x[:, 4:], offset=4), rope(x)[:, 4:])


def test_rope_rotates_adjacent_pairs_by_position_times_frequency():
    x = torch.tensor([[1.0, 0.0, 1.0, 0.0]], dtype=torch.float64).repeat(3, 1)  # (L=3, 4)
    out = RotaryEmbedding(4, base=100.0)(x)
    omega = [1.0, 0.1]
    for m in range(3):
        expected = [math.cos(m * omega[0]), math.sin(m * omega[0]),
                    math.cos(m * omega[1]), math.sin(m * omega[1])]
        torch.testing.assert_close(out[m], torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(rotate_pairs(x, torch.zeros(3, 2)), x)


def test_rope_errors():
    rope = RotaryEmbedding(4)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., L, 4\); got \(2, 3\)"):
        rope(torch.zeros(2, 3))
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        rope(torch.zeros(2, 4, dtype=torch.long))


# ---------------------------------------------------------------- MultiHeadAttention hook

class Recorder:
    """A scheme that changes nothing (a rotation by 0, a zero bias) and records its calls."""

    head_dim, num_heads = 4, 2

    def __init__(self):
        self.calls = []

    def rotate(self, q, k, q_offset, k_offset):
        self.calls.append(("rotate", q.shape[-2], k.shape[-2], q_offset, k_offset))
        return q, k

    def score_bias(self, num_queries, num_keys, q_offset, k_offset):
        self.calls.append(("score_bias", num_queries, num_keys, q_offset, k_offset))
        return torch.zeros(self.num_heads, num_queries, num_keys)


def twin_modules(position, seed=0):
    torch.manual_seed(seed)
    plain = MultiHeadAttention(8, 2).double()
    torch.manual_seed(seed)
    hooked = MultiHeadAttention(8, 2, position=position).double()
    return plain, hooked


@pytest.mark.parametrize("need_weights", [False, True])
def test_a_neutral_scheme_changes_nothing_and_receives_the_offsets(need_weights):
    recorder = Recorder()
    plain, hooked = twin_modules(recorder)
    x, memory = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 7, 8, dtype=torch.float64)
    expected = plain(x, memory, memory, need_weights=need_weights)
    got = hooked(x, memory, memory, need_weights=need_weights, q_offset=3, k_offset=1)
    torch.testing.assert_close(got[0], expected[0])
    assert recorder.calls == [("rotate", 5, 7, 3, 1), ("score_bias", 5, 7, 3, 1)]
    assert list(hooked.state_dict()) == list(plain.state_dict())


def test_rope_in_attention_depends_only_on_relative_positions():
    plain, hooked = twin_modules(RotaryEmbedding(4))
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    base, weights = hooked(x, x, x, need_weights=True)
    shifted, shifted_weights = hooked(x, x, x, need_weights=True, q_offset=11, k_offset=11)
    torch.testing.assert_close(shifted, base)  # the same shift of every position: no change
    torch.testing.assert_close(shifted_weights, weights)
    moved, _ = hooked(x, x, x, q_offset=3)  # queries moved, keys not: the offsets change
    assert not torch.allclose(moved, base)
    assert not torch.allclose(base, plain(x, x, x)[0])  # and RoPE does change attention


def test_rotary_hook_on_the_fast_and_readable_paths_agree():
    _, hooked = twin_modules(RotaryEmbedding(4))
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    torch.testing.assert_close(hooked(x, x, x, need_weights=True, k_offset=2)[0],
                               hooked(x, x, x, k_offset=2)[0])


def test_position_hook_errors():
    with pytest.raises(TypeError, match="position must have a method rotate"):
        MultiHeadAttention(8, 2, position=3)
    with pytest.raises(ValueError, match="position works on head_dim=6, but the attention has "
                                         "head_dim=4"):
        MultiHeadAttention(8, 2, position=RotaryEmbedding(6))
    with pytest.raises(ValueError, match="position works on num_heads=4, but the attention has "
                                         "num_heads=2"):
        MultiHeadAttention(8, 2, position=ALiBi(4))
    module = MultiHeadAttention(8, 2, position=RotaryEmbedding(4))
    x = torch.zeros(1, 3, 8)
    with pytest.raises(ValueError, match="q_offset must be an int >= 0"):
        module(x, x, x, q_offset=-1)
    with pytest.raises(ValueError, match="k_offset must be an int >= 0"):
        module(x, x, x, k_offset=1.5)


# ---------------------------------------------------------------------- permutations

def embedded_sequence(tokens, seed=0):
    """(1, L, 8) float64 embeddings of integer tokens, from a fixed random table."""
    table = torch.randn(10, 8, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return table[torch.tensor(tokens)][None]


def self_attention(positions):
    """Self-attention over (1, L, 8) with positions 'none', 'sinusoidal' or 'rotary'."""
    torch.manual_seed(1)
    rotary = RotaryEmbedding(4) if positions == "rotary" else None
    module = MultiHeadAttention(8, 2, position=rotary)
    module = module.double()
    table = SinusoidalPositionalEncoding(8, max_len=32).double()

    def apply(x):
        x = table(x) if positions == "sinusoidal" else x
        return module(x, x, x)[0]

    return apply


TOKENS = [1, 2, 7, 1, 3, 2]  # "1" at positions 0 and 3, "2" at 1 and 5


def test_without_positions_identical_tokens_give_identical_rows():
    out = self_attention("none")(embedded_sequence(TOKENS))[0]
    torch.testing.assert_close(out[0], out[3], atol=1e-12, rtol=0)
    torch.testing.assert_close(out[1], out[5], atol=1e-12, rtol=0)


@pytest.mark.parametrize("positions", ["sinusoidal", "rotary"])
def test_with_positions_identical_tokens_give_different_rows(positions):
    out = self_attention(positions)(embedded_sequence(TOKENS))[0]
    assert not torch.allclose(out[0], out[3]) and not torch.allclose(out[1], out[5])


@PROPERTY
@given(seed=st.integers(0, 2**31 - 1), length=st.integers(2, 9))
def test_without_positions_self_attention_is_permutation_equivariant(seed, length):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 10, (length,), generator=gen).tolist()
    permutation = torch.randperm(length, generator=gen)
    attend = self_attention("none")
    x = embedded_sequence(tokens, seed)
    torch.testing.assert_close(attend(x[:, permutation]), attend(x)[:, permutation])


@pytest.mark.parametrize("positions", ["sinusoidal", "rotary"])
def test_with_positions_permuting_the_input_does_not_permute_the_output(positions):
    attend = self_attention(positions)
    x = embedded_sequence([4, 8, 1, 6, 0])
    permutation = torch.tensor([2, 0, 4, 1, 3])
    assert not torch.allclose(attend(x[:, permutation]), attend(x)[:, permutation])


# Relative score biases: ALiBi (Press et al., 2022) and T5's buckets (Raffel et al., 2020).

def _paper_alibi_slopes(n):
    """The slopes as the ALiBi paper describes them: a geometric sequence starting at and with
    ratio 2^(-8/n) for n a power of two; otherwise that of the largest power of two below n,
    then every other slope of the sequence for twice that power."""
    if math.log2(n).is_integer():
        start = 2 ** (-8 / n)
        return [start * start ** i for i in range(n)]
    below = 2 ** math.floor(math.log2(n))
    return _paper_alibi_slopes(below) + _paper_alibi_slopes(2 * below)[0::2][: n - below]


@pytest.mark.parametrize("heads", [1, 2, 3, 6, 8, 12, 16, 20])
def test_alibi_slopes_follow_the_paper(heads):
    slopes = alibi_slopes(heads)
    assert slopes.shape == (heads,) and slopes.dtype == torch.float32
    assert torch.allclose(slopes.double(), torch.tensor(_paper_alibi_slopes(heads), dtype=torch.float64))


def test_alibi_slopes_for_eight_heads_are_the_papers_example():
    assert alibi_slopes(8).tolist() == [2.0 ** -k for k in range(1, 9)]


def test_alibi_bias_depends_on_the_offset_only():
    bias = alibi_bias(4, 7, 7, dtype=torch.float64)
    assert bias.shape == (4, 7, 7)
    assert torch.equal(bias[:, 1:, 1:], bias[:, :-1, :-1])           # shifting i and j together
    assert torch.equal(bias, bias.transpose(1, 2))                     # symmetric in j - i
    assert torch.all(bias.diagonal(dim1=1, dim2=2) == 0) and torch.all(bias <= 0)
    expected = -alibi_slopes(4).double()[:, None] * torch.arange(7.0, dtype=torch.float64)
    assert torch.allclose(bias[:, 0, :], expected)                      # -slope * distance


def test_alibi_bias_for_the_last_queries_matches_the_full_table():
    full = alibi_bias(3, 10, 10)
    assert torch.equal(alibi_bias(3, 2, 10, q_offset=8), full[:, 8:, :])


@pytest.mark.parametrize("bad", [dict(num_heads=0), dict(num_queries=0), dict(q_offset=-1)])
def test_alibi_bias_names_a_bad_argument(bad):
    arguments = dict(num_heads=2, num_queries=3, num_keys=3) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        alibi_bias(arguments.pop("num_heads"), arguments.pop("num_queries"),
                   arguments.pop("num_keys"), **arguments)


def test_t5_buckets_by_definition():
    distance = torch.arange(0, 300)
    # bidirectional, 32 buckets: 16 per direction, the first 8 exact; the key before the query
    # (negative offset) in the lower half, after it in the upper half
    before = t5_relative_bucket(-distance)
    after = t5_relative_bucket(distance)
    assert torch.equal(before[:8], distance[:8]) and torch.equal(after[1:8], 16 + distance[1:8])
    assert after[0] == 0                                      # the query's own position
    assert torch.all(before[128:] == 15) and torch.all(after[128:] == 31)
    assert torch.all(before.diff() >= 0) and torch.all(after[1:].diff() >= 0)
    # by hand: distance 15 is 8 + floor(log(15 / 8) / log(128 / 8) * 8) = 8 + 1
    assert before[15] == 9 and after[15] == 25
    # one direction (a decoder): keys after the query share bucket 0
    causal = t5_relative_bucket(-distance, bidirectional=False)
    assert torch.equal(causal[:16], distance[:16]) and torch.all(causal[128:] == 31)
    assert torch.all(t5_relative_bucket(distance, bidirectional=False) == 0)


def test_t5_bucket_of_a_matrix_of_offsets_depends_on_the_offset_only():
    positions = torch.arange(12)
    buckets = t5_relative_bucket(positions[None, :] - positions[:, None], num_buckets=8,
                                 max_distance=6)
    assert buckets.dtype == torch.long and buckets.shape == (12, 12)
    assert torch.equal(buckets[1:, 1:], buckets[:-1, :-1])
    assert int(buckets.min()) >= 0 and int(buckets.max()) < 8


def test_t5_bucket_rejects_float_offsets_and_too_few_buckets():
    with pytest.raises(TypeError, match="relative_position"):
        t5_relative_bucket(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="num_buckets"):
        t5_relative_bucket(torch.tensor([1]), num_buckets=2)


def test_alibi_bias_with_both_offsets_depends_on_the_offset_only():
    full = alibi_bias(2, 12, 12, dtype=torch.float64)
    assert torch.equal(alibi_bias(2, 3, 5, q_offset=6, k_offset=4, dtype=torch.float64),
                       full[:, 6:9, 4:9])
    assert torch.equal(alibi_bias(2, 3, 5, q_offset=106, k_offset=104),
                       alibi_bias(2, 3, 5, q_offset=6, k_offset=4))


# ------------------------------------------------------------- score biases in the attention

def scheme(name, heads=2, head_dim=4, seed=0):
    """A position scheme by name; the T5 table gets random values (it starts at zero)."""
    if name == "rotary":
        return RotaryEmbedding(head_dim)
    if name == "alibi":
        return ALiBi(heads)
    torch.manual_seed(seed)
    t5 = T5RelativeBias(heads, bidirectional=name == "t5", num_buckets=8, max_distance=6)
    torch.nn.init.normal_(t5.bias.weight)
    return t5


SCHEMES = ["rotary", "alibi", "t5", "t5-causal"]


@pytest.mark.parametrize("name", ["alibi", "t5", "t5-causal"])
def test_score_biases_are_translation_invariant(name):
    """bias[h, i, j] depends on (j + k_offset) - (i + q_offset) only."""
    bias = scheme(name).score_bias
    full = bias(30, 30, 0, 0).double()
    assert full.shape == (2, 30, 30)
    assert torch.equal(full[:, 1:, 1:], full[:, :-1, :-1])
    for q_offset, k_offset in [(3, 0), (0, 5), (7, 7), (130, 125)]:
        part = bias(4, 6, q_offset, k_offset).double()
        expected = torch.stack([torch.stack([full[:, 15, 15 + (k_offset + j) - (q_offset + i)]
                                             for j in range(6)], -1) for i in range(4)], 1)
        torch.testing.assert_close(part, expected, atol=0, rtol=0)


def test_t5_causal_bias_gives_all_later_keys_the_bias_of_the_query_itself():
    bias = scheme("t5-causal").score_bias(5, 5, 0, 0)
    later = torch.ones(5, 5, dtype=torch.bool).triu(1)
    assert torch.all(bias[:, later] == bias[:, 0, 0][:, None])


def masks_for(kind, batch, num_queries, num_keys):
    if kind == "none":
        return None
    if kind == "causal":
        return causal_mask(num_queries, num_keys)
    mask = padding_mask(torch.tensor([num_keys, 2]), num_keys).unsqueeze(1)  # (B, 1, 1, L_k)
    if kind == "empty-row":  # a query with no allowed key at all
        mask = mask & torch.ones(num_queries, num_keys, dtype=torch.bool).index_fill(
            0, torch.tensor([1]), False)
    return mask


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("kind", ["none", "causal", "padding", "empty-row"])
def test_readable_and_fused_paths_agree_with_every_scheme(name, kind):
    _, module = twin_modules(scheme(name))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 8, generator=gen, dtype=torch.float64)
    mask = masks_for(kind, 2, 5, 5)
    readable, weights = module(x, x, x, mask, need_weights=True)
    fused, _ = module(x, x, x, mask)
    torch.testing.assert_close(fused, readable, atol=1e-12, rtol=1e-12)
    if mask is not None:  # masked keys get exactly zero weight whatever their bias
        assert torch.all(weights[~mask.expand_as(weights)] == 0)
    if kind == "empty-row":  # a query without keys: zero attention, the output bias alone
        torch.testing.assert_close(readable[:, 1], module.W_o.bias.expand(2, 8))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", ["alibi", "t5"])
def test_score_biases_work_in_every_dtype_with_masked_rows(name, dtype):
    _, module = twin_modules(scheme(name))
    module = module.to(dtype)
    x = torch.randn(2, 5, 8).to(dtype)
    mask = masks_for("empty-row", 2, 5, 5)
    readable, weights = module(x, x, x, mask, need_weights=True)
    fused, _ = module(x, x, x, mask)
    assert readable.dtype == fused.dtype == dtype
    assert torch.isfinite(readable).all() and torch.isfinite(fused).all()
    torch.testing.assert_close(fused.float(), readable.float(), atol=2e-2, rtol=2e-2)
    assert torch.all(weights[:, :, 1] == 0)


def test_functional_paths_take_a_score_bias_and_check_it():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 4, 8, generator=gen, dtype=torch.float64) for _ in range(3))
    bias = torch.randn(3, 4, 4, generator=gen, dtype=torch.float64)
    mask = causal_mask(4)
    readable, _ = scaled_dot_product_attention(q, k, v, mask, score_bias=bias)
    torch.testing.assert_close(fused_attention(q, k, v, mask, score_bias=bias), readable)
    by_hand = torch.softmax((q @ k.transpose(-2, -1) / math.sqrt(8) + bias).masked_fill(
        ~mask, float("-inf")), -1) @ v
    torch.testing.assert_close(readable, by_hand)
    with pytest.raises(ValueError, match=r"score_bias of shape \(3, 4, 5\) does not broadcast"):
        scaled_dot_product_attention(q, k, v, score_bias=torch.zeros(3, 4, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="score_bias must have the dtype of q"):
        fused_attention(q, k, v, score_bias=bias.float())
    with pytest.raises(TypeError, match="score_bias must be a floating-point tensor"):
        fused_attention(q, k, v, score_bias=mask)


@pytest.mark.parametrize("need_weights", [False, True])
def test_gradients_reach_the_t5_table_on_both_paths(need_weights):
    t5 = T5RelativeBias(2, num_buckets=8, max_distance=6)
    _, module = twin_modules(t5)
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    output, _ = module(x, x, x, causal_mask(9), need_weights=need_weights)
    output.pow(2).sum().backward()
    gradient = t5.bias.weight.grad
    assert gradient is not None and gradient.shape == (8, 2)
    assert gradient[:4].abs().sum() > 0      # the buckets of keys at or before the query
    assert torch.all(gradient[5:] == 0)     # keys after the query are masked: no gradient
    # both paths give the same gradient
    t5.bias.weight.grad = None
    module(x, x, x, causal_mask(9), need_weights=not need_weights)[0].pow(2).sum().backward()
    torch.testing.assert_close(t5.bias.weight.grad, gradient)


@pytest.mark.parametrize("name", SCHEMES)
@pytest.mark.parametrize("need_weights", [False, True])
def test_decoding_with_offsets_gives_the_last_rows_of_the_full_computation(name, need_weights):
    """Queries for the last positions only, at q_offset, against all keys: the same rows."""
    _, module = twin_modules(scheme(name))
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    full, _ = module(x, x, x, causal_mask(7), need_weights=need_weights)
    for start in (6, 4):
        last, _ = module(x[:, start:], x, x, causal_mask(7 - start, 7),
                         need_weights=need_weights, q_offset=start)
        torch.testing.assert_close(last, full[:, start:], atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", ["alibi", "t5"])
def test_with_a_score_bias_shifting_every_position_changes_nothing(name):
    _, module = twin_modules(scheme(name))
    x = torch.randn(1, 6, 8, dtype=torch.float64)
    base, _ = module(x, x, x)
    torch.testing.assert_close(module(x, x, x, q_offset=50, k_offset=50)[0], base)
    assert not torch.allclose(module(x, x, x, q_offset=2)[0], base)


def test_position_scheme_modules():
    t5 = T5RelativeBias(3)
    assert t5.bias.weight.shape == (32, 3) and torch.all(t5.bias.weight == 0)
    assert [name for name, _ in t5.named_parameters()] == ["bias.weight"]
    assert list(ALiBi(3).parameters()) == [] and "num_heads=3" in repr(ALiBi(3))
    torch.testing.assert_close(ALiBi(4).score_bias(3, 5, 2, 0), alibi_bias(4, 3, 5, q_offset=2))
    with pytest.raises(ValueError, match="num_buckets"):
        T5RelativeBias(2, num_buckets=2)
    with pytest.raises(ValueError, match="num_heads"):
        ALiBi(0)
