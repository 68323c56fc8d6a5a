"""Multi-head attention (chapter 4), with a readable path and a fast path.

``H`` heads attend in parallel, each in its own ``d_model / H``-dimensional subspace:
project the queries, keys and values, split the features into heads, attend in every head,
concatenate the heads and project back (Vaswani et al., 2017).

* :class:`MultiHeadAttention` with ``need_weights=True`` runs the readable path
  (:func:`qkv.attention.scaled_dot_product_attention`) and returns every head's weights;
  with ``need_weights=False`` it runs :func:`fused_attention`, i.e. PyTorch's
  ``scaled_dot_product_attention``, which on a GPU uses kernels that never store the
  (L_q, L_k) weight matrix.
* Positions enter through one hook, :meth:`MultiHeadAttention.place`: a ``position`` object
  may rotate the split queries and keys (RoPE) and/or add a bias to the scores (ALiBi, T5);
  chapter 5 (:mod:`qkv.positional`) fills it. Without one, attention ignores positions.
* :meth:`MultiHeadAttention.from_torch` copies the weights of a ``torch.nn.MultiheadAttention``
  and :func:`mask_from_torch` converts its masks, so that both compute the same function.

Masks follow the package's convention, True = may attend. **PyTorch's**
``nn.MultiheadAttention`` **uses the opposite one** for its boolean ``attn_mask`` and
``key_padding_mask`` (True = may *not* attend): convert with :func:`mask_from_torch`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from qkv.attention import (
    _require_count,
    _require_float,
    _require_probability,
    check_dot_product_inputs,
    check_mask,
    scaled_dot_product_attention,
)


def fused_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    score_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention through ``torch.nn.functional.scaled_dot_product_attention``.

    Same result as :func:`qkv.attention.scaled_dot_product_attention` without the weights,
    including the package's rule for queries whose keys are all masked: zero output. What
    PyTorch returns for such rows depends on the release and the code path (NaN on some, zeros
    on others, for the function and for ``nn.MultiheadAttention`` alike; chapter 3 prints what
    the installed version does), so here they attend to every key inside the
    kernel, which then never sees an empty row in the forward or backward pass, and their
    output is set to zero afterwards. A score bias goes to the kernel as a float
    ``attn_mask``, with ``-inf`` at the masked keys (the mask and the bias in one tensor).

    Args:
        q: queries (..., L_q, D), e.g. (B, H, L_q, D); k: keys (..., L_k, D); v: values
            (..., L_k, D_v); one floating dtype.
        mask: optional boolean mask broadcastable to (..., L_q, L_k); True = may attend.
        dropout_p: dropout on the weights, applied whenever > 0.
        score_bias: optional float tensor of q's dtype, broadcastable to (..., L_q, L_k),
            added to the scores before the softmax.

    Returns:
        (..., L_q, D_v), the dtype of ``q``.
    """
    check_dot_product_inputs(q, k, v, mask, score_bias)
    _require_probability("dropout_p", dropout_p)
    return _fused(q, k, v, mask, dropout_p, score_bias)


def _fused(q, k, v, mask, dropout_p, score_bias=None):
    """:func:`fused_attention` without the input checks (the module has done them)."""
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=score_bias, dropout_p=dropout_p)
    has_key = mask.any(dim=-1, keepdim=True)  # (..., L_q, 1)
    allowed = mask | ~has_key  # rows without a key attend to all of them; zeroed below
    if score_bias is not None:  # one float mask: the bias where allowed, -inf elsewhere
        allowed = torch.where(allowed, score_bias, score_bias.new_tensor(float("-inf")))
    output = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)
    return output.masked_fill(~has_key, 0.0)


