r"""Sampling entry points: predictor–corrector (`pc_sample`) and probability-flow ODE (`ode_sample`).

Song et al. 2021, Alg. 1 (PC sampling) and §4.3 (probability flow). Both run from ``T`` down to ``eps``
on device, with no host synchronisation inside the step loop: non-finite values are recorded in a device
flag and raised once after the loop as a ``FloatingPointError`` naming the step and time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import _ode
from ._utils import batch_time, check_choice, check_int, check_positive
from .correctors import Corrector, get_corrector
from .grids import make_grid
from .predictors import Predictor, get_predictor
from .sde import SDE, ScoreFn

__all__ = ["pc_sample", "ode_sample", "ODE_METHODS", "Brownian"]

Brownian = Callable[[float, float], Tensor]
ODE_METHODS = ("dopri5", "euler", "heun", "rk4", "scipy_rk45", "torchdiffeq_dopri5")
_DEFAULT_SNR = 0.16


class _FiniteFlag:
    """Device-side record of the first step whose state is non-finite; one host sync in `check`."""

    def __init__(self, x: Tensor, enabled: bool) -> None:
        self.enabled = enabled
        self.first_bad = torch.full((), -1, device=x.device, dtype=torch.long) if enabled else None

    def update(self, step: int, x: Tensor) -> None:
        if self.enabled:
            bad = ~torch.isfinite(x).all()
            self.first_bad = torch.where((self.first_bad < 0) & bad, step, self.first_bad)

    def check(self, grid: Tensor) -> None:
        if self.enabled and (step := int(self.first_bad)) >= 0:
            raise FloatingPointError(
                f"non-finite sample at step {step} (t={float(grid[step]):.6g} -> {float(grid[step + 1]):.6g}); "
                "check the score function for NaN/inf"
            )


def _checked_score(score_fn: ScoreFn) -> ScoreFn:
    """Wrap ``score_fn`` with a shape check (metadata only, no host sync)."""
    if not callable(score_fn):
        raise TypeError(f"score_fn must be callable as score_fn(x, t), got {score_fn!r}")

    def checked(x: Tensor, t) -> Tensor:
        s = score_fn(x, t)
        if not isinstance(s, Tensor) or s.shape != x.shape:
            shape = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise ValueError(f"score_fn must return a tensor shaped like x {tuple(x.shape)}, got {shape}")
        return s

    return checked


def _initial_state(sde: SDE, shape, x_init, generator, device, dtype) -> Tensor:
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(f"shape must be [B, *event] with at least one event dim, got {shape}")
    if x_init is not None:
        if tuple(x_init.shape) != shape:
            raise ValueError(f"x_init must have shape {shape}, got {tuple(x_init.shape)}")
        return x_init.to(device=device or x_init.device, dtype=dtype or x_init.dtype)
    return sde.prior_sampling(shape, generator=generator, device=device, dtype=dtype or torch.get_default_dtype())


def _resolve_grid(sde: SDE, grid, steps: int | None, eps: float, x: Tensor) -> Tensor:
    if grid is not None and not isinstance(grid, str):
        return make_grid(grid, sde, 1, eps, device=x.device, dtype=x.dtype)
    return make_grid(grid, sde, check_int("steps", steps), eps, device=x.device, dtype=x.dtype)


def _fixed_grid(sde: SDE, method: str, steps: int | None, grid, eps: float, x: Tensor) -> Tensor | None:
    """Validate ``steps``/``grid`` against ``method``: the decreasing grid of a fixed-step method, else None."""
    check_choice("method", method, ODE_METHODS)
    if method not in _ode.FIXED:
        if steps is not None or grid is not None:
            raise ValueError(f"steps/grid apply to fixed-step methods (euler, heun, rk4), not method={method!r}")
        return None
    if steps is None and (grid is None or isinstance(grid, str)):
        raise ValueError(f"method={method!r} is fixed-step: pass steps= or a grid tensor")
    return _resolve_grid(sde, grid, steps, eps, x)


def _brownian_noise(brownian: Brownian, T: float, t: float, t_next: float, x: Tensor) -> Tensor:
    """Standard normal ``z = ΔW/√|Δt|`` from a Brownian path in reversed time ``s = T - t`` (torchsde's)."""
    dw = brownian(T - t, T - t_next)
    if dw.shape != x.shape:
        raise ValueError(f"brownian increments must have the sample's shape {tuple(x.shape)}, got {tuple(dw.shape)}")
    return dw.to(x) / abs(t - t_next) ** 0.5


def pc_sample(
    sde: SDE,
    score_fn: ScoreFn,
    shape: Sequence[int],
    *,
    predictor: str | Predictor | None = "reverse_diffusion",
    corrector: str | Corrector | None = "langevin",
    steps: int = 1000,
    eps: float = 1e-3,
    snr: float | None = None,
    corrector_steps: int = 1,
    denoise: bool = True,
    grid: str | Tensor | None = None,
    x_init: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    return_info: bool = False,
    check_finite: bool = True,
    brownian: Brownian | None = None,
) -> Tensor | tuple[Tensor, dict]:
    r"""Predictor–corrector sampling from ``T`` down to ``eps`` (Song et al. 2021, Alg. 1).

    At each grid interval $(t_i, t_{i+1})$: ``corrector_steps`` Langevin steps at $t_i$, then one predictor
    step to $t_{i+1}$.

    Args:
        sde: the forward SDE.
        score_fn: ``score_fn(x, t)`` → ∇ log p_t(x), shaped like ``x``; ``t`` is ``[B]``.
        shape: ``[B, *event]``.
        predictor: name (see `PREDICTORS`), instance, or None.
        corrector: name (see `CORRECTORS`), instance, or None.
        steps: number of intervals (``steps + 1`` grid points); ignored when ``grid`` is a tensor.
        eps: final time (> 0).
        snr: Langevin signal-to-noise ratio for a corrector given by name (default 0.16); a ``ValueError``
            together with a corrector instance.
        corrector_steps: Langevin steps per interval for a corrector given by name.
        denoise: return the last predictor mean (no noise on the final step), as score_sde.
        grid: ``"uniform"`` (default), ``"log_sigma"``, ``"karras"`` or a decreasing 1-D tensor of times.
        x_init: start state at ``T`` (default: a prior sample).
        generator: the only source of randomness.
        progress: show a tqdm bar.
        return_info: also return ``{"nfe", "steps", "grid"}``.
        check_finite: raise ``FloatingPointError`` naming the first non-finite step (one sync after the loop).
        brownian: callable ``(s0, s1) -> W(s1) - W(s0)`` in reversed time ``s = T - t`` (e.g. a torchsde
            ``BrownianInterval``) driving the predictor's noise, to share a path with torchsde.

    Returns:
        Samples ``[B, *event]`` at ``eps`` (and the info dict with ``return_info``).
    """
    eps = check_positive("eps", eps)
    if isinstance(corrector, Corrector) and snr is not None:
        raise ValueError("snr= configures a corrector given by name; set it on the corrector instance instead")
    pred = get_predictor(predictor, sde)
    corr = get_corrector(
        corrector, sde, snr=_DEFAULT_SNR if snr is None else snr, n_steps=check_int("corrector_steps", corrector_steps)
    )
    score_fn = _checked_score(score_fn)
    x = _initial_state(sde, shape, x_init, generator, device, dtype)
    grid = _resolve_grid(sde, grid, steps, eps, x)
    n = grid.shape[0] - 1
    times = grid.tolist() if brownian is not None else None  # one host copy, before the loop
    flag = _FiniteFlag(x, check_finite)
    x_mean = x
    for i in tqdm(range(n), disable=not progress, desc="pc_sample"):
        t, t_next = grid[i], grid[i + 1]
        x, x_mean = corr.step(x, t, score_fn, generator=generator, t_next=t_next)
        noise = _brownian_noise(brownian, sde.T, times[i], times[i + 1], x) if brownian is not None else None
        x, x_mean = pred.step(x, t, t_next, score_fn, generator=generator, noise=noise)
        flag.update(i, x)
    flag.check(grid)
    out = x_mean if denoise else x
    if return_info:
        return out, {"nfe": n * (pred.nfe + corr.nfe), "steps": n, "grid": grid}
    return out


def _scipy_rk45(func, x: Tensor, t0: float, t1: float, rtol: float, atol: float) -> tuple[Tensor, int]:
    """score_sde's host path: scipy RK45 on a flat float64 copy; one device→host copy per evaluation."""
    from scipy.integrate import solve_ivp

    def rhs(t, y):
        y = torch.from_numpy(y).to(x).reshape(x.shape)
        return func(t, y).detach().cpu().double().numpy().ravel()

    sol = solve_ivp(rhs, (t0, t1), x.detach().cpu().double().numpy().ravel(), rtol=rtol, atol=atol, method="RK45")
    if not sol.success:
        raise RuntimeError(f"scipy RK45 failed: {sol.message}")
    return torch.from_numpy(np.ascontiguousarray(sol.y[:, -1])).to(x).reshape(x.shape), int(sol.nfev)


def _torchdiffeq_dopri5(func, x: Tensor, t0: float, t1: float, rtol: float, atol: float) -> tuple[Tensor, int]:
    """torchdiffeq's dopri5, integrated in increasing time s = t0 - t (its decreasing-time path underflows)."""
    from torchdiffeq import odeint

    nfe = 0
    sign = 1.0 if t1 >= t0 else -1.0

    def counted(s, y):
        nonlocal nfe
        nfe += 1
        return sign * func(t0 + sign * s, y)

    ts = torch.tensor([0.0, abs(t1 - t0)], dtype=x.dtype, device=x.device)
    # step_t: land on the end time (its default steps past it and interpolates, evaluating outside [eps, T])
    return odeint(counted, x, ts, rtol=rtol, atol=atol, method="dopri5", options={"step_t": ts})[-1], nfe


def integrate_flow(
    func: _ode.ODEFunc,
    x: Tensor,
    *,
    method: str,
    t0: float,
    t1: float,
    rtol: float,
    atol: float,
    grid: Tensor | None = None,
) -> tuple[Tensor, int]:
    """Integrate ``dx/dt = func(t, x)`` from ``t0`` to ``t1`` (adaptive) or over ``grid`` (fixed); (x, NFE)."""
    check_choice("method", method, ODE_METHODS)
    if method in _ode.FIXED:
        return _ode.fixed_grid_solve(func, x, grid, method)
    if method == "dopri5":
        y, nfe, _ = _ode.dopri5_solve(func, x, t0, t1, rtol=rtol, atol=atol)
        return y, nfe
    solver = _scipy_rk45 if method == "scipy_rk45" else _torchdiffeq_dopri5
    return solver(func, x, t0, t1, rtol, atol)


def ode_sample(
    sde: SDE,
    score_fn: ScoreFn,
    shape: Sequence[int],
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int | None = None,
    grid: str | Tensor | None = None,
    eps: float = 1e-3,
    x_init: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    return_info: bool = False,
    check_finite: bool = True,
) -> Tensor | tuple[Tensor, dict]:
    r"""Sample by integrating the probability-flow ODE $\dot x = f - \tfrac12 g^2\nabla\log p_t$ from T to eps.

    Args:
        sde: the forward SDE.
        score_fn: ``score_fn(x, t)`` → ∇ log p_t(x), shaped like ``x``.
        shape: ``[B, *event]``.
        method: ``"dopri5"`` (adaptive Dormand–Prince on device), ``"euler"``, ``"heun"``, ``"rk4"`` (fixed
            steps on ``grid``/``steps``), ``"scipy_rk45"`` (score_sde's host path) or ``"torchdiffeq_dopri5"``
            (both kept for comparison).
        rtol: relative tolerance of the adaptive methods.
        atol: absolute tolerance of the adaptive methods.
        steps: number of intervals of the fixed-step grid (as in `pc_sample`).
        grid: grid name or decreasing 1-D tensor of times for the fixed-step methods (as in `pc_sample`); fixed-step
            methods need ``steps`` or a grid tensor.
        eps: final time (> 0).
        x_init: start state at ``T`` (default: a prior sample).
        generator: source of the prior sample.
        return_info: also return ``{"nfe", "method"}``.
        check_finite: raise ``FloatingPointError`` if the result is non-finite.

    Returns:
        Samples ``[B, *event]`` at ``eps`` (and ``{"nfe", "method"}`` with ``return_info``).
    """
    check_choice("method", method, ODE_METHODS)
    eps = check_positive("eps", eps)
    rtol, atol = check_positive("rtol", rtol), check_positive("atol", atol)
    score_fn = _checked_score(score_fn)
    x = _initial_state(sde, shape, x_init, generator, device, dtype)
    t_grid = _fixed_grid(sde, method, steps, grid, eps, x)
    drift = sde.reverse(score_fn, probability_flow=True).drift

    def func(t, y: Tensor) -> Tensor:
        return drift(y, batch_time(t, y))

    y, nfe = integrate_flow(func, x, method=method, t0=sde.T, t1=eps, rtol=rtol, atol=atol, grid=t_grid)
    if check_finite and not bool(torch.isfinite(y).all()):  # one sync, after the solve
        raise FloatingPointError(f"non-finite sample from the probability-flow ODE ({method}, T -> eps={eps})")
    return (y, {"nfe": nfe, "method": method}) if return_info else y
