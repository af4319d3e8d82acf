"""Predictors: score_sde's VE formulas written out independently, DDPM posterior, registry, declared orders."""

import pytest
import torch

from sdesolve import PREDICTORS, VESDE, VPSDE, Gaussian, NoPredictor, get_predictor

DATA = Gaussian(torch.full((5,), 0.3, dtype=torch.float64), 0.5)


def _state(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(6, 5, generator=g, dtype=torch.float64) * 4, torch.randn(6, 5, generator=g, dtype=torch.float64)


def test_ve_reverse_diffusion_and_ancestral_equal_score_sde():
    # score_sde_pytorch (sampling.py) on a VE grid: sigma = σ(t), adjacent = σ(t_next);
    # reverse diffusion: x_mean = x + (σ² - σ'²) s, x = x_mean + sqrt(σ² - σ'²) z;
    # ancestral: x_mean = x + (σ² - σ'²) s, std = sqrt(σ'² (σ² - σ'²) / σ²).
    sde = VESDE()
    x, z = _state()
    t, tn = 0.6, 0.55
    s = DATA.score_fn(sde)(x, t)
    sig, sig_n = sde.std(torch.tensor(t, dtype=torch.float64)), sde.std(torch.tensor(tn, dtype=torch.float64))
    mean = x + (sig**2 - sig_n**2) * s
    rd = get_predictor("reverse_diffusion", sde).step(x, t, tn, DATA.score_fn(sde), noise=z)
    torch.testing.assert_close(rd[1], mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rd[0], mean + (sig**2 - sig_n**2).sqrt() * z, rtol=1e-12, atol=1e-12)
    an = get_predictor("ancestral", sde).step(x, t, tn, DATA.score_fn(sde), noise=z)
    torch.testing.assert_close(an[1], mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(
        an[0], mean + (sig_n**2 * (sig**2 - sig_n**2) / sig**2).sqrt() * z, rtol=1e-12, atol=1e-12
    )


def test_vp_ancestral_is_the_ddpm_posterior():
    # Ho et al. 2020 eq. 7 with β = 1 - ᾱ_t/ᾱ_t' and x̂0 = (x + σ_t² s)/α_t: mean c0 x̂0 + ct x_t, var β̃.
    sde = VPSDE()
    x, z = _state()
    t, tn = 0.4, 0.39
    T = lambda u: torch.tensor(u, dtype=torch.float64)  # noqa: E731
    abar, abar_n = sde.mean_coeff(T(t)) ** 2, sde.mean_coeff(T(tn)) ** 2
    beta = 1 - abar / abar_n
    x0 = (x + (1 - abar) * DATA.score_fn(sde)(x, t)) / abar.sqrt()
    mean = abar_n.sqrt() * beta / (1 - abar) * x0 + (1 - beta).sqrt() * (1 - abar_n) / (1 - abar) * x
    var = (1 - abar_n) / (1 - abar) * beta
    out = get_predictor("ancestral", sde).step(x, t, tn, DATA.score_fn(sde), noise=z)
    torch.testing.assert_close(out[1], mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out[0], mean + var.sqrt() * z, rtol=1e-10, atol=1e-12)


def test_euler_maruyama_step():
    sde = VPSDE()
    x, z = _state()
    t, tn = 0.5, 0.45
    tt = torch.tensor(t, dtype=torch.float64)
    beta = sde.beta(tt)
    drift = -0.5 * beta * x - beta * DATA.score_fn(sde)(x, t)
    out = get_predictor("euler_maruyama", sde).step(x, t, tn, DATA.score_fn(sde), noise=z)
    torch.testing.assert_close(out[0], x + drift * (tn - t) + (beta * (t - tn)).sqrt() * z, rtol=1e-12, atol=1e-12)


def test_registry_declared_orders_and_nfe():
    sde = VPSDE()
    assert set(PREDICTORS) >= {"euler_maruyama", "reverse_diffusion", "ancestral", "none", "pf_euler", "pf_heun"}
    orders = {name: (get_predictor(name, sde).weak_order, get_predictor(name, sde).nfe) for name in PREDICTORS}
    assert orders["pf_euler"] == (1.0, 1) and orders["pf_heun"] == (2.0, 2) and orders["pf_rk4"] == (4.0, 4)
    assert orders["euler_maruyama"][0] == orders["reverse_diffusion"][0] == orders["ancestral"][0] == 1.0
    assert isinstance(get_predictor(None, sde), NoPredictor) and orders["none"][1] == 0


def test_predictor_errors():
    sde = VPSDE()
    with pytest.raises(ValueError, match="choose one of: euler_maruyama, reverse_diffusion, ancestral, none"):
        get_predictor("ddim", sde)
    with pytest.raises(TypeError, match="predictor must be"):
        get_predictor(3, sde)
    with pytest.raises(ValueError, match="noise must have the sample's shape"):
        get_predictor("euler_maruyama", sde).step(torch.zeros(2, 3), 0.5, 0.4, lambda x, t: x, noise=torch.zeros(2))
    with pytest.raises(TypeError, match="LinearSDE"):
        get_predictor("ancestral", sde.reverse(lambda x, t: x))
