"""Tests of qkv.transformer: the feed-forward network, pre-/post-LN residuals, encoder and decoder
blocks and stacks, parity with torch.nn.Transformer, masks and the key/value cache.
"""

import math

import pytest
import torch
from torch import nn

from qkv.attention import causal_mask
from qkv.multihead import mask_from_torch
from qkv.positional import RotaryEmbedding, T5RelativeBias
from qkv.seq2seq import Seq2SeqTransformer, sequence_loss
from qkv.transformer import (
    DecoderBlock,
    EncoderBlock,
    LayerCache,
    PositionWiseFFN,
    ResidualNorm,
    Transformer,
    TransformerEncoder,
    _copy_block,
    key_mask,
)

D, H, F_SIZE = 8, 2, 16

# nn.Transformer warns that it cannot use nested tensors with norm_first=True; irrelevant here.
pytestmark = pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")


def randn(seed, *shape):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def padding(valid_lens, length):
    """Boolean (B, L), True at real tokens."""
    return torch.arange(length) < torch.tensor(valid_lens)[:, None]


# ----------------------------------------------------------------------------- pieces

def test_ffn_is_two_linear_maps_with_relu_between():
    torch.manual_seed(0)
    ffn = PositionWiseFFN(D, F_SIZE).double()
    x = randn(1, 2, 3, D)
    expected = torch.relu(x @ ffn.linear1.weight.T + ffn.linear1.bias) @ ffn.linear2.weight.T
    torch.testing.assert_close(ffn(x), expected + ffn.linear2.bias)


def test_ffn_treats_positions_independently():
    torch.manual_seed(0)
    ffn = PositionWiseFFN(D, F_SIZE).double()
    x = randn(2, 1, 5, D)
    torch.testing.assert_close(ffn(x)[:, 2], ffn(x[:, 2:3])[:, 0])


@pytest.mark.parametrize("norm_first", [False, True])
def test_residual_norm_places_the_norm_before_or_after(norm_first):
    res = ResidualNorm(D, norm_first=norm_first).double()
    x, update = randn(3, 2, 4, D), randn(4, 2, 4, D)
    layer_norm = nn.functional.layer_norm
    if norm_first:
        torch.testing.assert_close(res.before(x), layer_norm(x, (D,)))
        torch.testing.assert_close(res.after(x, update), x + update)
    else:
        torch.testing.assert_close(res.before(x), x)
        torch.testing.assert_close(res.after(x, update), layer_norm(x + update, (D,)))


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_block_matches_torch_encoder_layer(norm_first):
    torch.manual_seed(0)
    theirs = nn.TransformerEncoderLayer(D, H, F_SIZE, dropout=0.0, batch_first=True,
                                        norm_first=norm_first, dtype=torch.float64).eval()
    ours = EncoderBlock(D, H, F_SIZE, norm_first=norm_first).double()
    with torch.no_grad():
        _copy_block(ours, theirs, [("self_attn", "self_attn", "res_attn", "norm1")])
    x, valid = randn(5, 3, 6, D), padding([6, 4, 1], 6)
    expected = theirs(x, src_key_padding_mask=~valid)
    got = ours(x, key_mask(valid))
    torch.testing.assert_close(got[valid], expected[valid])


def test_encoder_returns_each_layers_weights_that_ignore_padding():
    torch.manual_seed(0)
    encoder = TransformerEncoder(3, D, H, F_SIZE, norm_first=True).double().eval()
    x, valid = randn(6, 2, 5, D), padding([5, 2], 5)
    out, weights = encoder(x, key_mask(valid), need_weights=True)
    torch.testing.assert_close(out, encoder(x, key_mask(valid)))
    assert len(weights) == 3 and all(w.shape == (2, H, 5, 5) for w in weights)
    for w in weights:
        torch.testing.assert_close(w.sum(-1), torch.ones(2, H, 5, dtype=torch.float64))
        assert torch.all(w[1, :, :, 2:] == 0)


def test_encoder_final_norm_only_with_pre_ln_by_default():
    assert isinstance(TransformerEncoder(1, D, H, F_SIZE, norm_first=True).norm, nn.LayerNorm)
    assert isinstance(TransformerEncoder(1, D, H, F_SIZE).norm, nn.Identity)
    assert isinstance(TransformerEncoder(1, D, H, F_SIZE, final_norm=True).norm, nn.LayerNorm)


