"""Nadaraya-Watson kernel regression: attention pooling before attention had a name.

A query ``q`` (where we want a prediction) is compared with every key ``k_i`` (where data was
observed) by a kernel ``K(||q - k_i|| / h)`` with bandwidth ``h``; the prediction is the
weighted average of the values ``v_i`` with the normalised kernel values as weights::

    f(q) = sum_i K(||q - k_i|| / h) v_i / sum_j K(||q - k_j|| / h)

Shapes: queries (n, d) or (n,), keys (m, d) or (m,) (1-D means d = 1), values (m,) or
(m, d_v); weights (n, m); predictions (n,) or (n, d_v). All floating point, one dtype.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

KERNELS = ("gaussian", "boxcar", "epanechnikov", "constant")
"""The kernels this module knows, by name."""

# Each kernel profile as a function of the squared scaled distance u**2 (no square root is
# ever taken, so gradients stay finite at u = 0).
_PROFILES = {
    "gaussian": lambda u2: torch.exp(-u2 / 2),
    "boxcar": lambda u2: (u2 <= 1).to(u2.dtype),
    "epanechnikov": lambda u2: (1 - u2).clamp_min(0),
    "constant": torch.ones_like,
}


def _check_tensor(x, name: str, ranks: tuple[int, ...], shape_text: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor; got dtype {x.dtype}")
    if x.dim() not in ranks:
        raise ValueError(f"{name} must have shape {shape_text}; got shape {tuple(x.shape)}")


def _check_points(queries, keys) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate queries and keys and return them as 2-D (n, d) and (m, d) tensors."""
    _check_tensor(queries, "queries", (1, 2), "(n,) or (n, d)")
    _check_tensor(keys, "keys", (1, 2), "(m,) or (m, d)")
    q = queries[:, None] if queries.dim() == 1 else queries
    k = keys[:, None] if keys.dim() == 1 else keys
    if q.shape[1] != k.shape[1]:
        raise ValueError(f"queries and keys must have the same dimension d; got queries of "
                         f"shape {tuple(queries.shape)} and keys of shape {tuple(keys.shape)}")
    if k.shape[0] == 0:
        raise ValueError(f"keys must hold at least one key; got shape {tuple(keys.shape)}")
    if q.dtype != k.dtype:
        raise TypeError(f"queries and keys must share one dtype; got {q.dtype} and {k.dtype}")
    return q, k


def _check_bandwidth(bandwidth):
    """Return the bandwidth as a float or a 0-d tensor, after checking it is positive and finite."""
    if isinstance(bandwidth, torch.Tensor):
        if bandwidth.numel() != 1:
            raise ValueError(f"bandwidth must be a scalar; got a tensor of shape "
                             f"{tuple(bandwidth.shape)}")
        value, bandwidth = bandwidth.item(), bandwidth.reshape(())
    elif isinstance(bandwidth, (int, float)) and not isinstance(bandwidth, bool):
        value = bandwidth = float(bandwidth)
    else:
        raise TypeError(f"bandwidth must be a float or a scalar tensor; got {type(bandwidth)}")
    if not (0 < value < math.inf):
        raise ValueError(f"bandwidth must be positive and finite; got {value}")
    return bandwidth


def _check_kernel(kernel) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; known kernels: {', '.join(KERNELS)}")


def kernel_profile(u: torch.Tensor, kernel: str = "gaussian") -> torch.Tensor:
    """Evaluate the kernel ``K(u)`` elementwise (u: any shape, floating point; same shape out).

    gaussian ``exp(-u^2/2)``, boxcar ``1{|u| <= 1}``, epanechnikov ``max(0, 1 - u^2)``,
    constant ``1``. The kernels are left unnormalised: the estimator divides by the sum anyway.
    """
    _check_kernel(kernel)
    return _PROFILES[kernel](u * u)


def _squared_distances(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(n, d), (m, d) -> (n, m) squared Euclidean distances, from explicit differences."""
    return (q[:, None, :] - k[None, :, :]).pow(2).sum(-1)


def gaussian_scores(queries, keys, bandwidth) -> torch.Tensor:
    """Attention scores of the Gaussian kernel: ``-||q - k||^2 / (2 h^2)``, shape (n, m).

    ``softmax`` over the keys turns them into the Gaussian Nadaraya-Watson weights: the
    softmax of these scores is the bridge from kernel regression to attention.
    """
    q, k = _check_points(queries, keys)
    h = _check_bandwidth(bandwidth)
    return -_squared_distances(q, k) / (2 * h**2)


def leave_one_out_mask(n: int, device=None) -> torch.Tensor:
    """(n, n) bool mask, True where query i may attend to key j, i.e. everywhere but i == j."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int; got {n!r}")
    return ~torch.eye(n, dtype=torch.bool, device=device)


