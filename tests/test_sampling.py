"""pc_sample / ode_sample against exact laws: the scheme's own law (propagated in float64), p_eps, the flow map.

Statistics: for n iid draws of N(m, V) the sample mean has SE sqrt(V/n) and the sample variance
SE V sqrt(2/(n-1)); 1-D Gaussian data is pooled as [B, 64] events (64 iid coordinates per sample).
``tests/linear_gaussian.py`` propagates the exact law of every scheme (numpy, float64, no Monte Carlo).
"""

import math

import numpy as np
import pytest
import torch
from linear_gaussian import pc_law, target

from sdesolve import VESDE, VPSDE, Gaussian, LangevinCorrector, SubVPSDE, ode_sample, pc_sample
from sdesolve.problems import ring_mixture

SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}  # VESDE: sigma_max = 50
PREDICTORS = ["euler_maruyama", "reverse_diffusion", "ancestral", "pf_euler", "pf_heun", "pf_rk4", "none"]
# NoPredictor alone returns the prior; it only samples together with the corrector.
COMBOS = [(p, c) for p in PREDICTORS for c in (False, True) if p != "none" or c]
POOLED = Gaussian(0.3, 0.5, event_shape=(64,))


def z_scores(x: torch.Tensor, m: float, V: float) -> tuple[float, float]:
    """(sample mean - m)/SE and (sample variance - V)/SE over all entries of x, for N(m, V) entries."""
    x = x.double().flatten()
    n = x.numel()
    return float(x.mean() - m) / math.sqrt(V / n), float(x.var() - V) / (V * math.sqrt(2 / (n - 1)))


def run(kind, predictor, corrector, steps, shape=(2048, 64), data=POOLED, seed=0, **kw):
    sde = SDES[kind]()
    return pc_sample(
        sde,
        data.score_fn(sde),
        shape,
        predictor=predictor,
        corrector="langevin" if corrector else None,
        steps=steps,
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )


# -- the implementation is the scheme: Monte Carlo vs the exact law of the discretisation ----------------------------


@pytest.mark.parametrize("kind", list(SDES))
@pytest.mark.parametrize("predictor,corrector", COMBOS)
def test_pc_sample_matches_exact_law_of_the_scheme(kind, predictor, corrector):
    # 65 536 pooled draws after 50 steps vs the float64 propagation of the same affine scheme: mean and
    # variance within 4 SE. Discretisation bias is part of both sides, so this pins every formula.
    x = run(kind, predictor, corrector, 50, shape=(1024, 64))
    m, V = pc_law(kind, predictor, 50, corrector=corrector)
    zm, zv = z_scores(x, m, V)
    assert abs(zm) < 4 and abs(zv) < 4, (zm, zv)


# -- the scheme converges to p_eps: exact propagation, no Monte Carlo -------------------------------------------------

# Stated bounds at 1000 steps (relative variance error, |mean error|). Derivation: every scheme here is first order
# in the weak sense (Heun/RK4 of higher order), so the bias is C/N with C read off the exact propagation at
# N = 50..1000 (C <= 15 for all but PF-Euler on VE, whose uniform grid in t gives C ≈ 43: |bias| <= 2% and 5%).
# The σ-rule Langevin corrector adds a fixed bias ≈ snr² σ²/v per step toward v(1 + ...), measured <= 0.62% for
# snr = 0.16 (DESIGN numerical notes), inside the 2%. Means: the flows keep the prior mismatch
# |α(T)μ|·sqrt(v_eps/v_T) (9.9e-4 VP, 3.0e-3 VE) — stochastic samplers forget it — plus C/N with C <= 0.3.
# Annealed Langevin alone (no predictor; 10 corrector steps at snr 0.5 per level) converges in corrector steps, not
# grid steps: its chain lags p_t where the σ-rule step is small (sub-VP: σ = 1 - α² ≪ v near 0). Measured at
# 1000 steps: |mean err| <= 7.5e-3, |var err| <= 2.9% (sub-VP), so 1e-2 and 3%.
VAR_BOUND = {"pf_euler/ve": 0.05, "none/vp": 0.03, "none/subvp": 0.03, "none/ve": 0.03}
MEAN_BOUND = 4e-3
MEAN_BOUND_ANNEALED = 1e-2


