r"""UniPC (Zhao et al. 2023, Alg. 2–3, the B(h) = expm1(−h) variant "bh2"), data prediction.

Predictor UniP-p from $D_i$ and $p - 1$ earlier $D$'s, with $r_k = (\lambda_{i-k} - \lambda_i)/h$ and
$\Delta_k = (D_{i-k} - D_i)/r_k$:
$x^p_{i+1} = \tfrac{\sigma_{i+1}}{\sigma_i}x_i - \alpha_{i+1}\,\mathrm{expm1}(-h)\,D_i
- \alpha_{i+1}B(h)\sum_k \rho^p_k\Delta_k$.
Corrector UniC-p, once $D_{i+1} = D(x^p_{i+1})$ is evaluated (the next step reuses it: no extra NFE), adds
$r = 1$, $\Delta = D_{i+1} - D_i$ with weights $\rho^c$; $\rho$ solves $R\rho = b$ with $R_{mk} = r_k^{m-1}$ and
$b_m = h\varphi_{m+1}(h)\,m!/B(h)$ (eq. 8 of the paper, as diffusers' ``UniPCMultistepScheduler``; $\rho^p = \tfrac12$ for p = 2,
$\rho^c = \tfrac12$ for p = 1). UniPC-p has order p + 1; the last step is not corrected (no evaluation there).
"""

from __future__ import annotations

import math

import numpy as np

from .dpm_solver import data_step, start_step
from .programs import Form, IntervalProgram, Point, ProgramBuilder, Schedule

__all__ = ["unipc_weights", "unipc"]


def unipc_weights(rks: list[float], h: float) -> tuple[list[float], list[float]]:
    r"""Predictor and corrector weights $(\rho^p, \rho^c)$ for history ratios ``rks`` (the corrector's last weight
    multiplies $D_{i+1} - D_i$). Order $p$ = ``len(rks) + 1``."""
    order, hh = len(rks) + 1, -h
    b_h = math.expm1(hh)
    h_phi_k, factorial = math.expm1(hh) / hh - 1.0, 1.0
    r = np.asarray([*rks, 1.0])
    rows, rhs = [], []
    for m in range(1, order + 1):
        rows.append(r ** (m - 1))
        rhs.append(h_phi_k * factorial / b_h)
        factorial *= m + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    big, b = np.stack(rows), np.asarray(rhs)
    if order == 1:
        return [], [0.5]
    rho_p = [0.5] if order == 2 else np.linalg.solve(big[:-1, :-1], b[:-1]).tolist()
    return rho_p, np.linalg.solve(big, b).tolist()


def unipc(sched: Schedule, order: int, lower_order_final: bool = False) -> list[IntervalProgram]:
    """UniPC-``order`` with its corrector: warm-up orders 1, 2, ... on the first intervals; ``lower_order_final``
    lowers the order of the last steps to the intervals left (diffusers' default below 15 steps)."""
    b, pts = ProgramBuilder(), sched.points
    n = len(pts) - 1
    history: list[tuple[Point, Form]] = []  # (point, D), newest first
    pending = None  # the previous interval's (α'B(h), ρ^c, Δ's, D_i, predictor sum): its corrector
    for i, (p, q) in enumerate(zip(pts[:-1], pts[1:], strict=True)):
        if p.alpha == 0.0:  # from λ = -∞: a start of UniPC-p's order p + 1, and a warm-up from the next point on
            b.finish(start_step(b, sched, p, q, order=order + 1))
            continue
        d = b.evaluate(p, b.state)
        state = b.state  # x^p_i; corrected below: x^c = x^p + α B(h) (Σ ρ^p Δ - Σ ρ^c Δ - ρ^c_last (D_i - D_{i-1}))
        if pending is not None:
            scale, rho_c, deltas, d_prev, predicted = pending
            corrected = _weighted(rho_c[:-1], deltas) + rho_c[-1] * (d - d_prev)
            state = state + scale * (predicted - corrected)
        history = [(p, d), *history]
        p_i = min(order, len(history), n - i if lower_order_final else order)
        h = q.lam - p.lam
        rks = [(pt.lam - p.lam) / h for pt, _ in history[1:p_i]]
        deltas = [(dk - d) / rk for rk, (_, dk) in zip(rks, history[1:p_i], strict=True)]
        rho_p, rho_c = unipc_weights(rks, h)
        scale, predicted = q.alpha * math.expm1(-h), _weighted(rho_p, deltas)
        b.finish(data_step(state, d, p, q) - scale * predicted)
        pending = (scale, rho_c, deltas, d, predicted)
    return b.programs


def _weighted(weights: list[float], forms: list[Form]) -> Form:
    r"""$\sum_k w_k F_k$."""
    out = Form()
    for w, f in zip(weights, forms, strict=True):
        out = out + w * f
    return out
