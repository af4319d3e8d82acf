r"""Fitted grids against fixed ones, on held-out seeds: ``python -m benchmarks.fitted_grids [--out DIR]``.

For each problem (VP SDE) and NFE budget, the method's grids are scored on held-out starts, keyed by seeds that
the fits never saw:

- fixed: ``logsnr``, ``cosine``, ``karras`` (ρ = 7), and ``ays``, the published Align Your Steps shape (Sabour et
  al. 2024, Table 3, Stable Diffusion 1.5's 10 noise levels). Its log-levels are mapped affinely onto the SDE's
  range and interpolated piecewise-linearly to the step count, as the AYS authors' ``loglinear_interp`` does;
- fitted on calibration seeds: ``fit:reference`` (the sampler's RMS error against a dopri5 solve) and
  ``fit:klub`` (AYS's KL bound; data: exact samples of the problem, or the training digits);
- ``bound``: the reference fit run on the held-out starts themselves, scored on the same starts. It is the
  in-sample figure of `benchmarks.grid_bound`, a floor for honest fits that no fixed-step grid of the method
  reaches on these starts.

Scores: the RMS distance to the exact flow of the held-out starts (ring and digits: dopri5 at 1e-10 in float64,
and at 1e-5 for the float32 UNet; Gaussian: `Gaussian.flow`). For the Gaussian, also the exact moment error
max(|var/var_eps − 1|, |mean error|/std). For the digits, also the Fréchet distance of the 297 held-out samples
with its floor (`sdesolve.digits.digits_metrics`), and that of their exact flow (the row ``exact``). Every fit reports its cost in score evaluations and in CPU
seconds of its process (one torch thread; wall time on a shared machine says little).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sdesolve import VPSDE, ode_sample
from sdesolve.fit_grid import fit_grid, grid_rms, steps_for_nfe
from sdesolve.grids import make_grid
from sdesolve.problems import gaussian_data, ring_mixture
from sdesolve.solvers.seeded import KeyedNormal

EPS = 1e-3
NFES = (4, 6, 8, 10, 20)
FIXED = ("logsnr", "cosine", "karras", "ays")
FITTED = ("fit:reference", "fit:klub", "bound")
AYS_SD15 = (14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029)
"""Align Your Steps' optimised 10-step noise levels for Stable Diffusion 1.5 (Sabour et al. 2024, Table 3)."""


def ays_grid(sde: VPSDE, steps: int, eps: float) -> torch.Tensor:
    """The AYS shape on ``sde``: its log-levels mapped affinely onto [log σ̃(eps), log σ̃(T)] and interpolated
    log-linearly to ``steps`` intervals (the AYS authors' ``loglinear_interp``)."""
    logs = np.log(AYS_SD15)
    shape = (logs - logs[-1]) / (logs[0] - logs[-1])  # 1 at the top, 0 at the bottom
    resampled = np.interp(np.linspace(0, 1, steps + 1), np.linspace(0, 1, len(shape)), shape)
    hi, lo = sde.noise_level(torch.tensor([sde.T, eps], dtype=torch.float64)).log().tolist()
    t = sde.inverse_noise_level(torch.tensor(np.exp(lo + resampled * (hi - lo)), dtype=torch.float64))
    t[0], t[-1] = sde.T, eps
    return t


@dataclass
class Problem:
    """One benchmark problem: the SDE, score, event shape and dtype, the seeds, and how to score a run."""

    name: str
    score: object
    event: tuple[int, ...]
    dtype: torch.dtype
    calibration: list[int]
    held: list[int]
    data: torch.Tensor  # the KL bound's data samples, one per calibration seed
    reference: torch.Tensor | None = None
    x_held: torch.Tensor | None = None
    extra: object = None  # extra(y) -> dict of further scores


