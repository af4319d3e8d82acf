"""Exact oracles against autograd, torch.distributions and Monte Carlo."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sdesolve import VESDE, VPSDE, Gaussian, GaussianMixture, SubVPSDE

SDES = [VESDE(0.01, 50.0), VPSDE(), SubVPSDE()]
IDS = ["ve", "vp", "subvp"]
stds = st.floats(1e-3, 1e3)


def ring_mixture(dtype=torch.float64, scale=1.0, std=0.3):
    angles = torch.arange(8, dtype=dtype) * (2 * math.pi / 8)
    means = scale * torch.stack([angles.cos(), angles.sin()], dim=1)
    return GaussianMixture(torch.arange(1, 9, dtype=dtype), means, torch.full((8,), std, dtype=dtype))


def autograd_score(log_prob, x):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(log_prob(x).sum(), x)
    return g


@given(mu=st.floats(-5, 5), s=stds, shift=st.floats(-3, 3))
def test_gaussian_score_is_grad_log_prob(mu, s, shift):
    g = Gaussian(torch.tensor([mu, -mu], dtype=torch.float64), s)
    x = g.mean + shift * s + torch.tensor([[0.0, 1.0], [2.0, -1.0]], dtype=torch.float64) * s
    torch.testing.assert_close(g.score(x), autograd_score(g.log_prob, x))
    ref = torch.distributions.Normal(g.mean, g.std).log_prob(x).sum(1)
    torch.testing.assert_close(g.log_prob(x), ref)


@given(s=stds, scale=st.floats(1e-3, 1e3))
def test_mixture_score_is_grad_log_prob_over_scales(s, scale):
    m = ring_mixture(scale=scale, std=s)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * (scale + s)
    torch.testing.assert_close(m.score(x), autograd_score(m.log_prob, x))
    comp = torch.distributions.Independent(torch.distributions.Normal(m.means, m.stds[:, None]), 1)
    ref = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(m.weights), comp).log_prob(x)
    torch.testing.assert_close(m.log_prob(x), ref)
    # float32: the log-sum-exp score stays finite and agrees with float64 to float32 precision.
    m32 = m.to(dtype=torch.float32)
    s32 = m32.score(x.float())
    assert torch.isfinite(s32).all()
    torch.testing.assert_close(s32.double(), m.score(x), rtol=2e-3, atol=2e-3 * float(m.score(x).abs().max()))


@pytest.mark.parametrize("sde", SDES, ids=IDS)
@given(t=st.floats(1e-3, 1.0))
def test_marginal_score_fns_are_grads_of_log_prob_fns(sde, t):
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    tt = torch.full((8,), t, dtype=torch.float64)
    for data in (Gaussian([0.3, -0.2], [0.5, 0.1]).to(dtype=torch.float64), ring_mixture()):
        score, logp = data.score_fn(sde), data.log_prob_fn(sde)
        torch.testing.assert_close(score(x, tt), autograd_score(lambda y, lp=logp: lp(y, tt), x))
        # batched times agree with the scalar-time marginal
        marg = data.marginal(sde, t)
        torch.testing.assert_close(logp(x, tt), marg.log_prob(x))
        torch.testing.assert_close(score(x, tt), marg.score(x))


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_batched_times_are_per_sample(sde):
    data = ring_mixture()
    x = torch.randn(3, 2, dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    batched = data.score_fn(sde)(x, t)
    for i in range(3):
        torch.testing.assert_close(batched[i], data.marginal(sde, float(t[i])).score(x[i : i + 1])[0])


@pytest.mark.parametrize("sde", SDES, ids=IDS)
@given(s=st.floats(0.01, 0.99), t=st.floats(0.01, 1.0))
def test_marginal_is_closed_under_composition(sde, s, t):
    # Law of x_t from the law of x_s pushed through the exact transition (discretize) = marginal(t).
    s = s * t
    for data in (Gaussian(0.3, 0.5).to(dtype=torch.float64), ring_mixture()):
        ps, pt = data.marginal(sde, s), data.marginal(sde, t)
        f, G = sde.discretize(torch.ones(1, 1, dtype=torch.float64), t, s)
        r = 1 + f[0, 0]
        if isinstance(data, Gaussian):
            torch.testing.assert_close(r * ps.mean, pt.mean)
            torch.testing.assert_close(r**2 * ps.var + G**2, pt.var)
        else:
            torch.testing.assert_close(r * ps.means, pt.means)
            torch.testing.assert_close(r**2 * ps.stds**2 + G**2, pt.stds**2)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
@given(t=st.floats(1e-3, 1.0), s=st.floats(1e-3, 1.0))
def test_flow_maps_marginals_and_solves_the_ode(sde, t, s):
    data = Gaussian([0.3, -1.0], [0.5, 2.0]).to(dtype=torch.float64)
    pt, ps = data.marginal(sde, t), data.marginal(sde, s)
    # affine push-forward of N(m_t, v_t) is N(m_s, v_s)
    x = torch.stack([pt.mean, pt.mean + pt.std])
    y = data.flow(sde, x, t, s)
    torch.testing.assert_close(y[0], ps.mean)
    torch.testing.assert_close(y[1] - y[0], ps.std)
    # d/ds flow(x, t, s) equals the probability-flow drift f - g^2/2 score at (flow, s): central differences.
    h = 1e-6
    s_c = min(max(s, 2 * h), 1.0 - 2 * h)
    z = data.flow(sde, x, t, s_c)
    deriv = (data.flow(sde, x, t, s_c + h) - data.flow(sde, x, t, s_c - h)) / (2 * h)
    drift = sde.reverse(data.score_fn(sde), probability_flow=True).drift(z, s_c)
    torch.testing.assert_close(deriv, drift, rtol=1e-5, atol=1e-5 * float(drift.abs().max() + 1))


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_mixture_sampling_and_marginal_by_monte_carlo(sde):
    # Sample data, perturb with marginal_prob, compare mean/var with marginal's moments within 4 SE.
    gen = torch.Generator().manual_seed(5)
    data = ring_mixture()
    n = 200_000
    x0 = data.sample(n, generator=gen)
    t = 0.4
    mean, std = sde.marginal_prob(x0, t)
    xt = mean + std[:, None] * torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
    marg = data.marginal(sde, t)
    m, sd = marg.mean, marg.std
    assert torch.all((xt.mean(0) - m).abs() < 4 * sd / math.sqrt(n))
    # var of the sample variance ~ (kurtosis excess + 2) v^2 / n; mixture kurtosis < 3 here, so 4 SE with 2v^2/n*1.5
    assert torch.all((xt.var(0) - sd**2).abs() < 4 * sd**2 * math.sqrt(3 / n))


def test_mixture_sampling_weights():
    # Ring of radius 10, std 0.3: neighbouring means are 7.7 apart (> 12 std), so the nearest mean is the
    # component that drew the sample; each fraction is within 4 binomial SE of its weight.
    data = ring_mixture(scale=10.0)
    n = 100_000
    x0 = data.sample(n, generator=torch.Generator().manual_seed(6))
    frac = torch.bincount(torch.cdist(x0, data.means).argmin(1), minlength=8).double() / n
    assert torch.all((frac - data.weights).abs() < 4 * (data.weights * (1 - data.weights) / n).sqrt())


def test_mixture_density_integrates_to_one_in_1d():
    m = GaussianMixture([0.2, 0.8], [[-1.0], [2.0]], [0.3, 0.7]).to(dtype=torch.float64)
    grid = torch.linspace(-10, 12, 400_001, dtype=torch.float64)[:, None]
    assert float(torch.trapezoid(m.log_prob(grid).exp(), grid[:, 0])) == pytest.approx(1.0, abs=1e-9)


def test_diagonal_mixture_and_image_event_shapes():
    means = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    stds = torch.rand(3, 2, 4, 4, dtype=torch.float64) + 0.1
    m = GaussianMixture([1.0, 1.0, 2.0], means, stds)
    x = m.sample(5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (5, 2, 4, 4)
    torch.testing.assert_close(m.score(x), autograd_score(m.log_prob, x))
    g = Gaussian(0.0, 1.0, event_shape=(3, 8, 8))
    assert g.sample(2).shape == (2, 3, 8, 8) and g.log_prob(g.sample(2)).shape == (2,)


@pytest.mark.parametrize(
    "factory, name",
    [
        (lambda: Gaussian(0.0, 0.0), "std"),
        (lambda: Gaussian(0.0, -1.0), "std"),
        (lambda: GaussianMixture([1.0], [0.0], [1.0]), "means"),
        (lambda: GaussianMixture([1.0, 1.0], [[0.0]], [1.0]), "weights"),
        (lambda: GaussianMixture([-1.0], [[0.0]], [1.0]), "weights"),
        (lambda: GaussianMixture([1.0], [[0.0]], [[1.0, 2.0]]), "stds"),
        (lambda: GaussianMixture([1.0], [[0.0]], [0.0]), "stds"),
        (lambda: Gaussian(0.0, 1.0).marginal(VPSDE(), 2.0), "t"),
    ],
)
def test_bad_oracle_parameters_raise(factory, name):
    with pytest.raises(ValueError, match=name):
        factory()


# --- full-covariance oracles and exact conditioning -------------------------------------------------------------

from sdesolve import MultivariateGaussian, MultivariateGaussianMixture  # noqa: E402


def random_cov(d, seed, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    B = torch.randn(d, d, generator=gen, dtype=dtype)
    return B @ B.T / d + 0.2 * torch.eye(d, dtype=dtype)


def correlated_gaussian(event_shape=(2, 2), seed=0):
    d = math.prod(event_shape)
    mean = torch.linspace(-0.5, 0.7, d, dtype=torch.float64).reshape(event_shape)
    return MultivariateGaussian(mean, random_cov(d, seed))


def full_cov_mixture():
    means = torch.tensor([[0.0, 1.0, -0.5], [1.5, -1.0, 0.5], [-1.0, 0.0, 1.0]], dtype=torch.float64)
    covs = torch.stack([random_cov(3, s) for s in range(3)])
    return MultivariateGaussianMixture(torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64), means, covs)


def test_multivariate_gaussian_matches_torch_distributions():
    g = correlated_gaussian()
    x = g.sample(7, generator=torch.Generator().manual_seed(1))
    assert x.shape == (7, 2, 2)
    ref = torch.distributions.MultivariateNormal(g.mean.reshape(-1), g.cov)
    torch.testing.assert_close(g.log_prob(x), ref.log_prob(x.reshape(7, -1)))
    torch.testing.assert_close(g.score(x), autograd_score(g.log_prob, x))
    mix = full_cov_mixture()
    xm = mix.sample(7, generator=torch.Generator().manual_seed(2))
    comp = torch.distributions.MultivariateNormal(mix.means, mix.covs)
    ref = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(mix.weights), comp)
    torch.testing.assert_close(mix.log_prob(xm), ref.log_prob(xm))
    torch.testing.assert_close(mix.score(xm), autograd_score(mix.log_prob, xm))


def test_multivariate_sampling_moments_by_monte_carlo():
    # Mean within 4 SE (sqrt(Σ_ii/n)); covariance entries within 4 SE, SE² = (Σ_ii Σ_jj + Σ_ij²)/n for Gaussians.
    n = 100_000
    g = correlated_gaussian((3,), seed=3)
    x = g.sample(n, generator=torch.Generator().manual_seed(4))
    S = g.cov
    assert torch.all((x.mean(0) - g.mean).abs() < 4 * (torch.diagonal(S) / n).sqrt())
    se = ((torch.outer(torch.diagonal(S), torch.diagonal(S)) + S**2) / n).sqrt()
    assert torch.all((torch.cov(x.T) - S).abs() < 4 * se)
    # mixture: sample mean within 4 SE, SE² = diag(mixture covariance)/n
    mix = full_cov_mixture()
    xm = mix.sample(n, generator=torch.Generator().manual_seed(5))
    assert torch.all((xm.mean(0) - mix.mean).abs() < 4 * (torch.diagonal(mix.cov) / n).sqrt())
    # covariance entries: SE² = Var((x_i - μ_i)(x_j - μ_j))/n, estimated from the samples (not Gaussian)
    c = xm - mix.mean
    prods = c[:, :, None] * c[:, None, :]
    assert torch.all((prods.mean(0) - mix.cov).abs() < 4 * prods.std(0) / math.sqrt(n))


@pytest.mark.parametrize("sde", SDES, ids=IDS)
@given(t=st.floats(1e-3, 1.0))
def test_multivariate_score_fns_are_grads_of_log_prob_fns(sde, t):
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    tt = torch.full((4,), t, dtype=torch.float64)
    for data in (correlated_gaussian((3,)), full_cov_mixture()):
        score, logp = data.score_fn(sde), data.log_prob_fn(sde)
        torch.testing.assert_close(score(x, tt), autograd_score(lambda y, lp=logp: lp(y, tt), x))
        marg = data.marginal(sde, t)
        torch.testing.assert_close(logp(x, tt), marg.log_prob(x))
        torch.testing.assert_close(score(x, tt), marg.score(x))


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_multivariate_marginal_matches_diagonal_gaussian_and_per_sample_times(sde):
    # With a diagonal covariance the full-covariance oracle is the existing diagonal one.
    diag = Gaussian([0.3, -0.2, 1.0], [0.5, 0.1, 2.0]).to(dtype=torch.float64)
    full = MultivariateGaussian(diag.mean, torch.diag(diag.var))
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    t = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    torch.testing.assert_close(full.score_fn(sde)(x, t), diag.score_fn(sde)(x, t))
    torch.testing.assert_close(full.log_prob_fn(sde)(x, t), diag.log_prob_fn(sde)(x, t))
    torch.testing.assert_close(full.flow(sde, x, 0.7, 0.2), diag.flow(sde, x, 0.7, 0.2))


@pytest.mark.parametrize("sde", SDES, ids=IDS)
@given(t=st.floats(1e-3, 1.0), s=st.floats(1e-3, 1.0))
def test_multivariate_flow_maps_marginals_and_solves_the_ode(sde, t, s):
    g = correlated_gaussian((3,), seed=1)
    pt, ps = g.marginal(sde, t), g.marginal(sde, s)
    # affine push-forward: the flow's linear part M maps Σ_t to Σ_s (M Σ_t Mᵀ = Σ_s) and the mean to the mean
    eye = torch.eye(3, dtype=torch.float64)
    base = g.flow(sde, pt.mean[None], t, s)[0]
    torch.testing.assert_close(base, ps.mean)
    M = (g.flow(sde, pt.mean + eye, t, s) - base).T
    torch.testing.assert_close(M @ pt.cov @ M.T, ps.cov)
    # d/ds flow equals the probability-flow drift (central differences, h = 1e-6: error O(h²) + rounding 1e-10/h)
    h = 1e-6
    s_c = min(max(s, 2 * h), 1.0 - 2 * h)
    x = pt.mean + torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    deriv = (g.flow(sde, x, t, s_c + h) - g.flow(sde, x, t, s_c - h)) / (2 * h)
    drift = sde.reverse(g.score_fn(sde), probability_flow=True).drift(g.flow(sde, x, t, s_c), s_c)
    torch.testing.assert_close(deriv, drift, rtol=1e-5, atol=1e-5 * float(drift.abs().max() + 1))


def information_form(mean, cov, A, y, s):
    """Textbook posterior by precisions (Bishop 2006, eq. 2.116-2.117): a different route from the gain form."""
    prec = torch.linalg.inv(cov) + A.T @ A / s**2
    post_cov = torch.linalg.inv(prec)
    return post_cov @ (torch.linalg.solve(cov, mean) + A.T @ y / s**2), post_cov


@pytest.mark.parametrize("noise_std", [0.05, 0.5, 3.0])
def test_condition_matches_information_form(noise_std):
    A = torch.tensor([[1.0, 0.5, 0.0, -1.0], [0.0, 1.0, 2.0, 0.3]], dtype=torch.float64)
    y = torch.tensor([0.7, -1.2], dtype=torch.float64)
    for prior in (correlated_gaussian(), Gaussian([0.3, -0.2, 1.0, 0.0], [0.5, 0.1, 2.0, 1.0]).to(dtype=torch.float64)):
        cov = prior.cov if isinstance(prior, MultivariateGaussian) else torch.diag(prior.var)
        post = prior.condition(A, y, noise_std)
        mean, ref_cov = information_form(prior.mean.reshape(-1), cov, A, y, noise_std)
        assert isinstance(post, MultivariateGaussian) and post.event_shape == prior.event_shape
        torch.testing.assert_close(post.mean.reshape(-1), mean)
        torch.testing.assert_close(post.cov, ref_cov)


def test_noiseless_inpainting_is_the_schur_complement():
    # Observe coordinates {0, 2} exactly: they equal y, the rest is the Gaussian conditional (Schur complement).
    prior = correlated_gaussian((4,), seed=2)
    obs, hid = [0, 2], [1, 3]
    A = torch.eye(4, dtype=torch.float64)[obs]
    y = torch.tensor([0.4, -0.9], dtype=torch.float64)
    post = prior.condition(A, y, 0.0)
    S, mu = prior.cov, prior.mean
    gain = S[hid][:, obs] @ torch.linalg.inv(S[obs][:, obs])
    torch.testing.assert_close(post.mean[obs], y)
    torch.testing.assert_close(post.mean[hid], mu[hid] + gain @ (y - mu[obs]))
    torch.testing.assert_close(post.cov[hid][:, hid], S[hid][:, hid] - gain @ S[obs][:, hid])
    torch.testing.assert_close(post.cov[obs], torch.zeros(2, 4, dtype=torch.float64), atol=1e-12, rtol=0)
    # singular posterior: smoothed laws exist, the data-level density does not
    with pytest.raises(ValueError, match="singular"):
        post.log_prob(post.mean[None])
    assert torch.isfinite(post.score_fn(VPSDE())(post.mean[None], 0.1)).all()


@pytest.mark.parametrize("mixture", ["diagonal", "full"])
def test_mixture_condition_is_bayes_rule(mixture):
    # log p(x | y) = log p(x) + log N(y; Ax, s²I) - log p(y), with p(y) = Σ w_k N(y; Aμ_k, AΣ_kAᵀ + s²I)
    # computed by torch.distributions: an independent route to the weights and components.
    prior = ring_mixture() if mixture == "diagonal" else full_cov_mixture()
    d = prior.means.shape[1]
    A = torch.ones(1, d, dtype=torch.float64) / math.sqrt(d)
    y, s = torch.tensor([0.8], dtype=torch.float64), 0.3
    post = prior.condition(A, y, s)
    assert isinstance(post, MultivariateGaussianMixture)
    covs = prior.covs if mixture == "full" else torch.diag_embed(prior.component_vars.expand_as(prior.means))
    evidence = torch.distributions.MultivariateNormal(prior.means @ A.T, A @ covs @ A.T + s**2).log_prob(y)
    torch.testing.assert_close(post.weights, torch.softmax(prior.weights.log() + evidence, 0))
    x = torch.randn(16, d, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    lik = torch.distributions.Normal(x @ A.T, s).log_prob(y).sum(1)
    torch.testing.assert_close(
        post.log_prob(x), prior.log_prob(x) + lik - torch.logsumexp(prior.weights.log() + evidence, 0)
    )


@pytest.mark.parametrize(
    "factory, name",
    [
        (lambda: MultivariateGaussian([0.0, 0.0], [[1.0, 0.5], [0.0, 1.0]]), "symmetric"),
        (lambda: MultivariateGaussian([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]]), "positive semi-definite"),
        (lambda: MultivariateGaussian([0.0, 0.0], [[1.0]]), "cov"),
        (lambda: MultivariateGaussianMixture([1.0], [[0.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]), "covs"),
        (lambda: MultivariateGaussianMixture([1.0, 1.0], [[0.0, 0.0]], torch.eye(2)[None]), "weights"),
        (lambda: Gaussian([0.0, 0.0], 1.0).condition([[1.0, 0.0]], [1.0], -0.1), "noise_std"),
        (lambda: Gaussian([0.0, 0.0], 1.0).condition([[1.0, 0.0, 0.0]], [1.0], 0.1), "A"),
        (lambda: Gaussian([0.0, 0.0], 1.0).condition([[1.0, 0.0]], [1.0, 2.0], 0.1), "y"),
        (lambda: Gaussian([0.0, 0.0], 1.0).condition([[1.0, 0.0], [2.0, 0.0]], [1.0, 2.0], 0.0), "singular"),
    ],
)
def test_bad_full_covariance_parameters_raise(factory, name):
    with pytest.raises(ValueError, match=name):
        factory()


# -- labelled mixtures and the exact guided laws ----------------------------------------------------------------------
def labelled_mixture(dtype=torch.float64):
    means = torch.tensor([[1.0, 0.5], [-1.0, 0.0], [0.0, -1.2]], dtype=dtype)
    return GaussianMixture(
        torch.tensor([0.5, 0.3, 0.2], dtype=dtype), means, torch.tensor([0.3, 0.4, 0.25], dtype=dtype)
    )


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_class_log_prob_is_bayes_and_its_gradient_is_class_score(sde):
    """p_t(y | x) = w_y N_y / Σ w_k N_k from the component marginals (independently: torch.distributions), sums to 1
    over labels, and autograd of its log equals class_score_fn."""
    mix, g = labelled_mixture(), torch.Generator().manual_seed(0)
    t = 1e-3 + 0.99 * torch.rand(32, generator=g, dtype=torch.float64)
    x = torch.randn(32, 2, generator=g, dtype=torch.float64) * (1 + sde.std(t)[:, None])
    logs = torch.stack([mix.class_log_prob_fn(sde, k)(x, t) for k in range(3)], 1)
    torch.testing.assert_close(torch.logsumexp(logs, 1), torch.zeros(32, dtype=torch.float64))
    alpha, sigma = sde.mean_coeff(t)[:, None, None], sde.std(t)[:, None, None]
    comp = torch.distributions.Normal(alpha * mix.means, (alpha**2 * mix.stds[:, None] ** 2 + sigma**2).sqrt())
    joint = comp.log_prob(x[:, None]).sum(-1) + mix.weights.log()
    torch.testing.assert_close(logs, joint - torch.logsumexp(joint, 1, keepdim=True))
    for y in (1, torch.tensor([0, 1, 2, 2] * 8)):
        want = autograd_score(lambda z, y=y: mix.class_log_prob_fn(sde, y)(z, t), x)
        torch.testing.assert_close(mix.class_score_fn(sde, y)(x, t), want)
    assert torch.equal(mix.component(2).mean, mix.means[2]) and torch.equal(
        mix.component(2).std, torch.full((2,), 0.25)
    )


def _guided_ode_reference(sde, cond, uncond, w, interval, x, rtol=1e-12):
    """An independent reference: scipy's DOP853 on dx/dt = f x - ½g²(s_u + w(s_c - s_u)) in t itself."""
    from scipy.integrate import solve_ivp

    def rhs(t, z):
        tt = torch.tensor(t, dtype=torch.float64)
        xx = torch.as_tensor(z).reshape(x.shape)
        level = float(sde.noise_level(tt))
        ww = w if interval is None or interval[0] < level <= interval[1] else 1.0
        su, sc = uncond.score_fn(sde)(xx, tt), cond.score_fn(sde)(xx, tt)
        return (sde.drift_coeff(tt) * xx - 0.5 * sde.diffusion(tt) ** 2 * (su + ww * (sc - su))).reshape(-1).numpy()

    r = solve_ivp(rhs, (sde.T, 1e-3), x.reshape(-1).numpy(), method="DOP853", rtol=rtol, atol=1e-12)
    return torch.as_tensor(r.y[:, -1]).reshape(x.shape)


