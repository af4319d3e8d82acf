"""sdesolve: numerically verified score-based diffusion SDEs in PyTorch."""

from .adapters import (
    DDPMTimeMap,
    denoiser_from_score,
    score_from_ddpm,
    score_from_denoiser,
    score_from_eps,
    score_from_sigma_model,
    score_from_velocity,
    score_from_x0,
    velocity_from_score,
)
from .analytic import Gaussian, GaussianMixture, GuidedGaussian, MultivariateGaussian, MultivariateGaussianMixture
from .conditional import (
    LinearObservation,
    Replacement,
    colorization_matrix,
    dps_score,
    gaussian_sampler_law,
    inpainting_matrix,
    pigdm_score,
    replacement_sample,
)
from .correctors import (
    CORRECTORS,
    AcceptanceLog,
    AnnealedLangevin,
    Corrector,
    GridLangevin,
    LangevinCorrector,
    MALACorrector,
    NoCorrector,
    get_corrector,
    sigma_rule_step,
)
from .grids import cosine_grid, karras_grid, log_sigma_grid, make_grid, uniform_grid
from .guidance import GuidedScore, cfg_one_model, cfg_score, classifier_guidance, interval_grid
from .likelihood import DIVERGENCES, bits_per_dim, dequantization_offset, log_likelihood
from .losses import dsm_loss, dsm_losses, ema, flow_matching_loss, flow_matching_losses
from .predictors import (
    PREDICTORS,
    AncestralSampling,
    EDMStochastic,
    EulerMaruyama,
    ImprovedEuler,
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
from .sampling import EXECUTIONS, ODE_METHODS, StepHook, ode_sample, pc_sample, sde_adaptive_sample
from .sde import (
    EDMSDE,
    SDE,
    SDES,
    VESDE,
    VPSDE,
    CosineSDE,
    InterpolantSDE,
    LinearSDE,
    RectifiedFlowSDE,
    ReverseSDE,
    SubVPSDE,
    get_sde,
)

__version__ = "0.1.0"

__all__ = [
    "SDE",
    "LinearSDE",
    "VESDE",
    "VPSDE",
    "SubVPSDE",
    "RectifiedFlowSDE",
    "CosineSDE",
    "EDMSDE",
    "InterpolantSDE",
    "ReverseSDE",
    "SDES",
    "get_sde",
    "Gaussian",
    "GaussianMixture",
    "MultivariateGaussian",
    "MultivariateGaussianMixture",
    "GuidedGaussian",
    "LinearObservation",
    "inpainting_matrix",
    "colorization_matrix",
    "Replacement",
    "replacement_sample",
    "dps_score",
    "pigdm_score",
    "gaussian_sampler_law",
    "GuidedScore",
    "classifier_guidance",
    "cfg_score",
    "cfg_one_model",
    "interval_grid",
    "uniform_grid",
    "log_sigma_grid",
    "karras_grid",
    "cosine_grid",
    "make_grid",
    "Predictor",
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
    "Corrector",
    "LangevinCorrector",
    "AnnealedLangevin",
    "NoCorrector",
    "CORRECTORS",
    "get_corrector",
    "GridLangevin",
    "MALACorrector",
    "AcceptanceLog",
    "sigma_rule_step",
    "pc_sample",
    "ode_sample",
    "sde_adaptive_sample",
    "ODE_METHODS",
    "EXECUTIONS",
    "StepHook",
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
    "score_from_velocity",
    "velocity_from_score",
    "dsm_loss",
    "dsm_losses",
    "flow_matching_loss",
    "flow_matching_losses",
    "ema",
]

_DIFFUSERS_MODELS = ("score_from_unet", "vp_sde_from_ddpm")
"""Names of `sdesolve.diffusers_models` (which needs diffusers) reachable from the package root on first use, so
``from sdesolve import score_from_unet`` works while ``import sdesolve`` never imports diffusers."""


def __getattr__(name: str):
    if name in _DIFFUSERS_MODELS:
        from . import diffusers_models

        return getattr(diffusers_models, name)
    raise AttributeError(f"module 'sdesolve' has no attribute {name!r}")