def _start(problem: Problem, sde: VPSDE) -> None:
    """The held-out starts (as ``ode_sample(seeds=held)`` draws them) and their reference end points."""
    x = KeyedNormal(torch.tensor(problem.held)).prior(sde, (len(problem.held), *problem.event), problem.dtype)
    problem.x_held = x
    if problem.reference is None:
        tol = 1e-10 if problem.dtype == torch.float64 else 1e-5
        with torch.no_grad():
            problem.reference = ode_sample(sde, problem.score, x.shape, method="dopri5", rtol=tol, atol=tol, x_init=x)


def problems(names: list[str], sizes: dict) -> list[Problem]:
    """The problems by name (``ring``, ``gaussian``, ``digits``) at ``sizes[name] = (calibration, held-out)``."""
    sde, out = VPSDE(), []
    for name in names:
        n_cal, n_held = sizes[name]
        cal, held = list(range(n_cal)), list(range(1_000_000, 1_000_000 + n_held))
        gen = torch.Generator().manual_seed(0)
        if name == "ring":
            target = ring_mixture(torch.float64)
            p = Problem(name, target.score_fn(sde), (2,), torch.float64, cal, held, target.sample(n_cal, generator=gen))
        elif name == "gaussian":
            target = gaussian_data(2, dtype=torch.float64)
            p = Problem(name, target.score_fn(sde), (2,), torch.float64, cal, held, target.sample(n_cal, generator=gen))
            p.extra = _moment_error(sde, target)
        else:
            from sdesolve.digits import digits_metrics, load_digits_data, load_digits_model, to_model_scale

            model = load_digits_model()
            data = to_model_scale(load_digits_data().train[:n_cal], generator=gen)
            p = Problem(name, model.score_fn(sde), (1, 8, 8), torch.float32, cal, held, data)
            p.extra = lambda y, m=model: {
                k: v
                for k, v in digits_metrics(y, m.classifier).items()
                if k in ("frechet_distance", "frechet_distance_floor")
            }
        if name == "gaussian":
            x = KeyedNormal(torch.tensor(held)).prior(sde, (n_held, 2), torch.float64)
            p.reference = target.flow(sde, x, sde.T, EPS)
        _start(p, sde)
        out.append(p)
    return out


def _moment_error(sde: VPSDE, data):
    """Exact moment error of an affine sampler: two probes of the run give y = a x_T + b (`benchmarks.few_step`)."""

    def extra(y, run) -> dict:
        probes = torch.stack([torch.zeros(2), torch.ones(2)]).to(torch.float64)
        z = run(probes)
        a, b = z[1] - z[0], z[0]
        p_t, p_eps = data.marginal(sde, sde.T), data.marginal(sde, EPS)
        mean, var = a * p_t.mean + b, a**2 * p_t.std**2
        err = max(float((var / p_eps.std**2 - 1).abs().max()), float(((mean - p_eps.mean).abs() / p_eps.std).max()))
        return {"moment_error": err}

    return extra


def _score(problem: Problem, sde: VPSDE, method: str, grid: torch.Tensor) -> dict:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return ode_sample(sde, problem.score, x.shape, method=method, grid=grid, eps=EPS, x_init=x,
                              check_finite=False)  # fmt: skip

    y = run(problem.x_held)
    row = {"rms": grid_rms(y, problem.reference)}
    if problem.name == "gaussian":
        row |= problem.extra(y, run)
    elif problem.extra is not None and bool(torch.isfinite(y).all()):
        row |= problem.extra(y)
    return row


def _fit(problem: Problem, sde: VPSDE, method: str, nfe: int, kind: str) -> tuple[torch.Tensor, dict]:
    seeds = problem.held if kind == "bound" else problem.calibration
    kw = {"objective": "klub", "data": problem.data} if kind == "fit:klub" else {}
    start, cpu = time.perf_counter(), time.process_time()
    with torch.no_grad():
        grid, info = fit_grid(sde, problem.score, method, nfe, shape=(len(seeds), *problem.event),
                              calibration_seeds=seeds, dtype=problem.dtype, return_info=True, **kw)  # fmt: skip
    cost = {"fit_score_evaluations": info["score_evaluations"], "fit_s": round(time.perf_counter() - start, 1),
            "fit_cpu_s": round(time.process_time() - cpu, 1),
            "fit_init": info["init"], "fit_initial": info["initial"], "fit_value": info["value"]}  # fmt: skip
    return grid, cost


