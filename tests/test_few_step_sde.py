"""Stochastic few-step predictors: EDM's churn sampler, SDE-DPM-Solver++(2M) and Restart.

Parity: k-diffusion's ``sample_heun`` (with churn) and ``sample_dpmpp_2m_sde`` on the same σ̃ grid, fed the same
normals, to 1e-10 in float64 (both compute the same products in another order); Restart, which k-diffusion lacks,
against ``sample_heun`` pieces. Weak orders: exact mean and variance on 1-D Gaussian data by probe propagation
(`sde_weak_errors`, no Monte Carlo), fitted over 4 step counts spanning 8×, ±0.1 (Restart with inner steps ∝ N).
"""

import pytest
import torch

import sdesolve as S
from benchmarks._kdiffusion import flow_denoiser, load_sampling, run_on_flow
from sdesolve.grids import make_grid
from sdesolve.solvers.fused import RunSpec, TimeTable
from sdesolve.solvers.loop import run
from sdesolve.solvers.noise import NoiseSource
from sdesolve.verify import fit_order
from sdesolve.verify.few_step import WEAK_STEPS, sde_weak_errors, weak_study_errors

KD = load_sampling()
SDES = {"vp": S.VPSDE(), "subvp": S.SubVPSDE(), "ve": S.VESDE()}
EPS = 1e-3


class ListNoise(NoiseSource):
    """Interval i's predictor draw is ``draws[i]``."""

    def __init__(self, draws):
        self.draws = draws

    def predictor(self, out, i, t, t_next):
        return out.copy_(self.draws[i])

    def draw(self, out, stream, i, j, t):
        raise AssertionError("one draw per interval")


class QueueNoise(ListNoise):
    """Every draw of the run, the increment or a further one, is the next of ``draws``."""

    def __init__(self, draws):
        self.queue = iter(draws)

    def predictor(self, out, i, t, t_next):
        return out.copy_(next(self.queue))

    def draw(self, out, stream, i, j, t):
        return out.copy_(next(self.queue))


def _ours(name, sde, score, t_grid, x_t, draws, denoise, noise=ListNoise, **params):
    pred = S.PREDICTORS[name](sde, **params)
    times = TimeTable(t_grid, x_t)
    kernel = pred.kernel(score, times, x_t, RunSpec(noise(draws), denoise=denoise))
    return run(kernel, x_t.clone(), times)


