r"""ODE method dispatch for `ode_sample` and `log_likelihood`: fixed-step RK on the loop, adaptive solvers.

``dopri5`` is the in-house Dormand–Prince (`dopri5_solve`); ``scipy_rk45`` (score_sde's host path) and
``torchdiffeq_dopri5`` are kept for comparison (``benchmarks/``); ``dpm_solver_adaptive`` and
``dpm_solver_pp_adaptive`` are DPM-Solver's per-sample adaptive steps in λ (`dpm_adaptive_solve`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .dopri5 import dopri5_solve
from .dpm_adaptive import DPM_ADAPTIVE, dpm_adaptive_solve
from .few_step import FEW_STEP, LOWER_ORDER_FINAL, few_step_solve
from .fused import TimeTable
from .loop import run
from .runge_kutta import FIXED, FlowTerm, RungeKuttaKernel, Term

__all__ = ["ODE_METHODS", "FIXED", "FIXED_STEP", "integrate"]

ODE_METHODS = ("dopri5", "euler", "heun", "rk4", "scipy_rk45", "torchdiffeq_dopri5", *FEW_STEP, *DPM_ADAPTIVE)
FIXED_STEP = (*FIXED, *FEW_STEP)
"""Methods that run on a fixed grid (``steps=`` or ``grid=``): Runge–Kutta and the few-step solvers."""


def _scipy_rk45(term: Term, x: Tensor, t0: float, t1: float, rtol: float, atol: float) -> tuple[Tensor, int]:
    """score_sde's host path: scipy RK45 on a flat float64 copy; one device→host copy per evaluation."""
    from scipy.integrate import solve_ivp

    def rhs(t, y):
        f = term(t, torch.from_numpy(y).to(x).reshape(x.shape)).detach().cpu().double().numpy().ravel()
        if not np.isfinite(f).all():  # on the host already; scipy itself would shrink the step forever
            raise FloatingPointError(f"non-finite probability-flow drift at t={t!r} (scipy_rk45)")
        return f

    sol = solve_ivp(rhs, (t0, t1), x.detach().cpu().double().numpy().ravel(), rtol=rtol, atol=atol, method="RK45")
    if not sol.success:
        raise RuntimeError(f"scipy RK45 failed: {sol.message}")
    return torch.from_numpy(np.ascontiguousarray(sol.y[:, -1])).to(x).reshape(x.shape), int(sol.nfev)


def _torchdiffeq_dopri5(term: Term, x: Tensor, t0: float, t1: float, rtol: float, atol: float) -> tuple[Tensor, int]:
    """torchdiffeq's dopri5, integrated in increasing time s = t0 - t (its decreasing-time path underflows)."""
    from torchdiffeq import odeint

    nfe = 0
    sign = 1.0 if t1 >= t0 else -1.0

    def counted(s, y):
        nonlocal nfe
        nfe += 1
        return sign * term(t0 + sign * s, y)

    ts = torch.tensor([0.0, abs(t1 - t0)], dtype=x.dtype, device=x.device)
    try:  # step_t: land on the end time (its default steps past it and interpolates, evaluating outside [eps, T])
        y = odeint(counted, x, ts, rtol=rtol, atol=atol, method="dopri5", options={"step_t": ts})[-1]
    except AssertionError as err:  # torchdiffeq's bare "underflow in dt": a non-finite error estimate
        raise FloatingPointError(f"non-finite state in torchdiffeq_dopri5 ({err})") from None
    return y, nfe


def integrate(
    term: Term,
    x: Tensor,
    *,
    method: str,
    t0: float,
    t1: float,
    rtol: float,
    atol: float,
    times: TimeTable | None = None,
    check_finite: bool = True,
    compile: bool = False,
    lower_order_final: bool = False,
    graph: bool = False,
    info: dict | None = None,
) -> tuple[Tensor, int]:
    """Integrate ``term`` from ``t0`` to ``t1`` (adaptive) or over ``times`` (fixed); return ``(y, NFE)``.

    Fixed-step methods run on the fused loop (``x`` is not modified; its copy is), naming the first
    non-finite step with ``check_finite``, captured as one CUDA graph with ``graph``. ``info``, if given,
    receives a per-sample method's extra counts (``nfe_per_sample``, ``accepted``, ``rejected``: ``[B]``
    tensors; ``iterations``).
    """
    if lower_order_final and method not in LOWER_ORDER_FINAL:
        raise ValueError(f"lower_order_final applies to {', '.join(LOWER_ORDER_FINAL)}, not method={method!r}")
    if method in FIXED:
        kernel = RungeKuttaKernel(FIXED[method], term, times, x, compile=compile)
        y = run(kernel, x.clone(), times, check_finite=check_finite, desc=method, graph=graph)
        return y, kernel.nfe * (len(times) - 1)
    if method in FEW_STEP:
        if compile:
            raise ValueError(f"compile=True is not supported by the few-step method {method!r}; use compile=False")
        return few_step_solve(method, term, x, times, check_finite, lower_order_final, graph)
    if method == "dopri5":
        y, nfe, _ = dopri5_solve(term, x, t0, t1, rtol=rtol, atol=atol)
        return y, nfe
    if method in DPM_ADAPTIVE:
        if not isinstance(term, FlowTerm):
            raise TypeError(
                f"method={method!r} steps the probability flow in log-SNR (a FlowTerm), not {type(term).__name__} "
                "(log_likelihood's augmented flow): use dopri5 or a fixed-step method there"
            )
        order, prediction = DPM_ADAPTIVE[method]
        y, extra = dpm_adaptive_solve(
            term.sde, term.score_fn, x, t0, t1, order=order, prediction=prediction, rtol=rtol, atol=atol,
            check_finite=check_finite,
        )  # fmt: skip
        if info is not None:
            info.update({k: v for k, v in extra.items() if k != "nfe"})
        return y, extra["nfe"]
    solver = _scipy_rk45 if method == "scipy_rk45" else _torchdiffeq_dopri5
    return solver(term, x, t0, t1, rtol, atol)
