r"""Every schedule, every fixed-step method, against exact answers: ``python -m benchmarks.schedules [--quick] [--out DIR]``.

- **NFE to 1%** on the exact Gaussian N(0.3, 0.5²) for VP, sub-VP, VE, rectified flow, cosine and EDM: the smallest
  NFE from which every larger step count measured keeps max(|var err|, |mean err|/std) ≤ 1%, by the probe method
  of `benchmarks.few_step` (every fixed-step solver is affine in its start on an affine score: no Monte Carlo error).
- **Ring mixture on rectified flow**: RMS distance at 10 NFE to the flow map of the same prior samples
  (Dormand–Prince at rtol = atol = 1e-11).
- **Stochastic samplers, w(t) family** (`sdesolve.sde.reverse_diffusion`): the reverse SDE
  $\mathrm dx = [fx - \tfrac12(g^2 + w^2)\nabla\log p_t]\mathrm dt + w\,\mathrm d\bar W$ keeps $p_t$ for every $w \ge 0$;
  Euler–Maruyama's and improved Euler's exact weak error against NFE for w = g (where finite), σ, 0.5 and 0.
- **diffusers' flow schedulers** (when diffusers is installed): `FlowMatchEulerDiscreteScheduler` against our Euler
  on its own sigmas (shift 1 and 3), its ``stochastic_sampling=True`` step, and DPM-Solver++/UniPC with
  ``use_flow_sigmas=True``, each against the exact law of the same Gaussian.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from sdesolve import EulerMaruyama, Gaussian, ImprovedEuler, get_sde, ode_sample
from sdesolve.adapters import score_from_velocity, velocity_from_score
from sdesolve.problems import gaussian_data
from sdesolve.solvers.ode import FEW_STEP
from sdesolve.verify.few_step import affine_law_error, sde_weak_errors

from .few_step import gaussian_errors, mixture_errors, nfe_to

SCHEDULES = ("vp", "subvp", "ve", "rectified_flow", "cosine", "edm")
EPS = {"edm": 0.002}  # EDM samples down to its σ_min; every other schedule to t = 1e-3
GRIDS = ("uniform", "logsnr", "karras")
METHODS = ("euler", "heun", "rk4", *FEW_STEP)
STEPS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128)
QUICK_STEPS = (2, 4, 8, 16, 32, 64)
W_FAMILY = ("g", "sigma", 0.5, "none")
W_STEPS = (10, 20, 50, 100, 200)


def nfe_table(schedules=SCHEDULES, grids=GRIDS, methods=METHODS, steps=STEPS) -> list[dict]:
    """NFE to 1% and the error at 8 and 16 NFE (nearest below) per schedule × grid × method."""
    rows = []
    for name in schedules:
        sde, eps = get_sde(name), EPS.get(name, 1e-3)
        for grid in grids:
            for method in methods:
                errs = gaussian_errors(f"{method} ({grid})", method, grid, sde=sde, eps=eps, steps=steps)
                at = {k: max((r for r in errs if r["nfe"] <= k), key=lambda r: r["nfe"], default=None) for k in (8, 16)}
                rows.append(
                    {
                        "sde": name,
                        "grid": grid,
                        "method": method,
                        "nfe_1%": nfe_to(errs, 1e-2),
                        "err@8": at[8] and at[8]["error"],
                        "err@16": at[16] and at[16]["error"],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def flow_mixture(methods=METHODS, grids=GRIDS) -> list[dict]:
    """Rectified flow, ring mixture: RMS to the exact flow at (about) 10 NFE."""
    rows = []
    for grid in grids:
        for method in methods:
            (r,) = mixture_errors("rectified_flow", f"{method} ({grid})", method, grid, targets=(10,))
            rows.append({"grid": grid, "method": method, "nfe": r["nfe"], "rms@10": r["rms"]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _variance_error(x: torch.Tensor, var: torch.Tensor) -> tuple[float, float]:
    """max over coordinates of |v̂/v − 1| and its standard error √(2/(n−1)) (Gaussian sample variance)."""
    return float((x.var(0) / var - 1).abs().max()), math.sqrt(2 / (x.shape[0] - 1))


def w_family(schedules=SCHEDULES, family=W_FAMILY, steps=W_STEPS) -> list[dict]:
    """Euler–Maruyama and improved Euler with diffusion w on the exact 1-D Gaussian N(0.3, 0.5²): exact weak error
    (`sdesolve.verify.few_step.sde_weak_errors`: probes and unit draws, no Monte Carlo) against NFE, logSNR grid."""
    rows = []
    data = Gaussian(torch.tensor([0.3], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64))
    for name in schedules:
        sde, eps = get_sde(name), EPS.get(name, 1e-3)
        for w in family:
            if w == "g" and sde.singular_at_T:
                continue  # g is infinite at T where α(T) = 0: refused with a clear error (test_interpolants)
            for predictor in (EulerMaruyama(sde, diffusion=w), ImprovedEuler(sde, diffusion=w)):
                errors = sde_weak_errors(sde, predictor, data, steps, eps=eps)
                for k, err in zip(steps, errors, strict=True):
                    row = {"sde": name, "w": str(w), "predictor": type(predictor).__name__}
                    rows.append(row | {"nfe": k * predictor.nfe, "error": float(err)})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def diffusers_flow(n: int = 100_000, steps=(4, 8, 16, 32, 64, 128)) -> dict | None:
    """diffusers' flow schedulers on the exact rectified-flow velocity of the Gaussian, beside ours."""
    try:
        from diffusers import DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
    except ImportError:
        return None
    sde, data = get_sde("rectified_flow"), gaussian_data(2, dtype=torch.float64)
    velocity = velocity_from_score(data.score_fn(sde), sde)

    def model(x, tau):  # a diffusers flow model: timesteps = 1000 σ
        return velocity(x, tau / 1000)

    def loop(sch, x, generator=None):
        for t in sch.timesteps:
            extra = {} if generator is None else {"generator": generator}
            x = sch.step(model(x, t.expand(len(x)).double()), t, x, **extra).prev_sample
        return x

    score = score_from_velocity(model, sde, time_scale=1000)
    prior = data.marginal(sde, sde.T)  # N(0, I): every loop starts at σ = 1 and ends at σ = 0, the data
    parity = []
    for shift in (1.0, 3.0):
        sch = FlowMatchEulerDiscreteScheduler(shift=shift)
        sch.set_timesteps(28)
        noise = torch.randn(4096, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        ours = ode_sample(sde, score, noise.shape, method="euler", grid=sch.sigmas.double(), x_init=noise)
        parity.append({"shift": shift, "max_abs_diff": float((loop(sch, noise.clone()) - ours).abs().max())})
    makers = {
        "diffusers FlowMatchEuler": lambda: FlowMatchEulerDiscreteScheduler(),
        "diffusers DPM-Solver++(2M) use_flow_sigmas": lambda: DPMSolverMultistepScheduler(
            use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=1.0
        ),
        "diffusers UniPC(2) use_flow_sigmas": lambda: UniPCMultistepScheduler(
            use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=1.0
        ),
    }
    rows = []
    for label, make in makers.items():
        for k in steps:
            sch = make()
            sch.set_timesteps(k)
            y = loop(sch, torch.stack([torch.zeros(2), torch.ones(2)]).to(torch.float64))  # probe rows x_T = 0, 1
            rows.append({"sampler": label, "nfe": len(sch.timesteps), "error": affine_law_error(y, prior, data)})
            print(json.dumps(rows[-1]), flush=True)
    for k in steps:  # the stochastic step draws fresh noise: Monte Carlo, n samples
        sch = FlowMatchEulerDiscreteScheduler(stochastic_sampling=True)
        sch.set_timesteps(k)
        noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        err, se = _variance_error(loop(sch, noise, torch.Generator().manual_seed(1)), data.var)
        rows.append({"sampler": "diffusers FlowMatchEuler stochastic_sampling", "nfe": k, "error": err, "se": se})
        print(json.dumps(rows[-1]), flush=True)
    for method, grid in (("euler", "uniform"), ("dpm_solver_pp_2m", "logsnr"), ("unipc_2", "logsnr")):
        for r in gaussian_errors(f"sdesolve {method} ({grid})", method, grid, sde=sde, steps=steps):
            rows.append({"sampler": r["sampler"], "nfe": r["nfe"], "error": r["error"]})
    return {"parity": parity, "rows": rows}


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3g}" if isinstance(v, float) else str(v)