def _parity_problem(sde_name: str):
    """A two-mode 1-D mixture, 16 float64 prior samples and the 12-step logSNR grid: the parity tests' inputs."""
    sde = SDES[sde_name]
    data = S.GaussianMixture(torch.tensor([0.5, 0.5]), torch.tensor([[1.0], [-1.0]]), torch.tensor([0.3, 0.3]))
    x_t = sde.prior_sampling((16, 1), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return sde, data.score_fn(sde), x_t, make_grid("logsnr", sde, 12, EPS, dtype=torch.float64)


@pytest.mark.skipif(KD is None, reason="k-diffusion not installed (pip install --no-deps k-diffusion)")
@pytest.mark.parametrize("sde_name", ["ve", "vp"])
def test_edm_stochastic_equals_kdiffusion_heun_with_churn(sde_name):
    sde, score, x_t, t_grid = _parity_problem(sde_name)
    params = {"churn": 6.0, "s_tmin": 0.05, "s_tmax": 10.0, "s_noise": 1.003}
    torch.manual_seed(3)  # k-diffusion draws torch.randn_like(x) once per step, churned or not
    draws = [torch.randn_like(x_t) for _ in range(12)]
    torch.manual_seed(3)
    ref = run_on_flow(
        KD.sample_heun, sde, score, t_grid, x_t, **{f"s_{k}" if k == "churn" else k: v for k, v in params.items()}
    )
    # our noise is in x̃ = x/α as EDM's; k-diffusion's unit normals are the same normals
    ours = _ours("edm_stochastic", sde, score, t_grid, x_t, draws, True, **params)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.skipif(KD is None, reason="k-diffusion not installed (pip install --no-deps k-diffusion)")
@pytest.mark.parametrize("sde_name", ["ve", "vp", "subvp"])
def test_sde_dpm_solver_pp_2m_equals_kdiffusion(sde_name):
    sde, score, x_t, t_grid = _parity_problem(sde_name)
    draws = [
        torch.randn(x_t.shape, generator=torch.Generator().manual_seed(10 + i), dtype=torch.float64) for i in range(12)
    ]
    queue = iter(draws)
    ref = run_on_flow(KD.sample_dpmpp_2m_sde, sde, score, t_grid, x_t, eta=1.0, noise_sampler=lambda s, s1: next(queue))
    ours = _ours("sde_dpm_solver_pp_2m", sde, score, t_grid, x_t, draws, False)  # k-diffusion adds the last noise
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def _kdiffusion_restart(sde, score, t_grid, x_t, draws, s_min, s_max, inner_steps):
    """Restart (Xu et al. 2023, Alg. 1) assembled from k-diffusion's ``sample_heun``: Heun on the grid's σ̃ down to
    the first level σ̃_j <= s_min, then per draw z: x̃ += sqrt(s_max² − σ̃_j²) z and Heun back on the geometric
    grid s_max (σ̃_j/s_max)^(k/M), k = 0..M; then Heun on the rest of the grid."""
    denoiser, levels = flow_denoiser(sde, score, t_grid)
    alpha = sde.mean_coeff(t_grid)
    j = next(k for k in range(1, len(levels)) if levels[k] <= s_min)
    inner = torch.cat([s_max * (levels[j] / s_max) ** (torch.arange(inner_steps, dtype=torch.float64) / inner_steps),
                       levels[j:j + 1]])  # fmt: skip
    xt = KD.sample_heun(denoiser, x_t / alpha[0], levels[: j + 1], disable=True)
    for z in draws:
        xt = KD.sample_heun(denoiser, xt + (s_max**2 - levels[j] ** 2).sqrt() * z, inner, disable=True)
    return KD.sample_heun(denoiser, xt, levels[j:], disable=True) * alpha[-1]


@pytest.mark.skipif(KD is None, reason="k-diffusion not installed (pip install --no-deps k-diffusion)")
@pytest.mark.parametrize("sde_name", ["ve", "vp"])
def test_restart_equals_kdiffusion_heun_pieces(sde_name):
    sde, score, x_t, t_grid = _parity_problem(sde_name)
    params = {"s_min": 0.1, "s_max": 0.5, "restarts": 3, "inner_steps": 4}
    draws = [torch.randn(x_t.shape, generator=torch.Generator().manual_seed(20 + k), dtype=torch.float64)
             for k in range(params["restarts"])]  # fmt: skip
    ref = _kdiffusion_restart(sde, score, t_grid, x_t, draws, params["s_min"], params["s_max"], params["inner_steps"])
    ours = _ours("restart", sde, score, t_grid, x_t, draws, True, noise=QueueNoise, **params)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize("name", list(WEAK_STEPS))
def test_weak_order_exact_gaussian(name, sde_name):
    data = S.Gaussian(torch.tensor([0.3], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64))
    steps = WEAK_STEPS[name]
    fit = fit_order(steps, weak_study_errors(SDES[sde_name], name, data, steps))
    assert fit.within(S.PREDICTORS[name].weak_order, 0.1), (name, sde_name, fit)


def test_restart_floors_at_its_inner_solves():
    # Fixed inner_steps M: the error tends to C2·M⁻² (the last re-solve's Heun error): with N = 2048 grid steps
    # (main error ~4e-6, ≤ 5% of the smallest floor) it falls as M⁻² over M = 4..32, ±0.1; refining the grid
    # alone from 256 to 512 steps changes it by < 10% at M = 4 (N⁻² would be 4×).
    sde = SDES["vp"]
    data = S.Gaussian(torch.tensor([0.3], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64))
    inner = (4, 8, 16, 32)
    floor = [sde_weak_errors(sde, S.Restart(sde, inner_steps=m), data, (2048,), extra_draws=2)[0] for m in inner]
    assert fit_order(inner, floor).within(2.0, 0.1), floor
    at_256, at_512 = sde_weak_errors(sde, S.Restart(sde, inner_steps=4), data, (256, 512), extra_draws=2)
    assert 0.9 < at_512 / at_256 < 1.0, (at_256, at_512)


def test_pc_sample_runs_them_and_reports_nfe():
    sde = SDES["vp"]
    score = S.Gaussian(torch.zeros(1), torch.ones(1)).score_fn(sde)
    for name, per_step in [("edm_stochastic", 2), ("sde_dpm_solver_pp_2m", 1)]:
        x, info = S.pc_sample(sde, score, (8, 1), predictor=name, corrector=None, steps=10, grid="logsnr",
                              generator=torch.Generator().manual_seed(0), return_info=True)  # fmt: skip
        assert info["nfe"] == 10 * per_step and bool(torch.isfinite(x).all())


def test_step_is_one_interval_with_the_given_noise():
    sde = SDES["vp"]
    score = S.Gaussian(torch.zeros(1), torch.ones(1)).score_fn(sde)
    pred = S.PREDICTORS["sde_dpm_solver_pp_2m"](sde)
    x, z = torch.randn(4, 1, dtype=torch.float64), torch.randn(4, 1, dtype=torch.float64)
    y, mean = pred.step(x, 0.5, 0.4, score, noise=z)
    times = TimeTable(torch.tensor([0.5, 0.4], dtype=torch.float64), x)
    ref = run(pred.kernel(score, times, x, RunSpec(ListNoise([z]), denoise=False)), x.clone(), times)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    assert not torch.equal(y, mean)


def test_edm_stochastic_rejects_a_churn_above_T():
    sde = SDES["ve"]
    score = S.Gaussian(torch.zeros(1), torch.ones(1)).score_fn(sde)
    with pytest.raises(ValueError, match="s_tmax"):
        S.pc_sample(sde, score, (2, 1), predictor=S.PREDICTORS["edm_stochastic"](sde, s_tmax=1e9), corrector=None,
                    steps=10)  # fmt: skip
    with pytest.raises(ValueError, match="churn"):
        S.PREDICTORS["edm_stochastic"](sde, churn=-1.0)


def test_restart_counts_its_evaluations():
    sde = SDES["vp"]
    score = S.Gaussian(torch.zeros(1), torch.ones(1)).score_fn(sde)
    pred = S.Restart(sde, restarts=3, inner_steps=5)
    _, info = S.pc_sample(sde, score, (8, 1), predictor=pred, corrector=None, steps=10, grid="logsnr",
                          generator=torch.Generator().manual_seed(0), return_info=True)  # fmt: skip
    assert info["nfe"] == 2 * 10 + 2 * 3 * 5


def test_restart_contracts_the_error_inherited_at_s_min():
    # Re-noising N(m, v) at s_min exactly to s_max and flowing back (64 Heun steps: ~exact) scales the deviation
    # from p_{s_min} by v(s_min)/v(s_max) < 1 in variance (standardised coordinates are kept by the flow), so
    # each restart shrinks the error: strictly decreasing in K, from Heun's (K = 0), exact propagation.
    sde = SDES["vp"]
    data = S.Gaussian(torch.tensor([0.3], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64))
    heun = sde_weak_errors(sde, S.EDMStochastic(sde, churn=0.0), data, (20,))[0]
    errors = [heun] + [
        sde_weak_errors(sde, S.Restart(sde, restarts=k, inner_steps=64), data, (20,), extra_draws=k)[0]
        for k in (1, 2, 4)
    ]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors


def test_restart_window_validated():
    sde = SDES["vp"]
    score = S.Gaussian(torch.zeros(1), torch.ones(1)).score_fn(sde)
    with pytest.raises(ValueError, match="s_max"):
        S.pc_sample(sde, score, (2, 1), predictor=S.Restart(sde, s_min=0.5, s_max=0.3), corrector=None, steps=4)
    with pytest.raises(ValueError, match="restarts"):
        S.Restart(sde, restarts=0)
