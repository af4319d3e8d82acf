r"""The few-step ODE solvers by name, for ``ode_sample(method=..., steps=N | grid=...)``.

Each entry gives the program builder (`sdesolve.solvers.programs`), the order it declares (asserted by the
tests and ``sdesolve verify`` against the exact Gaussian flow map) and where it comes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from torch import Tensor

from .edm import edm_heun
from .exponential import ddim, dpm_solver_2, dpm_solver_3, dpm_solver_pp_2m, dpm_solver_pp_2s, dpm_solver_pp_3m
from .fused import TimeTable
from .ipndm import ipndm
from .loop import run
from .programs import ProgramFn, ProgramKernel, Schedule
from .runge_kutta import FlowTerm
from .unipc import unipc

__all__ = ["FewStepMethod", "FEW_STEP", "LOWER_ORDER_FINAL", "few_step_solve"]


@dataclass(frozen=True)
class FewStepMethod:
    """A few-step solver: ``program(schedule)`` builds its interval programs; ``order`` is its declared order."""

    program: ProgramFn
    order: int
    source: str


FEW_STEP = {
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


LOWER_ORDER_FINAL = ("dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_2", "unipc_3")
"""The multistep methods with diffusers' ``lower_order_final`` option (lower orders on the last intervals)."""


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
    kernel = ProgramKernel(program(Schedule(term.sde, times)), term.score_fn, times, x)
    return run(kernel, x.clone(), times, check_finite=check_finite, desc=method, graph=graph), kernel.total_nfe
