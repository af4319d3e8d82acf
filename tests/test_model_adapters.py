r"""Ecosystem models as score functions: DDPM's discrete schedule (diffusers) and k-diffusion denoisers.

Ground truth: the exact score of Gaussian data under each SDE; exact "models" in each parameterisation are built
here from the closed form $x_{\rm in} \sim \mathcal N(\sqrt{\bar\alpha}\mu, \bar\alpha s^2 + 1 - \bar\alpha)$, with the
timestep → log-SNR interpolation done independently by ``numpy.interp``.
"""

import numpy as np
import pytest
import torch

from sdesolve import VESDE, VPSDE, Gaussian, SubVPSDE
from sdesolve.adapters import DDPMTimeMap, denoiser_from_score, score_from_ddpm, score_from_denoiser

diffusers_models = pytest.importorskip("sdesolve.diffusers_models")

MU, S = 0.3, 0.5
DATA = Gaussian(torch.full((3,), MU, dtype=torch.float64), S)
CONFIG = {"num_train_timesteps": 1000, "beta_start": 1e-4, "beta_end": 0.02, "beta_schedule": "linear"}
SDES = [VPSDE(), SubVPSDE(), VESDE()]


def _x_t(n: int = 16):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, generator=g, dtype=torch.float64), torch.rand(
        n, generator=g, dtype=torch.float64
    ) * 0.9 + 0.05


def test_linear_ddpm_schedule_is_the_vp_sde_at_t_equal_i_plus_1_over_n():
    r"""$\log\bar\alpha_i - \log\alpha((i+1)/N)^2 = -\tfrac12\sum_{j\le i}\beta_j^2 + (\int_0^{t_i}\beta - \sum_{j\le i}\beta_j) + r_i$.

    The first two terms are the stated mapping's error (log(1-β) = -β - β²/2 - …, and the Riemann sum of the
    linear β against its integral); the rest obeys $|r_i| \le \sum_j \beta_j^3/(3(1-\beta_j))$ plus diffusers'
    float32 cumulative product (N roundings of 2⁻²⁴ relative each).
    """
    sde = diffusers_models.vp_sde_from_ddpm(CONFIG)
    assert (sde.beta_min, sde.beta_max, sde.N) == (pytest.approx(0.1), pytest.approx(20.0), 1000)
    n = 1000
    log_acp = diffusers_models.ddpm_alphas_cumprod(CONFIG).log()
    betas = torch.linspace(1e-4, 0.02, n, dtype=torch.float64)
    t = torch.arange(1, n + 1, dtype=torch.float64) / n
    integral = 0.1 * t + (20.0 - 0.1) * t**2 / 2
    predicted = -0.5 * torch.cumsum(betas**2, 0) + integral - torch.cumsum(betas, 0)
    residual = log_acp - 2 * sde.log_mean_coeff(t) - predicted
    bound = torch.cumsum(betas**3 / (3 * (1 - betas)), 0) + n * 2.0**-24
    assert bool((residual.abs() <= bound).all())
    assert float((log_acp - 2 * sde.log_mean_coeff(t)).abs().max()) > 10 * float(bound.max())  # the terms matter


OTHER_SCHEDULES = [
    {"beta_schedule": "squaredcos_cap_v2"},
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},  # Stable Diffusion's
    {"trained_betas": np.linspace(1e-4, 0.03, 1000).tolist()},
]


@pytest.mark.parametrize("schedule", OTHER_SCHEDULES, ids=["squaredcos_cap_v2", "scaled_linear", "trained_betas"])
def test_any_ddpm_table_becomes_an_sde_with_its_alphas_at_the_training_timesteps(schedule):
    config = {**CONFIG, **schedule, "prediction_type": "epsilon"}
    acp = diffusers_models.ddpm_alphas_cumprod(config)
    sde = diffusers_models.vp_sde_from_ddpm(config)
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    torch.testing.assert_close(sde.alpha(t) ** 2, acp, rtol=1e-12, atol=0)  # float64 exp/log round-off only
    torch.testing.assert_close(sde.alpha(t) ** 2 + sde.sigma(t) ** 2, torch.ones_like(t), rtol=0, atol=1e-15)
    # the derivatives are those of the interpolant: central differences inside one linear piece of log abar, whose
    # round-off is eps_64 * |value| / h = 2.2e-9 for values <= 1 (the h^2 truncation is far below): atol 1e-8
    mid, h = torch.tensor([0.1234, 0.5005, 0.8765], dtype=torch.float64), 1e-7
    for value, slope in ((sde.alpha, sde.d_alpha), (sde.sigma, sde.d_sigma)):
        central = (value(mid + h) - value(mid - h)) / (2 * h)
        torch.testing.assert_close(slope(mid), central, rtol=1e-6, atol=1e-8)
    # with the exact epsilon model of Gaussian data the adapter gives the exact score of this SDE
    x, t = _x_t()
    score_fn = score_from_ddpm(_exact_ddpm_model(acp, "epsilon"), acp, sde, "epsilon")
    torch.testing.assert_close(score_fn(x, t), DATA.score_fn(sde)(x, t), rtol=1e-8, atol=1e-8)