def run(problem: Problem, method: str, nfes: tuple[int, ...], fits: tuple[str, ...] = FITTED) -> list[dict]:
    """Every grid of `FIXED` and the ``fits`` of `FITTED` at every NFE of ``nfes``, scored on the held-out starts."""
    sde, rows = VPSDE(), []
    if problem.name == "digits":  # the exact flow's own Fréchet distance: the model's floor at this n
        rows.append({"problem": problem.name, "method": method, "grid": "exact"} | problem.extra(problem.reference))
        print(json.dumps(rows[-1]), flush=True)
    for nfe in nfes:
        steps = steps_for_nfe(sde, method, nfe, eps=EPS)
        grids = {name: make_grid(name, sde, steps, EPS, dtype=torch.float64) for name in FIXED[:3]}
        grids["ays"] = ays_grid(sde, steps, EPS)
        costs = {}
        for kind in fits:
            grids[kind], costs[kind] = _fit(problem, sde, method, nfe, kind)
        for name, grid in grids.items():
            row = {"problem": problem.name, "method": method, "nfe": nfe, "steps": steps, "grid": name}
            rows.append(row | _score(problem, sde, method, grid) | costs.get(name, {}))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict], problem: str, key: str = "rms") -> str:
    """A markdown table: one row per grid, one column per NFE, cells ``key`` (fits: with their cost)."""
    rs = [r for r in rows if r["problem"] == problem and "nfe" in r]
    nfes = sorted({r["nfe"] for r in rs})
    head = f"| grid | {' | '.join(f'{n} NFE' for n in nfes)} |\n|---|{'---|' * len(nfes)}\n"
    lines = []
    for grid in FIXED + FITTED:
        cells = []
        for n in nfes:
            r = next((r for r in rs if r["grid"] == grid and r["nfe"] == n), None)
            if r is None or key not in r:
                cells.append("–")
                continue
            cell = f"{r[key]:.3g}"
            if "fit_score_evaluations" in r and key == "rms":
                cell += f" ({r['fit_score_evaluations'] / 1e6:.2g}M, {r['fit_cpu_s']:.0f} s)"
            cells.append(cell)
        lines.append(f"| {grid} | {' | '.join(cells)} |")
    return head + "\n".join(lines) + "\n"


TITLES = {"ring": "VP ring mixture", "gaussian": "VP Gaussian N(0.3, 0.5²) in 2-D", "digits": "digits UNet (VP)"}


def report(rows: list[dict]) -> str:
    """The markdown tables of every problem in ``rows``: held-out RMS, and the Gaussian's moment error and the
    digits' Fréchet distance."""
    parts = []
    for p in dict.fromkeys(r["problem"] for r in rows):
        method = next(r["method"] for r in rows if r["problem"] == p)
        parts.append(f"**{TITLES[p]}**, {method}: held-out RMS to the exact flow (fits: millions of score "
                     f"evaluations, CPU seconds)\n\n{table(rows, p)}")  # fmt: skip
        if p == "gaussian":
            head = f"**{TITLES[p]}**: exact moment error max(|var/var_eps − 1|, |mean error|/std)"
            parts.append(f"{head}\n\n{table(rows, p, 'moment_error')}")
        if p == "digits":
            floor = next(r["frechet_distance_floor"] for r in rows if "frechet_distance_floor" in r)
            exact = next((f", the exact flow's {r['frechet_distance']:.2f}" for r in rows if r["grid"] == "exact"), "")
            head = (f"**{TITLES[p]}**: Fréchet distance of the 297 held-out samples (held-out data's floor "
                    f"{floor:.2f}{exact})")  # fmt: skip
            parts.append(f"{head}\n\n{table(rows, p, 'frechet_distance')}")
    return "\n".join(parts)