@pytest.mark.parametrize("kind", list(SDES))
@pytest.mark.parametrize("predictor,corrector", COMBOS)
def test_exact_scheme_law_at_1000_steps_is_within_stated_bound(kind, predictor, corrector):
    # Annealed Langevin alone needs more than one corrector step per level (1 step at snr 0.16: +20% on VE).
    kw = {"corrector_steps": 10, "snr": 0.5} if predictor == "none" else {}
    m, V = pc_law(kind, predictor, 1000, corrector=corrector, **kw)
    m0, v0 = target(kind)
    assert abs(m - m0) <= (MEAN_BOUND_ANNEALED if predictor == "none" else MEAN_BOUND)
    assert abs(V / v0 - 1) <= VAR_BOUND.get(f"{predictor}/{kind}", 0.02)


def _w2(law, ref) -> float:
    """2-Wasserstein distance between 1-D Gaussians given as (mean, variance)."""
    return math.hypot(law[0] - ref[0], math.sqrt(law[1]) - math.sqrt(ref[1]))


@pytest.mark.parametrize("kind", list(SDES))
@pytest.mark.parametrize("predictor,corrector", COMBOS)
def test_error_decreases_from_50_to_400_steps(kind, predictor, corrector):
    # Started from the exact p_T so the flows' prior-mismatch floor does not hide their (tiny) RK4 error.
    m_T, v_T = target(kind, eps=1.0)
    errs = [_w2(pc_law(kind, predictor, n, corrector=corrector, x_init=(m_T, v_T)), target(kind)) for n in (50, 400)]
    assert errs[1] < errs[0]


@pytest.mark.parametrize("kind", list(SDES))
@pytest.mark.parametrize("predictor", [p for p in PREDICTORS if p != "none"])
def test_scheme_weak_order_from_exact_propagation(kind, predictor):
    # Weak error |V_N - v_eps| from p_T over a 16x step range: log-log slope vs the declared weak order (±0.15).
    # Corrector off: the σ-rule Langevin bias does not vanish with N. N >= 400: VP Euler–Maruyama's error changes
    # sign near N = 100. RK4 nears float64 round-off beyond N = 640, so 40..640. Euler–Maruyama on VE
    # superconverges on Gaussian data (measured slope 2.6: its O(h) variance term cancels), so the check there is
    # the one-sided claim "weak order >= 1".
    from sdesolve import get_predictor

    order = get_predictor(predictor, SDES[kind]()).weak_order
    m_T, v_T = target(kind, eps=1.0)
    ns = np.array([40, 80, 160, 320, 640] if predictor == "pf_rk4" else [400, 800, 1600, 3200, 6400])
    errs = [abs(pc_law(kind, predictor, int(n), x_init=(m_T, v_T))[1] - target(kind)[1]) for n in ns]
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert slope > order - 0.15, (slope, errs)
    if (predictor, kind) != ("euler_maruyama", "ve"):
        assert slope < order + 0.15, (slope, errs)


def test_corrector_reduces_error_at_100_ve_steps():
    # DESIGN numerical notes: at 100 VE steps the corrector helps. Exact laws: reverse diffusion variance error
    # +9.0% without, +4.6% with (ancestral -8.1% / -5.8%: too close for this sample size, covered by the exact
    # tests). SE of a relative variance over 131 072 draws: 0.39%; the difference of two: sqrt(2) of it.
    se = math.sqrt(2 / (2048 * 64))
    v0 = target("ve")[1]
    err = [abs(float(run("ve", "reverse_diffusion", c, 100).double().var()) / v0 - 1) for c in (False, True)]
    assert err[1] + 4 * math.sqrt(2) * se < err[0], err


# -- sampler mechanics ------------------------------------------------------------------------------------------------


def test_same_generator_gives_identical_samples_and_different_seed_does_not():
    a, b = (
        run("vp", "reverse_diffusion", True, 20, shape=(8, 64)),
        run("vp", "reverse_diffusion", True, 20, shape=(8, 64)),
    )
    assert torch.equal(a, b)
    assert not torch.equal(a, run("vp", "reverse_diffusion", True, 20, shape=(8, 64), seed=1))


