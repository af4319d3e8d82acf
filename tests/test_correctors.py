"""Langevin correctors: score_sde's batch rule reproduced independently, per-sample independence, σ-rule, errors."""

import math
import warnings

import pytest
import torch

from sdesolve import VESDE, VPSDE, AnnealedLangevin, Gaussian, LangevinCorrector, NoCorrector, get_corrector
from sdesolve.correctors import CORRECTORS

DATA = Gaussian(0.3, 0.5, event_shape=(64,))


def score_sde_langevin(x, t, score_fn, snr, alpha, gen):
    """score_sde_pytorch's LangevinCorrector.update_fn (one step), written out here independently."""
    grad = score_fn(x, t)
    noise = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    grad_norm = torch.norm(grad.reshape(grad.shape[0], -1), dim=-1).mean()
    noise_norm = torch.norm(noise.reshape(noise.shape[0], -1), dim=-1).mean()
    step_size = (snr * noise_norm / grad_norm) ** 2 * 2 * alpha
    x_mean = x + step_size[:, None] * grad
    return x_mean + torch.sqrt(step_size * 2)[:, None] * noise, x_mean


def test_batch_norm_reproduces_score_sde_ve():
    sde = VESDE()
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    t = torch.full((16,), 0.4, dtype=torch.float64)
    ours = LangevinCorrector(sde, snr=0.16, norm="batch").step(
        x, t, DATA.to(dtype=torch.float64).score_fn(sde), generator=torch.Generator().manual_seed(7)
    )
    ref = score_sde_langevin(
        x,
        t,
        DATA.to(dtype=torch.float64).score_fn(sde),
        0.16,
        torch.ones(16, dtype=torch.float64),
        torch.Generator().manual_seed(7),
    )
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-12, atol=1e-12)


def test_batch_norm_vp_alpha_is_score_sde_one_minus_beta_to_second_order():
    # score_sde's VP factor alpha_i = 1 - beta(t_i)/N; ours alpha(t)²/alpha(t')² = exp(-∫_{t'}^t beta), equal to
    # O(1/N²) on the N-grid: with the same noise the two steps differ by a relative O(1/N²).
    sde, N = VPSDE(), 1000
    t, tn = 0.5, 0.5 - 1 / N
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tt = torch.full((16,), t, dtype=torch.float64)
    score = DATA.to(dtype=torch.float64).score_fn(sde)
    ours, _ = LangevinCorrector(sde, norm="batch").step(x, tt, score, torch.Generator().manual_seed(1), t_next=tn)
    alpha = torch.full((16,), 1 - float(sde.beta(t)) / N, dtype=torch.float64)
    ref, _ = score_sde_langevin(x, tt, score, 0.16, alpha, torch.Generator().manual_seed(1))
    beta_dt = float(sde.beta(t)) / N
    assert float((ours - ref).abs().max()) < 10 * beta_dt**2 * float(x.abs().max() + 1)


def test_sample_norm_step_of_row_i_is_independent_of_its_batch():
    sde = VPSDE()
    corr = LangevinCorrector(sde, norm="sample")
    g = torch.Generator().manual_seed(0)
    grad, z = torch.randn(64, 128, generator=g), torch.randn(64, 128, generator=g)
    t, alpha = torch.rand(64, generator=g), torch.ones(64)
    batch = corr.step_size(grad, z, t, alpha)
    for i in (0, 17, 63):
        alone = corr.step_size(grad[i : i + 1], z[i : i + 1], t[i : i + 1], alpha[i : i + 1])
        torch.testing.assert_close(alone, batch[i : i + 1], rtol=0, atol=0)
        expected = 2 * (0.16 * z[i].norm() / grad[i].norm()) ** 2
        torch.testing.assert_close(alone[0], expected)


def test_sample_norm_full_step_row_alone_equals_row_in_batch():
    # A 64-entry event (no warning): per-sample norms mean row i's update uses only row i's score and noise.
    # Row i's noise is recovered by drawing the batch's noise with the same generator seed.
    sde = VPSDE()
    score = DATA.score_fn(sde)
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    corr = LangevinCorrector(sde, norm="sample")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, _ = corr.step(x, 0.3, score, generator=torch.Generator().manual_seed(5))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    for i in (0, 31):
        grad = score(x[i : i + 1], 0.3)
        eps = 2 * (0.16 * z[i].norm() / grad.norm()) ** 2
        torch.testing.assert_close(out[i : i + 1], x[i : i + 1] + eps * grad + (2 * eps).sqrt() * z[i : i + 1])


def test_sample_norm_warns_below_64_entries():
    sde = VPSDE()
    with pytest.warns(UserWarning, match="heavy-tailed"):
        LangevinCorrector(sde, norm="sample").step(
            torch.zeros(4, 2), 0.5, Gaussian(0.3, 0.5, event_shape=(2,)).score_fn(sde)
        )


def test_sigma_rule_step_is_state_and_batch_independent():
    sde = VESDE()
    corr = LangevinCorrector(sde, snr=0.2)
    t = torch.tensor([0.1, 0.9])
    eps = corr.step_size(torch.randn(2, 3), torch.randn(2, 3), t, torch.ones(2))
    torch.testing.assert_close(eps, 2 * 0.2**2 * sde.std(t) ** 2)
    assert isinstance(AnnealedLangevin(sde), LangevinCorrector) and AnnealedLangevin(sde).norm == "sigma"


def test_sigma_rule_stationary_variance_matches_theory():
    # Many steps at fixed t from the exact law: unadjusted Langevin on N(m, v) with step ε is an AR(1) chain with
    # stationary variance V = v/(1 - ε/(2v)), ε = 2 snr² σ² (DESIGN numerical notes). 65 536 pooled draws, 200
    # steps (ε/v = 0.5 at snr 0.5, VE t = 0.5: mixes in ~10 steps); tolerance 4 SE of a sample variance.
    sde, snr, t = VESDE(), 0.5, 0.5
    p_t = DATA.marginal(sde, t)
    v, sigma2 = float(p_t.std[0]) ** 2, float(sde.std(torch.tensor(t))) ** 2
    eps = 2 * snr**2 * sigma2
    V = v / (1 - eps / (2 * v))
    g = torch.Generator().manual_seed(0)
    x = p_t.sample(1024, generator=g)
    _, x = x, LangevinCorrector(sde, snr=snr, n_steps=200).step(x, t, DATA.score_fn(sde), generator=g)[0]
    n = x.numel()
    assert abs(float(x.double().var()) - V) < 4 * V * math.sqrt(2 / (n - 1))
    assert abs(V / v - 1) > 20 * math.sqrt(2 / (n - 1))  # the bias is resolved, not hidden in the noise


def test_registry_and_errors():
    sde = VPSDE()
    assert set(CORRECTORS) == {"langevin", "annealed_langevin", "none"}
    assert isinstance(get_corrector(None, sde), NoCorrector)
    assert get_corrector("langevin", sde, snr=0.3, n_steps=2).snr == 0.3
    with pytest.raises(ValueError, match="choose one of: langevin, annealed_langevin, none"):
        get_corrector("mala", sde)
    with pytest.raises(ValueError, match="snr must be finite and >= 0"):
        LangevinCorrector(sde, snr=-1.0)
    with pytest.raises(ValueError, match="choose one of: sigma, batch, sample"):
        LangevinCorrector(sde, norm="l2")
    with pytest.raises(ValueError, match="n_steps"):
        LangevinCorrector(sde, n_steps=0)
    with pytest.raises(TypeError, match="sdesolve SDE"):
        LangevinCorrector("vp")
