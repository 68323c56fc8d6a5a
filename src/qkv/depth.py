"""Why residual connections: a deep stack of attention blocks with and without them (chapter 6).

A residual (skip) connection adds a sublayer's input to its output, ``x + f(x)`` (He et al.,
2016). In a deep stack it gives every layer an identity path to the loss: the gradient reaching
layer 1 is the gradient at the top *plus* what passes through the sublayers, instead of only what
survives a product of 2 x depth Jacobians. Attention without skips has a second problem: each
layer averages positions, so a deep stack of plain attention layers pulls all positions towards
one vector (Dong et al., 2021), and what reaches the top barely depends on the input.

This module builds the stack both ways, with everything else equal:

* :class:`SkipBlock`: pre-LN self-attention and feed-forward sublayers,
  ``x + attn(LN(x))`` then ``x + ffn(LN(x))``; with ``residual=False`` the sums are dropped,
  ``attn(LN(x))`` then ``ffn(LN(x))``;
* :class:`DeepStack`: token and position embeddings, ``num_layers`` blocks, a final LayerNorm
  and a linear read-out per position;
* :func:`mirror_batch`: a task that needs attention (output position t is input digit
  L - 1 - t);
* :func:`layer_gradient_norms`: the gradient norm of each block's parameters for one batch;
* :func:`position_spread`: how different the positions still are after the last block;
* :func:`train_stack`: the training loss per step.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from qkv.checks import check_count, check_tensor
from qkv.multihead import MultiHeadAttention
from qkv.transformer import PositionWiseFFN


class SkipBlock(nn.Module):
    """A pre-LN encoder block whose two residual connections can be switched off.

    Args:
        d_model: size of the features; a multiple of ``num_heads``.
        num_heads: H, the number of attention heads.
        d_ff: hidden size of the feed-forward network.
        residual: keep the skips (``x + f(LN(x))``) or drop them (``f(LN(x))``).

    ``forward(x (B, L, d_model)) -> (B, L, d_model)``.
    """

    def __init__(self, d_model: int, num_heads: int, d_ff: int, residual: bool = True):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.ffn = PositionWiseFFN(d_model, d_ff)
        self.norm_attn, self.norm_ffn = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.residual = bool(residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = f"(B, L, d_model) with d_model={self.attn.d_model}"
        check_tensor("x", x, (3,), shape)
        if x.shape[-1] != self.attn.d_model:
            raise ValueError(f"x must have shape {shape}; got {tuple(x.shape)}")
        h = self.norm_attn(x)
        update, _ = self.attn(h, h, h)  # (B, L, d_model)
        x = x + update if self.residual else update
        update = self.ffn(self.norm_ffn(x))  # (B, L, d_model)
        return x + update if self.residual else update


class DeepStack(nn.Module):
    """Embeddings, ``num_layers`` :class:`SkipBlock` s, a final LayerNorm and a read-out.

    Args:
        num_layers: the depth.
        residual: whether the blocks keep their skip connections.
        num_symbols: the input and output vocabulary.
        length: L, the (fixed) sequence length (learned position embeddings).
        d_model, num_heads, d_ff: as in :class:`SkipBlock`.

    ``forward(tokens (B, L) int64) -> logits (B, L, num_symbols)``.
    """

    def __init__(self, num_layers: int, residual: bool = True, num_symbols: int = 10,
                 length: int = 8, d_model: int = 32, num_heads: int = 4, d_ff: int = 64):
        super().__init__()
        for name, value in (("num_layers", num_layers), ("num_symbols", num_symbols),
                            ("length", length), ("d_ff", d_ff)):
            check_count(name, value)
        self.embed = nn.Embedding(num_symbols, d_model)
        self.position = nn.Parameter(0.02 * torch.randn(length, d_model))
        self.blocks = nn.ModuleList(SkipBlock(d_model, num_heads, d_ff, residual)
                                    for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        self.readout = nn.Linear(d_model, num_symbols)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """The embedded tokens passed through the blocks: (B, L) -> (B, L, d_model)."""
        if tokens.dim() != 2 or tokens.shape[1] > len(self.position):
            raise ValueError(f"tokens must have shape (B, L) with L <= {len(self.position)}; "
                             f"got {tuple(tokens.shape)}")
        x = self.embed(tokens) + self.position[:tokens.shape[1]]  # (B, L, d_model)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.readout(self.norm(self.features(tokens)))  # (B, L, num_symbols)


def mirror_batch(batch_size: int, length: int = 8, num_symbols: int = 10,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random digit strings and their mirror images: ``targets[:, t] = tokens[:, L - 1 - t]``.

    Every output needs the input at another position, so the stack must move information with
    attention. Returns ``(tokens, targets)``, both (batch_size, length) int64.
    """
    check_count("batch_size", batch_size)
    check_count("length", length)
    check_count("num_symbols", num_symbols, minimum=2)
    tokens = torch.randint(0, num_symbols, (batch_size, length), generator=generator)
    return tokens, tokens.flip(1)


def _loss(model: DeepStack, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model(tokens)  # (B, L, V)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def layer_gradient_norms(model: DeepStack, tokens: torch.Tensor,
                         targets: torch.Tensor) -> torch.Tensor:
    """The gradient norm of each block's parameters for the loss on one batch.

    Args:
        model: the stack (its current weights; gradients already stored are discarded).
        tokens, targets: (B, L) int64, e.g. from :func:`mirror_batch`.

    Returns:
        float64 tensor (num_layers,): entry i is the Euclidean norm of the gradient with
        respect to all parameters of block i (block 0 is nearest the input).
    """
    model.zero_grad(set_to_none=True)
    _loss(model, tokens, targets).backward()
    norms = []
    for block in model.blocks:
        squares = sum(p.grad.double().pow(2).sum() for p in block.parameters()
                      if p.grad is not None)
        norms.append(torch.as_tensor(squares, dtype=torch.float64).sqrt())
    model.zero_grad(set_to_none=True)
    return torch.stack(norms)


def position_spread(model: DeepStack, tokens: torch.Tensor) -> float:
    """How much the last block's output still differs between positions, relative to its size.

    ``||X - mean over positions of X|| / ||X||`` for the features X (B, L, d_model) after the
    last block: about 1 when the positions are unrelated vectors, 0 when every position of a
    sequence holds the same vector (what repeated averaging by attention drives towards).
    """
    with torch.no_grad():
        x = model.features(tokens)  # (B, L, d_model)
        return ((x - x.mean(1, keepdim=True)).norm() / x.norm()).item()


def train_stack(model: DeepStack, steps: int, batch_size: int = 64, lr: float = 1e-3,
                seed: int = 0) -> list[float]:
    """Train ``model`` on :func:`mirror_batch` with Adam; return the loss of every step.

    The batches depend only on ``seed`` (and the model's length and vocabulary), so two models
    trained with the same seed see the same data. No gradient clipping and no warm-up: the
    comparison is about the architecture alone.
    """
    check_count("steps", steps)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    length, num_symbols = len(model.position), model.readout.out_features
    losses = []
    model.train()
    for _ in range(steps):
        tokens, targets = mirror_batch(batch_size, length, num_symbols, generator)
        loss = _loss(model, tokens, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
