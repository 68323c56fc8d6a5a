"""Exercises of chapter 05, "Positional encoding": the table, its shift matrix, and RoPE.

* ``ch05-sinusoidal``: the sinusoidal table, sine on even dimensions and cosine on odd ones;
* ``ch05-shift-matrix``: the matrix M(phi) with P[t + phi] = M(phi) P[t] for every t;
* ``ch05-rope``: rotary position embedding of a (L, D) sequence at positions 0, ..., L - 1.
"""

from __future__ import annotations

import torch

from qkv.exercises import Exercise, register
from qkv.positional import RotaryEmbedding, frequencies, shift_matrix, sinusoidal_encoding

_BASES = (10.0, 100.0, 10000.0)


def _even(generator: torch.Generator, low: int, high: int) -> int:
    """An even int in [2 * low, 2 * high)."""
    return 2 * int(torch.randint(low, high, (), generator=generator))


def _base(generator: torch.Generator) -> float:
    return _BASES[int(torch.randint(0, len(_BASES), (), generator=generator))]


# ------------------------------------------------------------------------ ch05-sinusoidal

def _sinusoidal_inputs(generator: torch.Generator) -> dict:
    return dict(max_len=int(torch.randint(2, 40, (), generator=generator)),
                d_model=_even(generator, 1, 9), base=_base(generator))


def _sinusoidal_reference(max_len, d_model, base):
    return sinusoidal_encoding(max_len, d_model, base, dtype=torch.float64)


def _sinusoidal_wrong_swapped(max_len, d_model, base):
    """The slip of a well-known snippet: cosine on the even dimensions, sine on the odd ones."""
    angles = torch.arange(max_len, dtype=torch.float64)[:, None] * frequencies(d_model, base)
    table = torch.empty(max_len, d_model, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = torch.cos(angles), torch.sin(angles)
    return table


register(Exercise(
    label="ch05-sinusoidal",
    task=("given max_len, an even d_model and base, return the (max_len, d_model) float64 table "
          "P[t, 2k] = sin(t * w_k), P[t, 2k+1] = cos(t * w_k) with w_k = base ** (-2k / d_model)."),
    reference=_sinusoidal_reference,
    make_inputs=_sinusoidal_inputs,
    wrong=_sinusoidal_wrong_swapped,
    forbidden=("qkv.positional",),
))


# ----------------------------------------------------------------------- ch05-shift-matrix

def _shift_inputs(generator: torch.Generator) -> dict:
    return dict(phi=float(torch.randint(-20, 40, (), generator=generator)),
                d_model=_even(generator, 1, 7), base=_base(generator))


def _shift_reference(phi, d_model, base):
    return shift_matrix(phi, d_model, base)


def _shift_wrong_direction(phi, d_model, base):
    """Each block rotates the wrong way: it maps position t + phi back to t."""
    return shift_matrix(phi, d_model, base).T


register(Exercise(
    label="ch05-shift-matrix",
    task=("given phi, an even d_model and base, return the (d_model, d_model) float64 matrix M "
          "with sinusoidal P[t + phi] = M @ P[t] for every t: block diagonal, the block of "
          "frequency w is [[cos(phi w), sin(phi w)], [-sin(phi w), cos(phi w)]]."),
    reference=_shift_reference,
    make_inputs=_shift_inputs,
    wrong=_shift_wrong_direction,
    forbidden=("qkv.positional",),
))


# -------------------------------------------------------------------------------- ch05-rope

def _rope_inputs(generator: torch.Generator) -> dict:
    length, dim = int(torch.randint(1, 12, (), generator=generator)), _even(generator, 1, 6)
    return dict(x=torch.randn(length, dim, generator=generator, dtype=torch.float64),
                base=_base(generator))


def _rope_reference(x, base):
    return RotaryEmbedding(x.shape[-1], base)(x)


def _rope_wrong_from_one(x, base):
    """An off-by-one: positions counted from 1, so the first vector is rotated too."""
    return RotaryEmbedding(x.shape[-1], base)(x, offset=1)


register(Exercise(
    label="ch05-rope",
    task=("given x (L, D) float64 with D even and base, rotate the pair of features (2k, 2k+1) "
          "of row m by the angle m * w_k, w_k = base ** (-2k / D), for m = 0, ..., L - 1: "
          "(x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos)."),
    reference=_rope_reference,
    make_inputs=_rope_inputs,
    wrong=_rope_wrong_from_one,
    forbidden=("qkv.positional",),
    gradients=True,
))
