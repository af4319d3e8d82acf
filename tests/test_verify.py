"""verify: order fits, exact Gaussian propagation, measured orders against theory."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from sdesolve import VESDE, VPSDE, Gaussian, GaussianMixture, pc_sample
from sdesolve.testing import assert_moments_close, gaussian_data, sdes
from sdesolve.verify import (
    error_vs_nfe,
    exact_expectations,
    fit_order,
    propagate_gaussian,
    reference_check,
    run_suite,
    strong_order,
    weak_order,
)

DATA = Gaussian(torch.tensor([0.3], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64))


def test_fit_order_recovers_power_law_and_validates():
    steps = [8, 16, 32, 64]
    fit = fit_order(steps, [3.0 * n**-1.5 for n in steps])
    assert fit.slope == pytest.approx(1.5, abs=1e-12) and fit.lo <= 1.5 <= fit.hi
    noisy = fit_order(steps, [3.0 * n**-1.5 * (1 + 0.1 * (-1) ** i) for i, n in enumerate(steps)])
    assert noisy.hi - noisy.lo > 0.1  # noise widens the interval
    with pytest.raises(ValueError, match="errors"):
        fit_order(steps, [1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="length"):
        fit_order([1, 2], [1.0, 0.5])


def test_exact_propagation_matches_simulation():
    # The affine read-off is exact: the law from propagate_gaussian equals a 65 536-sample run (4 se).
    sde, steps = VPSDE(), 20
    law = propagate_gaussian(sde, "ancestral", DATA, steps)
    x_T = DATA.marginal(sde, 1.0).sample(65536, torch.Generator().manual_seed(0))
    x = pc_sample(
        sde,
        DATA.score_fn(sde),
        x_T.shape,
        predictor="ancestral",
        corrector=None,
        steps=steps,
        x_init=x_T,
        denoise=False,
        generator=torch.Generator().manual_seed(1),
    )
    assert_moments_close(x, law, sigmas=4)
    # and it differs from the exact p_eps by far more than the Monte Carlo resolution (the test can fail)
    assert abs(float(law.var - DATA.marginal(sde, 1e-3).var)) > 10 * float(law.var) * (2 / 65536) ** 0.5


@pytest.mark.parametrize("predictor, expected", [("euler_maruyama", 1.0), ("reverse_diffusion", 1.0), ("pf_heun", 2.0)])
def test_weak_orders_vp(predictor, expected):
    study = weak_order(VPSDE(), predictor, DATA, steps=(64, 128, 256, 512))
    assert abs(study.fit.slope - expected) <= 0.15, study.fit


def test_em_weak_order_on_ve_depends_on_sigma_min():
    # Derived in NOTES-verify.md: the O(h) variance-error coefficient integrates to c·σ_min²/2, so with
    # σ_min = 0.01 EM looks second order for N ≤ 1024, with σ_min = 0.3 the theory's first order shows.
    small = weak_order(VESDE(sigma_min=0.01), "euler_maruyama", DATA, steps=(64, 128, 256, 512), expected=2.0)
    large = weak_order(VESDE(sigma_min=0.3), "euler_maruyama", DATA, steps=(64, 128, 256, 512))
    assert abs(small.fit.slope - 2.0) <= 0.15 and abs(large.fit.slope - 1.0) <= 0.15


def test_strong_order_em_vp():
    study = strong_order(VPSDE(), "euler_maruyama", DATA, steps=(16, 32, 64, 128), n_paths=64, ref_steps=512)
    assert abs(study.fit.slope - 1.0) <= 0.15, study.fit  # additive noise: strong order 1, not ½


@settings(max_examples=12)
@given(sde=sdes(), data=gaussian_data())
def test_weak_order_property(sde, data):
    # Per draw: reverse diffusion's weak error has slope 1 ± 0.15, and the error at N = 200 lies under the
    # bound C/N with C fitted on this draw's other step counts (×1.5 slack for curvature of the log-log line).
    study = weak_order(sde, "reverse_diffusion", data, steps=(64, 128, 256, 512, 1024))
    assert abs(study.fit.slope - 1.0) <= 0.15, study.fit
    c = float(np.exp(study.fit.log_c))
    e200 = weak_order(sde, "reverse_diffusion", data, steps=(200, 201, 202, 203)).errors[0]
    assert e200 <= 1.5 * c / 200**study.fit.slope


def test_error_vs_nfe_table():
    rows = error_vs_nfe(
        VPSDE(),
        DATA,
        {"EM": {"predictor": "euler_maruyama", "corrector": None}, "RK4": {"method": "rk4"}},
        steps=(10, 40),
        n_samples=512,
    )
    assert [(r["sampler"], r["steps"], r["nfe"]) for r in rows] == [
        ("EM", 10, 10),
        ("EM", 40, 40),
        ("RK4", 10, 40),
        ("RK4", 40, 160),
    ]
    assert all(r["error"] >= 0 and r["se"] > 0 for r in rows)


def test_validation():
    with pytest.raises(ValueError, match="4 distinct"):
        weak_order(VPSDE(), "euler_maruyama", DATA, steps=(8, 16, 32))
    with pytest.raises(ValueError, match="strong order"):
        strong_order(VPSDE(), "reverse_diffusion", DATA)


@pytest.mark.slow
def test_full_suite_vp_gaussian():
    rows = run_suite(False, sdes=("vp",), data=("gaussian",))
    assert all(r.passed for r in rows), [r.as_dict() for r in rows if not r.passed]


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=repr)
def test_reference_check_passes_true_reference_and_flags_a_coarse_one(sde):
    # The srk reference at 256 steps has law p_eps up to a bias far below the Monte Carlo error (2048 paths):
    # measured max |dev|/se 1.6 (VP), 1.7 (VE); 4 se false-alarm rate ~6e-5 per moment. With 4 steps the
    # reference is badly biased (31-37 se), which the check must expose.
    data = Gaussian(torch.tensor([0.3, -0.2], dtype=torch.float64), torch.tensor([0.5, 0.8], dtype=torch.float64))
    dev, se = reference_check(sde, data, n_paths=2048, ref_steps=256, seed=0)
    assert dev.shape == se.shape == (2, 2)
    assert bool((dev.abs() <= 4 * se).all()), (dev / se).tolist()
    dev, se = reference_check(sde, data, n_paths=2048, ref_steps=4, seed=0)
    assert bool((dev.abs() > 4 * se).any()), (dev / se).tolist()
    # the deterministic reference (exact Gaussian flow from the exact p_T) lands on p_eps too
    dev, se = reference_check(sde, data, n_paths=2048, seed=0, stochastic=False)
    assert bool((dev.abs() <= 4 * se).all()), (dev / se).tolist()


def test_exact_expectations_isotropic_mixture_with_multidim_events():
    # Isotropic components (stds [K]) over a [2, 3] event: each coordinate is a 1-D mixture, so
    # E x = Σ w μ, E x² = Σ w (μ² + s²), E x³ = Σ w (μ³ + 3μs²), E cos x = Σ w cos(μ) e^{-s²/2} (closed forms).
    means = torch.tensor(
        [[[0.0, 1.0, -2.0], [0.5, 0.0, 3.0]], [[1.0, -1.0, 0.0], [2.0, 0.25, -0.5]]], dtype=torch.float64
    )
    w, s = torch.tensor([0.25, 0.75], dtype=torch.float64), torch.tensor([0.5, 2.0], dtype=torch.float64)
    got = exact_expectations(GaussianMixture(w, means, s))
    W, S2 = w[:, None, None], (s**2)[:, None, None]
    expected = torch.stack(
        [
            (W * means).sum(0),
            (W * (means**2 + S2)).sum(0),
            (W * (means**3 + 3 * means * S2)).sum(0),
            (W * torch.cos(means) * torch.exp(-S2 / 2)).sum(0),
        ]
    )
    assert got.shape == (4, 2, 3)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)  # float64 closed forms, rounding only
