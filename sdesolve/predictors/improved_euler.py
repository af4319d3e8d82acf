r"""Improved Euler (stochastic Heun) on the reverse SDE: the adaptive SDE solver's accepted update on a fixed grid."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._utils import batch_time
from ..sde import SDE, require_linear, reverse_diffusion
from ..solvers.gotta_go_fast import improved_euler_pair
from .base import Predictor

__all__ = ["ImprovedEuler"]


class ImprovedEuler(Predictor):
    r"""Improved Euler (stochastic Heun) on the reverse SDE, one draw $z$ for both stages (`improved_euler_pair`):
    $x_1 = x + b(x, t)\Delta t + g(t)\sqrt{|\Delta t|}\,z$, $x' = \tfrac12\big(x_1 + x + b(x_1, t')\Delta t +
    g(t')\sqrt{|\Delta t|}\,z\big)$, $b = f - g^2\nabla\log p_t$.

    The accepted update of `sde_adaptive_sample` (Jolicoeur-Martineau et al. 2021) on a fixed grid. With additive
    noise it is Kloeden & Platen's explicit order-2.0 weak scheme (1992, §15.1) with $g$ averaged over the step
    ($h\,\bar g^2 = \int g^2 + O(h^3)$): weak order 2. Its strong order is 1 in theory, as Euler–Maruyama's (no
    $I_{(1,0)}$ term); measured 0.94 (VP) and 1.10 (VE) over 32–256 steps against torchsde's srk at 1024, it is left
    undeclared because the suite does not assert it. The draw enters both stages, so there is no noise-free mean:
    ``x_mean`` is the step itself. ``diffusion`` chooses the reverse SDE's $w$ as for `EulerMaruyama` (a finite one
    where $\alpha(T) = 0$).
    """

    weak_order = 2.0
    nfe = 2

    def __init__(self, sde: SDE, diffusion: str | float | Callable[[Tensor], Tensor] = "g") -> None:
        super().__init__(require_linear(sde, type(self).__name__))
        self.diffusion = diffusion
        self._w = reverse_diffusion(self.sde, diffusion)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sde!r}, diffusion={self.diffusion!r})"

    def kernel(self, score_fn, times, x, run):
        """Refuse, before any step, a grid from $T$ where $\alpha(T) = 0$ and $w(T)$ is infinite (as `EulerMaruyama`)."""
        if self.sde.singular_at_T and times.values[0] == self.sde.T:
            if not bool(torch.isfinite(self._w(torch.tensor([self.sde.T], dtype=torch.float64))).all()):
                raise ValueError(
                    f"{type(self).__name__}'s step from t={self.sde.T:.6g} (alpha = 0) is infinite on {self.sde!r}: "
                    f"its diffusion w = {self.diffusion!r} is infinite there; pass a finite one, e.g. diffusion='sigma'"
                )
        return super().kernel(score_fn, times, x, run)

    def step(self, x, t, t_next, score_fn, *, noise):
        t, t_next = batch_time(t, x).double(), batch_time(t_next, x).double()
        _, y = improved_euler_pair(self.sde, score_fn, x, t, t - t_next, noise.normal(x), self._w)
        return y, y
