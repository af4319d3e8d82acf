"""Noise keyed by sample (issue 13): what per-sample seeds cost, and 1 vs 2 processes.

(a) One draw of ``[B, d]`` normals: the batch generator (``torch.randn(out=)``, not batch-independent) vs
the keyed draw we use (`KeyedNormal.normal_`: SplitMix64 words → Box–Muller, in torch ops) vs a generator
per row (``manual_seed`` + ``randn`` per sample, the AUTOMATIC1111 PR #7730 way). (b) `pc_sample`
(Euler–Maruyama + Langevin, 2-D ring mixture) driven by a generator, by ``seeds``, by the per-sample Brownian
tree, and by torchsde's ``BrownianInterval`` (predictor only). (c) ``sdesolve sample`` in 1 and 2 processes
(``torchrun --standalone``, gloo), sampling wall time on rank 0. Best of ``repeats``, one thread per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from sdesolve import VPSDE, pc_sample
from sdesolve.problems import ring_mixture
from sdesolve.solvers.seeded import KeyedNormal

from .engine import best

BATCHES = (1, 16, 512, 4096)


def draw_costs(dims: tuple[int, ...], repeats: int) -> list[dict]:
    """Seconds per draw of ``[B, d]`` float32 normals for each mechanism."""
    rows = []
    for d in dims:
        for b in BATCHES:
            out, gen, keyed = torch.empty(b, d), torch.Generator().manual_seed(0), KeyedNormal(torch.arange(b))
            gens = [torch.Generator() for _ in range(b)]

            def per_row(out=out, gens=gens):
                for k, g in enumerate(gens):
                    torch.randn(out.shape[1:], generator=g.manual_seed(k), out=out[k])

            t_batch = best(lambda out=out, gen=gen: torch.randn(out.shape, generator=gen, out=out), repeats)
            t_keyed = best(lambda out=out, keyed=keyed: keyed.normal_(out, 12345), repeats)
            t_row = best(per_row, repeats)
            rows.append({"d": d, "B": b, "batch_gen_us": 1e6 * t_batch, "keyed_us": 1e6 * t_keyed,
                         "per_row_gen_us": 1e6 * t_row, "keyed_vs_batch": t_keyed / t_batch,
                         "per_row_vs_keyed": t_row / t_keyed})  # fmt: skip
    return rows


def sampler_costs(batch: int, steps: int, repeats: int) -> list[dict]:
    """Wall time of one `pc_sample` run per noise mode, and its ratio to the generator-driven run."""
    import torchsde

    sde, eps = VPSDE(), 1e-3
    score = ring_mixture(torch.float32).score_fn(sde)
    seeds = torch.arange(batch)
    common = dict(predictor="euler_maruyama", corrector="langevin", steps=steps, eps=eps)

    def interval():
        bm = torchsde.BrownianInterval(0.0, sde.T - eps, size=(batch, 2), entropy=0)
        return pc_sample(sde, score, (batch, 2), brownian=bm, generator=torch.Generator().manual_seed(0), **common)

    modes = {
        "generator": lambda: pc_sample(sde, score, (batch, 2), generator=torch.Generator().manual_seed(0), **common),
        "seeds": lambda: pc_sample(sde, score, (batch, 2), seeds=seeds, **common),
        "seeds + per_sample tree": lambda: pc_sample(
            sde, score, (batch, 2), seeds=seeds, brownian="per_sample", **common
        ),
        "torchsde BrownianInterval": interval,
    }
    times = {name: best(fn, repeats) for name, fn in modes.items()}
    return [{"noise": k, "wall_s": v, "vs_generator": v / times["generator"]} for k, v in times.items()]


def process_scaling(num_samples: int, steps: int) -> list[dict]:
    """``sdesolve sample`` with 1 and 2 processes: rank 0's sampling wall time and samples per second."""
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = ["-m", "sdesolve", "sample", "--pc", "--num-samples", str(num_samples), "--steps", str(steps)]
    for procs in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            run = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
            subprocess.run([*run, *args, "--out", tmp], env=env, check=True, capture_output=True)
            wall = json.loads((Path(tmp) / "metrics.json").read_text())["metrics"]["wall_s"]
        rows.append({"processes": procs, "wall_s": wall, "samples_per_s": num_samples / wall})
    for r in rows:
        r["speedup"] = rows[0]["wall_s"] / r["wall_s"]
    return rows


def run(dims: tuple[int, ...], batch: int, steps: int, repeats: int, processes: int = 0) -> dict:
    """All three tables; ``processes`` samples for the 1-vs-2-process run (0: skip it)."""
    return {
        "draws": draw_costs(tuple(dims), repeats),
        "pc": sampler_costs(batch, steps, repeats),
        "processes": process_scaling(processes, steps) if processes else [],
    }
