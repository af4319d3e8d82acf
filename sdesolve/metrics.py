r"""Sample-quality metrics against an exact target: moments, mixture weights, two-sample distances.

Used by ``sdesolve sample`` and reusable in tests: every function takes samples ``[n, d]`` (events are
flattened) and returns Python floats or small tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .analytic import GaussianMixture

__all__ = ["moment_errors", "mode_weight_errors", "sliced_wasserstein", "energy_distance"]


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1).double()


def moment_errors(x: Tensor, mean: Tensor, cov: Tensor) -> dict[str, float]:
    r"""Mean and covariance errors of samples ``x`` ``[n, *event]`` against an exact ``mean`` ``[d]``, ``cov`` ``[d, d]``.

    Returns ``{"mean_err": ‖x̄ - μ‖₂, "cov_err": ‖Σ̂ - Σ‖_F / ‖Σ‖_F}``.
    """
    x = _flat(x)
    mean, cov = mean.reshape(-1).double(), cov.double()
    return {
        "mean_err": float((x.mean(0) - mean).norm()),
        "cov_err": float((torch.cov(x.T).reshape(cov.shape) - cov).norm() / cov.norm()),
    }


def mixture_cov(mix: GaussianMixture) -> Tensor:
    r"""Exact covariance of a mixture: $\sum_k w_k(\Sigma_k + \mu_k\mu_k^\top) - \mu\mu^\top$, ``[d, d]``."""
    m = mix.means.reshape(mix.means.shape[0], -1).double()
    w = mix.weights.double()
    var = mix.component_vars.expand_as(mix.means).reshape(m.shape).double()
    second = torch.einsum("k,ki,kj->ij", w, m, m) + torch.diag((w[:, None] * var).sum(0))
    mu = w @ m
    return second - torch.outer(mu, mu)


def mode_weight_errors(x: Tensor, mix: GaussianMixture) -> Tensor:
    """Empirical weight of each component (samples assigned by maximum responsibility) minus its exact weight, ``[K]``.

    With well-separated modes the assignment is nearly exact; the expected error of a perfect sampler is
    then ``±sqrt(w(1 - w)/n)``.
    """
    lp = mix.component_log_probs(x.to(mix.means), mix.means.unsqueeze(0), mix.component_vars.unsqueeze(0))
    counts = torch.bincount(lp.argmax(1), minlength=mix.weights.shape[0]).double()
    return counts / x.shape[0] - mix.weights.double()


def sliced_wasserstein(x: Tensor, y: Tensor, n_proj: int = 128, generator: torch.Generator | None = None) -> float:
    r"""Sliced 2-Wasserstein distance $\big(\mathbb E_\theta W_2^2(\theta^\top x, \theta^\top y)\big)^{1/2}$.

    Random directions on the sphere; 1-D $W_2$ by sorting (equal sample sizes required).
    """
    x, y = _flat(x), _flat(y)
    if x.shape != y.shape:
        raise ValueError(f"sliced_wasserstein needs equal sample shapes, got {tuple(x.shape)} and {tuple(y.shape)}")
    theta = torch.randn(x.shape[1], n_proj, generator=generator, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, py = (x @ theta).sort(0).values, (y @ theta).sort(0).values
    return float(((px - py) ** 2).mean().sqrt())


def energy_distance(x: Tensor, y: Tensor, max_n: int = 4000) -> float:
    r"""Energy distance $2\mathbb E\|X - Y\| - \mathbb E\|X - X'\| - \mathbb E\|Y - Y'\|$ (Székely & Rizzo 2013).

    V-statistic on the first ``max_n`` samples of each (cost ``O(max_n²)``).
    """
    x, y = _flat(x)[:max_n], _flat(y)[:max_n]
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())
