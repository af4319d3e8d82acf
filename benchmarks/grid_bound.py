r"""How much of the 10-NFE ring error is the grid: ``python -m benchmarks.grid_bound [--methods ipndm,unipc_3]``.

For a method and a step count, minimise the RMS distance to the exact flow (`benchmarks.few_step`'s VP ring
problem, the same 2000 prior samples and reference) over all grids: the λ-step lengths are $h_k \propto e^{u_k}$,
summing to $\lambda(\varepsilon) - \lambda(T)$, and Powell's method searches $u$ from the logSNR grid ($u = 0$).
The grid found is tuned on the very problem it is scored on, so it is no fair setting: it is a lower bound on
what any fixed-step grid can give this method, and it tells a grid-limited target from a method-limited one.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from scipy.optimize import minimize

from sdesolve import VESDE, VPSDE, ode_sample
from sdesolve.grids import log_sigma_grid
from sdesolve.problems import ring_mixture

from .few_step import EPS, _reference


def best_grid(method: str, sde_name: str = "vp", steps: int = 10, n: int = 2000, max_evals: int = 4000) -> dict:
    """The logSNR grid's RMS, the optimised grid's RMS and its λ-steps (first to last)."""
    sde = VPSDE() if sde_name == "vp" else VESDE()
    data = ring_mixture(dtype=torch.float64)
    score = data.score_fn(sde)
    x_t = sde.prior_sampling((n, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = _reference(sde_name, sde, score, x_t)
    lam = sde.marginal_lambda(log_sigma_grid(sde, steps, EPS, dtype=torch.float64))
    lo, span = float(lam[0]), float(lam[-1] - lam[0])

    def grid(u: np.ndarray) -> torch.Tensor:
        cuts = np.concatenate([[0.0], np.cumsum(np.exp(u))]) / np.exp(u).sum()
        t = sde.inverse_lambda(torch.tensor(lo + cuts * span, dtype=torch.float64))
        t[0], t[-1] = sde.T, EPS
        return t

    def rms(u: np.ndarray) -> float:
        y = ode_sample(sde, score, x_t.shape, method=method, grid=grid(u), eps=EPS, x_init=x_t)
        r = float((y - ref).pow(2).sum(1).mean().sqrt())
        return r if np.isfinite(r) else 1e3

    u0 = np.zeros(steps)
    res = minimize(rms, u0, method="Powell", options={"maxfev": max_evals})
    h = np.exp(res.x) / np.exp(res.x).sum() * span
    return {"method": method, "sde": sde_name, "steps": steps, "logsnr_rms": rms(u0), "best_rms": float(res.fun),
            "evaluations": int(res.nfev), "lambda_steps": [round(float(v), 3) for v in h]}  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.grid_bound", description=__doc__)
    parser.add_argument("--methods", default="ipndm,unipc_3,unipc_2,dpm_solver_pp_3m")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = [best_grid(m, steps=args.steps) for m in args.methods.split(",")]
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