def test_denoise_drops_exactly_the_last_steps_noise():
    # Same generator: denoise=False adds G_last * z on the last step, G_last^2 = σ(t_{N-1})² - σ(eps)² for VE.
    sde, steps = VESDE(), 10
    kw = dict(predictor="reverse_diffusion", corrector=None, steps=steps, shape=(4096, 64))
    noisy = run("ve", denoise=False, **kw)
    clean = run("ve", denoise=True, **kw)
    t_last = torch.tensor(1.0 + (steps - 1) / steps * (1e-3 - 1.0), dtype=torch.float64)
    G = math.sqrt(float(sde.std(t_last) ** 2 - sde.std(torch.tensor(1e-3, dtype=torch.float64)) ** 2))
    _, zv = z_scores((noisy - clean) / G, 0.0, 1.0)
    assert abs(zv) < 4
    assert not torch.equal(noisy, clean)


def test_nfe_counts_score_calls():
    calls = []
    sde = VPSDE()
    score = POOLED.score_fn(sde)

    def counted(x, t):
        calls.append(1)
        return score(x, t)

    for pred, corr, per_step in [("pf_heun", "langevin", 3), ("pf_rk4", None, 4), ("euler_maruyama", "none", 1)]:
        calls.clear()
        _, info = pc_sample(sde, counted, (2, 64), predictor=pred, corrector=corr, steps=7, return_info=True)
        assert info["nfe"] == len(calls) == 7 * per_step
        assert info["steps"] == 7
    for method, kw in [("dopri5", {}), ("scipy_rk45", {}), ("torchdiffeq_dopri5", {}), ("rk4", {"steps": 5})]:
        calls.clear()
        _, info = ode_sample(sde, counted, (2, 64), method=method, return_info=True, **kw)
        assert info["nfe"] == len(calls), method


def test_corrector_steps_multiply_corrector_nfe():
    sde = VPSDE()
    _, info = pc_sample(sde, POOLED.score_fn(sde), (2, 64), steps=4, corrector_steps=3, return_info=True)
    assert info["nfe"] == 4 * (1 + 3)


def test_progress_bar_is_shown(capsys):
    sde = VPSDE()
    pc_sample(sde, POOLED.score_fn(sde), (2, 64), steps=3, progress=True)
    assert "pc_sample" in capsys.readouterr().err


def test_non_finite_score_raises_naming_step_and_time():
    sde = VPSDE()
    score = POOLED.score_fn(sde)

    def bad(x, t):
        s = score(x, t)
        return torch.where(t[:, None] < 0.5, torch.full_like(s, float("nan")), s)

    # Grid t_i = 1 - 0.0999 i: the first time below 0.5 is t_6 = 0.4006, so step 6 is the first non-finite one.
    with pytest.raises(FloatingPointError, match=r"step 6 \(t=0\.4006 -> 0\.3007\)"):
        pc_sample(sde, bad, (2, 64), steps=10, eps=1e-3, corrector=None)
    pc_sample(sde, bad, (2, 64), steps=10, corrector=None, check_finite=False)  # opt-out: no raise
    with pytest.raises(FloatingPointError, match="non-finite"):
        ode_sample(sde, bad, (2, 64), method="euler", steps=10)


