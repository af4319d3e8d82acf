"""Conditional samplers against exact posteriors of linear observations of Gaussian and mixture data.

Ground truth: ``prior.condition(A, y, noise_std)`` (checked against textbook formulas in test_analytic.py).
Statistical checks compare sample averages of f(x) = x_i, x_i x_j (and, for mixtures, the exact component
responsibilities γ_k(x), whose expectation under the target is exactly w_k) with their exact expectations,
within 4 standard errors sqrt(Var f / n); Var f comes from 200 000 exact samples. Samplers run with
denoise=False, so their target is exactly the posterior's law at eps, ``post.marginal(sde, eps)``.
"""

import math

import pytest
import torch

from sdesolve import (
    VESDE,
    VPSDE,
    Gaussian,
    GaussianMixture,
    LinearObservation,
    MultivariateGaussian,
    MultivariateGaussianMixture,
    Replacement,
    SDEDPMSolverPP2M,
    SubVPSDE,
    colorization_matrix,
    dps_score,
    gaussian_sampler_law,
    inpainting_matrix,
    ode_sample,
    pc_sample,
    pigdm_score,
    replacement_sample,
)
from sdesolve.problems import ring_mixture
from sdesolve.solvers.noise import HOOK, GeneratorNoise, StepNoise
from sdesolve.verify import fit_order

F64 = torch.float64
EPS = 1e-3
N = 10_000
STEPS = 250
# Euler-Maruyama: its discretization error at 250 VP steps is 0.6% of the hidden variance (exact law,
# `gaussian_sampler_law`), 0.4 of the 1.4% standard error of a variance at N = 10 000; ancestral's is 4.8%.
PREDICTOR = "euler_maruyama"
# Responsibilities of components with posterior weight below this are ~0 and heavy-tailed: not compared.
MIN_WEIGHT = 0.01


def statistics(x: torch.Tensor, target) -> torch.Tensor:
    """[n, S] per-sample statistics: coordinates, products x_i x_j (i <= j), mixture responsibilities."""
    x = x.reshape(x.shape[0], -1)
    i, j = torch.triu_indices(x.shape[1], x.shape[1])
    cols = [x, x[:, i] * x[:, j]]
    if isinstance(target, MultivariateGaussianMixture):
        comp = torch.distributions.MultivariateNormal(target.means.reshape(len(target.weights), -1), target.covs)
        gamma = torch.softmax(comp.log_prob(x[:, None]) + target.weights.log(), dim=1)
        cols.append(gamma[:, target.weights > MIN_WEIGHT])
    return torch.cat(cols, dim=1)


def exact_expectations(target) -> torch.Tensor:
    mean = target.mean.reshape(-1)
    second = target.cov + torch.outer(mean, mean)
    i, j = torch.triu_indices(mean.numel(), mean.numel())
    parts = [mean, second[i, j]]
    if isinstance(target, MultivariateGaussianMixture):
        parts.append(target.weights[target.weights > MIN_WEIGHT])
    return torch.cat(parts)


def assert_matches_law(x: torch.Tensor, target, k: float = 4.0) -> None:
    ref = statistics(target.sample(200_000, generator=torch.Generator().manual_seed(99)), target)
    se = ref.std(0) / math.sqrt(x.shape[0])
    err = statistics(x, target).mean(0) - exact_expectations(target)
    assert torch.all(err.abs() <= k * se + 1e-12), f"errors in SE units: {(err / se).tolist()}"


def correlated_prior():
    cov = torch.tensor([[1.0, 0.8, 0.3], [0.8, 1.0, 0.5], [0.3, 0.5, 0.7]], dtype=F64)
    return MultivariateGaussian(torch.tensor([0.5, -0.3, 0.2], dtype=F64), cov)


CONTROL_CASES = {
    "gaussian-inpaint-vp": (VPSDE(), correlated_prior, [[1.0, 0.0, 0.0]], [1.0], 0.0),
    "gaussian-noisy-ve": (
        VESDE(0.01, 20.0),
        lambda: Gaussian([0.3, -0.2, 1.0], [0.5, 0.3, 1.0]).to(dtype=F64),
        [[1.0, 0.5, 0.0], [0.0, 1.0, -1.0]],
        [0.4, 0.1],
        0.2,
    ),
    "mixture-noisy-vp": (VPSDE(), lambda: ring_mixture(dtype=F64), [[1.0, 0.0]], [1.2], 0.3),
}


