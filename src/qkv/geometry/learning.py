"""Learned embeddings of a hierarchy: the Nickel-Kiela loss and Riemannian SGD.

Nickel and Kiela (2017) learn one point per node so that related nodes (ancestor and
descendant) end up closer than unrelated ones. For a related pair (u, v) the loss is a
softmax cross-entropy that ranks v above the nodes unrelated to u::

    loss(u, v) = -log( exp(-d(u, v)) / (exp(-d(u, v)) + sum_{w unrelated to u} exp(-d(u, w))) )

In the Poincaré ball the gradient step is Riemannian: the Euclidean gradient is rescaled by
``1 / lambda_x^2`` (:func:`qkv.geometry.riemannian_gradient`), the step is taken, and the point
is projected back inside the ball (the retraction of Nickel and Kiela, a first-order version of
the exponential map used by Bonnabel, 2013). The Euclidean baseline takes plain gradient steps
on the same loss.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from qkv.geometry._checks import require_count, require_positive
from qkv.geometry.poincare import DEFAULT_EPS, _distance, project, riemannian_gradient

GEOMETRIES = ("poincare", "euclidean")
"""The spaces :func:`train_tree_embedding` can learn in."""


def nickel_kiela_loss(distances: torch.Tensor, related: torch.Tensor) -> torch.Tensor:
    """The mean Nickel-Kiela loss over all related ordered pairs, every unrelated node a negative.

    Args:
        distances: (n, n) distances between the embedded nodes (differentiable).
        related: (n, n) bool, True where two nodes are related; False on the diagonal.

    Returns:
        A 0-d tensor, the dtype of ``distances``.
    """
    if related.dtype != torch.bool or related.shape != distances.shape or distances.dim() != 2:
        raise ValueError(f"related must be a bool (n, n) matrix like distances; got "
                         f"{related.dtype} {tuple(related.shape)} and {tuple(distances.shape)}")
    if not related.any():
        raise ValueError("related holds no pair: there is nothing to learn")
    return _loss(distances, *_loss_terms(related))


def _loss_terms(related: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What the loss needs from the relation: the mask of non-negatives and the related pairs."""
    n = related.shape[0]
    not_negative = related | torch.eye(n, dtype=torch.bool, device=related.device)  # (n, n)
    anchor, positive = related.nonzero(as_tuple=True)  # (pairs,) each
    return not_negative, anchor, positive


def _loss(distances: torch.Tensor, not_negative: torch.Tensor, anchor: torch.Tensor,
          positive: torch.Tensor) -> torch.Tensor:
    lowest = torch.finfo(distances.dtype).min
    negative_part = torch.logsumexp((-distances).masked_fill(not_negative, lowest), dim=1)  # (n,)
    d = distances[anchor, positive]
    return (d + torch.logaddexp(-d, negative_part[anchor])).mean()


def riemannian_sgd_step(points: torch.Tensor, euclidean_grad: torch.Tensor, lr: float, c=1.0,
                        eps: float = DEFAULT_EPS) -> torch.Tensor:
    """One Riemannian SGD step in the Poincaré ball, with the retraction and a projection.

    ``x <- project(x - lr * grad_R)`` with ``grad_R = ((1 - c|x|^2)^2 / 4) grad_E``.

    Args:
        points: (..., D) inside the ball; euclidean_grad: the loss's gradient, same shape.
        lr: step size > 0; c: curvature; eps: the margin of :func:`qkv.geometry.project`.

    Returns:
        (..., D) new points inside the ball (a new tensor; ``points`` is not changed).
    """
    lr = require_positive("lr", lr)
    step = riemannian_gradient(points, euclidean_grad, c)
    return project(points - lr * step, c, eps)


def _pairwise(points: torch.Tensor, geometry: str) -> torch.Tensor:
    if geometry == "poincare":
        return _distance(points[:, None], points[None], 1.0)
    return torch.linalg.vector_norm(points[:, None] - points[None], dim=-1)


class TrainedEmbedding(NamedTuple):
    """The result of :func:`train_tree_embedding`."""

    points: torch.Tensor  # (n, dim), detached
    losses: list[float]  # the loss before each epoch and after the last one


def train_tree_embedding(related: torch.Tensor, dim: int, geometry: str, epochs: int,
                         lr: float, generator: torch.Generator | None = None,
                         dtype: torch.dtype = torch.float64, init_scale: float = 1e-3,
                         burn_in: int = 10) -> TrainedEmbedding:
    """Learn a ``dim``-dimensional embedding of a relation with the Nickel-Kiela loss.

    Full-batch training: every epoch computes all pairwise distances, the loss of
    :func:`nickel_kiela_loss`, and one gradient step for every point: Riemannian SGD in the
    unit Poincaré ball (c = 1) or plain gradient descent in Euclidean space. The points start
    uniform in ``[-init_scale, init_scale]^dim``, and the first ``burn_in`` epochs use a ten
    times smaller step (Nickel and Kiela's burn-in).

    Args:
        related: (n, n) bool relation (e.g. :func:`qkv.geometry.related_mask`).
        dim: embedding dimension; geometry: ``"poincare"`` or ``"euclidean"``.
        epochs: number of full-batch steps; lr: step size > 0.
        generator: for the initial points; dtype: float64 recommended.
        init_scale: half-width of the initial cube; burn_in: epochs at lr / 10.

    Returns:
        A :class:`TrainedEmbedding` with the points and the loss curve.
    """
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {', '.join(GEOMETRIES)}; got {geometry!r}")
    require_count("dim", dim)
    require_count("epochs", epochs, minimum=0)
    require_count("burn_in", burn_in, minimum=0)
    lr = require_positive("lr", lr)
    init_scale = require_positive("init_scale", init_scale)
    n = related.shape[0]
    points = (2 * torch.rand(n, dim, generator=generator, dtype=dtype) - 1) * init_scale
    nickel_kiela_loss(torch.zeros(n, n, dtype=dtype), related)  # checks the relation once
    terms = _loss_terms(related)  # the same every epoch
    losses = []
    for epoch in range(epochs + 1):
        points.requires_grad_(True)
        loss = _loss(_pairwise(points, geometry), *terms)
        losses.append(loss.item())
        if epoch == epochs:
            break
        (grad,) = torch.autograd.grad(loss, points)
        step = lr / 10 if epoch < burn_in else lr
        with torch.no_grad():
            points = points.detach()
            if geometry == "poincare":
                points = riemannian_sgd_step(points, grad, step)
            else:
                points = points - step * grad
    return TrainedEmbedding(points.detach(), losses)
