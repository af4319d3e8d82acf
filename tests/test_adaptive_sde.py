"""Adaptive reverse-SDE sampling (Jolicoeur-Martineau et al. 2021): the exact law at eps in high dimension, a naive
transcription of Alg. 1 on the same draws, batch independence with seeds, and the accepted update's weak order."""

import math

import pytest
import torch

import sdesolve as S
from sdesolve import sde_adaptive_sample
from sdesolve.problems import gaussian_data
from sdesolve.verify import weak_order


@pytest.mark.parametrize("sde", [S.VPSDE(), S.VESDE()], ids=repr)
def test_moments_match_the_exact_law_in_high_dimension(sde):
    # 80 samples x 256 iid coordinates = 20480 values: se(mean)/std = 1/sqrt(n) = 0.7%, se(var)/var = sqrt(2/n)
    # = 1%; 4 se each, plus 1% for the solver's own bias at rtol = 0.05 (measured +0.5% VP, -0.4% VE).
    d, n = 256, 80
    data = S.Gaussian(torch.full((d,), 0.3, dtype=torch.float64), torch.full((d,), 0.5, dtype=torch.float64))
    law = data.marginal(sde, 1e-3)
    x, info = sde_adaptive_sample(sde, data.score_fn(sde), (n, d), rtol=0.05, atol=0.01, dtype=torch.float64,
                                  generator=torch.Generator().manual_seed(0), return_info=True)  # fmt: skip
    values = n * d
    assert abs(float(((x - law.mean) / law.std).mean())) < 4 / math.sqrt(values)
    assert abs(float((x.var(0) / law.std**2).mean()) - 1) < 4 * math.sqrt(2 / values) + 0.01
    assert info["nfe"] == 2 * info["iterations"] and info["nfe"] < 1000


def test_tighter_tolerance_costs_more_evaluations():
    sde = S.VPSDE()
    data = S.Gaussian(torch.full((64,), 0.3), torch.full((64,), 0.5))
    nfe = [
        sde_adaptive_sample(
            sde,
            data.score_fn(sde),
            (8, 64),
            rtol=r,
            atol=r / 5,
            return_info=True,
            generator=torch.Generator().manual_seed(0),
        )[1]["nfe"]  # fmt: skip
        for r in (0.1, 0.02)
    ]
    assert nfe[0] < nfe[1]


def test_validation():
    sde = S.VPSDE()
    score = S.Gaussian(torch.zeros(1), torch.ones(1)).score_fn(sde)
    with pytest.raises(ValueError, match="rtol"):
        sde_adaptive_sample(sde, score, (2, 1), rtol=0.0)
    with pytest.raises(ValueError, match="eps"):
        sde_adaptive_sample(sde, score, (2, 1), eps=2.0)


def _alg1(sde, score_fn, x_init, draw, t0, t1, rtol, atol, h_init, safety=0.9, exponent=0.9, max_growth=10.0):
    """Jolicoeur-Martineau et al. 2021, Alg. 1, one sample at a time and one attempt at a time, in Python floats,
    from the public reverse SDE (drift f − g²∇log p, diffusion g); ``draw(k)[i]`` is sample i's k-th attempt's z.
    Returns the samples and, per sample, the list of (h, accepted) attempts."""
    rsde = sde.reverse(score_fn)
    at = lambda t: torch.tensor([t], dtype=torch.float64)  # noqa: E731 - a Python float time is taken as float32
    samples, attempts = [], []
    for i in range(len(x_init)):
        x, t, log = x_init[i : i + 1].clone(), t0, []
        prev, h = x.clone(), min(h_init, t0 - t1)
        while t > t1:
            z = draw(len(log))[i : i + 1]
            drift, g = rsde.drift(x, at(t)), float(rsde.diffusion(at(t)))
            k1 = -h * drift + g * math.sqrt(h) * z
            drift2, g2 = rsde.drift(x + k1, at(t - h)), float(rsde.diffusion(at(t - h)))
            k2 = -h * drift2 + g2 * math.sqrt(h) * z
            scale = torch.clamp(torch.maximum((x + k1).abs(), prev.abs()) * rtol, min=atol)
            err = float((((k2 - k1) / 2 / scale) ** 2).mean().sqrt())
            log.append((h, err <= 1))
            if err <= 1:  # accept improved Euler; the tolerance's previous value is the accepted EM state
                x, prev, t = x + (k1 + k2) / 2, x + k1, (t1 if h >= t - t1 else t - h)
            h = min(t - t1, h * min(safety * max(err, 1e-300) ** -exponent, max_growth))
        samples.append(x)
        attempts.append(log)
    return torch.cat(samples), attempts


