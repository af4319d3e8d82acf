"""The robustness matrix (sdesolve.verify.robustness): every method × schedule × step count × dtype on the exact
Gaussian gives a finite sample, info["nfe"] equal to the counted score calls and a strictly decreasing grid, or a
clear refusal; deterministic methods' exact error falls with N. A sample of cells in the default tier, every cell
in the slow tier (table: docs/schedules.md)."""

import random
from itertools import groupby

import pytest
import torch

from sdesolve.sde import SDES
from sdesolve.verify.robustness import DTYPES, METHODS, STEPS, error_falls, robustness_matrix, run_cell

REFUSALS = {  # (method, schedule) refused by design, with the reason the message must give
    ("euler_maruyama", "rectified_flow"): "infinite there",
    ("euler_maruyama", "cosine"): "infinite there",
    ("improved_euler", "rectified_flow"): "infinite there",
    ("improved_euler", "cosine"): "infinite there",
    ("reverse_diffusion", "rectified_flow"): "not defined where alpha",
    ("reverse_diffusion", "cosine"): "not defined where alpha",
}


def _check(cell) -> None:
    refusal = REFUSALS.get((cell.method, cell.sde))
    if refusal is not None:
        assert cell.outcome == "refused" and refusal in cell.message, cell
    else:
        assert cell.outcome == "ok", cell
        assert cell.nfe == cell.calls


def _sampled_cells(k: int = 160, seed: int = 0) -> list[tuple]:
    """Every method × schedule at 1, 2 and 7 steps in float32, plus k cells drawn uniformly (fixed seed)."""
    rng = random.Random(seed)
    cells = [(kind, m, s, n, torch.float32) for kind, m in METHODS for s in SDES for n in (1, 2, 7)]
    everything = [(kind, m, s, n, d) for kind, m in METHODS for s in SDES for n in STEPS for d in DTYPES]
    return cells + rng.sample(everything, k)


@pytest.mark.parametrize("cell", _sampled_cells(), ids=lambda c: f"{c[1]}-{c[2]}-{c[3]}-{str(c[4])[6:]}")
def test_a_sample_of_cells(cell):
    _check(run_cell(*cell))


@pytest.mark.parametrize("kind, method", [m for m in METHODS if m[0] == "ode"], ids=lambda v: v)
def test_error_falls_with_steps(kind, method):
    # 16 vs 1000 steps on every schedule in float32 (every dtype in the slow tier): below, or within rounding
    cells = robustness_matrix([(kind, method)], steps=(16, 1000), dtypes=(torch.float32,))
    for key, row in groupby(cells, key=lambda c: (c.sde, c.dtype)):
        row = list(row)
        for c in row:
            _check(c)
        assert error_falls(row), (key, [(c.steps, c.error) for c in row])


@pytest.mark.slow
@pytest.mark.parametrize("kind, method", METHODS, ids=lambda v: v)
def test_every_cell(kind, method):
    cells = robustness_matrix([(kind, method)])
    for c in cells:
        _check(c)
    for key, row in groupby(cells, key=lambda c: (c.sde, c.dtype)):
        assert error_falls(list(row)), key
