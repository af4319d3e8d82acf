"""``python -m benchmarks [--quick] [--out results.json]``: print the tables; write JSON only with ``--out``."""

from __future__ import annotations

import argparse
import json
import platform
import warnings
from pathlib import Path

import torch

from . import durable, engine, noise, ode, pc

IMAGE_SHAPES = [(1, 2), (16, 2), (512, 3, 8, 8), (64, 3, 64, 64)]
FULL = {
    "engine": {"shapes": IMAGE_SHAPES, "steps": 200, "repeats": 3},
    "compiled": {"shapes": IMAGE_SHAPES, "steps": 200, "repeats": 3},
    "cuda": {"shapes": IMAGE_SHAPES, "steps": 200, "repeats": 3},
    "em": {"batch": 4096, "steps": 1000, "repeats": 3},
    "ode": {"shapes": [(16, 2), (4096, 2), (512, 3, 8, 8)], "repeats": 3},
    "kdiffusion": {"shape": (512, 3, 8, 8), "steps": 50, "repeats": 3},
    "pc": {"batch": 10_000, "steps": 500},
    "noise": {"dims": [2, 1024], "batch": 4096, "steps": 200, "repeats": 3, "processes": 20_000},
    "durable": {
        "cases": [
            {"problem": "ring", "n": 20_000, "steps": 500, "label": "reverse_diffusion + langevin, 500 steps"},
            {
                "problem": "ring",
                "n": 20_000,
                "steps": 20,
                "label": "reverse_diffusion + langevin, 20 steps",
                "repeats": 5,
            },
            {
                "problem": "digits",
                "n": 2_000,
                "steps": 25,
                "ode": True,
                "method": "heun",
                "label": "ODE heun, 25 steps",
            },
        ],
        "repeats": 2,
        "memory_problems": ["ring", "gauss16"],
        "memory_sizes": [10_000, 100_000],
        "memory_steps": 10,
        "processes": 20_000,
    },
}
QUICK = {
    "engine": {"shapes": [(16, 2), (64, 3, 8, 8)], "steps": 20, "repeats": 1},
    "compiled": {"shapes": [(64, 3, 8, 8)], "steps": 20, "repeats": 1},
    "cuda": {"shapes": [(16, 2)], "steps": 20, "repeats": 1},
    "em": {"batch": 256, "steps": 50, "repeats": 1},
    "ode": {"shapes": [(256, 16)], "repeats": 1},
    "kdiffusion": {"shape": (64, 3, 8, 8), "steps": 10, "repeats": 1},
    "pc": {"batch": 10_000, "steps": 20},
    "noise": {"dims": [2], "batch": 512, "steps": 20, "repeats": 1, "processes": 0},
    "durable": {
        "cases": [{"problem": "ring", "n": 2_000, "steps": 20, "label": "reverse_diffusion + langevin, 20 steps"}],
        "repeats": 1,
        "memory_problems": ["ring"],
        "memory_sizes": [2_000, 20_000],
        "memory_steps": 2,
    },
}
TABLES = {
    "engine": (
        "PC loop vs diffusers' ScoreSdeVeScheduler loop and vs the floor (µs per step; VE, exact score)",
        [
            "shape",
            "corrector",
            "diffusers_us",
            "ours_us",
            "floor_us",
            "speedup",
            "speedup_target",
            "vs_floor",
            "vs_floor_target",
        ],
    ),
    "compiled": (
        "pc_sample execution='compile' vs eager (µs per step; VE reverse diffusion, exact score)",
        ["shape", "corrector", "eager_us", "compiled_us", "speedup", "speedup_target"],
    ),
    "cuda": (
        "PC loop on CUDA: diffusers vs ours eager vs ours as one CUDA graph (µs per step)",
        [
            "shape",
            "corrector",
            "device",
            "diffusers_us",
            "eager_us",
            "graph_us",
            "speedup_eager",
            "speedup_graph",
            "speedup_target",
            "graph_vs_eager",
            "graph_vs_eager_target",
        ],
    ),
    "em": (
        "Euler–Maruyama (reverse VP) vs torchsde.sdeint(method='euler')",
        ["batch", "steps", "torchsde_s", "ours_s", "speedup", "speedup_target"],
    ),
    "ode": (
        "ODE solvers, exact-score Gaussian flow, rtol=atol=1e-5, float64 (vs_scipy target >= 1)",
        ["shape", "sde", "method", "wall_s", "nfe", "max_err", "time_vs_dopri5", "vs_scipy"],
    ),
    "kdiffusion": (
        "k-diffusion sample_euler / sample_heun vs ode_sample on the same VE sigma grid",
        ["shape", "method", "kdiffusion_s", "ours_s", "speedup", "speedup_target"],
    ),
    "pc": (
        "pc_sample throughput, VP SDE, 2-D ring mixture",
        ["predictor", "corrector", "steps_per_s", "vs_reverse_diffusion"],
    ),
    "noise.draws": (
        "noise draws [B, d] float32, microseconds per draw",
        ["d", "B", "batch_gen_us", "keyed_us", "per_row_gen_us", "keyed_vs_batch", "per_row_vs_keyed"],
    ),
    "noise.pc": (
        "pc_sample (euler_maruyama + langevin, ring mixture) by noise mode",
        ["noise", "wall_s", "vs_generator"],
    ),
    "durable.overhead": (
        "distributed.sample to disk (chunk files, fsync, streamed samples.npy) vs in memory + numpy.save (s)",
        ["problem", "n", "sampler", "memory_s", "durable_s", "overhead", "overhead_target"],
    ),
    "durable.memory": (
        "peak resident memory (MiB) of one process sampling n and 10 n samples, to disk vs in memory",
        [
            "problem",
            "path",
            "n_small",
            "n_large",
            "start_mib",
            "peak_small_mib",
            "peak_large_mib",
            "growth_small_mib",
            "growth_large_mib",
            "ratio",
            "ratio_target",
        ],
    ),
    "durable.processes": (
        "1 vs 2 processes (torchrun, gloo), ring, 200 steps: to disk vs gathered, rank 0's wall time, busiest rank's CPU",
        ["path", "processes", "wall_s", "samples_per_s", "speedup", "cpu_s", "cpu_speedup", "speedup_target"],
    ),
    "noise.processes": (
        "sdesolve sample, 1 vs 2 processes (torchrun, gloo), sampling wall time on rank 0",
        ["processes", "wall_s", "samples_per_s", "speedup"],
    ),
}


