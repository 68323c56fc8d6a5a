"""Input checks shared by the geometry modules: clear errors before torch fails deep inside."""

from __future__ import annotations

import math

import torch


def require_points(name: str, x, size: int | None = None) -> None:
    """Raise unless ``x`` is a floating-point tensor (..., D) with D >= 1 (D == ``size`` if given)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if x.dim() < 1 or x.shape[-1] < 1:
        raise ValueError(f"{name} must have shape (..., D) with D >= 1; got {tuple(x.shape)}")
    if size is not None and x.shape[-1] != size:
        raise ValueError(f"{name} must have shape (..., {size}); got {tuple(x.shape)}")


def require_pair(x_name: str, x: torch.Tensor, y_name: str, y: torch.Tensor) -> None:
    """Raise unless two point tensors share a dtype and a last axis, and their batches broadcast."""
    shapes = f"{x_name} {tuple(x.shape)}, {y_name} {tuple(y.shape)}"
    if x.dtype != y.dtype:
        raise TypeError(f"{x_name} and {y_name} must share one dtype; got {x.dtype} and {y.dtype}")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"{x_name} and {y_name} must have the same last axis D; got {shapes}")
    try:
        torch.broadcast_shapes(x.shape, y.shape)
    except RuntimeError:
        raise ValueError(f"the leading axes of {x_name} and {y_name} do not broadcast; "
                         f"got {shapes}") from None


def require_curvature(c):
    """Return ``c`` (a positive float, or a positive 0-d tensor kept for gradients).

    ``c > 0`` stands for the sectional curvature ``-c``.
    """
    if isinstance(c, torch.Tensor):
        if c.numel() != 1 or not c.is_floating_point():
            raise ValueError(f"c must be a positive number or a floating 0-d tensor; got a "
                             f"{c.dtype} tensor of shape {tuple(c.shape)}")
        value = c.item()
        c = c.reshape(())
    elif isinstance(c, (int, float)) and not isinstance(c, bool):
        value = c = float(c)
    else:
        raise TypeError(f"c must be a positive number; got {type(c).__name__}")
    if not 0 < value < math.inf:
        raise ValueError(f"c must be positive and finite (the curvature is -c); got c = {value}")
    return c


def require_inside_ball(name: str, x: torch.Tensor, c) -> None:
    """Raise unless every point of ``x`` (..., D) lies in the open ball ``c |x|^2 < 1``."""
    with torch.no_grad():
        scaled = c * x.detach().pow(2).sum(-1)
        bad = ~(scaled < 1)  # also catches NaN
        if bad.any():
            index = tuple(bad.nonzero()[0].tolist())
            raise ValueError(
                f"{name} must lie inside the Poincaré ball c|x|^2 < 1 (c = {float(c):g}); the "
                f"point at batch index {index} has c|x|^2 = {scaled[index].item():.17g}. Points "
                "that rounded onto the boundary can be pulled back with qkv.geometry.project."
            )


def require_weights_for(points: torch.Tensor, weights: torch.Tensor) -> None:
    """Raise unless ``weights`` (..., L_q, L_k) are non-negative weights of the same dtype for
    ``points`` (..., L_k, D): one weighted mean of the points per row."""
    require_points("weights", weights)
    if points.dim() < 2 or weights.dim() < 2 or weights.shape[-1] != points.shape[-2]:
        raise ValueError(f"points must be (..., L_k, D) and weights (..., L_q, L_k) with the "
                         f"same L_k; got points {tuple(points.shape)}, weights "
                         f"{tuple(weights.shape)}")
    if weights.dtype != points.dtype:
        raise TypeError(f"weights must have the dtype of points ({points.dtype}); got "
                        f"{weights.dtype}")
    if (weights.detach() < 0).any():
        raise ValueError("weights must be non-negative")


def require_upper_half(name: str, p: torch.Tensor) -> None:
    """Raise unless every point (x, y) of ``p`` (..., 2) has y > 0."""
    with torch.no_grad():
        bad = ~(p.detach()[..., 1] > 0)
        if bad.any():
            index = tuple(bad.nonzero()[0].tolist())
            raise ValueError(f"{name} must lie in the upper half-plane y > 0; the point at batch "
                             f"index {index} has y = {p[index + (1,)].item():g}")


def require_count(name: str, value, minimum: int = 1) -> None:
    """Raise unless ``value`` is an int >= ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")


def require_positive(name: str, value) -> float:
    """Return ``value`` as a float after checking that it is a positive, finite number."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive, finite number; got {value!r}")
    return float(value)


def safe_norm(x: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
    """Euclidean norm over the last axis, bounded below by sqrt(tiny) so that dividing is safe.

    sqrt of the dtype's smallest normal number keeps ``1 / norm`` finite in float32 and float64.
    """
    floor = math.sqrt(torch.finfo(x.dtype).tiny)
    return torch.linalg.vector_norm(x, dim=-1, keepdim=keepdim).clamp_min(floor)
