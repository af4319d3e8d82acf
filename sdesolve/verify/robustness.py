r"""The robustness matrix: every method × schedule × step count × dtype on the exact Gaussian.

The bug class of diffusers #9007, #6949, #10266 and Wan2.1 #108 (NaN at one step count, a wrong NFE, a grid that
repeats a time, half precision that overflows): each cell runs one sampler once and records whether the output is
finite, whether ``info["nfe"]`` equals the score calls counted around the score (data predictions included),
whether the grid is strictly decreasing, and, for deterministic methods, the exact error at ``eps``. A cell whose
configuration is refused up front with a ``ValueError`` (e.g. a diffusion that is infinite at $T$) is recorded as
refused with its message: a clear error is an allowed outcome, a wrong answer is not.

Deterministic fixed-step solvers are affine in their start on an affine score, so two probe rows give the exact
output law's mean and variance (as in `benchmarks.few_step`); stochastic predictors are checked for finiteness,
NFE and grid only (their weak orders are measured by `sdesolve.verify.orders`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..predictors import PREDICTORS
from ..problems import gaussian_data
from ..sampling import ode_sample, pc_sample
from ..sde import SDES, get_sde
from ..solvers.ode import FIXED_STEP
from .few_step import affine_law_error

__all__ = ["Cell", "METHODS", "STEPS", "DTYPES", "run_cell", "robustness_matrix", "error_falls", "summary_table"]

METHODS: tuple[tuple[str, str], ...] = tuple(("ode", m) for m in FIXED_STEP) + tuple(
    ("pc", p) for p in PREDICTORS if p != "none"
)
"""(entry point, name): every fixed-step ODE method (`ode_sample`) and every predictor (`pc_sample`, no corrector)."""
STEPS: tuple[int, ...] = (*range(1, 65), 100, 250, 1000)
DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)
EPS = {"edm": 0.002}
"""Final times: EDM samples down to its σ_min, every other schedule to t = 1e-3."""


@dataclass(frozen=True)
class Cell:
    """One run: ``outcome`` is ``"ok"``, ``"refused"`` (a ``ValueError`` before any step; ``message`` says why) or
    ``"failed"`` (``message`` says which check); ``error`` is the exact max(|var err|, |mean err|/std) at eps for
    deterministic methods, else None."""

    kind: str
    method: str
    sde: str
    steps: int
    dtype: str
    outcome: str
    nfe: int | None = None
    calls: int | None = None
    error: float | None = None
    message: str = ""


def _counted(exact, dtype: torch.dtype) -> tuple[object, list[int]]:
    """The exact score as a model seen in ``dtype`` (computed in float64), counting its calls and data predictions."""
    calls = [0]

    def score(x: Tensor, t) -> Tensor:
        calls[0] += 1
        return exact(x.double(), torch.as_tensor(t).double()).to(x.dtype)

    def data_prediction(x: Tensor, t) -> Tensor:
        calls[0] += 1
        return exact.data_prediction(x.double(), torch.as_tensor(t).double()).to(x.dtype)

    score.data_prediction = data_prediction
    return score, calls


def run_cell(kind: str, method: str, sde_name: str, steps: int, dtype: torch.dtype, batch: int = 16) -> Cell:
    """Run one cell of the matrix (see the module docstring)."""
    sde, eps = get_sde(sde_name), EPS.get(sde_name, 1e-3)
    data = gaussian_data(2, dtype=torch.float64)
    score, calls = _counted(data.score_fn(sde), dtype)
    deterministic = kind == "ode"
    x_init = None
    if deterministic:  # probe rows 0 and 1 (prior scale), then the batch
        x_init = torch.zeros(batch, 2, dtype=dtype)
        x_init[1] = 1.0
    args = {"steps": steps, "eps": eps, "dtype": dtype, "return_info": True}
    common = {
        "kind": kind,
        "method": method,
        "sde": sde_name,
        "steps": steps,
        "dtype": str(dtype).removeprefix("torch."),
    }
    try:
        if deterministic:
            x, info = ode_sample(sde, score, (batch, 2), method=method, x_init=x_init, **args)
        else:
            gen = torch.Generator().manual_seed(0)
            x, info = pc_sample(sde, score, (batch, 2), predictor=method, corrector="none", generator=gen, **args)
    except ValueError as err:
        return Cell(**common, outcome="refused", message=str(err).splitlines()[0])
    except FloatingPointError as err:  # the entry point's own finiteness check
        return Cell(**common, outcome="failed", nfe=None, calls=calls[0], message=str(err).splitlines()[0])
    grid = info["grid"]
    failures = []
    if not bool(torch.isfinite(x).all()):
        failures.append("non-finite output")
    if info["nfe"] != calls[0]:
        failures.append(f"nfe {info['nfe']} != {calls[0]} counted calls")
    if not bool((grid[1:] < grid[:-1]).all()):
        failures.append("grid not strictly decreasing")
    exact = data.marginal(sde, sde.T), data.marginal(sde, eps)
    error = affine_law_error(x.double(), *exact) if deterministic and not failures else None
    outcome = "failed" if failures else "ok"
    return Cell(**common, outcome=outcome, nfe=info["nfe"], calls=calls[0], error=error, message="; ".join(failures))


def robustness_matrix(
    methods: Iterable[tuple[str, str]] = METHODS,
    schedules: Sequence[str] = tuple(SDES),
    steps: Sequence[int] = STEPS,
    dtypes: Sequence[torch.dtype] = DTYPES,
) -> list[Cell]:
    """Every cell of methods × schedules × steps × dtypes (`run_cell`)."""
    return [
        run_cell(kind, name, sde, n, dtype)
        for kind, name in methods
        for sde in schedules
        for dtype in dtypes
        for n in steps
    ]


def error_falls(cells: Sequence[Cell], coarse: int = 16, fine: int = 1000) -> bool:
    """For one (method, schedule, dtype) row: the error at ``fine`` steps is below the error at ``coarse`` steps,
    unless the coarse error is already at the dtype's resolution, where the fine one need only stay within its
    rounding: each evaluation rounds at relative ``finfo.eps`` of states as large as σ(T) (σ(T)/s = 100 data
    standard deviations s on VE, 160 on EDM) and n of them add like a random walk, so 64·eps·√n·max(1, σ(T)/s)
    (64: the variance's factor 2 and the probes' difference, with room). Measured: DPM-Solver-3 (ε form) on VE in
    float32 floors at 1.1e-3 by 1000 steps (float64: 1.4e-9).

    The default ``fine`` is 1000, not a few hundred: on EDM's default (uniform σ) grid the last λ-step spans
    log(1 + σ_max/(N σ_min)), so multistep methods leave their asymptotic range only at N ≫ σ_max/σ_min = 4·10⁴
    and their error is not monotone before (DPM-Solver++(2M): 0.85 at 16 steps, 0.37 at 64, 1.74 at 250, 0.28 at
    1000, in float64 too)."""
    by_steps = {c.steps: c for c in cells if c.error is not None}
    if coarse not in by_steps or fine not in by_steps:
        return True
    sde = get_sde(cells[0].sde)
    scale = max(1.0, float(sde.std(torch.tensor(sde.T, dtype=torch.float64))) / float(gaussian_data(2).std.max()))
    ulp = 64 * torch.finfo(getattr(torch, cells[0].dtype)).eps * scale
    lo, hi = by_steps[coarse], by_steps[fine]
    if lo.error <= ulp * math.sqrt(lo.nfe):
        return hi.error <= ulp * math.sqrt(hi.nfe)
    return hi.error < lo.error


def summary_table(cells: Sequence[Cell]) -> str:
    """Markdown: per method (rows) and schedule (columns), the cells that passed out of those run, or the reason
    the schedule refuses the method; failures are listed below the table."""
    schedules = list(dict.fromkeys(c.sde for c in cells))
    rows: dict[str, dict[str, list[Cell]]] = {}
    for c in cells:
        rows.setdefault(f"{c.method} ({c.kind})", {}).setdefault(c.sde, []).append(c)
    out = ["| method | " + " | ".join(schedules) + " |", "|---|" + "---|" * len(schedules)]
    failed = [c for c in cells if c.outcome == "failed"]
    for name, by_sde in rows.items():
        entries = []
        for s in schedules:
            group = by_sde.get(s, [])
            if group and all(c.outcome == "refused" for c in group):
                entries.append("refused")
            else:
                entries.append(f"{sum(c.outcome == 'ok' for c in group)}/{len(group)}")
        out.append(f"| {name} | " + " | ".join(entries) + " |")
    out.append("")
    out.append(f"{len(cells)} cells; {len(failed)} failed" + (":" if failed else "."))
    out += [f"- {c.method} on {c.sde}, {c.steps} steps, {c.dtype}: {c.message}" for c in failed]
    return "\n".join(out) + "\n"
