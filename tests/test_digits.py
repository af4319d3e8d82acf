"""The digits problem: data split, Fréchet distance, training smoke run, the shipped model and the CLI outputs."""

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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

ROOT = Path(__file__).resolve().parents[1]


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


def test_cli_sample_digits_resumes_and_pins_the_weights(tmp_path):
    """The digits path of `sdesolve sample` stores chunks too: a lost chunk is resampled to the same bytes, the
    manifest pins the weights by their SHA-256, and a changed argument is refused."""
    args = ["sample", "--problem", "digits", "--steps", "4", "--seeds", "0-15", "--chunk-size", "8"]
    args += ["--pc", "--corrector", "none", "--quiet", "--out", str(tmp_path)]
    assert CliRunner().invoke(app, args).exit_code == 0
    whole = (tmp_path / "samples.npy").read_bytes()
    (tmp_path / "chunks" / "chunk-000001.npz").unlink()  # as if killed before the second chunk was written
    (tmp_path / "samples.npy").unlink()
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert (tmp_path / "samples.npy").read_bytes() == whole
    m = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert (m["chunks"], m["chunks_reused"], m["samples_computed"]) == (2, 1, 8)
    model = json.loads((tmp_path / "manifest.json").read_text())["config"]["model"]
    assert model["sha256"] == hashlib.sha256(WEIGHTS_PATH.read_bytes()).hexdigest()
    changed = CliRunner().invoke(app, [*args, "--steps", "5"])
    assert changed.exit_code == 2 and "steps: 4 → 5" in changed.stderr


def test_cli_train_smoke(tmp_path):
    args = ["train", "--steps", "2", "--batch-size", "4", "--classifier-steps", "2", "--threads", "1"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "digits.safetensors").is_file()
    assert json.loads((tmp_path / "digits.json").read_text())["train"]["steps"] == 2


def test_cli_rejects_unknown_problem(tmp_path):
    result = CliRunner().invoke(app, ["sample", "--problem", "cifar", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "problem" in result.output


def test_training_resumed_from_a_checkpoint_ends_bitwise_equal(tmp_path, monkeypatch):
    """Interrupted right after the step-8 checkpoint (as by Ctrl-C), resumed: the same weights, bit for bit (CPU)."""
    import sdesolve.digits as digits

    kw = dict(steps=20, batch_size=8, classifier_steps=3, log_every=4, progress=False, checkpoint_every=8)
    whole = train_digits(**kw, checkpoint=tmp_path / "whole.pt")
    real_open, saved = digits.atomic_open, []

    @contextlib.contextmanager
    def interrupt_after_first(path, mode="wb"):
        with real_open(path, mode) as f:
            yield f
        saved.append(path)
        raise KeyboardInterrupt

    monkeypatch.setattr(digits, "atomic_open", interrupt_after_first)
    with pytest.raises(KeyboardInterrupt):
        train_digits(**kw, checkpoint=tmp_path / "cut.pt")
    monkeypatch.setattr(digits, "atomic_open", real_open)
    assert torch.load(saved[0], weights_only=True)["step"] == 8
    torch.manual_seed(1234)  # the resumed run restores every RNG state itself
    resumed = train_digits(**kw, checkpoint=tmp_path / "cut.pt", resume=True)
    for a, b in zip(whole.unet.state_dict().values(), resumed.unet.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [p["loss"] for p in resumed.info["loss_curve"]] == [p["loss"] for p in whole.info["loss_curve"]]
    with pytest.raises(ValueError, match=r"other arguments \(lr: 0.002 → 0.001\)"):
        train_digits(**{**kw, "lr": 1e-3}, checkpoint=tmp_path / "cut.pt", resume=True)
    with pytest.raises(ValueError, match="exists: resume it"):
        train_digits(**kw, checkpoint=tmp_path / "cut.pt")
    with pytest.raises(ValueError, match="nothing to resume: no checkpoint at"):
        train_digits(**kw, checkpoint=tmp_path / "none.pt", resume=True)


@pytest.mark.slow
def test_cli_train_killed_and_resumed_writes_the_same_weights(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = ["train", "--steps", "30", "--batch-size", "8", "--classifier-steps", "3", "--threads", "1",
            "--checkpoint-every", "5"]  # fmt: skip
    whole = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "whole")])  # one torch thread, as below
    assert whole.exit_code == 0, whole.output
    assert not (tmp_path / "whole" / "checkpoint.pt").exists()  # removed once the weights are written
    cut, cmd = tmp_path / "cut", [sys.executable, "-m", "sdesolve", *args, "--out", str(tmp_path / "cut")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not (cut / "checkpoint.pt").exists():  # killed once the first checkpoint is on disk
        assert proc.poll() is None, "training ended before a checkpoint"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL and not (cut / "digits.safetensors").exists()
    resumed = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (cut / "digits.safetensors").read_bytes() == (tmp_path / "whole" / "digits.safetensors").read_bytes()


def test_truncated_or_corrupt_checkpoint_and_weights_are_named(tmp_path):
    kw = dict(steps=2, batch_size=4, classifier_steps=2, progress=False, checkpoint_every=1)
    ckpt = tmp_path / "checkpoint.pt"
    model = train_digits(**kw, checkpoint=ckpt)
    whole = ckpt.read_bytes()
    ckpt.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"checkpoint '.*checkpoint.pt' is truncated or corrupt \(BadZipFile"):
        train_digits(**kw, checkpoint=ckpt, resume=True)
    flipped = bytearray(whole)
    flipped[len(whole) // 2] ^= 0x40  # inside a tensor's bytes: torch.load alone would not notice
    ckpt.write_bytes(flipped)
    with pytest.raises(ValueError, match=r"checkpoint '.*checkpoint.pt' is truncated or corrupt \(bad CRC-32"):
        train_digits(**kw, checkpoint=ckpt, resume=True)
    result = CliRunner().invoke(app, ["train", "--steps", "2", "--batch-size", "4", "--classifier-steps", "2",
                                      "--threads", "1", "--out", str(tmp_path), "--resume"])  # fmt: skip
    assert result.exit_code == 2 and "Error: checkpoint" in result.stderr and "checkpoint.pt" in result.stderr
    weights = tmp_path / "digits.safetensors"
    save_digits(model, weights)
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"does not describe the weights '.*digits.safetensors' \(SHA-256 differs"):
        load_digits_model(weights)  # the record written with them carries their hash (sdesolve.weights)
    weights.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    with pytest.raises(ValueError, match=r"does not describe the weights '.*digits.safetensors' \(SHA-256 differs"):
        load_digits_model(weights)
