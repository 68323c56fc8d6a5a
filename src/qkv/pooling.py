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

from qkv.checks import check_count, check_positive
from qkv.lookup import (_check_points, _check_table, _check_weight_mask, _squared_distances,
                        soft_weights)

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


def _check_bandwidth(bandwidth):
    """Return the bandwidth as a float or a 0-d tensor, after checking it is positive and finite."""
    bandwidth = check_positive("bandwidth", bandwidth)
    h = bandwidth.item() if isinstance(bandwidth, torch.Tensor) else bandwidth
    if not 0 < 2 * h * h < math.inf:  # the soft lookup's temperature 2 h^2 must be usable too
        raise ValueError(f"bandwidth must keep 2 h^2 positive and finite; got {h!r}")
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


def gaussian_scores(queries, keys, bandwidth) -> torch.Tensor:
    """Attention scores of the Gaussian kernel: ``-||q - k||^2 / (2 h^2)``, shape (n, m).

    ``softmax`` over the keys turns them into the Gaussian Nadaraya-Watson weights: they are
    chapter 1's soft-lookup scores at the temperature ``2 h^2``.
    """
    q, k = _check_points(queries, keys)
    h = _check_bandwidth(bandwidth)
    return -_squared_distances(q, k) / (2 * h**2)


def leave_one_out_mask(n: int, device=None) -> torch.Tensor:
    """(n, n) bool mask, True where query i may attend to key j, i.e. everywhere but i == j."""
    check_count("n", n)
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

    The Gaussian weights are chapter 1's soft-lookup weights at the temperature ``2 h^2``
    (:func:`qkv.lookup.soft_weights`), the softmax of :func:`gaussian_scores`. That equals the
    normalised ``exp(-u^2/2)`` exactly, but the softmax subtracts the largest score first, so
    the nearest key always gets a weight of order 1: tiny bandwidths never underflow to 0/0
    (as long as ``||q - k||^2 / h^2`` itself stays finite in the dtype).
    """
    q, k = _check_points(queries, keys)
    _check_kernel(kernel)
    h = _check_bandwidth(bandwidth)
    _check_weight_mask(mask, len(q), len(k))
    if kernel == "gaussian":  # chapter 1's soft lookup, at the temperature 2 h^2
        return soft_weights(q, k, temperature=2 * h**2, mask=mask)
    unnormalised = _PROFILES[kernel](_squared_distances(q, k) / h**2)  # K(u), from u^2
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
    _check_table(queries, keys, values)
    weights = kernel_weights(queries, keys, kernel, bandwidth, mask=mask)  # (n, m)
    return weights @ values, weights


def _self_excluded(queries, keys) -> torch.Tensor:
    """The leave-one-out mask (n, n) for queries that are the keys themselves."""
    q, k = _check_points(queries, keys)
    if q.shape[0] != k.shape[0]:
        raise ValueError("exclude_self=True needs as many queries as keys (the queries are the "
                         f"keys); got queries of shape {tuple(queries.shape)} and keys of shape "
                         f"{tuple(keys.shape)}")
    return leave_one_out_mask(k.shape[0], device=k.device)


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
        mask = _self_excluded(queries, keys) if exclude_self else None
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
    check_count("steps", steps, minimum=0)
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
    check_count("n_train", n_train)
    check_count("n_test", n_test)
    if not noise >= 0:
        raise ValueError(f"noise must be non-negative; got {noise!r}")
    x_train = torch.sort(5 * torch.rand(n_train, generator=generator)).values
    x_test = torch.arange(n_test) * (5 / n_test)
    noisy = [regression_target(x) + noise * torch.randn(len(x), generator=generator)
             for x in (x_train, x_test)]
    return RegressionData(x_train, noisy[0], x_test, noisy[1], regression_target(x_test))
