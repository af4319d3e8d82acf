"""Few-step ODE solvers: parity with k-diffusion's own samplers, and orders measured on exact Gaussian flows.

Parity: the same σ̃ grid, the same start x̃_T = x_T/α(T) and a denoiser built from the same exact score, run
through k-diffusion's ``sampling.py`` (loaded alone, `benchmarks._kdiffusion`); both in float64, so they agree to
rounding (1e-10 relative leaves ~10^5 ulps for the ≤ 40 steps' different association of the same products).
Orders: the RMS error of the flow map from fixed prior samples against `Gaussian.flow` (exact, no Monte Carlo
error) or a tight Dormand–Prince solve (mixture), fitted over 4 step counts spanning 8× on the logSNR grid, ±0.1
(`sdesolve.verify.few_step`, the same studies as ``sdesolve verify``).
"""

import math

import pytest
import torch

import sdesolve as S
from benchmarks._kdiffusion import load_sampling, run_on_flow
from sdesolve.grids import make_grid, noise_level
from sdesolve.problems import gaussian_data, ring_mixture
from sdesolve.solvers.dpm_solver import exp_weights
from sdesolve.solvers.ode import FEW_STEP
from sdesolve.verify import fit_order
from sdesolve.verify.few_step import MIXTURE_METHODS, expected_flow_order, flow_errors, flow_steps

KD = load_sampling()
SDES = {"vp": S.VPSDE(), "subvp": S.SubVPSDE(), "ve": S.VESDE()}
EPS = 1e-3


def _mixture() -> S.GaussianMixture:
    means = torch.tensor([[1.0, 0.0], [-0.5, 0.8], [-0.5, -0.8]], dtype=torch.float64)
    return S.GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), means, torch.full((3,), 0.2))


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
    ref = run_on_flow(getattr(KD, sampler), sde, score, t_grid, x_t)
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
    [(m, s) for m in MIXTURE_METHODS for s in SDES],
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


def test_lower_order_final_is_refused_where_it_does_not_apply():
    sde = SDES["vp"]
    score = S.Gaussian(torch.zeros(1), torch.ones(1)).score_fn(sde)
    for method, kw in (("ddim", {"steps": 4}), ("heun", {"steps": 4}), ("dopri5", {})):
        with pytest.raises(ValueError, match="lower_order_final"):
            S.ode_sample(sde, score, (4, 1), method=method, lower_order_final=True, **kw)


def test_few_step_needs_steps_and_rejects_compile():
    sde = SDES["vp"]
    score = S.Gaussian(torch.zeros(1), torch.ones(1)).score_fn(sde)
    with pytest.raises(ValueError, match="steps"):
        S.ode_sample(sde, score, (4, 1), method="ddim")
    with pytest.raises(ValueError, match="compile"):
        S.ode_sample(sde, score, (4, 1), method="ddim", steps=4, execution="compile")


# -- regressions for the anchors' few-step bugs ---------------------------------------------------------------
def _probe_variance_error(sde, method: str, steps: int, data: S.Gaussian) -> float:
    """|v/v_eps - 1| at eps, exact: every solver is affine in x_T for a Gaussian score (two probes give a, b)."""
    probes = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    y = S.ode_sample(sde, data.score_fn(sde), probes.shape, method=method, steps=steps, grid="logsnr", x_init=probes)
    a = y[1] - y[0]
    v = a**2 * data.marginal(sde, sde.T).std ** 2
    return float((v / data.marginal(sde, EPS).std ** 2 - 1).abs().max())


@pytest.mark.parametrize("method", list(FEW_STEP))
def test_last_step_lands_on_eps_without_residual_noise(method):
    # diffusers #5689: a last step that stops short of the end leaves the noise of the time it stopped at.
    # Data of std 0.01 on VP: p_eps has std 0.0145, p at the last-but-one logSNR point of 40 has 0.0167, so a
    # missed last step is a variance error of +33%; every method here is below 10% at 40 steps (measured:
    # ddim 5.5%, edm_heun 1.1%, the others ≤ 0.7%).
    sde = SDES["vp"]
    data = S.Gaussian(torch.tensor([0.0], dtype=torch.float64), torch.tensor([0.01], dtype=torch.float64))
    assert _probe_variance_error(sde, method, 40, data) < 0.1
    _, info = S.ode_sample(
        sde, data.score_fn(sde), (2, 1), method=method, steps=40, return_info=True, dtype=torch.float64
    )
    assert info["grid"][-1].item() == pytest.approx(EPS, rel=1e-7)


