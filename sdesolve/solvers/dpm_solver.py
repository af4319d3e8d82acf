r"""DPM-Solver: exponential integrators of the probability flow in $\lambda = \log(\alpha/\sigma)$ (DDIM, DPM-Solver,
DPM-Solver++, SDE-DPM-Solver++(2M)), written once for the grid programs and the adaptive solver.

In $\tilde x = x/\alpha$ and $\lambda$ the flow is $d\tilde x/d\lambda = D - \tilde x$ with the data prediction
$D = (x + \sigma^2 s)/\alpha$, so over $h = \lambda' - \lambda$ (Lu et al. 2022b, eq. 9)
$$x' = \tfrac{\sigma'}{\sigma}\,x + \alpha' \int_\lambda^{\lambda'} e^{-(\lambda' - u)} D(u)\,du,$$
and in the noise prediction $\epsilon = (x - \alpha D)/\sigma$ (Lu et al. 2022, eq. 3.4)
$x' = \tfrac{\alpha'}{\alpha}x - \sigma'\int_\lambda^{\lambda'} e^{u - \lambda}\,\epsilon(u)\,du$. The two are one formula in
exchanged coordinates (`Frame`): $(a, b, u) = (\alpha, \sigma, \lambda)$ with the model $\epsilon$, or
$(\sigma, \alpha, -\lambda)$ with $D$, so the single-step updates (`first_order`, `second_order`, `third_stage`,
`third_order`; Lu et al. 2022, Alg. 1–2) are written once, generic over their coefficients: floats with `Form`s for
the grid programs (`sdesolve.solvers.programs`), per-sample tensors for the adaptive solver
(`sdesolve.solvers.dpm_solver_adaptive`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .programs import Form, IntervalProgram, Point, ProgramBuilder, Schedule
from .runge_kutta import HEUN, RK3

__all__ = [
    "PREDICTIONS",
    "Frame",
    "frame",
    "first_order",
    "second_order",
    "third_stage",
    "third_order",
    "data_step",
    "limit_step",
    "start_step",
    "exp_weights",
    "ddim",
    "dpm_solver_pp_2m",
    "dpm_solver_pp_3m",
    "dpm_solver_pp_2s",
    "dpm_solver_2",
    "dpm_solver_3",
    "sde_dpm_solver_pp_2m",
]

PREDICTIONS = ("noise", "data")
r"""The model the updates extrapolate: $\epsilon$ (DPM-Solver) or $D$ (DPM-Solver++)."""

State = Form | Tensor
Coefficient = float | Tensor


@dataclass(frozen=True)
class Frame:
    r"""A point in the exchanged coordinates of the update formulas: $(a, b, u) = (\alpha, \sigma, \lambda)$ for noise
    prediction, $(\sigma, \alpha, -\lambda)$ for data prediction (floats, or tensors broadcasting against the state)."""

    a: Coefficient
    b: Coefficient
    u: Coefficient


def frame(p: Point, prediction: str) -> Frame:
    """``p`` in the coordinates of ``prediction`` (``"noise"`` or ``"data"``)."""
    return Frame(p.alpha, p.sigma, p.lam) if prediction == "noise" else Frame(p.sigma, p.alpha, -p.lam)


def _expm1(v: Coefficient) -> Coefficient:
    return torch.expm1(v) if isinstance(v, Tensor) else math.expm1(v)


def _scaled(c: Coefficient, v: State) -> State:
    """``c · v``; a float64 tensor coefficient is cast to ``v``'s dtype first (coefficients in float64, state in its own)."""
    return c.to(v.dtype) * v if isinstance(c, Tensor) and isinstance(v, Tensor) else c * v


def first_order(x: State, m0: State, p: Frame, q: Frame) -> State:
    r"""DPM-Solver-1 (DDIM): $x' = \tfrac{a'}{a}x - b'\,\mathrm{expm1}(u' - u)\,m_0$ (Lu et al. 2022, eq. 3.7)."""
    return _scaled(q.a / p.a, x) - _scaled(q.b * _expm1(q.u - p.u), m0)


def second_order(x: State, m0: State, m1: State, p: Frame, s1: Frame, q: Frame) -> State:
    r"""DPM-Solver-2 (Lu et al. 2022, Alg. 1): $x' = \text{first} - \tfrac{1}{2r_1}b'\,\mathrm{expm1}(h)\,(m_1 - m_0)$,
    $h = u' - u$, $r_1 = (u_{s_1} - u)/h$ (the stage's own ratio)."""
    h = q.u - p.u
    r1 = (s1.u - p.u) / h
    return first_order(x, m0, p, q) - _scaled(0.5 / r1 * q.b * _expm1(h), m1 - m0)