def markdown(result: dict) -> str:
    """The measured tables (rows as in the JSON), for docs/schedules.md."""
    out = []
    nfe = result["nfe"]
    schedules = list(dict.fromkeys(r["sde"] for r in nfe))
    out += ["**NFE to 1%** (exact Gaussian N(0.3, 0.5²); every larger step count measured, up to 128 steps, stays "
            "≤ 1%; – : not within 128 steps)", "", "| method | grid | " + " | ".join(schedules) + " |",
            "|---|---|" + "---|" * len(schedules)]  # fmt: skip
    for (method, grid), rows in _grouped(nfe, ("method", "grid")).items():
        by = {r["sde"]: r["nfe_1%"] for r in rows}
        out.append(f"| {method} | {grid} | " + " | ".join(_fmt(by.get(s)) for s in schedules) + " |")
    if "flow_mixture" in result:
        out += ["", "**Rectified flow, ring mixture**: RMS distance to the exact flow at about 10 NFE", "",
                "| method | " + " | ".join(GRIDS) + " |", "|---|" + "---|" * len(GRIDS)]  # fmt: skip
        for method, rows in _grouped(result["flow_mixture"], ("method",)).items():
            by = {r["grid"]: f"{r['rms@10']:.3g} ({r['nfe']})" for r in rows}
            out.append(f"| {method[0]} | " + " | ".join(by.get(g, "–") for g in GRIDS) + " |")
    w_rows = result["w_family"]
    nfes = sorted({r["nfe"] // (2 if r["predictor"] == "ImprovedEuler" else 1) for r in w_rows})
    out += ["", "**Reverse SDEs with diffusion w** (exact weak error on N(0.3, 0.5²), logSNR grid; steps)", "",
            "| schedule | predictor | w | " + " | ".join(map(str, nfes)) + " |", "|---|---|---|" + "---|" * len(nfes)]  # fmt: skip
    for (sde, pred, w), rows in _grouped(w_rows, ("sde", "predictor", "w")).items():
        out.append(f"| {sde} | {pred} | {w} | " + " | ".join(f"{r['error']:.3g}" for r in rows) + " |")
    if result.get("diffusers"):
        d = result["diffusers"]
        parity = ", ".join(f"shift {p['shift']:g}: {p['max_abs_diff']:.2g}" for p in d["parity"])
        out += ["", f"**diffusers' flow schedulers** (rectified flow, exact velocity of N(0.3, 0.5²), to σ = 0). "
                f"FlowMatchEuler vs our Euler on its sigmas, max |Δx| over 4096 samples: {parity}. Error by NFE:", ""]  # fmt: skip
        by_sampler = _grouped(d["rows"], ("sampler",))
        cols = sorted({r["nfe"] for r in d["rows"]})
        out += ["| sampler | " + " | ".join(map(str, cols)) + " |", "|---|" + "---|" * len(cols)]
        for (sampler,), rows in by_sampler.items():
            by = {r["nfe"]: r["error"] for r in rows}
            out.append(f"| {sampler} | " + " | ".join(_fmt(by.get(c)) for c in cols) + " |")
    return "\n".join(out) + "\n"


def _grouped(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    return groups


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.schedules", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few step counts, grids and methods (smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="folder for schedules.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        result = {
            "nfe": nfe_table(grids=("logsnr",), methods=("heun", "dpm_solver_pp_2m"), steps=QUICK_STEPS),
            "w_family": w_family(schedules=("rectified_flow",), family=("sigma",), steps=(10,)),
        }
    else:
        result = {"nfe": nfe_table(), "flow_mixture": flow_mixture(), "w_family": w_family()}
        result["diffusers"] = diffusers_flow()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "schedules.json").write_text(json.dumps(result, indent=1))
        (args.out / "schedules.md").write_text(markdown(result))
    return result


if __name__ == "__main__":
    main()