GUIDED_CASES = [(0.0, None), (1.0, None), (3.0, None), (15.0, None), (7.5, (0.28, 5.42))]


def _pair():
    mix = labelled_mixture()
    return mix.component(0), Gaussian(mix.mean, mix.std)


SLOW_SDES = [SDES[1], *(pytest.param(s, marks=pytest.mark.slow) for s in (SDES[0], SDES[2]))]  # DOP853 at 1e-12: 3 s


@pytest.mark.parametrize("sde", SLOW_SDES, ids=["vp", "ve", "subvp"])
@pytest.mark.parametrize("w, interval", GUIDED_CASES)
def test_guided_flow_matches_an_independent_ode_solve(sde, w, interval):
    """GuidedGaussian.flow (quadrature in u = σ̃²) against DOP853 at rtol 1e-12 in t: within 1e-9 of the state's scale
    (DOP853's global error at 1e-12, times the ~100× error growth across the interval's jumps)."""
    from sdesolve import GuidedGaussian

    cond, uncond = _pair()
    x = sde.prior_sampling((3, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = GuidedGaussian(cond, uncond, w, interval).flow(sde, x, sde.T, 1e-3)
    torch.testing.assert_close(got, _guided_ode_reference(sde, cond, uncond, w, interval, x), rtol=0, atol=1e-9)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_guided_flow_reference_against_itself_and_the_exact_flows(sde):
    """Quadrature at rtol 1e-9 and 1e-13 agree to 1e-9 (the looser one's error); scale 0 and 1 are `Gaussian.flow` of
    the unconditional and conditional laws; flow_law is the flow's push-forward."""
    from sdesolve import GuidedGaussian

    cond, uncond = _pair()
    x = sde.prior_sampling((4, 2), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for w, interval in GUIDED_CASES:
        tight = GuidedGaussian(cond, uncond, w, interval).flow(sde, x, sde.T, 1e-3)
        loose = GuidedGaussian(cond, uncond, w, interval, rtol=1e-9).flow(sde, x, sde.T, 1e-3)
        torch.testing.assert_close(loose, tight, rtol=0, atol=1e-9)
    for w, law in ((0.0, uncond), (1.0, cond)):  # round-off only, amplified by 1/α(T) ≈ 160 (VP) in x/α
        got = GuidedGaussian(cond, uncond, w).flow(sde, x, sde.T, 1e-3)
        torch.testing.assert_close(got, law.flow(sde, x, sde.T, 1e-3), rtol=0, atol=1e-10)
    gg, start = GuidedGaussian(cond, uncond, 3.0), Gaussian(torch.tensor([0.1, -0.2]).double(), 0.7)
    pushed = gg.flow_law(sde, start, sde.T, 0.5)
    ends = gg.flow(sde, torch.stack([start.mean, start.mean + start.std]), sde.T, 0.5)
    torch.testing.assert_close(pushed.mean, ends[0])
    torch.testing.assert_close(pushed.std, ends[1] - ends[0])


@pytest.mark.parametrize("sde", SLOW_SDES, ids=["vp", "ve", "subvp"])
@pytest.mark.parametrize("w, interval", GUIDED_CASES[1:])
def test_guided_reverse_law_matches_the_moment_odes(sde, w, interval):
    """reverse_law against DOP853 on the moment ODEs of the guided reverse SDE in t, dm/dt = k m - g²b,
    dV/dt = 2kV - g² (k = f + g²a for the guided score -a x + b): within 1e-9; at w = 1 from the exact p_T(x | y)
    it is the exact marginal p_eps(x | y) (the reverse SDE of the true conditional score keeps the marginals)."""
    from scipy.integrate import solve_ivp

    from sdesolve import GuidedGaussian

    cond, uncond = _pair()
    start = Gaussian(torch.zeros(2, dtype=torch.float64), float(sde.std(torch.tensor(1.0))))
    law = GuidedGaussian(cond, uncond, w, interval).reverse_law(sde, start, sde.T, 1e-3)

    def rhs(t, z):
        tt = torch.tensor([t], dtype=torch.float64)
        alpha, s2 = sde.mean_coeff(tt), sde.std(tt) ** 2
        level = float(sde.noise_level(tt))
        ww = w if interval is None or interval[0] < level <= interval[1] else 1.0
        vu, vc = alpha**2 * uncond.var + s2, alpha**2 * cond.var + s2
        a = (1 - ww) / vu + ww / vc
        b = alpha * ((1 - ww) * uncond.mean / vu + ww * cond.mean / vc)
        g2 = sde.diffusion(tt) ** 2
        k = sde.drift_coeff(tt) + g2 * a
        return torch.cat([k * torch.as_tensor(z[:2]) - g2 * b, 2 * k * torch.as_tensor(z[2:]) - g2]).numpy()

    z0 = torch.cat([start.mean, start.var]).numpy()
    r = solve_ivp(rhs, (sde.T, 1e-3), z0, method="DOP853", rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(law.mean, torch.as_tensor(r.y[:2, -1]), rtol=0, atol=1e-9)
    torch.testing.assert_close(law.var, torch.as_tensor(r.y[2:, -1]), rtol=1e-9, atol=0)
    exact = GuidedGaussian(cond, uncond, 1.0).reverse_law(sde, cond.marginal(sde, sde.T), sde.T, 1e-3)
    torch.testing.assert_close(exact.mean, cond.marginal(sde, 1e-3).mean, rtol=0, atol=1e-10)  # 1/α(T) × round-off
    torch.testing.assert_close(exact.std, cond.marginal(sde, 1e-3).std, rtol=1e-10, atol=0)


def test_guided_gaussian_bad_input():
    from sdesolve import GuidedGaussian

    cond, uncond = _pair()
    with pytest.raises(ValueError, match="scale"):
        GuidedGaussian(cond, uncond, -1.0)
    with pytest.raises(ValueError, match="interval"):
        GuidedGaussian(cond, uncond, 2.0, interval=(1.0, 0.5))
    with pytest.raises(ValueError, match="event shape"):
        GuidedGaussian(cond, Gaussian(0.0, 1.0, event_shape=(3,)), 2.0)
    with pytest.raises(TypeError, match="Gaussian"):
        GuidedGaussian(cond, labelled_mixture(), 2.0)
    with pytest.raises(ValueError, match="rtol"):
        GuidedGaussian(cond, uncond, 2.0, rtol=1e-16)
    with pytest.raises(ValueError, match="t"):
        GuidedGaussian(cond, uncond, 2.0).flow(VPSDE(), torch.zeros(1, 2, dtype=torch.float64), 1.5, 0.1)
