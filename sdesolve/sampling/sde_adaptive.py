r"""Adaptive-step reverse-SDE sampling (Jolicoeur-Martineau et al. 2021): `sde_adaptive_sample`.

The solver (`sdesolve.solvers.gotta_go_fast`) chooses each sample's steps from an Euler–Maruyama / improved-Euler
pair sharing its Brownian increment, under a mixed tolerance, and reports its NFE like ``dopri5``; the run (start
state, seeds, noise, checked score) is prepared by `sdesolve.sampling.prepare`.

!!! warning "Low-dimensional data"
    Acceptance depends on the draw $z$ (the error estimate is $\propto h^{3/2}|z|$ per coordinate), so accepted
    increments are a biased selection unless the error norm averages many coordinates. Measured on
    N(0.3, 0.5²) data, VP, rtol = 0.05: variance error +130% in d = 1, +8% in d = 16, +0.5% in d = 256 (images:
    thousands of coordinates, the paper's setting). Tightening the tolerance does not remove it: +0.5% in
    d = 256 at rtol = 0.01 (VP and VE, 508 and 862 NFE). Use fixed-step samplers for low-dimensional problems.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .._utils import check_int, check_positive, check_tolerance
from ..sde import SDE, ScoreFn, require_linear, reverse_diffusion
from ..solvers.gotta_go_fast import adaptive_sde_solve
from .prepare import finish, prepare

__all__ = ["sde_adaptive_sample"]


def sde_adaptive_sample(
    sde: SDE,
    score_fn: ScoreFn,
    shape: Sequence[int],
    *,
    rtol: float = 0.05,
    atol: float = 0.0078,
    h_init: float = 0.01,
    eps: float = 1e-3,
    x_init: Tensor | None = None,
    generator: torch.Generator | None = None,
    seeds: Sequence[int] | Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    return_info: bool = False,
    check_finite: bool = True,
    diffusion: str | float | Callable[[Tensor], Tensor] = "g",
    max_iterations: int = 10_000,
) -> Tensor | tuple[Tensor, dict]:
    """Sample the reverse SDE from ``T`` to ``eps`` with adaptive per-sample steps ("Gotta go fast", Alg. 1).

    Args:
        sde: the forward SDE (a `LinearSDE`).
        score_fn: ``score_fn(x, t)`` → ∇ log p_t(x), shaped like ``x``; ``t`` is ``[B]``.
        shape: ``[B, *event]``.
        rtol: relative tolerance $\\varepsilon_{\\rm rel}$ (the paper's default 0.05).
        atol: absolute tolerance $\\varepsilon_{\\rm abs}$ (the paper's 0.0078 = 1/128, for data in [-1, 1]).
        h_init: first step size in t (the paper's 0.01).
        eps: final time (> 0); the last accepted step of every sample lands on it.
        x_init: start state at ``T`` (default: a prior sample); copied.
        generator: the only source of randomness (prior and increments).
        seeds: one integer per sample instead of ``generator``: row i's prior and draws depend only on
            ``seeds[i]``, so its path (steps, rejections, NFE) is the same in any batch.
        return_info: also return ``{"nfe", "iterations", "rejected"}`` (and a guided score's ``"model_calls"``,
            ``"model_rows"``).
        check_finite: raise ``FloatingPointError`` if the result is non-finite (one sync, after the solve).
        diffusion: the reverse SDE's $w$ (``"g"``: score_sde's; ``"sigma"``, a constant or ``w(t)``: the same
            marginals, `sdesolve.sde.reverse_diffusion`); finite at T where $\alpha(T) = 0$.
        max_iterations: a ``RuntimeError`` beyond this many iterations (naming where the samples stopped); the
            default 10 000 is about 100 times what a 2-D Gaussian needs at the default tolerances (93 iterations)
            and about 10 s on one CPU thread, so a stiff score fails in seconds instead of appearing to hang.

    Returns:
        Samples ``[B, *event]`` at ``eps`` (and the info dict with ``return_info``).
    """
    linear = require_linear(sde, "sde_adaptive_sample")
    eps = check_positive("eps", eps)
    if eps >= sde.T:
        raise ValueError(f"eps must be < T={sde.T}, got eps={eps!r}")
    h_init = check_positive("h_init", h_init)
    w = reverse_diffusion(linear, diffusion)
    top = torch.tensor([sde.T], dtype=torch.float64)
    if float(linear.mean_coeff(top)) == 0 and not bool(torch.isfinite(torch.as_tensor(w(top))).all()):
        raise ValueError(
            f"diffusion={diffusion!r} is infinite at T where alpha(T) = 0 ({sde!r}): the reverse SDE's first step "
            "is not defined; pass a finite one, e.g. diffusion='sigma'"
        )
    max_iterations = check_int("max_iterations", max_iterations)
    r = prepare(
        "sde_adaptive_sample", sde, score_fn, shape, grid=None, x_init=x_init, generator=generator, seeds=seeds,
        device=device, dtype=dtype,
    )  # fmt: skip
    # a tolerance under the state's resolution can never be met: the steps would shrink until max_iterations
    rtol, atol = check_tolerance("rtol", rtol, r.x.dtype), check_tolerance("atol", atol, r.x.dtype)
    y, info = adaptive_sde_solve(
        linear, r.score, r.x, sde.T, eps, rtol=rtol, atol=atol, h_init=h_init, noise=r.noise, w=w,
        max_iterations=max_iterations,
    )  # fmt: skip
    y = finish(y, r.dtype, check_finite, f"the adaptive reverse-SDE solver (T -> eps={eps})")
    return (y, {**info, **r.usage()}) if return_info else y
