"""Langevin correctors: score_sde's batch rule reproduced independently, per-sample independence, σ-rule, errors."""

import math
import warnings

import numpy as np
import pytest
import torch

from sdesolve import (
    VESDE,
    VPSDE,
    AnnealedLangevin,
    Gaussian,
    GaussianMixture,
    LangevinCorrector,
    NoCorrector,
    get_corrector,
    pc_sample,
)
from sdesolve.correctors import CORRECTORS, AcceptanceLog, GridLangevin, MALACorrector, sigma_rule_step

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
        x, t, None, DATA.to(dtype=torch.float64).score_fn(sde), noise=torch.Generator().manual_seed(7)
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
    ours, _ = LangevinCorrector(sde, norm="batch").step(x, tt, tn, score, noise=torch.Generator().manual_seed(1))
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
        out, _ = corr.step(x, 0.3, None, score, noise=torch.Generator().manual_seed(5))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    for i in (0, 31):
        grad = score(x[i : i + 1], 0.3)
        eps = 2 * (0.16 * z[i].norm() / grad.norm()) ** 2
        torch.testing.assert_close(out[i : i + 1], x[i : i + 1] + eps * grad + (2 * eps).sqrt() * z[i : i + 1])


def test_sample_norm_warns_below_64_entries():
    sde = VPSDE()
    with pytest.warns(UserWarning, match="heavy-tailed"):
        LangevinCorrector(sde, norm="sample").step(
            torch.zeros(4, 2), 0.5, None, Gaussian(0.3, 0.5, event_shape=(2,)).score_fn(sde)
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
    _, x = x, LangevinCorrector(sde, snr=snr, n_steps=200).step(x, t, None, DATA.score_fn(sde), noise=g)[0]
    n = x.numel()
    assert abs(float(x.double().var()) - V) < 4 * V * math.sqrt(2 / (n - 1))
    assert abs(V / v - 1) > 20 * math.sqrt(2 / (n - 1))  # the bias is resolved, not hidden in the noise


def test_registry_and_errors():
    sde = VPSDE()
    assert set(CORRECTORS) == {"langevin", "annealed_langevin", "none", "grid_langevin"}
    assert isinstance(get_corrector(None, sde), NoCorrector)
    assert get_corrector("langevin", sde, snr=0.3, n_steps=2).snr == 0.3
    with pytest.raises(ValueError, match="choose one of: langevin, annealed_langevin, none, grid_langevin"):
        get_corrector("hmc", sde)
    with pytest.raises(ValueError, match="snr must be finite and >= 0"):
        LangevinCorrector(sde, snr=-1.0)
    with pytest.raises(ValueError, match="choose one of: sigma, batch, sample"):
        LangevinCorrector(sde, norm="l2")
    with pytest.raises(ValueError, match="n_steps"):
        LangevinCorrector(sde, n_steps=0)
    with pytest.raises(TypeError, match="sdesolve SDE"):
        LangevinCorrector("vp")


# -- correctors whose error vanishes (issue 14) ----------------------------------------------------------------
def test_sigma_rule_step_is_langevin_corrector_sigma_step_with_vp_factor():
    sde = VPSDE()
    t, tn = torch.tensor([0.2, 0.7]), torch.tensor([0.19, 0.69])
    alpha = sde.mean_coeff(t) ** 2 / sde.mean_coeff(tn) ** 2
    ours = sigma_rule_step(sde, 0.3, t, tn)
    ref = LangevinCorrector(sde, snr=0.3).step_size(torch.randn(2, 3), torch.randn(2, 3), t, alpha)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(sigma_rule_step(sde, 0.3, t, None), 2 * 0.3**2 * sde.std(t) ** 2)


def test_grid_langevin_step_is_sigma_rule_shrunk_by_grid_spacing():
    sde = VESDE()
    corr = GridLangevin(sde, snr=0.2, ref_steps=100)
    t = torch.tensor([0.5, 0.5])
    for h, shrink in ((1e-3, 0.1), (1e-2, 1.0), (0.1, 1.0)):  # min(1, 100 h): never above the sigma-rule
        eps = corr.step_size(t, t - h)
        torch.testing.assert_close(eps, 2 * 0.2**2 * sde.std(t) ** 2 * shrink)
    assert GridLangevin(sde).ref_steps == sde.N and GridLangevin.weak_order == 1.0
    # one full step: x + eps * score + sqrt(2 eps) z, the noise recovered from the same generator seed
    score = DATA.score_fn(sde)
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(0))
    out, mean = corr.step(x, 0.5, 0.499, score, noise=torch.Generator().manual_seed(3))
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    eps = float(corr.step_size(torch.tensor([0.5]), torch.tensor([0.499]))[0])
    torch.testing.assert_close(mean, x + eps * score(x, 0.5))
    torch.testing.assert_close(out, mean + math.sqrt(2 * eps) * z)
    with pytest.raises(ValueError, match="needs t_next"):
        corr.step(x, 0.5, None, score)