def third_stage(x: State, m0: State, m1: State, p: Frame, s1: Frame, s2: Frame) -> State:
    r"""DPM-Solver-3's second stage (Lu et al. 2022, Alg. 2): $u_2 = \text{first}(s_2) - \tfrac{r_2}{r_1}b_{s_2}
    (\tfrac{\mathrm{expm1}(h_2)}{h_2} - 1)(m_1 - m_0)$, $h_k = u_{s_k} - u$, $r_2/r_1 = h_2/h_1$."""
    h1, h2 = s1.u - p.u, s2.u - p.u
    return first_order(x, m0, p, s2) - _scaled(h2 / h1 * s2.b * (_expm1(h2) / h2 - 1), m1 - m0)


def third_order(x: State, m0: State, m2: State, p: Frame, s2: Frame, q: Frame) -> State:
    r"""DPM-Solver-3 (Lu et al. 2022, Alg. 2): $x' = \text{first} - \tfrac{1}{r_2}b'(\tfrac{\mathrm{expm1}(h)}{h} - 1)(m_2 - m_0)$,
    $r_2 = (u_{s_2} - u)/h$."""
    h = q.u - p.u
    r2 = (s2.u - p.u) / h
    return first_order(x, m0, p, q) - _scaled(q.b / r2 * (_expm1(h) / h - 1), m2 - m0)


_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(12)


def data_step(x: Form, d: Form, p: Point, q: Point) -> Form:
    r"""First-order step with the data prediction held constant (DDIM; DPM-Solver++ 1):
    $x' = \tfrac{\sigma'}{\sigma}x - \alpha'\,\mathrm{expm1}(-h)\,D$ (`first_order` in the data frame)."""
    return first_order(x, d, frame(p, "data"), frame(q, "data"))


def limit_step(b: ProgramBuilder, p: Point, q: Point) -> Form:
    r"""The step from a point where $\alpha = 0$ ($\lambda = -\infty$: $t = T$ of rectified flow and cosine), the limit of
    every integrator here: DDIM in the data frame, $x' = \tfrac{\sigma'}{\sigma}x + \alpha'D$ (`data_step` with
    $\mathrm{expm1}(-\infty) = -1$). A multistage method's stages collapse onto the start ($\lambda_i + rh = -\infty$)
    and a multistep method's extrapolation weights on it vanish, so neither adds anything in the limit; its local error
    is $O(\alpha'^2)$, since $D(\lambda) - D(-\infty) = O(e^\lambda)$ (one NFE: $D$ from the model, `no_data_prediction`)."""
    return data_step(b.state, b.evaluate(p, b.state), p, q)


def start_step(b: ProgramBuilder, sched: Schedule, p: Point, q: Point, order: int) -> Form:
    r"""The step from a point where $\alpha = 0$ with a local error $O(h^{\text{order}})$, so that a method of that order
    keeps it: `limit_step` (DDIM, local error $O(\alpha'^2)$) up to order 2; above, an explicit Runge–Kutta method in t
    of order ``order - 1`` (Heun, Kutta's third order) on the velocity $u = P x + Q D$ (`LinearSDE.velocity_coefficients`,
    finite at $\alpha = 0$; $D$ from the model there), 2 or 3 NFE.
    """
    if order <= 2:
        return limit_step(b, p, q)
    tableau = HEUN if order == 3 else RK3
    h = q.t - p.t
    times = [p.t + c * h for c in tableau.c]
    big_p, big_q = sched.sde.velocity_coefficients(torch.tensor(times, dtype=torch.float64))
    coeffs = zip(big_p.tolist(), big_q.tolist(), strict=True)
    ks: list[Form] = []
    for a_row, point, (big_p, big_q) in zip(tableau.a, sched.at_times(times), coeffs, strict=True):
        y = b.state
        for a, k in zip(a_row, ks, strict=False):
            y = y + (h * a) * k
        ks.append(big_p * y + big_q * b.evaluate(point, y))
    out = b.state
    for w, k in zip(tableau.b, ks, strict=True):
        out = out + (h * w) * k
    return out


def exp_weights(nodes: Sequence[float], lam: float, lam_next: float) -> list[float]:
    r"""$w_j = \int_\lambda^{\lambda'} e^{-(\lambda' - u)}\,\ell_j(u)\,du$ for the Lagrange basis $\ell_j$ of ``nodes``.

    So $\sum_j w_j D_j$ integrates the interpolant of the $D_j$ exactly (the multistep DPM-Solver++ of any
    order, Lu et al. 2022b §4 with exact $\varphi$-functions). 12-point Gauss–Legendre in float64: exact for the
    polynomial, and its error for the exponential is below 1e-14 for $h \le 4$; no $\varphi$-function cancellation.
    """
    half = 0.5 * (lam_next - lam)
    u = lam + half * (_NODES + 1.0)
    kernel = np.exp(u - lam_next) * _WEIGHTS * half
    weights = []
    for j, nj in enumerate(nodes):
        basis = np.ones_like(u)
        for k, nk in enumerate(nodes):
            if k != j:
                basis *= (u - nk) / (nj - nk)
        weights.append(float((kernel * basis).sum()))
    return weights


