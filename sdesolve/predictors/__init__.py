r"""The predictors wing: one reverse-time step from ``t`` down to ``t_next``, one family per module, one registry.

- `base`: the `Predictor` base (the one step protocol) and the loop's default kernel for any predictor;
- `affine`: steps affine in state, score and noise (Euler–Maruyama, reverse diffusion, ancestral, identity,
  probability-flow Euler), fused on the loop;
- `runge_kutta`: probability-flow Heun and RK4; `improved_euler`: stochastic Heun (weak order 2);
- `programs`: predictors run as step programs; `edm`, `sde_dpm_solver`, `restart`: the stochastic few-step samplers.

A predictor of your own subclasses `Predictor`, gives ``step(x, t, t_next, score_fn, *, noise)`` drawing with
``noise.normal(x)``, and is registered by ``PREDICTORS["name"] = MyPredictor`` (nothing else: it then runs in
`pc_sample` with generators, per-sample seeds and Brownian paths).
"""

from __future__ import annotations

from .._utils import check_choice
from ..sde import SDE
from .affine import (
    AffineKernel,
    AffinePredictor,
    AncestralSampling,
    EulerMaruyama,
    NoPredictor,
    ProbabilityFlowEuler,
    ReverseDiffusion,
)
from .base import Predictor, StepKernel
from .edm import EDMStochastic
from .improved_euler import ImprovedEuler
from .programs import ProgramPredictor
from .restart import Restart
from .runge_kutta import ProbabilityFlowHeun, ProbabilityFlowRK4
from .sde_dpm_solver import SDEDPMSolverPP2M

__all__ = [
    "Predictor",
    "StepKernel",
    "AffinePredictor",
    "AffineKernel",
    "ProgramPredictor",
    "EulerMaruyama",
    "ImprovedEuler",
    "ReverseDiffusion",
    "AncestralSampling",
    "NoPredictor",
    "ProbabilityFlowEuler",
    "ProbabilityFlowHeun",
    "ProbabilityFlowRK4",
    "EDMStochastic",
    "SDEDPMSolverPP2M",
    "Restart",
    "PREDICTORS",
    "get_predictor",
]

PREDICTORS: dict[str, type[Predictor]] = {
    "euler_maruyama": EulerMaruyama,
    "reverse_diffusion": ReverseDiffusion,
    "ancestral": AncestralSampling,
    "none": NoPredictor,
    "pf_euler": ProbabilityFlowEuler,
    "pf_heun": ProbabilityFlowHeun,
    "pf_rk4": ProbabilityFlowRK4,
    "improved_euler": ImprovedEuler,
    "edm_stochastic": EDMStochastic,
    "sde_dpm_solver_pp_2m": SDEDPMSolverPP2M,
    "restart": Restart,
}
"""The predictors by name (configs, the CLI's ``--predictor``); add your own by assignment."""


def get_predictor(predictor: str | Predictor | None, sde: SDE) -> Predictor:
    """Resolve a predictor given by registry name, instance, or None (= ``NoPredictor``)."""
    if predictor is None:
        return NoPredictor(sde)
    if isinstance(predictor, Predictor):
        return predictor
    if isinstance(predictor, str):
        return PREDICTORS[check_choice("predictor", predictor, tuple(PREDICTORS))](sde)
    raise TypeError(f"predictor must be a name, a Predictor or None, got {predictor!r}")