def test_a_zero_snr_table_is_refused_by_name():
    # rescale_betas_zero_snr ends at alphas_cumprod = 0: an infinite noise level, no finite log-SNR
    with pytest.raises(ValueError, match="strictly decreasing"):
        diffusers_models.vp_sde_from_ddpm({**CONFIG, "beta_schedule": "scaled_linear", "rescale_betas_zero_snr": True})


def test_time_map_is_exact_at_ddpm_grid_points_and_inverts():
    acp = diffusers_models.ddpm_alphas_cumprod(CONFIG)
    tm = DDPMTimeMap(acp)
    grid = torch.arange(1000, dtype=torch.float64)
    torch.testing.assert_close(torch.sigmoid(tm.log_snr(grid)), acp, rtol=1e-12, atol=0)
    torch.testing.assert_close(tm.timestep(tm.log_snrs), grid, rtol=0, atol=1e-9)
    tau = torch.tensor([-3.0, -0.4, 0.5, 417.25, 998.9, 1001.5], dtype=torch.float64)  # beyond the ends: extrapolated
    torch.testing.assert_close(tm.timestep(tm.log_snr(tau)), tau, rtol=0, atol=1e-9)


def test_time_map_validates_its_table():
    with pytest.raises(ValueError, match="strictly decreasing"):
        DDPMTimeMap(torch.tensor([0.5, 0.6, 0.1]))


def _exact_ddpm_model(acp: torch.Tensor, prediction_type: str):
    table = (acp.log() - torch.log1p(-acp)).numpy()

    def model(x_in, timestep):
        ell = torch.from_numpy(np.interp(timestep.numpy(), np.arange(len(table)), table))[:, None]
        abar = torch.sigmoid(ell)
        score = -(x_in - abar.sqrt() * MU) / (abar * S**2 + 1 - abar)
        eps = -(1 - abar).sqrt() * score
        x0 = (x_in - (1 - abar).sqrt() * eps) / abar.sqrt()
        return {"epsilon": eps, "sample": x0, "v_prediction": abar.sqrt() * eps - (1 - abar).sqrt() * x0}[
            prediction_type
        ]

    return model


@pytest.mark.parametrize("sde", SDES, ids=repr)
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v_prediction"])
def test_ddpm_adapter_gives_the_exact_score_in_each_parameterisation(sde, prediction_type):
    acp = diffusers_models.ddpm_alphas_cumprod(CONFIG)
    x, t = _x_t()
    score_fn = score_from_ddpm(_exact_ddpm_model(acp, prediction_type), acp, sde, prediction_type)
    torch.testing.assert_close(score_fn(x, t), DATA.score_fn(sde)(x, t), rtol=1e-8, atol=1e-8)


