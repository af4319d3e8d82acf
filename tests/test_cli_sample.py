"""``sdesolve sample``: metrics against the exact p_eps below statistically derived thresholds, outputs, errors.

Thresholds for n samples of the ring mixture (tr Σ = 4.04, largest weight w = 8/36): mean error (2-D norm)
< 4 sqrt(tr Σ / n); relative covariance error < 4 sqrt(2/n) + the discretisation bias (reverse diffusion, 200 VE
steps, no corrector: +4.5% in variance on Gaussian data, exact propagation; 2% at 500 VP steps); per-mode weight
error < 4 sqrt(w(1-w)/n) + 0.005 (max-responsibility assignment: neighbouring modes 7.6 std apart); energy
distance < 0.01 at n = 4000 (measured: exact-vs-exact floor 0.003; ring radius x1.1 gives 0.019, equal weights 0.15).
"""

import io
import json
import math
import sys

import matplotlib.image
import pytest
from typer.testing import CliRunner

import sdesolve
from sdesolve import digits
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
    result = invoke(tmp_path, "--pc", "--n", "4000", "--steps", "200", *args)
    assert result.exit_code == 0, result.output
    assert "energy distance" in result.output and "NFE" in result.output
    assert check_outputs(tmp_path, 4000, disc)["nfe"] == nfe


def test_sample_ode_fixed_step(tmp_path):
    result = invoke(tmp_path, "--n", "2000", "--ode", "--method", "heun", "--steps", "50")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["nfe"] == 100


def test_default_is_the_docs_recommendation(tmp_path):
    """No options: iPNDM on the cosine grid, 20 steps of the probability-flow ODE (docs/fewer-steps.md,
    "Recommendation"). Discretisation allowance 0.02 in covariance, as for 500 PC steps (its ring RMS at 20 NFE
    is 0.017 in the docs' table)."""
    result = invoke(tmp_path, "--n", "4000")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert config["sampler"] == "ode" and config["ode_method"] == "ipndm" and config["grid"] == "cosine"
    assert config["predictor"] is None and config["snr"] is None and config["dtype"] == "float32"
    assert check_outputs(tmp_path, 4000, 0.02)["nfe"] == 20


def test_grid_by_name_and_lower_order_final(tmp_path):
    result = invoke(tmp_path, "--n", "500", "--method", "dpm_solver_pp_2m", "--steps", "10", "--grid", "logsnr")
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "metrics.json").read_text())
    assert out["config"]["grid"] == "logsnr" and out["config"]["lower_order_final"] is True  # diffusers' default
    assert out["metrics"]["nfe"] == 10
    result = invoke(tmp_path / "b", "--n", "500", "--method", "heun", "--steps", "10", "--no-lower-order-final")
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["config"]["lower_order_final"] is False


def test_version_and_help_are_plain_text():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"sdesolve {sdesolve.__version__}"
    for command in ("sample", "likelihood", "fit-grid", "verify", "train", "bench"):
        text = CliRunner().invoke(app, [command, "--help"]).output
        assert "``" not in text and "<bool>" not in text and "╭" not in text, (command, text)


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--pc"], ["--pc", "--sde", "ve", "--corrector", "none"]], ids=["pc", "ve-pc"])
def test_sample_with_default_size(tmp_path, args):
    # The PC defaults: 10 000 samples, 500 steps.
    result = invoke(tmp_path, *args)
    assert result.exit_code == 0, result.output
    check_outputs(tmp_path, 10_000, 0.03)


@pytest.mark.parametrize(
    "args,match",
    [
        (["--pc", "--predictor", "heun"], "choose one of: euler_maruyama, reverse_diffusion, ancestral"),
        (["--pc", "--corrector", "mala"], "choose one of: langevin, annealed_langevin, none"),
        (["--sde", "ddpm"], "choose one of: vp, subvp, ve, rectified_flow, cosine, edm"),
        (["--method", "rk45", "--ode"], "choose one of: dopri5"),
        (["--dtype", "float16"], "choose one of: float32, float64"),
        (["--steps", "0"], "steps must be >= 1"),
        (["--pc", "--snr", "-1"], "snr must be finite and >= 0"),
        (["--snr", "0.1"], "--snr apply to predictor-corrector sampling: add --pc"),
        (["--pc", "--method", "heun"], "--method heun is an ODE method"),
        (["--grid", "spiral"], "--grid: 'spiral' is neither a grid name"),
        (["--threads", "0"], "--threads: threads must be >= 1"),
        (["--problem", "digits", "--n", "0"], "--num-samples"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, args, match):
    result = invoke(tmp_path, "--n", "10", *args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and match in lines[0], result.stderr
    assert not (tmp_path / "metrics.json").exists()


def test_progress_bar_on_a_terminal_only(tmp_path, monkeypatch):
    from sdesolve.cli._progress import score_progress

    for tty in (False, True):
        err = io.StringIO()
        err.isatty = lambda tty=tty: tty
        monkeypatch.setattr(sys, "stderr", err)
        with score_progress(lambda x, t: x) as score:
            for _ in range(3):
                score(1.0, 0.5)
        assert ("score evaluations: 3" in err.getvalue() or "3eval" in err.getvalue().replace(" ", "")) == tty


def test_digits_names_missing_packages_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(digits.DEPENDENCIES, "no_such_module_27", "no-such-package")
    result = invoke(tmp_path, "--problem", "digits")
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and "no-such-package" in lines[0], result.stderr
    assert "pip install" in lines[0] and not (tmp_path / "metrics.json").exists()


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
