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

from .._utils import check_choice
from ..digits import MODEL_SDES, digits_metrics, load_digits_model, save_grid, weights_path
from ..sampling import ODE_METHODS, ode_sample, pc_sample
from ..sde import get_sde
from ..solvers.ode import FIXED_STEP

DEFAULT_N = 512


def sample_digits(
    *,
    sde: str,
    predictor: str,
    corrector: str,
    steps: int,
    snr: float,
    n: int | None,
    seed: int,
    device: str,
    dtype: torch.dtype,
    ode: bool,
    method: str,
    eps: float,
    out: Path,
    grid: torch.Tensor | None = None,
) -> dict:
    """Sample ``n`` digits (default 512) with any predictor/corrector or ODE method; write PNG, npy and metrics.

    ``sde="rectified_flow"`` samples the shipped flow model (velocity prediction, `weights_path`); the VP model
    serves every other SDE through the noise-level match of the adapter, except schedules with α(T) = 0, whose
    noise level at T is infinite (beyond the VP model's σ̃(T) ≈ 150): those are refused.
    ``grid``: the times of a fitted grid (`sdesolve fit-grid`), replacing ``steps``.

    Returns:
        The ``metrics.json`` content (``{"config": ..., "metrics": ...}``).
    """
    n = DEFAULT_N if n is None else n
    sde_obj = get_sde(sde)
    flow = sde in MODEL_SDES and sde != "vp"
    if sde_obj.singular_at_T and not flow:
        raise ValueError(
            f"--sde {sde}: the VP digits model has no noise level beyond sigma/alpha ~ 150, and {sde} "
            f"starts at infinity; sample it with --sde vp, ve, subvp or rectified_flow (the flow model)"
        )
    model = load_digits_model(weights_path(sde) if flow else weights_path("vp"), device=device, dtype=dtype)
    score_fn = model.score_fn(sde_obj)
    gen = torch.Generator(device=device).manual_seed(seed)
    common = dict(eps=eps, generator=gen, device=device, dtype=dtype, grid=grid, return_info=True)
    shape = (n, 1, 8, 8)
    t0 = time.perf_counter()
    with torch.no_grad():
        if ode:
            fixed = check_choice("method", method, ODE_METHODS) in FIXED_STEP
            x, info = ode_sample(sde_obj, score_fn, shape, method=method, steps=steps if fixed else None, **common)
        else:
            x, info = pc_sample(
                sde_obj, score_fn, shape, predictor=predictor, corrector=corrector, steps=steps, snr=snr, **common
            )
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    metrics = {**digits_metrics(x, model.classifier), "nfe": int(info["nfe"]), "wall_s": wall}
    config = {"problem": "digits", "sde": sde, "predictor": None if ode else predictor,
              "corrector": None if ode else corrector, "ode_method": method if ode else None, "steps": steps,
              "snr": snr, "n": n, "seed": seed, "device": device, "dtype": str(dtype), "eps": eps,
              "grid": None if grid is None else grid.tolist()}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    result = {"config": config, "metrics": metrics}
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    np.save(out / "samples.npy", x.detach().cpu().float().numpy())
    save_grid(x[:256], out / "samples.png")
    label = f"probability-flow ODE ({method})" if ode else f"{predictor} + {corrector}"
    typer.echo(f"sdesolve sample: digits UNet, {sde} SDE, {label}, {steps} steps, n={n}, seed={seed}")
    typer.echo(f"  Fréchet distance to train digits   {metrics['frechet_distance']:>10.4g}")
    typer.echo(f"    (held-out vs train floor)        {metrics['frechet_distance_floor']:>10.4g}")
    typer.echo(f"  label histogram                    {metrics['label_histogram']}")
    typer.echo(f"  NFE                                {metrics['nfe']:>10d}")
    typer.echo(f"  wall time [s]                      {wall:>10.4g}")
    typer.echo(f"wrote {out / 'metrics.json'}, {out / 'samples.npy'} and {out / 'samples.png'}")
    return result
