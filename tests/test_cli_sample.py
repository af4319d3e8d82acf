"""``sdesolve sample``: metrics against the exact p_eps below statistically derived thresholds, outputs, errors.

Thresholds for n samples of the ring mixture (tr Σ = 4.04, largest weight w = 8/36): mean error (2-D norm)
< 4 sqrt(tr Σ / n); relative covariance error < 4 sqrt(2/n) + the discretisation bias (reverse diffusion, 200 VE
steps, no corrector: +4.5% in variance on Gaussian data, exact propagation; 2% at 500 VP steps); per-mode weight
error < 4 sqrt(w(1-w)/n) + 0.005 (max-responsibility assignment: neighbouring modes 7.6 std apart); energy
distance < 0.01 at n = 4000 (measured: exact-vs-exact floor 0.003; ring radius x1.1 gives 0.019, equal weights 0.15).
"""

import json
import math
import sys

import matplotlib.image
import pytest
from typer.testing import CliRunner

from sdesolve.cli import app, bench

W = 8 / 36


def invoke(tmp_path, *args):
    return CliRunner().invoke(app, ["sample", "--out", str(tmp_path), *args])


def check_outputs(tmp_path, n, disc):
    m = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert m["mean_err"] < 4 * math.sqrt(4.04 / n)
    assert m["cov_err"] < 4 * math.sqrt(2 / n) + disc
    assert m["mode_weight_err_max"] < 4 * math.sqrt(W * (1 - W) / n) + 0.005
    assert m["energy_distance"] < 0.01 * 4000 / n  # the exact-vs-exact floor scales as 1/n
    assert m["sliced_w2"] < 0.25 and m["nfe"] > 0 and m["wall_s"] > 0
    png = tmp_path / "samples.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(png)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    return m


@pytest.mark.parametrize(
    "args,disc,nfe",
    [([], 0.02, 400), (["--sde", "ve", "--corrector", "none"], 0.05, 200)],
    ids=["vp-pc", "ve-no-corrector"],
)
def test_sample_runs_and_meets_thresholds(tmp_path, args, disc, nfe):
    result = invoke(tmp_path, "--n", "4000", "--steps", "200", *args)
    assert result.exit_code == 0, result.output
    assert "energy distance" in result.output and "NFE" in result.output
    assert check_outputs(tmp_path, 4000, disc)["nfe"] == nfe


def test_sample_ode_fixed_step(tmp_path):
    result = invoke(tmp_path, "--n", "2000", "--ode", "--method", "heun", "--steps", "50")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["nfe"] == 100


@pytest.mark.slow
@pytest.mark.parametrize("args", [[], ["--sde", "ve", "--corrector", "none"]], ids=["defaults", "ve-no-corrector"])
def test_sample_with_default_size(tmp_path, args):
    # The documented defaults: 10 000 samples, 500 steps.
    result = invoke(tmp_path, *args)
    assert result.exit_code == 0, result.output
    check_outputs(tmp_path, 10_000, 0.03)


@pytest.mark.parametrize(
    "args,match",
    [
        (["--predictor", "heun"], "choose one of: euler_maruyama, reverse_diffusion, ancestral"),
        (["--corrector", "mala"], "choose one of: langevin, annealed_langevin, none"),
        (["--sde", "ddpm"], "choose one of: vp, subvp, ve, rectified_flow, cosine, edm"),
        (["--method", "rk45", "--ode"], "choose one of: dopri5"),
        (["--dtype", "float16"], "choose one of: float32, float64"),
        (["--steps", "0"], "steps must be >= 1"),
        (["--snr", "-1"], "snr must be finite and >= 0"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, args, match):
    result = invoke(tmp_path, "--n", "10", *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and match in lines[0], result.stderr
    assert not (tmp_path / "metrics.json").exists()


@pytest.fixture
def restore_benchmarks_modules():
    """`sdesolve bench` registers the ``benchmarks`` package it loads; put the suite's own import back after."""
    saved = {k: v for k, v in sys.modules.items() if k == "benchmarks" or k.startswith("benchmarks.")}
    yield
    for k in [k for k in sys.modules if k == "benchmarks" or k.startswith("benchmarks.")]:
        del sys.modules[k]
    sys.modules.update(saved)


def _package(folder, main_body):
    (folder / "benchmarks").mkdir(parents=True)
    (folder / "benchmarks" / "__init__.py").write_text("")
    (folder / "benchmarks" / "__main__.py").write_text(main_body)


def test_bench_never_imports_the_working_directory(tmp_path, monkeypatch, restore_benchmarks_modules):
    # An untrusted folder with its own benchmarks/ package: running `sdesolve bench` there must not import it.
    untrusted, checkout = tmp_path / "untrusted", tmp_path / "checkout"
    _package(untrusted, f"open({str(untrusted / 'PWNED')!r}, 'w').close()\ndef main(argv): pass\n")
    _package(checkout, f"def main(argv):\n    open({str(checkout / 'ran')!r}, 'w').write(' '.join(argv))\n")
    (checkout / "pyproject.toml").write_text("")
    monkeypatch.setattr(bench, "checkout_root", lambda: checkout)
    monkeypatch.chdir(untrusted)
    monkeypatch.syspath_prepend(str(untrusted))  # even with the folder on sys.path (as `python -m sdesolve` puts it)
    for k in [k for k in sys.modules if k == "benchmarks" or k.startswith("benchmarks.")]:
        monkeypatch.delitem(sys.modules, k)
    result = CliRunner().invoke(app, ["bench", "--quick"])
    assert result.exit_code == 0, result.output
    assert (checkout / "ran").read_text() == "--quick"
    assert not (untrusted / "PWNED").exists()


def test_bench_outside_a_source_checkout_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "checkout_root", lambda: tmp_path)  # e.g. a wheel in site-packages
    result = CliRunner().invoke(app, ["bench", "--quick"])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "source checkout" in lines[0], result.stderr
