"""The Transformer's building blocks and its encoder-decoder stack (chapter 6).

Vaswani et al. (2017) build both halves of the model from three pieces, each wrapped in a
residual connection with layer normalisation:

* multi-head self-attention (:class:`qkv.multihead.MultiHeadAttention`);
* in the decoder only, cross-attention: the decoder's queries against the encoder's output;
* a position-wise feed-forward network (:class:`PositionWiseFFN`).

Where the normalisation sits is a choice (:class:`ResidualNorm`): the paper normalises the sum
``x + sublayer(x)`` (post-LN); most later models normalise what enters the sublayer and leave
the residual path untouched (pre-LN, Xiong et al., 2020), which trains stably without a long
warm-up. Both are here, chosen by ``norm_first`` as in ``torch.nn.Transformer``.

:class:`Transformer` is the encoder-decoder stack without embeddings; its
:meth:`Transformer.from_torch` copies a ``torch.nn.Transformer`` so that both compute the same
function. The full translation model, with embeddings and decoding, lives in
:mod:`qkv.seq2seq` and :mod:`qkv.decoding`.

Masks follow the package's convention: boolean, True = may attend, broadcastable to
(B, H, L_q, L_k). **``torch.nn.Transformer`` reads its boolean masks the other way round**
(True = may NOT attend); :func:`qkv.multihead.mask_from_torch` converts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from qkv.attention import (
    _require_count,
    _require_float,
    _require_probability,
    causal_mask,
)
from qkv.multihead import MultiHeadAttention
from qkv.normalization import LayerNorm, RMSNorm  # noqa: F401  (re-exported: chapter 6 teaches them)


def _require_features(name: str, x: torch.Tensor, d_model: int, rank: int = 3) -> None:
    """Raise unless ``x`` is a float tensor of the given rank whose last size is ``d_model``."""
    _require_float(name, x)
    if x.dim() != rank or x.shape[-1] != d_model:
        expected = "(B, L, d_model)" if rank == 3 else f"rank {rank} with last size d_model"
        raise ValueError(f"{name} must have shape {expected} with d_model={d_model}; got "
                         f"{tuple(x.shape)}")


class PositionWiseFFN(nn.Module):
    """Two linear maps with a ReLU between them, applied to every position on its own.

    ``FFN(x) = W_2 dropout(relu(W_1 x + b_1)) + b_2``, widening d_model to d_ff and back (the
    paper uses d_ff = 4 d_model). Positions never mix here: attention does that.

    Args:
        d_model: size of the input and output features.
        d_ff: size of the hidden layer.
        dropout: dropout on the hidden activations, in training only.

    ``forward(x (..., d_model) float) -> (..., d_model)``, same dtype.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        _require_count("d_model", d_model)
        _require_count("d_ff", d_ff)
        _require_probability("dropout", dropout)
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _require_float("x", x)
        if x.dim() < 1 or x.shape[-1] != self.linear1.in_features:
            raise ValueError(f"x must have shape (..., d_model) with d_model="
                             f"{self.linear1.in_features}; got {tuple(x.shape)}")
        return self.linear2(self.dropout(F.relu(self.linear1(x))))


