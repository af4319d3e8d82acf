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
from ..durable import atomic_open
from ..metrics import energy_distance, mixture_cov, mode_weight_errors, moment_errors, sliced_wasserstein
from ..predictors import PREDICTORS
from ..problems import ring_mixture
from ..sampling import ODE_METHODS
from ..sde import get_sde
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


def sample(
    problem: str = typer.Option("ring", help="ring (8-mode mixture, exact score) or digits (the shipped UNet)."),
    sde: str = typer.Option("vp", help="Forward SDE: vp, subvp, ve, rectified_flow, cosine or edm."),
    predictor: str = typer.Option("reverse_diffusion", help=f"Predictor: {', '.join(PREDICTORS)}."),
    corrector: str = typer.Option("langevin", help=f"Corrector: {', '.join(CORRECTORS)}."),
    steps: int = typer.Option(500, help="Grid intervals from T to eps (fixed-step ODE methods too)."),
    snr: float = typer.Option(0.16, help="Langevin signal-to-noise ratio."),
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
    ode: bool = typer.Option(False, "--ode", help="Integrate the probability-flow ODE instead of PC sampling."),
    method: str = typer.Option("dopri5", help=f"ODE method with --ode: {', '.join(ODE_METHODS)}."),
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
    grid: str | None = typer.Option(
        None,
        help="A grid from `sdesolve fit-grid` (JSON): sample on its times "
        "(replaces --steps; the file must match --problem, --sde and the method).",
    ),
) -> None:
    """Sample the 8-mode ring mixture (exact score) or the digits UNet and report metrics (ring: against p_eps).

    Each finished chunk is stored in ``--out`` at once; rerunning the same command resumes a killed run. Under
    ``torchrun --nproc_per_node=N`` the chunks are sharded over the ranks (`sdesolve.distributed`) and rank 0
    writes the same outputs as one process.
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
    option("--steps", check_int, "steps", steps)
    option("--snr", check_positive, "snr", snr, strict=False)
    if ode:
        option("--method", check_choice, "method", method, ODE_METHODS)
    else:
        option("--predictor", check_choice, "predictor", predictor, tuple(PREDICTORS))
        option("--corrector", check_choice, "corrector", corrector, tuple(CORRECTORS))
    torch_device = check_device("--device", device)
    guided = _guided_options(problem, label, guidance, classifier_guidance, guidance_interval)
    out = writable_dir("--out", out)
    if guided is not None:
        if grid is not None or seeds is not None:
            fail("--grid and --seeds apply to unconditional sampling; the class-conditional path (--label) takes "
                 "--steps, --num-samples and --seed")  # fmt: skip
        with reported((ValueError, TypeError, RuntimeError, FloatingPointError, OSError)):
            sample_digits_guided(**guided, sde=sde, predictor=predictor, corrector=corrector, steps=steps, snr=snr,
                                 n=n, seed=seed, device=str(torch_device), dtype=DTYPES[dtype], ode=ode,
                                 method=method, eps=EPS, out=out)  # fmt: skip
        return
    times = None if grid is None else read_grid("--grid", grid, sde_obj, method if ode else predictor, problem)
    steps = steps if times is None else len(times) - 1
    solver = dict(ode=ode, method=method, predictor=predictor, corrector=corrector, steps=steps, snr=snr, eps=EPS,
                  grid=times)  # fmt: skip
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
