r"""The ODE methods by name, and their dispatch for `ode_sample` and `log_likelihood`.

Fixed-step Runge–Kutta (`FIXED`) and the few-step solvers (`FEW_STEP`: DDIM, DPM-Solver(++), UniPC, iPNDM, EDM's
Heun, written as step programs) run on the fused loop; ``dopri5`` is the in-house Dormand–Prince (`dopri5_solve`);
``scipy_rk45`` (score_sde's host path) and ``torchdiffeq_dopri5`` are kept for comparison (``benchmarks/``);
``dpm_solver_adaptive`` and ``dpm_solver_pp_adaptive`` are DPM-Solver's per-sample adaptive steps in λ
(`dpm_adaptive_solve`). `ODE_METHODS` and `FIXED_STEP` are live views of these tables, so a method added with
``FEW_STEP["name"] = FewStepMethod(program, order, source)`` is at once a method of `ode_sample`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import Tensor

from .dopri5 import dopri5_solve
from .dpm_solver import ddim, dpm_solver_2, dpm_solver_3, dpm_solver_pp_2m, dpm_solver_pp_2s, dpm_solver_pp_3m
from .dpm_solver_adaptive import DPM_ADAPTIVE, dpm_adaptive_solve
from .edm import edm_heun
from .fused import TimeTable
from .ipndm import ipndm
from .loop import run
from .programs import ProgramFn, ProgramKernel, Schedule, check_data_end
from .runge_kutta import FIXED, FlowTerm, RungeKuttaKernel, Term
from .unipc import unipc

__all__ = [
    "ODE_METHODS",
    "FIXED",
    "FIXED_STEP",
    "FEW_STEP",
    "FewStepMethod",
    "LOWER_ORDER_FINAL",
    "MethodNames",
    "few_step_solve",
    "integrate",
]


@dataclass(frozen=True)
class FewStepMethod:
    """A few-step solver: ``program(schedule)`` builds its interval programs; ``order`` is its declared order
    (asserted by the tests and ``sdesolve verify`` against the exact Gaussian flow map); ``source`` where it comes
    from."""

    program: ProgramFn
    order: int
    source: str


FEW_STEP: dict[str, FewStepMethod] = {
    "ddim": FewStepMethod(ddim, 1, "Song et al. 2021a, eq. 12"),
    "edm_heun": FewStepMethod(edm_heun, 2, "Karras et al. 2022, Alg. 1"),
    "dpm_solver_2": FewStepMethod(dpm_solver_2, 2, "Lu et al. 2022, Alg. 1"),
    "dpm_solver_3": FewStepMethod(dpm_solver_3, 3, "Lu et al. 2022, Alg. 2"),
    "dpm_solver_pp_2s": FewStepMethod(dpm_solver_pp_2s, 2, "Lu et al. 2022b, Alg. 1"),
    "dpm_solver_pp_2m": FewStepMethod(dpm_solver_pp_2m, 2, "Lu et al. 2022b, Alg. 2"),
    "dpm_solver_pp_3m": FewStepMethod(dpm_solver_pp_3m, 3, "Lu et al. 2022b, §4 (exact weights, order-3 start)"),
    "unipc_2": FewStepMethod(partial(unipc, order=2), 3, "Zhao et al. 2023, Alg. 2-3 (bh2)"),
    "unipc_3": FewStepMethod(partial(unipc, order=3), 4, "Zhao et al. 2023, Alg. 2-3 (bh2)"),
    # 4th-order Adams–Bashforth weights, but for equal σ̃ steps: second order on the logSNR/Karras grids
    "ipndm": FewStepMethod(ipndm, 2, "Zhang & Chen 2023, App. B"),
}
"""The few-step ODE solvers by name (``ode_sample(method=..., steps=N | grid=...)``); add your own by assignment."""

LOWER_ORDER_FINAL = ("dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_2", "unipc_3")
"""The multistep methods with diffusers' ``lower_order_final`` option (lower orders on the last intervals)."""

_ADAPTIVE = ("dopri5", "scipy_rk45", "torchdiffeq_dopri5")


class MethodNames(Sequence):
    """A read-only, live sequence of method names drawn from tables that may grow (`FEW_STEP`, `FIXED`, ...)."""

    def __init__(self, *parts: Callable[[], Sequence[str]]) -> None:
        self._parts = parts

    def _names(self) -> tuple[str, ...]:
        return tuple(name for part in self._parts for name in part())

    def __getitem__(self, i):
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __repr__(self) -> str:
        return repr(self._names())


ODE_METHODS = MethodNames(
    lambda: _ADAPTIVE[:1],
    lambda: tuple(FIXED),
    lambda: _ADAPTIVE[1:],
    lambda: tuple(FEW_STEP),
    lambda: tuple(DPM_ADAPTIVE),
)
"""Every ``ode_sample`` method: dopri5, the Runge–Kutta methods, the comparison solvers, the few-step solvers, the
adaptive DPM-Solvers (a live view: methods added to `FEW_STEP` appear here)."""
FIXED_STEP = MethodNames(lambda: tuple(FIXED), lambda: tuple(FEW_STEP))
"""Methods that run on a fixed grid (``steps=`` or ``grid=``): Runge–Kutta and the few-step solvers."""


def few_step_solve(
    method: str,
    term: FlowTerm,
    x: Tensor,
    times: TimeTable,
    check_finite: bool = True,
    lower_order_final: bool = False,
    graph: bool = False,
) -> tuple[Tensor, int]:
    """Run ``method`` over ``times`` on the fused loop (``x`` is not modified; ``graph``: as one CUDA graph);
    return ``(y, NFE)``."""
    if not isinstance(term, FlowTerm):
        raise TypeError(f"method={method!r} integrates the probability flow (a FlowTerm), got {type(term).__name__}")
    program = FEW_STEP[method].program
    if lower_order_final:
        if method not in LOWER_ORDER_FINAL:
            raise ValueError(f"lower_order_final applies to {', '.join(LOWER_ORDER_FINAL)}, not method={method!r}")
        program = partial(program, lower_order_final=True)
    check_data_end(term.sde, times, method, ("ddim",))
    kernel = ProgramKernel(program(Schedule(term.sde, times)), term.score_fn, times, x)
    return run(kernel, x.clone(), times, check_finite=check_finite, desc=method, graph=graph), kernel.total_nfe


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
            raise ValueError(f"execution='compile' is not supported by the few-step method {method!r}; use 'eager'")
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
