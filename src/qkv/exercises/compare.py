"""Compare a learner's result with the reference and say, in plain words, what differs."""

from __future__ import annotations

from typing import Any

import torch

Mismatch = str
"""A plain-language description of the first difference found."""


def describe_inputs(inputs: dict[str, Any]) -> str:
    """Summarise keyword arguments for a message: tensors by shape and dtype, others by value."""
    parts = []
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor):
            parts.append(f"{name} of shape {tuple(value.shape)} ({str(value.dtype).removeprefix('torch.')})")
        else:
            parts.append(f"{name}={value!r}")
    return ", ".join(parts)


def compare(expected: Any, got: Any, atol: float, rtol: float, path: str = "the result") -> Mismatch | None:
    """Return ``None`` if ``got`` matches ``expected``, else a description of the first difference.

    Tensors must agree in shape and (within ``atol``/``rtol``) in value, with NaN only where the
    reference has NaN; tuples and lists element by element; anything else by ``==``.
    """
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"{path} should be a tensor, but your function returned {type(got).__name__}"
        if got.shape != expected.shape:
            return (f"{path} should have shape {tuple(expected.shape)}, "
                    f"but yours has shape {tuple(got.shape)}")
        if expected.dtype == torch.bool or got.dtype == torch.bool:
            if got.dtype != expected.dtype:
                return f"{path} should have dtype {expected.dtype}, but yours has {got.dtype}"
            bad = (got != expected).nonzero()
            if len(bad):
                index = tuple(bad[0].tolist())
                return (f"{path} differs at index {index}: expected {expected[index].item()}, "
                        f"got {got[index].item()}")
            return None
        e, g = expected.detach().double(), got.detach().double()
        if torch.isnan(g).any() and not torch.isnan(e).any():
            index = tuple(torch.isnan(g).nonzero()[0].tolist())
            return f"{path} contains NaN at index {index}, where the reference has {e[index].item():.4g}"
        close = torch.isclose(g, e, atol=atol, rtol=rtol, equal_nan=True)
        if not close.all():
            index = tuple((~close).nonzero()[0].tolist())
            gap = (g - e).abs().nan_to_num(nan=float("inf")).max().item()
            return (f"{path} differs at index {index}: expected {e[index].item():.6g}, got "
                    f"{g[index].item():.6g} (largest difference {gap:.3g})")
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return (f"{path} should be a tuple of {len(expected)} items, "
                    f"but your function returned {type(got).__name__}"
                    + (f" of {len(got)} items" if isinstance(got, (tuple, list)) else ""))
        for i, (e, g) in enumerate(zip(expected, got)):
            mismatch = compare(e, g, atol, rtol, path=f"item {i} of {path}")
            if mismatch is not None:
                return mismatch
        return None
    if isinstance(expected, float) and isinstance(got, (int, float)):
        if abs(expected - got) > atol + rtol * abs(expected):
            return f"{path} should be {expected:.6g}, but yours is {got:.6g}"
        return None
    if got != expected:
        return f"{path} should be {expected!r}, but yours is {got!r}"
    return None