def test_unet_adapter_feeds_ddpm_timesteps_at_ddpm_noise_levels():
    """At the SDE time whose ᾱ is DDPM's ᾱ_i (found by bisection), the UNet sees timestep i and unscaled x."""
    acp = diffusers_models.ddpm_alphas_cumprod(CONFIG).double()
    sde = diffusers_models.vp_sde_from_ddpm(CONFIG)
    seen = {}

    class Unet(torch.nn.Module):
        def forward(self, x, timestep):
            seen["x"], seen["t"] = x, timestep
            return type("Out", (), {"sample": torch.zeros_like(x)})()

    steps = torch.tensor([0, 10, 500, 990])  # ᾱ_999 = 4.0e-5 lies below α(T)² = 4.3e-5: no SDE time has it
    lo, hi = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    for _ in range(80):  # solve α(t)² = ᾱ_i
        mid = (lo + hi) / 2
        above = (2 * sde.log_mean_coeff(mid)).exp() > acp[steps]
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    x = torch.randn(4, 1, 2, 2, dtype=torch.float64)
    diffusers_models.score_from_unet(Unet(), {**CONFIG, "prediction_type": "epsilon"})(x, lo)
    torch.testing.assert_close(seen["t"], steps.double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(seen["x"], x)


def test_ddpm_adapter_refuses_wrong_shapes_and_prediction_types():
    acp = diffusers_models.ddpm_alphas_cumprod(CONFIG)
    x, t = _x_t(4)
    with pytest.raises(ValueError, match="prediction_type"):
        score_from_ddpm(lambda x, t: x, acp, VPSDE(), "velocity")
    with pytest.raises(ValueError, match="shape"):
        score_from_ddpm(lambda x, t: x[:, :2], acp, VPSDE())(x, t)


def _exact_denoiser(x_tilde, sigma):
    """E[x0 | x0 + σ̃ n] for Gaussian data: μ + s²/(s² + σ̃²)(x̃ - μ)."""
    return MU + S**2 / (S**2 + sigma[:, None] ** 2) * (x_tilde - MU)


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_k_diffusion_denoiser_to_score_and_back(sde):
    x, t = _x_t()
    exact = DATA.score_fn(sde)
    torch.testing.assert_close(score_from_denoiser(_exact_denoiser, sde)(x, t), exact(x, t), rtol=1e-9, atol=1e-9)
    denoiser = denoiser_from_score(exact, sde)
    sigma = sde.std(t) / sde.mean_coeff(t)
    torch.testing.assert_close(denoiser(x, sigma), _exact_denoiser(x, sigma), rtol=1e-8, atol=1e-8)


def test_denoiser_refuses_sigma_outside_the_sde_range():
    denoiser = denoiser_from_score(DATA.score_fn(VESDE()), VESDE())
    with pytest.raises(ValueError, match="sigma must lie"):
        denoiser(torch.zeros(2, 3, dtype=torch.float64), torch.tensor([1.0, 80.0], dtype=torch.float64))


def _k_diffusion_sampling():
    """k-diffusion's own ``sampling.py``, loaded without its package ``__init__`` (`benchmarks._kdiffusion`)."""
    from benchmarks._kdiffusion import load_sampling

    module = load_sampling()
    if module is None:
        pytest.skip("k-diffusion not installed (pip install --no-deps k-diffusion)")
    return module


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=repr)
def test_k_diffusion_heun_on_our_denoiser_converges_at_order_2_to_the_exact_flow(sde):
    """k-diffusion's ``sample_heun`` (Karras Alg. 1) driving `denoiser_from_score` of the exact score, against
    `Gaussian.flow` (exact): the fitted order over 16-128 steps on the Karras grid is 2 ± 0.15."""
    from sdesolve.grids import karras_grid, noise_level
    from sdesolve.verify import fit_order

    kd = _k_diffusion_sampling()
    eps = 1e-3
    x_T = DATA.marginal(sde, sde.T).sample(64, generator=torch.Generator().manual_seed(0))
    exact = DATA.flow(sde, x_T, sde.T, eps)
    denoiser = denoiser_from_score(DATA.score_fn(sde), sde)
    alpha_T, alpha_eps = (float(sde.mean_coeff(torch.tensor(t, dtype=torch.float64))) for t in (sde.T, eps))
    steps, errors = [16, 32, 64, 128], []
    for n in steps:
        sigmas = noise_level(sde, karras_grid(sde, n, eps=eps, dtype=torch.float64))
        x = kd.sample_heun(denoiser, x_T / alpha_T, sigmas, disable=True) * alpha_eps
        errors.append(float((x - exact).abs().max()))
    assert abs(fit_order(steps, errors).slope - 2.0) < 0.15, errors


def test_score_from_unet_is_reachable_from_the_root_without_importing_diffusers_early():
    # `import sdesolve` must not import diffusers (an optional extra); the root name resolves on first use
    import subprocess
    import sys

    code = ("import sys, sdesolve; assert 'diffusers' not in sys.modules; from sdesolve import score_from_unet, "
            "vp_sde_from_ddpm; assert score_from_unet.__module__ == 'sdesolve.diffusers_models'")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    with pytest.raises(AttributeError, match="no attribute 'score_from_nothing'"):
        import sdesolve

        sdesolve.score_from_nothing  # noqa: B018
