r"""Probability-flow steppers: one explicit Runge–Kutta step of $\dot x = f(t)\,x - \tfrac12 g^2\nabla\log p_t$.

Heun (Karras et al. 2022, Alg. 1) and the classical RK4; on the loop they run as the fused `RungeKuttaKernel`.
"""

from __future__ import annotations

from .._utils import batch_time
from ..sde import SDE, require_linear
from ..solvers.runge_kutta import HEUN, RK4, FlowTerm, RungeKuttaKernel, Tableau, rk_step
from .base import Predictor

__all__ = ["ProbabilityFlowHeun", "ProbabilityFlowRK4"]


class _ProbabilityFlowRK(Predictor):
    r"""One explicit Runge–Kutta step of the probability flow $\dot x = f(t)\,x - \tfrac12 g^2\nabla\log p_t$."""

    tableau: Tableau
    stochastic = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.nfe = len(cls.tableau.b)
        cls.strong_order = cls.weak_order = float(cls.tableau.order)

    def __init__(self, sde: SDE) -> None:
        super().__init__(require_linear(sde, type(self).__name__))

    def step(self, x, t, t_next, score_fn, *, noise):
        t, t_next = batch_time(t, x), batch_time(t_next, x)
        x = rk_step(FlowTerm(self.sde, score_fn), t, x, t_next - t, self.tableau)
        return x, x

    def kernel(self, score_fn, times, x, run):
        return RungeKuttaKernel(self.tableau, FlowTerm(self.sde, score_fn), times, x, compile=run.compile)


class ProbabilityFlowHeun(_ProbabilityFlowRK):
    """Heun (explicit trapezoidal) step of the probability-flow ODE (order 2; Karras et al. 2022, Alg. 1)."""

    tableau = HEUN


class ProbabilityFlowRK4(_ProbabilityFlowRK):
    """Classical 4-stage Runge–Kutta step of the probability-flow ODE (order 4)."""

    tableau = RK4
