"""Adaptive probability-flow ODE solvers on the exact-score Gaussian flow: wall time, NFE, error vs exact."""

from __future__ import annotations

import time

import torch

from sdesolve import VESDE, VPSDE, ode_sample
from sdesolve.problems import gaussian_data

METHODS = ("dopri5", "scipy_rk45", "torchdiffeq_dopri5")


def run(batch: int, dim: int, repeats: int, tol: float = 1e-5) -> list[dict]:
    """One row per (SDE, method): best-of-``repeats`` wall time, NFE, max error, time relative to dopri5."""
    rows = []
    for sde in (VPSDE(), VESDE()):
        data = gaussian_data(dim, dtype=torch.float64)
        x_T = data.marginal(sde, sde.T).sample(batch, generator=torch.Generator().manual_seed(0))
        exact = data.flow(sde, x_T, sde.T, 1e-3)
        score = data.score_fn(sde)
        base = None
        for method in METHODS:
            ode_sample(sde, score, x_T.shape, method=method, x_init=x_T)  # warm-up: imports, first-call overheads
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                y, info = ode_sample(
                    sde, score, x_T.shape, method=method, rtol=tol, atol=tol, x_init=x_T, return_info=True
                )
                times.append(time.perf_counter() - start)
            wall = min(times)
            base = base or wall
            rows.append(
                {
                    "sde": type(sde).__name__,
                    "method": method,
                    "wall_s": wall,
                    "nfe": info["nfe"],
                    "max_err": float((y - exact).abs().max()),
                    "time_vs_dopri5": wall / base,
                }
            )
    return rows
