r"""Denoising score matching against its closed form on Gaussian data, and the EMA recursion.

For data N(μ, s²) per coordinate, $x_t = \alpha x_0 + \sigma z$ has law N(αμ, v), $v = \alpha^2 s^2 + \sigma^2$. At the
exact score $s^* = -(x_t - \alpha\mu)/v$, $\sigma s^* + z = z\,\alpha^2 s^2/v - w\,\sigma\alpha s/v$ ($x_0 = \mu + s w$),
so per coordinate $\mathbb E\|\sigma s^* + z\|^2 = \alpha^2 s^2/v$ (the DSM minimum, the irreducible part), and
with likelihood weighting $\mathbb E\,g^2\|s^* + z/\sigma\|^2 = g^2\alpha^2 s^2/(\sigma^2 v)$. Scaling the score by
$1 + \delta$ adds $2\delta\,\mathbb E[(\sigma s^* + z)\cdot\sigma s^*] + \delta^2\mathbb E\|\sigma s^*\|^2$; the cross
term vanishes at the minimiser (the residual is orthogonal to every function of $x_t$), so the rise is
$\delta^2\sigma^2/v$ ($\delta^2 g^2/v$ with likelihood weighting). Time averages over U[eps, T] by scipy's quad.
"""

import pytest
import torch
from scipy.integrate import quad

from sdesolve import VESDE, VPSDE, Gaussian, SubVPSDE, get_sde
from sdesolve.adapters import velocity_from_score
from sdesolve.losses import dsm_loss, dsm_losses, ema, flow_matching_loss, flow_matching_losses

MU, S, DIM, N = 0.3, 0.5, 4, 40_000
DATA = Gaussian(torch.full((DIM,), MU, dtype=torch.float64), S)
SDES = [VPSDE(), SubVPSDE(), VESDE(sigma_min=0.01, sigma_max=5.0)]
EPS = 1e-3  # keeps the likelihood-weighted integrand (~1/t near 0) and its Monte Carlo variance moderate


def _coeffs(sde, t: float) -> tuple[float, float, float]:
    t = torch.tensor([t], dtype=torch.float64)
    return float(sde.mean_coeff(t)), float(sde.std(t)), float(sde.diffusion(t))


def _time_mean(sde, integrand) -> float:
    def f(t):
        alpha, sigma, g = _coeffs(sde, t)
        return integrand(alpha, sigma, g, alpha**2 * S**2 + sigma**2)

    return quad(f, EPS, sde.T, limit=200, points=[0.01, 0.1])[0] / (sde.T - EPS)


def _losses(sde, scale: float, likelihood_weighting: bool, reduce_mean: bool = True) -> torch.Tensor:
    x0 = DATA.sample(N, generator=torch.Generator().manual_seed(1))
    exact = DATA.score_fn(sde)
    model = lambda x, t: scale * exact(x, t)  # noqa: E731
    gen = torch.Generator().manual_seed(2)  # same t and z for every scale: common random numbers
    return dsm_losses(
        sde, model, x0, eps=EPS, generator=gen, likelihood_weighting=likelihood_weighting, reduce_mean=reduce_mean
    )


def _within_4se(values: torch.Tensor, expected: float) -> None:
    se = float(values.std() / values.numel() ** 0.5)
    assert abs(float(values.mean()) - expected) < 4 * se, (float(values.mean()), expected, se)


@pytest.mark.parametrize("sde", SDES, ids=repr)
@pytest.mark.parametrize("likelihood_weighting", [False, True])
def test_exact_score_reaches_the_closed_form_minimum(sde, likelihood_weighting):
    if likelihood_weighting:
        minimum = _time_mean(sde, lambda a, s, g, v: g**2 * a**2 * S**2 / (s**2 * v))
    else:
        minimum = _time_mean(sde, lambda a, s, g, v: a**2 * S**2 / v)
    _within_4se(_losses(sde, 1.0, likelihood_weighting), minimum)


@pytest.mark.parametrize("sde", SDES, ids=repr)
@pytest.mark.parametrize("likelihood_weighting", [False, True])
@pytest.mark.parametrize("delta", [0.2, -0.2])
def test_scaled_score_raises_the_loss_by_delta_squared(sde, likelihood_weighting, delta):
    rise = _losses(sde, 1.0 + delta, likelihood_weighting) - _losses(sde, 1.0, likelihood_weighting)
    if likelihood_weighting:
        expected = delta**2 * _time_mean(sde, lambda a, s, g, v: g**2 / v)
    else:
        expected = delta**2 * _time_mean(sde, lambda a, s, g, v: s**2 / v)
    _within_4se(rise, expected)
    assert float(rise.mean()) > 0.5 * expected  # a rise, not just noise around 0


def test_sum_reduction_is_event_size_times_mean():
    sde = VPSDE()
    torch.testing.assert_close(_losses(sde, 1.1, False, reduce_mean=False), DIM * _losses(sde, 1.1, False))


