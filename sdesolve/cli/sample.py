"""``sdesolve sample``: sample the embedded 8-mode ring mixture with its exact score and score the result.

Writes ``samples.npy`` (float32 ``[n, 2]``), ``metrics.json`` and ``samples.png``. Each chunk of samples is written
to ``chunks/`` as soon as it is done, beside a ``manifest.json`` of the arguments (`sdesolve.durable`): rerunning the
same command resumes a killed run, and ``samples.npy`` is the same, byte for byte, as an uninterrupted run's. Under
torchrun the chunks are sharded over the ranks with per-sample seeds (`sdesolve.distributed`).

Metrics are against the exact p_eps (the mixture pushed through the SDE to ``eps``): mean and covariance
error, per-mode weight error, sliced Wasserstein and energy distance to an exact sample of the same size
(with the same distances between two exact samples as the Monte Carlo floor), NFE and wall time.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import typer

from .. import distributed
from .._utils import check_choice, check_int, check_positive
from ..correctors import CORRECTORS
from ..digits import check_digits_dependencies
from ..durable import atomic_open
from ..grids import GRIDS
from ..metrics import energy_distance, mixture_cov, mode_weight_errors, moment_errors, sliced_wasserstein
from ..predictors import PREDICTORS
from ..problems import ring_mixture
from ..sampling import ODE_METHODS
from ..sde import get_sde
from ..solvers.ode import LOWER_ORDER_FINAL
from ._common import check_device, fail, option, reported, writable_dir
from ._sampling import chunk_sampler, describe, run_metrics, sampler_config, seeds_text, write_metrics
from .fit_grid import read_grid
from .sample_digits import sample_digits
from .sample_guided import parse_floats, parse_labels, sample_digits_guided

DTYPES = {"float32": torch.float32, "float64": torch.float64}
EPS = 1e-3


def _metrics(x: torch.Tensor, sde, seed: int) -> dict:
    target = ring_mixture(torch.float64).marginal(sde, EPS)
    gen = torch.Generator().manual_seed(seed + 1)
    ref, ref2 = target.sample(x.shape[0], generator=gen), target.sample(x.shape[0], generator=gen)
    x = x.detach().cpu().double()
    weights = mode_weight_errors(x, target)
    return {
        **moment_errors(x, target.mean, mixture_cov(target)),
        "mode_weight_err_max": float(weights.abs().max()),
        "mode_weight_err": [round(float(w), 5) for w in weights],
        "sliced_w2": sliced_wasserstein(x, ref, generator=torch.Generator().manual_seed(seed + 2)),
        "sliced_w2_exact_floor": sliced_wasserstein(ref2, ref, generator=torch.Generator().manual_seed(seed + 2)),
        "energy_distance": energy_distance(x, ref),
        "energy_distance_exact_floor": energy_distance(ref2, ref),
    }


def _plot(x: torch.Tensor, sde, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = ring_mixture(torch.float64).marginal(sde, EPS)
    grid = torch.linspace(-3.2, 3.2, 200, dtype=torch.float64)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    logp = target.log_prob(torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)).reshape(gx.shape)
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    pts = x.detach().cpu().double()
    ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.3, color="tab:blue", label="samples")
    top = float(logp.max())
    levels = [top - k for k in (8, 6, 4, 2, 1)]  # log-density contours: light modes stay visible
    ax.contour(gx.numpy(), gy.numpy(), logp.numpy(), levels=levels, colors="k", linewidths=0.6)
    ax.set(xlim=(-3.2, 3.2), ylim=(-3.2, 3.2), aspect="equal", title="samples over exact p_eps")
    with atomic_open(path) as f:
        fig.savefig(f, format="png", bbox_inches="tight")
    plt.close(fig)


DEFAULTS = {
    # docs/fewer-steps.md, "Recommendation": iPNDM on the cosine grid up to ~20 NFE (ring RMS 0.017 at 20 NFE)
    "ring": {"method": "ipndm", "steps": 20, "grid": "cosine"},
    # docs/examples/digits.md: the multistep solvers on the logSNR grid are at the FD floor from 10 NFE
    "digits": {"method": "dpm_solver_pp_2m", "steps": 20, "grid": "logsnr"},
}
"""Each problem's default sampler (probability-flow ODE): the docs' own recommendation for it."""
PC_DEFAULTS = {"predictor": "reverse_diffusion", "corrector": "langevin", "snr": 0.16, "steps": 500}
"""The ``--pc`` defaults (score_sde's sampler)."""


def sample(
    problem: str = typer.Option("ring", help="ring (8-mode mixture, exact score) or digits (the shipped UNet)."),
    sde: str = typer.Option("vp", help="Forward SDE: vp, subvp, ve, rectified_flow, cosine or edm."),
    ode: bool = typer.Option(
        True, "--ode/--pc", help="Probability-flow ODE (default) or predictor-corrector sampling (--pc)."
    ),
    method: str | None = typer.Option(
        None, help=f"ODE method (default: ipndm for ring, dpm_solver_pp_2m for digits): {', '.join(ODE_METHODS)}."
    ),
    steps: int | None = typer.Option(None, help="Grid intervals from T to eps (default 20; 500 with --pc)."),
    grid: str | None = typer.Option(
        None,
        help=f"Grid name ({', '.join(GRIDS)}; default cosine for ring, logsnr for digits, uniform with --pc) "
        "or a JSON file from sdesolve fit-grid (its times replace --steps).",
    ),
    lower_order_final: bool = typer.Option(
        True,
        "--lower-order-final/--no-lower-order-final",
        help=f"Lower orders on the last steps of {', '.join(LOWER_ORDER_FINAL)} (diffusers' default: on).",
    ),
    predictor: str | None = typer.Option(
        None, help=f"With --pc: predictor (default reverse_diffusion): {', '.join(PREDICTORS)}."
    ),
    corrector: str | None = typer.Option(
        None, help=f"With --pc: corrector (default langevin): {', '.join(CORRECTORS)}."
    ),
    snr: float | None = typer.Option(None, help="With --pc: Langevin signal-to-noise ratio (default 0.16)."),
    n: int | None = typer.Option(
        None, "--num-samples", "--n", help="Number of samples (default 10 000 for ring, 512 for digits; --n: alias)."
    ),
    seed: int | None = typer.Option(
        None, help="Run seed (default 0): sample k is keyed by (seed, k), the same for any batch or rank."
    ),
    seeds: str | None = typer.Option(
        None, help="Every sample's own seed instead of --num-samples/--seed: ints and inclusive ranges, e.g. 0-49999."
    ),
    chunk_size: int = typer.Option(distributed.CHUNK_SIZE, help="Samples per chunk (one batch, one file)."),
    device: str = typer.Option("cpu", help="Torch device."),
    dtype: str = typer.Option("float32", help="float32 or float64."),
    threads: int | None = typer.Option(
        None, help="CPU threads for torch (default: torch's; 1 is often fastest on a busy machine)."
    ),
    out: str = typer.Option("sdesolve-out", help="Output folder for samples.npy, samples.png and metrics.json."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete a run with other arguments found in --out."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar (there is none when stderr is not a terminal)."),
    label: str | None = typer.Option(
        None, help="digits: sample the class-conditional model for this digit (0-9), a list (1,7) or 'all'."
    ),
    guidance: str = typer.Option("1.0", help="With --label: guidance scale, or a comma list for a sweep (0,1,2,4)."),
    classifier_guidance: bool = typer.Option(
        False, "--classifier-guidance", help="With --label: the noise-conditional classifier's gradient, not CFG."
    ),
    guidance_interval: str | None = typer.Option(
        None, help="With --label: guide only at noise levels sigma/alpha in (lo, hi], given as lo,hi."
    ),
) -> None:
    """Sample the 8-mode ring mixture (exact score) or the digits UNet and report metrics (ring: against p_eps).

    The defaults follow the docs' recommendation per problem: the probability-flow ODE with 20 steps of iPNDM on
    the cosine grid (ring) or DPM-Solver++(2M) on the logSNR grid (digits). Each finished chunk is stored in
    the output folder at once; rerunning the same command resumes a killed run. Under torchrun the chunks are
    sharded over the ranks and rank 0 writes the same outputs as one process.
    """
    sde_obj = option("--sde", get_sde, sde)
    option("--dtype", check_choice, "dtype", dtype, tuple(DTYPES))
    problem = option("--problem", check_choice, "problem", problem, ("ring", "digits"))
    seed_list = None
    if seeds is not None:
        if n is not None or seed is not None:
            fail("--seeds: give --seeds, or --num-samples with --seed, not both")
        seed_list = option("--seeds", distributed.parse_seeds, seeds)
    else:
        seed = 0 if seed is None else seed
        n = DEFAULT_N[problem] if n is None else option("--num-samples", check_int, "num_samples", n)
    option("--chunk-size", check_int, "chunk_size", chunk_size)
    if threads is not None:
        torch.set_num_threads(option("--threads", check_int, "threads", threads))
    if steps is not None:
        option("--steps", check_int, "steps", steps)
    if ode:
        given = [flag for flag, value in (("--predictor", predictor), ("--corrector", corrector), ("--snr", snr))
                 if value is not None]  # fmt: skip
        if given:
            fail(f"{', '.join(given)} apply to predictor-corrector sampling: add --pc (the default is the ODE)")
        method = option("--method", check_choice, "method", DEFAULTS[problem]["method"] if method is None else method,
                        ODE_METHODS)  # fmt: skip
        steps = DEFAULTS[problem]["steps"] if steps is None else steps
        grid = DEFAULTS[problem]["grid"] if grid is None else grid
        lower_order_final = lower_order_final and method in LOWER_ORDER_FINAL
    else:
        if method is not None:
            fail(f"--method {method} is an ODE method: drop --pc (the ODE is the default) or choose --predictor")
        predictor = option("--predictor", check_choice, "predictor", predictor or PC_DEFAULTS["predictor"],
                           tuple(PREDICTORS))  # fmt: skip
        corrector = option("--corrector", check_choice, "corrector", corrector or PC_DEFAULTS["corrector"],
                           tuple(CORRECTORS))  # fmt: skip
        snr = option("--snr", check_positive, "snr", PC_DEFAULTS["snr"] if snr is None else snr, strict=False)
        steps = PC_DEFAULTS["steps"] if steps is None else steps
        grid = "uniform" if grid is None else grid
        lower_order_final = False
    if grid not in GRIDS and not Path(grid).is_file():
        fail(f"--grid: {grid!r} is neither a grid name ({', '.join(GRIDS)}) nor a file from sdesolve fit-grid")
    torch_device = check_device("--device", device)
    guided = _guided_options(problem, label, guidance, classifier_guidance, guidance_interval)
    if problem == "digits":
        with reported((ImportError,)):
            check_digits_dependencies()
    out = writable_dir("--out", out)
    if grid not in GRIDS:  # a fitted grid file: its times, and the lower_order_final it was fitted with
        if guided is not None:
            fail(
                "--grid FILE applies to unconditional sampling; the class-conditional path (--label) takes a grid name"
            )
        grid, record = read_grid("--grid", grid, sde_obj, method if ode else predictor, problem)
        steps, lower_order_final = len(grid) - 1, bool(record.get("lower_order_final", False))
    solver = dict(ode=ode, method=method, predictor=predictor, corrector=corrector, steps=steps, snr=snr, eps=EPS,
                  grid=grid, lower_order_final=lower_order_final)  # fmt: skip
    if guided is not None:
        if seed_list is not None:
            fail("--seeds applies to unconditional sampling; the class-conditional path (--label) takes --seed")
        with reported((ValueError, TypeError, RuntimeError, FloatingPointError, OSError)):
            sample_digits_guided(**guided, **solver, sde=sde, n=n, seed=seed, device=str(torch_device),
                                 dtype=DTYPES[dtype], out=out)  # fmt: skip
        return
    config = sampler_config(sde=sde, dtype=dtype, device=str(torch_device), **solver)
    run = dict(n=n, seed=seed, seeds=seed_list, chunk_size=chunk_size, out=out, overwrite=overwrite, quiet=quiet)
    with distributed.process_group("nccl" if torch_device.type == "cuda" else "gloo"):
        with reported((ValueError, TypeError, RuntimeError, FloatingPointError, OSError)):
            device_here = distributed.local_device(str(torch_device))
            if problem == "digits":
                sample_digits(sde_obj, config, solver, device=device_here, dtype=DTYPES[dtype], **run)
            else:
                _sample_ring(sde_obj, config, solver, device=device_here, dtype=DTYPES[dtype], **run)


DEFAULT_N = {"ring": 10_000, "digits": 512}


def _guided_options(problem, label, guidance, classifier_guidance, guidance_interval) -> dict | None:
    """The class-conditional options, validated (None without ``--label``)."""
    if label is None:
        if guidance != "1.0" or classifier_guidance or guidance_interval is not None:
            fail("--guidance, --classifier-guidance and --guidance-interval need --label (class-conditional digits)")
        return None
    if problem != "digits":
        fail(f"--label needs --problem digits (the class-conditional digits model), got --problem {problem}")
    interval = None if guidance_interval is None else option("--guidance-interval", parse_floats,
                                                                "--guidance-interval", guidance_interval, 2)  # fmt: skip
    if interval is not None and not interval[0] < interval[1]:
        fail(f"--guidance-interval must be lo,hi with lo < hi, got {guidance_interval!r}")
    return {"labels": option("--label", parse_labels, label),
            "scales": option("--guidance", parse_floats, "--guidance", guidance),
            "classifier": classifier_guidance, "interval": None if interval is None else tuple(interval)}  # fmt: skip


def _sample_ring(sde_obj, config: dict, solver: dict, *, device: str, dtype: torch.dtype, n, seed, seeds, chunk_size,
                 out: Path, overwrite: bool, quiet: bool) -> None:  # fmt: skip
    """Sample the ring into ``out`` (resuming what is there); on rank 0 write metrics.json and samples.png."""
    score_fn = ring_mixture(dtype, device=device).score_fn(sde_obj)
    sampler = chunk_sampler(sde_obj, score_fn, (2,), device=device, dtype=dtype, **solver)
    config = {"problem": "ring", **config}
    stored = distributed.sample(sampler, n, seed=seed, seeds=seeds, chunk_size=chunk_size, out_dir=out,
                                config=config, overwrite=overwrite, progress=not quiet)  # fmt: skip
    if stored is None:  # not rank 0
        return
    x = torch.from_numpy(np.array(stored.array()))
    metrics = {**_metrics(x, sde_obj, 0 if seed is None else seed), **run_metrics(stored)}
    write_metrics(
        out, {**config, "n": stored.num_samples, **seeds_text(seed, seeds), "chunk_size": chunk_size}, metrics
    )
    _plot(x, sde_obj, out / "samples.png")
    _report(config, stored, metrics, out)


def _report(config: dict, stored, metrics: dict, out: Path) -> None:
    """The summary on stdout."""
    typer.echo(f"sdesolve sample: ring mixture (8 modes), {describe(config)}, n={stored.num_samples}")
    rows = [
        ("mean error ‖x̄-μ‖", metrics["mean_err"]),
        ("covariance error (rel. Frobenius)", metrics["cov_err"]),
        ("max per-mode weight error", metrics["mode_weight_err_max"]),
        ("sliced W2 to exact sample", metrics["sliced_w2"]),
        ("  (exact vs exact floor)", metrics["sliced_w2_exact_floor"]),
        ("energy distance to exact sample", metrics["energy_distance"]),
        ("  (exact vs exact floor)", metrics["energy_distance_exact_floor"]),
        ("NFE", metrics["nfe"]),
        ("wall time [s]", metrics["wall_s"]),
        ("chunks reused", metrics["chunks_reused"]),
    ]
    for name, value in rows:
        typer.echo(f"  {name:<36s} {value:>10d}" if isinstance(value, int) else f"  {name:<36s} {value:>10.4g}")
    typer.echo(f"wrote {out / 'samples.npy'}, {out / 'metrics.json'} and {out / 'samples.png'}")
    sys.stdout.flush()
