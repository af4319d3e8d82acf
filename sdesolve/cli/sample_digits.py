"""``sdesolve sample --problem digits``: sample the shipped digits UNet and score the samples.

Writes ``samples.png`` (a grid), ``samples.npy`` (float32 ``[n, 1, 8, 8]`` in model scale) and ``metrics.json``:
the Fréchet distance to the training digits in the shipped classifier's feature space with its held-out floor,
the label histogram, NFE and wall time (`sdesolve.digits.digits_metrics`). Chunks are stored and resumed as for the
ring (`sdesolve.cli.sample`); the manifest pins the weights by their SHA-256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import typer

from .. import distributed
from ..digits import MODEL_SDES, digits_metrics, load_digits_model, save_grid, weights_path
from ..sde import LinearSDE
from ._sampling import chunk_sampler, describe, run_metrics, seeds_text, write_metrics


def sample_digits(sde_obj: LinearSDE, config: dict, solver: dict, *, device: str, dtype: torch.dtype, n: int | None,
                  seed: int | None, seeds: torch.Tensor | None, chunk_size: int, out: Path, overwrite: bool,
                  quiet: bool) -> dict | None:  # fmt: skip
    """Sample digits with any predictor/corrector or ODE method into ``out`` (resuming what is there); on rank 0
    write the PNG grid and metrics.json.

    ``--sde rectified_flow`` samples the shipped flow model (velocity prediction, `weights_path`); the VP model
    serves every other SDE through the noise-level match of the adapter, except schedules with α(T) = 0, whose
    noise level at T is infinite (beyond the VP model's σ̃(T) ≈ 150): those are refused.

    Returns:
        On rank 0 the ``metrics.json`` content (``{"config": ..., "metrics": ...}``), None elsewhere.
    """
    name = config["sde"]
    flow = name in MODEL_SDES and name != "vp"
    if sde_obj.singular_at_T and not flow:
        raise ValueError(f"--sde {name}: the VP digits model has no noise level beyond sigma/alpha ~ 150, and {name} "
                         "starts at infinity; sample it with --sde vp, ve, subvp or rectified_flow (the flow model)")  # fmt: skip
    path = weights_path(name if flow else "vp")
    model = load_digits_model(path, device=device, dtype=dtype)
    sampler = chunk_sampler(sde_obj, model.score_fn(sde_obj), (1, 8, 8), device=device, dtype=dtype, **solver)
    weights = {"weights": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    config = {"problem": "digits", "model": weights, **config}
    stored = distributed.sample(sampler, n, seed=seed, seeds=seeds, chunk_size=chunk_size, out_dir=out,
                                config=config, overwrite=overwrite, progress=not quiet)  # fmt: skip
    if stored is None:  # not rank 0
        return None
    x = torch.from_numpy(np.array(stored.array()))
    metrics = {**digits_metrics(x, model.classifier), **run_metrics(stored)}
    result = {"config": {**config, "n": stored.num_samples, **seeds_text(seed, seeds), "chunk_size": chunk_size},
              "metrics": metrics}  # fmt: skip
    write_metrics(out, result["config"], metrics)
    save_grid(x[:256], out / "samples.png")
    typer.echo(f"sdesolve sample: digits UNet, {describe(config)}, n={stored.num_samples}")
    m = metrics["frechet_distance_n"]
    typer.echo(f"  Fréchet distance to train, n={m:<5d}  {metrics['frechet_distance']:>10.4g}")
    typer.echo(f"    (held-out vs train floor, n={m:<5d}) {metrics['frechet_distance_floor']:>9.4g}")
    typer.echo(f"  label histogram                    {metrics['label_histogram']}")
    typer.echo(f"  NFE                                {metrics['nfe']:>10d}")
    typer.echo(f"  wall time [s]                      {metrics['wall_s']:>10.4g}")
    typer.echo(f"  chunks reused                      {metrics['chunks_reused']:>10d}")
    typer.echo(f"wrote {out / 'metrics.json'}, {out / 'samples.npy'} and {out / 'samples.png'}")
    return result
