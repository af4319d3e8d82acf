r"""EDM's stochastic sampler as a predictor (Karras et al. 2022, Alg. 2): churn, then a Heun step."""

from __future__ import annotations

from .._utils import check_positive
from ..sde import SDE
from ..solvers.edm import edm_stochastic
from .programs import ProgramPredictor, check_window

__all__ = ["EDMStochastic"]


class EDMStochastic(ProgramPredictor):
    r"""EDM's stochastic sampler (Karras et al. 2022, Alg. 2): churn then Heun; see `edm_stochastic`.

    Args:
        sde: the forward SDE.
        churn: $S_{\rm churn}$ (0: EDM's deterministic Heun).
        s_tmin: lower end of the noise-level window that is churned.
        s_tmax: its upper end (``None``: up to $\tilde\sigma(T)/(1+\gamma)$).
        s_noise: $S_{\rm noise}$, the scale of the added noise (EDM used 1.003 against its networks' bias;
            1 is exact for an exact score).

    Defaults: EDM's ImageNet-64 settings (Karras et al. 2022, Table 5) with ``s_noise=1``. The churn noise enters
    before the step's evaluations, so the step has no noise-free mean: ``x_mean`` is the step itself.
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
        if self.churn > 0:  # a window that holds no noise level would make the churn a silent no-op
            check_window(self.sde, "s_tmin", self.s_tmin, "s_tmax", self.s_tmax)

    def program(self, sched, denoise):
        return edm_stochastic(sched, self.churn, self.s_tmin, self.s_tmax, self.s_noise)
