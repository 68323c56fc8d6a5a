"""The translation model: token embeddings, positions, the Transformer stack, output layer (ch. 6).

:class:`Seq2SeqTransformer` turns token ids into next-token logits:

1. source and target tokens are embedded and scaled by ``sqrt(d_model)`` (as in the paper:
   the embeddings start with standard deviation ``d_model ** -0.5``, so the scaled vectors
   have unit size per feature, comparable to the sinusoidal position vectors added next);
2. :class:`qkv.transformer.Transformer` encodes the source and decodes the target, with the
   source padding hidden from every attention and a causal mask in the decoder;
3. a linear layer maps each decoder output to logits over the target vocabulary; with
   ``tie_output`` it reuses the target embedding matrix (Press and Wolf, 2017), and with
   ``share_embeddings`` source and target share one matrix (one joint subword vocabulary).

The initialisation is chosen so that the first loss is close to ``ln(vocabulary size)``: the
model starts out guessing uniformly instead of confidently wrong.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from qkv.attention import _require_count, _require_probability, causal_mask
from qkv.positional import SinusoidalPositionalEncoding
from qkv.transformer import KVCache, Transformer, key_mask


class Seq2SeqTransformer(nn.Module):
    """Encoder-decoder Transformer for translation, from token ids to logits.

    Args:
        src_vocab_size, tgt_vocab_size: vocabulary sizes V_src and V_tgt.
        d_model, num_heads, num_encoder_layers, num_decoder_layers, d_ff, dropout, norm_first:
            as in :class:`qkv.transformer.Transformer` (``dropout`` also follows the
            embeddings plus positions).
        max_len: the longest source or target sequence (positions of the sinusoidal table).
        share_embeddings: one embedding matrix for source and target (needs V_src = V_tgt).
        tie_output: the output layer reuses the target embedding matrix.
        pad_id, bos_id, eos_id: ids of padding, begin-of-sentence (the decoder's first
            input) and end-of-sentence.

    ``forward(src (B, S) int64, tgt (B, T) int64) -> logits (B, T, V_tgt)``: the logits at
    position t predict target token t + 1 from the source and target tokens 0..t.
    ``model.config`` is the dict of these arguments (saved with checkpoints).
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, d_model: int = 256,
                 num_heads: int = 4, num_encoder_layers: int = 3, num_decoder_layers: int = 3,
                 d_ff: int = 1024, dropout: float = 0.1, norm_first: bool = True,
                 max_len: int = 256, share_embeddings: bool = False, tie_output: bool = True,
                 pad_id: int = 0, bos_id: int = 1, eos_id: int = 2):
        super().__init__()
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        _require_count("src_vocab_size", src_vocab_size)
        _require_count("tgt_vocab_size", tgt_vocab_size)
        _require_probability("dropout", dropout)
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError(f"share_embeddings needs one vocabulary; got src_vocab_size="
                             f"{src_vocab_size}, tgt_vocab_size={tgt_vocab_size}")
        for name in ("pad_id", "bos_id", "eos_id"):
            if not 0 <= self.config[name] < tgt_vocab_size:
                raise ValueError(f"{name} must be a target token id in [0, {tgt_vocab_size}); "
                                 f"got {self.config[name]}")
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.d_model, self.max_len = d_model, max_len
        self.src_embed = nn.Embedding(src_vocab_size, d_model)
        self.tgt_embed = self.src_embed if share_embeddings else nn.Embedding(tgt_vocab_size,
                                                                             d_model)
        self.positions = SinusoidalPositionalEncoding(d_model, dropout, max_len)
        self.transformer = Transformer(d_model, num_heads, num_encoder_layers,
                                       num_decoder_layers, d_ff, dropout, norm_first)
        self.output = nn.Linear(d_model, tgt_vocab_size, bias=False)
        self.reset_parameters()
        if tie_output:
            self.output.weight = self.tgt_embed.weight

    def reset_parameters(self) -> None:
        """Xavier-uniform matrices in the stack, zero biases, LayerNorms (1, 0), and
        embeddings/output with standard deviation ``d_model ** -0.5``.

        Then a LayerNorm-ed decoder output (unit variance per feature) times an output matrix
        of variance 1/d_model gives logits of variance about 1: the first loss is about
        ln(V) + 1/2 instead of growing with d_model.
        """
        for name, param in self.transformer.named_parameters():
            if param.dim() > 1:
                nn.init.xavier_uniform_(param)
            elif "norm" in name and name.endswith("weight"):
                nn.init.ones_(param)
            else:
                nn.init.zeros_(param)
        for matrix in {id(m): m for m in (self.src_embed.weight, self.tgt_embed.weight,
                                          self.output.weight)}.values():
            nn.init.normal_(matrix, std=self.d_model ** -0.5)

    def _embed(self, embedding: nn.Embedding, ids: torch.Tensor, offset: int = 0):
        return self.positions(embedding(ids) * math.sqrt(self.d_model), offset=offset)

    def _check_ids(self, name: str, ids: torch.Tensor, vocab_size: int) -> None:
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.dim() != 2:
            shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"{name} must be an int64 tensor of token ids (B, L); got {shape}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
            raise ValueError(f"{name} holds ids outside [0, {vocab_size}): from "
                             f"{ids.min().item()} to {ids.max().item()}")

    def encode(self, src: torch.Tensor, need_weights: bool = False):
        """Encode source ids (B, S) int64, padded with ``pad_id``.

        Returns:
            ``(memory (B, S, d_model), src_valid (B, S) bool)``, plus the encoder's per-layer
            self-attention weights (B, H, S, S) as a third item with ``need_weights=True``.
        """
        self._check_ids("src", src, self.src_embed.num_embeddings)
        valid = src != self.pad_id
        out = self.transformer.encode(self._embed(self.src_embed, src), key_mask(valid),
                                      need_weights=need_weights)
        return (out[0], valid, out[1]) if need_weights else (out, valid)

    def decode(self, tgt: torch.Tensor, memory: torch.Tensor, src_valid: torch.Tensor,
               cache: KVCache | None = None, need_weights: bool = False,
               last_only: bool = False):
        """Logits (B, T, V_tgt) for target ids (B, T) int64 given the encoded source.

        Without a cache ``tgt`` is the whole prefix, decoded under a causal mask. With a cache
        (from :meth:`new_cache`) ``tgt`` holds only the tokens after the cached ones. With
        ``last_only=True`` only the last position is projected to the vocabulary: logits
        (B, 1, V_tgt), all a decoding step needs. With ``need_weights=True`` returns
        ``(logits, [(self_weights, cross_weights) per layer])``.
        """
        self._check_ids("tgt", tgt, self.tgt_embed.num_embeddings)
        offset = 0 if cache is None else cache.length
        tgt_mask = None if cache is not None else causal_mask(tgt.shape[1], device=tgt.device)
        out = self.transformer.decode(self._embed(self.tgt_embed, tgt, offset), memory,
                                      tgt_mask, key_mask(src_valid), cache, need_weights)
        hidden, weights = out if need_weights else (out, None)
        logits = self.output(hidden[:, -1:] if last_only else hidden)
        return (logits, weights) if need_weights else logits

    def new_cache(self) -> KVCache:
        """An empty key/value cache for :meth:`decode`."""
        return self.transformer.new_cache()

    def forward(self, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        memory, valid = self.encode(src)
        return self.decode(tgt, memory, valid)


def sequence_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int = 0,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over the non-padding target tokens, optionally label-smoothed.

    Label smoothing (Szegedy et al., 2016) trains towards ``1 - eps`` on the right token and
    ``eps`` spread over the vocabulary, which keeps the model from becoming over-confident.

    Args:
        logits: (B, T, V) float.
        targets: (B, T) int64 token ids; positions equal to ``pad_id`` are ignored.
        pad_id: the padding id.
        label_smoothing: eps in [0, 1).

    Returns:
        A scalar tensor.
    """
    _require_probability("label_smoothing", label_smoothing)
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"logits must be (B, T, V) and targets (B, T); got logits "
                         f"{tuple(logits.shape)}, targets {tuple(targets.shape)}")
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=pad_id,
                           label_smoothing=label_smoothing)
