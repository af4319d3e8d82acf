"""Load k-diffusion's ``sampling.py`` alone (``import k_diffusion`` pulls torchvision, kornia, skimage, ...).

Its one helper from ``k_diffusion.utils``, ``append_dims``, is replaced by a stand-in with the same
definition (append trailing singleton dims). Returns None where k-diffusion is not installed.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path


def load_sampling() -> types.ModuleType | None:
    """k-diffusion's sampling module, or None."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "sampling.py"
    package = types.ModuleType("k_diffusion")
    package.__path__ = []
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    package.utils = utils
    sys.modules.setdefault("k_diffusion", package)
    sys.modules.setdefault("k_diffusion.utils", utils)
    module_spec = importlib.util.spec_from_file_location("k_diffusion.sampling", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["k_diffusion.sampling"] = module
    module_spec.loader.exec_module(module)
    return module


def flow_denoiser(sde, score, t_grid):
    """k-diffusion's denoiser on our flow and the noise levels σ̃ = σ/α of ``t_grid`` (float64).

    The denoiser is Tweedie's $D(\\tilde x, \\tilde\\sigma) = (x + \\sigma^2 s(x, t))/\\alpha$ at $x = \\alpha\\tilde x$, with t
    looked up from the grid's σ̃ (k-diffusion calls the model with a ``[B]`` tensor of one level), or found by the
    SDE's inverse noise level for a level off the grid (EDM's churned σ̂, Restart's inner grid).
    """
    import torch

    levels = sde.noise_level(t_grid).to(torch.float64)
    time_of = dict(zip(levels.tolist(), t_grid.tolist(), strict=True))

    def time(level: float) -> float:
        if level not in time_of:
            time_of[level] = float(sde.inverse_noise_level(torch.tensor(level, dtype=torch.float64)))
        return time_of[level]

    def denoiser(xt, sigma):
        t = torch.full((len(xt),), time(sigma[0].item()), dtype=xt.dtype)
        shape = (-1,) + (1,) * (xt.ndim - 1)
        a, s = sde.mean_coeff(t).reshape(shape), sde.std(t).reshape(shape)
        x = a * xt
        return (x + s**2 * score(x, t)) / a

    return denoiser, levels


def run_on_flow(sampler, sde, score, t_grid, x_t, **kwargs):
    """k-diffusion's ``sampler`` on our flow (`flow_denoiser`): σ̃ of ``t_grid``, state x̃ = x/α, mapped back to x."""
    denoiser, levels = flow_denoiser(sde, score, t_grid)
    alpha = sde.mean_coeff(t_grid)
    return sampler(denoiser, x_t / alpha[0], levels.to(x_t.dtype), disable=True, **kwargs) * alpha[-1]
