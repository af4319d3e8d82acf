"""``sdesolve fit-grid`` and ``sdesolve sample --grid``: the JSON record, sampling on it, refusals, bad options."""

import json

import pytest
import torch
from typer.testing import CliRunner

from sdesolve import VPSDE
from sdesolve.cli import app
from sdesolve.fit_grid import load_fitted_grid


def run(*args):
    return CliRunner().invoke(app, list(args))


def one_line_error(result, match):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and match in lines[0], result.stderr


@pytest.fixture(scope="module")
def ring_grid(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "grid.json"
    result = run("fit-grid", "--method", "ipndm", "--nfe", "5", "--calibration-seeds", "0-31", "--max-evals", "20",
                 "--dtype", "float64", "--out", str(path))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "calibration objective" in result.output and "score evaluations" in result.output
    return path


def test_fit_grid_writes_the_record_and_sample_runs_on_it(ring_grid, tmp_path):
    grid, record = load_fitted_grid(ring_grid)
    assert record["problem"] == "ring" and record["sde"] == repr(VPSDE()) and record["method"] == "ipndm"
    assert record["nfe"] == 5 and record["objective"] == "reference" and record["calibration_seeds"] == list(range(32))
    assert record["eps"] == 1e-3 and record["value"] <= record["initial"] and record["score_evaluations"] > 0
    assert grid.shape == (6,) and float(grid[0]) == 1.0 and float(grid[-1]) == 1e-3
    result = run("sample", "--ode", "--method", "ipndm", "--grid", str(ring_grid), "--num-samples", "300",
                 "--out", str(tmp_path))  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "metrics.json").read_text())
    assert out["metrics"]["nfe"] == 5 and out["config"]["steps"] == 5 and out["config"]["grid"] == grid.tolist()


@pytest.mark.parametrize(
    "args,match",
    [
        (["--ode", "--method", "unipc_3"], "fitted for method 'ipndm'"),
        (["--ode", "--method", "ipndm", "--sde", "ve"], "fitted for sde"),
        (["--ode", "--method", "ipndm", "--problem", "digits"], "fitted for problem 'ring'"),
        (["--pc", "--predictor", "ancestral"], "fitted for method 'ipndm'"),
    ],
)
def test_sample_refuses_a_grid_fitted_for_something_else(ring_grid, tmp_path, args, match):
    one_line_error(run("sample", "--grid", str(ring_grid), "--num-samples", "10", "--out", str(tmp_path), *args), match)
    assert not (tmp_path / "metrics.json").exists()


def test_sample_refuses_a_file_that_is_not_a_grid(tmp_path):
    (tmp_path / "bad.json").write_text('{"times": [1.0, 0.5]}')
    one_line_error(run("sample", "--grid", str(tmp_path / "bad.json"), "--out", str(tmp_path)), "not a fitted grid")


def test_klub_grid_for_a_predictor(tmp_path):
    path = tmp_path / "klub.json"
    result = run("fit-grid", "--method", "ancestral", "--nfe", "8", "--objective", "klub", "--calibration-seeds",
                 "0-127", "--out", str(path))  # fmt: skip
    assert result.exit_code == 0, result.output
    grid, record = load_fitted_grid(path)
    assert record["objective"] == "klub" and record["init"] == "cosine" and grid.dtype == torch.float64
    result = run("sample", "--pc", "--predictor", "ancestral", "--corrector", "none", "--grid", str(path), "--num-samples",
                 "200", "--out", str(tmp_path / "s"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "s" / "metrics.json").read_text())["metrics"]["nfe"] == 8


@pytest.mark.parametrize(
    "args,match",
    [
        (["--nfe", "0"], "--nfe: nfe must be >= 1"),
        (["--method", "dopri5"], "--method: unknown method 'dopri5'"),
        (["--objective", "kl"], "--objective: unknown objective"),
        (["--calibration-seeds", "5-1"], "--calibration-seeds: '5-1' holds no seeds"),
        (["--calibration-seeds", "a-b"], "--calibration-seeds: expected A-B"),
        (["--calibration-seeds", "1,1,2"], "distinct"),
        (["--method", "dpm_solver_3", "--nfe", "2"], "nfe=2 is below the cost of one step"),
        (["--method", "ancestral"], "use objective='klub' for predictors"),
        (["--max-evals", "0"], "--max-evals: max_evals must be >= 1"),
        (["--problem", "cifar"], "--problem: unknown problem"),
    ],
)
def test_fit_grid_bad_options_exit_2_with_one_line(tmp_path, args, match):
    out = tmp_path / "g.json"
    one_line_error(run("fit-grid", "--calibration-seeds", "0-7", "--out", str(out), *args), match)
    assert not out.exists()


@pytest.mark.slow
def test_digits_grid_round_trip(tmp_path):
    """The digits UNet: a 4-NFE DDIM grid fitted on 8 seeds (3 Powell runs), then sampled on."""
    path = tmp_path / "digits.json"
    result = run("fit-grid", "--problem", "digits", "--method", "ddim", "--nfe", "4", "--calibration-seeds", "0-7",
                 "--max-evals", "3", "--out", str(path))  # fmt: skip
    assert result.exit_code == 0, result.output
    result = run("sample", "--problem", "digits", "--ode", "--method", "ddim", "--grid", str(path), "--num-samples",
                 "32", "--out", str(tmp_path / "s"))  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert out["metrics"]["nfe"] == 4 and out["config"]["grid"] == load_fitted_grid(path)[0].tolist()
