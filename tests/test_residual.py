"""Tests of qkv.depth: the deep stack with and without residual connections (chapter 6)."""

import math

import pytest
import torch

from qkv.depth import (DeepStack, SkipBlock, layer_gradient_norms, mirror_batch,
                       position_spread, train_stack)


def _zero_sublayer_outputs(block: SkipBlock) -> None:
    """Make both sublayers output exactly zero: zero their last linear maps."""
    with torch.no_grad():
        for layer in (block.attn.W_o, block.ffn.linear2):
            layer.weight.zero_()
            layer.bias.zero_()


def test_residual_block_is_identity_when_sublayers_output_zero():
    torch.manual_seed(0)
    block = SkipBlock(d_model=16, num_heads=4, d_ff=32, residual=True)
    _zero_sublayer_outputs(block)
    x = torch.randn(3, 5, 16)
    assert torch.equal(block(x), x)


def test_residual_stack_is_identity_when_sublayers_output_zero():
    torch.manual_seed(0)
    model = DeepStack(num_layers=6, residual=True, length=5, d_model=16, num_heads=4, d_ff=32)
    for block in model.blocks:
        _zero_sublayer_outputs(block)
    tokens = torch.randint(0, 10, (2, 5))
    embedded = model.embed(tokens) + model.position
    assert torch.allclose(model.features(tokens), embedded)


def test_plain_block_outputs_zero_when_sublayers_output_zero():
    torch.manual_seed(0)
    block = SkipBlock(d_model=16, num_heads=4, d_ff=32, residual=False)
    _zero_sublayer_outputs(block)
    assert not block(torch.randn(2, 4, 16)).any()


@pytest.mark.parametrize("residual", [True, False])
def test_gradient_norms_are_finite_and_positive(residual):
    torch.manual_seed(1)
    model = DeepStack(num_layers=4, residual=residual, length=6)
    tokens, targets = mirror_batch(8, length=6, generator=torch.Generator().manual_seed(0))
    norms = layer_gradient_norms(model, tokens, targets)
    assert norms.shape == (4,) and norms.dtype == torch.float64
    assert torch.isfinite(norms).all() and (norms > 0).all()
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind


def test_gradient_norms_match_autograd_by_hand():
    torch.manual_seed(2)
    model = DeepStack(num_layers=2, length=4)
    tokens, targets = mirror_batch(5, length=4, generator=torch.Generator().manual_seed(1))
    norms = layer_gradient_norms(model, tokens, targets)
    loss = torch.nn.functional.cross_entropy(model(tokens).flatten(0, 1), targets.flatten())
    grads = torch.autograd.grad(loss, list(model.blocks[1].parameters()))
    expected = math.sqrt(sum(g.double().pow(2).sum().item() for g in grads))
    assert math.isclose(norms[1].item(), expected, rel_tol=1e-9)


def test_mirror_batch_reverses_and_is_seeded():
    tokens, targets = mirror_batch(4, length=7, generator=torch.Generator().manual_seed(3))
    assert tokens.shape == targets.shape == (4, 7)
    assert torch.equal(targets[:, 0], tokens[:, -1]) and torch.equal(targets.flip(1), tokens)
    again, _ = mirror_batch(4, length=7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(tokens, again)


def test_position_spread_is_zero_for_identical_positions_and_near_one_otherwise():
    torch.manual_seed(0)
    model = DeepStack(num_layers=1, length=6, d_model=16, num_heads=4, d_ff=32)
    for block in model.blocks:
        _zero_sublayer_outputs(block)
    with torch.no_grad():
        model.position.zero_()
    same = torch.full((2, 6), 3)  # one symbol everywhere: every position holds one vector
    assert position_spread(model, same) < 1e-6
    assert position_spread(model, torch.arange(6).repeat(2, 1)) > 0.5


def test_train_stack_returns_one_loss_per_step_and_same_seed_same_losses():
    def run():
        torch.manual_seed(0)
        return train_stack(DeepStack(num_layers=2, length=4), steps=3, batch_size=8, seed=5)

    first = run()
    assert len(first) == 3 and all(math.isfinite(x) for x in first)
    assert first == run()


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="num_layers"):
        DeepStack(num_layers=0)
    with pytest.raises(ValueError, match="tokens"):
        DeepStack(num_layers=1, length=4)(torch.zeros(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="x must have shape"):
        SkipBlock(8, 2, 16)(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="steps"):
        train_stack(DeepStack(num_layers=1), steps=0)
