"""``sdesolve verify``: measured against theoretical convergence orders, PASS/FAIL per case."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from ..durable import atomic_open, atomic_write
from ..verify import SuiteRow, run_suite
from ._common import writable_file

if TYPE_CHECKING:
    from ..verify.corrector_bias import BiasRow


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
    with atomic_open(path) as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)


def _bias_line(row: BiasRow) -> str:
    rel = " ".join(f"{v / row.exact - 1:+8.4f}" for v in (row.closed_form, row.stationary, row.expected, row.measured))
    acc = "" if row.acceptance is None else f"{row.acceptance:.3f}"
    return (
        f"{row.sde:4s} {row.data:9s} {row.rule:6s} {row.t:5.2f} {row.sigma:8.3f} {row.snr:5.2f} {row.n_steps:6d} {rel} "
        f"{row.se / row.exact:7.4f} {row.z:+6.2f} {acc:6s} {'PASS' if row.passed else 'FAIL'}"
    )


def _verify_correctors(quick: bool, json_path: Path | None, plot: Path | None) -> None:
    """The Langevin corrector's variance inflation (measured vs closed form) and the grid rule's PC order."""
    from ..sde import get_sde
    from ..verify.corrector_bias import BIAS_DATA, bias_table, grid_rule_study, plot_bias

    start = time.perf_counter()
    typer.echo("variance inflation V/v - 1 at a fixed noise level, from the exact p_t (+-4 SE)")
    typer.echo(
        f"{'sde':4s} {'data':9s} {'rule':6s} {'t':>5s} {'sigma':>8s} {'snr':>5s} {'steps':>6s} {'closed':>8s} "
        f"{'station':>8s} {'expect':>8s} {'measured':>8s} {'se':>7s} {'z':>6s} accept result"
    )
    rows = bias_table(quick, progress=lambda row: typer.echo(_bias_line(row)))
    typer.echo("PC std error at eps (exact propagation): GridLangevin vs the batch rule, snr 0.16, reverse diffusion")
    studies = {}
    for name in ("ve", "vp"):
        study, base = grid_rule_study(get_sde(name), BIAS_DATA["gaussian"]())
        studies[name] = {
            "steps": list(study.steps),
            "grid_errors": study.errors.tolist(),
            "slope": study.fit.slope,
            "ci95": [study.fit.lo, study.fit.hi],
            "batch_errors": base.tolist(),
            "passed": study.passed(0.1),
        }
        ok = studies[name]["passed"]
        typer.echo(
            f"{name}: steps {study.steps}; grid {np.array2string(study.errors, precision=5)} slope "
            f"{study.fit.slope:.3f} (expected 1 +- 0.1) {'PASS' if ok else 'FAIL'}; batch {np.array2string(base, precision=5)}"
        )
    failed = [r for r in rows if not r.passed] + [n for n, s in studies.items() if not s["passed"]]
    elapsed = time.perf_counter() - start
    typer.echo(f"{len(rows) + 2 - len(failed)}/{len(rows) + 2} passed in {elapsed:.1f} s")
    if json_path is not None:
        payload = {"quick": quick, "seconds": elapsed, "bias": [r.as_dict() for r in rows], "grid_rule": studies}
        atomic_write(json_path, json.dumps(payload, indent=2))
    if plot is not None:
        plot_bias(rows, plot)
    if failed:
        raise typer.Exit(code=1)


def verify(
    quick: Annotated[bool, typer.Option("--quick", help="Gaussian data, ±0.15, < 1 min on 2 cores (CI).")] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write every row (errors, fits) as JSON.")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a log-log PNG of errors against steps.")] = None,
    correctors: Annotated[
        bool,
        typer.Option("--correctors", help="Instead: the Langevin corrector's bias table and the grid rule's order."),
    ] = False,
) -> None:
    """Measure strong/weak orders of every predictor on {VE, VP, sub-VP} against exact answers."""
    if json_path is not None:
        writable_file("--json", json_path)
    if plot is not None:
        writable_file("--plot", plot)
    if correctors:
        return _verify_correctors(quick, json_path, plot)
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
        atomic_write(json_path, json.dumps(payload, indent=2))
    if plot is not None:
        _plot(rows, plot)
    if failed:
        raise typer.Exit(code=1)
