r"""Langevin with a step tied to the grid spacing, so that predictor–corrector sampling converges (weak order 1)."""

from __future__ import annotations

from torch import Tensor

from .._utils import check_int
from ..sde import SDE
from .langevin import StateFreeLangevin, sigma_rule_step, ula_proposal

__all__ = ["GridLangevin"]


class GridLangevin(StateFreeLangevin):
    r"""Unadjusted Langevin with a step tied to the grid spacing, so that PC sampling converges (weak order 1).

    $\varepsilon_i = 2\alpha\,\mathrm{snr}^2\sigma(t_i)^2\cdot\min(1, N_{\rm ref}|t_i - t_{i+1}|/T)$: the σ-rule on
    grids up to $N_{\rm ref}$ uniform steps (default ``sde.N``, score_sde's 1000), shrinking in proportion to the
    spacing on finer ones (never larger than the σ-rule: unadjusted Langevin on $\mathcal N(\mu, v)$ is unstable
    for $\varepsilon \ge 2v$). The corrector then adds Langevin dynamics at the finite rate
    $\lambda(t) = 2\mathrm{snr}^2\sigma^2N_{\rm ref}/T$ to the reverse SDE, which keeps every marginal $p_t$ in
    continuous time (Karras et al. 2022, eq. 6, with $\beta(t)\sigma(t)^2 = \lambda(t)$): the PC chain is a
    consistent splitting of that SDE, with weak error O(h). With a fixed snr instead, $\lambda = \varepsilon/h \to
    \infty$ and the unadjusted chain's stationary bias $V = v/(1-\varepsilon/2v)$ is reached at every level.

    Args:
        sde: a `LinearSDE`.
        snr: the σ-rule's snr (applied as is on grids of at most ``ref_steps`` steps).
        n_steps: Langevin steps per call.
        ref_steps: $N_{\rm ref}$ (default ``sde.N``).
    """

    weak_order = 1.0  # of PC sampling with a first-order predictor (measured: `corrector_bias.grid_rule_study`)

    def __init__(self, sde: SDE, snr: float = 0.16, n_steps: int = 1, ref_steps: int | None = None) -> None:
        super().__init__(sde, snr, n_steps)
        self.ref_steps = check_int("ref_steps", sde.N if ref_steps is None else ref_steps, minimum=1)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.sde!r}, snr={self.snr}, n_steps={self.n_steps}, ref_steps={self.ref_steps})"
        )

    def step_size(self, t: Tensor, t_next: Tensor | None) -> Tensor:
        if t_next is None:
            raise ValueError("GridLangevin needs t_next (its step is proportional to |t - t_next|); got t_next=None")
        shrink = (self.ref_steps * (t - t_next).abs() / self.sde.T).clamp(max=1.0)
        return sigma_rule_step(self.sde, self.snr, t, t_next) * shrink

    def step(self, x, t, t_next, score_fn, *, noise):
        tb, eps = self.time_and_step(x, t, t_next)
        x_mean = x
        for j in range(self.n_steps):
            x, x_mean = ula_proposal(x, score_fn(x, tb), eps, noise.normal(x, j))
        return x, x_mean
