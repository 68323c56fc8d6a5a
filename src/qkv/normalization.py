"""Layer normalisation and RMS normalisation from scratch (chapter 6).

Both normalise each position's features on their own, so a position's output never depends on
the other positions or sentences in the batch (batch normalisation's statistics do, which is why
Transformers do not use it):

* :class:`LayerNorm` (Ba et al., 2016): subtract the mean of the features and divide by their
  standard deviation, ``(x - mean) / sqrt(var + eps)`` with the biased variance, then scale and
  shift per feature. The same function as ``torch.nn.LayerNorm``. (Dividing by ``std + eps``
  instead, as some tutorials do, is a different function; it differs most when the features
  are nearly constant.)
* :class:`RMSNorm` (Zhang & Sennrich, 2019): no mean subtracted, divide by the root mean square
  ``sqrt(mean(x ** 2) + eps)``, then scale per feature. The same function as
  ``torch.nn.RMSNorm``; cheaper, and the normalisation of most recent language models.

Both normalise over the last ``len(normalized_shape)`` axes, e.g. (B, L, d_model) with
``normalized_shape = d_model``.
"""

from __future__ import annotations

import torch
from torch import nn

from qkv.attention import _require_count, _require_float


def _shape(normalized_shape) -> tuple[int, ...]:
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if not shape:
        raise ValueError("normalized_shape must name at least one axis; got ()")
    for size in shape:
        _require_count("normalized_shape", size)
    return shape


def _require_eps(eps) -> None:
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps >= 0:
        raise ValueError(f"eps must be a number >= 0; got {eps!r}")


class _Normalization(nn.Module):
    def __init__(self, normalized_shape, elementwise_affine: bool):
        super().__init__()
        self.normalized_shape = _shape(normalized_shape)
        self.weight = nn.Parameter(torch.ones(self.normalized_shape)) if elementwise_affine else None

    def _axes(self, x: torch.Tensor) -> tuple[int, ...]:
        _require_float("x", x)
        count = len(self.normalized_shape)
        if tuple(x.shape[-count:]) != self.normalized_shape:
            raise ValueError(f"x must end with the axes {self.normalized_shape}; got shape "
                             f"{tuple(x.shape)}")
        return tuple(range(-count, 0))


class LayerNorm(_Normalization):
    """``(x - mean) / sqrt(var + eps) * weight + bias`` over the last axes of x.

    ``forward(x (..., *normalized_shape))`` returns the same shape; mean and (biased) variance
    are taken over the ``normalized_shape`` axes of each position.

    Args:
        normalized_shape: the sizes of the trailing axes to normalise, e.g. ``d_model``.
        eps: added to the variance inside the square root (1e-5, as in PyTorch).
        elementwise_affine: learn ``weight`` (ones) and ``bias`` (zeros) of that shape.
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True):
        super().__init__(normalized_shape, elementwise_affine)
        _require_eps(eps)
        self.eps = float(eps)
        self.bias = nn.Parameter(torch.zeros(self.normalized_shape)) if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = self._axes(x)
        mean = x.mean(dim=axes, keepdim=True)
        variance = x.var(dim=axes, keepdim=True, unbiased=False)
        y = (x - mean) / torch.sqrt(variance + self.eps)
        return y if self.weight is None else y * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps:g}"


class RMSNorm(_Normalization):
    """``x / sqrt(mean(x ** 2) + eps) * weight`` over the last axes of x.

    ``forward(x (..., *normalized_shape))`` returns the same shape.

    Args:
        normalized_shape: the sizes of the trailing axes to normalise, e.g. ``d_model``.
        eps: added to the mean square; None (as in PyTorch) uses the machine epsilon of x's
            dtype, ``torch.finfo(x.dtype).eps``.
        elementwise_affine: learn ``weight`` (ones) of that shape.
    """

    def __init__(self, normalized_shape, eps: float | None = None,
                 elementwise_affine: bool = True):
        super().__init__(normalized_shape, elementwise_affine)
        if eps is not None:
            _require_eps(eps)
        self.eps = None if eps is None else float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        axes = self._axes(x)
        eps = torch.finfo(x.dtype).eps if self.eps is None else self.eps
        y = x * torch.rsqrt(x.pow(2).mean(dim=axes, keepdim=True) + eps)
        return y if self.weight is None else y * self.weight

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}"
