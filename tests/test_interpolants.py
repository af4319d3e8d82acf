"""Schedules as SDEs (sdesolve.sde.interpolants): rectified flow, cosine, EDM and any user schedule, checked against
their definitions, the exact oracles at the singular end α(T) = 0, and the samplers run on them."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import sdesolve as S
from sdesolve.grids import make_grid, shift_grid
from sdesolve.problems import gaussian_data
from sdesolve.sde import EDMSDE, CosineSDE, InterpolantSDE, LinearSDE, RectifiedFlowSDE
from sdesolve.verify import fit_order
from sdesolve.verify.few_step import affine_law_error

F = torch.float64
FLOWS = {"rectified_flow": RectifiedFlowSDE(), "cosine": CosineSDE()}
DEFINITIONS = {  # (α, σ) for t in [0, T]; cos(πt/2T) written as sin(π(T - t)/2T), exactly 0 at T (cos(π/2) is 6e-17)
    "rectified_flow": (RectifiedFlowSDE(T=2.0), lambda t: 1 - t / 2, lambda t: t / 2),
    "cosine": (CosineSDE(T=3.0), lambda t: torch.sin(math.pi * (3 - t) / 6), lambda t: torch.sin(math.pi * t / 6)),
    "edm": (EDMSDE(sigma_max=40.0), torch.ones_like, lambda t: t.clone()),
}


@pytest.mark.parametrize("name", list(DEFINITIONS))
def test_schedules_are_their_definitions_and_a_user_schedule_reproduces_them(name):
    # The user class derives f = α'/α and g² = -2σ²λ' by autograd; the closed forms must agree to float64 rounding
    # (a few ulps of the largest term: 1e-12 relative), with T ≠ 1 so a misplaced T shows.
    sde, alpha, sigma = DEFINITIONS[name]
    user = InterpolantSDE(alpha, sigma, T=sde.T)
    t = torch.linspace(0.01, 0.99, 99, dtype=F) * sde.T
    torch.testing.assert_close(sde.mean_coeff(t), alpha(t), rtol=1e-14, atol=1e-15)
    torch.testing.assert_close(sde.std(t), sigma(t), rtol=1e-14, atol=1e-15)
    x = torch.ones(len(t), 1, dtype=F)
    for a, b in ((sde.drift(x, t), user.drift(x, t)), (sde.diffusion(t), user.diffusion(t))):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sde.marginal_lambda(t), user.marginal_lambda(t), rtol=1e-13, atol=1e-13)
    assert sde.singular_at_T == user.singular_at_T == (name != "edm")


@pytest.mark.parametrize("sde", [RectifiedFlowSDE(T=2.0), CosineSDE(T=0.5), EDMSDE(sigma_max=40.0)],
                         ids=["rectified_flow", "cosine", "edm"])  # fmt: skip
def test_closed_form_inverses_equal_the_bisection(sde):
    # as for VE/VP/sub-VP (test_sde): 8 ulps of T; λ(T) = -inf for the flows, inverted to T exactly
    t = torch.linspace(1e-4, 1.0, 257, dtype=F) * sde.T
    lam = sde.marginal_lambda(t)
    tol = 8 * torch.finfo(F).eps * sde.T
    assert float((sde.inverse_lambda(lam[:-1]) - LinearSDE.inverse_lambda(sde, lam[:-1])).abs().max()) <= tol
    assert float((sde.inverse_lambda(lam) - t).abs().max()) <= tol
    assert float((sde.inverse_noise_level(sde.noise_level(t)) - t).abs().max()) <= tol


@pytest.mark.parametrize(
    "alpha, sigma, match",
    [
        (lambda t: torch.ones_like(t), lambda t: 1 - t / 2, "strictly decreasing"),  # σ falls: λ rises
        (lambda t: 1 - t, lambda t: 0.5 + torch.sin(8 * t) ** 2, "strictly decreasing"),  # λ wiggles
        (lambda t: t, lambda t: 1 + t, "alpha\\(0\\) > 0"),
        (lambda t: 1 - 2 * t, lambda t: t, ">= 0"),
        (lambda t: 1 - t, lambda t: 0 * t, "sigma\\(T\\) > 0"),
        (lambda t: 1.0, lambda t: t, "same shape"),
    ],
)
def test_a_bad_user_schedule_is_a_clear_error(alpha, sigma, match):
    with pytest.raises(ValueError, match=match):
        InterpolantSDE(alpha, sigma)


def test_a_non_callable_schedule_is_named():
    with pytest.raises(TypeError, match="alpha must be a function"):
        InterpolantSDE(0.5, lambda t: t)


@pytest.mark.parametrize("name", list(FLOWS))
def test_the_exact_oracles_are_finite_at_the_singular_end(name):
    # At t = T (α = 0) x_T is independent of x0: p_T = N(0, σ(T)²) and E[x0 | x_T] = E[x0] for every x_T.
    sde = FLOWS[name]
    data = S.GaussianMixture(
        torch.tensor([1.0, 3.0]), torch.tensor([[1.0, 0.0], [-1.0, 2.0]]), torch.tensor([0.3, 0.5])
    )
    data = data.to(dtype=F)
    law = data.marginal(sde, sde.T)
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F)
    torch.testing.assert_close(law.log_prob(x), sde.prior_logp(x), rtol=1e-12, atol=1e-12)
    score = data.score_fn(sde)
    t = torch.full((8,), sde.T, dtype=F)
    torch.testing.assert_close(score(x, t), -x / float(sde.std(t[0])) ** 2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(score.data_prediction(x, t), data.mean.expand(8, 2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(FLOWS))
def test_one_ddim_step_from_T_to_the_data_is_the_data_mean(name):
    # A grid [T, 0]: the one step returns D(x_T, T) = E[x0] exactly, from the exact prior at T (not T - δ).
    sde, data = FLOWS[name], gaussian_data(2, dtype=F)
    x = S.ode_sample(sde, data.score_fn(sde), (16, 2), method="ddim", grid=torch.tensor([sde.T, 0.0], dtype=F),
                     dtype=F, generator=torch.Generator().manual_seed(0))  # fmt: skip
    torch.testing.assert_close(x, data.mean.expand(16, 2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["dpm_solver_pp_2m", "heun", "unipc_2"])
def test_a_grid_to_the_data_is_refused_by_methods_that_divide_by_sigma_there(method):
    sde = RectifiedFlowSDE()
    with pytest.raises(ValueError, match="cannot step there"):
        S.ode_sample(sde, gaussian_data(2).score_fn(sde), (4, 2), method=method, grid=torch.linspace(1, 0, 9))


def test_stochastic_samplers_refuse_an_infinite_diffusion_at_T():
    sde, score = RectifiedFlowSDE(), gaussian_data(2).score_fn(RectifiedFlowSDE())
    with pytest.raises(ValueError, match="infinite"):
        S.pc_sample(sde, score, (4, 2), predictor="euler_maruyama", corrector="none", steps=8)
    with pytest.raises(ValueError, match="infinite"):
        S.pc_sample(sde, score, (4, 2), predictor="reverse_diffusion", corrector="none", steps=8)
    x = S.pc_sample(sde, score, (4, 2), predictor=S.EulerMaruyama(sde, diffusion="sigma"), corrector="none", steps=8)
    assert bool(torch.isfinite(x).all())


def _probe_error(sde, method, grid, steps, eps=1e-3):
    """max(|var err|, |mean err|/std) at eps of a deterministic solver on N(0.3, 0.5²): affine in its start on an
    affine score, so two probe rows give it exactly (no Monte Carlo error)."""
    data = gaussian_data(2, dtype=F)
    p_t, p_eps = data.marginal(sde, sde.T), data.marginal(sde, eps)
    probes = torch.stack([torch.zeros(2), torch.ones(2)]).to(F)
    y, info = S.ode_sample(sde, data.score_fn(sde), (2, 2), method=method, steps=steps, grid=grid, eps=eps,
                           x_init=probes, return_info=True)  # fmt: skip
    return affine_law_error(y, p_t, p_eps), info


NON_UNIFORM = [  # (sde, method, grid, claimed order); unipc_p is p + 1 with its corrector
    ("vp", "dpm_solver_pp_2m", "karras", 2), ("vp", "dpm_solver_pp_3m", "karras", 3), ("vp", "unipc_2", "karras", 3),
    ("vp", "unipc_3", "karras", 4), ("vp", "dpm_solver_pp_2m", "cosine", 2), ("vp", "dpm_solver_pp_3m", "cosine", 3),
    ("rectified_flow", "heun", "uniform", 2), ("rectified_flow", "rk4", "uniform", 4),
    ("cosine", "heun", "uniform", 2), ("cosine", "rk4", "uniform", 4),
]  # fmt: skip


@pytest.mark.parametrize("sde_name, method, grid, order", NON_UNIFORM)
def test_multistep_orders_on_non_uniform_grids(sde_name, method, grid, order):
    # The variable-step ratios (2M's r, UniPC's r_k, 3M's weights) matter only where λ-steps vary: on grids uniform
    # in λ every ratio is 1. Exact Gaussian error (probes) on VP over 32..256 steps (8×), fitted order within ±0.15.
    # Measured (32..512): UniPC on the cosine grid approaches its order from below (unipc_2 2.58 then 2.73,
    # unipc_3 3.22 then 3.51: its end λ-steps are large until N ≫ 512), so it is not asserted there; on the uniform
    # t grid the last λ-step spans O(1) until N ≫ 256 (σ ~ √t near eps): no asymptotic range either. On the flows,
    # Runge–Kutta in t on the uniform grid (their velocity is smooth in t up to T) keeps its order.
    steps = (32, 64, 128, 256)
    errors = [_probe_error(S.get_sde(sde_name), method, grid, n)[0] for n in steps]
    fit = fit_order(steps, errors)
    assert fit.within(order, 0.15), (method, grid, fit, errors)


def test_edm_churn_keeps_its_order_uncapped():
    # churn = 4 gives γ = churn/N ≤ 0.125 < √2 − 1 for N ≥ 32: churn is never capped; the churn noise vanishes as
    # O(1/N) and Heun's O(h²) remains: weak order 2 (exact weak errors, `sde_weak_errors`), ±0.15.
    from sdesolve.verify.few_step import sde_weak_errors

    sde, steps = S.VPSDE(), (32, 64, 128, 256)
    data = S.Gaussian(torch.tensor([0.3], dtype=F), torch.tensor([0.5], dtype=F))
    errors = sde_weak_errors(sde, S.EDMStochastic(sde, churn=4.0, s_tmin=0.0, s_tmax=sde.T), data, steps)
    assert all(4.0 / n < math.sqrt(2) - 1 for n in steps)
    assert fit_order(steps, errors).within(2.0, 0.15), errors


@given(shift=st.floats(0.2, 8.0), steps=st.integers(2, 40))
def test_the_shift_is_sd3s_formula_on_rectified_flow(shift, steps):
    # τ = t for rectified flow (σ̃/(1 + σ̃) = t): SD3's shift s t/(1 + (s - 1)t) exactly, ends kept
    sde = RectifiedFlowSDE()
    grid = make_grid("uniform", sde, steps, 1e-3, dtype=F)
    shifted = shift_grid(grid, sde, shift)
    expected = shift * grid / (1 + (shift - 1) * grid)
    torch.testing.assert_close(shifted[1:-1], expected[1:-1], rtol=1e-12, atol=1e-14)
    assert float(shifted[0]) == float(grid[0]) and float(shifted[-1]) == float(grid[-1])
    assert bool((shifted[1:] < shifted[:-1]).all())


def test_the_shift_is_one_map_on_every_schedule():
    # On VP the same map acts on τ = σ̃/(1 + σ̃): shifting by s then by 1/s gives the grid back; s > 1 raises every
    # interior time (toward the noise)
    for sde in (S.VPSDE(), S.VESDE(), CosineSDE()):
        grid = make_grid("logsnr", sde, 12, 1e-3, dtype=F)
        there = shift_grid(grid, sde, 3.0)
        torch.testing.assert_close(shift_grid(there, sde, 1 / 3.0), grid, rtol=1e-10, atol=1e-12)
        assert bool((there[1:-1] > grid[1:-1]).all()) and bool((there[1:] < there[:-1]).all())
    with pytest.raises(ValueError, match="shift"):
        make_grid("uniform", RectifiedFlowSDE(), 4, 1e-3, shift=0.0)


@pytest.mark.parametrize("name", list(FLOWS))
def test_log_likelihood_on_the_flows_is_exact(name):
    # exact divergence, dopri5 at 1e-8: the density of the exact Gaussian marginal at eps, to 1e-6 nats
    sde, data = FLOWS[name], gaussian_data(2, dtype=F)
    x = data.marginal(sde, 1e-3).sample(8, generator=torch.Generator().manual_seed(0))
    logp = S.log_likelihood(sde, data.score_fn(sde), x, eps=1e-3, divergence="exact", rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(logp, data.marginal(sde, 1e-3).log_prob(x), rtol=0, atol=1e-6)
