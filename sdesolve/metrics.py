r"""Sample-quality metrics against an exact target: moments, mixture weights, two-sample distances.

Used by ``sdesolve sample`` and reusable in tests: every function takes samples ``[n, d]`` (events are
flattened) and returns Python floats or small tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .analytic import GaussianMixture

__all__ = ["moment_errors", "mode_weight_errors", "sliced_wasserstein", "energy_distance", "frechet_distance"]


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


def frechet_distance(x: Tensor, y: Tensor) -> float:
    r"""Fréchet distance of the Gaussians fitted to two samples (FID's formula, Heusel et al. 2017).

    $\|\mu_x - \mu_y\|^2 + \operatorname{tr}\big(\Sigma_x + \Sigma_y - 2(\Sigma_x^{1/2}\Sigma_y\Sigma_x^{1/2})^{1/2}\big)$
    on features ``[n, d]``; the trace of the root is taken from the eigenvalues of the symmetric PSD product
    (``eigh`` in float64), which equals pytorch-fid's ``tr sqrtm(Σ_x Σ_y)`` without its complex round-off.
    """
    x, y = _flat(x), _flat(y)
    if x.shape[1] != y.shape[1] or min(x.shape[0], y.shape[0]) < 2:
        raise ValueError(
            f"frechet_distance needs [n, d] samples with equal d and n >= 2, got {tuple(x.shape)}, {tuple(y.shape)}"
        )
    cx, cy = torch.cov(x.T).reshape(x.shape[1], -1), torch.cov(y.T).reshape(y.shape[1], -1)
    ex, vx = torch.linalg.eigh(cx)
    root_x = (vx * ex.clamp_min(0).sqrt()) @ vx.T  # PSD round-off only: eigenvalues are >= 0 in exact arithmetic
    inner = torch.linalg.eigvalsh(root_x @ cy @ root_x).clamp_min(0)
    return float((x.mean(0) - y.mean(0)).square().sum() + cx.trace() + cy.trace() - 2 * inner.sqrt().sum())
