"""What both problems of ``sdesolve sample`` share: the sampler of one chunk of seeds, the manifest's description of
it, the durable sharded run (`sdesolve.distributed.sample` with ``out_dir``) and the run's record in metrics.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from .. import distributed
from ..durable import StoredSamples, atomic_write
from ..sde import LinearSDE
from ._run import run_config, run_sampler

ChunkSampler = Callable[[Tensor], tuple[Tensor, dict]]


def chunk_sampler(sde: LinearSDE, score_fn, event: tuple[int, ...], *, device: str, dtype: torch.dtype,
                  **solver) -> ChunkSampler:  # fmt: skip
    """``sampler(seeds)`` → (float32 samples ``[m, *event]`` on the CPU, ``{"nfe": ...}``): the command's sampler
    (`sdesolve.cli._run.run_sampler`, ``solver`` its options), every draw of row i keyed by ``seeds[i]``."""

    def sampler(seeds: Tensor) -> tuple[Tensor, dict]:
        x, info = run_sampler(score_fn, sde, (len(seeds), *event), **solver, seeds=seeds, device=device, dtype=dtype)
        return x.detach().to("cpu", torch.float32), {"nfe": int(info["nfe"])}

    return sampler


def sampler_config(*, sde: str, eps: float, device: str, dtype: str, **solver) -> dict:
    """What determines a chunk's samples besides the model and the seeds (recorded in the manifest and metrics.json):
    `sdesolve.cli._run.run_config`, ``eps``, the dtype and the device's type (CPU and CUDA kernels round
    differently; which GPU does not)."""
    return {**run_config(sde=sde, **solver), "eps": eps, "dtype": dtype, "device": torch.device(device).type}


def run_metrics(stored: StoredSamples) -> dict:
    """metrics.json's record of the run: NFE (chunk 0's), wall time, samples/s, chunks reused and redone."""
    return {"nfe": int(stored.infos[0].get("nfe", 0)), "wall_s": stored.wall_s, "samples_per_s": stored.samples_per_s,
            "samples_computed": stored.samples_computed, "chunks": stored.chunks,
            "chunks_reused": stored.chunks_reused, "chunks_redone": stored.chunks_redone}  # fmt: skip


def write_metrics(out: Path, config: dict, metrics: dict) -> Path:
    """``metrics.json`` (``{"config": ..., "metrics": ...}``), atomically."""
    path = out / "metrics.json"
    atomic_write(path, json.dumps({"config": config, "metrics": metrics}, indent=2) + "\n")
    return path


def seeds_text(seed: int | None, seeds: Tensor | None) -> dict:
    """The seeds as metrics.json records them."""
    return {"seed": seed, "seeds": None if seeds is None else distributed.format_seeds(seeds)}


def describe(config: dict) -> str:
    """``"vp SDE, reverse_diffusion + langevin, 500 steps"`` for the summary line."""
    method = config["ode_method"]
    label = f"probability-flow ODE ({method})" if method else f"{config['predictor']} + {config['corrector']}"
    return f"{config['sde']} SDE, {label}" + ("" if config["steps"] is None else f", {config['steps']} steps")
