r"""EDM's deterministic sampler (Karras et al. 2022, Alg. 1): Heun in the noise level on every interval.

In $\tilde x = x/\alpha$ and $\tilde\sigma = \sigma/\alpha$ the flow is $d\tilde x/d\tilde\sigma = (\tilde x - D)/\tilde\sigma$
(Karras et al. 2022, eq. 4 with $s(t) = \alpha$). The grid ends at ``eps`` > 0, so every interval is a Heun step
(no final Euler step to $\tilde\sigma = 0$); this is k-diffusion's ``sample_heun`` without churn.
"""

from __future__ import annotations

import math

from .programs import Form, IntervalProgram, Point, ProgramBuilder, Schedule

__all__ = ["edm_heun", "edm_stochastic", "restart"]


def edm_heun(sched: Schedule) -> list[IntervalProgram]:
    r"""Heun on $d\tilde x/d\tilde\sigma = (\tilde x - D)/\tilde\sigma$: $\tilde x_2 = \tilde x + \Delta\tilde\sigma\,d$,
    $\tilde x' = \tilde x + \tfrac12\Delta\tilde\sigma\,(d + d_2)$ (Karras et al. 2022, Alg. 1). Order 2, 2 NFE."""
    b, pts = ProgramBuilder(), sched.points
    for p, q in zip(pts[:-1], pts[1:], strict=True):
        b.finish(_heun(b, b.state / p.alpha, p, q))
    return b.programs


def _heun(b: ProgramBuilder, xt: Form, p: Point, q: Point) -> Form:
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
        xt = b.state / p.alpha
        if level == p.level:
            b.finish(_heun(b, xt, p, q))
        else:
            b.finish(_heun(b, xt + (s_noise * math.sqrt(hat.level**2 - p.level**2)) * b.noise(), hat, q))
    return b.programs


def restart(
    sched: Schedule, s_min: float = 0.06, s_max: float = 0.30, restarts: int = 2, inner_steps: int = 4
) -> list[IntervalProgram]:
    r"""Restart sampling (Xu et al. 2023, Alg. 1) on EDM's Heun: once the grid reaches a noise level
    $\tilde\sigma_j \le$ ``s_min``, ``restarts`` times: forward-noise exactly to ``s_max``,
    $\tilde x \leftarrow \tilde x + \sqrt{s_{\max}^2 - \tilde\sigma_j^2}\,z$ (the forward marginal in $\tilde x$), and
    solve back to $\tilde\sigma_j$ by ``inner_steps`` Heun steps geometric in $\tilde\sigma$. The added noise
    contracts the errors accumulated above $\tilde\sigma_j$; with an exact solver the law is left unchanged.
    NFE = 2 per grid step + 2 · restarts · inner_steps.

    Against the authors' code (``Newbeeer/diffusion_restart_sampling``, ``restart_sampler``): the noise,
    $\sqrt{s_{\max}^2 - \tilde\sigma_j^2}$ from the grid level reached, and the place (after the main step that
    lands on $\tilde\sigma_j$) are theirs. Theirs lands on the grid level nearest $t_{\min}$ (ours: the first
    $\le$ ``s_min``), spaces the inner grid by EDM's $\rho = 7$ rule with $N_{\rm Restart}$ points
    ($N_{\rm Restart} - 1$ Heun steps; ours: geometric, i.e. uniform in $\lambda$ like the ``logsnr`` grid, with
    ``inner_steps`` steps), scales the re-noising by $S_{\rm noise}$ = 1.003 and churns the inner steps
    ($\gamma$ = 0.05; both against a network's bias, neither needed with an exact score), allows several windows,
    and ends the main grid at $\tilde\sigma = 0$ with an Euler step (ours ends at ``eps``).
    """
    b, pts = ProgramBuilder(), sched.points
    if s_max > pts[0].level or s_min >= s_max:
        raise ValueError(
            f"restart window must satisfy s_min < s_max <= noise level at T ({pts[0].level:.6g}); "
            f"got s_min={s_min!r}, s_max={s_max!r}"
        )
    land = next((j for j, p in enumerate(pts[1:]) if p.level <= s_min), None)
    for j, (p, q) in enumerate(zip(pts[:-1], pts[1:], strict=True)):
        x = _heun(b, b.state / p.alpha, p, q)
        if j == land:
            ratio = (q.level / s_max) ** (1 / inner_steps)
            inner = sched.at_lambdas([-math.log(s_max * ratio**k) for k in range(inner_steps)])
            for _ in range(restarts):
                xt = b.save(x / q.alpha + math.sqrt(s_max**2 - q.level**2) * b.noise())
                for lo, hi in zip(inner, [*inner[1:], q], strict=True):
                    xt = b.save(_heun(b, xt, lo, hi) / hi.alpha)
                x = q.alpha * xt
        b.finish(x)
    return b.programs
