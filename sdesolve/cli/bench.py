"""``sdesolve bench``: run the repository's ``benchmarks/`` package (ODE solvers, pc_sample throughput)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated

import typer


def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes (< 1 min on 2 cores).")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write the results as JSON.")] = None,
) -> None:
    """Benchmark ODE solvers (ours vs scipy vs torchdiffeq) and pc_sample throughput, ratios in one run."""
    if not (Path.cwd() / "benchmarks" / "__main__.py").is_file():
        typer.echo(
            "Error: `sdesolve bench` runs the benchmarks/ package of a source checkout; run it from the repository root",
            err=True,
        )
        raise typer.Exit(2)
    sys.path.insert(0, str(Path.cwd()))  # a console script does not put the working directory on sys.path
    benchmarks = importlib.import_module("benchmarks.__main__")
    benchmarks.main((["--quick"] if quick else []) + (["--out", str(out)] if out else []))
