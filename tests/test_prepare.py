"""The one run preparation (`sdesolve.sampling.prepare`) behind every entry point: ``info["nfe"]`` is the number of
score evaluations the run made, for every entry point × predictor, corrector and method (counted by a wrapper the
library never sees), and the score's first call is checked once, on every path."""

import pytest
import torch

from sdesolve import (
    ODE_METHODS,
    PREDICTORS,
    VPSDE,
    Gaussian,
    LinearObservation,
    MALACorrector,
    inpainting_matrix,
    log_likelihood,
    ode_sample,
    pc_sample,
    replacement_sample,
    sde_adaptive_sample,
)
from sdesolve.solvers.ode import FIXED_STEP

SDE = VPSDE()
DATA = Gaussian(torch.tensor([0.3, -0.2], dtype=torch.float64), torch.tensor([0.5, 1.2], dtype=torch.float64))
STEPS = 6


class Counted:
    """The exact score, counting its calls."""

    def __init__(self) -> None:
        self.calls, self.score = 0, DATA.score_fn(SDE)

    def __call__(self, x, t):
        self.calls += 1
        return self.score(x, t)


CORRECTORS = {
    "none": lambda: {"corrector": None},
    "langevin-2": lambda: {"corrector": "langevin", "corrector_steps": 2},
    "grid_langevin": lambda: {"corrector": "grid_langevin"},
    "mala-2": lambda: {"corrector": MALACorrector(SDE, DATA.log_prob_fn(SDE), n_steps=2)},
}


def _nfe_and_calls(run) -> tuple[int, int]:
    score = Counted()
    _, info = run(score)
    return info["nfe"], score.calls


@pytest.mark.parametrize("corrector", sorted(CORRECTORS))
@pytest.mark.parametrize("predictor", sorted(PREDICTORS))
def test_pc_sample_nfe_is_the_score_calls(predictor, corrector):
    def run(score):
        return pc_sample(SDE, score, (4, 2), predictor=predictor, steps=STEPS, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(0), return_info=True, **CORRECTORS[corrector]())  # fmt: skip

    nfe, calls = _nfe_and_calls(run)
    assert nfe == calls


@pytest.mark.parametrize("corrector", [None, "langevin"])
@pytest.mark.parametrize("predictor", sorted(PREDICTORS))
def test_replacement_nfe_is_the_score_calls(predictor, corrector):
    obs = LinearObservation(inpainting_matrix(torch.tensor([True, False])).double(), [0.4])

    def run(score):
        return replacement_sample(SDE, score, obs, 4, predictor=predictor, corrector=corrector, steps=STEPS,
                                  seeds=[1, 2, 3, 4], return_info=True)  # fmt: skip

    nfe, calls = _nfe_and_calls(run)
    assert nfe == calls


@pytest.mark.parametrize("method", list(ODE_METHODS))
def test_ode_sample_nfe_is_the_score_calls(method):
    steps = {"steps": STEPS} if method in FIXED_STEP else {"rtol": 1e-3, "atol": 1e-3}

    def run(score):
        return ode_sample(SDE, score, (4, 2), method=method, dtype=torch.float64, seeds=[1, 2, 3, 4],
                          return_info=True, **steps)  # fmt: skip

    nfe, calls = _nfe_and_calls(run)
    assert nfe == calls


def test_sde_adaptive_sample_nfe_is_the_score_calls():
    nfe, calls = _nfe_and_calls(
        lambda score: sde_adaptive_sample(
            SDE, score, (4, 2), rtol=1e-2, atol=1e-2, dtype=torch.float64, seeds=[1, 2, 3, 4], return_info=True
        )  # fmt: skip
    )
    assert nfe == calls


@pytest.mark.parametrize("divergence", ["exact", "hutchinson_rademacher"])
@pytest.mark.parametrize("method", ["dopri5", "rk4", "euler", "scipy_rk45", "torchdiffeq_dopri5"])
def test_log_likelihood_nfe_is_the_score_calls(method, divergence):
    # one score call per right-hand-side evaluation: the first-call checks read that call, they add none
    x = DATA.sample(4, torch.Generator().manual_seed(0))
    steps = {"steps": STEPS} if method in FIXED_STEP else {"rtol": 1e-3, "atol": 1e-3}
    nfe, calls = _nfe_and_calls(
        lambda score: log_likelihood(
            SDE, score, x, method=method, divergence=divergence, batch_size=3, return_info=True, **steps
        )  # fmt: skip
    )
    assert nfe == calls


def _bad(x, t):
    return x[:, :1]  # a score of the wrong shape


@pytest.mark.parametrize(
    "call",
    [
        lambda: pc_sample(SDE, _bad, (4, 2), steps=2),
        lambda: ode_sample(SDE, _bad, (4, 2), steps=2, method="heun"),
        lambda: ode_sample(SDE, _bad, (4, 2)),
        lambda: sde_adaptive_sample(SDE, _bad, (4, 2)),
        lambda: log_likelihood(SDE, _bad, torch.zeros(4, 2)),
        lambda: replacement_sample(SDE, _bad, LinearObservation(torch.eye(2)[:1], [0.0]), 4, steps=2),
    ],
    ids=["pc", "ode-fixed", "ode-dopri5", "sde-adaptive", "likelihood", "replacement"],
)
def test_every_entry_point_checks_the_score_on_its_first_call(call):
    with pytest.raises(ValueError, match=r"score_fn must be shaped like x \(4, 2\), got \(4, 1\)"):
        call()
