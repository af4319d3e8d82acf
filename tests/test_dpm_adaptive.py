"""DPM-Solver's adaptive step size (`sdesolve.solvers.dpm_solver_adaptive`) against the exact Gaussian flow map.

Ground truth: `Gaussian.flow` (the exact probability-flow map of the same prior samples, no Monte Carlo error), and
the fixed-grid programs of `sdesolve.solvers.dpm_solver` for the one-step formulas (written there on `Form`s with
float coefficients, here on per-sample tensors).
"""

import math

import pytest
import torch

import sdesolve as S
from benchmarks._kdiffusion import flow_denoiser, load_sampling
from sdesolve.problems import gaussian_data, ring_mixture
from sdesolve.solvers.dpm_solver_adaptive import _Stepper, dpm_adaptive_solve
from sdesolve.verify import fit_order

EPS = 1e-3
SDES = {"vp": S.VPSDE(), "subvp": S.SubVPSDE(), "ve": S.VESDE()}
RATIO = 0.0078 / 0.05  # the paper's atol/rtol
DATA = gaussian_data(2, dtype=torch.float64)


def _prior(sde, n: int = 32, seed: int = 0) -> torch.Tensor:
    return sde.prior_sampling((n, 2), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _solve(sde, x, tol, order=3, prediction="data", score=None):
    score = DATA.score_fn(sde) if score is None else score
    return dpm_adaptive_solve(sde, score, x, sde.T, EPS, order=order, prediction=prediction, rtol=tol, atol=tol * RATIO)


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize(("order", "prediction"), [(2, "noise"), (3, "data")])
def test_error_is_below_the_accumulated_local_tolerance(sde_name, order, prediction):
    # Local-error control: an accepted step has RMS((x_high - x_low)/δ) ≤ 1, and (local extrapolation's premise)
    # x_high's local error is at most that difference, so at most RMS(δ_n) ≤ atol + √2·rtol·M with
    # M = max_t RMS(x_t) on the exact path (δ takes the max of |x_low| and the previous |x_low|; 1.1 allows the
    # numerical path its tolerance-sized distance from the exact one). The Gaussian flow map is affine with slope
    # J(t) = sqrt(v_eps/v_t) per coordinate, so the error at eps is at most N_acc · max_t J · (atol + √2 rtol M).
    # Measured ratios to this bound: ≤ 0.014 (VP, sub-VP), ≤ 0.001 (VE, whose |x| ~ σ_max at T loosens M).
    sde, tol = SDES[sde_name], 1e-3
    x = _prior(sde)
    y, info = _solve(sde, x, tol, order, prediction)
    times = torch.linspace(EPS, sde.T, 201, dtype=torch.float64).tolist()
    var = [float(DATA.marginal(sde, t).std[0] ** 2) for t in times]
    jac = max(math.sqrt(var[0] / v) for v in var)
    path = torch.stack([DATA.flow(sde, x, sde.T, t) for t in times])
    m = path.pow(2).mean(2).sqrt().amax(0)
    bound = info["accepted"].double() * jac * (tol * RATIO + math.sqrt(2) * tol * 1.1 * m)
    err = (y - DATA.flow(sde, x, sde.T, EPS)).pow(2).mean(1).sqrt()
    assert bool((err <= bound).all()), (err / bound).max()


@pytest.mark.parametrize("sde_name", list(SDES))
def test_error_is_proportional_to_the_tolerance(sde_name):
    # E ∝ h^k sets h ∝ tol^(1/k), and the order-k solution's global error is ∝ h^k ∝ tol: slope 1 in the
    # tolerance (atol/rtol fixed), fitted over 4 tolerances spanning 1000×, ±0.15 (measured 0.97, 0.92, 1.13).
    sde, tols = SDES[sde_name], (1e-3, 1e-4, 1e-5, 1e-6)
    x = _prior(sde)
    ref = DATA.flow(sde, x, sde.T, EPS)
    errors, nfe = [], []
    for tol in tols:
        y, info = _solve(sde, x, tol)
        errors.append(float((y - ref).pow(2).sum(1).mean().sqrt()))
        nfe.append(float(info["nfe_per_sample"].double().mean()))
    fit = fit_order([1 / t for t in tols], errors)
    assert fit.within(1.0, 0.15), (fit, errors)
    assert nfe == sorted(nfe) and nfe[0] < nfe[-1]


def test_dpm_solver_12_error_is_proportional_to_the_tolerance():
    # as above for the 1-2 pair in noise prediction, VP (measured 0.89; sub-VP 0.88, VE 0.97)
    sde, tols = SDES["vp"], (1e-2, 1e-3, 1e-4, 1e-5)
    x = _prior(sde)
    ref = DATA.flow(sde, x, sde.T, EPS)
    errors = [float((_solve(sde, x, tol, 2, "noise")[0] - ref).pow(2).sum(1).mean().sqrt()) for tol in tols]
    assert fit_order([1 / t for t in tols], errors).within(1.0, 0.15), errors


@pytest.mark.parametrize(("order", "prediction"), [(2, "noise"), (3, "noise"), (3, "data")])
def test_a_sample_is_the_same_alone_and_in_any_batch(order, prediction):
    # each sample carries its own λ and h: its path, output and NFE cannot depend on the other rows
    sde = SDES["vp"]
    score = ring_mixture(dtype=torch.float64).score_fn(sde)
    batch = _prior(sde, 8, seed=3)
    batch[1:4] *= 3.0  # far-out starts: many more steps than row 0
    batch[4:] = torch.tensor([[0.01, -0.02]], dtype=torch.float64)
    y, info = _solve(sde, batch, 1e-3, order, prediction, score)
    alone, info1 = _solve(sde, batch[:1], 1e-3, order, prediction, score)
    shuffled, info2 = _solve(sde, batch.flip(0), 1e-3, order, prediction, score)
    assert torch.equal(y[0], alone[0]) and torch.equal(y[0], shuffled[-1])
    assert int(info["nfe_per_sample"][0]) == int(info1["nfe_per_sample"][0]) == int(info2["nfe_per_sample"][-1])
    assert len(set(info["nfe_per_sample"].tolist())) > 1  # the rows did take different steps
    assert info["nfe"] == order * info["iterations"] == int(info["nfe_per_sample"].max())
    assert torch.equal(info["nfe_per_sample"], order * (info["accepted"] + info["rejected"]))


def test_finished_samples_are_never_evaluated_again():
    # a finished sample sits at t = eps, and only stage starts p are evaluated there: a score that is NaN at
    # t = eps would show any re-evaluation (as a FloatingPointError); batch sizes only shrink
    sde = SDES["ve"]
    exact = DATA.score_fn(sde)
    sizes = []

    def score(x, t):
        sizes.append(len(x))
        return torch.where((t == EPS)[:, None], torch.nan, exact(x, t))

    x = _prior(sde, 16)
    x[:8] *= 0.01  # these start near the mode and finish first
    y, info = _solve(sde, x, 1e-3, score=score)
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < sizes[0]
    assert bool(torch.isfinite(y).all())


def test_steps_match_the_fixed_grid_programs():
    # one pair from per-sample (t, t') equals the grid programs on the one-interval grid [t, t'] of each sample:
    # DDIM (low of 12), DPM-Solver-2 / DPM-Solver++(2S) (high of 12), DPM-Solver-3 (high of 23, noise);
    # stage times by the SDE's inverse λ on both sides, so they agree to rounding (1e-12)
    sde = SDES["vp"]
    score = ring_mixture(dtype=torch.float64).score_fn(sde)
    x = _prior(sde, 4, seed=1) * 0.7
    t = torch.tensor([0.9, 0.6, 0.3, 0.12], dtype=torch.float64)
    t_next = torch.tensor([0.7, 0.35, 0.2, 0.01], dtype=torch.float64)
    for prediction, order, high_method in (("noise", 2, "dpm_solver_2"), ("data", 2, "dpm_solver_pp_2s"),
                                           ("noise", 3, "dpm_solver_3")):  # fmt: skip
        st = _Stepper(sde, score, prediction, EPS, x)
        p, q = st.point(t), st.point(t_next)
        fractions = (0.5,) if order == 2 else (1 / 3, 2 / 3)
        lam, lam_next = sde.marginal_lambda(t), sde.marginal_lambda(t_next)
        stages = [st.point(st.times(lam + r * (lam_next - lam))) for r in fractions]
        low, high = st.pair(x, p, stages, q)
        for i in range(len(x)):
            grid = torch.stack([t[i], t_next[i]])
            ref = S.ode_sample(sde, score, (1, 2), method=high_method, grid=grid, x_init=x[i : i + 1])
            torch.testing.assert_close(high[i : i + 1], ref, rtol=1e-12, atol=1e-12)
            if order == 2:
                ddim = S.ode_sample(sde, score, (1, 2), method="ddim", grid=grid, x_init=x[i : i + 1])
                torch.testing.assert_close(low[i : i + 1], ddim, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(load_sampling() is None, reason="k-diffusion not installed (pip install --no-deps k-diffusion)")
@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_dpm_solver_23_pair_equals_kdiffusion(sde_name):
    # the 23 pair against k-diffusion's own DPMSolver steps (noise prediction in x~ = x/α, t = λ) on the same
    # inputs: dpm_solver_2_step(r1 = 1/3) is the low, dpm_solver_3_step the high; float64, both bisect the stage
    # levels to the same times (1e-10 relative)
    sde = SDES[sde_name]
    score = ring_mixture(dtype=torch.float64).score_fn(sde)
    kd = load_sampling()
    x = _prior(sde, 3, seed=2) * 0.5
    t = torch.tensor([0.95, 0.5, 0.2], dtype=torch.float64)
    t_next = torch.tensor([0.8, 0.3, 0.02], dtype=torch.float64)
    st = _Stepper(sde, score, "noise", EPS, x)
    lam, lam_next = sde.marginal_lambda(t), sde.marginal_lambda(t_next)
    stages = [st.point(st.times(lam + r * (lam_next - lam))) for r in (1 / 3, 2 / 3)]
    low, high = st.pair(x, st.point(t), stages, st.point(t_next))
    for i in range(len(x)):
        denoiser, _ = flow_denoiser(sde, score, torch.stack([t[i], t_next[i]]))
        solver = kd.DPMSolver(denoiser)
        xt, a_next = x[i : i + 1] / sde.mean_coeff(t[i]), sde.mean_coeff(t_next[i])
        ref_low, _ = solver.dpm_solver_2_step(xt, lam[i], lam_next[i], r1=1 / 3)
        ref_high, _ = solver.dpm_solver_3_step(xt, lam[i], lam_next[i])
        torch.testing.assert_close(low[i : i + 1], a_next * ref_low, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(high[i : i + 1], a_next * ref_high, rtol=1e-10, atol=1e-10)


def test_ode_sample_wiring():
    sde = SDES["vp"]
    score = DATA.score_fn(sde)
    x = _prior(sde, 6)
    for method, prediction in (("dpm_solver_adaptive", "noise"), ("dpm_solver_pp_adaptive", "data")):
        y, info = S.ode_sample(sde, score, x.shape, method=method, rtol=1e-3, atol=1e-4, x_init=x, return_info=True)
        ref, ref_info = dpm_adaptive_solve(sde, score, x, sde.T, EPS, prediction=prediction, rtol=1e-3, atol=1e-4)
        assert torch.equal(y, ref) and info["nfe"] == ref_info["nfe"]
        assert torch.equal(info["nfe_per_sample"], ref_info["nfe_per_sample"])
    with pytest.raises(ValueError, match="steps/grid"):
        S.ode_sample(sde, score, (2, 2), method="dpm_solver_adaptive", steps=10)
    with pytest.raises(ValueError, match="rtol"):
        S.ode_sample(sde, score, (2, 2), method="dpm_solver_adaptive", rtol=0.0)
    with pytest.raises(TypeError, match="log_likelihood"):
        S.log_likelihood(sde, score, x, method="dpm_solver_adaptive")


def test_half_precision_state_integrates_in_float32():
    sde = SDES["vp"]
    exact = gaussian_data(2).score_fn(sde)
    x = _prior(sde, 8).to(torch.bfloat16)
    y = S.ode_sample(sde, lambda v, t: exact(v.float(), t).to(v.dtype), x.shape, method="dpm_solver_pp_adaptive",
                     rtol=1e-2, atol=1e-3, x_init=x)  # fmt: skip
    ref = DATA.flow(sde, x.double(), sde.T, EPS)
    assert y.dtype == torch.bfloat16
    # bfloat16 keeps 8 significand bits: the output's rounding is ≤ 2^-8 relative; the solve itself ~1e-3
    torch.testing.assert_close(y.double(), ref, rtol=2**-8, atol=2e-2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rtol": 0.0}, "rtol"),
        ({"rtol": -1e-3}, "rtol"),
        ({"atol": -1e-3}, "atol"),
        ({"atol": 0.0}, "atol"),
        ({"order": 4}, "order"),
        ({"order": 1}, "order"),
        ({"prediction": "v"}, "prediction"),
        ({"theta": 1.5}, "theta"),
        ({"max_growth": 0.5}, "max_growth"),
        ({"h_init": 0.0}, "h_init"),
        ({"max_iterations": 0}, "max_iterations"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, match):
    sde = SDES["vp"]
    with pytest.raises(ValueError, match=match):
        dpm_adaptive_solve(sde, DATA.score_fn(sde), _prior(sde, 2), sde.T, EPS, **kwargs)


def test_iteration_limit_is_an_error():
    sde = SDES["vp"]
    with pytest.raises(RuntimeError, match="max_iterations=3"):
        dpm_adaptive_solve(sde, DATA.score_fn(sde), _prior(sde, 2), sde.T, EPS, max_iterations=3)


def test_non_finite_score_is_named():
    sde = SDES["vp"]
    exact = DATA.score_fn(sde)

    def score(x, t):
        return torch.where((t < 0.5)[:, None], torch.nan, exact(x, t))

    x = _prior(sde, 4)
    with pytest.raises(FloatingPointError, match=r"non-finite error estimate .* sample 0 at t="):
        dpm_adaptive_solve(sde, score, x, sde.T, EPS)
    y, _ = dpm_adaptive_solve(sde, score, x, sde.T, EPS, check_finite=False)  # stops; the rows show it
    assert not bool(torch.isfinite(y).any())
