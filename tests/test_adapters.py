"""Score adapters: exact ε / x0 / σ-conditioned models give back the exact score."""

from types import SimpleNamespace

import pytest
import torch

from sdesolve import VESDE, VPSDE, Gaussian, SubVPSDE, get_sde, score_from_eps, score_from_sigma_model, score_from_x0
from sdesolve.adapters import score_from_velocity, velocity_from_score

DATA = Gaussian(torch.full((3,), 0.3, dtype=torch.float64), 0.5)


def _x_t():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, generator=g, dtype=torch.float64), torch.rand(
        8, generator=g, dtype=torch.float64
    ) * 0.9 + 0.05


@pytest.mark.parametrize("sde", [VPSDE(), SubVPSDE(), VESDE()])
def test_eps_and_x0_models_give_the_exact_score(sde):
    x, t = _x_t()
    score = DATA.score_fn(sde)(x, t)
    sigma, alpha = sde.std(t)[:, None], sde.mean_coeff(t)[:, None]
    eps_model = lambda x, t: -sde.std(t)[:, None] * DATA.score_fn(sde)(x, t)  # noqa: E731 — ε = -σ ∇log p
    x0_model = lambda x, t: (x + sigma**2 * score) / alpha  # noqa: E731 — Tweedie E[x0 | x_t]
    torch.testing.assert_close(score_from_eps(eps_model, sde)(x, t), score, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(score_from_x0(x0_model, sde)(x, t), score, rtol=1e-10, atol=1e-10)


def test_sigma_model_is_called_with_sigma_of_t_and_unwrapped():
    sde = VESDE()
    x, t = _x_t()
    seen = {}

    def model(x, sigma):
        seen["sigma"] = sigma
        return SimpleNamespace(sample=-x / (0.25 + sigma[:, None] ** 2))

    out = score_from_sigma_model(model, sde)(x, t)
    torch.testing.assert_close(seen["sigma"], sde.std(t))
    torch.testing.assert_close(out, -x / (0.25 + sde.std(t)[:, None] ** 2))


def test_eps_adapter_unwraps_sample_and_broadcasts_scalar_time():
    sde = VPSDE()
    x = torch.ones(4, 3, dtype=torch.float64)
    s = score_from_eps(lambda x, t: SimpleNamespace(sample=torch.ones_like(x)), sde)(x, 0.5)
    torch.testing.assert_close(s, -torch.ones_like(x) / sde.std(torch.tensor(0.5, dtype=torch.float64)))


def test_adapters_need_a_linear_sde():
    with pytest.raises(TypeError, match="LinearSDE"):
        score_from_eps(lambda x, t: x, VPSDE().reverse(lambda x, t: x))


FLOW_CASES = [get_sde("rectified_flow"), get_sde("cosine"), VPSDE(), get_sde("edm", sigma_max=20.0)]


@pytest.mark.parametrize("sde", FLOW_CASES, ids=repr)
def test_velocity_maps_invert_each_other_and_give_the_exact_score(sde):
    # v = α'D + σ'(x - αD)/σ with D = E[x0 | x_t] (v = ε - x0 for rectified flow): score → velocity → score is the
    # identity, and rectified flow's velocity is the closed form E[ε - x0 | x_t] = (x - (1 - t)D)/t - D = (x - D)/t
    x, t = _x_t()
    t = t * sde.T
    exact = DATA.score_fn(sde)
    velocity = velocity_from_score(exact, sde)
    again = score_from_velocity(velocity, sde)
    torch.testing.assert_close(again(x, t), exact(x, t), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(again.data_prediction(x, t), exact.data_prediction(x, t), rtol=1e-10, atol=1e-10)
    if repr(sde).startswith("RectifiedFlow"):
        d = exact.data_prediction(x, t)
        torch.testing.assert_close(velocity(x, t), (x - d) / t[:, None], rtol=1e-12, atol=1e-12)


def test_time_conventions_of_velocity_models():
    # diffusers/SD3: tau = 1000 t; Liu et al.'s rectified flow: data at t = 1, x_t = t x1 + (1 - t) x0, its velocity
    # x1 - x0 is minus ours at T - t
    sde = get_sde("rectified_flow")
    x, t = _x_t()
    exact = DATA.score_fn(sde)
    velocity = velocity_from_score(exact, sde)
    diffusers_model = lambda x, tau: velocity(x, tau / 1000)  # noqa: E731
    liu_model = lambda x, s: -velocity(x, 1 - s)  # noqa: E731
    for score in (score_from_velocity(diffusers_model, sde, time_scale=1000),
                  score_from_velocity(liu_model, sde, convention="data_at_T")):  # fmt: skip
        torch.testing.assert_close(score(x, t), exact(x, t), rtol=1e-10, atol=1e-10)
    at_T = score_from_velocity(velocity, sde).data_prediction(x, torch.ones(8, dtype=torch.float64))
    torch.testing.assert_close(at_T, DATA.mean.expand(8, 3), rtol=1e-12, atol=1e-12)  # finite where α = 0


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [({"time_scale": 0.0}, ValueError, "time_scale"), ({"convention": "data_at_1"}, ValueError, "choose one of"),
     ({"time_scale": float("nan")}, ValueError, "time_scale")],
)  # fmt: skip
def test_velocity_adapter_bad_arguments_are_named(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        score_from_velocity(lambda x, t: x, get_sde("rectified_flow"), **kwargs)
    with pytest.raises(ValueError, match="shape"):
        score_from_velocity(lambda x, t: x[:, :1], get_sde("rectified_flow"))(*_x_t())
