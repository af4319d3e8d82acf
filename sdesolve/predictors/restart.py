r"""Restart sampling as a predictor (Xu et al. 2023, Alg. 1) around EDM's Heun."""

from __future__ import annotations

from .._utils import check_int, check_positive
from ..sde import SDE
from ..solvers.restart import restart
from .programs import ProgramPredictor, check_window

__all__ = ["Restart"]


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
    The re-noisings are the predictor stream's draws 1..K of the interval that lands in the window.

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
        check_window(self.sde, "s_min", self.s_min, "s_max", self.s_max)  # else the restarts never happen

    def program(self, sched, denoise):
        return restart(sched, self.s_min, self.s_max, self.restarts, self.inner_steps)
