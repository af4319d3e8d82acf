"""The verification matrix: every claimed order of {VP, sub-VP, VE} × predictors × {Gaussian, mixture} (`run_suite`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .._utils import check_choice
from ..predictors import PREDICTORS, Predictor, get_predictor
from ..problems import gaussian_data, ring_mixture
from ..sde import EDMSDE, SDES, LinearSDE, get_sde
from ..solvers.ode import FEW_STEP
from .few_step import WEAK_STEPS, few_step_study
from .orders import Data, OrderStudy, strong_order, weak_order

__all__ = ["run_suite", "SUITE_PREDICTORS", "SUITE_FEW_STEP", "SuiteRow", "suite_cases", "expected_order"]


SUITE_PREDICTORS = (
    "euler_maruyama",
    "improved_euler",
    "reverse_diffusion",
    "ancestral",
    "pf_euler",
    "pf_heun",
    "pf_rk4",
)
SUITE_PREDICTORS_CLS = {name: PREDICTORS[name] for name in SUITE_PREDICTORS}
SUITE_FEW_STEP = (*FEW_STEP, *WEAK_STEPS)
"""Few-step ODE solvers (flow-map errors) and stochastic few-step predictors (exact weak errors), on the logSNR
grid (`sdesolve.verify.few_step`)."""
SUITE_DATA: dict[str, Callable[[], Data]] = {
    "gaussian": lambda: gaussian_data(2, dtype=torch.float64),
    "mixture": lambda: ring_mixture(dtype=torch.float64),
}


@dataclass(frozen=True)
class SuiteRow:
    """One line of the verification table."""

    sde: str
    data: str
    predictor: str
    study: OrderStudy
    tol: float

    @property
    def passed(self) -> bool:
        return self.study.passed(self.tol)

    def as_dict(self) -> dict[str, object]:
        s = self.study
        return {
            "sde": self.sde,
            "data": self.data,
            "predictor": self.predictor,
            "kind": s.kind,
            "method": s.method,
            "expected": s.expected,
            "slope": s.fit.slope,
            "ci95": [s.fit.lo, s.fit.hi],
            "tol": self.tol,
            "steps": list(s.steps),
            "errors": s.errors.tolist(),
            "se": s.se.tolist(),
            "passed": bool(self.passed),
        }


def _suite_steps(kind: str, predictor: str, sde: str, data: str, quick: bool) -> tuple[int, ...]:
    """Step counts in each case's asymptotic range (measured; see NOTES-verify.md), a ratio of ≥ 16×.

    Gaussian weak studies (exact propagation) run far out (from 64, 128 in the full suite): ancestral sampling's error has an O(N^-1/2)
    relative correction near t = eps on VP/sub-VP (fitted order 0.76 over 16..256, 0.89 over 64..1024).
    Below these ranges RK4/Heun are pre-asymptotic (fitted 4.2-4.3 from N = 8) and VE needs N ≳ 32
    (g²/v ≈ 2 log(σmax/σmin) ≈ 17).
    """
    if predictor == "pf_rk4":
        # sub-VP approaches order 4 from below (local slopes 3.3, 3.7, 3.87, 3.94 from N = 16), and past
        # N = 2048 the error (~1e-14) meets float64 round-off: 64..2048 is the asymptotic window.
        start = 64
    elif kind == "weak" and predictor == "euler_maruyama" and sde == "ve" and data == "gaussian":
        start = 32  # the O(1/N) term (∝ σ_min²) takes over near N ~ 10^4: fitted 1.90 over 128..4096
    elif kind == "weak":
        start = 64 if quick else 128
    elif data == "mixture":
        start = 64
    elif predictor.startswith("pf_"):
        start = 32  # RK4 from N = 16 fits 4.10 over 16..512 (pre-asymptotic)
    else:
        start = 32 if sde == "ve" else 16
    return tuple(start * 2**k for k in range(4 if quick else 6))


def suite_cases(data: str, predictor: str, quick: bool = False) -> tuple[str, ...]:
    """The order claims the suite measures for a (data, predictor) pair.

    Gaussian data: every claim (weak by exact propagation, strong on a torchsde path). Mixture data: the
    probability-flow predictors pathwise against scipy RK45 (Monte Carlo weak studies of the stochastic
    predictors on the mixture need ~10^6 paths on 2 cores and are left to the notes). ``quick`` skips the
    pathwise probability-flow studies (their weak rows measure the same order).
    """
    if data == "mixture":
        return ("strong",) if predictor.startswith("pf_") else ()
    if predictor == "euler_maruyama" or (predictor.startswith("pf_") and not quick):
        return ("strong", "weak")
    return ("weak",)


def expected_order(kind: str, predictor: str, sde: str, data: str) -> float:
    r"""Theory for the case: the predictor's claim, except Euler–Maruyama's weak order on VE with Gaussian data.

    There the O(h) coefficient of the variance error integrates to $c\,\sigma_{\min}^2/2$ (c = 2 log(σmax/σmin)),
    negligible for σ_min = 0.01: the measured order is 2 until N ~ 10^4 (with σ_min = 0.3 it is 1; tested).
    """
    pred = SUITE_PREDICTORS_CLS[predictor]
    if kind == "weak" and predictor == "euler_maruyama" and sde == "ve" and data == "gaussian":
        return 2.0
    return float(pred.strong_order if kind == "strong" else pred.weak_order)


def _suite_predictor(name: str, sde: LinearSDE) -> Predictor | None:
    """The suite's predictor ``name`` on ``sde``; where α(T) = 0 the reverse SDE's w = g is infinite at T, so the
    SDE steppers run with w = σ (`REVERSE_DIFFUSIONS`), and reverse diffusion, which has no limit there, is skipped.
    EDM's schedule is measured by the few-step rows on the logSNR grid only: on its uniform-t grids (σ = t from 80)
    the predictors' errors are pre-asymptotic (measured: Euler–Maruyama's weak slope 3.2, ancestral 0.44 over
    64..512)."""
    if isinstance(sde, EDMSDE):  # σ = t: uniform-t grids (the predictors' studies) are pre-asymptotic to N ~ 10^4
        return None
    if not sde.singular_at_T:
        return get_predictor(name, sde)
    if name == "reverse_diffusion":
        return None
    if name in ("euler_maruyama", "improved_euler"):
        return PREDICTORS[name](sde, diffusion="sigma")
    return get_predictor(name, sde)


def run_suite(
    quick: bool = True,
    *,
    sdes: Sequence[str] = tuple(SDES),
    predictors: Sequence[str] = SUITE_PREDICTORS + SUITE_FEW_STEP,
    data: Sequence[str] | None = None,
    progress: Callable[[SuiteRow], None] | None = None,
) -> list[SuiteRow]:
    """Measure every claimed order of {VE, VP, sub-VP, rectified flow, cosine, EDM} × predictors × {Gaussian, mixture}.

    ``quick`` (Gaussian data only, < 1 min on 2 cores) uses tolerance ±0.15, 4 step counts (8×) and 128 paths on a
    srk reference of 512 steps; the full suite ±0.1, 6 step counts (32×), 512 paths, srk at 4096 steps, and
    the mixture (probability-flow predictors against scipy RK45).

    ``predictors`` may name few-step samplers (`SUITE_FEW_STEP`): ODE solvers' rows are flow-map errors from the
    same prior samples against `Gaussian.flow` (Gaussian) or a tight Dormand–Prince solve (mixture); the stochastic
    ones' rows exact weak errors on Gaussian data (`sdesolve.verify.few_step`).

    Returns:
        One `SuiteRow` per (SDE, data, predictor, strong/weak claim).
    """
    data = (("gaussian",) if quick else tuple(SUITE_DATA)) if data is None else tuple(data)
    tol = 0.15 if quick else 0.1
    n_paths, ref = (128, 512) if quick else (512, 4096)
    rows = []
    for sde_name in sdes:
        sde = get_sde(sde_name)
        for data_name in data:
            dist = SUITE_DATA[check_choice("data", data_name, tuple(SUITE_DATA))]()
            for name in (p for p in predictors if p in SUITE_FEW_STEP):
                if (case := few_step_study(sde, name, data_name, dist)) is None:
                    continue
                kind, steps, errors, expected, resolution = case
                method = "exact, logSNR grid" + ("" if resolution is None else ", fitted in 1/h_lambda")
                study = OrderStudy(kind, method, steps, errors, np.zeros_like(errors), expected, resolution)
                rows.append(SuiteRow(type(sde).__name__, data_name, name, study, tol))
                if progress is not None:
                    progress(rows[-1])
            for name in (p for p in predictors if p not in SUITE_FEW_STEP):
                pred = _suite_predictor(check_choice("predictor", name, SUITE_PREDICTORS), sde)
                if pred is None:
                    continue
                for kind in suite_cases(data_name, name, quick):
                    if kind == "strong" and pred.stochastic and sde.singular_at_T:
                        continue  # the strong reference (torchsde on the reverse SDE) is infinite at T there
                    steps = _suite_steps(kind, name, sde_name, data_name, quick)
                    expected = expected_order(kind, name, sde_name, data_name)
                    study_fn = strong_order if kind == "strong" else weak_order
                    study = study_fn(sde, pred, dist, steps=steps, n_paths=n_paths, ref_steps=ref, expected=expected)
                    row = SuiteRow(type(sde).__name__, data_name, name, study, tol)
                    rows.append(row)
                    if progress is not None:
                        progress(row)
    return rows
