r"""iPNDM (Zhang & Chen 2023, "Fast sampling of diffusion models with exponential integrator", §5 / App. B):
Adams–Bashforth in EDM's variables with a lower-order warm-up.

On $d\tilde x/d\tilde\sigma = d = (\tilde x - D)/\tilde\sigma$ (Karras et al. 2022, eq. 4), with the last
derivatives $d_i, d_{i-1}, \dots$ and $\Delta = \tilde\sigma' - \tilde\sigma$:
order 1: $\tilde x' = \tilde x + \Delta d_i$; 2: $+\Delta(3d_i - d_{i-1})/2$; 3: $+\Delta(23d_i - 16d_{i-1} + 5d_{i-2})/12$;
4: $+\Delta(55d_i - 59d_{i-1} + 37d_{i-2} - 9d_{i-3})/24$ (the uniform-step Adams–Bashforth weights, as in the
paper and k-diffusion's ``sample_ipndm``).
"""

from __future__ import annotations

from .dpm_solver import limit_step
from .programs import Form, IntervalProgram, ProgramBuilder, Schedule

__all__ = ["ADAMS_BASHFORTH", "ipndm"]

ADAMS_BASHFORTH = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)
"""Uniform-step Adams–Bashforth weights of orders 1–4, newest derivative first."""


def ipndm(sched: Schedule, max_order: int = 4) -> list[IntervalProgram]:
    r"""iPNDM: order $\min(i + 1, 4)$ Adams–Bashforth (i counted from the first finite $\tilde\sigma$) on interval $i$, the derivatives $d_j$ kept in the bank.

    The weights assume equal steps in $\tilde\sigma$; on a grid that is not uniform in $\tilde\sigma$ (logSNR,
    Karras) the extrapolation misses by $O(h\,\Delta h)$ per step, so the method is second order there however
    many derivatives it uses (measured: see `sdesolve.verify.few_step`). One NFE per step.
    """
    b, pts = ProgramBuilder(), sched.points
    history: list[Form] = []
    for p, q in zip(pts[:-1], pts[1:], strict=True):
        if p.alpha == 0.0:  # from σ̃ = ∞: the limit step (Euler in σ̃ becomes DDIM), the warm-up after it
            b.finish(limit_step(b, p, q))
            continue
        xt = b.state / p.alpha
        d = b.save((xt - b.evaluate(p, b.state)) / p.level)
        history = [d, *history][:max_order]
        weights = ADAMS_BASHFORTH[len(history) - 1]
        step = Form()
        for w, dj in zip(weights, history, strict=False):
            step = step + w * dj
        b.finish(q.alpha * (xt + (q.level - p.level) * step))
    return b.programs