@pytest.mark.parametrize("sde", [S.VPSDE(), S.VESDE()], ids=repr)
def test_equals_a_per_sample_transcription_of_algorithm_1(sde):
    # Same x_T, same draw stream (the generator's k-th [B, d] draw is every sample's k-th attempt), float64:
    # the batched solver must reproduce each sample's attempts, rejections included, to round-off (measured
    # 3e-15 VP, 6e-15 VE; about a third of the attempts are rejected at these tolerances).
    data = S.Gaussian(torch.linspace(-0.5, 0.5, 8, dtype=torch.float64), torch.full((8,), 0.4, dtype=torch.float64))
    score = data.score_fn(sde)
    x_t = sde.prior_sampling((6, 8), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    params = {"rtol": 0.05, "atol": 0.01, "h_init": 0.01}
    gen, cache = torch.Generator().manual_seed(2), []

    def draw(k):
        while len(cache) <= k:
            cache.append(torch.randn(x_t.shape, generator=gen, dtype=torch.float64))
        return cache[k]

    ref, attempts = _alg1(sde, score, x_t, draw, sde.T, 1e-3, **params)
    ours, info = sde_adaptive_sample(sde, score, x_t.shape, x_init=x_t, generator=torch.Generator().manual_seed(2),
                                     return_info=True, **params)  # fmt: skip
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    rejected = sum(not ok for log in attempts for _, ok in log)
    assert info["rejected"] == rejected > 0 and info["iterations"] == max(len(log) for log in attempts)


def test_a_seeded_sample_is_the_same_in_any_batch():
    # seeds= keys sample i's k-th draw by (seeds[i], k): its steps, rejections and result cannot depend on the
    # batch it is in (a batch generator's draws do). Row 2 of a batch of 5 against the same seed alone.
    sde = S.VPSDE()
    data = S.Gaussian(torch.full((16,), 0.3, dtype=torch.float64), torch.full((16,), 0.5, dtype=torch.float64))
    score = data.score_fn(sde)
    seeds = [11, 12, 13, 14, 15]
    kw = {"rtol": 0.05, "atol": 0.01, "dtype": torch.float64, "return_info": True}
    batch, _ = sde_adaptive_sample(sde, score, (5, 16), seeds=seeds, **kw)
    alone, info = sde_adaptive_sample(sde, score, (1, 16), seeds=seeds[2:3], **kw)
    torch.testing.assert_close(batch[2:3], alone, rtol=1e-12, atol=1e-12)
    assert info["rejected"] > 0  # the path includes rejected attempts (32 of 93 measured)
    with pytest.raises(ValueError, match="seeds"):
        sde_adaptive_sample(sde, score, (5, 16), seeds=seeds, generator=torch.Generator())


@pytest.mark.parametrize("sde", [S.VPSDE(), S.SubVPSDE(), S.VESDE()], ids=repr)
def test_the_accepted_update_has_weak_order_2_on_fixed_steps(sde):
    # ImprovedEuler is the solver's pair (improved_euler_pair) on a fixed uniform grid: exact propagation (no Monte
    # Carlo), 4 step counts over 8x. VE is pre-asymptotic below 128 (local slopes 2.18, 2.09, 2.05 from 64 to 512).
    study = weak_order(sde, "improved_euler", gaussian_data(2, dtype=torch.float64), steps=(128, 256, 512, 1024))
    assert study.fit.within(S.ImprovedEuler.weak_order, 0.1), study.fit