def _interpolated_step(x: Form, history: Sequence[tuple[Point, Form]], p: Point, q: Point) -> Form:
    r"""$x' = \tfrac{\sigma'}{\sigma}x + \alpha'\sum_j w_j D_j$ with `exp_weights` over the history's $\lambda$'s."""
    weights = exp_weights([pt.lam for pt, _ in history], p.lam, q.lam)
    out = (q.sigma / p.sigma) * x
    for w, (_, d) in zip(weights, history, strict=True):
        out = out + (q.alpha * w) * d
    return out


def ddim(sched: Schedule) -> list[IntervalProgram]:
    r"""Deterministic DDIM (Song et al. 2021a, eq. 12), the first-order exponential integrator: `data_step`.

    Equals Euler in $\tilde\sigma$ on $\tilde x$ (k-diffusion's ``sample_euler``). Order 1, one NFE per step.
    """
    b, pts = ProgramBuilder(), sched.points
    for p, q in zip(pts[:-1], pts[1:], strict=True):
        b.finish(data_step(b.state, b.evaluate(p, b.state), p, q))
    return b.programs


def dpm_solver_pp_2m(sched: Schedule, lower_order_final: bool = False) -> list[IntervalProgram]:
    r"""DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): $r = h_{i-1}/h_i$,
    $x' = \tfrac{\sigma'}{\sigma}x - \alpha'\,\mathrm{expm1}(-h)\,[(1 + \tfrac1{2r})D_i - \tfrac1{2r}D_{i-1}]$.

    The first step is first order (`data_step`), as in the paper and k-diffusion's ``sample_dpmpp_2m``;
    ``lower_order_final`` makes the last one first order too (diffusers' option). Order 2, one NFE per step.
    """
    b, pts = ProgramBuilder(), sched.points
    prev: Form | None = None
    n = len(pts) - 1
    for i, (p, q) in enumerate(zip(pts[:-1], pts[1:], strict=True)):
        d = b.evaluate(p, b.state)
        if prev is None or (lower_order_final and i == n - 1):
            b.finish(data_step(b.state, d, p, q))
        else:
            r = (p.lam - pts[i - 1].lam) / (q.lam - p.lam)
            b.finish(data_step(b.state, (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * prev, p, q))
        prev = d
    return b.programs


def dpm_solver_pp_3m(sched: Schedule, lower_order_final: bool = False) -> list[IntervalProgram]:
    r"""DPM-Solver++(3M): $D$ interpolated through the last three $\lambda$'s and integrated exactly (`exp_weights`).

    Start-up that keeps order 3: the usual start (a first-order, then a second-order step) leaves an $O(h^2)$
    global error. Here the first interval takes a stage at its $\lambda$-midpoint (DDIM to it, then the
    second-order exact-weight step through both nodes: local error $O(h^3)$), and the second interval
    already interpolates through three nodes (its start, the midpoint, the first grid point). So every local
    error is $O(h^4)$ except the first ($O(h^3)$): global order 3, for one extra NFE (NFE = steps + 1).
    ``lower_order_final``: the last two steps use two and one nodes (diffusers' option for few steps).
    """
    b, pts = ProgramBuilder(), sched.points
    n = len(pts) - 1
    history: list[tuple[Point, Form]] = []
    for i, (p, q) in enumerate(zip(pts[:-1], pts[1:], strict=True)):
        if p.alpha == 0.0:  # order 4 on Gaussian data (see above), so a start of that accuracy
            b.finish(start_step(b, sched, p, q, order=4))
            continue
        d0 = b.evaluate(p, b.state)
        if not history:
            m = sched.at_lambdas([0.5 * (p.lam + q.lam)])[0]
            dm = b.evaluate(m, data_step(b.state, d0, p, m))
            history = [(m, dm), (p, d0)]
            b.finish(_interpolated_step(b.state, history, p, q))
            continue
        history = [(p, d0), *history][:3]
        keep = 3 if not lower_order_final else min(3, n - i)
        b.finish(_interpolated_step(b.state, history[:keep], p, q))
    return b.programs


def dpm_solver_pp_2s(sched: Schedule) -> list[IntervalProgram]:
    r"""DPM-Solver++(2S) (Lu et al. 2022b, Alg. 1, $r = \tfrac12$): DDIM to $s = \lambda + h/2$, then
    $x' = \tfrac{\sigma'}{\sigma}x - \alpha'\,\mathrm{expm1}(-h)\,[(1 - \tfrac1{2r})D_i + \tfrac1{2r}D_s]$. Order 2, 2 NFE."""
    b, pts, r = ProgramBuilder(), sched.points, 0.5
    for p, q, s in zip(pts[:-1], pts[1:], sched.fractions(r), strict=True):
        if p.alpha == 0.0:
            b.finish(limit_step(b, p, q))
            continue
        d0 = b.evaluate(p, b.state)
        ds = b.evaluate(s, data_step(b.state, d0, p, s))
        b.finish(data_step(b.state, (1 - 1 / (2 * r)) * d0 + (1 / (2 * r)) * ds, p, q))
    return b.programs


def _eps(y: Form, d: Form, p: Point) -> Form:
    r"""Noise prediction $\epsilon = (y - \alpha D)/\sigma$ at ``p``."""
    return (y - p.alpha * d) / p.sigma


def dpm_solver_2(sched: Schedule) -> list[IntervalProgram]:
    r"""DPM-Solver-2 (Lu et al. 2022, Alg. 1, $r_1 = \tfrac12$), noise prediction: $u$ = DPM-Solver-1 to
    $s = \lambda + r_1 h$, then `second_order`. Order 2, 2 NFE per step."""
    b, pts = ProgramBuilder(), sched.points
    for p, q, s in zip(pts[:-1], pts[1:], sched.fractions(0.5), strict=True):
        if p.alpha == 0.0:
            b.finish(limit_step(b, p, q))
            continue
        fp, fq, fs = frame(p, "noise"), frame(q, "noise"), frame(s, "noise")
        e0 = _eps(b.state, b.evaluate(p, b.state), p)
        u = first_order(b.state, e0, fp, fs)
        b.finish(second_order(b.state, e0, _eps(u, b.evaluate(s, u), s), fp, fs, fq))
    return b.programs


def dpm_solver_3(sched: Schedule) -> list[IntervalProgram]:
    r"""DPM-Solver-3 (Lu et al. 2022, Alg. 2, $r_1 = \tfrac13$, $r_2 = \tfrac23$), noise prediction: DPM-Solver-1 to
    $s_1$, `third_stage` to $s_2$, `third_order` to the next grid point. Order 3, 3 NFE per step."""
    b, pts = ProgramBuilder(), sched.points
    for p, q, s1, s2 in zip(pts[:-1], pts[1:], sched.fractions(1 / 3), sched.fractions(2 / 3), strict=True):
        if p.alpha == 0.0:
            b.finish(start_step(b, sched, p, q, order=3))
            continue
        fp, fq, f1, f2 = (frame(v, "noise") for v in (p, q, s1, s2))
        e0 = _eps(b.state, b.evaluate(p, b.state), p)
        u1 = first_order(b.state, e0, fp, f1)
        u2 = third_stage(b.state, e0, _eps(u1, b.evaluate(s1, u1), s1), fp, f1, f2)
        b.finish(third_order(b.state, e0, _eps(u2, b.evaluate(s2, u2), s2), fp, f2, fq))
    return b.programs


def sde_dpm_solver_pp_2m(sched: Schedule, denoise: bool = True, eta: float = 1.0) -> list[IntervalProgram]:
    r"""SDE-DPM-Solver++(2M) (Lu et al. 2022b, App. B; k-diffusion's ``sample_dpmpp_2m_sde``, midpoint form):
    with $\eta h$ of noise, $x' = \tfrac{\sigma'}{\sigma}e^{-\eta h}x - \alpha'\,\mathrm{expm1}(-(1+\eta)h)
    \,[D_i + \tfrac1{2r}(D_i - D_{i-1})] + \sigma'\sqrt{-\mathrm{expm1}(-2\eta h)}\,z$ (first order on the first
    step; ``denoise``: no noise on the last). $\eta = 1$ is the reverse SDE, $\eta = 0$ DPM-Solver++(2M)'s flow
    with the midpoint correction. One NFE per step.
    """
    b, pts = ProgramBuilder(), sched.points
    prev: Form | None = None
    n = len(pts) - 1
    for i, (p, q) in enumerate(zip(pts[:-1], pts[1:], strict=True)):
        h = q.lam - p.lam
        d = b.evaluate(p, b.state)
        eta_h = eta * h if eta else 0.0  # η = 0 from λ = -∞ is the flow's DDIM step, not 0·∞
        c = -q.alpha * math.expm1(-h - eta_h)
        update = (q.sigma / p.sigma * math.exp(-eta_h)) * b.state + c * d
        if prev is not None:
            r = (p.lam - pts[i - 1].lam) / h
            update = update + (0.5 * c / r) * (d - prev)
        if eta and not (denoise and i == n - 1):
            update = update + (q.sigma * math.sqrt(-math.expm1(-2 * eta_h))) * b.noise()
        b.finish(update)
        prev = d
    return b.programs
