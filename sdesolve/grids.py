r"""Time grids for reverse-time sampling, from ``T`` down to ``eps``.

Each grid has ``steps + 1`` points (``steps`` intervals), strictly decreasing, with exact end points.
Noise-level grids are built in EDM's noise level $\tilde\sigma(t) = \sigma(t)/\alpha(t)$
(Karras et al. 2022, eq. 4: $x_t/\alpha_t = x_0 + \tilde\sigma z$), which is $\sigma(t)$ for VE, and mapped
back to t by the SDE's own inverse (`LinearSDE.inverse_noise_level`: closed form for VE/VP/sub-VP).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ._utils import check_choice, check_int, check_positive
from .sde import SDE, LinearSDE

__all__ = [
    "uniform_grid",
    "log_sigma_grid",
    "karras_grid",
    "cosine_grid",
    "make_grid",
    "shift_grid",
    "GRIDS",
    "noise_level",
]


def _check(sde: SDE, steps: int, eps: float) -> tuple[int, float]:
    steps = check_int("steps", steps)
    eps = check_positive("eps", eps)
    if eps >= sde.T:
        raise ValueError(f"eps must be < T={sde.T}, got eps={eps!r}")
    return steps, eps


def _strictly_decreasing(grid: Tensor, who: str) -> Tensor:
    """``grid`` itself, refused where extreme parameters leave it non-finite or with zero-length intervals (times
    that coincide in its dtype: a step there does nothing, or divides by a zero step). One host sync, at build."""
    if bool((grid[1:] < grid[:-1]).all()):  # False for NaN too
        return grid
    values = grid.detach().cpu()
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{who} gives non-finite times {values.tolist()}; use less extreme parameters")
    i = int((values[1:] >= values[:-1]).nonzero()[0, 0])
    raise ValueError(
        f"{who} gives a zero-length interval in {grid.dtype} (t[{i}] = t[{i + 1}] = {float(values[i]):.9g}); "
        "use less extreme parameters, fewer steps or a wider dtype"
    )


def uniform_grid(sde: SDE, steps: int, eps: float = 1e-3, device=None, dtype=None) -> Tensor:
    r"""$t_i = T + \tfrac iN(\varepsilon - T)$, $i = 0..N$: the grid of score_sde with true spacing."""
    steps, eps = _check(sde, steps, eps)
    grid = torch.linspace(sde.T, eps, steps + 1, device=device, dtype=dtype or torch.get_default_dtype())
    return _strictly_decreasing(grid, f"uniform_grid(steps={steps}, eps={eps})")


def noise_level(sde: LinearSDE, t: Tensor) -> Tensor:
    r"""EDM noise level $\tilde\sigma(t) = \sigma(t)/\alpha(t)$: `LinearSDE.noise_level` (kept here, where grids read it)."""
    return sde.noise_level(t)


def _from_levels(sde: LinearSDE, levels: Tensor, eps: float, device, dtype) -> Tensor:
    """Times of the decreasing noise ``levels`` (`LinearSDE.inverse_noise_level`), the ends pinned to T and eps."""
    t = sde.inverse_noise_level(levels)
    t[0], t[-1] = sde.T, eps
    return t.to(device=device, dtype=dtype or torch.get_default_dtype())


def _level_grid(
    sde: SDE, steps: int, eps: float, spacing: Callable[[float, float, int], Tensor], device, dtype
) -> Tensor:
    r"""The grid whose noise levels ``spacing(hi, lo, n)`` puts at ``n`` points from $	ilde\sigma(T)$ to
    $	ilde\sigma(arepsilon)$.

    Where $	ilde\sigma(T) = \infty$ ($lpha(T) = 0$: rectified flow, cosine) no such spacing exists: the first interval is
    then the uniform grid's, from $T$ to $t_1 = T - (T - arepsilon)/N$ (so it shrinks like the others as N grows), and
    the family spaces the other $N - 1$ intervals from $	ilde\sigma(t_1)$ down.
    """
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"noise-level grids need a LinearSDE, got {sde!r}")
    hi, lo = (float(v) for v in sde.noise_level(torch.tensor([sde.T, eps], dtype=torch.float64)))
    if math.isfinite(hi):
        return _from_levels(sde, spacing(hi, lo, steps + 1), eps, device, dtype)
    t1 = sde.T - (sde.T - eps) / steps
    if steps == 1:
        return torch.tensor([sde.T, eps], dtype=torch.float64).to(
            device=device, dtype=dtype or torch.get_default_dtype()
        )
    rest = spacing(float(sde.noise_level(torch.tensor(t1, dtype=torch.float64))), lo, steps)
    t = sde.inverse_noise_level(rest)
    t[0], t[-1] = t1, eps
    return torch.cat([torch.tensor([sde.T], dtype=torch.float64), t]).to(
        device=device, dtype=dtype or torch.get_default_dtype()
    )


def log_sigma_grid(sde: SDE, steps: int, eps: float = 1e-3, device=None, dtype=None) -> Tensor:
    r"""Times whose noise levels $\tilde\sigma$ are geometric from $\tilde\sigma(T)$ to $\tilde\sigma(\varepsilon)$: uniform
    in $\lambda = -\log\tilde\sigma$ (DPM-Solver's logSNR grid; `_level_grid` where $\tilde\sigma(T) = \infty$).

    For VE this is the uniform grid (log σ is linear in t), the grid of NCSN and diffusers' `set_sigmas`.
    """
    steps, eps = _check(sde, steps, eps)

    def geometric(hi: float, lo: float, n: int) -> Tensor:
        return torch.exp(torch.linspace(math.log(hi), math.log(lo), n, dtype=torch.float64))

    return _strictly_decreasing(
        _level_grid(sde, steps, eps, geometric, device, dtype), f"log_sigma_grid(steps={steps}, eps={eps})"
    )


def karras_grid(sde: SDE, steps: int, eps: float = 1e-3, rho: float = 7.0, device=None, dtype=None) -> Tensor:
    r"""EDM's ρ-grid (Karras et al. 2022, eq. 5) in $\tilde\sigma$ (`_level_grid` where $\tilde\sigma(T) = \infty$):
    $\tilde\sigma_i = (\tilde\sigma_{\max}^{1/\rho} + \tfrac iN(\tilde\sigma_{\min}^{1/\rho} - \tilde\sigma_{\max}^{1/\rho}))^\rho$.
    """
    steps, eps = _check(sde, steps, eps)
    rho = check_positive("rho", rho)

    def ramp(hi: float, lo: float, n: int) -> Tensor:
        u = torch.linspace(0, 1, n, dtype=torch.float64)
        top, bottom = (torch.tensor(v, dtype=torch.float64) ** (1 / rho) for v in (hi, lo))  # inf, not OverflowError
        return (top + u * (bottom - top)) ** rho

    return _strictly_decreasing(
        _level_grid(sde, steps, eps, ramp, device, dtype), f"karras_grid(steps={steps}, eps={eps}, rho={rho})"
    )


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
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"noise-level grids need a LinearSDE, got {sde!r}")
    hi, lo = sde.noise_level(torch.tensor([sde.T, eps], dtype=torch.float64))
    angles = torch.linspace(  # θ(T) = π/2 where σ̃(T) = ∞: the cosine grid needs no special first interval
        float(torch.atan(hi / sigma_data)), float(torch.atan(lo / sigma_data)), steps + 1, dtype=torch.float64
    )
    return _strictly_decreasing(
        _from_levels(sde, sigma_data * torch.tan(angles), eps, device, dtype),
        f"cosine_grid(steps={steps}, eps={eps}, sigma_data={sigma_data})",
    )


# "logsnr" (uniform in λ = log(α/σ), DPM-Solver's grid) is log_sigma_grid: σ̃ = exp(-λ), so a geometric σ̃ is a
# uniform λ (one formula, two names).
GRIDS = {
    "uniform": uniform_grid,
    "log_sigma": log_sigma_grid,
    "karras": karras_grid,
    "logsnr": log_sigma_grid,
    "cosine": cosine_grid,
}


def make_grid(
    grid: str | Tensor | None, sde: SDE, steps: int, eps: float, device=None, dtype=None, shift: float = 1.0
) -> Tensor:
    """Resolve a grid given by name (``"uniform"``, ``"log_sigma"``, ``"logsnr"``, ``"karras"``, ``"cosine"``) or as a
    tensor; ``shift`` applies SD3's shift to a named grid (`shift_grid`).

    A tensor grid must be 1-D, strictly decreasing, with at least two points in ``[0, T]``; so only its last point
    can be 0 (a grid ending at the data, as flow models sample: the last step returns the data prediction).
    """
    if grid is None or isinstance(grid, str):
        name = check_choice("grid", grid or "uniform", tuple(GRIDS))
        if shift == 1.0:
            return GRIDS[name](sde, steps, eps, device=device, dtype=dtype)
        times = shift_grid(GRIDS[name](sde, steps, eps, dtype=torch.float64), sde, shift)
        return times.to(device=device, dtype=dtype or torch.get_default_dtype())
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
    if float(g[0]) > sde.T or float(g[-1]) < 0:
        raise ValueError(f"grid must lie in [0, T]=[0, {sde.T}], got [{float(g[-1])!r}, {float(g[0])!r}]")
    return grid


def shift_grid(grid: Tensor, sde: SDE, shift: float) -> Tensor:
    r"""SD3's resolution shift (Esser et al. 2024, eq. 23) on any schedule: $u \mapsto su/(1 + (s - 1)u)$ on
    $u = \tau/\tau(T) \in [0, 1]$, $\tau = \tilde\sigma/(1 + \tilde\sigma)$; $s > 1$ moves the points toward the noise.

    Since $u/(1 - u)$ is scaled by $s$, in noise levels it reads $\tilde\sigma \mapsto s\tilde\sigma\tilde\sigma_T/(\tilde\sigma_T +
    (s - 1)\tilde\sigma)$, computed so (no cancellation near the noise end), and $\tilde\sigma \mapsto s\tilde\sigma$ where
    $\tilde\sigma(T) = \infty$: for rectified flow $\tau = \sigma = t$ and this is SD3's and diffusers' ``shift`` on the
    sigmas. Normalising by $\tau(T)$ keeps a bounded schedule's grid (VP, VE) inside $[0, T]$ and strictly
    decreasing. Mapped back through `LinearSDE.inverse_noise_level`; the ends stay ``grid[0]`` and ``grid[-1]``
    (diffusers shifts its last sigma too, twice: #13243).

    Args:
        grid: a decreasing grid of times (any dtype; float64 inside).
        sde: its linear SDE.
        shift: $s > 0$ (1: the grid itself).
    """
    shift = check_positive("shift", shift)
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"shift_grid needs a LinearSDE, got {sde!r}")
    t = grid.detach().to(torch.float64)
    level = sde.noise_level(t)
    top = float(sde.noise_level(torch.tensor(sde.T, dtype=torch.float64)))
    level = shift * level if math.isinf(top) else shift * level * top / (top + (shift - 1) * level)
    out = sde.inverse_noise_level(level)
    out[0], out[-1] = t[0], t[-1]
    return out.to(grid)