def reference_mala_step(x, t, score_fn, log_prob_fn, eps, gen):
    """One Metropolis-adjusted Langevin step (Roberts & Tweedie 1996), written out independently of sdesolve."""
    z = torch.randn(x.shape, generator=gen, dtype=x.dtype)
    y = x + eps * score_fn(x, t) + math.sqrt(2 * eps) * z
    log_q_fwd = -((y - x - eps * score_fn(x, t)) ** 2).sum(1) / (4 * eps)
    log_q_bwd = -((x - y - eps * score_fn(y, t)) ** 2).sum(1) / (4 * eps)
    log_r = log_prob_fn(y, t) - log_prob_fn(x, t) + log_q_bwd - log_q_fwd
    u = torch.rand(x.shape[0], generator=gen, dtype=x.dtype)
    accept = torch.log(u) < log_r
    return torch.where(accept[:, None], y, x), accept


def test_mala_step_matches_independent_reference_on_a_mixture():
    sde = VESDE()
    mix = GaussianMixture([0.3, 0.7], [[-1.0, 0.0], [1.0, 0.5]], [0.3, 0.5]).to(dtype=torch.float64)
    score, logp = mix.score_fn(sde), mix.log_prob_fn(sde)
    x = torch.randn(512, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t, snr = 0.4, 0.8  # a large step, so that a good share of proposals is rejected
    eps = 2 * snr**2 * float(sde.std(torch.tensor(t, dtype=torch.float64))) ** 2
    log = AcceptanceLog()
    corr = MALACorrector(sde, logp, snr=snr, n_steps=3, acceptance=log)
    ours, _ = corr.step(x, t, None, score, noise=torch.Generator().manual_seed(1))
    gen, ref, rates = torch.Generator().manual_seed(1), x, []
    for _ in range(3):
        ref, accept = reference_mala_step(ref, t, score, logp, eps, gen)
        rates.append(float(accept.double().mean()))
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    times, recorded = log.as_arrays()
    assert len(log) == 3 and times.tolist() == pytest.approx([t] * 3)
    # the log holds mean acceptance probabilities; the realised acceptance fraction of 512 chains is within 4 SE
    assert 0.2 < min(rates) and max(rates) < 0.95
    assert np.all(np.abs(recorded - np.array(rates)) < 4 * np.sqrt(recorded * (1 - recorded) / 512))
    assert corr.nfe == 4


def test_mala_runs_in_pc_sample_and_errors():
    sde = VESDE()
    data = Gaussian(0.3, 0.5)
    log = AcceptanceLog()
    corr = MALACorrector(sde, data.log_prob_fn(sde), snr=0.3, acceptance=log)
    x, info = pc_sample(
        sde,
        data.score_fn(sde),
        (64, 1),
        corrector=corr,
        steps=20,
        return_info=True,
        generator=torch.Generator().manual_seed(0),
    )
    assert x.shape == (64, 1) and info["nfe"] == 20 * (1 + 2) and len(log) == 20
    assert np.all((log.as_arrays()[1] > 0) & (log.as_arrays()[1] <= 1))
    assert AcceptanceLog().as_arrays()[0].shape == (0,)
    with pytest.raises(TypeError, match="callable log_prob_fn"):
        MALACorrector(sde, data)  # the oracle itself, not its log_prob_fn(sde)
    with pytest.raises(ValueError, match="choose one of"):  # no name can supply a log-density
        pc_sample(sde, data.score_fn(sde), (4, 1), corrector="mala", steps=2)
    with pytest.raises(TypeError, match="AcceptanceLog"):
        MALACorrector(sde, data.log_prob_fn(sde), acceptance=[])
    with pytest.raises(ValueError, match="snr must be finite and > 0"):
        MALACorrector(sde, data.log_prob_fn(sde), snr=0.0)
    with pytest.raises(TypeError, match="needs a LinearSDE"):
        GridLangevin(sde.reverse(data.score_fn(sde)))
    with pytest.raises(ValueError, match="ref_steps"):
        GridLangevin(sde, ref_steps=0)
    x = pc_sample(sde, data.score_fn(sde), (8, 1), corrector="grid_langevin", snr=0.2, steps=5)
    assert torch.isfinite(x).all()
