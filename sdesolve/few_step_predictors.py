r"""Stochastic few-step samplers as predictors for `pc_sample`: EDM's churn sampler, SDE-DPM-Solver++(2M), Restart.

All are step programs (`sdesolve.solvers.programs`) drawing their normals from the run's noise source, so a
generator, per-sample seeds or a Brownian path drive them like every other predictor. Their `step` runs one
interval on its own (a multistep method's first, lower-order step); `pc_sample` runs the whole grid.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from ._utils import check_int, check_positive
from .predictors import Predictor
from .sde import SDE, LinearSDE
from .solvers.edm import edm_stochastic, restart
from .solvers.exponential import sde_dpm_solver_pp_2m
from .solvers.fused import Kernel, RunSpec, TimeTable
from .solvers.noise import NoiseSource
from .solvers.programs import IntervalProgram, ProgramKernel, Schedule

__all__ = ["ProgramPredictor", "EDMStochastic", "SDEDPMSolverPP2M", "Restart"]


class _GivenNoise(NoiseSource):
    """Draws of a single `Predictor.step`: the step's draw is ``noise``; further draws (Restart's) the generator's."""

    def __init__(self, noise: Tensor, generator: torch.Generator | None) -> None:
        self.noise, self.generator = noise, generator

    def predictor(self, out, i, t, t_next):
        return out.copy_(self.noise)

    def corrector(self, out, i, j, t):
        return torch.randn(out.shape, generator=self.generator, out=out)

    def snapshot(self, device):
        return None

    def restore(self, state):
        return None


class ProgramPredictor(Predictor):
    """A predictor whose grid kernel is a step program (`ProgramKernel`)."""

    def __init__(self, sde: SDE) -> None:
        super().__init__(sde)
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"{type(self).__name__} needs a LinearSDE, got {sde!r}")

    @abc.abstractmethod
    def program(self, sched: Schedule, denoise: bool) -> list[IntervalProgram]:
        """The interval programs on ``sched``'s grid (``denoise``: no noise after the last evaluation)."""

    def kernel(self, score_fn, times: TimeTable, x: Tensor, run: RunSpec) -> Kernel:
        if run.compile:
            raise ValueError(f"compile=True is not supported by {type(self).__name__}; use compile=False")
        return ProgramKernel(self.program(Schedule(self.sde, times), run.denoise), score_fn, times, x, run.noise)

    def step(self, x, t, t_next, score_fn, generator=None, noise=None):
        """One interval from ``t`` to ``t_next`` (equal for the whole batch); returns ``(x, x_mean)``, the mean
        without the noise added after the last evaluation."""
        t0, t1 = (float(v.reshape(-1)[0]) if isinstance(v, Tensor) else float(v) for v in (t, t_next))  # not a loop
        times = TimeTable(torch.tensor([t0, t1], dtype=torch.float64), x)
        sched, z = Schedule(self.sde, times), self._noise(x, generator, noise)
        out = []
        for denoise in (False, True):
            y = x.clone()
            ProgramKernel(self.program(sched, denoise), score_fn, times, x, _GivenNoise(z, generator))(y, 0, True)
            out.append(y)
        return out[0], out[1]


class EDMStochastic(ProgramPredictor):
    r"""EDM's stochastic sampler (Karras et al. 2022, Alg. 2): churn then Heun; see `edm_stochastic`.

    Args:
        sde: the forward SDE.
        churn: $S_{\rm churn}$ (0: EDM's deterministic Heun).
        s_tmin: lower end of the noise-level window that is churned.
        s_tmax: its upper end (``None``: up to $\tilde\sigma(T)/(1+\gamma)$).
        s_noise: $S_{\rm noise}$, the scale of the added noise (EDM used 1.003 against its networks' bias;
            1 is exact for an exact score).

    Defaults: EDM's ImageNet-64 settings (Karras et al. 2022, Table 5) with ``s_noise=1``.
    """

    nfe = 2
    weak_order = 2.0  # once γ = churn/N (N > churn/(√2 − 1)): Heun, and churn noise vanishing as O(1/N)

    def __init__(
        self, sde: SDE, churn: float = 80.0, s_tmin: float = 0.05, s_tmax: float | None = None, s_noise: float = 1.0
    ) -> None:
        super().__init__(sde)
        self.churn = check_positive("churn", churn, strict=False)
        self.s_tmin = check_positive("s_tmin", s_tmin, strict=False)
        self.s_tmax = None if s_tmax is None else check_positive("s_tmax", s_tmax)
        self.s_noise = check_positive("s_noise", s_noise, strict=False)

    def program(self, sched, denoise):
        # the churn noise enters before the step's evaluations: denoise has nothing to leave out
        return edm_stochastic(sched, self.churn, self.s_tmin, self.s_tmax, self.s_noise)

    def step(self, x, t, t_next, score_fn, generator=None, noise=None):
        y, _ = super().step(x, t, t_next, score_fn, generator, noise)
        return y, y


class SDEDPMSolverPP2M(ProgramPredictor):
    r"""SDE-DPM-Solver++(2M) (Lu et al. 2022b; k-diffusion's ``sample_dpmpp_2m_sde``): see `sde_dpm_solver_pp_2m`.

    Args:
        sde: the forward SDE.
        eta: share of the reverse SDE's noise (1: the reverse SDE; 0: a deterministic 2M flow).
    """

    nfe = 1
    weak_order = 2.0  # the linear part and the noise exactly integrated, D extrapolated to second order

    def __init__(self, sde: SDE, eta: float = 1.0) -> None:
        super().__init__(sde)
        self.eta = check_positive("eta", eta, strict=False)

    def program(self, sched, denoise):
        return sde_dpm_solver_pp_2m(sched, denoise, eta=self.eta)


class Restart(ProgramPredictor):
    r"""Restart sampling (Xu et al. 2023, Alg. 1) around EDM's Heun: see `restart`.

    Args:
        sde: the forward SDE.
        s_min: lower end of the restart window in EDM's noise level $\tilde\sigma = \sigma/\alpha$ (default: the
            CIFAR-10 window of Xu et al. 2023).
        s_max: its upper end.
        restarts: how many times the window is re-noised and re-solved (K).
        inner_steps: Heun steps of each re-solve.

    ``nfe`` is per grid step; the restarts add ``2 · restarts · inner_steps`` once (``pc_sample`` reports the total).

    Weak order 2 in the grid's N when ``inner_steps`` grows ∝ N: the error is $C_1 N^{-2} + C_2\,M^{-2}$ (Heun on
    the grid, contracted by the restarts, and Heun on the M = ``inner_steps`` of the last re-solve), so a fixed M
    leaves a floor $C_2 M^{-2}$ (`sdesolve.verify.few_step.RESTART_INNER_RATIO`).
    """

    nfe = 2
    weak_order = 2.0  # in N, with inner_steps ∝ N (fixed inner_steps: an error floor O(inner_steps⁻²))

    def __init__(
        self, sde: SDE, s_min: float = 0.06, s_max: float = 0.30, restarts: int = 2, inner_steps: int = 4
    ) -> None:
        super().__init__(sde)
        self.s_min, self.s_max = check_positive("s_min", s_min), check_positive("s_max", s_max)
        self.restarts, self.inner_steps = check_int("restarts", restarts), check_int("inner_steps", inner_steps)

    def program(self, sched, denoise):
        return restart(sched, self.s_min, self.s_max, self.restarts, self.inner_steps)
