r"""EDM's samplers (Karras et al. 2022, Alg. 1 and 2): Heun in the noise level on every interval, with churn.

In $\tilde x = x/\alpha$ and $\tilde\sigma = \sigma/\alpha$ the flow is $d\tilde x/d\tilde\sigma = (\tilde x - D)/\tilde\sigma$
(Karras et al. 2022, eq. 4 with $s(t) = \alpha$). The grid ends at ``eps`` > 0, so every interval is a Heun step
(no final Euler step to $\tilde\sigma = 0$); this is k-diffusion's ``sample_heun`` without churn. From
$\tilde\sigma = \infty$ (where $\alpha(T) = 0$) the first step is Euler's limit there, DDIM (`limit_step`).
"""

from __future__ import annotations

import math

from .dpm_solver import limit_step
from .programs import Form, IntervalProgram, Point, ProgramBuilder, Schedule

__all__ = ["edm_heun", "edm_stochastic", "heun_step"]


def edm_heun(sched: Schedule) -> list[IntervalProgram]:
    r"""Heun on $d\tilde x/d\tilde\sigma = (\tilde x - D)/\tilde\sigma$: $\tilde x_2 = \tilde x + \Delta\tilde\sigma\,d$,
    $\tilde x' = \tilde x + \tfrac12\Delta\tilde\sigma\,(d + d_2)$ (Karras et al. 2022, Alg. 1). Order 2, 2 NFE."""
    b, pts = ProgramBuilder(), sched.points
    for p, q in zip(pts[:-1], pts[1:], strict=True):
        b.finish(limit_step(b, p, q) if p.alpha == 0.0 else heun_step(b, b.state / p.alpha, p, q))
    return b.programs


def heun_step(b: ProgramBuilder, xt: Form, p: Point, q: Point) -> Form:
    r"""The Heun step from $(\tilde x, \tilde\sigma_p)$ to $\tilde\sigma_q$, returned in $x = \alpha\tilde x$."""
    dt = q.level - p.level
    d = (xt - b.evaluate(p, p.alpha * xt)) / p.level
    xt2 = xt + dt * d
    d2 = (xt2 - b.evaluate(q, q.alpha * xt2)) / q.level
    return q.alpha * (xt + (0.5 * dt) * (d + d2))


def edm_stochastic(
    sched: Schedule,
    churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float | None = None,
    s_noise: float = 1.0,
) -> list[IntervalProgram]:
    r"""EDM's stochastic sampler (Karras et al. 2022, Alg. 2; k-diffusion's ``sample_heun`` with ``s_churn``).

    On interval i with $\tilde\sigma_i \in [s_{t\min}, s_{t\max}]$: $\gamma = \min(\text{churn}/N, \sqrt2 - 1)$,
    $\hat\sigma = (1 + \gamma)\tilde\sigma_i$, $\hat x = \tilde x + s_{\rm noise}\sqrt{\hat\sigma^2 - \tilde\sigma_i^2}\,z$, then
    the Heun step of `edm_heun` from $\hat\sigma$ to $\tilde\sigma_{i+1}$. ``s_tmax=None``: the largest level whose
    $\hat\sigma$ stays within $\tilde\sigma(T)$ (the score is never asked beyond T); an explicit ``s_tmax`` that
    would need it is a ``ValueError``.
    """
    b, pts = ProgramBuilder(), sched.points
    n, top = len(pts) - 1, pts[0].level
    gamma_max = min(churn / n, math.sqrt(2.0) - 1.0)
    limit = top / (1 + gamma_max) if s_tmax is None else s_tmax
    churned = [p.level * (1 + gamma_max) if s_tmin <= p.level <= limit and gamma_max > 0 else p.level for p in pts[:-1]]
    if max(churned, default=0.0) > top * (1 + 1e-12):
        raise ValueError(
            f"s_tmax={s_tmax!r} churns above the noise level at T ({top:.6g}): the score is not defined beyond T; "
            f"use s_tmax <= {top / (1 + gamma_max):.6g} or s_tmax=None"
        )
    hats = sched.at_lambdas([-math.log(level) for level in churned])
    for p, q, hat, level in zip(pts[:-1], pts[1:], hats, churned, strict=True):
        if p.alpha == 0.0:  # σ̃ = ∞: nothing to churn, the limit step
            b.finish(limit_step(b, p, q))
            continue
        xt = b.state / p.alpha
        if level == p.level:
            b.finish(heun_step(b, xt, p, q))
        else:
            b.finish(heun_step(b, xt + (s_noise * math.sqrt(hat.level**2 - p.level**2)) * b.noise(), hat, q))
    return b.programs