class ResidualNorm(nn.Module):
    """A residual connection with layer normalisation, before or after the sublayer.

    A block calls :meth:`before` on its input to get what the sublayer sees, runs the
    sublayer, and calls :meth:`after` with the input and the sublayer's output:

    * post-LN (``norm_first=False``, the paper): the sublayer sees ``x``; the result is
      ``LayerNorm(x + dropout(sublayer(x)))``;
    * pre-LN (``norm_first=True``): the sublayer sees ``LayerNorm(x)``; the result is
      ``x + dropout(sublayer(LayerNorm(x)))``, so the residual path is the identity from the
      first block to the last.

    Args:
        d_model: size of the features normalised.
        dropout: dropout on the sublayer's output before the sum, in training only.
        norm_first: pre-LN if True, post-LN if False.
        eps: LayerNorm's epsilon (1e-5 as in PyTorch).
    """

    def __init__(self, d_model: int, dropout: float = 0.0, norm_first: bool = False,
                 eps: float = 1e-5):
        super().__init__()
        _require_probability("dropout", dropout)
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = bool(norm_first)

    def before(self, x: torch.Tensor) -> torch.Tensor:
        """What the sublayer sees: ``LayerNorm(x)`` in pre-LN, ``x`` itself in post-LN."""
        return self.norm(x) if self.norm_first else x

    def after(self, x: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
        """Add the sublayer's ``update`` to ``x`` (and normalise the sum in post-LN)."""
        total = x + self.dropout(update)
        return total if self.norm_first else self.norm(total)


class EncoderBlock(nn.Module):
    """Self-attention, then a feed-forward network, each inside a :class:`ResidualNorm`.

    Args:
        d_model: size of the features; a multiple of ``num_heads``.
        num_heads: H, the number of attention heads.
        d_ff: hidden size of the feed-forward network.
        dropout: dropout on attention weights, sublayer outputs and FFN activations.
        norm_first: pre-LN if True, post-LN (the paper's) if False.
        position: optional position scheme for the attention's hook (see
            :class:`qkv.multihead.MultiHeadAttention`), e.g. ``qkv.positional.RotaryEmbedding``,
            ``ALiBi`` or ``T5RelativeBias``.

    ``forward(x (B, L, d_model), mask=None, need_weights=False)`` returns (B, L, d_model), or
    with ``need_weights=True`` a pair ``(output, weights (B, H, L, L))``. ``mask`` is boolean,
    True = may attend, broadcastable to (B, H, L, L); for a padded batch use
    :func:`key_mask` of the valid positions.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.0,
                 norm_first: bool = False, position: nn.Module | None = None):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout, position=position)
        self.ffn = PositionWiseFFN(d_model, d_ff, dropout)
        self.res_attn = ResidualNorm(d_model, dropout, norm_first)
        self.res_ffn = ResidualNorm(d_model, dropout, norm_first)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                need_weights: bool = False):
        _require_features("x", x, self.self_attn.d_model)
        h = self.res_attn.before(x)
        attended, weights = self.self_attn(h, h, h, mask=mask, need_weights=need_weights)
        x = self.res_attn.after(x, attended)
        x = self.res_ffn.after(x, self.ffn(self.res_ffn.before(x)))
        return (x, weights) if need_weights else x


def _final_norm(d_model: int, wanted: bool | None, norm_first: bool) -> nn.Module:
    """The LayerNorm after a stack: by default only with pre-LN, whose blocks end unnormalised."""
    wanted = norm_first if wanted is None else wanted
    return nn.LayerNorm(d_model) if wanted else nn.Identity()


class TransformerEncoder(nn.Module):
    """A stack of ``num_layers`` :class:`EncoderBlock` s.

    With pre-LN the blocks' outputs are never normalised, so a final LayerNorm follows the
    stack (``final_norm=None`` means: exactly when ``norm_first``; ``torch.nn.Transformer``
    always adds one, and :meth:`Transformer.from_torch` asks for it).

    Args:
        num_layers: number of blocks.
        d_model, num_heads, d_ff, dropout, norm_first, position: as in :class:`EncoderBlock`
            (the same ``position`` object serves every block; a learned one is shared).
        final_norm: whether a LayerNorm follows the last block (default: ``norm_first``).

    ``forward(x (B, L, d_model), mask=None, need_weights=False)`` returns (B, L, d_model), or
    with ``need_weights=True`` a pair ``(output, [weights (B, H, L, L) for each layer])``.
    """

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int,
                 dropout: float = 0.0, norm_first: bool = False,
                 position: nn.Module | None = None, final_norm: bool | None = None):
        super().__init__()
        _require_count("num_layers", num_layers)
        self.layers = nn.ModuleList(
            EncoderBlock(d_model, num_heads, d_ff, dropout, norm_first, position)
            for _ in range(num_layers)
        )
        self.norm = _final_norm(d_model, final_norm, norm_first)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                need_weights: bool = False):
        all_weights = []
        for layer in self.layers:
            if need_weights:
                x, weights = layer(x, mask, need_weights=True)
                all_weights.append(weights)
            else:
                x = layer(x, mask)
        x = self.norm(x)
        return (x, all_weights) if need_weights else x


def key_mask(valid: torch.Tensor) -> torch.Tensor:
    """Attention mask from the valid (non-padding) key positions.

    Args:
        valid: boolean (B, L_k), True at real tokens, False at padding.

    Returns:
        Boolean (B, 1, 1, L_k), True = may attend; broadcasts to (B, H, L_q, L_k).
    """
    if not isinstance(valid, torch.Tensor) or valid.dtype != torch.bool or valid.dim() != 2:
        shape = tuple(valid.shape) if isinstance(valid, torch.Tensor) else type(valid).__name__
        kind = valid.dtype if isinstance(valid, torch.Tensor) else ""
        raise ValueError(f"valid must be a boolean tensor (B, L_k); got {shape} {kind}")
    return valid[:, None, None, :]


@dataclass
class LayerCache:
    """What one decoder block keeps between decoding steps (tensors (B, H, t, D_h)).

    ``keys``/``values``: the self-attention keys and values of the t target positions seen so
    far, so a new token projects only itself. They are views into buffers with room for more
    positions (the room doubles when it runs out), so a step writes only its own keys and
    values instead of copying all earlier ones. ``memory_keys``/``memory_values``: the
    cross-attention keys and values of the encoder output, computed at the first step and
    reused at every later one.
    """

    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None
    memory_keys: torch.Tensor | None = None
    memory_values: torch.Tensor | None = None
    _buffers: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)

    def append(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Add the keys and values (B, H, n, D_h) of n new positions after the cached ones."""
        old = 0 if self.keys is None else self.keys.shape[2]
        total = old + keys.shape[2]
        if self._buffers is None or total > self._buffers[0].shape[2]:
            capacity = max(2 * total, 16)
            grown = []
            for new, cached in ((keys, self.keys), (values, self.values)):
                buffer = new.new_empty(*new.shape[:2], capacity, new.shape[3])
                if cached is not None:
                    buffer[:, :, :old] = cached
                grown.append(buffer)
            self._buffers = tuple(grown)
        key_buffer, value_buffer = self._buffers
        key_buffer[:, :, old:total] = keys
        value_buffer[:, :, old:total] = values
        self.keys, self.values = key_buffer[:, :, :total], value_buffer[:, :, :total]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` (B',) in that order (beam search reorders beams)."""
        if self._buffers is not None:
            length = self.keys.shape[2]
            self._buffers = tuple(buffer.index_select(0, index) for buffer in self._buffers)
            self.keys, self.values = (buffer[:, :, :length] for buffer in self._buffers)
        for name in ("memory_keys", "memory_values"):
            tensor = getattr(self, name)
            if tensor is not None:
                setattr(self, name, tensor.index_select(0, index))


@dataclass
class KVCache:
    """The key/value cache of a decoder stack: one :class:`LayerCache` per block.

    Create it with :meth:`Transformer.new_cache` (or :meth:`TransformerDecoder.new_cache`) and
    pass it to every decoding step; ``length`` is the number of target positions cached.
    """

    layers: list[LayerCache] = field(default_factory=list)

    @property
    def length(self) -> int:
        first = self.layers[0].keys if self.layers else None
        return 0 if first is None else first.shape[-2]

    def reorder(self, index: torch.Tensor) -> None:
        """Keep the batch rows ``index`` (B',) of every layer's tensors, in that order."""
        for layer in self.layers:
            layer.reorder(index)


def _attend(mha: MultiHeadAttention, query, keys, values, mask, need_weights):
    """Attention of ``query`` (B, L_q, d) against keys/values already split (B, H, L_k, D_h)."""
    return mha.attend_heads(mha.split_heads(mha.W_q(query)), keys, values, mask, need_weights)


def _keys_values(mha: MultiHeadAttention, x):
    """Project ``x`` (B, L, d) to keys and values split into heads, (B, H, L, D_h) each."""
    return mha.split_heads(mha.W_k(x)), mha.split_heads(mha.W_v(x))


class DecoderBlock(nn.Module):
    """Masked self-attention, cross-attention to the encoder output, then a feed-forward network.

    Each sublayer sits inside a :class:`ResidualNorm`. The decoder's queries ask the encoder's
    output (``memory``) for keys and values in the cross-attention: this is where the source
    sentence enters the translation.

    Args: as in :class:`EncoderBlock` (no position scheme here).

    ``forward(x (B, T, d_model), memory (B, S, d_model), tgt_mask=None, memory_mask=None,
    cache=None, need_weights=False)`` returns (B, T, d_model), or with ``need_weights=True``
    ``(output, (self_weights (B, H, T, T_all), cross_weights (B, H, T, S)))``. ``tgt_mask``
    (broadcastable to (B, H, T, T), e.g. :func:`qkv.attention.causal_mask`) must keep queries
    from seeing later positions; ``memory_mask`` (broadcastable to (B, H, T, S)) hides source
    padding. With a :class:`LayerCache`, ``x`` holds only the NEW positions: their keys and
    values are appended to the cache, they attend to every cached position and causally among
    themselves, and ``tgt_mask`` must be None.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, dropout: float = 0.0,
                 norm_first: bool = False):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.ffn = PositionWiseFFN(d_model, d_ff, dropout)
        self.res_self = ResidualNorm(d_model, dropout, norm_first)
        self.res_cross = ResidualNorm(d_model, dropout, norm_first)
        self.res_ffn = ResidualNorm(d_model, dropout, norm_first)

    def forward(self, x, memory, tgt_mask=None, memory_mask=None, cache: LayerCache | None = None,
                need_weights: bool = False):
        d_model = self.self_attn.d_model
        _require_features("x", x, d_model)
        _require_features("memory", memory, d_model)
        if memory.shape[0] != x.shape[0]:
            raise ValueError(f"memory must have x's batch size; got x {tuple(x.shape)}, memory "
                             f"{tuple(memory.shape)}")
        h = self.res_self.before(x)
        if cache is None:
            attended, self_w = self.self_attn(h, h, h, mask=tgt_mask, need_weights=need_weights)
        else:
            attended, self_w = self._cached_self_attention(h, tgt_mask, cache, need_weights)
        x = self.res_self.after(x, attended)
        h = self.res_cross.before(x)
        if cache is None:
            attended, cross_w = self.cross_attn(h, memory, memory, mask=memory_mask,
                                                need_weights=need_weights)
        else:
            if cache.memory_keys is None:
                cache.memory_keys, cache.memory_values = _keys_values(self.cross_attn, memory)
            attended, cross_w = _attend(self.cross_attn, h, cache.memory_keys,
                                        cache.memory_values, memory_mask, need_weights)
        x = self.res_cross.after(x, attended)
        x = self.res_ffn.after(x, self.ffn(self.res_ffn.before(x)))
        return (x, (self_w, cross_w)) if need_weights else x

    def _cached_self_attention(self, h, tgt_mask, cache, need_weights):
        if tgt_mask is not None:
            raise ValueError("tgt_mask must be None with a cache: the new positions attend to "
                             "every cached one and causally among themselves")
        cache.append(*_keys_values(self.self_attn, h))
        num_new, num_all = h.shape[1], cache.keys.shape[2]
        mask = None if num_new == 1 else causal_mask(num_new, num_all, device=h.device)
        return _attend(self.self_attn, h, cache.keys, cache.values, mask, need_weights)


class TransformerDecoder(nn.Module):
    """A stack of ``num_layers`` :class:`DecoderBlock` s (final LayerNorm as in
    :class:`TransformerEncoder`).

    ``forward(x (B, T, d_model), memory (B, S, d_model), tgt_mask=None, memory_mask=None,
    cache=None, need_weights=False)`` returns (B, T, d_model), or with ``need_weights=True``
    ``(output, [(self_weights, cross_weights) for each layer])``; see :class:`DecoderBlock`
    for the masks and the cache (a :class:`KVCache` from :meth:`new_cache`).
    """

    def __init__(self, num_layers: int, d_model: int, num_heads: int, d_ff: int,
                 dropout: float = 0.0, norm_first: bool = False, final_norm: bool | None = None):
        super().__init__()
        _require_count("num_layers", num_layers)
        self.layers = nn.ModuleList(
            DecoderBlock(d_model, num_heads, d_ff, dropout, norm_first) for _ in range(num_layers)
        )
        self.norm = _final_norm(d_model, final_norm, norm_first)

    def new_cache(self) -> KVCache:
        """An empty :class:`KVCache` for this stack."""
        return KVCache([LayerCache() for _ in self.layers])

    def forward(self, x, memory, tgt_mask=None, memory_mask=None, cache: KVCache | None = None,
                need_weights: bool = False):
        if cache is not None and len(cache.layers) != len(self.layers):
            raise ValueError(f"cache has {len(cache.layers)} layers; the decoder has "
                             f"{len(self.layers)} (make it with new_cache())")
        all_weights = []
        for i, layer in enumerate(self.layers):
            layer_cache = None if cache is None else cache.layers[i]
            out = layer(x, memory, tgt_mask, memory_mask, layer_cache, need_weights)
            if need_weights:
                out, weights = out
                all_weights.append(weights)
            x = out
        x = self.norm(x)
        return (x, all_weights) if need_weights else x


class Transformer(nn.Module):
    """The encoder-decoder stack of Vaswani et al. (2017), without embeddings: batch first.

    Mirrors ``torch.nn.Transformer`` (same arguments and defaults, ReLU, LayerNorm eps 1e-5)
    but takes masks in this package's convention (True = may attend) and can cache keys and
    values for decoding.

    Args:
        d_model, num_heads, d_ff, dropout, norm_first: as in :class:`EncoderBlock`.
        num_encoder_layers, num_decoder_layers: depth of each stack.
        final_norm: LayerNorm after each stack (default: exactly when ``norm_first``;
            ``torch.nn.Transformer`` always has one).

    Shapes: ``src`` (B, S, d_model) and ``tgt`` (B, T, d_model), float. Masks: ``src_mask``
    broadcastable to (B, H, S, S), ``tgt_mask`` to (B, H, T, T) (pass
    ``causal_mask(T)``), ``memory_mask`` to (B, H, T, S); for padded sources pass
    ``key_mask(valid)`` as both ``src_mask`` and ``memory_mask``.
    """

    def __init__(self, d_model: int = 512, num_heads: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, d_ff: int = 2048, dropout: float = 0.1,
                 norm_first: bool = False, final_norm: bool | None = None):
        super().__init__()
        self.encoder = TransformerEncoder(num_encoder_layers, d_model, num_heads, d_ff, dropout,
                                          norm_first, final_norm=final_norm)
        self.decoder = TransformerDecoder(num_decoder_layers, d_model, num_heads, d_ff, dropout,
                                          norm_first, final_norm=final_norm)
        self.d_model, self.num_heads, self.norm_first = d_model, num_heads, bool(norm_first)

    def encode(self, src, src_mask=None, need_weights: bool = False):
        """Encoder output ``memory`` (B, S, d_model) (and per-layer weights if asked)."""
        return self.encoder(src, src_mask, need_weights=need_weights)

    def decode(self, tgt, memory, tgt_mask=None, memory_mask=None, cache: KVCache | None = None,
               need_weights: bool = False):
        """Decoder output (B, T, d_model); see :class:`TransformerDecoder`."""
        return self.decoder(tgt, memory, tgt_mask, memory_mask, cache, need_weights)

    def new_cache(self) -> KVCache:
        """An empty key/value cache for :meth:`decode`."""
        return self.decoder.new_cache()

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None):
        """Encode ``src`` (B, S, d_model), decode ``tgt`` (B, T, d_model): (B, T, d_model)."""
        return self.decode(tgt, self.encode(src, src_mask), tgt_mask, memory_mask)

    @classmethod
    def from_torch(cls, module: nn.Transformer) -> Transformer:
        """Build a :class:`Transformer` that computes what ``module`` computes.

        Copies every weight of a ``torch.nn.Transformer`` (either ``norm_first``, ReLU
        activation, biases, LayerNorm eps 1e-5, both final norms); dtype, device, dropout and
        training mode follow ``module``. The result is batch first whatever
        ``module.batch_first`` is, and its boolean masks mean the OPPOSITE of ``module``'s:
        convert them with :func:`qkv.multihead.mask_from_torch`.

        Raises:
            TypeError: if ``module`` is not a ``torch.nn.Transformer`` built from PyTorch's
                own layers.
            ValueError: for settings without a counterpart here (another activation, no
                biases, another eps, a final norm on one stack only).
        """
        if not isinstance(module, nn.Transformer):
            raise TypeError(f"module must be a torch.nn.Transformer; got {type(module)}")
        enc_layers, dec_layers = module.encoder.layers, module.decoder.layers
        for layer, kind in [(x, nn.TransformerEncoderLayer) for x in enc_layers] + \
                           [(x, nn.TransformerDecoderLayer) for x in dec_layers]:
            if not isinstance(layer, kind):
                raise TypeError(f"module must be built from {kind.__name__}; got {type(layer)}")
            _check_torch_layer(layer)
        has_final = {module.encoder.norm is not None, module.decoder.norm is not None}
        if len(has_final) != 1:
            raise ValueError("module has a final LayerNorm on one stack only")
        first = enc_layers[0]
        ours = cls(module.d_model, module.nhead, len(enc_layers), len(dec_layers),
                   first.linear1.out_features, first.dropout.p, first.norm_first,
                   final_norm=has_final.pop())
        reference = first.linear1.weight
        ours.to(device=reference.device, dtype=reference.dtype).train(module.training)
        with torch.no_grad():
            for mine, theirs in zip(ours.encoder.layers, enc_layers):
                _copy_block(mine, theirs, [("self_attn", "self_attn", "res_attn", "norm1")])
            for mine, theirs in zip(ours.decoder.layers, dec_layers):
                _copy_block(mine, theirs, [("self_attn", "self_attn", "res_self", "norm1"),
                                           ("cross_attn", "multihead_attn", "res_cross",
                                            "norm2")])
            for mine, theirs in ((ours.encoder, module.encoder), (ours.decoder, module.decoder)):
                if theirs.norm is not None:
                    mine.norm.load_state_dict(theirs.norm.state_dict())
        return ours


def _check_torch_layer(layer) -> None:
    """Raise for a torch encoder/decoder layer setting :class:`Transformer` cannot copy."""
    if layer.activation is not F.relu and not isinstance(layer.activation, nn.ReLU):
        raise ValueError(f"only the ReLU activation is supported; got {layer.activation}")
    norms = [m for m in layer.modules() if isinstance(m, nn.LayerNorm)]
    if layer.linear1.bias is None or any(n.bias is None for n in norms):
        raise ValueError("module was built with bias=False, which Transformer does not support")
    if any(n.eps != 1e-5 for n in norms):
        raise ValueError(f"LayerNorm eps must be 1e-5; got {[n.eps for n in norms]}")


def _copy_block(mine, theirs, attentions) -> None:
    """Copy one torch layer into an encoder/decoder block (inside ``torch.no_grad()``).

    ``attentions`` lists (our attention, their attention, our ResidualNorm, their norm); the
    feed-forward network and the last norm (norm2 or norm3) are copied in any case.
    """
    for ours_attn, their_attn, ours_res, their_norm in attentions:
        copied = MultiHeadAttention.from_torch(getattr(theirs, their_attn))
        getattr(mine, ours_attn).load_state_dict(copied.state_dict())
        getattr(mine, ours_res).norm.load_state_dict(getattr(theirs, their_norm).state_dict())
    mine.ffn.linear1.load_state_dict(theirs.linear1.state_dict())
    mine.ffn.linear2.load_state_dict(theirs.linear2.state_dict())
    last_norm = theirs.norm3 if hasattr(theirs, "norm3") else theirs.norm2
    mine.res_ffn.norm.load_state_dict(last_norm.state_dict())
