r"""EDM's deterministic sampler (Karras et al. 2022, Alg. 1): Heun in the noise level on every interval.

In $\tilde x = x/\alpha$ and $\tilde\sigma = \sigma/\alpha$ the flow is $d\tilde x/d\tilde\sigma = (\tilde x - D)/\tilde\sigma$
(Karras et al. 2022, eq. 4 with $s(t) = \alpha$). The grid ends at ``eps`` > 0, so every interval is a Heun step
(no final Euler step to $\tilde\sigma = 0$); this is k-diffusion's ``sample_heun`` without churn.
"""

from __future__ import annotations

from .programs import IntervalProgram, ProgramBuilder, Schedule

__all__ = ["edm_heun"]


def edm_heun(sched: Schedule) -> list[IntervalProgram]:
    r"""Heun on $d\tilde x/d\tilde\sigma = (\tilde x - D)/\tilde\sigma$: $\tilde x_2 = \tilde x + \Delta\tilde\sigma\,d$,
    $\tilde x' = \tilde x + \tfrac12\Delta\tilde\sigma\,(d + d_2)$ (Karras et al. 2022, Alg. 1). Order 2, 2 NFE."""
    b, pts = ProgramBuilder(), sched.points
    for p, q in zip(pts[:-1], pts[1:], strict=True):
        xt = b.state / p.alpha
        dt = q.level - p.level
        d = (xt - b.evaluate(p, b.state)) / p.level
        xt2 = xt + dt * d
        d2 = (xt2 - b.evaluate(q, q.alpha * xt2)) / q.level
        b.finish(q.alpha * (xt + (0.5 * dt) * (d + d2)))
    return b.programs
