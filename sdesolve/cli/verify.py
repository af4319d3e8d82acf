"""``sdesolve verify``: measured against theoretical convergence orders, PASS/FAIL per case."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from ..verify import SuiteRow, run_suite
from ._common import writable_file


def _line(row: SuiteRow) -> str:
    s = row.study
    ci = f"[{s.fit.lo:6.3f}, {s.fit.hi:6.3f}]"
    status = "PASS" if row.passed else "FAIL"
    steps = f"{s.steps[0]}..{s.steps[-1]}"
    return (
        f"{row.sde:9s} {row.data:9s} {row.predictor:18s} {s.kind:6s} {s.expected:8.1f} {s.fit.slope:8.3f} "
        f"{ci:18s} ±{row.tol:<5.2f} {steps:10s} {status}"
    )


def _plot(rows: list[SuiteRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, kind in zip(axes, ("strong", "weak"), strict=True):
        for row in (r for r in rows if r.study.kind == kind):
            s = row.study
            ax.loglog(s.steps, s.errors, "o-", label=f"{row.sde} {row.data} {row.predictor} ({s.fit.slope:.2f})")
        ax.set(xlabel="steps N", ylabel=f"{kind} error at eps", title=f"{kind} errors")
        if ax.lines:
            ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def verify(
    quick: Annotated[bool, typer.Option("--quick", help="Gaussian data, ±0.15, < 1 min on 2 cores (CI).")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write every row (errors, fits) as JSON.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a log-log PNG of errors against steps.")] = None,
) -> None:
    """Measure strong/weak orders of every predictor on {VE, VP, sub-VP} against exact answers."""
    if json_path is not None:
        writable_file("--json", json_path)
    if plot is not None:
        writable_file("--plot", plot)
    start = time.perf_counter()
    typer.echo(
        f"{'sde':9s} {'data':9s} {'predictor':18s} {'kind':6s} {'expected':>8s} {'measured':>8s} {'95% CI':18s} tol    steps      result"
    )
    rows = run_suite(quick, progress=lambda row: typer.echo(_line(row)))
    elapsed = time.perf_counter() - start
    failed = [r for r in rows if not r.passed]
    typer.echo(
        f"{len(rows) - len(failed)}/{len(rows)} passed in {elapsed:.1f} s ({'quick' if quick else 'full'} suite)"
    )
    if json_path is not None:
        payload = {"quick": quick, "seconds": elapsed, "rows": [r.as_dict() for r in rows]}
        json_path.write_text(json.dumps(payload, indent=2))
    if plot is not None:
        _plot(rows, plot)
    if failed:
        raise typer.Exit(code=1)
