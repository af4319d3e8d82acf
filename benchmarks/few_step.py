r"""Error against NFE for every fixed-step ODE sampler: ``python -m benchmarks.few_step [--out DIR]``.

- **VP Gaussian** (``gaussian_data(2)``, N(0.3, 0.5²)): every fixed-step solver is affine in its start for affine
  scores, $y = a x_T + b$; two probes give $a, b$, so mean and variance at eps follow exactly from the exact
  $p_T$: $m = a m_T + b$, $v = a^2 v_T$. Error = max(|v/v_eps − 1|, |m − m_eps|/√v_eps): no Monte Carlo error.
- **Ring mixture** (VP and VE): RMS distance to the flow map of the same prior samples (Dormand–Prince at
  rtol = atol = 1e-11) and the energy distance to an exact sample of p_eps, beside its floor (`energy_floor`).

Settings are the same for every problem: the logSNR and the cosine grid (`GRIDS`) for the few-step solvers, the
uniform t grid and the logSNR grid for euler/heun/rk4; k-diffusion's DPM-Solver++(3M) (``sample_dpmpp_3m_sde``, eta = 0) as an anchor.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from sdesolve import VPSDE, get_sde, ode_sample
from sdesolve.grids import make_grid
from sdesolve.metrics import energy_distance
from sdesolve.problems import gaussian_data, ring_mixture
from sdesolve.solvers.ode import FEW_STEP, LOWER_ORDER_FINAL
from sdesolve.verify.few_step import affine_law_error

from ._kdiffusion import load_sampling, run_on_flow

EPS = 1e-3
STEPS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 128, 160, 192, 256)
NFE_TARGETS = (5, 10, 20, 40, 80, 160)
LOF = "+lower_order_final"
GRIDS = ("logsnr", "cosine")
"""Grids of the few-step solvers, the same on every problem: uniform in λ, and the cosine grid with σ_d = 1 (uniform
in arctan σ̃; σ_d = 0.5 and 2 were measured too: worse for every solver but UniPC-2, see docs/fewer-steps.md)."""
PER_STEP = {"euler": 1, "heun": 2, "rk4": 4, "ddim": 1, "edm_heun": 2, "dpm_solver_2": 2, "dpm_solver_3": 3}
PER_STEP |= {"dpm_solver_pp_2s": 2}


def samplers(grids: tuple[str, ...] = GRIDS) -> list[tuple[str, str, str]]:
    """(label, method, grid) of every sampler compared (the anchor's method is ``"kd:<sampler>"``): the few-step
    solvers on each of ``grids``, euler/heun/rk4 on the uniform t grid and the first of ``grids``."""
    rows = [(f"{m} ({grid})", m, grid) for grid in grids for m in FEW_STEP]
    rows += [(f"{m} ({grid}, lower_order_final)", f"{m}{LOF}", grid) for grid in grids for m in LOWER_ORDER_FINAL]
    rows += [(f"{m} (uniform t)", m, "uniform") for m in ("euler", "heun", "rk4")]
    rows += [(f"{m} ({grids[0]})", m, grids[0]) for m in ("euler", "heun", "rk4")]
    if load_sampling() is not None:
        rows.append((f"k-diffusion dpmpp_3m ({grids[0]})", "kd:sample_dpmpp_3m_sde", grids[0]))
    return rows


def _solve(
    sde, score, method: str, grid: str, steps: int, x_t: torch.Tensor, eps: float = EPS
) -> tuple[torch.Tensor, int]:
    """``method`` may end in `LOF` (with ``lower_order_final``) or start with ``"kd:"`` (k-diffusion's sampler)."""
    if method.startswith("kd:"):
        t_grid = make_grid(grid, sde, steps, eps, dtype=torch.float64)
        sampler = getattr(load_sampling(), method[3:])
        return run_on_flow(sampler, sde, score, t_grid, x_t, eta=0.0, noise_sampler=lambda a, b: None), steps
    lof = method.endswith(LOF)
    y, info = ode_sample(
        sde, score, x_t.shape, method=method.removesuffix(LOF), steps=steps, grid=grid, eps=eps, x_init=x_t,
        lower_order_final=lof, return_info=True,
    )  # fmt: skip
    return y, info["nfe"]


def gaussian_errors(
    label: str, method: str, grid: str, sde=None, eps: float = EPS, steps: tuple[int, ...] = STEPS
) -> list[dict]:
    """Exact mean/variance error of the Gaussian N(0.3, 0.5²) at each step count of ``steps`` (default: VP)."""
    sde, data = sde or VPSDE(), gaussian_data(2, dtype=torch.float64)
    score = data.score_fn(sde)
    p_t, p_eps = data.marginal(sde, sde.T), data.marginal(sde, eps)
    probes = torch.stack([torch.zeros(2), torch.ones(2)]).to(torch.float64)
    rows = []
    for n in steps:
        y, nfe = _solve(sde, score, method, grid, n, probes, eps)
        rows.append({"sampler": label, "steps": n, "nfe": nfe, "error": affine_law_error(y, p_t, p_eps)})
    return rows


def nfe_to(rows: list[dict], level: float) -> int | None:
    """The smallest NFE from which every larger NFE measured stays at or below ``level``."""
    best = None
    for r in sorted(rows, key=lambda r: -r["nfe"]):
        if r["error"] > level:
            break
        best = r["nfe"]
    return best


def mixture_errors(
    sde_name: str, label: str, method: str, grid: str, n: int = 2000, targets: tuple[int, ...] = NFE_TARGETS
) -> list[dict]:
    """RMS distance to the reference flow and energy distance to an exact sample, at ``targets`` NFE."""
    sde = get_sde(sde_name)
    data = ring_mixture(dtype=torch.float64)
    score = data.score_fn(sde)
    x_t = sde.prior_sampling((n, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = _reference(sde_name, sde, score, x_t)
    exact = data.marginal(sde, EPS).sample(n, generator=torch.Generator().manual_seed(1))
    per_step = 1 if method.startswith("kd:") else PER_STEP.get(method, 1)
    rows = []
    for target in targets:
        steps = max(1, round(target / per_step))
        y, nfe = _solve(sde, score, method, grid, steps, x_t)
        rms = float((y - ref).pow(2).sum(1).mean().sqrt())
        rows.append({"sde": sde_name, "sampler": label, "nfe": nfe, "rms": rms, "energy": energy_distance(y, exact)})
    return rows


_REFS: dict[str, torch.Tensor] = {}


def _reference(name, sde, score, x_t) -> torch.Tensor:
    if name not in _REFS:
        _REFS[name] = ode_sample(sde, score, x_t.shape, method="dopri5", rtol=1e-11, atol=1e-11, eps=EPS, x_init=x_t)
    return _REFS[name]


def energy_floor(sde_name: str, n: int = 2000, repeats: int = 20) -> dict:
    """The Monte Carlo floor of the energy distance to the exact sample of `mixture_errors` (seed 1): the exact flow
    map of the same prior samples (what a perfect solver scores), and the mean and standard deviation over
    ``repeats`` independent exact samples of p_eps."""
    sde = get_sde(sde_name)
    data = ring_mixture(dtype=torch.float64)
    law = data.marginal(sde, EPS)
    exact = law.sample(n, generator=torch.Generator().manual_seed(1))
    x_t = sde.prior_sampling((n, 2), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    others = torch.tensor(
        [
            energy_distance(law.sample(n, generator=torch.Generator().manual_seed(100 + k)), exact)
            for k in range(repeats)
        ]
    )
    return {
        "exact_flow": energy_distance(_reference(sde_name, sde, data.score_fn(sde), x_t), exact),
        "exact_samples_mean": float(others.mean()),
        "exact_samples_std": float(others.std()),
    }


def _nearest(rows: list[dict], nfe: int) -> dict:
    """The row whose NFE is closest to ``nfe``."""
    return min(rows, key=lambda r: abs(r["nfe"] - nfe))


def _plot(gauss: list[dict], mix: list[dict], path: Path) -> None:
    """Error against NFE, one line per sampler: colour by method, line style by grid (and lower_order_final)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 8))
    labels = list(dict.fromkeys(r["sampler"] for r in gauss))
    methods = list(dict.fromkeys(label.split(" (")[0] for label in labels))
    for label in labels:
        method, variant = label.split(" (")[0], label.partition(" (")[2]
        ls = ":" if "lower_order_final" in variant else "--" if variant.startswith("cosine") else "-"
        color = plt.cm.tab20(methods.index(method) % 20)
        style = {"color": color, "ls": ls, "marker": "o", "ms": 2.5, "lw": 1.2, "label": label}
        rs = [r for r in gauss if r["sampler"] == label and r["error"] > 0]
        axes[0].loglog([r["nfe"] for r in rs], [r["error"] for r in rs], **style)
        for ax, sde in zip(axes[1:], ("vp", "ve"), strict=True):
            ms = [r for r in mix if r["sampler"] == label and r["sde"] == sde]
            ax.loglog([r["nfe"] for r in ms], [r["rms"] for r in ms], **style)
    axes[0].axhline(1e-2, color="k", lw=0.5)
    axes[0].axhline(1e-3, color="k", lw=0.5)
    axes[0].set(xlabel="NFE", ylabel="max(|var err|, |mean err|/std)", title="VP Gaussian (exact)", xlim=(1, 600))
    for ax, sde in zip(axes[1:], ("VP", "VE"), strict=True):
        ax.set(xlabel="NFE", ylabel="RMS distance to the exact flow", title=f"{sde} ring mixture", ylim=(1e-5, 10))
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.3, 1, 1))
    fig.savefig(path, dpi=64)
    plt.close(fig)
    from PIL import Image  # matplotlib's own dependency: a 64-colour palette keeps the committed figure small

    Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.few_step", description=__doc__)
    parser.add_argument("--out", type=Path, default=None, help="folder for few_step.json and fewer_steps.png")
    parser.add_argument(
        "--grids",
        default=",".join(GRIDS),
        help="comma-separated grids of the few-step solvers (logsnr, cosine, karras)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gauss, mix, summary = [], [], []
    for label, method, grid in samplers(tuple(args.grids.split(","))):
        g = gaussian_errors(label, method, grid)
        m = mixture_errors("vp", label, method, grid) + mixture_errors("ve", label, method, grid)
        gauss += g
        mix += m
        row = {"sampler": label, "nfe_1%": nfe_to(g, 1e-2), "nfe_0.1%": nfe_to(g, 1e-3)}
        for sde in ("vp", "ve"):
            at10, at20 = (_nearest([r for r in m if r["sde"] == sde], k) for k in (10, 20))
            row[f"{sde}_rms@10"], row[f"{sde}_rms@20"] = at10["rms"], at20["rms"]
            row[f"{sde}_energy@20"], row[f"{sde}_nfe@20"] = at20["energy"], at20["nfe"]
        summary.append(row)
        print(json.dumps(row), flush=True)
    floors = {sde: energy_floor(sde) for sde in ("vp", "ve")}
    print("energy floors", floors)
    result = {"gaussian": gauss, "mixture": mix, "summary": summary, "energy_floor": floors}
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "few_step.json").write_text(json.dumps(result, indent=1))
        _plot(gauss, mix, args.out / "fewer_steps.png")
    return result


if __name__ == "__main__":
    main()
