r"""Time grids for reverse-time sampling, from ``T`` down to ``eps``.

Each grid has ``steps + 1`` points (``steps`` intervals), strictly decreasing, with exact end points.
Noise-level grids are built in EDM's noise level $\tilde\sigma(t) = \sigma(t)/\alpha(t)$
(Karras et al. 2022, eq. 4: $x_t/\alpha_t = x_0 + \tilde\sigma z$), which is $\sigma(t)$ for VE, and mapped
back to t by the SDE's own inverse (`LinearSDE.inverse_noise_level`: closed form for VE/VP/sub-VP).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._utils import check_choice, check_int, check_positive
from .sde import SDE, LinearSDE

__all__ = ["uniform_grid", "log_sigma_grid", "karras_grid", "cosine_grid", "make_grid", "GRIDS", "noise_level"]


def _check(sde: SDE, steps: int, eps: float) -> tuple[int, float]:
    steps = check_int("steps", steps)
    eps = check_positive("eps", eps)
    if eps >= sde.T:
        raise ValueError(f"eps must be < T={sde.T}, got eps={eps!r}")
    return steps, eps


def uniform_grid(sde: SDE, steps: int, eps: float = 1e-3, device=None, dtype=None) -> Tensor:
    r"""$t_i = T + \tfrac iN(\varepsilon - T)$, $i = 0..N$: the grid of score_sde with true spacing."""
    steps, eps = _check(sde, steps, eps)
    return torch.linspace(sde.T, eps, steps + 1, device=device, dtype=dtype or torch.get_default_dtype())


def noise_level(sde: LinearSDE, t: Tensor) -> Tensor:
    r"""EDM noise level $\tilde\sigma(t) = \sigma(t)/\alpha(t)$: `LinearSDE.noise_level` (kept here, where grids read it)."""
    return sde.noise_level(t)


def _from_levels(sde: LinearSDE, levels: Tensor, eps: float, device, dtype) -> Tensor:
    """Times of the decreasing noise ``levels`` (`LinearSDE.inverse_noise_level`), the ends pinned to T and eps."""
    t = sde.inverse_noise_level(levels)
    t[0], t[-1] = sde.T, eps
    return t.to(device=device, dtype=dtype or torch.get_default_dtype())


def _level_range(sde: SDE, eps: float) -> tuple[Tensor, Tensor]:
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"noise-level grids need a LinearSDE, got {sde!r}")
    hi, lo = sde.noise_level(torch.tensor([sde.T, eps], dtype=torch.float64))
    return hi, lo


def log_sigma_grid(sde: SDE, steps: int, eps: float = 1e-3, device=None, dtype=None) -> Tensor:
    r"""Times whose noise levels $\tilde\sigma$ are geometric from $\tilde\sigma(T)$ to $\tilde\sigma(\varepsilon)$.

    For VE this is the uniform grid (log σ is linear in t), the grid of NCSN and diffusers' `set_sigmas`.
    """
    steps, eps = _check(sde, steps, eps)
    hi, lo = _level_range(sde, eps)
    levels = torch.exp(torch.linspace(float(hi.log()), float(lo.log()), steps + 1, dtype=torch.float64))
    return _from_levels(sde, levels, eps, device, dtype)


def karras_grid(sde: SDE, steps: int, eps: float = 1e-3, rho: float = 7.0, device=None, dtype=None) -> Tensor:
    r"""EDM's ρ-grid (Karras et al. 2022, eq. 5) in $\tilde\sigma$:
    $\tilde\sigma_i = (\tilde\sigma_{\max}^{1/\rho} + \tfrac iN(\tilde\sigma_{\min}^{1/\rho} - \tilde\sigma_{\max}^{1/\rho}))^\rho$.
    """
    steps, eps = _check(sde, steps, eps)
    rho = check_positive("rho", rho)
    hi, lo = _level_range(sde, eps)
    ramp = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    levels = (hi ** (1 / rho) + ramp * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    return _from_levels(sde, levels, eps, device, dtype)


def cosine_grid(sde: SDE, steps: int, eps: float = 1e-3, sigma_data: float = 1.0, device=None, dtype=None) -> Tensor:
    r"""Noise levels uniform in the angle $\theta = \arctan(\tilde\sigma/\sigma_d)$: $\tilde\sigma_i = \sigma_d\tan\theta_i$.

    This is the uniform-t grid of the cosine schedule (Nichol & Dhariwal 2021: $\alpha = \cos\theta$,
    $\sigma = \sin\theta$ for data of scale $\sigma_d$) carried to any SDE through $\tilde\sigma$. In
    $\lambda = -\log\tilde\sigma$ its density is $d\theta/d\lambda = 1/(2\cosh(\lambda - \lambda_d))$,
    $\lambda_d = -\log\sigma_d$: steps are shortest where $\tilde\sigma \approx \sigma_d$, where the data
    prediction changes, and long at both ends, where it barely does (far above the data's scale
    $D \approx \mathbb E[x_0]$; far below, the flow is nearly the identity).
    """
    steps, eps = _check(sde, steps, eps)
    sigma_data = check_positive("sigma_data", sigma_data)
    hi, lo = _level_range(sde, eps)
    angles = torch.linspace(
        float(torch.atan(hi / sigma_data)), float(torch.atan(lo / sigma_data)), steps + 1, dtype=torch.float64
    )
    return _from_levels(sde, sigma_data * torch.tan(angles), eps, device, dtype)


# "logsnr" (uniform in λ = log(α/σ), DPM-Solver's grid) is log_sigma_grid: σ̃ = exp(-λ), so a geometric σ̃ is a
# uniform λ (one formula, two names).
GRIDS = {
    "uniform": uniform_grid,
    "log_sigma": log_sigma_grid,
    "karras": karras_grid,
    "logsnr": log_sigma_grid,
    "cosine": cosine_grid,
}


def make_grid(grid: str | Tensor | None, sde: SDE, steps: int, eps: float, device=None, dtype=None) -> Tensor:
    """Resolve a grid given by name (``"uniform"``, ``"log_sigma"``, ``"logsnr"``, ``"karras"``, ``"cosine"``) or as a
    tensor.

    A tensor grid must be 1-D, strictly decreasing, with at least two points inside ``(0, T]``.
    """
    if grid is None or isinstance(grid, str):
        name = check_choice("grid", grid or "uniform", tuple(GRIDS))
        return GRIDS[name](sde, steps, eps, device=device, dtype=dtype)
    try:
        grid = torch.as_tensor(grid, device=device, dtype=dtype)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"grid must be a name ({', '.join(GRIDS)}) or a 1-D tensor of times, got {grid!r}") from None
    if not grid.is_floating_point():
        raise TypeError(f"grid must hold real floating times, got dtype {grid.dtype}")
    if grid.ndim != 1 or grid.numel() < 2:
        raise ValueError(f"grid must be a 1-D tensor of at least 2 times, got shape {tuple(grid.shape)}")
    g = grid.detach().cpu().double()  # validated once, at the entry point
    if not bool((g[1:] < g[:-1]).all()):
        raise ValueError("grid must be strictly decreasing (from T down to eps)")
    if float(g[0]) > sde.T or float(g[-1]) <= 0:
        raise ValueError(f"grid must lie in (0, T]=(0, {sde.T}], got [{float(g[-1])!r}, {float(g[0])!r}]")
    return grid