def kernel_weights(queries, keys, kernel: str = "gaussian", bandwidth=1.0, *,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised kernel weights, shape (n, m), with ``u = ||q - k|| / bandwidth``.

    Args:
        queries: (n, d) or (n,); keys: (m, d) or (m,); floating point, one dtype.
        kernel: one of :data:`KERNELS`.
        bandwidth: a positive float, or a positive scalar tensor (gradients flow through it).
        mask: optional (n, m) bool, True where a query may attend to a key (the book's one
            mask convention); masked keys get weight 0.

    Returns:
        (n, m) weights. Each row sums to 1, except a row with no key inside a compact
        kernel's support (boxcar, epanechnikov) or with every key masked: that row is all 0.

    The Gaussian weights are computed as ``softmax(gaussian_scores)``. That equals the
    normalised ``exp(-u^2/2)`` exactly, but the softmax subtracts the largest score first, so
    the nearest key always gets a weight of order 1: tiny bandwidths never underflow to 0/0
    (as long as ``||q - k||^2 / h^2`` itself stays finite in the dtype).
    """
    q, k = _check_points(queries, keys)
    _check_kernel(kernel)
    h = _check_bandwidth(bandwidth)
    if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool
                             or mask.shape != (len(q), len(k))):
        raise ValueError(f"mask must be a bool tensor of shape {(len(q), len(k))}; got "
                         f"{getattr(mask, 'dtype', type(mask))} {getattr(mask, 'shape', '')}")
    if kernel == "gaussian":
        scores = gaussian_scores(q, k, h)
        if mask is None:
            return torch.softmax(scores, dim=-1)
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        return torch.softmax(scores, dim=-1) * mask.any(dim=-1, keepdim=True)
    unnormalised = _PROFILES[kernel](_squared_distances(q, k) / h**2)
    if mask is not None:
        unnormalised = unnormalised * mask
    totals = unnormalised.sum(dim=-1, keepdim=True)
    # A row with no support sums to 0: divide it by 1 instead, which leaves it all 0.
    return unnormalised / torch.where(totals > 0, totals, torch.ones_like(totals))


def nadaraya_watson(queries, keys, values, kernel: str = "gaussian", bandwidth=1.0, *,
                    mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Nadaraya-Watson predictions: the kernel-weighted average of the values.

    Args:
        queries: (n, d) or (n,); keys: (m, d) or (m,); values: (m,) or (m, d_v).
        kernel, bandwidth, mask: as in :func:`kernel_weights`.

    Returns:
        ``(predictions, weights)``: predictions (n,) for 1-D values or (n, d_v), and the
        (n, m) weights. A query with no key inside a compact kernel's support (boxcar,
        epanechnikov), or with every key masked, has an all-zero weight row and its
        prediction is exactly 0 (never NaN).
    """
    _check_tensor(values, "values", (1, 2), "(m,) or (m, d_v)")
    if isinstance(keys, torch.Tensor) and values.shape[0] != keys.shape[0]:
        raise ValueError(f"keys and values must come in pairs; got {keys.shape[0]} keys "
                         f"(shape {tuple(keys.shape)}) and {values.shape[0]} values "
                         f"(shape {tuple(values.shape)})")
    weights = kernel_weights(queries, keys, kernel, bandwidth, mask=mask)
    if values.dtype != weights.dtype:
        raise TypeError(f"values must have the dtype of the keys ({weights.dtype}); got "
                        f"{values.dtype}")
    return weights @ values, weights


class NadarayaWatson(nn.Module):
    """Nadaraya-Watson regression with a learnable bandwidth.

    The bandwidth is stored as its logarithm, ``h = exp(log_bandwidth)``, so gradient descent
    can move it freely and it always stays positive.

    ``forward(queries, keys, values, exclude_self=False)`` returns the predictions, shaped as
    in :func:`nadaraya_watson`. With ``exclude_self=True`` (which needs n == m: the queries are
    the keys) query i may not attend to key i: the leave-one-out estimate. Train the bandwidth
    on the training set this way. Otherwise every point sees its own label, and the training
    loss falls to 0 as ``h -> 0``: each point then predicts its own (noisy) value, so the
    bandwidth collapses to memorise the data instead of smoothing it.
    """

    def __init__(self, bandwidth: float = 1.0, kernel: str = "gaussian"):
        super().__init__()
        _check_kernel(kernel)
        self.kernel = kernel
        self.log_bandwidth = nn.Parameter(torch.tensor(math.log(_check_bandwidth(bandwidth))))

    @property
    def bandwidth(self) -> torch.Tensor:
        """The bandwidth ``h`` as a 0-d tensor (differentiable)."""
        return self.log_bandwidth.exp()

    def forward(self, queries, keys, values, exclude_self: bool = False) -> torch.Tensor:
        mask = None
        if exclude_self:
            q, k = _check_points(queries, keys)
            if q.shape[0] != k.shape[0]:
                raise ValueError("exclude_self=True needs as many queries as keys (the queries "
                                 f"are the keys); got queries of shape {tuple(queries.shape)} "
                                 f"and keys of shape {tuple(keys.shape)}")
            mask = leave_one_out_mask(k.shape[0], device=k.device)
        return nadaraya_watson(queries, keys, values, self.kernel, self.bandwidth, mask=mask)[0]

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, bandwidth={self.bandwidth.item():.4g}"


def fit_bandwidth(keys, values, *, bandwidth: float = 1.0, kernel: str = "gaussian",
                  steps: int = 100, lr: float = 0.05,
                  exclude_self: bool = True) -> tuple[NadarayaWatson, list[float]]:
    """Learn the bandwidth by gradient descent (Adam on ``log h``) on the training set.

    The loss is the mean squared error of predicting each value from the others
    (leave-one-out; ``exclude_self=False`` shows why that matters: h collapses).

    Args:
        keys: (m, d) or (m,) training inputs; values: (m,) or (m, d_v) training targets.
        bandwidth: the starting bandwidth; steps: number of Adam steps; lr: its step size.

    Returns:
        ``(model, losses)``: the trained :class:`NadarayaWatson` (its ``.bandwidth`` is the
        learned h) and the ``steps + 1`` losses, before each step and after the last one.

    Only the gaussian and epanechnikov kernels are accepted: the boxcar weights are piecewise
    constant in h and the constant kernel's do not depend on h, so there is no gradient.
    """
    if kernel not in ("gaussian", "epanechnikov"):
        raise ValueError(f"fit_bandwidth needs a kernel that is differentiable in the bandwidth "
                         f"(gaussian or epanechnikov); got {kernel!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int; got {steps!r}")
    _check_points(keys, keys)
    model = NadarayaWatson(bandwidth, kernel).to(keys.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps + 1):
        loss = (model(keys, keys, values, exclude_self=exclude_self) - values).pow(2).mean()
        losses.append(loss.item())
        if step == steps:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, losses


class RegressionData(NamedTuple):
    """A 1-D regression problem: sorted noisy training pairs and a test grid."""

    x_train: torch.Tensor  # (n_train,) sorted inputs in [0, 5)
    y_train: torch.Tensor  # (n_train,) regression_target(x_train) + noise
    x_test: torch.Tensor  # (n_test,) evenly spaced inputs in [0, 5)
    y_test: torch.Tensor  # (n_test,) regression_target(x_test) + noise
    truth_test: torch.Tensor  # (n_test,) regression_target(x_test), noiseless


def regression_target(x: torch.Tensor) -> torch.Tensor:
    """The smooth function to recover, ``f(x) = 2 sin(x) + x^0.8`` (x >= 0; same shape out)."""
    return 2 * torch.sin(x) + x**0.8


def make_regression_data(n_train: int, n_test: int, noise: float = 0.5,
                         generator: torch.Generator | None = None) -> RegressionData:
    """Sample the 1-D problem: training inputs uniform on [0, 5), Gaussian noise of std ``noise``.

    All tensors use the default dtype (float32 unless changed); see :class:`RegressionData`.
    """
    for name, count in (("n_train", n_train), ("n_test", n_test)):
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError(f"{name} must be a positive int; got {count!r}")
    if not noise >= 0:
        raise ValueError(f"noise must be non-negative; got {noise!r}")
    x_train = torch.sort(5 * torch.rand(n_train, generator=generator)).values
    x_test = torch.arange(n_test) * (5 / n_test)
    noisy = [regression_target(x) + noise * torch.randn(len(x), generator=generator)
             for x in (x_train, x_test)]
    return RegressionData(x_train, noisy[0], x_test, noisy[1], regression_target(x_test))
