"""Embedded analytic problems for the CLI, examples and benchmarks (exact score and density for every t)."""

from __future__ import annotations

import math

import torch

from .analytic import Gaussian, GaussianMixture

__all__ = ["ring_mixture", "gaussian_data", "PROBLEMS"]


def ring_mixture(dtype: torch.dtype = torch.float32, device=None) -> GaussianMixture:
    """The default 2-D target: 8 isotropic modes (std 0.2) on a ring of radius 2, weights ∝ 1, 2, …, 8."""
    angles = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    means = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
    mix = GaussianMixture(torch.arange(1, 9, dtype=torch.float64), means, torch.full((8,), 0.2, dtype=torch.float64))
    return mix.to(device=device, dtype=dtype)


def gaussian_data(dim: int = 2, dtype: torch.dtype = torch.float32, device=None) -> Gaussian:
    """Isotropic Gaussian data N(0.3, 0.5²) in ``dim`` dimensions, the issues' reference case."""
    return Gaussian(torch.full((dim,), 0.3, dtype=dtype, device=device), 0.5)


PROBLEMS = {"mixture": ring_mixture, "gaussian": gaussian_data}