def mask_from_torch(
    attn_mask: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    num_heads: int | None = None,
) -> torch.Tensor | None:
    """Convert ``torch.nn.MultiheadAttention``'s boolean masks to this package's convention.

    PyTorch's module marks with True the positions a query may **not** attend to; here True
    means **may** attend. Both masks are inverted and combined.

    Args:
        attn_mask: optional boolean (L_q, L_k), or (B * H, L_q, L_k) with ``num_heads`` given.
        key_padding_mask: optional boolean (B, L_k); True marks padding.
        num_heads: H, needed only for a 3-D ``attn_mask``.

    Returns:
        A boolean mask broadcastable to (B, H, L_q, L_k): (L_q, L_k), (B, 1, 1, L_k) or
        (B, H, L_q, L_k); or None when both masks are None.
    """
    allowed = []
    if attn_mask is not None:
        if not isinstance(attn_mask, torch.Tensor) or attn_mask.dtype != torch.bool:
            raise TypeError("attn_mask must be a boolean tensor (a float mask is added to the "
                            "scores and has no boolean equivalent)")
        if attn_mask.dim() == 3:
            _require_count("num_heads (needed for a 3-D attn_mask)", num_heads)
            if attn_mask.shape[0] % num_heads:
                raise ValueError(f"a 3-D attn_mask must have shape (B * H, L_q, L_k) with "
                                 f"H = {num_heads}; got {tuple(attn_mask.shape)}")
            attn_mask = attn_mask.reshape(-1, num_heads, *attn_mask.shape[1:])
        elif attn_mask.dim() != 2:
            raise ValueError(f"attn_mask must have shape (L_q, L_k) or (B * H, L_q, L_k); got "
                             f"{tuple(attn_mask.shape)}")
        allowed.append(~attn_mask)
    if key_padding_mask is not None:
        if not isinstance(key_padding_mask, torch.Tensor) or key_padding_mask.dtype != torch.bool:
            raise TypeError("key_padding_mask must be a boolean tensor (True = padding)")
        if key_padding_mask.dim() != 2:
            raise ValueError(f"key_padding_mask must have shape (B, L_k); got "
                             f"{tuple(key_padding_mask.shape)}")
        allowed.append(~key_padding_mask[:, None, None, :])
    if not allowed:
        return None
    return allowed[0] if len(allowed) == 1 else allowed[0] & allowed[1]


def _checked_position(position, num_heads: int, head_dim: int):
    """Return ``position`` after checking that it fits the hook of :class:`MultiHeadAttention`."""
    if position is None:
        return None
    methods = [name for name in ("rotate", "score_bias") if callable(getattr(position, name, None))]
    if not methods:
        raise TypeError(f"position must have a method rotate(q, k, q_offset, k_offset) and/or "
                        f"score_bias(num_queries, num_keys, q_offset, k_offset); got "
                        f"{type(position).__name__}")
    for name, size in (("head_dim", head_dim), ("num_heads", num_heads)):
        wanted = getattr(position, name, size)
        if wanted != size:
            raise ValueError(f"position works on {name}={wanted}, but the attention has "
                             f"{name}={size}")
    return position