@pytest.mark.parametrize("case", list(CONTROL_CASES))
def test_exact_conditional_score_reaches_the_posterior(case):
    # The control: the posterior's own score in plain PC sampling reaches the exact posterior.
    sde, prior, A, y, s = CONTROL_CASES[case]
    post = prior().condition(torch.tensor(A, dtype=F64), torch.tensor(y, dtype=F64), s)
    d = post.mean.numel() if isinstance(post, MultivariateGaussian) else post.means.shape[1]
    x = pc_sample(
        sde,
        post.score_fn(sde),
        (N, d),
        predictor=PREDICTOR,
        corrector=None,
        steps=STEPS,
        eps=EPS,
        denoise=False,
        generator=torch.Generator().manual_seed(0),
        dtype=F64,
    )
    assert_matches_law(x, post.marginal(sde, EPS))


def complement_rows(A: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Orthonormal rows spanning the orthogonal complement of A's (orthonormal) rows."""
    d = A.shape[1]
    Q, _ = torch.linalg.qr(
        torch.cat([A.T, torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=F64)], 1)
    )
    return Q[:, A.shape[0] : d].T


def independent_cases():
    """(prior, A, y) with the observed part Ax independent of the rest a priori."""
    block = torch.tensor([[0.5, 0.0, 0.0], [0.0, 1.0, 0.6], [0.0, 0.6, 0.8]], dtype=F64)
    gaussian = MultivariateGaussian(torch.tensor([0.1, -0.4, 0.6], dtype=F64), block)
    # product mixture: coordinate 0 is N(0.2, 0.3²) in every component, a ring of 4 modes in coordinates 1-2
    ring = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=F64)
    means = torch.cat([torch.full((4, 1), 0.2, dtype=F64), ring], 1)
    mixture = GaussianMixture(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64), means, torch.full((4,), 0.3, dtype=F64))
    row0 = inpainting_matrix(torch.tensor([True, False, False])).to(F64)
    # colorization of 1x2 RGB images: gray part and colour part independent, each correlated inside
    A = colorization_matrix(3, 1, 2).to(F64)
    B = complement_rows(A)
    cov = A.T @ torch.tensor([[0.6, 0.2], [0.2, 0.5]], dtype=F64) @ A + B.T @ (0.3 * torch.eye(4, dtype=F64) + 0.1) @ B
    colour = MultivariateGaussian(torch.linspace(-0.3, 0.4, 6, dtype=F64).reshape(3, 1, 2), cov)
    return {
        "gaussian-inpaint": (gaussian, row0, [1.3]),
        "mixture-inpaint": (mixture, row0, [-0.5]),
        "gaussian-colorize": (colour, A, [0.5, -0.2]),
    }


@pytest.mark.parametrize("case", ["gaussian-inpaint", "mixture-inpaint", "gaussian-colorize"])
def test_replacement_is_exact_when_observed_and_hidden_parts_are_independent(case):
    # Independence makes p_t(x) factor into p_t(Ax) p_t(Bx): the reverse SDE of the hidden part Bx never sees
    # Ax, so replacing Ax by forward samples of y leaves Bx distributed as its prior = its posterior.
    prior, A, y = independent_cases()[case]
    y = torch.tensor(y, dtype=F64)
    post = prior.condition(A, y, 0.0)
    sde = VPSDE()
    obs = LinearObservation(A, y, event_shape=prior.event_shape)
    x = replacement_sample(
        sde,
        prior.score_fn(sde),
        obs,
        N,
        predictor=PREDICTOR,
        corrector=None,
        steps=STEPS,
        eps=EPS,
        denoise=False,
        generator=torch.Generator().manual_seed(1),
    )
    assert x.shape == (N, *prior.event_shape)
    assert_matches_law(x, post.marginal(sde, EPS))


@pytest.mark.parametrize("predictor, corrector", [("pf_heun", "langevin"), ("euler_maruyama", None)])
def test_replacement_with_any_predictor_pins_the_observed_part(predictor, corrector):
    # denoise=True returns x_mean, whose observed part is exactly the forward mean α(eps)·y.
    sde, prior = SubVPSDE(), correlated_prior()
    A = inpainting_matrix(torch.tensor([True, False, True])).to(F64)
    y = torch.tensor([0.3, -0.7], dtype=F64)
    obs = LinearObservation(A, y)
    x, info = replacement_sample(
        sde, prior.score_fn(sde), obs, 64, predictor=predictor, corrector=corrector, steps=20, return_info=True
    )
    torch.testing.assert_close(x[:, [0, 2]], (sde.mean_coeff(torch.tensor(EPS, dtype=F64)) * y).expand(64, 2))
    assert torch.isfinite(x).all() and info["steps"] == 20


