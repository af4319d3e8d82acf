"""Adaptive reverse-SDE sampling (Jolicoeur-Martineau et al. 2021) against the exact law at eps."""

import math

import pytest
import torch

import sdesolve as S
from sdesolve.adaptive_sampling import sde_adaptive_sample


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
