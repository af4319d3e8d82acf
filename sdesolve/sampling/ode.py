r"""Probability-flow ODE sampling (Song et al. 2021, §4.3): `ode_sample`, fixed-step on the fused loop or adaptive.

The run is prepared by `sdesolve.sampling.prepare`; the method is dispatched by `sdesolve.solvers.ode.integrate`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._utils import check_choice, check_positive, check_tolerance
from ..sde import SDE, ScoreFn, require_linear
from ..solvers.ode import FIXED_STEP, ODE_METHODS, integrate
from ..solvers.runge_kutta import FlowTerm
from .prepare import execution_mode, finish, fixed_grid, prepare

__all__ = ["ode_sample"]


def ode_sample(
    sde: SDE,
    score_fn: ScoreFn,
    shape: Sequence[int],
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int | None = None,
    grid: str | Tensor | None = None,
    eps: float = 1e-3,
    lower_order_final: bool = False,
    x_init: Tensor | None = None,
    generator: torch.Generator | None = None,
    seeds: Sequence[int] | Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    execution: str = "eager",
    check_finite: bool = True,
    return_info: bool = False,
    **legacy,
) -> Tensor | tuple[Tensor, dict]:
    r"""Sample by integrating the probability-flow ODE $\dot x = f - \tfrac12 g^2\nabla\log p_t$ from T to eps.

    Args:
        sde: the forward SDE (a `LinearSDE`).
        score_fn: ``score_fn(x, t)`` → ∇ log p_t(x), shaped like ``x``.
        shape: ``[B, *event]``.
        method: ``"dopri5"`` (adaptive Dormand–Prince on device), ``"euler"``, ``"heun"``, ``"rk4"`` (fixed
            steps on ``grid``/``steps``, on the fused loop), ``"scipy_rk45"`` (score_sde's host path) or
            ``"torchdiffeq_dopri5"`` (both kept for comparison), a few-step solver on the fused loop
            (`sdesolve.solvers.ode.FEW_STEP`: ``"ddim"``, ``"edm_heun"``, ``"dpm_solver_pp_2m"``, ...), or
            DPM-Solver's adaptive step size with per-sample steps in λ (``"dpm_solver_adaptive"``: DPM-Solver-23,
            noise prediction; ``"dpm_solver_pp_adaptive"``: in data prediction). `ODE_METHODS` lists them all.
        rtol: relative tolerance of the adaptive methods (DPM-Solver's paper uses 0.05 with atol = 0.0078 for
            images in [-1, 1]; the 1e-5 default is dopri5's).
        atol: absolute tolerance of the adaptive methods.
        steps: number of intervals of the fixed-step grid (as in `pc_sample`).
        grid: grid name or decreasing 1-D tensor of times for the fixed-step methods (as in `pc_sample`); fixed-step
            methods need ``steps`` or a grid tensor.
        eps: final time (> 0).
        lower_order_final: lower orders on the last intervals of ``dpm_solver_pp_2m``/``_3m`` and ``unipc_2``/``_3``
            (diffusers' option for very few steps; a ``ValueError`` for other methods).
        x_init: start state at ``T`` (default: a prior sample).
        generator: source of the prior sample.
        seeds: one integer per sample instead of ``generator``: row i's prior draw depends only on ``seeds[i]``
            (fixed-step methods and the per-sample DPM-Solver methods then give the same row in any batch;
            dopri5 and scipy choose their steps for the whole batch, so a row agrees across batches to the
            solver tolerance).
        device: device of a prior draw.
        dtype: dtype of the samples.
        execution: ``"eager"``, ``"compile"`` or ``"cuda_graph"`` for the fixed-step methods (as in `pc_sample`).
        check_finite: raise ``FloatingPointError`` if the result is non-finite (naming the step for fixed steps).
        return_info: also return ``{"nfe", "method"}`` (and ``"grid"`` for fixed-step methods; for the
            per-sample DPM-Solver methods also ``"nfe_per_sample"``, ``"accepted"``, ``"rejected"`` (``[B]``) and
            ``"iterations"``: ``"nfe"`` counts batched score calls, the largest per-sample NFE); a guided score adds
            ``"model_calls"`` and ``"model_rows"`` (`sdesolve.guidance.GuidedScore`).

    Returns:
        Samples ``[B, *event]`` at ``eps`` (and the info dict with ``return_info``).
    """
    check_choice("method", method, ODE_METHODS)
    linear = require_linear(sde, "the probability flow (ode_sample)")
    eps = check_positive("eps", eps)
    if eps >= sde.T:  # dopri5 would return x_init, scipy integrate past T
        raise ValueError(f"eps must be < T={sde.T}, got eps={eps!r}")
    execution = execution_mode("ode_sample", execution, legacy)
    if execution != "eager" and method not in FIXED_STEP:  # the adaptive methods would silently run eagerly
        raise ValueError(f"execution={execution!r} applies to the fixed-step methods, not method={method!r}")
    r = prepare(
        "ode_sample", sde, score_fn, shape, grid=fixed_grid(sde, method, steps, grid, eps), x_init=x_init,
        generator=generator, seeds=seeds, device=device, dtype=dtype, execution=execution, noisy=False,
    )  # fmt: skip
    if method in FIXED_STEP:
        rtol, atol = check_positive("rtol", rtol), check_positive("atol", atol)
    else:  # a tolerance under the state's resolution can never be met: dopri5 would creep to max_steps
        rtol, atol = check_tolerance("rtol", rtol, r.x.dtype), check_tolerance("atol", atol, r.x.dtype)
    info: dict = {}
    with torch.no_grad():
        y, nfe = integrate(
            FlowTerm(linear, r.score), r.x, method=method, t0=sde.T, t1=eps, rtol=rtol, atol=atol, times=r.times,
            check_finite=check_finite, compile=r.compile, lower_order_final=bool(lower_order_final), graph=r.graph,
            info=info,
        )  # fmt: skip
    y = finish(y, r.dtype, check_finite and r.times is None, f"the probability-flow ODE ({method}, T -> eps={eps})")
    info = {"nfe": nfe, "method": method, **({} if r.times is None else {"grid": r.times.device}), **info, **r.usage()}
    return (y, info) if return_info else y
