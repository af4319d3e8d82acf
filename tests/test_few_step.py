"""Few-step ODE solvers: parity with k-diffusion's own samplers, and orders measured on exact Gaussian flows.

Parity: the same σ̃ grid, the same start x̃_T = x_T/α(T) and a denoiser built from the same exact score, run
through k-diffusion's ``sampling.py`` (loaded alone, `benchmarks._kdiffusion`); both in float64, so they agree to
rounding (1e-10 relative leaves ~10^5 ulps for the ≤ 40 steps' different association of the same products).
Orders: the RMS error of the flow map from fixed prior samples against `Gaussian.flow` (exact, no Monte Carlo
error) or a tight Dormand–Prince solve (mixture), fitted over 4 step counts spanning 8× on the logSNR grid, ±0.1
(`sdesolve.few_step_orders`, the same studies as ``sdesolve verify``).
"""

import math

import pytest
import torch

import sdesolve as S
from benchmarks._kdiffusion import load_sampling
from sdesolve.few_step_orders import MIXTURE_METHODS, expected_flow_order, flow_errors, flow_steps
from sdesolve.grids import make_grid, noise_level
from sdesolve.problems import gaussian_data, ring_mixture
from sdesolve.solvers.exponential import exp_weights
from sdesolve.solvers.few_step import FEW_STEP
from sdesolve.verify import fit_order

KD = load_sampling()
SDES = {"vp": S.VPSDE(), "subvp": S.SubVPSDE(), "ve": S.VESDE()}
EPS = 1e-3


def _mixture() -> S.GaussianMixture:
    means = torch.tensor([[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]], dtype=torch.float64)
    return S.GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), means, torch.full((3,), 0.2))


def _kdiffusion(sampler, sde, score, t_grid: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
    """k-diffusion's ``sampler`` on σ̃ = σ/α of ``t_grid``, in x̃ = x/α, mapped back to x at the last time."""
    levels = noise_level(sde, t_grid)
    time_of = dict(zip(levels.tolist(), t_grid.tolist(), strict=True))
    alpha = sde.mean_coeff(t_grid)

    def denoiser(xt, sigma):  # D(x̃, σ̃) = (x + σ² s(x, t)) / α at x = α x̃ (Tweedie)
        t = torch.full((len(xt),), time_of[sigma[0].item()], dtype=torch.float64)
        a, s = sde.mean_coeff(t)[:, None], sde.std(t)[:, None]
        x = a * xt
        return (x + s**2 * score(x, t)) / a

    return sampler(denoiser, x_t / alpha[0], levels, disable=True) * alpha[-1]


@pytest.mark.skipif(KD is None, reason="k-diffusion not installed (pip install --no-deps k-diffusion)")
@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
@pytest.mark.parametrize(
    ("method", "sampler"),
    [("ddim", "sample_euler"), ("edm_heun", "sample_heun"), ("dpm_solver_pp_2m", "sample_dpmpp_2m")],
)
@pytest.mark.parametrize("grid", ["logsnr", "karras"])
def test_parity_with_kdiffusion(sde_name, method, sampler, grid):
    sde, data = SDES[sde_name], _mixture()
    score = data.score_fn(sde)
    x_t = sde.prior_sampling((16, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t_grid = make_grid(grid, sde, 12, EPS, dtype=torch.float64)
    ours = S.ode_sample(sde, score, x_t.shape, method=method, grid=t_grid, x_init=x_t)
    ref = _kdiffusion(getattr(KD, sampler), sde, score, t_grid, x_t)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("method", list(FEW_STEP))
def test_measured_order_gaussian(method, sde_name):
    expected = expected_flow_order(method, "gaussian")
    steps = flow_steps(method, "gaussian")
    fit = fit_order(steps, flow_errors(SDES[sde_name], method, gaussian_data(2, dtype=torch.float64), steps))
    assert fit.within(expected, 0.1), (method, sde_name, fit)


@pytest.mark.parametrize(
    ("method", "sde_name"),
    [
        pytest.param(m, s, marks=() if (m, s) == ("dpm_solver_pp_3m", "vp") else pytest.mark.slow)
        for m in MIXTURE_METHODS
        for s in SDES
    ],
)
def test_measured_order_mixture(method, sde_name):
    # against Dormand–Prince at rtol = atol = 1e-11 (error ≤ 1.3e-8, < 0.3% of the smallest error fitted)
    steps = flow_steps(method, "mixture")
    fit = fit_order(steps, flow_errors(SDES[sde_name], method, ring_mixture(dtype=torch.float64), steps))
    assert fit.within(FEW_STEP[method].order, 0.1), (method, sde_name, fit)


def test_exp_weights_integrate_polynomials_exactly():
    # ∫_λ^λ' e^{-(λ'-u)} u^k du against the closed form by repeated integration by parts, k = 0, 1, 2
    lam, lam1, nodes = -0.7, 0.4, [0.4, -0.1, -0.7]
    w = exp_weights(nodes, lam, lam1)

    def moment(k):  # F_k(u) = e^{u-λ'} Σ_j (-1)^j k!/(k-j)! u^{k-j}
        def f(u):
            return math.exp(u - lam1) * sum((-1) ** j * math.perm(k, j) * u ** (k - j) for j in range(k + 1))

        return f(lam1) - f(lam)

    for k in range(3):
        assert sum(wj * n**k for wj, n in zip(w, nodes, strict=True)) == pytest.approx(moment(k), rel=1e-13, abs=1e-15)


def test_logsnr_grid_is_uniform_in_lambda():
    sde = SDES["vp"]
    t = make_grid("logsnr", sde, 10, EPS, dtype=torch.float64)
    lam = sde.log_mean_coeff(t) - torch.log(sde.std(t))
    steps = lam[1:] - lam[:-1]
    torch.testing.assert_close(steps, torch.full_like(steps, float(steps.mean())), rtol=1e-9, atol=0)


def test_nfe_reported():
    sde = SDES["vp"]
    data = S.Gaussian(torch.zeros(1), torch.ones(1))
    for method, per_step, extra in [
        ("ddim", 1, 0),
        ("edm_heun", 2, 0),
        ("dpm_solver_3", 3, 0),
        ("dpm_solver_pp_3m", 1, 1),
    ]:
        _, info = S.ode_sample(sde, data.score_fn(sde), (4, 1), method=method, steps=7, return_info=True)
        assert info["nfe"] == 7 * per_step + extra, method


def test_few_step_needs_steps_and_rejects_compile():
    sde = SDES["vp"]
    score = S.Gaussian(torch.zeros(1), torch.ones(1)).score_fn(sde)
    with pytest.raises(ValueError, match="steps"):
        S.ode_sample(sde, score, (4, 1), method="ddim")
    with pytest.raises(ValueError, match="compile"):
        S.ode_sample(sde, score, (4, 1), method="ddim", steps=4, compile=True)