@pytest.mark.parametrize("scheme", ["rotary", "t5"])
def test_encoder_passes_one_position_scheme_to_every_block_and_it_changes_the_output(scheme):
    torch.manual_seed(0)
    position = RotaryEmbedding(D // H) if scheme == "rotary" else T5RelativeBias(H)
    if scheme == "t5":
        torch.nn.init.normal_(position.bias.weight)
    with_position = TransformerEncoder(2, D, H, F_SIZE, position=position).double()
    assert all(layer.self_attn.position is position for layer in with_position.layers)
    plain = TransformerEncoder(2, D, H, F_SIZE).double()
    plain.load_state_dict(with_position.state_dict(), strict=False)
    x = randn(7, 1, 4, D)
    assert not torch.allclose(with_position(x), plain(x))
    if scheme == "t5":  # one shared table, stored once per block in the state dict
        assert sum(p is position.bias.weight for p in with_position.parameters()) == 1


def test_encoder_without_positions_is_permutation_equivariant():
    torch.manual_seed(0)
    encoder = TransformerEncoder(2, D, H, F_SIZE).double().eval()
    x, perm = randn(8, 2, 6, D), torch.tensor([3, 0, 5, 1, 4, 2])
    torch.testing.assert_close(encoder(x)[:, perm], encoder(x[:, perm]))


# ----------------------------------------------------------------------------- bad inputs

def test_bad_inputs_get_clear_errors():
    with pytest.raises(ValueError, match="d_ff"):
        PositionWiseFFN(D, 0)
    with pytest.raises(ValueError, match="dropout"):
        EncoderBlock(D, H, F_SIZE, dropout=1.5)
    with pytest.raises(ValueError, match="divisible"):
        EncoderBlock(D, 3, F_SIZE)
    with pytest.raises(ValueError, match="num_layers"):
        TransformerEncoder(0, D, H, F_SIZE)
    with pytest.raises(ValueError, match=r"x must have shape \(B, L, d_model\)"):
        EncoderBlock(D, H, F_SIZE)(torch.randn(2, 5, D + 1))
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., d_model\)"):
        PositionWiseFFN(D, F_SIZE)(torch.randn(3, D - 1))
    with pytest.raises(TypeError, match="floating-point"):
        EncoderBlock(D, H, F_SIZE)(torch.ones(2, 5, D, dtype=torch.long))
    with pytest.raises(ValueError, match="batch size"):
        DecoderBlock(D, H, F_SIZE)(torch.randn(2, 3, D), torch.randn(3, 4, D))
    with pytest.raises(ValueError, match="valid must be a boolean tensor"):
        key_mask(torch.ones(2, 3))


# ----------------------------------------------------------------------------- torch parity

def _torch_transformer(norm_first, layers=2, dtype=torch.float64):
    torch.manual_seed(1)
    module = nn.Transformer(D, H, layers, layers, F_SIZE, dropout=0.0, batch_first=True,
                            norm_first=norm_first, dtype=dtype)
    with torch.no_grad():  # torch initialises LayerNorms to (1, 0); make them matter
        for m in module.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)
    return module.eval()


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_from_torch_matches_nn_transformer_with_masks(norm_first):
    theirs = _torch_transformer(norm_first)
    ours = Transformer.from_torch(theirs)
    assert ours.norm_first == norm_first and not ours.training
    src, tgt = randn(2, 3, 7, D), randn(3, 3, 5, D)
    valid = padding([7, 3, 5], 7)
    # PyTorch's boolean masks: True = may NOT attend; ours: True = may attend.
    torch_causal = nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64) != 0
    expected = theirs(src, tgt, tgt_mask=torch_causal, src_key_padding_mask=~valid,
                      memory_key_padding_mask=~valid)
    got = ours(src, tgt, src_mask=key_mask(valid), tgt_mask=causal_mask(5),
               memory_mask=key_mask(valid))
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(mask_from_torch(torch_causal), causal_mask(5))
    memory = theirs.encoder(src, src_key_padding_mask=~valid)
    torch.testing.assert_close(ours.encode(src, key_mask(valid))[valid], memory[valid])


