"""The solver-under-guidance study (docs/guidance.md): every fixed-step ODE method and the stochastic predictors with
classifier-free guidance, against the exact guided laws (`sdesolve.verify.guidance`).

    OMP_NUM_THREADS=1 python scripts/guidance_study.py            # measure, write scripts/guidance_study.json
    OMP_NUM_THREADS=1 python scripts/guidance_study.py --update split      # (re)measure one part, merge it
    OMP_NUM_THREADS=1 python scripts/guidance_study.py --update adaptive   # (split_solve rows; adaptive methods)
    OMP_NUM_THREADS=1 python scripts/guidance_study.py --tables   # print the docs' Markdown tables from the JSON
    OMP_NUM_THREADS=1 python scripts/guidance_study.py --figure   # docs/img/guidance_solvers.png from the JSON

Errors are in float64 on 64 prior paths (flows) or exact (stochastic predictors: `probe_law`, no Monte Carlo).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from sdesolve import VESDE, VPSDE, SubVPSDE
from sdesolve.solvers.ode import LOWER_ORDER_FINAL
from sdesolve.verify import fit_order
from sdesolve.verify.guidance import (
    ADAPTIVE_METHODS,
    ADAPTIVE_TOLERANCES,
    GUIDANCE_INTERVAL,
    GUIDANCE_SCALES,
    STOCHASTIC_PREDICTORS,
    STUDY_STEPS,
    claimed_order,
    first_nfe_below,
    guided_adaptive_errors,
    guided_flow_errors,
    guided_sde_errors,
    study_methods,
)

OUT = Path(__file__).with_suffix(".json")
SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE()}
SDE_STEPS = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
FLOW_CONFIGS = (("none", None, "logsnr"), ("interval", GUIDANCE_INTERVAL, "logsnr"),
                ("interval", GUIDANCE_INTERVAL, "interval"), ("interval", GUIDANCE_INTERVAL, "split"))  # fmt: skip
"""(interval label, interval, grid): plain; the interval on the logSNR grid; on `interval_grid`; `split_solve`."""


def _row(nfe, errors) -> dict:
    return {"nfe": [int(n) for n in nfe], "errors": [float(e) for e in errors]}


def measure() -> dict:
    torch.set_num_threads(1)
    out: dict = {"steps": STUDY_STEPS, "interval": GUIDANCE_INTERVAL, "flow": [], "sde": []}
    for sde_name in SDES:
        for label, interval, grid in FLOW_CONFIGS if sde_name == "vp" else FLOW_CONFIGS[:1]:
            out["flow"] += _flow_rows(sde_name, label, interval, grid)
    for w in (3.0, 15.0):  # remedies: other grids, lower_order_final
        for grid in ("karras", "uniform", "cosine"):
            for method in study_methods():
                nfe, e = guided_flow_errors(SDES["vp"], method, w, grid=grid)
                out["flow"].append({"sde": "vp", "interval": "none", "grid": grid, "lower_order_final": False,
                                    "method": method, "scale": w, **_row(nfe, e)})  # fmt: skip
        for method in LOWER_ORDER_FINAL:
            nfe, e = guided_flow_errors(SDES["vp"], method, w, lower_order_final=True)
            out["flow"].append({"sde": "vp", "interval": "none", "grid": "logsnr", "lower_order_final": True,
                                "method": method, "scale": w, **_row(nfe, e)})  # fmt: skip
        print("remedies", w, flush=True)
    for w in GUIDANCE_SCALES:
        for label, interval in (("none", None), ("interval", GUIDANCE_INTERVAL)):
            for predictor in STOCHASTIC_PREDICTORS:
                nfe, e = guided_sde_errors(SDES["vp"], predictor, w, SDE_STEPS, interval=interval)
                out["sde"].append({"sde": "vp", "interval": label, "predictor": predictor, "scale": w, **_row(nfe, e)})
        print("sde", w, flush=True)
    out["adaptive"] = _adaptive_rows()
    return out


def _flow_rows(sde_name: str, label: str, interval, grid: str) -> list[dict]:
    """One flow configuration at every scale and method (logSNR-based grids, no ``lower_order_final``)."""
    rows = []
    for w in GUIDANCE_SCALES:
        for method in study_methods():
            nfe, e = guided_flow_errors(SDES[sde_name], method, w, interval=interval, grid=grid)
            rows.append({"sde": sde_name, "interval": label, "grid": grid, "lower_order_final": False,
                         "method": method, "scale": w, **_row(nfe, e)})  # fmt: skip
        print(sde_name, label, grid, w, flush=True)
    return rows


def _adaptive_rows() -> list[dict]:
    """The adaptive methods at every scale, with and without the interval (VP), at `ADAPTIVE_TOLERANCES`."""
    rows = []
    for label, interval in (("none", None), ("interval", GUIDANCE_INTERVAL)):
        for w in GUIDANCE_SCALES:
            for method in ADAPTIVE_METHODS:
                nfe, e = guided_adaptive_errors(SDES["vp"], method, w, interval=interval)
                rows.append({"sde": "vp", "interval": label, "method": method, "scale": w,
                             "tolerances": list(ADAPTIVE_TOLERANCES), **_row(nfe, e)})  # fmt: skip
            print("adaptive", label, w, flush=True)
    return rows


def merge_split(data: dict) -> dict:
    """``data`` with its `split_solve` rows (VP, interval) measured anew."""
    data["flow"] = [r for r in data["flow"] if r["grid"] != "split"] + _flow_rows("vp", *FLOW_CONFIGS[3])
    return data


def merge_adaptive(data: dict) -> dict:
    """``data`` with its adaptive-method rows measured anew."""
    data["adaptive"] = _adaptive_rows()
    return data


UPDATES = {"split": merge_split, "adaptive": merge_adaptive}


def _fit(nfe, errors, lo_steps: int = 32) -> tuple[float, float]:
    """Order fitted over the counts from ``lo_steps`` intervals on (8×: 32..256), with its CI half-width."""
    nfe, errors = np.asarray(nfe), np.asarray(errors)
    keep = slice(len(nfe) - 7, None)
    fit = fit_order(nfe[keep], errors[keep])
    return fit.slope, fit.slope - fit.lo


def _cell(r: dict) -> str:
    """``order (NFE from which the error stays below 1 %)``."""
    p, _ = _fit(r["nfe"], r["errors"])
    n1 = first_nfe_below(np.asarray(r["nfe"]), np.asarray(r["errors"]))
    return f"{p:.2f} ({n1 if n1 else '>' + str(r['nfe'][-1])})"


def _order_table(rows: list[dict], title: str, key: str = "method", names=None) -> None:
    names = study_methods() if names is None else names
    print(f"\n#### {title}\n")
    print(f"| {key} | order | " + " | ".join(f"w = {w:g}" for w in GUIDANCE_SCALES) + " |")
    print("|---|---|" + "---|" * len(GUIDANCE_SCALES))
    for name in names:
        cells = [_cell(next(r for r in rows if r[key] == name and r["scale"] == w)) for w in GUIDANCE_SCALES]
        claim = claimed_order(name) if key == "method" else {"sde_dpm_solver_pp_2m": 2}.get(name, 1)
        print(f"| `{name}` | {claim} | " + " | ".join(cells) + " |")


def tables(data: dict) -> None:
    def flow(**match):
        return [r for r in data["flow"] if all(r[k] == v for k, v in match.items())]

    _order_table(flow(sde="vp", interval="none", grid="logsnr", lower_order_final=False), "VP, no interval")
    for name in ("subvp", "ve"):
        _order_table(flow(sde=name, interval="none", grid="logsnr"), f"{name}, no interval")
    for grid, what in (("logsnr", "on the logSNR grid"), ("interval", "on `interval_grid`"),
                       ("split", "`split_solve` on `interval_grid`")):  # fmt: skip
        if flow(interval="interval", grid=grid):
            _order_table(flow(sde="vp", interval="interval", grid=grid), f"VP, interval (0.28, 5.42], {what}")
    print("\n#### Remedies without an interval (VP): NFE from which the error stays below 1 %\n")
    options = [("logsnr", False), ("karras", False), ("uniform", False), ("cosine", False), ("logsnr", True)]
    head = [f"{g}{' + lof' if lof else ''}" for g, lof in options]
    print("| method | " + " | ".join(f"w = {w}: {h}" for w in (3, 15) for h in head) + " |")
    print("|---|" + "---|" * 2 * len(options))
    for method in study_methods():
        cells = []
        for w in (3.0, 15.0):
            for grid, lof in options:
                r = flow(sde="vp", interval="none", grid=grid, lower_order_final=lof, method=method, scale=w)
                n1 = r and first_nfe_below(np.asarray(r[0]["nfe"]), np.asarray(r[0]["errors"]))
                cells.append("" if not r else str(n1) if n1 else ">" + str(r[0]["nfe"][-1]))
        print(f"| `{method}` | " + " | ".join(cells) + " |")
    print("\n#### Adaptive methods (VP): NFE / error at rtol = atol = tol\n")
    tols = data["adaptive"][0]["tolerances"]
    print("| interval | w | method | " + " | ".join(f"tol = {t:.0e}" for t in tols) + " |")
    print("|---|---|---|" + "---|" * len(tols))
    for r in data["adaptive"]:
        cells = [f"{n} / {e:.1e}" for n, e in zip(r["nfe"], r["errors"], strict=True)]
        print(f"| {r['interval']} | {r['scale']:g} | `{r['method']}` | " + " | ".join(cells) + " |")
    for label in ("none", "interval"):
        rows = [r for r in data["sde"] if r["interval"] == label]
        _order_table(rows, f"Stochastic predictors (VP, exact law), interval: {label}", "predictor",
                     STOCHASTIC_PREDICTORS)  # fmt: skip


def figure(data: dict, path: Path) -> None:
    """Error vs NFE at w = 0, 3, 15 (VP, logSNR grid) and the interval's three treatments at w = 3."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = ("ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_2", "ipndm", "dpm_solver_3", "rk4")
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8), dpi=90, sharey=True)

    def rows(**match):
        return [r for r in data["flow"] if r["sde"] == "vp" and not r["lower_order_final"]
                and all(r[k] == v for k, v in match.items())]  # fmt: skip

    for ax, w in zip(axes[:3], (0.0, 3.0, 15.0), strict=True):
        for r in rows(interval="none", grid="logsnr", scale=w):
            if r["method"] in methods:
                ax.loglog(r["nfe"], r["errors"], ".-", label=r["method"])
        ax.set(title=f"CFG w = {w:g}, no interval", xlabel="NFE")
    for grid, style in (("logsnr", ":"), ("interval", "--"), ("split", "-")):
        for r in rows(interval="interval", grid=grid, scale=3.0):
            colour = {"heun": "C0", "dpm_solver_2": "C1", "dpm_solver_pp_2m": "C2"}.get(r["method"])
            if colour:
                axes[3].loglog(r["nfe"], r["errors"], style, color=colour, label=f"{r['method']} ({grid})")
    axes[3].set(title="w = 3, interval (0.28, 5.42]", xlabel="NFE")
    for ax in axes:
        ax.axhline(0.01, color="gray", lw=0.7)
        ax.set_ylim(1e-9, 10)
        ax.legend(fontsize=6)
    axes[0].set_ylabel("RMS error / data scale")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    if "--figure" in sys.argv:
        figure(json.loads(OUT.read_text()), Path(__file__).parents[1] / "docs" / "img" / "guidance_solvers.png")
    elif "--update" in sys.argv:  # --update split|adaptive: (re)measure one part, merge it into the JSON
        torch.set_num_threads(1)
        OUT.write_text(
            json.dumps(UPDATES[sys.argv[sys.argv.index("--update") + 1]](json.loads(OUT.read_text()))) + "\n"
        )
        print(f"wrote {OUT}")
    elif "--tables" in sys.argv:
        tables(json.loads(OUT.read_text()))
    else:
        OUT.write_text(json.dumps(measure()) + "\n")
        print(f"wrote {OUT}")
