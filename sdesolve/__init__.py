"""sdesolve: numerically verified score-based diffusion SDEs in PyTorch."""

from .analytic import Gaussian, GaussianMixture
from .grids import karras_grid, log_sigma_grid, make_grid, uniform_grid
from .sde import SDE, VESDE, VPSDE, LinearSDE, ReverseSDE, SubVPSDE

__version__ = "0.1.0"

__all__ = [
    "SDE",
    "LinearSDE",
    "VESDE",
    "VPSDE",
    "SubVPSDE",
    "ReverseSDE",
    "Gaussian",
    "GaussianMixture",
    "uniform_grid",
    "log_sigma_grid",
    "karras_grid",
    "make_grid",
]
