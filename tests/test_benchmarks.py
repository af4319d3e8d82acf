"""Smoke test of ``python -m benchmarks``: it runs at tiny sizes and reports every row (no timing assertions)."""

import json

import torch

from benchmarks.__main__ import main
from benchmarks.dpm_adaptive import FIXED
from benchmarks.dpm_adaptive import main as adaptive_main
from benchmarks.ode import METHODS
from benchmarks.pc import PREDICTORS

TINY = {
    "engine": {"shapes": [(2, 2)], "steps": 3, "repeats": 1},
    "compiled": {"shapes": [(2, 2)], "steps": 3, "repeats": 1},
    "cuda": {"shapes": [(2, 2)], "steps": 3, "repeats": 1},
    "em": {"batch": 8, "steps": 3, "repeats": 1},
    "ode": {"shapes": [(8, 2)], "repeats": 1},
    "kdiffusion": {"shape": (2, 2), "steps": 3, "repeats": 1},
    "pc": {"batch": 64, "steps": 3},
    "noise": {"dims": [2], "batch": 16, "steps": 3, "repeats": 1, "processes": 0},
    "durable": {
        "cases": [{"problem": "ring", "n": 40, "steps": 2, "label": "tiny"}],
        "repeats": 1,
        "memory_problems": ["ring"],
        "memory_sizes": [8, 80],
        "memory_steps": 1,
    },
}


def test_benchmarks_main_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / "results.json"
    results = main(["--quick", "--out", str(out)], sizes=TINY)
    assert len(results["ode"]) == 2 * len(METHODS)
    assert all(r["max_err"] < 1e-3 for r in results["ode"])  # rtol = atol = 1e-5 on a unit-scale flow, x100
    assert len(results["pc"]) == len(PREDICTORS) + 3
    assert len(results["engine"]) == 3 and {"speedup", "vs_floor"} <= set(results["engine"][0])
    assert len(results["em"]) == 1 and len(results["kdiffusion"]) in (0, 2)
    assert len(results["compiled"]) == 2 and {"eager_us", "compiled_us"} <= set(results["compiled"][0])
    assert len(results["cuda"]) == (2 if torch.cuda.is_available() else 0)
    assert len(results["noise"]["draws"]) == 4 and len(results["noise"]["pc"]) == 4
    assert [r["path"] for r in results["durable"]["memory"]] == ["durable", "memory"]
    assert results["durable"]["overhead"][0]["durable_s"] > 0 and results["durable"]["memory"][0]["peak_small_mib"] > 0
    assert json.loads(out.read_text())["sizes"]["em"] == TINY["em"]
    assert "time_vs_dopri5" in capsys.readouterr().out


def test_dpm_adaptive_benchmark_runs(tmp_path, capsys):
    sizes = {"n_gauss": 4, "n_mix": 4, "rtols": (0.05,), "variants": {"DPM-Solver-23": {"order": 3}}}
    rows = adaptive_main(["--out", str(tmp_path)], sizes=sizes)["rows"]
    assert len(rows) == 3 and all(r["nfe_mean"] <= r["nfe"] for r in rows)
    assert all(abs(r[m][0] - r["nfe_mean"]) <= 3 for r in rows for m in FIXED)  # fixed runs at the matching NFE
    assert "| VE ring mixture | DPM-Solver-23 | 0.05 |" in capsys.readouterr().out
    assert json.loads((tmp_path / "dpm_adaptive.json").read_text())[0]["solver"] == "DPM-Solver-23"


def test_fitted_grids_benchmark_runs(tmp_path):
    from benchmarks.fitted_grids import FITTED, FIXED
    from benchmarks.fitted_grids import main as fitted_main

    argv = ["--problems", "gaussian", "--nfes", "3", "--out", str(tmp_path)]
    rows = fitted_main(argv, sizes={"gaussian": (8, 16)})
    assert len(rows) == len(FIXED) + len(FITTED) and all(r["rms"] >= 0 for r in rows)
    assert "moment error" in (tmp_path / "fitted_grids.md").read_text() and (tmp_path / "fitted_grids.png").exists()


def test_fitted_grids_report_puts_the_exact_flows_distance_beside_the_floor():
    from benchmarks.fitted_grids import report

    common = {"problem": "digits", "method": "ipndm", "frechet_distance_floor": 1.25}
    rows = [common | {"grid": "exact", "frechet_distance": 0.5},
            common | {"nfe": 4, "steps": 4, "grid": "logsnr", "rms": 2.0, "frechet_distance": 3.0}]  # fmt: skip
    text = report(rows)
    assert "floor 1.25, the exact flow's 0.50)" in text and "| logsnr | 3 |" in text and "| exact |" not in text


def test_schedules_benchmark_quick_writes_its_tables(tmp_path):
    from benchmarks import schedules

    result = schedules.main(["--quick", "--out", str(tmp_path)])
    table = (tmp_path / "schedules.md").read_text()
    assert {r["sde"] for r in result["nfe"]} == set(schedules.SCHEDULES)
    assert "NFE to 1%" in table and "rectified_flow" in table