def test_replacement_hook_replaces_with_forward_samples():
    # One call: the observed coordinates become α_t y + σ_t z, the hidden ones are untouched.
    sde = VPSDE()
    obs = LinearObservation(inpainting_matrix(torch.tensor([False, True])).to(F64), [2.0])
    xr, xm = torch.zeros(50_000, 2, dtype=F64), torch.zeros(50_000, 2, dtype=F64)
    t = torch.full((50_000,), 0.5, dtype=F64)
    replace = Replacement(sde, obs)
    replace(xr, t, StepNoise(GeneratorNoise(torch.Generator().manual_seed(3)), HOOK), 0)  # in place, as pc_sample does
    replace(xm, t, None, 0)  # the final, denoised mean: no draw
    alpha, sigma = float(sde.mean_coeff(torch.tensor(0.5, dtype=F64))), float(sde.std(torch.tensor(0.5, dtype=F64)))
    assert torch.all(xr[:, 0] == 0) and torch.all(xm[:, 1] == alpha * 2.0)
    assert abs(float(xr[:, 1].mean()) - 2 * alpha) < 4 * sigma / math.sqrt(50_000)


@pytest.mark.parametrize("sde", [VESDE(0.01, 20.0), VPSDE(), SubVPSDE()], ids=["ve", "vp", "subvp"])
@pytest.mark.parametrize("noise_std", [0.0, 0.3])
def test_pigdm_is_the_exact_conditional_score_for_isotropic_data(sde, noise_std):
    # For data N(μ, cI), x0 | x_t is N(x̂0, r_t² I) with ΠGDM's r_t² = cσ²/(α²c + σ²), so
    # p(y | x_t) = N(y; A x̂0, r_t² AAᵀ + s²I) exactly and its gradient plus the prior score is the posterior score.
    c = 0.7
    prior = Gaussian(torch.tensor([0.5, -0.3, 0.2], dtype=F64), math.sqrt(c))
    A = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.5, -1.0]], dtype=F64)
    y = torch.tensor([0.4, -0.8], dtype=F64)
    obs = LinearObservation(A, y, noise_std)
    exact = prior.condition(A, y, noise_std).score_fn(sde)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    gaps = []
    for t in (0.01, 0.2, 0.7, 1.0):
        ref = exact(x, t)
        torch.testing.assert_close(pigdm_score(prior.score_fn(sde), sde, obs, data_var=c)(x, t), ref)
        wrong = pigdm_score(prior.score_fn(sde), sde, obs, data_var=1.5 * c)(x, t)
        gaps.append(float((wrong - ref).abs().max() / ref.abs().max()))
    assert max(gaps) > 1e-3  # the wrong data variance is visible (the identity holds to ~1e-13)


def test_dps_guidance_matches_its_closed_form():
    # Gaussian prior: score s = -Σ_t⁻¹(x - αμ), x̂0 = (x + σ²s)/α has Jacobian J = (I - σ²Σ_t⁻¹)/α, so DPS adds
    # ζ Jᵀ Aᵀ (y - A x̂0)/s² — computed here by hand, the implementation goes through autograd.
    sde, prior = VPSDE(), correlated_prior()
    A = torch.tensor([[1.0, 0.0, 1.0]], dtype=F64)
    y, s, zeta = torch.tensor([0.9], dtype=F64), 0.2, 0.5
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    t = 0.3
    marg = prior.marginal(sde, t)
    alpha, sigma2 = float(sde.mean_coeff(torch.tensor(t, dtype=F64))), float(sde.std(torch.tensor(t, dtype=F64)) ** 2)
    prec = torch.linalg.inv(marg.cov)
    score = -(x - marg.mean) @ prec
    x0 = (x + sigma2 * score) / alpha
    J = (torch.eye(3, dtype=F64) - sigma2 * prec) / alpha
    ref = score + zeta * ((y - x0 @ A.T) / s**2) @ A @ J
    obs = LinearObservation(A, y, s)
    torch.testing.assert_close(dps_score(prior.score_fn(sde), sde, obs, scale=zeta)(x, t), ref)


