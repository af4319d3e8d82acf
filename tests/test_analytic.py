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
