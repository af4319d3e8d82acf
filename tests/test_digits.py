"""The digits problem: data split, Fréchet distance, training smoke run, the shipped model and the CLI outputs."""

import json

import matplotlib.image
import numpy as np
import pytest
import scipy.linalg
import torch
from typer.testing import CliRunner

pytest.importorskip("diffusers")
pytest.importorskip("sklearn")

from sdesolve import pc_sample  # noqa: E402
from sdesolve.cli import app  # noqa: E402
from sdesolve.digits import (  # noqa: E402
    HELD_OUT,
    WEIGHTS_PATH,
    digits_metrics,
    load_digits_data,
    load_digits_model,
    save_digits,
    to_model_scale,
    train_digits,
)
from sdesolve.losses import dsm_losses  # noqa: E402
from sdesolve.metrics import frechet_distance  # noqa: E402


def test_frechet_distance_matches_the_sqrtm_reference():
    """pytorch-fid's formula with scipy's sqrtm (an independent implementation) on correlated data."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    y = torch.randn(400, 6, generator=g, dtype=torch.float64) * 2 + 1
    cx, cy = np.cov(x.numpy().T), np.cov(y.numpy().T)
    root = scipy.linalg.sqrtm(cx @ cy).real
    ref = ((x.mean(0) - y.mean(0)) ** 2).sum().item() + np.trace(cx + cy - 2 * root)
    assert frechet_distance(x, y) == pytest.approx(ref, rel=1e-9)
    assert abs(frechet_distance(x, x)) < 1e-9
    with pytest.raises(ValueError, match="equal d"):
        frechet_distance(x, y[:, :3])


def test_split_and_scale():
    data = load_digits_data()
    assert data.held_out.shape == (HELD_OUT, 1, 8, 8) and data.train.shape == (1797 - HELD_OUT, 1, 8, 8)
    assert set(data.held_out_labels.tolist()) == set(range(10))
    centres = to_model_scale(data.train)
    assert float(centres.min()) == pytest.approx(-1 + 1 / 17) and float(centres.max()) == pytest.approx(1 - 1 / 17)
    noisy = to_model_scale(data.train, torch.Generator().manual_seed(0))
    assert float(noisy.min()) >= -1 and float(noisy.max()) < 1 and float((noisy - centres).abs().max()) <= 1 / 17


def test_training_smoke_run_saves_and_loads(tmp_path):
    model = train_digits(steps=4, batch_size=8, classifier_steps=3, log_every=2, progress=False)
    assert [p["step"] for p in model.info["loss_curve"]] == [2, 4]
    assert all(np.isfinite(p["loss"]) for p in model.info["loss_curve"])
    path = tmp_path / "digits.safetensors"
    save_digits(model, path)
    loaded = load_digits_model(path)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3.0, 700.0])
    with torch.no_grad():
        want = model.unet.half().float()(x, t).sample  # float16 storage
        torch.testing.assert_close(loaded.unet(x, t).sample, want)


@pytest.fixture(scope="module")
def shipped():
    return load_digits_model()


def test_shipped_weights_are_small_and_trained(shipped):
    assert WEIGHTS_PATH.stat().st_size < 2 * 2**20
    assert shipped.info["classifier_held_out_accuracy"] > 0.9
    # ε-prediction: predicting 0 scores E‖z‖²/d = 1; the trained UNet on held-out digits must do far better.
    data = load_digits_data()
    x0 = to_model_scale(data.held_out, torch.Generator().manual_seed(1))
    with torch.no_grad():
        losses = dsm_losses(shipped.sde, shipped.score_fn(), x0, generator=torch.Generator().manual_seed(2))
    assert float(losses.mean()) < 0.25


def test_shipped_model_samples_finite_digits(shipped):
    with torch.no_grad():
        x = pc_sample(shipped.sde, shipped.score_fn(), (8, 1, 8, 8), steps=10, corrector=None,
                      generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert x.shape == (8, 1, 8, 8) and bool(torch.isfinite(x).all())
    metrics = digits_metrics(x, shipped.classifier)
    assert metrics["n"] == 8 and sum(metrics["label_histogram"]) == pytest.approx(1)
    with pytest.raises(FloatingPointError, match="non-finite"):  # a diverged sampler (diffusers' DPM++ at 1000 steps)
        digits_metrics(x * float("nan"), shipped.classifier)


@pytest.mark.parametrize("args", [["--pc", "--corrector", "none"], ["--ode", "--method", "euler"]])
def test_cli_sample_digits_writes_png_and_metrics(tmp_path, args):
    result = CliRunner().invoke(
        app, ["sample", "--problem", "digits", "--steps", "4", "--n", "16", "--out", str(tmp_path), *args]
    )
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    for key in ("frechet_distance", "frechet_distance_floor", "label_histogram", "nfe", "wall_s"):
        assert key in m
    assert m["nfe"] == 4 and len(m["label_histogram"]) == 10
    assert matplotlib.image.imread(tmp_path / "samples.png").ndim == 2
    assert np.load(tmp_path / "samples.npy").shape == (16, 1, 8, 8)


def test_cli_train_smoke(tmp_path):
    args = ["train", "--steps", "2", "--batch-size", "4", "--classifier-steps", "2", "--threads", "1"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "digits.safetensors").is_file()
    assert json.loads((tmp_path / "digits.json").read_text())["train"]["steps"] == 2


def test_cli_rejects_unknown_problem(tmp_path):
    result = CliRunner().invoke(app, ["sample", "--problem", "cifar", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "problem" in result.output