class MultiHeadAttention(nn.Module):
    """Multi-head attention, batch first.

    Args:
        d_model: size of a query and of the output; a multiple of ``num_heads``.
        num_heads: H; each head works in d_model / H dimensions.
        dropout: dropout on the attention weights, in training only.
        bias: whether the four projections have biases.
        kdim: size of a key (default ``d_model``).
        vdim: size of a value (default ``d_model``).
        position: optional position scheme used by the hook :meth:`place` (chapter 5), e.g.
            ``qkv.positional.RotaryEmbedding(d_model // num_heads)``, ``ALiBi(num_heads)`` or
            ``T5RelativeBias(num_heads)``. It needs one or both of these methods:
            ``rotate(q, k, q_offset, k_offset) -> (q, k)``, which changes the split queries
            (B, H, L_q, D_h) and keys (B, H, L_k, D_h), and
            ``score_bias(num_queries, num_keys, q_offset, k_offset) -> (H, L_q, L_k)``, a float
            tensor added to the scores before the softmax. Attributes ``head_dim`` or
            ``num_heads``, if it has them, must match the layer's.

    ``forward(query (B, L_q, d_model), key (B, L_k, kdim), value (B, L_k, vdim), mask=None,
    need_weights=False, *, q_offset=0, k_offset=0)`` returns ``(output (B, L_q, d_model),
    weights)``, where ``weights`` is None or, with ``need_weights=True``, the per-head weights (B, H, L_q, L_k) before
    dropout. ``mask`` is boolean, True = may attend, of shape (L_q, L_k), (B, L_q, L_k) (a head
    axis is added) or (B, H, L_q, L_k), where any size may be 1 to broadcast (for instance
    ``qkv.attention.padding_mask`` gives (B, 1, L_k)). A query with no allowed key gets a zero
    attention output, so the module returns the output projection's bias for it (what
    ``nn.MultiheadAttention`` returns depends on the release and the code path: NaN on some).
    ``q_offset`` and ``k_offset`` are the positions of the first query and of the first key,
    passed to ``position`` (for instance when a decoder feeds one new token at a time); they
    are ignored without it.
    """

    def __init__(
        self,
        d_model: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        kdim: int | None = None,
        vdim: int | None = None,
        position: nn.Module | None = None,
    ):
        super().__init__()
        _require_count("d_model", d_model)
        _require_count("num_heads", num_heads)
        if d_model % num_heads:
            raise ValueError(
                f"d_model must be divisible by num_heads; got d_model={d_model}, "
                f"num_heads={num_heads}"
            )
        _require_probability("dropout", dropout)
        self.kdim = d_model if kdim is None else kdim
        self.vdim = d_model if vdim is None else vdim
        _require_count("kdim", self.kdim)
        _require_count("vdim", self.vdim)
        self.d_model, self.num_heads, self.dropout = d_model, num_heads, dropout
        self.head_dim = d_model // num_heads
        self.position = _checked_position(position, num_heads, self.head_dim)
        self.W_q = nn.Linear(d_model, d_model, bias=bias)
        self.W_k = nn.Linear(self.kdim, d_model, bias=bias)
        self.W_v = nn.Linear(self.vdim, d_model, bias=bias)
        self.W_o = nn.Linear(d_model, d_model, bias=bias)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, d_model) -> (B, H, L, D_h) with D_h = d_model / H.

        Head h gets the features h * D_h, ..., (h + 1) * D_h - 1 of every position.
        """
        batch, length, _ = x.shape
        return x.reshape(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, L, D_h) -> (B, L, H * D_h): concatenate the heads' features (inverse of split)."""
        batch, heads, length, head_dim = x.shape
        return x.transpose(1, 2).reshape(batch, length, heads * head_dim)

    def forward(self, query, key, value, mask=None, need_weights=False, *, q_offset=0,
                k_offset=0):
        self._check_inputs(query, key, value, q_offset, k_offset)
        mask = self._head_mask(mask, query.shape[0], query.shape[1], key.shape[1])
        q = self.split_heads(self.W_q(query))  # (B, H, L_q, D_h)
        k = self.split_heads(self.W_k(key))  # (B, H, L_k, D_h)
        v = self.split_heads(self.W_v(value))  # (B, H, L_k, D_h)
        q, k, score_bias = self.place(q, k, q_offset, k_offset)  # positions: chapter 5
        return self.attend_heads(q, k, v, mask, need_weights, score_bias)

    def place(self, q, k, q_offset=0, k_offset=0):
        """The position hook: let ``self.position`` rotate q and k and/or bias the scores.

        Args:
            q: (B, H, L_q, D_h) queries at positions q_offset, ..., q_offset + L_q - 1.
            k: (B, H, L_k, D_h) keys at positions k_offset, ..., k_offset + L_k - 1.

        Returns:
            ``(q, k, score_bias)``: q and k (rotated if the scheme rotates) and the bias
            (H, L_q, L_k) in q's dtype, or None. Without a scheme: q, k and None.
        """
        position, score_bias = self.position, None
        if callable(getattr(position, "rotate", None)):
            q, k = position.rotate(q, k, q_offset, k_offset)
        if callable(getattr(position, "score_bias", None)):
            score_bias = position.score_bias(q.shape[-2], k.shape[-2], q_offset, k_offset)
            score_bias = score_bias.to(device=q.device, dtype=q.dtype)
        return q, k, score_bias

    def attend_heads(self, q, k, v, mask=None, need_weights=False, score_bias=None):
        """Attend with queries, keys and values already split into heads, then merge and project.

        Args:
            q: (B, H, L_q, D_h); k, v: (B, H, L_k, D_h), already projected (and placed).
            mask: None or boolean, broadcastable to (B, H, L_q, L_k); True = may attend.
            need_weights: the readable path with weights (True) or the fused path (False).
            score_bias: None or a float tensor of q's dtype broadcastable to (B, H, L_q, L_k),
                added to the scores (from :meth:`place`).

        Returns:
            ``(output (B, L_q, d_model), weights (B, H, L_q, L_k) or None)``.
        """
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            heads, weights = scaled_dot_product_attention(q, k, v, mask, dropout_p, score_bias)
        else:
            heads, weights = _fused(q, k, v, mask, dropout_p, score_bias), None
        return self.W_o(self.merge_heads(heads)), weights

    def _check_inputs(self, query, key, value, q_offset=0, k_offset=0) -> None:
        _require_count("q_offset", q_offset, minimum=0)
        _require_count("k_offset", k_offset, minimum=0)
        expected = (("query", query, self.d_model), ("key", key, self.kdim),
                    ("value", value, self.vdim))
        for name, tensor, size in expected:
            _require_float(name, tensor)
            if tensor.dim() != 3 or tensor.shape[-1] != size:
                raise ValueError(
                    f"{name} must have shape (B, L, {size}); got {tuple(tensor.shape)}"
                )
        if not query.shape[0] == key.shape[0] == value.shape[0] or key.shape[1] != value.shape[1]:
            raise ValueError(
                f"query, key and value must share B, and key and value L_k; got query "
                f"{tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
            )

    def _head_mask(self, mask, batch, num_queries, num_keys):
        """Check a (L_q, L_k), (B, L_q, L_k) or (B, H, L_q, L_k) mask; return it 2-D or 4-D."""
        if mask is None:
            return None
        targets = {
            2: (num_queries, num_keys),
            3: (batch, num_queries, num_keys),
            4: (batch, self.num_heads, num_queries, num_keys),
        }
        if not isinstance(mask, torch.Tensor) or mask.dim() not in targets:
            shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(
                f"mask must have shape (L_q, L_k), (B, L_q, L_k) or (B, H, L_q, L_k) (sizes of 1 "
                f"broadcast); got {shape}"
            )
        check_mask(mask, targets[mask.dim()])
        return mask.unsqueeze(1) if mask.dim() == 3 else mask

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> MultiHeadAttention:
        """Build a :class:`MultiHeadAttention` that computes what ``module`` computes.

        Copies the input projections (the packed ``in_proj_weight`` or the separate
        ``q/k/v_proj_weight`` when kdim or vdim differ from embed_dim), their biases and the
        output projection; dtype, device, dropout and training mode follow ``module``. The
        result is batch first whatever ``module.batch_first`` is, and its masks mean the
        opposite of ``module``'s boolean masks (see :func:`mask_from_torch`).

        Raises:
            TypeError: if ``module`` is not a ``torch.nn.MultiheadAttention``.
            ValueError: if it uses ``add_bias_kv`` or ``add_zero_attn``, which have no
                counterpart here.
        """
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(f"module must be a torch.nn.MultiheadAttention; got {type(module)}")
        if module.bias_k is not None or module.add_zero_attn:
            raise ValueError("module uses add_bias_kv or add_zero_attn, which MultiHeadAttention "
                             "does not support")
        has_bias = module.in_proj_bias is not None
        reference = module.out_proj.weight
        ours = cls(module.embed_dim, module.num_heads, dropout=module.dropout, bias=has_bias,
                   kdim=module.kdim, vdim=module.vdim)
        ours.to(device=reference.device, dtype=reference.dtype).train(module.training)
        if module.in_proj_weight is not None:
            weights = module.in_proj_weight.chunk(3)
        else:
            weights = (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight)
        biases = module.in_proj_bias.chunk(3) if has_bias else (None, None, None)
        pairs = [(ours.W_o, module.out_proj.weight, module.out_proj.bias)]
        pairs += zip((ours.W_q, ours.W_k, ours.W_v), weights, biases)
        with torch.no_grad():
            for layer, weight, bias in pairs:
                layer.weight.copy_(weight)
                if bias is not None:
                    layer.bias.copy_(bias)
        return ours
