r"""DPM-Solver's adaptive step size against the fixed few-step solvers at equal NFE: ``python -m benchmarks.dpm_adaptive``.

Every sample takes its own steps (`sdesolve.solvers.dpm_solver_adaptive`), so the solver is not affine in $x_T$ even for
an affine score and `benchmarks.few_step`'s two-probe trick does not apply; the error is pathwise instead: the
RMS over prior samples of the distance to the exact flow map of the same $x_T$ (`Gaussian.flow` for the VP
Gaussian, `benchmarks.few_step`'s Dormand–Prince reference at rtol = atol = 1e-11 for the VP/VE ring mixture,
on the same 2000 prior samples as there). The adaptive runs span tolerances from the paper's (rtol = 0.05,
atol = 0.0078) down to 1e-4 at the same atol/rtol ratio; each fixed solver (logSNR grid) runs at the step count
whose NFE is nearest the adaptive run's mean per-sample NFE (its cost per sample; the batch's wall clock follows
the largest, ``nfe``, also reported).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from sdesolve import VESDE, VPSDE
from sdesolve.problems import gaussian_data, ring_mixture
from sdesolve.solvers.dpm_solver_adaptive import dpm_adaptive_solve

from .few_step import EPS, PER_STEP, _reference, _solve

RTOLS = (0.05, 0.02, 0.01, 3e-3, 1e-3, 3e-4, 1e-4)
ATOL_RATIO = 0.0078 / 0.05
"""atol/rtol of the paper's defaults (rtol = 0.05, atol = 0.0078), kept at every tolerance."""
VARIANTS = {
    "DPM-Solver-12": {"order": 2, "prediction": "noise"},
    "DPM-Solver-23": {"order": 3, "prediction": "noise"},
    "DPM-Solver++-23": {"order": 3, "prediction": "data"},
    "DPM-Solver-23, no growth cap (official rule)": {"order": 3, "prediction": "noise", "max_growth": float("inf")},
}
FIXED = ("dpm_solver_3", "unipc_3", "ipndm")


def problems(n_gauss: int = 500, n_mix: int = 2000) -> list[tuple[str, object, object, torch.Tensor, torch.Tensor]]:
    """``(name, sde, score, x_T, reference)``: the VP Gaussian (exact flow) and the VP/VE ring mixture."""
    out = []
    vp = VPSDE()
    data = gaussian_data(2, dtype=torch.float64)
    x_t = vp.prior_sampling((n_gauss, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out.append(("VP Gaussian", vp, data.score_fn(vp), x_t, data.flow(vp, x_t, vp.T, EPS)))
    for name, sde in (("vp", vp), ("ve", VESDE())):
        score = ring_mixture(dtype=torch.float64).score_fn(sde)
        x_t = sde.prior_sampling((n_mix, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        ref = _reference(f"{name}-{n_mix}", sde, score, x_t)  # few_step's reference, cached per size
        out.append((f"{name.upper()} ring mixture", sde, score, x_t, ref))
    return out


def _rms(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y - ref).pow(2).sum(1).mean().sqrt())


def adaptive_rows(problem, variants=VARIANTS, rtols=RTOLS) -> list[dict]:
    """One row per (variant, rtol): pathwise RMS error, mean and largest per-sample NFE, rejections per sample."""
    name, sde, score, x_t, ref = problem
    rows = []
    for label, kw in variants.items():
        for rtol in rtols:
            y, info = dpm_adaptive_solve(sde, score, x_t, sde.T, EPS, rtol=rtol, atol=rtol * ATOL_RATIO, **kw)
            per = info["nfe_per_sample"].double()
            rows.append(
                {
                    "problem": name,
                    "solver": label,
                    "rtol": rtol,
                    "nfe_mean": float(per.mean()),
                    "nfe": info["nfe"],
                    "rejected": float(info["rejected"].double().mean()),
                    "rms": _rms(y, ref),
                }
            )
    return rows


def fixed_rms(problem, method: str, nfe: float) -> tuple[int, float]:
    """``(NFE, RMS error)`` of ``method`` on the logSNR grid at the step count whose NFE is nearest ``nfe``."""
    _, sde, score, x_t, ref = problem
    y, used = _solve(sde, score, method, "logsnr", max(1, round(nfe / PER_STEP.get(method, 1))), x_t)
    return used, _rms(y, ref)


def table(rows: list[dict]) -> str:
    """Markdown: adaptive error and NFE beside each fixed solver's error at the matching NFE."""
    head = "| problem | adaptive | rtol | NFE mean (max) | rej./sample | RMS error | " + " | ".join(FIXED) + " |"
    lines = [head, "|" + "---|" * (6 + len(FIXED))]
    for r in rows:
        fixed = " | ".join(f"{r[m][1]:.2e} ({r[m][0]})" for m in FIXED)
        lines.append(
            f"| {r['problem']} | {r['solver']} | {r['rtol']:g} | {r['nfe_mean']:.1f} ({r['nfe']}) | "
            f"{r['rejected']:.1f} | {r['rms']:.2e} | {fixed} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None, sizes: dict | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dpm_adaptive", description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="folder for dpm_adaptive.json")
    args = parser.parse_args(argv)
    sizes = sizes or {}
    torch.set_num_threads(1)
    rows = []
    for problem in problems(sizes.get("n_gauss", 500), sizes.get("n_mix", 2000)):
        for row in adaptive_rows(problem, sizes.get("variants", VARIANTS), sizes.get("rtols", RTOLS)):
            row |= {m: fixed_rms(problem, m, row["nfe_mean"]) for m in FIXED}
            rows.append(row)
    print(table(rows))
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "dpm_adaptive.json").write_text(json.dumps(rows, indent=1))
    return {"rows": rows}


if __name__ == "__main__":
    main()