@pytest.mark.parametrize("sde", SDES, ids=repr)
def test_eps_and_x0_parameterisations_give_the_same_losses(sde):
    exact = DATA.score_fn(sde)
    eps_model = lambda x, t: -sde.std(t)[:, None] * exact(x, t)  # noqa: E731 — ε = -σ ∇log p
    x0_model = lambda x, t: (x + sde.std(t)[:, None] ** 2 * exact(x, t)) / sde.mean_coeff(t)[:, None]  # noqa: E731
    x0 = DATA.sample(64, generator=torch.Generator().manual_seed(3))
    ref = dsm_losses(sde, exact, x0, generator=torch.Generator().manual_seed(4))
    for model, name in ((eps_model, "epsilon"), (x0_model, "sample")):
        got = dsm_losses(sde, model, x0, parameterization=name, generator=torch.Generator().manual_seed(4))
        torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-12)


def test_fixed_times_and_batch_mean():
    sde = VPSDE()
    x0 = DATA.sample(8, generator=torch.Generator().manual_seed(5))
    t = torch.full((8,), 0.5, dtype=torch.float64)
    losses = dsm_losses(sde, DATA.score_fn(sde), x0, t=t, generator=torch.Generator().manual_seed(6))
    loss = dsm_loss(sde, DATA.score_fn(sde), x0, t=t, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(loss, losses.mean())


def test_bad_arguments_are_named():
    sde, x0 = VPSDE(), torch.zeros(4, 2)
    with pytest.raises(ValueError, match="parameterization"):
        dsm_losses(sde, lambda x, t: x, x0, parameterization="v")
    with pytest.raises(ValueError, match="eps"):
        dsm_losses(sde, lambda x, t: x, x0, eps=1.5)
    with pytest.raises(ValueError, match="t must have shape"):
        dsm_losses(sde, lambda x, t: x, x0, t=torch.ones(3))
    with pytest.raises(TypeError, match="LinearSDE"):
        dsm_losses(sde.reverse(lambda x, t: x), lambda x, t: x, x0)
    with pytest.raises(ValueError, match="decay"):
        ema(torch.nn.Linear(2, 2), decay=1.0)


def test_ema_follows_its_recursion():
    torch.manual_seed(0)
    net, d = torch.nn.Linear(3, 2), 0.9
    averaged = ema(net, d)
    history = []
    for k in range(4):
        with torch.no_grad():
            net.weight.fill_(float(k + 1))
        history.append(float(k + 1))
        averaged.update_parameters(net)
    expected = history[0]  # the first update copies, then θ̄ ← dθ̄ + (1 - d)θ
    for value in history[1:]:
        expected = d * expected + (1 - d) * value
    torch.testing.assert_close(averaged.module.weight, torch.full((2, 3), expected))


def _d_coeffs(sde, t: float) -> tuple[float, float]:
    t = torch.tensor([t], dtype=torch.float64)
    return float(sde.d_mean_coeff(t)), float(sde.d_std(t))


FLOW_SDES = [get_sde("rectified_flow"), get_sde("cosine"), VPSDE()]


@pytest.mark.parametrize("sde", FLOW_SDES, ids=repr)
def test_flow_matching_at_the_exact_velocity_is_the_conditional_variance(sde):
    # target u = α'x0 + σ'z, x_t = αx0 + σz, x0 ~ N(μ, s²): the minimum is E Var(u | x_t) per coordinate,
    # Var u - Cov(u, x_t)²/Var x_t = s²(α'σ - ασ')²/(α²s² + σ²), averaged over t ~ U[eps, T] (scipy's quad)
    def minimum(t):
        (alpha, sigma, _), (da, ds) = _coeffs(sde, t), _d_coeffs(sde, t)
        return S**2 * (da * sigma - alpha * ds) ** 2 / (alpha**2 * S**2 + sigma**2)

    expected = quad(minimum, EPS, sde.T - 1e-9, limit=200, points=[0.01, 0.1])[0] / (sde.T - EPS)
    velocity = velocity_from_score(DATA.score_fn(sde), sde)
    x0 = DATA.sample(N, generator=torch.Generator().manual_seed(1))
    losses = flow_matching_losses(sde, velocity, x0, eps=EPS, generator=torch.Generator().manual_seed(2))
    _within_4se(losses, expected)


def test_flow_matching_time_scale_and_a_shifted_model():
    # a model off by c everywhere adds 2c·mean(v - u) + c², whose expectation is c² (the residual has mean 0 given
    # x_t); same t and z for both (common random numbers); timesteps passed as 1000 t with time_scale=1000
    sde = get_sde("rectified_flow")
    velocity = velocity_from_score(DATA.score_fn(sde), sde)
    x0 = DATA.sample(N, generator=torch.Generator().manual_seed(1))

    def model(x, tau):
        return velocity(x, tau / 1000)

    def losses(c):
        return flow_matching_losses(
            sde,
            lambda x, tau: model(x, tau) + c,
            x0,
            time_scale=1000,
            eps=EPS,
            generator=torch.Generator().manual_seed(2),
        )

    _within_4se(losses(0.1) - losses(0.0), 0.01)
    assert float(flow_matching_loss(sde, model, x0[:8], time_scale=1000)) > 0
