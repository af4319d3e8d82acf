"""What both problems of ``sdesolve sample`` share: the sampler of one chunk of seeds, the manifest's description of
it, the durable sharded run (`sdesolve.distributed.sample` with ``out_dir``) and the run's record in metrics.json."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from .. import distributed
from .._utils import check_choice
from ..durable import StoredSamples, atomic_write
from ..sampling import ODE_METHODS, ode_sample, pc_sample
from ..sde import LinearSDE
from ..solvers.ode import FIXED_STEP

ChunkSampler = Callable[[Tensor], tuple[Tensor, dict]]


def chunk_sampler(sde: LinearSDE, score_fn, event: tuple[int, ...], *, ode: bool, method: str, predictor: str,
                  corrector: str, steps: int, snr: float, eps: float, device: str, dtype: torch.dtype,
                  grid: Tensor | None = None) -> ChunkSampler:  # fmt: skip
    """``sampler(seeds)`` → (float32 samples ``[m, *event]`` on the CPU, ``{"nfe": ...}``): PC sampling or the
    probability-flow ODE on ``steps`` uniform intervals or the times ``grid``, every draw of row i keyed by
    ``seeds[i]``."""
    fixed = check_choice("method", method, ODE_METHODS) in FIXED_STEP
    common = dict(eps=eps, device=device, dtype=dtype, grid=grid, return_info=True)

    def sampler(seeds: Tensor) -> tuple[Tensor, dict]:
        shape, kw = (len(seeds), *event), dict(common, seeds=seeds)
        with torch.no_grad():
            if ode:
                x, info = ode_sample(sde, score_fn, shape, method=method, steps=steps if fixed else None, **kw)
            else:
                x, info = pc_sample(
                    sde, score_fn, shape, predictor=predictor, corrector=corrector, steps=steps, snr=snr, **kw
                )
        return x.detach().to("cpu", torch.float32), {"nfe": int(info["nfe"])}

    return sampler


def sampler_config(*, sde: str, ode: bool, method: str, predictor: str, corrector: str, steps: int, snr: float,
                   eps: float, device: str, dtype: str, grid: Tensor | None = None) -> dict:  # fmt: skip
    """What determines a chunk's samples besides the model and the seeds (recorded in the manifest and metrics.json).

    The device's type counts (CPU and CUDA kernels round differently); which GPU does not.
    """
    fixed = ode and method in FIXED_STEP
    return {"sde": sde, "predictor": None if ode else predictor, "corrector": None if ode else corrector,
            "ode_method": method if ode else None, "steps": steps if fixed or not ode else None,
            "grid": (grid.tolist() if grid is not None else "uniform") if fixed or not ode else None, "snr": None if ode else snr, "eps": eps, "dtype": dtype,
            "device": torch.device(device).type}  # fmt: skip


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
