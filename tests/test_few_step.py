"""Few-step ODE solvers: parity with k-diffusion's own samplers, and orders measured on exact Gaussian flows.

Parity: the same σ̃ grid, the same start x̃_T = x_T/α(T) and a denoiser built from the same exact score, run
through k-diffusion's ``sampling.py`` (loaded alone, `benchmarks._kdiffusion`); both in float64, so they agree to
rounding (1e-10 relative leaves ~10^5 ulps for the ≤ 40 steps' different association of the same products).
Orders: the error of the flow map from fixed prior samples against `Gaussian.flow` (exact, no Monte Carlo
error), fitted over 4 step counts spanning 8× on the logSNR grid, ±0.1.
"""

import math

import pytest
import torch

import sdesolve as S
from benchmarks._kdiffusion import load_sampling
from sdesolve.grids import make_grid, noise_level
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


def _flow_errors(method: str, sde, steps) -> list[float]:
    data = S.Gaussian(torch.tensor([0.3], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64))
    x_t = sde.prior_sampling((32, 1), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = data.flow(sde, x_t, sde.T, EPS)
    errors = []
    for n in steps:
        y = S.ode_sample(sde, data.score_fn(sde), x_t.shape, method=method, steps=n, grid="logsnr", x_init=x_t)
        errors.append(float((y - exact).abs().max()))
    return errors


# Step counts start where the error is asymptotic (the next term ≤ 10% of the slope): 1st/2nd order from 20,
# the 3-stage single-step method from 80 (VP local slopes 3.25, 3.14, 3.07, 3.04 from 20 to 320; sub-VP 3.32, 3.19 at 40, 80).
ORDER_STEPS = {1: (10, 20, 40, 80), 2: (20, 40, 80, 160), 3: (80, 160, 320, 640)}
MEASURED = {"dpm_solver_pp_3m": 4}  # super-convergence on Gaussian data: see test_dpm_solver_pp_3m_order


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("method", [m for m in FEW_STEP if m != "dpm_solver_pp_3m"])
def test_measured_order(method, sde_name):
    order = FEW_STEP[method].order
    steps = ORDER_STEPS[order]
    fit = fit_order(steps, _flow_errors(method, SDES[sde_name], steps))
    assert fit.within(order, 0.1), (method, sde_name, fit)


@pytest.mark.parametrize("sde_name", list(SDES))
def test_dpm_solver_pp_3m_order(sde_name):
    """At least order 3 with the midpoint start; on Gaussian data its steady-state error is O(h⁴) (measured
    3.98, 3.99, 3.95, 3.88 from 20 to 320 VP steps) and the O(h³) of the start-up step takes over only beyond."""
    steps = (20, 40, 80, 160)
    fit = fit_order(steps, _flow_errors("dpm_solver_pp_3m", SDES[sde_name], steps))
    assert fit.slope >= 3.0 - 0.1, (sde_name, fit)


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
