r"""The predictor base: one reverse-time step from ``t`` down to ``t_next``, and the loop's default kernel for it.

Every step takes explicit times, so $\Delta t = t_{\rm next} - t$ is the real grid spacing (score_sde and diffusers
use $-1/N$ on a grid of $N-1$ intervals), and draws its normals from the run's noise through ``noise``
(`sdesolve.solvers.noise.StepNoise`): ``noise.normal(x)`` is the step's Brownian increment $\Delta W/\sqrt{|\Delta t|}$
(a generator's draw, a sample's keyed draw, or a path shared with torchsde), ``noise.normal(x, j)`` its further draws.
"""

from __future__ import annotations

import abc

from torch import Tensor

from .._utils import TimeLike
from ..sde import ScoreFn
from ..solvers.fused import Kernel, RunSpec, TimeTable
from ..solvers.noise import PREDICTOR, StepNoise
from ..solvers.protocol import Step

__all__ = ["Predictor", "StepKernel"]


class Predictor(Step):
    """Base predictor, built with the forward SDE.

    Subclasses give `step` (the one step protocol, `sdesolve.solvers.protocol`); the sampling loop runs `kernel`,
    which by default calls `step` (so any predictor plugs in, with per-sample seeds and Brownian paths for free)
    and which the predictors here replace by a fused in-place kernel with coefficients per grid.

    Attributes:
        strong_order: strong order of convergence claimed (None where theory gives none); asserted by the
            verification suite.
        weak_order: weak order claimed.
        nfe: score evaluations per step.
        stochastic: whether a step draws noise.
    """

    strong_order: float | None = None
    weak_order: float | None = None
    nfe: int = 1
    stream = PREDICTOR
    stochastic: bool = True

    @abc.abstractmethod
    def step(
        self, x: Tensor, t: TimeLike, t_next: TimeLike, score_fn: ScoreFn, *, noise: StepNoise
    ) -> tuple[Tensor, Tensor]:
        """Advance ``x`` (``[B, *event]``) from ``t`` to ``t_next``; return ``(x, x_mean)`` (mean: no noise added
        after the last score evaluation).

        ``noise``: the run's draws for this step; a caller may pass a ``torch.Generator``, one tensor of standard
        normals (the step's single draw) or None (torch's default generator) instead.
        """

    def kernel(self, score_fn: ScoreFn, times: TimeTable, x: Tensor, run: RunSpec) -> Kernel:
        """This predictor bound to a grid for the sampling loop (default: one `step` call per interval)."""
        return StepKernel(self, score_fn, times, run)


class StepKernel(Kernel):
    """Any predictor's `step` on the loop (user predictors): the state is replaced each interval, and the step
    draws from the run's noise source through a `StepNoise` of interval ``i``."""

    def __init__(self, pred: Predictor, score_fn: ScoreFn, times: TimeTable, run: RunSpec) -> None:
        self.pred, self.score_fn, self.times, self.run, self.nfe = pred, score_fn, times, run, pred.nfe

    def __call__(self, x, i, last):
        t = self.times.values
        noise = StepNoise(self.run.noise, PREDICTOR, i, t[i], t[i + 1])
        x_new, x_mean = self.pred.step(x, self.times.batch[i], self.times.batch[i + 1], self.score_fn, noise=noise)
        x.copy_(x_mean if last and self.run.denoise else x_new)
