r"""The corrector base: MCMC steps at a fixed time ``t`` toward $p_t$ (Song et al. 2021, Alg. 1, the C of PC).

A corrector takes the same step protocol as a predictor (`sdesolve.solvers.protocol`): ``step(x, t, t_next,
score_fn, *, noise)``, with ``t_next`` the predictor's next time (score_sde's VP factor needs it; None outside a
grid) and ``noise`` the run's draws for this step (`StepNoise`: ``noise.normal(x, j)`` is the normal of its step
``j``, ``noise.uniform(u, j)`` a uniform), so generators, per-sample seeds and Brownian paths drive its draws too.
"""

from __future__ import annotations

import abc

from torch import Tensor

from .._utils import TimeLike
from ..sde import ScoreFn
from ..solvers.fused import Kernel, RunSpec, TimeTable
from ..solvers.noise import CORRECTOR, StepNoise
from ..solvers.protocol import Step

__all__ = ["Corrector", "StepKernel", "NoCorrector"]


class Corrector(Step):
    """Base corrector, built with the forward SDE; ``nfe`` score evaluations per call.

    Subclasses give `step`; the sampling loop runs `kernel`, by default one `step` call per interval, drawing from
    the run's noise source (so a corrector of your own gets per-sample seeds for free).
    """

    nfe: int = 1
    stream = CORRECTOR

    @abc.abstractmethod
    def step(
        self, x: Tensor, t: TimeLike, t_next: TimeLike | None, score_fn: ScoreFn, *, noise: StepNoise
    ) -> tuple[Tensor, Tensor]:
        """Correct ``x`` (``[B, *event]``) at time ``t`` (``t_next``: the predictor's next time, or None); return
        ``(x, x_mean)``.

        ``noise``: the run's draws for this step; a caller may pass a ``torch.Generator``, one tensor of standard
        normals (a single draw) or None (torch's default generator) instead.
        """

    def kernel(self, score_fn: ScoreFn, times: TimeTable, x: Tensor, run: RunSpec) -> Kernel | None:
        """This corrector bound to a grid for the sampling loop (default: one `step` call at each grid time;
        None: nothing to do)."""
        return StepKernel(self, score_fn, times, run)


class StepKernel(Kernel):
    """Any corrector's `step` on the loop, at ``t_i`` with ``t_next = t_{i+1}``, drawing through a `StepNoise`."""

    def __init__(self, corr: Corrector, score_fn: ScoreFn, times: TimeTable, run: RunSpec) -> None:
        self.corr, self.score_fn, self.times, self.run, self.nfe = corr, score_fn, times, run, corr.nfe

    def __call__(self, x, i, last):
        t = self.times.values
        noise = StepNoise(self.run.noise, CORRECTOR, i, t[i], t[i + 1])
        x_new, _ = self.corr.step(x, self.times.batch[i], self.times.batch[i + 1], self.score_fn, noise=noise)
        x.copy_(x_new)


class NoCorrector(Corrector):
    """Identity corrector."""

    nfe = 0

    def step(self, x, t, t_next, score_fn, *, noise):
        return x, x

    def kernel(self, score_fn, times, x, run):
        return None