def test_no_host_sync_inside_the_step_loop(host_syncs):
    # Tensor.item / __float__ / tolist are the host syncs; the loop must call none (one check after it).
    sde = VPSDE()
    counts = []
    for steps in (10, 50):
        pc_sample(sde, POOLED.score_fn(sde), (2, 64), steps=steps, predictor="ancestral", check_finite=True)
        counts.append(len(host_syncs))
        host_syncs.clear()
    # constant, not O(steps): validation (the grid, the score's first call) and the final finiteness check
    assert counts[0] == counts[1] and counts[1] < 8, counts


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"predictor": "heun"}, ValueError, "choose one of: euler_maruyama, reverse_diffusion"),
        ({"corrector": "mala"}, ValueError, "choose one of: langevin"),
        ({"steps": 0}, ValueError, "steps must be >= 1"),
        ({"steps": 2.5}, TypeError, "steps must be an int"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"snr": -0.1}, ValueError, "snr"),
        ({"corrector": "langevin_instance", "snr": 0.2}, ValueError, "snr="),
        ({"grid": "quadratic"}, ValueError, "choose one of: uniform, log_sigma, karras"),
        ({"shape": (4,)}, ValueError, "shape"),
        ({"x_init": torch.zeros(3, 64)}, ValueError, "x_init"),
    ],
)
def test_bad_arguments_raise(kwargs, exc, match):
    sde = VPSDE()
    kwargs = dict(kwargs)
    if kwargs.get("corrector") == "langevin_instance":
        kwargs["corrector"] = LangevinCorrector(sde)
    shape = kwargs.pop("shape", (2, 64))
    with pytest.raises(exc, match=match):
        pc_sample(sde, POOLED.score_fn(sde), shape, **kwargs)


def test_score_of_wrong_shape_is_a_clear_error():
    sde = VPSDE()
    with pytest.raises(ValueError, match="shaped like x"):
        pc_sample(sde, lambda x, t: x[:, :1], (2, 64), steps=2)


# -- probability-flow ODE ---------------------------------------------------------------------------------------------