def test_guided_score_drives_the_probability_flow_ode():
    # The guided score is a plain score function: with the exact ΠGDM score (isotropic data) the adaptive
    # probability-flow ODE carries the prior to the posterior (solver error 1e-5 << SE ~ 1e-2).
    sde = VPSDE()
    prior = Gaussian(torch.tensor([0.5, -0.3], dtype=F64), 1.0)
    A, y, s = torch.tensor([[1.0, 1.0]], dtype=F64), torch.tensor([1.0], dtype=F64), 0.3
    post = prior.condition(A, y, s)
    score = pigdm_score(prior.score_fn(sde), sde, LinearObservation(A, y, s))
    x = ode_sample(sde, score, (5000, 2), eps=EPS, generator=torch.Generator().manual_seed(6), dtype=F64)
    assert_matches_law(x, post.marginal(sde, EPS))


def test_observation_matrices():
    img = torch.randn(4, 3, 2, 5, generator=torch.Generator().manual_seed(7), dtype=F64)
    A = colorization_matrix(3, 2, 5).to(F64)
    obs = LinearObservation(A, torch.zeros(10, dtype=F64), event_shape=(3, 2, 5))
    torch.testing.assert_close(obs.apply(img), math.sqrt(3) * img.mean(1).reshape(4, -1))
    assert obs.has_orthonormal_rows
    mask = torch.tensor([[True, False], [False, True]])
    M = inpainting_matrix(mask).to(F64)
    torch.testing.assert_close(M @ img[0, 0, :, :2].reshape(-1), img[0, 0, :, :2].reshape(-1)[[0, 3]])


@pytest.mark.parametrize(
    "factory, exc, match",
    [
        (lambda: Replacement(VPSDE(), LinearObservation([[1.0, 0.0]], [1.0], 0.1)), ValueError, "noise_std"),
        (lambda: Replacement(VPSDE(), LinearObservation([[2.0, 0.0]], [1.0])), ValueError, "orthonormal"),
        (lambda: dps_score(lambda x, t: x, VPSDE(), LinearObservation([[1.0, 0.0]], [1.0])), ValueError, "noise_std"),
        (
            lambda: pigdm_score(lambda x, t: x, VPSDE(), LinearObservation([[1.0]], [1.0]), data_var=0.0),
            ValueError,
            "data_var",
        ),
        (
            lambda: dps_score(lambda x, t: x, VPSDE(), LinearObservation([[1.0]], [1.0], 0.1), scale=-1),
            ValueError,
            "scale",
        ),
        (lambda: LinearObservation([[1.0, 0.0]], [1.0, 2.0]), ValueError, "y"),
        (lambda: LinearObservation([[1.0, 0.0]], [float("nan")]), ValueError, "finite"),
        (
            lambda: pigdm_score(lambda x, t: x, VPSDE(), LinearObservation([[1.0, 0.0], [2.0, 0.0]], [1.0, 2.0])),
            ValueError,
            "full row rank",
        ),
        (lambda: LinearObservation([1.0, 0.0], [1.0]), ValueError, "A"),
        (lambda: LinearObservation([[1.0, 0.0]], [1.0], -0.5), ValueError, "noise_std"),
        (lambda: LinearObservation([[1.0, 0.0]], [1.0], event_shape=(3,)), ValueError, "event_shape"),
        (
            lambda: LinearObservation([[1.0]], [1.0]).apply(torch.zeros(2, 2)),
            ValueError,
            "observation.s A acts on events",
        ),
        (lambda: inpainting_matrix(torch.tensor([1, 0])), TypeError, "mask"),
        (lambda: inpainting_matrix(torch.tensor([False, False])), ValueError, "mask"),
        (lambda: colorization_matrix(0, 2, 2), ValueError, "channels"),
    ],
)
def test_bad_conditional_inputs_raise(factory, exc, match):
    with pytest.raises(exc, match=match):
        factory()


