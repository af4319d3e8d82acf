"""``sdesolve fit-grid``: fit the grid of a sampler at an NFE budget to the ring mixture or the digits UNet.

Writes a JSON file (`sdesolve.fit_grid.save_fitted_grid`) with the problem, the SDE, the method, the NFE, the
objective, the calibration seeds, the fit's cost and the fitted times. ``sdesolve sample --grid FILE`` samples on
it. Calibration seeds are raw per-sample seeds (``--calibration-seeds 0-1023``). ``sdesolve sample`` keys sample
k by ``sample_seeds(seed, k)``, a 64-bit mix, so its samples are held out from a calibration set of small integers.
"""

from __future__ import annotations

import time

import torch
import typer

from .._utils import check_choice, check_int
from ..digits import check_digits_dependencies
from ..fit_grid import FIT_METHODS, FIT_OBJECTIVES, fit_grid, load_fitted_grid, save_fitted_grid
from ..problems import ring_mixture
from ..sde import get_sde
from ._common import check_device, fail, option, reported, writable_file
from ._progress import score_progress

DTYPES = {"float32": torch.float32, "float64": torch.float64}
EPS = 1e-3  # the sampling command's final time


def parse_seeds(flag: str, text: str) -> list[int]:
    """``"A-B"`` (inclusive, as NVlabs/edm's ``--seeds``) or a comma list of ints, as a list of distinct seeds."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            seeds.extend(range(int(lo), int(hi) + 1) if sep else [int(lo)])
    except ValueError:
        fail(f"{flag}: expected A-B or a comma list of ints, got {text!r}")
    if not seeds:
        fail(f"{flag}: {text!r} holds no seeds (a range A-B needs A <= B)")
    return seeds


def _problem(problem: str, sde_obj, device: torch.device, dtype: torch.dtype, n: int, objective: str):
    """The score, the event shape and (for ``klub``) ``n`` data samples of ``problem``."""
    if problem == "ring":
        target = ring_mixture(dtype, device=device)
        data = target.sample(n, generator=torch.Generator().manual_seed(0)) if objective == "klub" else None
        return target.score_fn(sde_obj), (2,), data
    from ..digits import load_digits_data, load_digits_model, to_model_scale

    model = load_digits_model(device=device, dtype=dtype)
    data = None
    if objective == "klub":
        train = load_digits_data().train
        if n > train.shape[0]:
            fail(
                f"--calibration-seeds: klub pairs each seed with a training digit; {n} seeds > {train.shape[0]} digits"
            )
        data = to_model_scale(train[:n], generator=torch.Generator().manual_seed(0), dtype=dtype).to(device)
    return model.score_fn(sde_obj), (1, 8, 8), data


def fit_grid_command(
    problem: str = typer.Option("ring", help="ring (8-mode mixture, exact score) or digits (the shipped UNet)."),
    sde: str = typer.Option("vp", help="Forward SDE: vp, subvp or ve."),
    method: str = typer.Option("ipndm", help=f"Sampler: {', '.join(FIT_METHODS)} (predictors: klub only)."),
    nfe: int = typer.Option(10, help="Score evaluations per sample the grid may cost."),
    objective: str = typer.Option("reference", help=f"{' | '.join(FIT_OBJECTIVES)}."),
    calibration_seeds: str = typer.Option("0-1023", help="Calibration seeds: A-B (inclusive) or a comma list."),
    max_evals: int | None = typer.Option(None, help="reference: most sampler runs (default 40 per interval)."),
    device: str = typer.Option("cpu", help="Torch device."),
    dtype: str = typer.Option("float32", help="float32 or float64."),
    out: str = typer.Option("grid.json", help="Output JSON file."),
) -> None:
    """Fit a sampler's grid at an NFE budget on calibration seeds; write it as JSON for "sdesolve sample --grid"."""
    problem = option("--problem", check_choice, "problem", problem, ("ring", "digits"))
    sde_obj = option("--sde", get_sde, sde)
    method = option("--method", check_choice, "method", method, FIT_METHODS)
    option("--nfe", check_int, "nfe", nfe)
    objective = option("--objective", check_choice, "objective", objective, FIT_OBJECTIVES)
    torch_dtype = DTYPES[option("--dtype", check_choice, "dtype", dtype, tuple(DTYPES))]
    seeds = parse_seeds("--calibration-seeds", calibration_seeds)
    if max_evals is not None:
        option("--max-evals", check_int, "max_evals", max_evals)
    torch_device = check_device("--device", device)
    if problem == "digits":
        with reported((ImportError,)):
            check_digits_dependencies()
    target = writable_file("--out", out)
    with reported((ValueError, TypeError, RuntimeError, OSError)):
        score_fn, event, data = _problem(problem, sde_obj, torch_device, torch_dtype, len(seeds), objective)
    extra = {"max_evals": max_evals} if objective == "reference" else {"data": data}
    start = time.perf_counter()
    with reported((ValueError, TypeError, RuntimeError, FloatingPointError)), torch.no_grad():
        with score_progress(score_fn) as score_fn:
            grid, info = fit_grid(sde_obj, score_fn, method, nfe, shape=(len(seeds), *event),
                                  calibration_seeds=seeds, objective=objective, eps=EPS, device=torch_device,
                                  dtype=torch_dtype, return_info=True, **extra)  # fmt: skip
    wall = time.perf_counter() - start
    save_fitted_grid(target, grid, info, problem=problem, sde_name=sde, dtype=dtype, fit_wall_s=wall)
    typer.echo(f"sdesolve fit-grid: {problem}, {sde} SDE, {method} at {info['nfe']} NFE ({info['steps']} steps), "
               f"objective {objective}, {len(seeds)} calibration seeds")  # fmt: skip
    typer.echo(f"  calibration objective   {info['initial']:.4g} ({info['init']} grid) -> {info['value']:.4g} (fitted)")
    typer.echo(f"  cost                    {info['score_evaluations']} score evaluations in {info['score_calls']} "
               f"calls, {wall:.1f} s")  # fmt: skip
    typer.echo(f"  times                   {', '.join(f'{t:.4g}' for t in grid.tolist())}")
    typer.echo(f"wrote {target}")


def read_grid(flag: str, path: str, sde_obj, method: str, problem: str) -> tuple[torch.Tensor, dict]:
    """The times and record of a ``fit-grid`` file for ``sdesolve sample``, refused (naming ``flag``) if it was
    fitted for another problem, SDE, method or final time."""
    with reported((ValueError, OSError)):
        grid, record = load_fitted_grid(path)
    wanted = {"problem": problem, "sde": repr(sde_obj), "method": method, "eps": EPS}
    for key, value in wanted.items():
        if record.get(key) != value:
            fail(f"{flag}: {path!r} was fitted for {key} {record.get(key)!r}, this run has {value!r} (refit with "
                 f"sdesolve fit-grid or change the option)")  # fmt: skip
    return grid, record
