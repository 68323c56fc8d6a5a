"""Argument checks shared by the whole package: one place for the errors a reader sees.

Every public function of ``qkv`` checks its inputs before computing anything, and a bad input
gets an error that names the argument and says what was expected and what came instead (the
shape, the dtype, the value seen), never a silent broadcast or an error from deep inside torch.
The checks themselves live here, below every chapter's module, so that chapter 1's lookups,
chapter 2's kernel regression and chapter 3's attention word their errors the same way:

* :func:`check_tensor`: a floating-point tensor, optionally of given ranks;
* :func:`check_same`: tensors that share one dtype and one device;
* :func:`check_count`: an int with a lower bound (sizes, steps, lengths);
* :func:`check_probability`: a number in [0, 1) (dropout);
* :func:`check_positive`: a finite number > 0, or such a scalar tensor (temperature, bandwidth).
"""

from __future__ import annotations

import math
from collections.abc import Collection

import torch


def check_tensor(name: str, tensor, ranks: Collection[int] | None = None, shape: str = "", *,
                 min_rank: int = 0) -> None:
    """Raise unless ``tensor`` is a floating-point ``torch.Tensor`` of an allowed rank.

    Args:
        name: the argument's name, used in the message.
        tensor: the argument to check.
        ranks: the allowed numbers of dimensions, e.g. ``(1, 2)``; None allows any.
        shape: the expected shape in words for the message, e.g. ``"(n,) or (n, d)"``.
        min_rank: the smallest allowed number of dimensions (for shapes such as (..., L, D)).

    Raises:
        TypeError: ``"<name> must be a floating-point tensor; got <dtype or type>"``.
        ValueError: ``"<name> must have shape <shape>; got <shape seen>"``.
    """
    if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
        kind = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
        raise TypeError(f"{name} must be a floating-point tensor; got {kind}")
    if tensor.dim() < min_rank or (ranks is not None and tensor.dim() not in ranks):
        if not shape:
            allowed = " or ".join(str(r) for r in ranks) if ranks is not None else f">= {min_rank}"
            shape = f"{allowed} dimensions"
        raise ValueError(f"{name} must have shape {shape}; got {tuple(tensor.shape)}")


def check_same(**tensors: torch.Tensor) -> None:
    """Raise unless all ``tensors`` (given by name) share one dtype and one device.

    Raises:
        TypeError: ``"queries, keys and values must share one dtype; got <dtypes in order>"``.
        ValueError: the same for devices.
    """
    names = list(tensors)
    listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
    for attribute, error in (("dtype", TypeError), ("device", ValueError)):
        seen = [getattr(t, attribute) for t in tensors.values()]
        if len(set(seen)) > 1:
            what = "one dtype" if attribute == "dtype" else "be on one device"
            verb = "must share" if attribute == "dtype" else "must"
            raise error(f"{listed} {verb} {what}; got {', '.join(str(s) for s in seen)}")


def check_count(name: str, value, minimum: int = 1) -> None:
    """Raise ValueError unless ``value`` is an int (not a bool) ``>= minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")


def check_probability(name: str, value) -> None:
    """Raise ValueError unless ``value`` is a number in [0, 1) (a dropout rate)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1); got {value!r}")


def check_positive(name: str, value):
    """Return ``value`` as a float, or as a 0-d tensor (gradients flow), if finite and > 0.

    Accepts an int or float, or a one-element floating-point tensor.

    Raises:
        TypeError: for another type (a string, None, a bool, an integer tensor).
        ValueError: for a tensor of several elements, or a value that is not finite and > 0.
    """
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar; got a tensor of shape "
                             f"{tuple(value.shape)}")
        number, value = value.item(), value.reshape(())
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = value = float(value)
    else:
        kind = value.dtype if isinstance(value, torch.Tensor) else repr(value)
        raise TypeError(f"{name} must be a finite number > 0 (a float or a scalar float "
                        f"tensor); got {kind}")
    if not 0 < number < math.inf:
        raise ValueError(f"{name} must be a finite number > 0; got {number!r}")
    return value
