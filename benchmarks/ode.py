"""Adaptive probability-flow ODE solvers on the exact-score Gaussian flow: wall time, NFE, error vs exact."""

from __future__ import annotations

import torch

from sdesolve import VESDE, VPSDE, Gaussian, ode_sample

from .engine import best

METHODS = ("dopri5", "scipy_rk45", "torchdiffeq_dopri5")


def run(shapes, repeats: int, tol: float = 1e-5) -> list[dict]:
    """One row per (shape, SDE, method): best-of-``repeats`` wall time, NFE, max error, speed relative to dopri5.

    ``vs_scipy`` is scipy RK45's time over ours (target ≥ 1, DESIGN.md: same method, so on CPU a match).
    """
    rows = []
    for shape in shapes:
        shape = tuple(shape)
        for sde in (VPSDE(), VESDE()):
            data = Gaussian(torch.full(shape[1:], 0.3, dtype=torch.float64), 0.5)
            x_T = data.marginal(sde, sde.T).sample(shape[0], generator=torch.Generator().manual_seed(0))
            exact = data.flow(sde, x_T, sde.T, 1e-3)
            score = data.score_fn(sde)
            walls = {}
            for method in METHODS:

                def solve(m=method, sde=sde, score=score, x_T=x_T):
                    return ode_sample(sde, score, x_T.shape, method=m, rtol=tol, atol=tol, x_init=x_T, return_info=True)

                walls[method] = best(solve, repeats)
                y, info = solve()
                rows.append(
                    {
                        "shape": "x".join(map(str, shape)),
                        "sde": type(sde).__name__,
                        "method": method,
                        "wall_s": walls[method],
                        "nfe": info["nfe"],
                        "max_err": float((y - exact).abs().max()),
                    }
                )
            for r in rows[-len(METHODS) :]:
                r["time_vs_dopri5"] = r["wall_s"] / walls["dopri5"]
                r["vs_scipy"] = walls["scipy_rk45"] / walls["dopri5"] if r["method"] == "dopri5" else float("nan")
    return rows
