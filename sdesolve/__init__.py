"""sdesolve: numerically verified score-based diffusion SDEs in PyTorch."""

from .adapters import (
    DDPMTimeMap,
    denoiser_from_score,
    score_from_ddpm,
    score_from_denoiser,
    score_from_eps,
    score_from_sigma_model,
    score_from_x0,
)
from .analytic import Gaussian, GaussianMixture
from .correctors import CORRECTORS, AnnealedLangevin, Corrector, LangevinCorrector, NoCorrector, get_corrector
from .grids import karras_grid, log_sigma_grid, make_grid, uniform_grid
from .likelihood import DIVERGENCES, bits_per_dim, dequantization_offset, log_likelihood
from .losses import dsm_loss, dsm_losses, ema
from .predictors import (
    PREDICTORS,
    AncestralSampling,
    EulerMaruyama,
    NoPredictor,
    Predictor,
    ProbabilityFlowEuler,
    ProbabilityFlowHeun,
    ProbabilityFlowRK4,
    ReverseDiffusion,
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
    "ODE_METHODS",
    "log_likelihood",
    "bits_per_dim",
    "dequantization_offset",
    "DIVERGENCES",
    "score_from_eps",
    "score_from_x0",
    "score_from_sigma_model",
    "score_from_ddpm",
    "DDPMTimeMap",
    "score_from_denoiser",
    "denoiser_from_score",
    "dsm_loss",
    "dsm_losses",
    "ema",
]