def test_from_torch_follows_dtype_and_rejects_what_it_cannot_copy():
    ours = Transformer.from_torch(_torch_transformer(False, dtype=torch.float32))
    assert ours.encoder.layers[0].ffn.linear1.weight.dtype == torch.float32
    with pytest.raises(TypeError, match="torch.nn.Transformer"):
        Transformer.from_torch(nn.Linear(2, 2))
    gelu = nn.Transformer(D, H, 1, 1, F_SIZE, activation="gelu", batch_first=True)
    with pytest.raises(ValueError, match="ReLU"):
        Transformer.from_torch(gelu)
    eps = nn.Transformer(D, H, 1, 1, F_SIZE, layer_norm_eps=1e-6, batch_first=True)
    with pytest.raises(ValueError, match="eps"):
        Transformer.from_torch(eps)


# ----------------------------------------------------------------------------- masks and cache

@pytest.mark.parametrize("norm_first", [False, True])
def test_no_information_from_future_targets_or_padded_sources(norm_first):
    torch.manual_seed(0)
    model = Transformer(D, H, 2, 2, F_SIZE, dropout=0.0, norm_first=norm_first).double().eval()
    src, tgt, valid = randn(1, 2, 6, D), randn(2, 2, 5, D), padding([6, 3], 6)

    def run(src, tgt):
        return model(src, tgt, key_mask(valid), causal_mask(5), key_mask(valid))

    base = run(src, tgt)
    changed_future = tgt.clone()
    changed_future[:, 3:] += 10 * randn(3, 2, 2, D)
    out = run(src, changed_future)
    torch.testing.assert_close(out[:, :3], base[:, :3])
    assert not torch.allclose(out[:, 3:], base[:, 3:])
    changed_padding = src.clone()
    changed_padding[1, 3:] = 10 * randn(4, 3, D)
    out = run(changed_padding, tgt)
    torch.testing.assert_close(out, base)
    changed_real = src.clone()
    changed_real[1, 2] += randn(5, D)  # (a constant shift would vanish in LayerNorm)
    assert not torch.allclose(run(changed_real, tgt)[1], base[1])


@pytest.mark.parametrize("chunks", [[1, 1, 1, 1, 1], [2, 1, 2], [5], [1] * 17 + [6, 13]])
def test_cached_decoding_equals_full_decoding(chunks):
    """Also across the cache's growth (its buffers start with room for 16 positions)."""
    torch.manual_seed(0)
    model = Transformer(D, H, 2, 3, F_SIZE, dropout=0.0, norm_first=True).double().eval()
    length = sum(chunks)
    src, tgt, valid = randn(1, 2, 6, D), randn(2, 2, length, D), padding([6, 4], 6)
    memory = model.encode(src, key_mask(valid))
    full = model.decode(tgt, memory, causal_mask(length), key_mask(valid))
    cache, pieces, start = model.new_cache(), [], 0
    for size in chunks:
        pieces.append(model.decode(tgt[:, start:start + size], memory, None, key_mask(valid),
                                   cache=cache))
        start += size
    assert cache.length == length
    torch.testing.assert_close(torch.cat(pieces, dim=1), full)


def test_layer_cache_append_and_reorder_equal_concatenation():
    cache, keys, values = LayerCache(), randn(0, 3, H, 0, 4), randn(1, 3, H, 0, 4)
    for step, (size, order) in enumerate([(1, None), (15, [2, 0, 1]), (1, None), (20, [1, 1, 0])]):
        new_keys, new_values = randn(10 + step, 3, H, size, 4), randn(20 + step, 3, H, size, 4)
        cache.append(new_keys, new_values)
        keys, values = torch.cat([keys, new_keys], 2), torch.cat([values, new_values], 2)
        if order is not None:
            cache.reorder(torch.tensor(order))
            keys, values = keys[order], values[order]
        assert torch.equal(cache.keys, keys) and torch.equal(cache.values, values)


