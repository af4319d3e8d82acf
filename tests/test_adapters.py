"""Score adapters: exact ε / x0 / σ-conditioned models give back the exact score."""

from types import SimpleNamespace

import pytest
import torch

from sdesolve import VESDE, VPSDE, Gaussian, SubVPSDE, score_from_eps, score_from_sigma_model, score_from_x0

DATA = Gaussian(torch.full((3,), 0.3, dtype=torch.float64), 0.5)


def _x_t():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, generator=g, dtype=torch.float64), torch.rand(
        8, generator=g, dtype=torch.float64
    ) * 0.9 + 0.05


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()])
def test_eps_and_x0_models_give_the_exact_score(sde):
    x, t = _x_t()
    score = DATA.score_fn(sde)(x, t)
    sigma, alpha = sde.std(t)[:, None], sde.mean_coeff(t)[:, None]
    eps_model = lambda x, t: -sde.std(t)[:, None] * DATA.score_fn(sde)(x, t)  # noqa: E731 — ε = -σ ∇log p
    x0_model = lambda x, t: (x + sigma**2 * score) / alpha  # noqa: E731 — Tweedie E[x0 | x_t]
    torch.testing.assert_close(score_from_eps(eps_model, sde)(x, t), score, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(score_from_x0(x0_model, sde)(x, t), score, rtol=1e-10, atol=1e-10)


def test_sigma_model_is_called_with_sigma_of_t_and_unwrapped():
    sde = VESDE()
    x, t = _x_t()
    seen = {}

    def model(x, sigma):
        seen["sigma"] = sigma
        return SimpleNamespace(sample=-x / (0.25 + sigma[:, None] ** 2))

    out = score_from_sigma_model(model, sde)(x, t)
    torch.testing.assert_close(seen["sigma"], sde.std(t))
    torch.testing.assert_close(out, -x / (0.25 + sde.std(t)[:, None] ** 2))


def test_eps_adapter_unwraps_sample_and_broadcasts_scalar_time():
    sde = VPSDE()
    x = torch.ones(4, 3, dtype=torch.float64)
    s = score_from_eps(lambda x, t: SimpleNamespace(sample=torch.ones_like(x)), sde)(x, 0.5)
    torch.testing.assert_close(s, -torch.ones_like(x) / sde.std(torch.tensor(0.5, dtype=torch.float64)))


def test_adapters_need_a_linear_sde():
    with pytest.raises(TypeError, match="LinearSDE"):
        score_from_eps(lambda x, t: x, VPSDE().reverse(lambda x, t: x))
