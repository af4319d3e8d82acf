"""``sdesolve sample --problem digits``: sample the shipped digits UNet and score the samples.

Writes ``samples.png`` (a grid), ``samples.npy`` (float32 ``[n, 1, 8, 8]`` in model scale) and ``metrics.json``:
the Fréchet distance to the training digits in the shipped classifier's feature space with its held-out floor,
the label histogram, NFE and wall time (`sdesolve.digits.digits_metrics`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import typer

from ..digits import MODEL_SDES, check_digits_dependencies, digits_metrics, load_digits_model, save_grid, weights_path
from ..sde import get_sde
from ._progress import score_progress
from ._run import dtype_name, run_config, run_sampler

DEFAULT_N = 512


def sample_digits(
    *,
    sde: str,
    ode: bool,
    method: str | None,
    steps: int,
    grid: str | torch.Tensor,
    lower_order_final: bool,
    predictor: str | None,
    corrector: str | None,
    snr: float | None,
    n: int | None,
    seed: int,
    device: str,
    dtype: torch.dtype,
    eps: float,
    out: Path,
) -> dict:
    """Sample ``n`` digits (default 512) with any ODE method or predictor/corrector; write PNG, npy and metrics.

    ``sde="rectified_flow"`` samples the shipped flow model (velocity prediction, `weights_path`); the VP model
    serves every other SDE through the noise-level match of the adapter, except schedules with α(T) = 0, whose
    noise level at T is infinite (beyond the VP model's σ̃(T) ≈ 150): those are refused.
    ``grid``: a grid name (`sdesolve.grids.GRIDS`) or the times of a fitted grid (`sdesolve fit-grid`).

    Returns:
        The ``metrics.json`` content (``{"config": ..., "metrics": ...}``).
    """
    check_digits_dependencies()
    n = DEFAULT_N if n is None else n
    sde_obj = get_sde(sde)
    flow = sde in MODEL_SDES and sde != "vp"
    if sde_obj.singular_at_T and not flow:
        raise ValueError(
            f"--sde {sde}: the VP digits model has no noise level beyond sigma/alpha ~ 150, and {sde} "
            f"starts at infinity; sample it with --sde vp, ve, subvp or rectified_flow (the flow model)"
        )
    model = load_digits_model(weights_path(sde) if flow else weights_path("vp"), device=device, dtype=dtype)
    sampler = dict(ode=ode, method=method, steps=steps, grid=grid, lower_order_final=lower_order_final,
                   predictor=predictor, corrector=corrector, snr=snr)  # fmt: skip
    t0 = time.perf_counter()
    with score_progress(model.score_fn(sde_obj)) as score_fn:
        x, info = run_sampler(score_fn, sde_obj, (n, 1, 8, 8), **sampler, eps=eps, device=device, dtype=dtype,
                              generator=torch.Generator(device=device).manual_seed(seed))  # fmt: skip
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    metrics = {**digits_metrics(x, model.classifier), "nfe": int(info["nfe"]), "wall_s": wall}
    config = {"problem": "digits", **run_config(sde=sde, **sampler), "n": n, "seed": seed, "device": device,
              "dtype": dtype_name(dtype), "eps": eps}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    result = {"config": config, "metrics": metrics}
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    np.save(out / "samples.npy", x.detach().cpu().float().numpy())
    save_grid(x[:256], out / "samples.png")
    label = f"probability-flow ODE ({method})" if ode else f"{predictor} + {corrector}"
    typer.echo(f"sdesolve sample: digits UNet, {sde} SDE, {label}, {steps} steps, n={n}, seed={seed}")
    m = metrics["frechet_distance_n"]
    typer.echo(f"  Fréchet distance to train, n={m:<5d}  {metrics['frechet_distance']:>10.4g}")
    typer.echo(f"    (held-out vs train floor, n={m:<5d}) {metrics['frechet_distance_floor']:>9.4g}")
    typer.echo(f"  label histogram                    {metrics['label_histogram']}")
    typer.echo(f"  NFE                                {metrics['nfe']:>10d}")
    typer.echo(f"  wall time [s]                      {wall:>10.4g}")
    typer.echo(f"wrote {out / 'metrics.json'}, {out / 'samples.npy'} and {out / 'samples.png'}")
    return result
