r"""SDE-DPM-Solver++(2M) as a predictor (Lu et al. 2022b, App. B; k-diffusion's ``sample_dpmpp_2m_sde``)."""

from __future__ import annotations

from .._utils import check_positive
from ..sde import SDE
from ..solvers.dpm_solver import sde_dpm_solver_pp_2m
from .programs import ProgramPredictor

__all__ = ["SDEDPMSolverPP2M"]


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