def _flow_problem(kind):
    sde = SDES[kind]()
    data = Gaussian(torch.full((4,), 0.3, dtype=torch.float64), 0.5)
    x0 = sde.prior_sampling((256, 4), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return sde, data, x0, data.flow(sde, x0, sde.T, 1e-3)


@pytest.mark.parametrize("kind", list(SDES))
@pytest.mark.parametrize("method,factor", [("dopri5", 20), ("scipy_rk45", 20), ("torchdiffeq_dopri5", 100)])
def test_ode_sample_matches_exact_flow_to_solver_tolerance(kind, method, factor):
    # Global error of a tolerance-controlled RK pair is proportional to the local tolerance; measured <= 8x for
    # ours and scipy's (rtol = atol = 1e-5), up to 34x for torchdiffeq's (DESIGN: 15x less accurate).
    sde, data, x0, ref = _flow_problem(kind)
    y, info = ode_sample(sde, data.score_fn(sde), x0.shape, x_init=x0, method=method, return_info=True)
    assert float((y - ref).abs().max()) < factor * 1e-5 * (1 + float(ref.abs().max()))
    assert info["nfe"] > 0 and info["method"] == method


STEP_COUNTS = {"euler": [50, 100, 200, 400], "heun": [100, 200, 400, 800], "rk4": [40, 80, 160, 320]}


@pytest.mark.parametrize("kind", list(SDES))
@pytest.mark.parametrize("method,order", [("euler", 1), ("heun", 2), ("rk4", 4)])
def test_fixed_step_ode_convergence_order(kind, method, order):
    # Max error against Gaussian.flow from one fixed x_T, float64, 4 step counts over 8x (asymptotic range: at
    # coarser steps sub-VP's heun/rk4 are pre-asymptotic, slopes 2.2/3.5): slope within 0.15.
    sde, data, x0, ref = _flow_problem(kind)
    ns = STEP_COUNTS[method]
    errs = [
        float((ode_sample(sde, data.score_fn(sde), x0.shape, x_init=x0, method=method, steps=n) - ref).abs().max())
        for n in ns
    ]
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.15, (slope, errs)


def test_ode_sample_argument_errors():
    sde = VPSDE()
    score = POOLED.score_fn(sde)
    with pytest.raises(ValueError, match="choose one of: dopri5"):
        ode_sample(sde, score, (2, 64), method="rk45")
    with pytest.raises(ValueError, match="fixed-step"):
        ode_sample(sde, score, (2, 64), method="heun")
    with pytest.raises(ValueError, match="steps/grid apply"):
        ode_sample(sde, score, (2, 64), method="dopri5", steps=10)


def test_ode_sample_deterministic_given_x_init_and_generator():
    sde = VPSDE()
    a = ode_sample(sde, POOLED.score_fn(sde), (4, 64), generator=torch.Generator().manual_seed(3))
    b = ode_sample(sde, POOLED.score_fn(sde), (4, 64), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


# -- slow: the literal 1000-step study against p_eps ------------------------------------------------------------------


def _mixture_var_se(x: torch.Tensor) -> torch.Tensor:
    """Per-coordinate SE of the sample variance from the sample's 4th central moment: sqrt((m4 - v²)/n)."""
    c = x.double() - x.double().mean(0)
    v, m4 = (c**2).mean(0), (c**4).mean(0)
    return ((m4 - v**2) / x.shape[0]).sqrt()


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(SDES))
@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("predictor,corrector", COMBOS)
def test_1000_steps_gaussian_data_matches_p_eps(kind, dim, predictor, corrector):
    # 1-D and 2-D events (no pooling across samples): 65 536 / 32 768 samples. Mean within 4 SE + the stated
    # mean bound, variance within 4 SE + the stated discretisation bound (VAR_BOUND above).
    data = Gaussian(0.3, 0.5, event_shape=(dim,))
    m0, v0 = target(kind)
    kw = {"corrector_steps": 10, "snr": 0.5} if predictor == "none" else {}
    x = run(kind, predictor, corrector, 1000, shape=(65536 // dim, dim), data=data, **kw).double()
    N = x.numel()
    mean_tol = 4 * math.sqrt(v0 / N) + (MEAN_BOUND_ANNEALED if predictor == "none" else MEAN_BOUND)
    var_tol = 4 * math.sqrt(2 / (N - 1)) + VAR_BOUND.get(f"{predictor}/{kind}", 0.02)
    assert abs(float(x.mean()) - m0) < mean_tol
    assert abs(float(x.var()) / v0 - 1) < var_tol


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(SDES))
@pytest.mark.parametrize("predictor,corrector", COMBOS)
def test_1000_steps_ring_mixture_matches_p_eps(kind, predictor, corrector):
    # The 8-mode ring (weights ∝ 1..8), 4000 samples: mean within 4 SE + 0.02 (the flows' prior mismatch: p_T's
    # mean α(T)·E[x0] is not the prior's 0, shrunk by ~sqrt(v_eps/v_T): |E x0| ≤ 0.54 per coordinate, so ≤ 0.015
    # for VE), per-coordinate variance
    # within 4 SE (from the sample's 4th moment) + 3% (the Gaussian discretisation bound + 1%).
    mix = ring_mixture(torch.float32)
    sde = SDES[kind]()
    p_eps = mix.to(dtype=torch.float64).marginal(sde, 1e-3)
    m0, v0 = p_eps.mean, p_eps.std**2
    kw = {"corrector_steps": 10, "snr": 0.5} if predictor == "none" else {}
    x = run(kind, predictor, corrector, 1000, shape=(4000, 2), data=mix, **kw).double()
    se_mean = (x.var(0) / x.shape[0]).sqrt()
    assert bool(((x.mean(0) - m0).abs() < 4 * se_mean + 0.02).all()), x.mean(0)
    rel = (x.var(0) / v0 - 1).abs()
    assert bool((rel < 4 * _mixture_var_se(x) / v0 + 0.03 + VAR_BOUND.get(f"{predictor}/{kind}", 0)).all()), rel


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE(0.01, 20.0)], ids=["vp", "subvp", "ve"])
def test_dopri5_reproduces_scipy_rk45(sde):
    # Our on-device Dormand-Prince implements scipy's RK45 (tableau, error norm, initial step, controller incl.
    # no growth after a rejection): same step sequence, so the same NFE and the same answer to round-off.
    data = Gaussian(0.3, 0.5, event_shape=(3,)).to(dtype=torch.float64)
    x_T = sde.prior_sampling((50, 3), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ours, info = ode_sample(sde, data.score_fn(sde), x_T.shape, x_init=x_T, method="dopri5", return_info=True)
    ref, ref_info = ode_sample(sde, data.score_fn(sde), x_T.shape, x_init=x_T, method="scipy_rk45", return_info=True)
    assert info["nfe"] == ref_info["nfe"]
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
