"""Adding to sdesolve from outside it: a multistep ODE solver, its stochastic twin and a corrector, defined here and
nowhere else, run through the public entry points with generators and per-sample seeds and measured at their orders.

What it takes (the issue's count): the solver is one program function (14 lines) and one registry line; its twin a
5-line `ProgramPredictor` subclass and one registry line; the corrector a 7-line `Corrector` subclass (its
registry line is optional). No library file changes.
"""

import math

import pytest
import torch

import sdesolve as S
from sdesolve import CORRECTORS, PREDICTORS, Corrector
from sdesolve.predictors import ProgramPredictor
from sdesolve.solvers.ode import FEW_STEP, FewStepMethod
from sdesolve.solvers.programs import ProgramBuilder
from sdesolve.verify import fit_order
from sdesolve.verify.few_step import sde_weak_errors

DATA = S.Gaussian(torch.tensor([0.3, -0.2], dtype=torch.float64), torch.tensor([0.5, 1.2], dtype=torch.float64))
EPS = 1e-3


def ab2(sched, eta: float = 0.0):
    r"""Variable-step two-step Adams–Bashforth on EDM's $d\tilde x/d\tilde\sigma = (\tilde x - D)/\tilde\sigma$, Euler on the
    first step: $\tilde x' = \tilde x + \Delta[(1 + \tfrac{\Delta}{2\Delta^-})d_i - \tfrac{\Delta}{2\Delta^-}d_{i-1}]$. With
    ``eta``: ancestral (k-diffusion's split), the step to $\tilde\sigma_\downarrow$ then $\eta\tilde\sigma_\uparrow z$."""
    b, prev, h_prev = ProgramBuilder(), None, 0.0
    for p, q in zip(sched.points[:-1], sched.points[1:], strict=True):
        up = eta * min(q.level, q.level * math.sqrt(p.level**2 - q.level**2) / p.level)
        h = math.sqrt(q.level**2 - up**2) - p.level
        xt = b.state / p.alpha
        d = b.save((xt - b.evaluate(p, b.state)) / p.level)
        slope = d if prev is None else (1 + h / (2 * h_prev)) * d - (h / (2 * h_prev)) * prev
        new = xt + h * slope
        if up:
            new = new + up * b.noise()
        b.finish(q.alpha * new)
        prev, h_prev = d, h
    return b.programs


class AB2Ancestral(ProgramPredictor):
    """`ab2`'s stochastic twin (weak order 1, as ancestral Euler)."""

    nfe, weak_order = 1, 1.0

    def program(self, sched, denoise):
        return ab2(sched, eta=1.0)


class TenthLangevin(Corrector):
    """One unadjusted Langevin step of size 0.1·σ(t)² per call."""

    def step(self, x, t, t_next, score_fn, *, noise):
        eps = 0.1 * self.sde.std(t).reshape(-1, *([1] * (x.ndim - 1))) ** 2
        x_mean = x + eps * score_fn(x, t)
        return x_mean + (2 * eps).sqrt() * noise.normal(x), x_mean


@pytest.fixture(autouse=True)
def registered():
    FEW_STEP["ab2"] = FewStepMethod(ab2, 2, "Adams–Bashforth 2 in the noise level, variable steps")
    PREDICTORS["ab2_ancestral"] = AB2Ancestral
    CORRECTORS["tenth_langevin"] = TenthLangevin
    yield
    del FEW_STEP["ab2"], PREDICTORS["ab2_ancestral"], CORRECTORS["tenth_langevin"]


@pytest.mark.parametrize("grid", ["karras", "logsnr", "uniform"])
@pytest.mark.parametrize("sde", [S.VPSDE(), S.VESDE()], ids=["vp", "ve"])
def test_a_registered_multistep_solver_runs_at_its_order(sde, grid):
    # Pathwise RMS against the exact flow map of Gaussian data (no Monte Carlo), 40..320 steps (8x), slope 2 ± 0.15:
    # variable-step weights keep order 2 on any grid (iPNDM's fixed-step weights do not, `FEW_STEP["ipndm"]`).
    assert "ab2" in S.ODE_METHODS and "ab2" in S.solvers.ode.FIXED_STEP  # the live method lists
    x_t = DATA.marginal(sde, sde.T).sample(64, torch.Generator().manual_seed(0))
    exact = DATA.flow(sde, x_t, sde.T, EPS)
    steps, errors = [40, 80, 160, 320], []
    for n in steps:
        y = S.ode_sample(sde, DATA.score_fn(sde), x_t.shape, method="ab2", steps=n, grid=grid, x_init=x_t)
        errors.append(float((y - exact).pow(2).sum(1).mean().sqrt()))
    assert abs(fit_order(steps, errors).slope - FEW_STEP["ab2"].order) < 0.15, errors


@pytest.mark.parametrize("sde", [S.VPSDE(), S.VESDE()], ids=["vp", "ve"])
def test_its_stochastic_twin_has_weak_order_one_and_per_sample_seeds(sde):
    # exact weak errors (mean and variance by probe propagation, `sde_weak_errors`) over 64..512 steps, ±0.1
    first = S.Gaussian(DATA.mean[:1], DATA.std[:1])
    steps = (64, 128, 256, 512)
    assert abs(fit_order(steps, sde_weak_errors(sde, "ab2_ancestral", first, steps)).slope - 1.0) < 0.1
    run = lambda s: S.pc_sample(sde, DATA.score_fn(sde), (len(s), 2), predictor="ab2_ancestral",  # noqa: E731
                                corrector="tenth_langevin", steps=16, seeds=s, dtype=torch.float64,
                                return_info=True)  # fmt: skip
    (full, info), (alone, _) = run(list(range(8))), run([5])
    assert torch.equal(full[5:6], alone) and info["nfe"] == 16 * 2


def test_a_registered_corrector_runs_by_name_with_its_draws_keyed():
    sde = S.VPSDE()
    counted = []

    def score(x, t):
        counted.append(1)
        return DATA.score_fn(sde)(x, t)

    kw = {"corrector": "tenth_langevin", "steps": 20, "dtype": torch.float64}
    x, info = S.pc_sample(sde, score, (8, 2), seeds=list(range(8)), return_info=True, **kw)
    again = S.pc_sample(sde, DATA.score_fn(sde), (1, 2), seeds=[3], **kw)
    assert torch.equal(x[3:4], again) and info["nfe"] == len(counted) == 40
    with pytest.raises(ValueError, match="snr= does not apply to corrector 'tenth_langevin'"):
        S.pc_sample(sde, DATA.score_fn(sde), (8, 2), corrector="tenth_langevin", steps=2, snr=0.2, dtype=torch.float64)