@pytest.mark.parametrize("grid", ["logsnr", "karras", "uniform"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_many_steps_in_half_precision_stay_distinct(grid, dtype):
    # diffusers #12771: a grid rounded to the model's dtype repeats timesteps; ours stays float32/float64.
    sde = SDES["vp"]
    oracle = S.Gaussian(torch.zeros(1), torch.ones(1)).score_fn(sde)

    def score(x, t):  # the score returns the state's dtype (checked on the first call)
        return oracle(x, t).to(x.dtype)

    _, info = S.ode_sample(sde, score, (2, 1), method="ddim", steps=1000, grid=grid, dtype=dtype, return_info=True)
    t = info["grid"]
    assert t.dtype == torch.float32 and bool((t[1:] < t[:-1]).all())


@pytest.mark.parametrize("steps", [2, 5, 8, 11])
def test_third_order_single_step_at_3n_minus_1_steps(steps):
    # diffusers #9007: DPM-Solver-3 single-step at 3n-1 steps took log σ = 0 (NaN). Here every interval is a full
    # 3-stage step on a grid ending at eps > 0: finite, 3 NFE per step, and on the exact Gaussian flow its error
    # shrinks with steps (order 3: ≥ 8x per doubling asymptotically; we only ask finite and < 5% at 8+ steps).
    sde = SDES["vp"]
    data = S.Gaussian(torch.tensor([0.3], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64))
    y, info = S.ode_sample(
        sde, data.score_fn(sde), (8, 1), method="dpm_solver_3", steps=steps, return_info=True, dtype=torch.float64
    )
    assert bool(torch.isfinite(y).all()) and info["nfe"] == 3 * steps
    if steps >= 8:
        assert _probe_variance_error(sde, "dpm_solver_3", steps, data) < 0.05


@pytest.mark.parametrize("steps", [4, 5, 6, 7])
def test_lower_order_final_at_even_and_odd_step_counts(steps):
    # diffusers PR #6953: lower_order_final was skipped at even step counts. Count the D's each update uses.
    from sdesolve.solvers.dpm_solver import dpm_solver_pp_2m, dpm_solver_pp_3m
    from sdesolve.solvers.fused import TimeTable
    from sdesolve.solvers.programs import Schedule
    from sdesolve.solvers.unipc import unipc

    sde = SDES["vp"]
    times = TimeTable(make_grid("logsnr", sde, steps, EPS, dtype=torch.float64), torch.zeros(1, 1))
    sched = Schedule(sde, times)

    def used(programs) -> list[int]:
        return [sum(1 for b in p.update.d.values() if b != 0.0) for p in programs]

    assert used(dpm_solver_pp_2m(sched, lower_order_final=True))[-1] == 1
    assert used(dpm_solver_pp_2m(sched))[-1] == 2
    assert used(dpm_solver_pp_3m(sched, lower_order_final=True))[-2:] == [2, 1]
    assert used(dpm_solver_pp_3m(sched))[-2:] == [3, 3]
    # UniPC's last update also carries the corrector of the step before: the option must change it at any parity
    assert unipc(sched, order=3, lower_order_final=True)[-1].update != unipc(sched, order=3)[-1].update


@pytest.mark.parametrize(("dtype", "unit"), [(torch.float16, 2.0**-11), (torch.bfloat16, 2.0**-8)])
@pytest.mark.parametrize("method", ["dpm_solver_pp_2m", "edm_heun", "unipc_3", "dpm_solver_3", "ipndm"])
def test_half_precision_upcast_inside_the_step(method, dtype, unit):
    # VE with σ_max = 1348 (diffusers' default): σ² = 1.8e6 overflows float16 (max 65504) if the step runs in the
    # state's dtype. The step upcasts to float32; the state is rounded once per step (unit roundoff u), and the
    # flow contracts, so 20 steps stay within 20 u of the float64 run (measured: 1.7e-3 float16, 1.5e-2 bfloat16).
    sde = S.VESDE(sigma_max=1348.0)
    data = S.Gaussian(torch.tensor([0.3]), torch.tensor([0.5]))
    exact = data.score_fn(sde)

    def score(x, t):  # a model computing in float32 and returning the state's dtype (as under autocast)
        return exact(x.float(), t.float()).to(x.dtype)

    x_t = sde.prior_sampling((64, 1), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = S.ode_sample(sde, exact, x_t.shape, method=method, steps=20, x_init=x_t, grid="logsnr")
    y = S.ode_sample(sde, score, x_t.shape, method=method, steps=20, x_init=x_t.to(dtype), grid="logsnr", dtype=dtype)
    assert y.dtype == dtype
    assert float((y.double() - ref).abs().max() / ref.abs().max()) < 20 * unit


@pytest.mark.parametrize("lower_order_final", [False, True])
@pytest.mark.parametrize("order", [2, 3])
def test_unipc_equals_diffusers_scheduler(order, lower_order_final):
    # diffusers' UniPCMultistepScheduler (bh2, data prediction) maps σ̃ to α = 1/sqrt(1 + σ̃²), σ = σ̃ α: the VP SDE's
    # own α, σ (α² + σ² = 1). Its sigmas are replaced by our grid's σ̃ (timesteps are labels: the model reads the
    # grid by index); the model returns ε = -σ s. Both float64: equal to rounding. lower_order_final applies below
    # 15 steps in diffusers, so at 12 steps too.
    diffusers = pytest.importorskip("diffusers")
    sde, n = SDES["vp"], 12
    score = _mixture().score_fn(sde)
    t_grid = make_grid("logsnr", sde, n, EPS, dtype=torch.float64)
    x_t = sde.prior_sampling((16, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = S.ode_sample(  # the public option, against diffusers' own scheduler
        sde, score, x_t.shape, method=f"unipc_{order}", grid=t_grid, x_init=x_t, lower_order_final=lower_order_final
    )
    sch = diffusers.UniPCMultistepScheduler(
        solver_order=order, lower_order_final=lower_order_final, solver_type="bh2", predict_x0=True
    )
    sch.set_timesteps(n)
    sch.sigmas, sch.timesteps = noise_level(sde, t_grid), torch.arange(n)
    x = x_t.clone()
    for i in range(n):
        t = t_grid[i].expand(len(x))
        x = sch.step(-sde.std(t)[:, None] * score(x, t), sch.timesteps[i], x).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-10, atol=1e-10)


# -- the accuracy targets, with one setting for every problem: iPNDM on the cosine grid (σ_d = 1) ------
@pytest.mark.parametrize("steps", [7, 8, 9, 10])
def test_ipndm_on_the_cosine_grid_reaches_one_percent_within_ten_evaluations(steps):
    # Issue 12's target: variance and mean error ≤ 1% with ≤ 10 NFE on the exact VP Gaussian (the best anchor,
    # k-diffusion's DPM-Solver++(2M) on the logSNR grid, is at 6.6%). Exact: the solve is affine in x_T.
    sde, data = SDES["vp"], gaussian_data(2, dtype=torch.float64)
    probes = torch.stack([torch.zeros(2), torch.ones(2)]).to(torch.float64)
    y = S.ode_sample(sde, data.score_fn(sde), probes.shape, method="ipndm", steps=steps, grid="cosine", x_init=probes)
    a, b = y[1] - y[0], y[0]
    p_t, p_eps = data.marginal(sde, sde.T), data.marginal(sde, EPS)
    mean, var = a * p_t.mean + b, a**2 * p_t.std**2
    assert float((var / p_eps.std**2 - 1).abs().max()) <= 0.01
    assert float(((mean - p_eps.mean) / p_eps.std).abs().max()) <= 0.01


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_ipndm_on_the_cosine_grid_halves_the_best_anchor_on_the_ring_at_twenty_evaluations(sde_name):
    # Issue 12's target: RMS distance to the exact flow of the same 2000 prior samples ≤ 0.022 at 20 NFE on the
    # ring mixture (half the best anchor's 0.044, k-diffusion's DPM-Solver++(3M)); the same settings on VE.
    sde, data = SDES[sde_name], ring_mixture(dtype=torch.float64)
    score = data.score_fn(sde)
    x_t = sde.prior_sampling((2000, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = S.ode_sample(sde, score, x_t.shape, method="dopri5", rtol=1e-11, atol=1e-11, eps=EPS, x_init=x_t)
    y = S.ode_sample(sde, score, x_t.shape, method="ipndm", steps=20, grid="cosine", eps=EPS, x_init=x_t)
    assert float((y - ref).pow(2).sum(1).mean().sqrt()) <= 0.022