def plot(rows: list[dict], path: Path) -> None:
    """RMS to the exact flow against NFE, one panel per problem, one line per grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    names = list(dict.fromkeys(r["problem"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False)
    styles = {"fit:reference": "-", "fit:klub": "-.", "bound": ":"}
    for ax, name in zip(axes[0], names, strict=True):
        for i, grid in enumerate(FIXED + FITTED):
            rs = sorted((r for r in rows if r["problem"] == name and r["grid"] == grid), key=lambda r: r["nfe"])
            ax.semilogy([r["nfe"] for r in rs], [r["rms"] for r in rs], styles.get(grid, "--"), marker="o", ms=3,
                        color=plt.cm.tab10(i), label=grid)  # fmt: skip
        ax.set(xlabel="NFE", ylabel="held-out RMS to the exact flow", title=f"{name} (VP, {rows[0]['method']})")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    Image.open(path).convert("RGB").quantize(64).save(path, optimize=True)


def calibration_study(settings=((256, 400), (256, 2000), (1024, 400), (1024, 2000)), nfe: int = 10) -> list[dict]:
    """Calibration size and evaluation budget against held-out error: the VP ring, iPNDM at ``nfe``, fitted on
    ``n`` seeds with ``max_evals`` sampler runs, scored on the 2000 held-out seeds of `run`."""
    sde, rows = VPSDE(), []
    (ring,) = problems(["ring"], {"ring": (1, 2000)})
    for n, evals in settings:
        grid, info = fit_grid(sde, ring.score, "ipndm", nfe, shape=(n, 2), calibration_seeds=range(n),
                              dtype=torch.float64, max_evals=evals, return_info=True)  # fmt: skip
        rows.append({"calibration": n, "max_evals": evals, "calibration_rms": info["value"]} |
                    _score(ring, sde, "ipndm", grid))  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    return rows


SIZES = {"ring": (1024, 2000), "gaussian": (256, 2000), "digits": (64, 297)}


def main(argv: list[str] | None = None, sizes: dict | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fitted_grids", description=__doc__)
    parser.add_argument("--problems", default="ring,gaussian,digits")
    parser.add_argument("--method", default="ipndm")
    parser.add_argument("--nfes", default=",".join(map(str, NFES)))
    parser.add_argument("--fits", default=",".join(FITTED), help="which fitted grids: " + ", ".join(FITTED))
    parser.add_argument("--sizes", default=None, help="calibration,held-out sizes for every problem, e.g. 64,297")
    parser.add_argument("--out", type=Path, default=None, help="folder for fitted_grids.json/.md and the plot")
    parser.add_argument("--plot", type=Path, default=None, help="the plot's path (default: in --out)")
    parser.add_argument("--study", action="store_true", help="only the calibration-size/budget study (ring)")
    parser.add_argument(
        "--rows",
        nargs="+",
        type=Path,
        default=None,
        help="render the tables and plot of saved fitted_grids.json files instead of running",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.study:
        return calibration_study()
    nfes = tuple(int(n) for n in args.nfes.split(","))
    rows = [] if args.rows is None else [r for path in args.rows for r in json.loads(path.read_text())]
    names = args.problems.split(",")
    if args.sizes is not None:
        sizes = {name: tuple(int(k) for k in args.sizes.split(",")) for name in names}
    fits = tuple(args.fits.split(","))
    for problem in problems(names, sizes or SIZES) if args.rows is None else ():
        rows += run(problem, args.method, nfes, fits)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "fitted_grids.json").write_text(json.dumps(rows, indent=1) + "\n")
        (args.out / "fitted_grids.md").write_text(report(rows))
        plot(rows, args.plot or args.out / "fitted_grids.png")
    return rows


if __name__ == "__main__":
    main()