def test_gaussian_sampler_law_matches_monte_carlo():
    # The exact law of an approximate sampler (replacement on correlated data; DPS) against its own samples.
    sde, prior = VPSDE(), correlated_prior()
    start = prior.marginal(sde, sde.T)
    A, y = inpainting_matrix(torch.tensor([True, False, False])).to(F64), torch.tensor([1.0], dtype=F64)
    opts = dict(predictor=PREDICTOR, steps=100, eps=EPS)
    obs = LinearObservation(A, y)
    law = gaussian_sampler_law(sde, prior.score_fn(sde), start, replacement=Replacement(sde, obs), **opts)
    x = replacement_sample(
        sde,
        prior.score_fn(sde),
        obs,
        N,
        corrector=None,
        denoise=False,
        x_init=start.sample(N, generator=torch.Generator().manual_seed(8)),
        generator=torch.Generator().manual_seed(9),
        **opts,
    )
    assert_matches_law(x, law)
    noisy = LinearObservation(torch.tensor([[1.0, 0.0, 1.0]], dtype=F64), [0.5], 0.5)
    score = dps_score(prior.score_fn(sde), sde, noisy)
    law = gaussian_sampler_law(sde, score, start, **opts)
    x = pc_sample(
        sde,
        score,
        (N, 3),
        corrector=None,
        denoise=False,
        x_init=start.sample(N, generator=torch.Generator().manual_seed(10)),
        generator=torch.Generator().manual_seed(11),
        **opts,
    )
    assert_matches_law(x, law)


def test_exact_score_law_converges_to_the_posterior_at_order_one():
    # Euler-Maruyama has weak order 1: the exact law's error in the hidden variance, over 100..1600 steps (16x),
    # fits slope 1 within ±0.15. The control's only error is this discretization error.
    sde, prior = VPSDE(), correlated_prior()
    A, y = inpainting_matrix(torch.tensor([True, False, False])).to(F64), torch.tensor([1.0], dtype=F64)
    post = prior.condition(A, y, 0.0)
    target = post.marginal(sde, EPS)
    steps = [100, 200, 400, 800, 1600]
    errors = []
    for n in steps:
        law = gaussian_sampler_law(sde, post.score_fn(sde), post.marginal(sde, sde.T), predictor=PREDICTOR, steps=n)
        errors.append(float((law.cov - target.cov).norm() + (law.mean - target.mean).norm()))
    assert abs(fit_order(steps, errors).slope - 1.0) < 0.15


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_replacement_keeps_a_multistep_predictors_order(sde):
    # Diagonal Gaussian data: the hidden coordinate never sees the observed one, so under replacement it follows the
    # predictor alone from its x_T, and its exact answer is the exact flow map (Gaussian.flow; the posterior of a
    # hidden coordinate independent of y is its prior). SDE-DPM-Solver++(2M) with eta = 0 is DPM-Solver++(2M): order 2
    # only if the multistep history survives the replacements (run one interval at a time, as replacement_sample was
    # before it became a pc_sample hook, every step is its first-order start: order 1). Pathwise RMS error over 64
    # samples on the logSNR grid at 40..320 steps (8x, the asymptotic range of `FLOW_STEPS`), slope 2 ± 0.15.
    prior = Gaussian(torch.tensor([0.3, -0.2], dtype=F64), torch.tensor([0.5, 1.2], dtype=F64))
    obs = LinearObservation(inpainting_matrix(torch.tensor([True, False])).to(F64), [0.7])
    x_t = prior.marginal(sde, sde.T).sample(64, torch.Generator().manual_seed(0))
    exact = prior.flow(sde, x_t, sde.T, EPS)[:, 1]
    steps, errors = [40, 80, 160, 320], []
    for n in steps:
        x = replacement_sample(sde, prior.score_fn(sde), obs, 64, predictor=SDEDPMSolverPP2M(sde, eta=0.0),
                               corrector=None, steps=n, grid="logsnr", x_init=x_t, seeds=list(range(64)))  # fmt: skip
        errors.append(float((x[:, 1] - exact).pow(2).mean().sqrt()))
    assert abs(fit_order(steps, errors).slope - 2.0) < 0.15, errors


def test_gaussian_sampler_law_rejects_non_affine_scores_and_reports_divergence():
    sde = VPSDE()
    start = MultivariateGaussian(torch.zeros(2, dtype=F64), torch.eye(2, dtype=F64))
    with pytest.raises(ValueError, match="not affine"):
        gaussian_sampler_law(sde, ring_mixture(dtype=F64).score_fn(sde), start, steps=5)
    # DPS at s = 0.01 with 150 Euler-Maruyama steps is unstable (step × g²/s² ≫ 2): its moments overflow
    obs = LinearObservation(torch.tensor([[1.0, 0.0]], dtype=F64), [1.0], 0.01)
    prior = MultivariateGaussian(torch.zeros(2, dtype=F64), torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=F64))
    with pytest.raises(FloatingPointError, match="diverged"):
        gaussian_sampler_law(
            sde, dps_score(prior.score_fn(sde), sde, obs), start, predictor="euler_maruyama", steps=150
        )
