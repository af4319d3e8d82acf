"""``python -m benchmarks [--quick] [--out results.json]``: print the tables; write JSON only with ``--out``."""

from __future__ import annotations

import argparse
import json
import platform
import warnings
from pathlib import Path

import torch

from . import noise, ode, pc

FULL = {
    "ode": {"batch": 1024, "dim": 64, "repeats": 3},
    "pc": {"batch": 10_000, "steps": 500},
    "noise": {"dims": [2, 1024], "batch": 4096, "steps": 200, "repeats": 3, "processes": 20_000},
}
QUICK = {
    "ode": {"batch": 256, "dim": 16, "repeats": 1},
    "pc": {"batch": 10_000, "steps": 20},
    "noise": {"dims": [2], "batch": 512, "steps": 20, "repeats": 1, "processes": 0},
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


def main(argv: list[str] | None = None, sizes: dict | None = None) -> dict:
    """Run both benchmarks and print their tables; ``sizes`` overrides the preset (used by the smoke test)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes (< 60 s on 2 cores)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON to this path")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: stable on shared machines)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = sizes or (QUICK if args.quick else FULL)
    warnings.filterwarnings("ignore", message="norm='sample'")  # the 2-D benchmark times it regardless
    results = {
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads()},
        "sizes": sizes,
        "ode": ode.run(**sizes["ode"]),
        "pc": pc.run(**sizes["pc"]),
        "noise": noise.run(**sizes["noise"]),
    }
    print(f"ODE solvers, exact-score Gaussian flow, rtol=atol=1e-5, float64, {sizes['ode']}")
    print(table(results["ode"], ["sde", "method", "wall_s", "nfe", "max_err", "time_vs_dopri5"]))
    print(f"\npc_sample throughput, VP SDE, 2-D ring mixture, {sizes['pc']}")
    print(table(results["pc"], ["predictor", "corrector", "steps_per_s", "vs_reverse_diffusion"]))
    print(f"\nnoise draws [B, d] float32, microseconds per draw, {sizes['noise']}")
    print(table(results["noise"]["draws"], ["d", "B", "batch_gen_us", "keyed_us", "per_row_gen_us", "keyed_vs_batch",
                                            "per_row_vs_keyed"]))  # fmt: skip
    print("\npc_sample (euler_maruyama + langevin, ring mixture) by noise mode")
    print(table(results["noise"]["pc"], ["noise", "wall_s", "vs_generator"]))
    if results["noise"]["processes"]:
        print("\nsdesolve sample, 1 vs 2 processes (torchrun, gloo), sampling wall time on rank 0")
        print(table(results["noise"]["processes"], ["processes", "wall_s", "samples_per_s", "speedup"]))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
