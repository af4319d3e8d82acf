"""The class-conditional digits problem: training smoke run, the shipped UNet and noise-conditional classifier,
guidance on the real model, and ``sdesolve sample --problem digits --label K --guidance W`` (outputs and errors)."""

import json

import matplotlib.image
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("diffusers")
pytest.importorskip("sklearn")

from sdesolve import ode_sample  # noqa: E402
from sdesolve.cli import app  # noqa: E402
from sdesolve.digits import load_digits_data, load_digits_model, to_model_scale  # noqa: E402
from sdesolve.digits_conditional import (  # noqa: E402
    CONDITIONAL_WEIGHTS_PATH,
    NULL_LABEL,
    ConditionalDigitsModel,
    label_metrics,
    load_conditional_digits_model,
    save_conditional_digits,
    train_conditional_unet,
    train_noisy_classifier,
)


def test_training_smoke_run_saves_and_loads(tmp_path):
    data = load_digits_data()
    unet, info = train_conditional_unet(data, steps=3, batch_size=8, log_every=1, progress=False)
    clf, clf_info = train_noisy_classifier(data, steps=3, batch_size=8, log_every=1, progress=False)
    assert [p["step"] for p in info["loss_curve"]] == [1, 2, 3] and info["label_dropout"] == 0.1
    assert all(np.isfinite(p["loss"]) for p in info["loss_curve"] + clf_info["loss_curve"])
    path = tmp_path / "c.safetensors"
    save_conditional_digits(ConditionalDigitsModel(unet, clf, {"train": info}), path)
    loaded = load_conditional_digits_model(path)
    x, t, y = torch.randn(3, 1, 8, 8), torch.tensor([3.0, 300.0, 900.0]), torch.tensor([1, 7, NULL_LABEL])
    with torch.no_grad():
        want = unet.half().float()(x, t, class_labels=y).sample  # float16 storage
        torch.testing.assert_close(loaded.unet(x, t, class_labels=y).sample, want)
        level = torch.tensor([0.1, 1.0, 10.0])
        torch.testing.assert_close(loaded.classifier(x, level), clf.half().float()(x, level))
    with pytest.raises(ValueError, match="label_dropout"):
        train_conditional_unet(data, steps=1, label_dropout=0.0)


@pytest.fixture(scope="module")
def shipped():
    return load_conditional_digits_model()


def test_shipped_weights_are_small_and_trained(shipped):
    assert CONDITIONAL_WEIGHTS_PATH.stat().st_size < 2 * 2**20
    assert shipped.info["null_label"] == NULL_LABEL and shipped.info["train"]["label_dropout"] == 0.1
    # the noisy classifier on held-out digits at a low noise level (recomputed here, not read from info)
    data = load_digits_data()
    x0 = to_model_scale(data.held_out)
    noisy = x0 + 0.1 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        pred = shipped.classifier(noisy, torch.full((x0.shape[0],), 0.1)).argmax(1)
    assert float((pred == data.held_out_labels).double().mean()) > 0.9


def test_guided_scores_of_the_real_model(shipped):
    """The batched null-label CFG equals the two separate calls (to float32 round-off of a different batch size); the
    classifier-guided score counts its two calls; the labels change the score."""
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(6, 1, 8, 8, generator=g), torch.full((6,), 0.4)
    with torch.no_grad():
        cond, uncond = shipped.score_fn(3)(x, t), shipped.score_fn(NULL_LABEL)(x, t)
        guided = shipped.cfg_score_fn(3, 2.0)
        torch.testing.assert_close(guided(x, t), uncond + 2.0 * (cond - uncond), rtol=1e-4, atol=1e-4)
        assert guided.model_calls == 1 and guided.model_rows == 12
        assert float((shipped.score_fn(1)(x, t) - cond).abs().max()) > 1e-2
    cg = shipped.classifier_guided_score_fn(3, 2.0)
    assert cg(x, t).shape == x.shape and cg.model_calls == 2
    with pytest.raises(ValueError, match="label"):
        shipped.score_fn(11)


