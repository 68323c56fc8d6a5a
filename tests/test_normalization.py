"""LayerNorm and RMSNorm from scratch against PyTorch's layers (float64, random inputs)."""

import pytest
import torch
from torch import nn

from qkv.transformer import LayerNorm, RMSNorm


def _same_parameters(ours, theirs, generator):
    with torch.no_grad():
        for name, parameter in ours.named_parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
            getattr(theirs, name).copy_(parameter)


@pytest.mark.parametrize("shape", [8, (3, 5)])
@pytest.mark.parametrize("kind", ["layer", "rms"])
def test_same_values_and_gradients_as_pytorch(shape, kind):
    generator = torch.Generator().manual_seed(0)
    ours = (LayerNorm(shape) if kind == "layer" else RMSNorm(shape)).double()
    theirs = (nn.LayerNorm(shape) if kind == "layer" else nn.RMSNorm(shape)).double()
    _same_parameters(ours, theirs, generator)
    trailing = (shape,) if isinstance(shape, int) else shape
    x = (torch.randn((4, 6, *trailing), generator=generator, dtype=torch.float64) * 3 + 1)
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_theirs = ours(x_ours), theirs(x_theirs)
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-12, atol=1e-12)
    upstream = torch.randn(y_ours.shape, generator=generator, dtype=torch.float64)
    grads_ours = torch.autograd.grad(y_ours, [x_ours, *ours.parameters()], upstream)
    grads_theirs = torch.autograd.grad(y_theirs, [x_theirs, *theirs.parameters()], upstream)
    for a, b in zip(grads_ours, grads_theirs):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_rms_norm_default_eps_is_the_dtype_machine_epsilon_as_in_pytorch():
    x = torch.full((2, 4), 1e-5, dtype=torch.float32)     # mean square far below float32's eps
    torch.testing.assert_close(RMSNorm(4)(x), nn.RMSNorm(4)(x))
    torch.testing.assert_close(RMSNorm(4, eps=1e-6)(x), nn.RMSNorm(4, eps=1e-6)(x))


def test_each_position_is_normalised_on_its_own():
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    y = LayerNorm(16, elementwise_affine=False).double()(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 5, dtype=torch.float64), atol=1e-12, rtol=0)
    changed = x.clone()
    changed[1:] *= 100                                       # other sentences of the batch
    torch.testing.assert_close(LayerNorm(16).double()(changed)[0], LayerNorm(16).double()(x)[0])


def test_std_plus_eps_is_a_different_function():
    """The tutorial variant (x - mean) / (std + eps) is not LayerNorm: on nearly constant
    features the two disagree by far more than rounding."""
    x = torch.tensor([[1.0, 1.0 + 1e-3, 1.0 - 1e-3, 1.0]], dtype=torch.float64)
    ours = LayerNorm(4, elementwise_affine=False)(x)
    variant = (x - x.mean(-1, keepdim=True)) / (x.std(-1, unbiased=False, keepdim=True) + 1e-5)
    assert (ours - variant).abs().max() > 0.1


@pytest.mark.parametrize("make, message", [
    (lambda: LayerNorm(0), "normalized_shape"),
    (lambda: LayerNorm(4, eps=-1.0), "eps"),
    (lambda: RMSNorm(()), "normalized_shape"),
])
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_wrong_trailing_axes_are_named():
    with pytest.raises(ValueError, match="must end with the axes"):
        LayerNorm(8)(torch.randn(2, 7))