def table(rows: list[dict], columns: list[str]) -> str:
    """Plain-text table of ``rows`` (floats in 4 significant digits)."""

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    cells = [[fmt(r[c]) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def markdown(rows: list[dict], columns: list[str]) -> str:
    """The same table in Markdown (for docs/benchmarks.md)."""

    def fmt(v):
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows])


def main(argv: list[str] | None = None, sizes: dict | None = None) -> dict:
    """Run the benchmarks and print their tables; ``sizes`` overrides the preset (used by the smoke test)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 60 s on 2 cores)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON to this path")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: stable on shared machines)"
    )
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (for docs/benchmarks.md)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = sizes or (QUICK if args.quick else FULL)
    warnings.filterwarnings("ignore", message="norm='sample'")  # the 2-D benchmark times it regardless
    runners = {
        "engine": lambda s: engine.pc_vs_diffusers(s["shapes"], s["steps"], s["repeats"]),
        "compiled": lambda s: engine.compiled_vs_eager(s["shapes"], s["steps"], s["repeats"]),
        "cuda": lambda s: engine.on_cuda(s["shapes"], s["steps"], s["repeats"]),
        "em": lambda s: engine.em_vs_torchsde(s["batch"], s["steps"], s["repeats"]),
        "ode": lambda s: ode.run(s["shapes"], s["repeats"]),
        "kdiffusion": lambda s: engine.vs_kdiffusion(s["shape"], s["steps"], s["repeats"]),
        "pc": lambda s: pc.run(**s),
        "noise": lambda s: noise.run(**s),
        "durable": lambda s: durable.run(**s),
    }
    results = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "sizes": sizes,
    }
    render = markdown if args.markdown else table
    for name, runner in runners.items():
        if name not in sizes:
            continue
        results[name] = runner(sizes[name])
        parts = results[name] if isinstance(results[name], dict) else {None: results[name]}
        for part, rows in parts.items():
            title, columns = TABLES[name if part is None else f"{name}.{part}"]
            if rows or part is None:
                print(f"\n{title}, {sizes[name]}")
                print(render(rows, columns) if rows else "(not run here: package not installed, or no CUDA device)")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
