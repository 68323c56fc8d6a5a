"""Hyperbolic attention: weights from hyperbolic distances, values averaged inside the ball.

Chapter 2 showed that dot-product attention on unit vectors is Nadaraya-Watson with a Gaussian
kernel of the chordal distance. Replacing that distance by the hyperbolic one gives the
matching of Gulcehre et al. (2019), "Hyperbolic Attention Networks"::

    score(q_i, k_j) = -beta d_c(q_i, k_j) - offset
    weights         = gate(score)                    softmax over the keys, or a sigmoid gate
    output_i        = Einstein midpoint of the values with weights_ij

Queries, keys and values are points of the Poincaré ball (map features there with
:func:`qkv.geometry.expmap0`). The aggregation is the **Einstein midpoint in the Klein model**
(:func:`qkv.geometry.einstein_midpoint`), so the output stays a point of the ball; a Euclidean
weighted sum of ball points would also stay in the ball, but it ignores the metric.

With ``gate="softmax"`` the offset cancels (a softmax does not change when one number is added
to every score), so it is learnable but receives a zero gradient; it matters only with
``gate="sigmoid"``, whose weights ``sigmoid(score)`` are not normalised before the midpoint.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qkv.attention import check_mask, masked_softmax
from qkv.geometry._checks import (
    require_curvature,
    require_inside_ball,
    require_points,
    require_positive,
)
from qkv.geometry.lorentz import einstein_midpoint
from qkv.geometry.poincare import _distance, project

GATES = ("softmax", "sigmoid")
"""How scores become weights: a softmax over the keys, or an independent sigmoid per key."""


def _check_gate(gate: str) -> None:
    if gate not in GATES:
        raise ValueError(f"gate must be one of {', '.join(GATES)}; got {gate!r}")


def _check_inputs(queries, keys, values, c):
    """Check three tensors of ball points (..., L, D) for attention; return the checked c."""
    c = require_curvature(c)
    for name, x in (("queries", queries), ("keys", keys), ("values", values)):
        require_points(name, x)
        if x.dim() < 2:
            raise ValueError(f"{name} must have shape (..., L, D); got {tuple(x.shape)}")
    shapes = (f"queries {tuple(queries.shape)}, keys {tuple(keys.shape)}, values "
              f"{tuple(values.shape)}")
    if not queries.dtype == keys.dtype == values.dtype:
        raise TypeError(f"queries, keys and values must share one dtype; got {queries.dtype}, "
                        f"{keys.dtype}, {values.dtype}")
    if queries.shape[-1] != keys.shape[-1] or keys.shape[-2] != values.shape[-2]:
        raise ValueError(f"queries and keys must share D, keys and values L_k; got {shapes}")
    try:
        torch.broadcast_shapes(queries.shape[:-2], keys.shape[:-2], values.shape[:-2])
    except RuntimeError:
        raise ValueError(f"the leading (batch) axes do not broadcast; got {shapes}") from None
    for name, x in (("queries", queries), ("keys", keys), ("values", values)):
        require_inside_ball(name, x, c)
    return c


def hyperbolic_attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                         beta=1.0, offset=0.0, c=1.0, mask: torch.Tensor | None = None,
                         gate: str = "softmax") -> tuple[torch.Tensor, torch.Tensor]:
    """Distance-based attention in the Poincaré ball with Einstein-midpoint aggregation.

    Args:
        queries: (..., L_q, D) points inside the ball ``c |x|^2 < 1``.
        keys: (..., L_k, D) points inside the ball; values: (..., L_k, D_v) points inside
            the ball; one dtype, leading axes that broadcast.
        beta: inverse temperature > 0 (float or 0-d tensor); offset: the score's shift.
        c: positive curvature parameter.
        mask: optional boolean mask broadcastable to (..., L_q, L_k); True = may attend.
            Masked keys get weight 0; a query with no allowed key gets the origin as output.
        gate: ``"softmax"`` (weights of a row sum to 1) or ``"sigmoid"``.

    Returns:
        ``(output, weights)``: output (..., L_q, D_v) points inside the ball, and the weights
        (..., L_q, L_k) that enter the Einstein midpoint (before its Lorentz factors).
    """
    _check_gate(gate)
    c = _check_inputs(queries, keys, values, c)
    if isinstance(beta, torch.Tensor):
        if beta.numel() != 1 or not beta.item() > 0:
            raise ValueError(f"beta must be a positive scalar; got {beta}")
    else:
        require_positive("beta", beta)
    scores = -beta * _distance(queries.unsqueeze(-2), keys.unsqueeze(-3), c) - offset
    if gate == "softmax":
        weights = masked_softmax(scores, mask)
    else:
        weights = torch.sigmoid(scores)
        if mask is not None:
            check_mask(mask, scores.shape)
            weights = weights * mask
    return einstein_midpoint(values, weights, c), weights


def beta_for_perplexity(scores: torch.Tensor, perplexity: float,
                        mask: torch.Tensor | None = None, iterations: int = 60) -> float:
    """The inverse temperature beta at which ``softmax(beta * scores)`` spreads over
    ``perplexity`` keys: the mean over the rows of the entropy equals ``log(perplexity)``.

    Comparing attention mechanisms at one temperature each is unfair when their scores live on
    different scales; comparing them at the same spread is not. Bisection on ``log beta`` in
    [-30, 30] (the mean entropy falls as beta grows).

    Args:
        scores: (..., L_q, L_k) floating scores; mask: optional boolean mask, True = may
            attend; perplexity: target effective number of keys, in (1, allowed keys).

    Returns:
        beta as a float.
    """
    allowed = scores.shape[-1] if mask is None else int(mask.sum(-1).min())
    if not 1 < perplexity < allowed:
        raise ValueError(f"perplexity must lie in (1, {allowed}), the smallest number of allowed "
                         f"keys of a row; got {perplexity!r}")
    target, low, high = math.log(perplexity), -30.0, 30.0
    for _ in range(iterations):
        middle = (low + high) / 2
        weights = masked_softmax(math.exp(middle) * scores, mask)
        entropy = -(weights * torch.log(weights.clamp_min(torch.finfo(weights.dtype).tiny)))
        if entropy.sum(-1).mean().item() > target:
            low = middle
        else:
            high = middle
    return math.exp((low + high) / 2)


class HyperbolicAttention(nn.Module):
    """Hyperbolic attention with a learnable inverse temperature and offset.

    ``beta`` is stored as ``log_beta`` so that it stays positive; ``offset`` is a plain
    parameter (under the softmax gate it cancels, see the module's documentation).

    Args:
        beta: initial inverse temperature > 0; offset: initial offset.
        c: curvature parameter (fixed).
        gate: ``"softmax"`` or ``"sigmoid"``.
        eps: the margin of :func:`qkv.geometry.project`, applied to the inputs when
            ``project_inputs`` is True.
        project_inputs: pull queries, keys and values that rounded onto the boundary (for
            instance after :func:`qkv.geometry.expmap0` of a long vector in float32) back
            inside the ball before attending. Points within the margin are unchanged.

    ``forward(queries (..., L_q, D), keys (..., L_k, D), values (..., L_k, D_v), mask=None)``
    returns ``(output (..., L_q, D_v), weights (..., L_q, L_k))`` as
    :func:`hyperbolic_attention`.
    """

    def __init__(self, beta: float = 1.0, offset: float = 0.0, c: float = 1.0,
                 gate: str = "softmax", eps: float = 1e-5, project_inputs: bool = True):
        super().__init__()
        _check_gate(gate)
        self.c = require_curvature(c)
        self.log_beta = nn.Parameter(torch.tensor(math.log(require_positive("beta", beta))))
        self.offset = nn.Parameter(torch.tensor(float(offset)))
        self.gate, self.eps, self.project_inputs = gate, eps, project_inputs

    @property
    def beta(self) -> torch.Tensor:
        """The inverse temperature, ``exp(log_beta)`` (a differentiable 0-d tensor)."""
        return self.log_beta.exp()

    def forward(self, queries, keys, values, mask=None):
        if self.project_inputs:
            queries, keys, values = (project(x, self.c, self.eps) for x in (queries, keys, values))
        dtype = queries.dtype
        return hyperbolic_attention(queries, keys, values, beta=self.beta.to(dtype),
                                    offset=self.offset.to(dtype), c=self.c, mask=mask,
                                    gate=self.gate)

    def extra_repr(self) -> str:
        return (f"beta={self.beta.item():.4g}, offset={self.offset.item():.4g}, c={self.c:g}, "
                f"gate={self.gate!r}")
