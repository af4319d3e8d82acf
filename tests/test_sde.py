"""Forward SDEs: Fokker–Planck consistency, score_sde's formulas, simulation against marginals, errors."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from sdesolve import VESDE, VPSDE, Gaussian, LinearSDE, SubVPSDE, testing
from sdesolve.sde import SDES

sigma_mins = st.floats(1e-3, 1.0)
sigma_ratios = st.floats(2.0, 1e5)
beta_mins = st.floats(0.0, 1.0)
beta_spans = st.floats(0.5, 30.0)


def make_sde(kind, a, b):
    if kind == "ve":
        return VESDE(sigma_min=a, sigma_max=a * b)
    return (VPSDE if kind == "vp" else SubVPSDE)(beta_min=a, beta_max=a + b)


sdes = st.one_of(
    st.tuples(st.just("ve"), sigma_mins, sigma_ratios),
    st.tuples(st.sampled_from(["vp", "subvp"]), beta_mins, beta_spans),
).map(lambda p: make_sde(*p))


@given(sde=st.one_of(sdes, testing.sdes(tuple(SDES), T=(0.3, 10.0))), frac=st.floats(1e-4, 0.999))
def test_marginals_solve_fokker_planck(sde, frac):
    # alpha' = f alpha and (sigma^2)' = 2 f sigma^2 + g^2, by autograd in float64 (t > 0: sigma(0) = 0 for VP), on
    # every schedule with T drawn (a T misplaced in a formula shows only at T != 1); t < T: f is infinite at T where
    # alpha(T) = 0
    t = frac * sde.T
    tt = torch.tensor([t], dtype=torch.float64, requires_grad=True)
    alpha, var = sde.mean_coeff(tt), sde.std(tt) ** 2
    if alpha.requires_grad:
        (d_alpha,) = torch.autograd.grad(alpha.sum(), tt, allow_unused=True, materialize_grads=True)
    else:  # a constant α (VE, EDM)
        d_alpha = torch.zeros_like(tt)
    (d_var,) = torch.autograd.grad(var.sum(), tt)
    with torch.no_grad():
        f = sde.drift(torch.ones(1, 1, dtype=torch.float64), tt)[0, 0]
        g2 = sde.diffusion(tt)[0] ** 2
        alpha, var = alpha.detach(), var.detach()
    scale = 1 + abs(float(d_var)) + float(g2)
    assert float(d_alpha) == pytest.approx(float(f * alpha), rel=1e-9, abs=1e-12)
    assert abs(float(d_var - (2 * f * var + g2))) <= 1e-9 * scale


def score_sde_formulas(sde, t):
    """score_sde_pytorch sde_lib formulas, rewritten in numpy: (mean coeff, std, g)."""
    if isinstance(sde, VESDE):
        sigma = sde.sigma_min * (sde.sigma_max / sde.sigma_min) ** t
        return 1.0, sigma, sigma * np.sqrt(2 * (np.log(sde.sigma_max) - np.log(sde.sigma_min)))
    b0, b1 = sde.beta_min, sde.beta_max
    log_mean = -0.25 * t**2 * (b1 - b0) - 0.5 * t * b0
    beta = b0 + t * (b1 - b0)
    if isinstance(sde, VPSDE):
        return np.exp(log_mean), np.sqrt(1.0 - np.exp(2.0 * log_mean)), np.sqrt(beta)
    discount = 1.0 - np.exp(-2 * b0 * t - (b1 - b0) * t**2)
    return np.exp(log_mean), 1 - np.exp(2.0 * log_mean), np.sqrt(beta * discount)


@given(sde=sdes, t=st.floats(1e-3, 1.0))
def test_formulas_equal_score_sde(sde, t):
    alpha, std, g = score_sde_formulas(sde, t)
    tt = torch.tensor([t], dtype=torch.float64)
    assert float(sde.mean_coeff(tt)) == pytest.approx(alpha, rel=1e-12)
    assert float(sde.std(tt)) == pytest.approx(std, rel=1e-9)
    assert float(sde.diffusion(tt)) == pytest.approx(g, rel=1e-9)
    x0 = torch.randn(3, 2, dtype=torch.float64)
    mean, s = sde.marginal_prob(x0, t)
    torch.testing.assert_close(mean, alpha * x0)
    torch.testing.assert_close(s, torch.full((3,), std, dtype=torch.float64))


@pytest.mark.parametrize("N", [10, 100, 1000])
def test_ve_discretize_equals_score_sde(N):
    # score_sde: sigma_k = exp(linspace(log smin, log smax, N)), t = k/(N-1), G^2 = sigma_k^2 - sigma_{k-1}^2.
    sde = VESDE(0.01, 50.0, N=N)
    k = torch.arange(1, N, dtype=torch.float64)
    sig = torch.exp(torch.linspace(math.log(0.01), math.log(50.0), N, dtype=torch.float64))
    x = torch.randn(N - 1, 3, dtype=torch.float64)
    f, G = sde.discretize(x, k / (N - 1), (k - 1) / (N - 1))
    assert torch.equal(f, torch.zeros_like(x))
    torch.testing.assert_close(G, (sig[1:] ** 2 - sig[:-1] ** 2).sqrt(), rtol=1e-10, atol=0)


@pytest.mark.parametrize("cls", [VPSDE, SubVPSDE])
def test_vp_discretize_agrees_with_score_sde_to_first_order(cls):
    # score_sde's VP uses beta_k = beta(t_k)/N, G^2 = beta_k, f = (sqrt(1-beta_k)-1)x: ours is the exact
    # transition. Both are O(1/N) per step and differ by O(1/N^2): max |ours - theirs| in units of
    # beta_max/N must shrink like 1/N (ratio ~2 per doubling of N).
    errs = []
    for N in (100, 200, 400, 800):
        sde = cls(N=N)
        k = torch.arange(1, N, dtype=torch.float64)
        t = k / (N - 1)
        betas = (sde.beta_min + t * (sde.beta_max - sde.beta_min)) / N
        if cls is SubVPSDE:  # score_sde falls back to Euler: G = g(t) sqrt(1/N)
            ref_G2 = sde.diffusion(t) ** 2 / N
        else:
            ref_G2 = betas
        _, G = sde.discretize(torch.ones(N - 1, 1, dtype=torch.float64), t, (k - 1) / (N - 1))
        errs.append(float((G**2 - ref_G2).abs().max() * N / sde.beta_max))
    ratios = np.array(errs[:-1]) / np.array(errs[1:])
    assert errs[-1] < 0.05
    assert np.all((ratios > 1.6) & (ratios < 2.5)), (errs, ratios)


@pytest.mark.parametrize("sde", [VESDE(0.01, 20.0), VPSDE(), SubVPSDE()], ids=["ve", "vp", "subvp"])
@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_fine_euler_maruyama_reproduces_marginals(sde, t):
    # Forward EM with 2000 steps from data N(0.3, 0.5^2) (VE: from p_0 = data smoothed by sigma_min).
    # Discretisation bias O(dt) ~ 1e-3 relative is far below the Monte Carlo SE (n = 40 000, ~0.7% on var).
    gen = torch.Generator().manual_seed(0)
    data = Gaussian(0.3, 0.5)
    x = data.marginal(sde, 0.0).sample(40_000, generator=gen).double()
    steps = 2000
    ts = torch.linspace(0, t, steps + 1, dtype=torch.float64)
    for i in range(steps):
        dt = ts[i + 1] - ts[i]
        drift, g = sde.sde(x, ts[i])
        x = x + drift * dt + g[:, None] * dt.sqrt() * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    exact = data.marginal(sde, t)
    n = x.shape[0]
    m, v = float(exact.mean), float(exact.var)
    assert abs(float(x.mean()) - m) < 4 * math.sqrt(v / n)
    assert abs(float(x.var()) - v) < 4 * v * math.sqrt(2 / (n - 1))


@pytest.mark.parametrize("sde", [VESDE(), VPSDE(), SubVPSDE()], ids=["ve", "vp", "subvp"])
def test_prior_logp_is_the_normalised_prior(sde):
    std = sde.sigma_max if isinstance(sde, VESDE) else 1.0
    z = sde.prior_sampling((5, 3, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = torch.distributions.Normal(0.0, std).log_prob(z).sum(dim=(1, 2))
    torch.testing.assert_close(sde.prior_logp(z), ref)
    # Normalisation: the 1-D prior density integrates to 1 (trapezoid over +-12 std).
    grid = torch.linspace(-12 * std, 12 * std, 200_001, dtype=torch.float64)[:, None]
    assert float(torch.trapezoid(sde.prior_logp(grid).exp(), grid[:, 0])) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("sde", [VESDE(), VPSDE()], ids=["ve", "vp"])
def test_prior_sampling_moments_and_generator(sde):
    shape = (20_000, 4)
    z = sde.prior_sampling(shape, generator=torch.Generator().manual_seed(3))
    z2 = sde.prior_sampling(shape, generator=torch.Generator().manual_seed(3))
    assert torch.equal(z, z2) and z.shape == shape
    std = sde.sigma_max if isinstance(sde, VESDE) else 1.0
    n = z.numel()
    assert abs(float(z.mean())) < 4 * std / math.sqrt(n)
    assert abs(float(z.var()) - std**2) < 4 * std**2 * math.sqrt(2 / n)


@pytest.mark.parametrize("sde", [VESDE(), VPSDE(), SubVPSDE()], ids=["ve", "vp", "subvp"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_and_dtype_follow_inputs(sde, dtype):
    x = torch.randn(4, 3, dtype=dtype)
    t = torch.rand(4, dtype=dtype)
    drift, g = sde.sde(x, t)
    f, G = sde.discretize(x, t, t / 2)
    mean, std = sde.marginal_prob(x, t)
    for out in (drift, g, f, G, mean, std, sde.prior_logp(x)):
        assert out.dtype == dtype
    assert g.shape == G.shape == std.shape == (4,)


@given(sde=sdes, t=st.floats(0.01, 1.0), frac=st.floats(0.0, 0.99))
def test_discretize_is_the_exact_transition(sde, t, frac):
    # Composing marginal(t_next) with the one-step transition gives marginal(t): r m, r^2 v + G^2.
    t_next = t * frac
    data = Gaussian(0.3, 0.5, event_shape=(1,)).to(dtype=torch.float64)
    p_next, p_t = data.marginal(sde, t_next), data.marginal(sde, t)
    x = torch.ones(1, 1, dtype=torch.float64)
    f, G = sde.discretize(x, t, t_next)
    r = 1 + f[0, 0]
    assert float(r * p_next.mean) == pytest.approx(float(p_t.mean), rel=1e-9, abs=1e-12)
    assert float(r**2 * p_next.var + G**2) == pytest.approx(float(p_t.var), rel=1e-9)


@pytest.mark.parametrize("sde", [VESDE(), VPSDE(), SubVPSDE()], ids=["ve", "vp", "subvp"])
def test_reverse_sde_and_probability_flow(sde):
    x = torch.randn(4, 2, dtype=torch.float64)
    t = torch.rand(4, dtype=torch.float64)

    def score(x, t):
        return -x / (1 + t[:, None])

    f, g = sde.sde(x, t)
    rev, flow = sde.reverse(score), sde.reverse(score, probability_flow=True)
    torch.testing.assert_close(rev.drift(x, t), f - g[:, None] ** 2 * score(x, t))
    torch.testing.assert_close(flow.drift(x, t), f - 0.5 * g[:, None] ** 2 * score(x, t))
    torch.testing.assert_close(rev.diffusion(t), g)
    assert torch.equal(flow.diffusion(t), torch.zeros_like(g))
    fd, G = sde.discretize(x, t, t / 2)
    rf, rG = rev.discretize(x, t, t / 2)
    torch.testing.assert_close(rf, fd - G[:, None] ** 2 * score(x, t))
    torch.testing.assert_close(rG, G)
    pf, pG = flow.discretize(x, t, t / 2)
    torch.testing.assert_close(pf, fd - 0.5 * G[:, None] ** 2 * score(x, t))
    assert torch.equal(pG, torch.zeros_like(G))


@pytest.mark.parametrize(
    "factory, name",
    [
        (lambda: VESDE(sigma_min=1.0, sigma_max=0.5), "sigma_min"),
        (lambda: VESDE(sigma_min=0.0), "sigma_min"),
        (lambda: VESDE(sigma_max=-1.0), "sigma_max"),
        (lambda: VESDE(sigma_min=float("nan")), "sigma_min"),
        (lambda: VPSDE(beta_min=-0.1), "beta_min"),
        (lambda: VPSDE(beta_max=-1.0), "beta_max"),
        (lambda: VPSDE(beta_min=5.0, beta_max=1.0), "beta_max"),
        (lambda: SubVPSDE(beta_min=-1.0), "beta_min"),
        (lambda: VPSDE(N=0), "N"),
        (lambda: VESDE(T=0.0), "T"),
        (lambda: VPSDE().check_time("t", 1.5), "t"),
    ],
)
def test_bad_parameters_raise_naming_them(factory, name):
    with pytest.raises(ValueError, match=name):
        factory()


# -- the schedule: λ, σ̃ and their inverses (closed forms against the base class's bisection) ----------------------
def _with_T(sde, T):
    """``sde`` rebuilt on [0, T] (a T misplaced in a formula shows as soon as T ≠ 1)."""
    params = {k: v for k, v in sde._params().items() if k != "N"}
    return type(sde)(**params, T=T)


schedules = st.tuples(sdes, st.sampled_from([1.0, 0.3, 2.5, 10.0])).map(lambda p: _with_T(*p))


@given(sde=schedules)
def test_closed_form_inverses_equal_the_bisection_and_round_trip(sde):
    # The base class inverts λ by 64 halvings of [0, T] (float64 resolution); the closed forms must agree with it and
    # invert λ(t) and σ̃(t) to a few ulps of T: 8·eps·T (measured: at most 2 ulps on VE, VP, sub-VP with T = 1, 2.5).
    t = torch.linspace(1e-5, 1.0, 513, dtype=torch.float64) * sde.T
    lam, level = sde.marginal_lambda(t), sde.noise_level(t)
    tol = 8 * torch.finfo(torch.float64).eps * sde.T
    bisection = LinearSDE.inverse_lambda(sde, lam)
    assert float((sde.inverse_lambda(lam) - bisection).abs().max()) <= tol
    assert float((sde.inverse_lambda(lam) - t).abs().max()) <= tol
    assert float((sde.inverse_noise_level(level) - t).abs().max()) <= tol
    assert bool((lam[1:] < lam[:-1]).all()) and bool((level[1:] > level[:-1]).all())
    torch.testing.assert_close(lam, sde.log_mean_coeff(t) - sde.std(t).log(), rtol=0, atol=1e-14)
    torch.testing.assert_close(level, torch.exp(-lam), rtol=1e-14, atol=0)


@pytest.mark.parametrize("sde", [VESDE(), VPSDE(), SubVPSDE()], ids=["ve", "vp", "subvp"])
def test_inverse_lambda_clamps_to_the_schedule_and_is_batch_independent(sde):
    lam_0, lam_T = (float(v) for v in sde.marginal_lambda(torch.tensor([1e-9, sde.T], dtype=torch.float64)))
    ends = sde.inverse_lambda(torch.tensor([lam_T - 5.0, lam_0 + 5.0], dtype=torch.float64))
    assert float(ends[0]) == sde.T and float(ends[1]) < 1e-8  # beyond the range: the nearest end
    # bitwise the same for a value alone or in a batch (torch's vectorised logaddexp and fractional pow are not:
    # a sample's stage times in the per-sample adaptive solver would then depend on its batch)
    lam = torch.linspace(lam_T, min(lam_0, 20.0), 4099, dtype=torch.float64)
    full = sde.inverse_lambda(lam)
    assert all(torch.equal(full[i : i + 1], sde.inverse_lambda(lam[i : i + 1])) for i in range(0, 4099, 7))


class _Quadratic(LinearSDE):
    """A user schedule with no closed-form inverse: α = exp(-t²), σ² = 1 - α² (VP-like), f = -2t, g² = 4t."""

    def drift_coeff(self, t):
        return -2 * torch.as_tensor(t)

    def diffusion(self, t):
        return (4 * torch.as_tensor(t)).sqrt()

    def log_mean_coeff(self, t):
        return -(torch.as_tensor(t) ** 2)

    def std(self, t):
        return (-torch.expm1(-2 * torch.as_tensor(t) ** 2)).sqrt()

    def prior_sampling(self, shape, generator=None, device=None, dtype=None):
        return self._gaussian_prior(shape, generator, device, dtype, 1.0)

    def prior_logp(self, z):
        return self._gaussian_prior_logp(z, 1.0)


def test_a_user_schedule_is_inverted_by_bisection():
    sde = _Quadratic(T=2.0)
    t = torch.linspace(1e-3, 2.0, 101, dtype=torch.float64)
    torch.testing.assert_close(sde.inverse_lambda(sde.marginal_lambda(t)), t, rtol=0, atol=1e-13)
    torch.testing.assert_close(sde.inverse_noise_level(sde.noise_level(t)), t, rtol=0, atol=1e-13)


@pytest.mark.parametrize("sde", [VESDE(0.01, 20.0), VPSDE(), SubVPSDE()], ids=["ve", "vp", "subvp"])
def test_data_prediction_is_the_exact_posterior_mean(sde):
    # For x0 ~ N(μ, s²) and x_t = αx0 + σε, E[x0 | x_t] = μ + αs²(x_t − αμ)/(α²s² + σ²) in closed form; Tweedie's
    # formula with the exact score must give it to float64 rounding.
    mu, s = torch.tensor([0.3, -1.0], dtype=torch.float64), torch.tensor([0.5, 2.0], dtype=torch.float64)
    data = Gaussian(mu, s)
    t = torch.tensor([0.05, 0.3, 0.7, 1.0], dtype=torch.float64)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    alpha, sigma = sde.mean_coeff(t)[:, None], sde.std(t)[:, None]
    exact = mu + alpha * s**2 * (x - alpha * mu) / (alpha**2 * s**2 + sigma**2)
    torch.testing.assert_close(sde.data_prediction(x, data.score_fn(sde)(x, t), t), exact, rtol=1e-12, atol=1e-12)
