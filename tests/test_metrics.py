"""Metrics: exact cases of the distances, and exact samples scoring within their standard errors."""

import math

import torch

from sdesolve.metrics import energy_distance, mixture_cov, mode_weight_errors, moment_errors, sliced_wasserstein
from sdesolve.problems import ring_mixture


def test_exact_mixture_sample_is_within_standard_errors():
    mix = ring_mixture(torch.float64)
    x = mix.sample(20000, generator=torch.Generator().manual_seed(0))
    cov = mixture_cov(mix)
    torch.testing.assert_close(torch.diagonal(cov), mix.std**2)
    m = moment_errors(x, mix.mean, cov)
    assert m["mean_err"] < 4 * math.sqrt(float(torch.trace(cov)) / 20000)
    assert m["cov_err"] < 4 * math.sqrt(2 / 20000)
    w = mix.weights
    assert bool((mode_weight_errors(x, mix).abs() < 4 * (w * (1 - w) / 20000).sqrt()).all())


def test_distances_on_known_cases():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 4, generator=g, dtype=torch.float64)
    assert energy_distance(x, x) == 0.0 and sliced_wasserstein(x, x) == 0.0
    # Shift by c e_1: every projection shifts by c θ_1, so SW² = c² E[θ_1²] = c²/d (up to direction sampling).
    sw = sliced_wasserstein(x, x + torch.tensor([2.0, 0, 0, 0]), n_proj=4000, generator=g)
    assert abs(sw - 2.0 / math.sqrt(4)) < 0.05
    assert energy_distance(x, x + 1.0) > 10 * energy_distance(x, torch.randn(5000, 4, generator=g, dtype=torch.float64))
