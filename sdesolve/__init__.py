"""sdesolve: numerically verified score-based diffusion SDEs in PyTorch."""

from .adapters import score_from_eps, score_from_sigma_model, score_from_x0
from .adaptive_sampling import sde_adaptive_sample
from .analytic import Gaussian, GaussianMixture
from .correctors import CORRECTORS, AnnealedLangevin, Corrector, LangevinCorrector, NoCorrector, get_corrector
from .grids import karras_grid, log_sigma_grid, make_grid, uniform_grid
from .likelihood import DIVERGENCES, bits_per_dim, dequantization_offset, log_likelihood
from .predictors import (  # the stochastic few-step predictors are registered (and re-exported) there
    PREDICTORS,
    AncestralSampling,
    EDMStochastic,
    EulerMaruyama,
    NoPredictor,
    Predictor,
    ProbabilityFlowEuler,
    ProbabilityFlowHeun,
    ProbabilityFlowRK4,
    Restart,
    ReverseDiffusion,
    SDEDPMSolverPP2M,
    get_predictor,
)
from .sampling import ODE_METHODS, ode_sample, pc_sample
from .sde import SDE, SDES, VESDE, VPSDE, LinearSDE, ReverseSDE, SubVPSDE, get_sde

__version__ = "0.1.0"

__all__ = [
    "SDE",
    "LinearSDE",
    "VESDE",
    "VPSDE",
    "SubVPSDE",
    "ReverseSDE",
    "SDES",
    "get_sde",
    "Gaussian",
    "GaussianMixture",
    "uniform_grid",
    "log_sigma_grid",
    "karras_grid",
    "make_grid",
    "Predictor",
    "EulerMaruyama",
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
    "Corrector",
    "LangevinCorrector",
    "AnnealedLangevin",
    "NoCorrector",
    "CORRECTORS",
    "get_corrector",
    "pc_sample",
    "ode_sample",
    "sde_adaptive_sample",
    "ODE_METHODS",
    "log_likelihood",
    "bits_per_dim",
    "dequantization_offset",
    "DIVERGENCES",
    "score_from_eps",
    "score_from_x0",
    "score_from_sigma_model",
]
