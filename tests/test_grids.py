"""Time grids: shape and end points, the noise-level laws they are built on, validation."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sdesolve import VESDE, VPSDE, SubVPSDE, cosine_grid, karras_grid, log_sigma_grid, make_grid, uniform_grid
from sdesolve.grids import noise_level

SDES = [VESDE(), VPSDE(), SubVPSDE()]
GRID_FNS = [uniform_grid, log_sigma_grid, karras_grid, cosine_grid]


@given(sde=st.sampled_from(SDES), fn=st.sampled_from(GRID_FNS), steps=st.integers(1, 300), eps=st.floats(1e-5, 0.5))
def test_grid_has_steps_plus_one_decreasing_points_from_T_to_eps(sde, fn, steps, eps):
    g = fn(sde, steps, eps, dtype=torch.float64)
    assert g.shape == (steps + 1,) and g.ndim == 1
    assert float(g[0]) == sde.T and float(g[-1]) == pytest.approx(eps, rel=1e-12)
    assert bool((g[1:] < g[:-1]).all())


def test_uniform_grid_spacing():
    g = uniform_grid(VPSDE(), 10, 1e-3, dtype=torch.float64)
    torch.testing.assert_close(g[:-1] - g[1:], torch.full((10,), (1 - 1e-3) / 10, dtype=torch.float64))


@pytest.mark.parametrize("sde", SDES)
def test_log_sigma_grid_is_geometric_in_noise_level(sde):
    g = log_sigma_grid(sde, 20, 1e-3, dtype=torch.float64)
    log_levels = noise_level(sde, g).log()
    d = log_levels[:-1] - log_levels[1:]
    torch.testing.assert_close(d, d.mean().expand(20), rtol=1e-9, atol=1e-12)


def test_log_sigma_grid_is_uniform_for_ve():
    sde = VESDE()
    torch.testing.assert_close(
        log_sigma_grid(sde, 30, 1e-3, dtype=torch.float64), uniform_grid(sde, 30, 1e-3, dtype=torch.float64)
    )


@pytest.mark.parametrize("sde", SDES)
def test_karras_grid_is_linear_in_level_to_the_one_over_rho(sde):
    # Karras et al. 2022, eq. 5 with rho = 7; for VE the levels are σ(t) itself.
    g = karras_grid(sde, 18, 1e-3, dtype=torch.float64)
    r = noise_level(sde, g) ** (1 / 7)
    d = r[:-1] - r[1:]
    torch.testing.assert_close(d, d.mean().expand(18), rtol=1e-8, atol=1e-12)
    if isinstance(sde, VESDE):
        s = torch.tensor([sde.sigma_max, sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** 1e-3], dtype=torch.float64)
        i = torch.arange(19, dtype=torch.float64) / 18
        expected = (s[0] ** (1 / 7) + i * (s[1] ** (1 / 7) - s[0] ** (1 / 7))) ** 7
        torch.testing.assert_close(sde.std(g), expected, rtol=1e-9, atol=0)
        assert math.isclose(float(g[-1]), 1e-3)


@pytest.mark.parametrize("sde", SDES)
@pytest.mark.parametrize("sigma_data", [0.5, 1.0, 2.0])
def test_cosine_grid_is_uniform_in_the_angle_of_the_noise_level(sde, sigma_data):
    # Nichol & Dhariwal 2021: α = cos θ, σ = sin θ, so σ̃ = tan θ and a uniform t grid is uniform in θ = arctan σ̃
    g = cosine_grid(sde, 12, 1e-3, sigma_data=sigma_data, dtype=torch.float64)
    theta = torch.atan(noise_level(sde, g) / sigma_data)
    d = theta[:-1] - theta[1:]
    torch.testing.assert_close(d, d.mean().expand(12), rtol=1e-9, atol=1e-12)
    if sigma_data == 1.0:  # the name's default
        torch.testing.assert_close(make_grid("cosine", sde, 12, 1e-3, dtype=torch.float64), g, rtol=0, atol=0)
    # shortest steps in λ = -log σ̃ where σ̃ ≈ σ_d: the density 1/(2 cosh(λ - λ_d)) peaks at λ_d = -log σ_d
    lam = -noise_level(sde, g).log()
    mid = 0.5 * (lam[1:] + lam[:-1])
    shortest = int((lam[1:] - lam[:-1]).argmin())
    assert abs(float(mid[shortest]) + math.log(sigma_data)) < float(lam[shortest + 1] - lam[shortest])
    with pytest.raises(ValueError, match="sigma_data"):
        cosine_grid(sde, 4, 1e-3, sigma_data=0.0)


def test_make_grid_accepts_names_and_tensors_and_rejects_bad_ones():
    sde = VPSDE()
    assert make_grid(None, sde, 4, 1e-3).shape == (5,)
    assert make_grid("karras", sde, 4, 1e-3).shape == (5,)
    t = torch.tensor([1.0, 0.5, 0.1])
    assert make_grid(t, sde, 1, 1e-3) is t or torch.equal(make_grid(t, sde, 1, 1e-3), t)
    with pytest.raises(ValueError, match="choose one of: uniform, log_sigma, karras, logsnr, cosine"):
        make_grid("quadratic", sde, 4, 1e-3)
    with pytest.raises(ValueError, match="strictly decreasing"):
        make_grid(torch.tensor([0.1, 0.5]), sde, 1, 1e-3)
    with pytest.raises(ValueError, match="1-D"):
        make_grid(torch.ones(2, 2), sde, 1, 1e-3)
    with pytest.raises(ValueError, match=r"\[0, T\]"):
        make_grid(torch.tensor([2.0, 0.5]), sde, 1, 1e-3)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        uniform_grid(sde, 0)
    with pytest.raises(ValueError, match="eps must be < T"):
        uniform_grid(sde, 4, eps=1.0)