def test_label_metrics_floor_is_the_training_digits():
    """Training digits of a label scored as samples: labelled as requested (the fixed classifier's accuracy) and at
    the floor exactly (the same n and points)."""
    data, clf = load_digits_data(), load_digits_model().classifier
    train = to_model_scale(data.train[data.train_labels == 4])
    m = label_metrics(train, 4, clf, data)
    assert m["label_accuracy"] > 0.95 and m["n_frechet"] == train.shape[0]
    assert m["frechet_distance"] == pytest.approx(m["frechet_distance_floor"], rel=1e-12)
    with pytest.raises(ValueError, match="label"):
        label_metrics(train, 10, clf, data)


def invoke(tmp_path, *args):
    return CliRunner().invoke(app, ["sample", "--problem", "digits", "--out", str(tmp_path), *args])


def test_cli_label_sweep_writes_outputs(tmp_path):
    args = ["--label", "3,7", "--guidance", "0,2", "--ode", "--method", "dpm_solver_pp_2m", "--steps", "8",
            "--num-samples", "12"]  # fmt: skip
    result = invoke(tmp_path, *args)
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "metrics.json").read_text())
    assert out["config"]["labels"] == [3, 7] and out["config"]["guidance"] == [0.0, 2.0]
    runs = out["metrics"]
    assert [r["scale"] for r in runs] == [0.0, 2.0]
    for r in runs:
        assert r["nfe"] == 8 and r["model_calls"] == 8 and r["model_rows"] == 8 * 2 * 24  # both halves, one call
        assert {m["label"] for m in r["labels"]} == {3, 7}
        for m in r["labels"]:
            assert 0 <= m["label_accuracy"] <= 1 and m["frechet_distance_floor"] > 0 and m["n_frechet"] == 12
    assert np.load(tmp_path / "samples.npy").shape == (2, 2, 12, 1, 8, 8)
    for name in ("label_3.png", "label_7.png", "guidance_sweep.png"):
        assert matplotlib.image.imread(tmp_path / name).ndim >= 2


def test_cli_classifier_guidance_with_interval(tmp_path):
    args = ["--label", "5", "--guidance", "2", "--classifier-guidance", "--guidance-interval", "0.3,5", "--ode",
            "--method", "ddim", "--steps", "6", "--num-samples", "8"]  # fmt: skip
    result = invoke(tmp_path, *args)
    assert result.exit_code == 0, result.output
    out = json.loads((tmp_path / "metrics.json").read_text())
    assert out["config"]["guidance_kind"] == "classifier" and out["config"]["guidance_interval"] == [0.3, 5.0]
    assert out["metrics"][0]["model_calls"] == 12  # score + classifier per evaluation


@pytest.mark.parametrize(
    "args,message",
    [
        (["--label", "11"], "--label"),
        (["--label", "three"], "--label"),
        (["--label", "3", "--guidance", "-1"], "--guidance"),
        (["--label", "3", "--guidance-interval", "2,1"], "--guidance-interval"),
        (["--label", "3", "--guidance-interval", "2"], "--guidance-interval"),
        (["--guidance", "2"], "need --label"),
        (["--classifier-guidance"], "need --label"),
    ],
)
def test_cli_bad_guidance_options(tmp_path, args, message):
    result = CliRunner().invoke(app, ["sample", "--problem", "digits", "--out", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output
    ring = CliRunner().invoke(app, ["sample", "--label", "3", "--out", str(tmp_path)])
    assert ring.exit_code == 2 and "--problem digits" in ring.output


@pytest.mark.slow
def test_guidance_carries_the_label(shipped):
    """At w = 2 (CFG, DPM-Solver++(2M), 25 steps) at least 90% of 64 samples of each of three labels carry it: with a
    true rate of 0.97 (measured in the docs' sweep), P(fewer than 58 of 64) < 1%."""
    data, clf = load_digits_data(), load_digits_model().classifier
    for label in (0, 4, 8):
        x = ode_sample(shipped.sde, shipped.cfg_score_fn(label, 2.0), (64, 1, 8, 8), method="dpm_solver_pp_2m",
                       steps=25, grid="logsnr", seeds=range(64))  # fmt: skip
        assert label_metrics(x, label, clf, data)["label_accuracy"] >= 0.9
