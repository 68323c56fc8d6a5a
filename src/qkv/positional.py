"""Position encodings (chapter 5): sinusoidal, learned, rotary, and relative score biases.

Self-attention treats its input as a set: permute the tokens and the outputs are permuted the
same way. To use word order, a Transformer must be told where each token is. Three ways:

* :func:`sinusoidal_encoding` / :class:`SinusoidalPositionalEncoding`: add a fixed table of
  sines and cosines at geometrically spaced frequencies (Vaswani et al., 2017); sine on the even
  dimensions, cosine on the odd ones. Moving every position by ``phi`` is one fixed linear map,
  a rotation in each (sin, cos) pair: :func:`shift_matrix`.
* :class:`LearnedPositionalEncoding`: add a trained vector per position (Gehring et al., 2017).
* :class:`RotaryEmbedding` (RoPE, Su et al., 2021): rotate queries and keys instead of adding
  anything, so that a query-key score depends on the two positions only through their offset.
* Relative score biases, added to the attention scores and depending only on the offset
  ``j - i`` between key j and query i: ALiBi's fixed linear penalty per head
  (:func:`alibi_slopes`, :func:`alibi_bias`, :class:`ALiBi`; Press et al., 2022) and T5's
  learned bias per bucket of offsets (:func:`t5_relative_bucket`, :class:`T5RelativeBias`;
  Raffel et al., 2020).

The last three plug into the position hook of ``qkv.multihead.MultiHeadAttention(...,
position=...)``: RoPE through its ``rotate`` method, the biases through ``score_bias``.

Sequences are batch first: (B, L, d_model) for the additive encodings, (..., L, D_h) for RoPE.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qkv.attention import _require_count, _require_float, _require_probability


def _require_base(base: float) -> None:
    if not isinstance(base, (int, float)) or isinstance(base, bool) or not base > 1:
        raise ValueError(f"base must be a number > 1; got {base!r}")


def frequencies(d_model: int, base: float = 10000.0, dtype=torch.float64, device=None):
    """Angular frequencies ``omega_k = base ** (-2k / d_model)`` for k = 0, ..., ceil(d/2) - 1.

    Dimensions 2k and 2k + 1 of the sinusoidal table share ``omega_k``: from one turn per
    2 pi positions (k = 0) down to about one turn per ``2 pi * base`` positions.

    Returns:
        (ceil(d_model / 2),) tensor of ``dtype``.
    """
    _require_count("d_model", d_model)
    _require_base(base)
    k = torch.arange(0, d_model, 2, dtype=torch.float64, device=device)
    return (float(base) ** (-k / d_model)).to(dtype)


def sinusoidal_encoding(
    max_len: int, d_model: int, base: float = 10000.0, dtype=torch.float32, device=None
) -> torch.Tensor:
    """The sinusoidal position table of Vaswani et al. (2017).

    ``P[t, 2k] = sin(t * omega_k)`` and ``P[t, 2k + 1] = cos(t * omega_k)`` with
    ``omega_k = base ** (-2k / d_model)``: **sine on the even dimensions, cosine on the odd
    ones**. An odd ``d_model`` is allowed: its last dimension is a sine.

    Args:
        max_len: number of positions, t = 0, ..., max_len - 1.
        d_model: number of dimensions.
        base: the wavelength scale (10000 in the paper).

    Returns:
        (max_len, d_model) tensor of ``dtype`` (computed in float64, then cast).
    """
    _require_count("max_len", max_len)
    omega = frequencies(d_model, base, device=device)  # (ceil(d/2),)
    angles = torch.arange(max_len, dtype=torch.float64, device=device)[:, None] * omega
    table = torch.empty(max_len, d_model, dtype=torch.float64, device=device)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : d_model // 2])
    return table.to(dtype)


def shift_matrix(phi: float, d_model: int, base: float = 10000.0, dtype=torch.float64):
    """The (d_model, d_model) matrix M(phi) with ``P[t + phi] = M(phi) @ P[t]`` for every t.

    It is block diagonal; the block of the pair (sin, cos) at frequency ``omega_k`` is the
    rotation ``[[cos(a), sin(a)], [-sin(a), cos(a)]]`` with ``a = phi * omega_k``, by the
    addition formulas ``sin(x + a) = sin x cos a + cos x sin a`` and
    ``cos(x + a) = cos x cos a - sin x sin a``. It does not depend on t: a shift of every
    position is one linear map. (For an odd ``d_model`` the last, unpaired sine has no such
    block, so ``d_model`` must be even.)

    Returns:
        (d_model, d_model) tensor of ``dtype``.
    """
    _require_count("d_model", d_model)
    if d_model % 2:
        raise ValueError(f"d_model must be even (pairs of sin and cos); got {d_model}")
    angle = float(phi) * frequencies(d_model, base)  # (d/2,)
    cos, sin = torch.cos(angle), torch.sin(angle)
    blocks = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)
    return torch.block_diag(*blocks).to(dtype)


class _AdditivePositions(nn.Module):
    """Base of the encodings that add one vector per position to (B, L, d_model) inputs."""

    def __init__(self, d_model: int, max_len: int, dropout: float):
        super().__init__()
        _require_count("d_model", d_model)
        _require_count("max_len", max_len)
        _require_probability("dropout", dropout)
        self.d_model, self.max_len = d_model, max_len
        self.dropout = nn.Dropout(dropout)

    def table(self) -> torch.Tensor:
        """The (max_len, d_model) vectors added at positions 0, ..., max_len - 1."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """Add the vectors of positions offset, ..., offset + L - 1, then apply dropout.

        Args:
            x: (B, L, d_model) floating-point inputs, e.g. token embeddings.
            offset: position of the first token (for decoding one token at a time).

        Returns:
            (B, L, d_model), the dtype of ``x``.
        """
        _require_float("x", x)
        _require_count("offset", offset, minimum=0)
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"x must have shape (B, L, {self.d_model}); got {tuple(x.shape)}")
        end = offset + x.shape[1]
        if end > self.max_len:
            raise ValueError(f"positions up to {end - 1} were asked for (offset={offset}, "
                             f"L={x.shape[1]}), but max_len={self.max_len}")
        return self.dropout(x + self.table()[offset:end].to(x.dtype))


class SinusoidalPositionalEncoding(_AdditivePositions):
    """Add :func:`sinusoidal_encoding` to (B, L, d_model) inputs; nothing is learned.

    Args:
        d_model: size of a token vector.
        dropout: dropout applied to the sum (in training).
        max_len: the longest sequence accepted.
        base: see :func:`sinusoidal_encoding`.
    """

    def __init__(self, d_model: int, dropout: float = 0.0, max_len: int = 1024,
                 base: float = 10000.0):
        super().__init__(d_model, max_len, dropout)
        # A buffer follows .to(device); non-persistent: it is recomputed, not checkpointed.
        self.register_buffer("P", sinusoidal_encoding(max_len, d_model, base), persistent=False)

    def table(self) -> torch.Tensor:
        return self.P


class LearnedPositionalEncoding(_AdditivePositions):
    """Add a trained vector per position (an embedding table indexed by position).

    The vectors start random (normal, std ``init_std``) and are learned with the rest of the
    model; positions beyond ``max_len`` have no vector, so longer inputs are rejected. Start them
    at the scale of the token vectors they are added to: far smaller, and the model begins
    (and may stay a long time) as if it had no positions.

    Args:
        d_model: size of a token vector.
        max_len: number of positions with a vector.
        dropout: dropout applied to the sum (in training).
        init_std: standard deviation of the initial vectors (0.02 as in BERT and GPT-2, whose
            token embeddings start at the same scale; ``nn.Embedding`` starts at 1).
    """

    def __init__(self, d_model: int, max_len: int, dropout: float = 0.0,
                 init_std: float = 0.02):
        super().__init__(d_model, max_len, dropout)
        if not isinstance(init_std, (int, float)) or not init_std > 0:
            raise ValueError(f"init_std must be a positive number; got {init_std!r}")
        self.embedding = nn.Parameter(torch.randn(max_len, d_model) * init_std)

    def table(self) -> torch.Tensor:
        return self.embedding


def rotate_pairs(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each pair of features (2k, 2k + 1) of ``x`` by ``angles[..., k]``.

    ``(x_{2k}, x_{2k+1}) -> (x_{2k} cos a - x_{2k+1} sin a, x_{2k} sin a + x_{2k+1} cos a)``.

    Args:
        x: (..., L, D) floating-point, D even.
        angles: (L, D / 2) angles in radians, broadcast over the leading axes of ``x``.

    Returns:
        (..., L, D), the dtype of ``x``.
    """
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return rotated.flatten(-2)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding, RoPE (Su et al., 2021), for queries and keys.

    The feature pair (2k, 2k + 1) of the vector at position m is rotated by the angle
    ``m * omega_k``, ``omega_k = base ** (-2k / head_dim)`` (the frequencies of the sinusoidal
    table). Rotations preserve lengths, and ``<R(m) q, R(n) k> = <q, R(n - m) k>``: a score
    depends on the positions only through their offset. Position 0 is left unchanged.

    Pairs are adjacent features, as in the paper; some libraries pair feature k with
    k + D/2 instead, which is the same method up to a fixed permutation of the features.

    ``rotary(x, offset=0)``: x (..., L, head_dim), e.g. (B, H, L, D_h), holds positions
    offset, ..., offset + L - 1; returns the rotated x, same shape and dtype.

    Args:
        head_dim: D_h, even.
        base: the wavelength scale (10000 in the paper).
    """

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        _require_count("head_dim", head_dim)
        if head_dim % 2:
            raise ValueError(f"head_dim must be even (features are rotated in pairs); got "
                             f"{head_dim}")
        _require_base(base)
        # No buffer: .to(torch.float16) would round the frequencies; angles are made in float64.
        self.head_dim, self.base = head_dim, float(base)

    def angles(self, length: int, offset: int = 0, device=None) -> torch.Tensor:
        """Angles ``m * omega_k`` (length, head_dim / 2), float64, for positions m = offset, ...,
        offset + length - 1."""
        positions = torch.arange(offset, offset + length, dtype=torch.float64, device=device)
        return positions[:, None] * frequencies(self.head_dim, self.base, device=device)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _require_float("x", x)
        _require_count("offset", offset, minimum=0)
        if x.dim() < 2 or x.shape[-1] != self.head_dim:
            raise ValueError(f"x must have shape (..., L, {self.head_dim}); got "
                             f"{tuple(x.shape)}")
        return rotate_pairs(x, self.angles(x.shape[-2], offset, device=x.device))

    def rotate(self, q: torch.Tensor, k: torch.Tensor, q_offset: int = 0, k_offset: int = 0):
        """The attention hook: queries (..., L_q, D_h) at positions from ``q_offset`` and keys
        (..., L_k, D_h) from ``k_offset``, each rotated by its position."""
        return self(q, offset=q_offset), self(k, offset=k_offset)

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, base={self.base:g}"


def alibi_slopes(num_heads: int) -> torch.Tensor:
    """ALiBi's slope of each head (Press et al., 2022), float32 (num_heads,).

    For H heads, H a power of two, the slopes are the geometric sequence that starts at
    ``2 ** (-8 / H)`` and has that ratio: ``2 ** (-8 / H), 2 ** (-16 / H), ..., 2 ** -8``.
    For other H the paper takes the H' slopes of the largest power of two H' < H and fills
    the remaining H - H' heads with every other slope of the sequence for 2H' (the ones that
    fall between, 2 ** (-4 / H'), 2 ** (-12 / H'), ...).
    """
    _require_count("num_heads", num_heads)

    def power_of_two(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    smaller = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = power_of_two(smaller) + power_of_two(2 * smaller)[0::2][: num_heads - smaller]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(num_heads: int, num_queries: int, num_keys: int, *, q_offset: int = 0,
               k_offset: int = 0, dtype=torch.float32, device=None) -> torch.Tensor:
    """ALiBi's additive score bias, (num_heads, num_queries, num_keys).

    ``bias[h, i, j] = -slope_h * |(j + k_offset) - (i + q_offset)|``: each head penalises a key
    linearly in its distance from the query, more steeply for heads with larger slopes
    (:func:`alibi_slopes`). The bias is symmetric in the offset; in a causal model the keys
    after the query are masked anyway, which leaves the paper's causal form
    ``-slope_h * (i - j)`` for j <= i. ``q_offset`` and ``k_offset`` are the positions of the
    first query and of the first key (when decoding one token at a time, the queries are the
    last positions of the keys' sequence: ``q_offset = num_keys - num_queries``).
    """
    _require_count("num_queries", num_queries)
    _require_count("num_keys", num_keys)
    _require_count("q_offset", q_offset, minimum=0)
    _require_count("k_offset", k_offset, minimum=0)
    queries = torch.arange(q_offset, q_offset + num_queries, device=device)
    keys = torch.arange(k_offset, k_offset + num_keys, device=device)
    distance = (keys[None, :] - queries[:, None]).abs()
    slopes = alibi_slopes(num_heads).to(device=device, dtype=torch.float64)
    return (-slopes[:, None, None] * distance).to(dtype)


def t5_relative_bucket(relative_position: torch.Tensor, bidirectional: bool = True,
                       num_buckets: int = 32, max_distance: int = 128) -> torch.Tensor:
    """T5's bucket of each relative position (Raffel et al., 2020), a long tensor of the same
    shape.

    ``relative_position`` is key index minus query index (an integer tensor). Offsets are put
    into ``num_buckets`` buckets, each with one learned bias per head: small distances get a
    bucket each, larger ones share buckets whose widths grow logarithmically up to
    ``max_distance``, and every distance beyond shares the last bucket. ``bidirectional``
    (the encoder) gives keys before the query the lower half of the buckets and keys after it
    the upper half; otherwise (the decoder) keys after the query all fall into bucket 0 with
    the query itself.

    Within one direction, with n buckets (half of ``num_buckets`` if bidirectional) and
    ``exact = n // 2``: distance r < exact is bucket r; a larger r is bucket
    ``min(n - 1, exact + floor(log(r / exact) / log(max_distance / exact) * (n - exact)))``.
    """
    if not isinstance(relative_position, torch.Tensor) or relative_position.is_floating_point():
        raise TypeError("relative_position must be an integer tensor (key index - query index)")
    per_direction = num_buckets // 2 if bidirectional else num_buckets
    _require_count("num_buckets", num_buckets, minimum=4 if bidirectional else 2)
    exact = per_direction // 2
    _require_count("max_distance", max_distance, minimum=exact + 1)
    if bidirectional:
        offset = (relative_position > 0).long() * per_direction
        distance = relative_position.abs()
    else:
        offset = torch.zeros_like(relative_position, dtype=torch.long)
        distance = (-relative_position).clamp_min(0)
    distance = distance.long()
    # float32 and truncation, in this order, as in the T5 code, so that buckets agree with it
    # at the edges where rounding decides
    far = exact + (torch.log(distance.clamp_min(1).float() / exact)
                   / math.log(max_distance / exact) * (per_direction - exact)).long()
    far = far.clamp_max(per_direction - 1)
    return offset + torch.where(distance < exact, distance, far)


class ALiBi(nn.Module):
    """ALiBi as a position scheme for ``MultiHeadAttention(..., position=ALiBi(num_heads))``.

    Nothing is added to the tokens and nothing is learned: head h adds
    ``-slope_h * |j - i|`` to the score of query i and key j (:func:`alibi_bias`). With a
    causal mask this is the paper's bias (Press et al., 2022); without one, the symmetric form
    that bidirectional variants use. ``score_bias(num_queries, num_keys, q_offset=0,
    k_offset=0)`` returns (num_heads, L_q, L_k), float32.
    """

    def __init__(self, num_heads: int):
        super().__init__()
        _require_count("num_heads", num_heads)
        self.num_heads = num_heads

    def score_bias(self, num_queries: int, num_keys: int, q_offset: int = 0,
                   k_offset: int = 0) -> torch.Tensor:
        return alibi_bias(self.num_heads, num_queries, num_keys, q_offset=q_offset,
                          k_offset=k_offset)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}"


class T5RelativeBias(nn.Module):
    """T5's learned relative bias (Raffel et al., 2020) as a position scheme for
    ``MultiHeadAttention(..., position=T5RelativeBias(num_heads))``.

    Every offset ``j - i`` (key minus query) falls in one of ``num_buckets`` buckets
    (:func:`t5_relative_bucket`), and each bucket has one learned bias per head, an
    ``nn.Embedding(num_buckets, num_heads)`` that starts at zero (no preference for any
    offset). Offsets beyond ``max_distance`` share the last bucket of their direction, so any
    length is accepted, and far keys all get the bias learned for "far". One module can serve
    every layer, as in T5. ``score_bias(num_queries, num_keys, q_offset=0, k_offset=0)``
    returns (num_heads, L_q, L_k) in the table's dtype.

    Args:
        num_heads: H.
        bidirectional: separate buckets for keys before and after the query (an encoder);
            False for a causal decoder, where later keys are masked anyway.
        num_buckets, max_distance: see :func:`t5_relative_bucket` (T5 uses 32 and 128).
    """

    def __init__(self, num_heads: int, bidirectional: bool = True, num_buckets: int = 32,
                 max_distance: int = 128):
        super().__init__()
        _require_count("num_heads", num_heads)
        t5_relative_bucket(torch.zeros(1, dtype=torch.long), bidirectional, num_buckets,
                           max_distance)  # checks num_buckets and max_distance
        self.num_heads, self.bidirectional = num_heads, bool(bidirectional)
        self.num_buckets, self.max_distance = num_buckets, max_distance
        self.bias = nn.Embedding(num_buckets, num_heads)
        nn.init.zeros_(self.bias.weight)

    def score_bias(self, num_queries: int, num_keys: int, q_offset: int = 0,
                   k_offset: int = 0) -> torch.Tensor:
        device = self.bias.weight.device
        queries = torch.arange(q_offset, q_offset + num_queries, device=device)
        keys = torch.arange(k_offset, k_offset + num_keys, device=device)
        buckets = t5_relative_bucket(keys[None, :] - queries[:, None], self.bidirectional,
                                     self.num_buckets, self.max_distance)  # (L_q, L_k)
        return self.bias(buckets).permute(2, 0, 1)  # (H, L_q, L_k)

    def extra_repr(self) -> str:
        return (f"num_heads={self.num_heads}, bidirectional={self.bidirectional}, "
                f"num_buckets={self.num_buckets}, max_distance={self.max_distance}")
