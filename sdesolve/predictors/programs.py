r"""Predictors whose grid kernel is a step program (`sdesolve.solvers.programs`): the stochastic few-step samplers.

EDM's churn sampler, SDE-DPM-Solver++(2M) and Restart are written as interval programs drawing their normals
from the run's noise source (a `NOISE` stage: draw 0 of an interval is its predictor increment, further draws its
stream's draws ``j = 1, 2, ...``), so a generator, per-sample seeds or a Brownian path drive them like every other
predictor. `pc_sample` runs the whole grid as one `ProgramKernel`; `step` runs one interval on its own (a
multistep method's first, lower-order step).
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from ..sde import SDE, require_linear
from ..solvers.fused import Kernel, RunSpec, TimeTable
from ..solvers.noise import NoiseSource, StepNoise
from ..solvers.programs import IntervalProgram, ProgramKernel, Schedule, check_data_end
from .base import Predictor

__all__ = ["ProgramPredictor", "check_window"]


def check_window(sde: SDE, lo_name: str, lo: float, hi_name: str, hi: float | None) -> None:
    r"""A noise-level window ``[lo, hi]`` (EDM's churn, Restart's) that can act: ``lo < hi`` and ``lo`` below the
    SDE's largest level $\tilde\sigma(T)$ (``hi=None``: no upper end)."""
    if hi is not None and lo >= hi:
        raise ValueError(f"{lo_name} must be < {hi_name}, got {lo_name}={lo!r}, {hi_name}={hi!r}: the window is empty")
    top = float(sde.noise_level(torch.tensor([sde.T], dtype=torch.float64))[0])
    if lo >= top:
        raise ValueError(
            f"{lo_name}={lo!r} is at or above the largest noise level of {sde!r} (sigma~(T) = {top:.6g}): the window "
            "holds no step"
        )


class _StepDraws(NoiseSource):
    """A one-interval program's draws taken from the step's `StepNoise`: its increment and further draws."""

    def __init__(self, noise: StepNoise) -> None:
        self.noise = noise

    def predictor(self, out, i, t, t_next):
        return self.noise.normal(out, 0, out=out)

    def draw(self, out, stream, i, j, t):
        return self.noise.normal(out, j, out=out)


class ProgramPredictor(Predictor):
    """A predictor whose grid kernel is a step program (`ProgramKernel`)."""

    def __init__(self, sde: SDE) -> None:
        super().__init__(require_linear(sde, type(self).__name__))

    @abc.abstractmethod
    def program(self, sched: Schedule, denoise: bool) -> list[IntervalProgram]:
        """The interval programs on ``sched``'s grid (``denoise``: no noise after the last evaluation)."""

    def kernel(self, score_fn, times: TimeTable, x: Tensor, run: RunSpec) -> Kernel:
        if run.compile:
            raise ValueError(f"execution='compile' is not supported by {type(self).__name__}; use 'eager'")
        check_data_end(self.sde, times, type(self).__name__, ())
        return ProgramKernel(self.program(Schedule(self.sde, times), run.denoise), score_fn, times, x, run.noise)

    def step(self, x, t, t_next, score_fn, *, noise):
        """One interval from ``t`` to ``t_next`` (equal for the whole batch); returns ``(x, x_mean)``, the mean
        without the noise added after the last evaluation (the same stages, the denoised program's update)."""
        t0, t1 = (float(v.reshape(-1)[0]) if isinstance(v, Tensor) else float(v) for v in (t, t_next))  # not a loop
        times = TimeTable(torch.tensor([t0, t1], dtype=torch.float64), x)
        sched = Schedule(self.sde, times)
        noisy, mean = self.program(sched, False), self.program(sched, True)
        kernel = ProgramKernel(noisy, score_fn, times, x, _StepDraws(noise))
        y = x.clone()
        kernel(y, 0, True)
        return y, kernel.combine(torch.empty_like(y), x, mean[0].update)