def test_cache_weights_reorder_and_misuse():
    torch.manual_seed(0)
    model = Transformer(D, H, 1, 2, F_SIZE, dropout=0.0).double().eval()
    memory, tgt = randn(1, 3, 4, D), randn(2, 3, 2, D)
    cache = model.new_cache()
    out, weights = model.decode(tgt, memory, cache=cache, need_weights=True)
    self_w, cross_w = weights[0]
    assert self_w.shape == (3, H, 2, 2) and cross_w.shape == (3, H, 2, 4)
    assert torch.all(self_w[..., 0, 1] == 0)  # the cache is causal among new positions
    cache.reorder(torch.tensor([2, 2, 0]))
    assert cache.layers[1].keys.shape == (3, H, 2, D // H)
    torch.testing.assert_close(cache.layers[1].keys[1], cache.layers[1].keys[0])
    with pytest.raises(ValueError, match="tgt_mask must be None with a cache"):
        model.decode(tgt, memory, causal_mask(2), cache=model.new_cache())
    with pytest.raises(ValueError, match="cache has 1 layers"):
        model.decode(tgt, memory, cache=Transformer(D, H, 1, 1, F_SIZE).new_cache())


# ----------------------------------------------------------------------- the translation model

def small_model(vocab=40, **kwargs):
    torch.manual_seed(0)
    options = dict(d_model=16, num_heads=2, num_encoder_layers=2, num_decoder_layers=2,
                   d_ff=32, dropout=0.0, max_len=32)
    return Seq2SeqTransformer(vocab, vocab, **{**options, **kwargs}).eval()


@pytest.mark.parametrize("norm_first", [False, True])
def test_initial_loss_is_close_to_log_vocabulary_size(norm_first):
    vocab = 1000
    model = small_model(vocab, d_model=64, norm_first=norm_first, share_embeddings=True)
    gen = torch.Generator().manual_seed(0)
    src, tgt = torch.randint(3, vocab, (16, 12), generator=gen), torch.randint(3, vocab, (16, 11),
                                                                               generator=gen)
    loss = sequence_loss(model(src, tgt[:, :-1]), tgt[:, 1:]).item()
    # Logits of variance ~1 give ln(V) + 1/2 on average; a careless init grows with d_model.
    assert math.log(vocab) < loss < math.log(vocab) + 1.0
    with torch.no_grad():
        model.tgt_embed.weight.normal_(0.0, 1.0)  # std 1, then scaled by sqrt(d_model)
    assert sequence_loss(model(src, tgt[:, :-1]), tgt[:, 1:]).item() > math.log(vocab) + 5


def test_tied_and_shared_embeddings_are_one_parameter():
    model = small_model(share_embeddings=True, tie_output=True)
    assert model.src_embed.weight is model.tgt_embed.weight is model.output.weight
    untied = small_model(share_embeddings=False, tie_output=False)
    assert untied.src_embed.weight is not untied.tgt_embed.weight
    assert untied.output.weight is not untied.tgt_embed.weight
    assert untied.config["tie_output"] is False and untied.config["d_model"] == 16


def test_model_logits_ignore_future_targets_and_source_padding():
    model = small_model()
    gen = torch.Generator().manual_seed(1)
    src, tgt = torch.randint(3, 40, (2, 7), generator=gen), torch.randint(3, 40, (2, 6),
                                                                          generator=gen)
    src[1, 4:] = model.pad_id
    base = model(src, tgt)
    future = tgt.clone()
    future[:, 4:] = torch.randint(3, 40, (2, 2), generator=gen)
    torch.testing.assert_close(model(src, future)[:, :4], base[:, :4])
    shorter = src[:, :6].clone()  # removing padding changes nothing for sentence 1
    torch.testing.assert_close(model(shorter, tgt)[1], base[1])


def test_model_cached_logits_equal_full_logits():
    model = small_model(norm_first=False)
    gen = torch.Generator().manual_seed(2)
    src, tgt = torch.randint(3, 40, (3, 5), generator=gen), torch.randint(3, 40, (3, 6),
                                                                          generator=gen)
    memory, valid = model.encode(src)
    full = model.decode(tgt, memory, valid)
    cache = model.new_cache()
    steps = [model.decode(tgt[:, t:t + 1], memory, valid, cache) for t in range(6)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full)
    torch.testing.assert_close(model.decode(tgt, memory, valid, last_only=True), full[:, -1:])


def test_model_and_loss_reject_bad_inputs():
    with pytest.raises(ValueError, match="share_embeddings needs one vocabulary"):
        Seq2SeqTransformer(10, 12, share_embeddings=True)
    with pytest.raises(ValueError, match="eos_id"):
        Seq2SeqTransformer(10, 10, eos_id=10)
    model = small_model()
    with pytest.raises(ValueError, match="src must be an int64 tensor"):
        model(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"tgt holds ids outside \[0, 40\)"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.full((2, 3), 40))
    with pytest.raises(ValueError, match="targets"):
        sequence_loss(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
