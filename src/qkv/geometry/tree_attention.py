"""Learned attention over a tree, with hyperbolic and flat scores: an experiment either can win.

The task: every node u of a tree is a query, every other node a key, and u should attend to its
ancestors (the nodes on its path to the root) rather than to any other node. A model learns one
vector per node, a query map ``W_Q`` and a key map ``W_K`` (no biases) and an inverse
temperature ``beta``; three scores share all of it::

    dot         s(u, v) =  beta * (W_Q e_u) . (W_K e_v)
    euclidean   s(u, v) = -beta * |W_Q e_u - W_K e_v|
    hyperbolic  s(u, v) = -beta * d_c(exp_0(W_Q e_u), exp_0(W_K e_v))    (Poincaré ball)

so the three models have the same parameters, ``n D + 2 D^2 + 1`` numbers for n nodes in D
dimensions. The hyperbolic model differs from the Euclidean-distance one only in the map to the
ball and its metric; both score linearly in the distance, as Gulcehre et al. (2019) do. All
parameters are Euclidean (the exponential map comes after them), so plain Adam trains all three.

The loss is that of Nickel and Kiela (2017) with scores in place of minus distances: for every
query u and ancestor a, the cross-entropy of a softmax over a and all the nodes that are not
ancestors of u (:func:`qkv.geometry.nickel_kiela_loss`). Training is full batch. With one free
vector per node nothing generalises to unseen nodes: the experiment measures what each
geometry can *fit* in D dimensions, which is the question of low-dimensional embeddings.
Scores are returned as a matrix, so :func:`qkv.geometry.reconstruction_metrics` of ``-scores``
gives the mean rank and MAP of the ancestors.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from qkv.geometry._checks import require_count, require_curvature, require_positive
from qkv.geometry.poincare import _expmap0, project
from qkv.geometry.learning import _loss, _loss_terms
from qkv.geometry.trees import Tree, ancestor_matrix, reconstruction_metrics

SCORES = ("hyperbolic", "dot", "euclidean")
"""The scores :class:`TreeAttention` can use."""


class TreeAttention(nn.Module):
    """Node vectors, query and key maps and a temperature, scored in one geometry.

    Args:
        num_nodes: n; dim: D, the size of node vectors, queries and keys.
        score: ``"hyperbolic"``, ``"dot"`` or ``"euclidean"`` (see the module's documentation).
        c: curvature parameter of the ball (hyperbolic score only).
        generator: for the initial parameters; dtype: float64 by default (points near the
            boundary of the ball need it).
        eps: margin of :func:`qkv.geometry.project`: queries and keys stay at
            ``sqrt(c) |x| <= 1 - eps``.

    ``forward()`` returns the (n, n) scores ``s[u, v]`` of query u against key v.
    """

    def __init__(self, num_nodes: int, dim: int, score: str, c=1.0,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                 eps: float = 1e-5):
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}; got {score!r}")
        require_count("num_nodes", num_nodes, minimum=2)
        require_count("dim", dim)
        self.score, self.c, self.eps = score, require_curvature(c), eps
        scale = 1 / math.sqrt(dim)  # node vectors and images of length about 1

        def init(*shape):
            return nn.Parameter(scale * torch.randn(*shape, generator=generator, dtype=dtype))

        self.nodes = init(num_nodes, dim)  # (n, D)
        self.W_q, self.W_k = init(dim, dim), init(dim, dim)  # (D, D) each
        self.log_beta = nn.Parameter(torch.zeros((), dtype=dtype))

    def queries_and_keys(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, D) queries and (n, D) keys: vectors for the flat scores, ball points otherwise."""
        q, k = self.nodes @ self.W_q.T, self.nodes @ self.W_k.T  # (n, D) each
        if self.score == "hyperbolic":
            q, k = (project(_expmap0(x, self.c), self.c, self.eps) for x in (q, k))
        return q, k

    def forward(self) -> torch.Tensor:
        q, k = self.queries_and_keys()  # (n, D) each
        beta = self.log_beta.exp()
        dots = q @ k.T  # (n, n)
        if self.score == "dot":
            return beta * dots
        # |q - k|^2 from the Gram matrix: one (n, n) product instead of (n, n, D) differences
        gap2 = (q.pow(2).sum(-1)[:, None] + k.pow(2).sum(-1)[None] - 2 * dots).clamp_min(1e-24)
        if self.score == "euclidean":
            return -beta * gap2.sqrt()
        # d_c = (2/sqrt c) asinh(sqrt c |q - k| / sqrt((1 - c|q|^2)(1 - c|k|^2)))
        room = (1 - self.c * q.pow(2).sum(-1))[:, None] * (1 - self.c * k.pow(2).sum(-1))[None]
        return -beta * 2 / self.c**0.5 * torch.asinh((self.c * gap2 / room).sqrt())


def num_parameters(module: nn.Module) -> int:
    """The number of trainable numbers of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class TreeAttentionResult(NamedTuple):
    """What :func:`train_tree_attention` returns."""

    model: TreeAttention  # trained, in eval mode
    mean_rank: float  # of the ancestors among the non-ancestors (1 = perfect)
    map: float  # mean average precision of the ancestors (1 = perfect)
    losses: list[float]  # the loss before each step and after the last one


def ancestor_relation(tree: Tree) -> torch.Tensor:
    """(n, n) bool, ``[u, a]`` True when a is a proper ancestor of u (row = query)."""
    return ancestor_matrix(tree) & ~torch.eye(tree.num_nodes, dtype=torch.bool)


def train_tree_attention(tree: Tree, dim: int, score: str, steps: int, lr: float = 0.05,
                         seed: int = 0, c=1.0, dtype: torch.dtype = torch.float64
                         ) -> TreeAttentionResult:
    """Train a :class:`TreeAttention` model to attend from every node to its ancestors.

    Full-batch Adam on the loss of the module's documentation. The initial parameters come
    from ``torch.Generator().manual_seed(seed)``: the same numbers for the three scores.

    Args:
        tree: the tree; dim: D; score: one of :data:`SCORES`; steps: Adam steps (>= 0);
        lr: Adam's step size > 0; seed: for the initial parameters; c: the ball's curvature;
        dtype: float64 recommended.

    Returns:
        A :class:`TreeAttentionResult` (mean rank and MAP from
        :func:`qkv.geometry.reconstruction_metrics` of minus the final scores).
    """
    require_count("steps", steps, minimum=0)
    lr = require_positive("lr", lr)
    model = TreeAttention(tree.num_nodes, dim, score, c=c,
                          generator=torch.Generator().manual_seed(seed), dtype=dtype)
    related = ancestor_relation(tree)
    terms = _loss_terms(related)  # the same every step
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps + 1):
        loss = _loss(-model(), *terms)
        losses.append(loss.item())
        if step == steps:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        mean_rank, mean_ap = reconstruction_metrics(-model(), related)
    return TreeAttentionResult(model, mean_rank, mean_ap, losses)
