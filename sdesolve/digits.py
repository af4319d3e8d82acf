r"""The digits problem: a small diffusers ``UNet2DModel`` on scikit-learn's 8×8 digits (1 797 real images).

Data: ``sklearn.datasets.load_digits`` (shipped inside scikit-learn, no download), 17 grey levels
$k \in \{0..16\}$, uniformly dequantised and scaled to $[-1, 1]$: $x = 2(k + u)/17 - 1$, $u \sim U[0, 1)$
(bin centres $u = \tfrac12$ without dequantisation). A fixed split (``numpy`` permutation, seed 0) holds out
297 images; the other 1 500 train.

Model: a DDPM-style ε-prediction ``UNet2DModel`` (`UNET_CONFIG`) on DDPM's linear schedule
(`SCHEDULER_CONFIG`, i.e. the VP SDE $\beta \in [0.1, 20]$), trained by continuous-time denoising score matching
(`sdesolve.losses`) with an EMA, its timestep input given by the noise-level match of
`sdesolve.adapters.score_from_ddpm`, so diffusers' own schedulers drive the same network. Beside it, the same UNet
trained by flow matching on rectified flow (`MODEL_SDES` ``"rectified_flow"``: velocity prediction, timesteps
$1000\,t$ as diffusers' flow models, `sdesolve.adapters.score_from_velocity`), with the same budget.

Features: a small MLP classifier (64→128→64→10, `DigitsClassifier`) trained once on the training split (with
dequantisation noise) and shipped with the weights; its 64-d penultimate ReLU layer is the fixed feature space of
the Fréchet distance, and its argmax labels give the label histogram.

The shipped weights (``sdesolve/data/digits.safetensors``, float16; ``digits.json``) were made by
``sdesolve train --problem digits``. diffusers and scikit-learn are imported only when needed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._utils import check_choice, check_int, check_positive
from .adapters import score_from_velocity
from .durable import atomic_open, config_diff, verify_zip
from .losses import dsm_loss, ema, flow_matching_loss
from .metrics import frechet_distance
from .sde import LinearSDE, RectifiedFlowSDE, ScoreFn
from .weights import load_weights, save_weights

__all__ = [
    "LEVELS",
    "HELD_OUT",
    "BITS_OFFSET",
    "UNET_CONFIG",
    "SCHEDULER_CONFIG",
    "WEIGHTS_PATH",
    "MODEL_SDES",
    "DEPENDENCIES",
    "check_digits_dependencies",
    "weights_path",
    "DigitsData",
    "DigitsClassifier",
    "DigitsModel",
    "load_digits_data",
    "to_model_scale",
    "make_unet",
    "train_classifier",
    "train_digits",
    "CHECKPOINT_EVERY",
    "save_digits",
    "load_digits_model",
    "digits_metrics",
    "save_grid",
]

LEVELS = 17
HELD_OUT = 297
BITS_OFFSET = math.log2(LEVELS) - 1.0
r"""Bits/dim offset of the 17-level scale: $u = k + U[0,1)$, $x = 2u/17 - 1$, so $-\log_2 p_u = -\log_2 p_x + \log_2 17 - 1$.

On dequantised data this bounds the discrete NLL in bits per pixel ($\log_2 17 = 4.09$ for a uniform model);
`sdesolve.likelihood.dequantization_offset` is the same rule for $2^b$ levels."""
TRAIN_EPS = 1e-5
CHECKPOINT_EVERY = 500
WEIGHTS_PATH = Path(__file__).parent / "data" / "digits.safetensors"
MODEL_SDES = ("vp", "rectified_flow")
"""The shipped digits models: ε-prediction on the VP SDE, velocity prediction on rectified flow."""
FLOW_TIME_SCALE = 1000.0  # the flow model's timestep is 1000 t (diffusers' flow-matching convention)


def weights_path(sde: str = "vp") -> Path:
    """Where the shipped model of ``sde`` lives (`MODEL_SDES`): ``digits.safetensors`` or ``digits_<sde>.safetensors``."""
    check_choice("sde", sde, MODEL_SDES)
    return WEIGHTS_PATH if sde == "vp" else WEIGHTS_PATH.with_name(f"digits_{sde}.safetensors")


UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "UpBlock2D"],
    "norm_num_groups": 8,
}
SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
}


@dataclass
class DigitsData:
    """The fixed split: grey levels ``[n, 1, 8, 8]`` (float64, 0..16) and labels ``[n]``."""

    train: Tensor
    train_labels: Tensor
    held_out: Tensor
    held_out_labels: Tensor


def load_digits_data() -> DigitsData:
    """scikit-learn's digits with the fixed held-out split (seed-0 permutation, first `HELD_OUT` held out)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    images = torch.from_numpy(digits.images[order]).unsqueeze(1)
    labels = torch.from_numpy(digits.target[order])
    return DigitsData(images[HELD_OUT:], labels[HELD_OUT:], images[:HELD_OUT], labels[:HELD_OUT])


def to_model_scale(levels: Tensor, generator: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
    r"""Grey levels $k$ to $x = 2(k + u)/17 - 1$: uniform $u$ from ``generator``, or $u = \tfrac12$ when None."""
    u = torch.full_like(levels, 0.5) if generator is None else torch.rand(levels.shape, generator=generator)
    return (2 * (levels + u) / LEVELS - 1).to(dtype)


def make_unet():
    """A fresh (untrained) ``UNet2DModel`` with `UNET_CONFIG`."""
    from diffusers import UNet2DModel

    return UNet2DModel(**UNET_CONFIG)


class DigitsClassifier(nn.Module):
    """MLP 64→128→64→10 on digits in model scale; `features` is the 64-d penultimate ReLU layer."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def features(self, x: Tensor) -> Tensor:
        """``[B, 1, 8, 8]`` → ``[B, 64]``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """``[B, 1, 8, 8]`` → logits ``[B, 10]``."""
        return self.head(self.body(x))


def train_classifier(data: DigitsData, steps: int = 2000, seed: int = 0) -> tuple[DigitsClassifier, float]:
    """Full-batch Adam on the dequantised training split; returns the classifier and its held-out accuracy."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = DigitsClassifier()
    opt = torch.optim.Adam(clf.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(check_int("steps", steps)):
        loss = nn.functional.cross_entropy(clf(to_model_scale(data.train, gen)), data.train_labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    clf.eval()
    with torch.no_grad():
        acc = (clf(to_model_scale(data.held_out)).argmax(1) == data.held_out_labels).double().mean()
    return clf, float(acc)


@dataclass
class DigitsModel:
    """The trained UNet (EMA weights), its classifier and configs; `score_fn` gives the VP-SDE score."""

    unet: nn.Module
    classifier: DigitsClassifier
    info: dict[str, Any]

    @property
    def sde_name(self) -> str:
        """The SDE the model was trained on (`MODEL_SDES`; ``"vp"`` for weights from before the flow model)."""
        return self.info.get("sde", "vp")

    @property
    def sde(self) -> LinearSDE:
        """The training SDE: the VP SDE of `SCHEDULER_CONFIG` (β ∈ [0.1, 20]) or `RectifiedFlowSDE`."""
        if self.sde_name == "rectified_flow":
            return RectifiedFlowSDE()
        from .diffusers_models import vp_sde_from_ddpm

        return vp_sde_from_ddpm(SCHEDULER_CONFIG)

    def score_fn(self, sde: LinearSDE | None = None) -> ScoreFn:
        """``score_fn(x, t)`` of the UNet: the ε-model under ``sde`` (default `sde`; any linear SDE by noise-level
        match), or the velocity model on its rectified flow (with ``data_prediction``)."""
        if self.sde_name == "rectified_flow":
            if sde is not None and sde != self.sde and repr(sde) != repr(self.sde):
                raise ValueError(f"the flow model samples its own schedule {self.sde!r}, not {sde!r}")
            return score_from_velocity(self.unet, self.sde, time_scale=FLOW_TIME_SCALE)
        from .diffusers_models import score_from_unet

        return score_from_unet(self.unet, SCHEDULER_CONFIG, self.sde if sde is None else sde)


def train_digits(
    *,
    steps: int = 6000,
    batch_size: int = 128,
    lr: float = 2e-3,
    ema_decay: float = 0.999,
    seed: int = 0,
    log_every: int = 100,
    progress: bool = True,
    classifier_steps: int = 2000,
    sde: str = "vp",
    checkpoint: Path | str | None = None,
    checkpoint_every: int = CHECKPOINT_EVERY,
    resume: bool = False,
) -> DigitsModel:
    r"""Train the digits UNet: VP SDE, ε-prediction, continuous-time DSM (``reduce_mean``), or rectified flow,
    velocity prediction, flow matching (``sde="rectified_flow"``); Adam, EMA.

    Learning rate: linear warm-up over the first 2 % of steps, then cosine decay to 0.

    With ``checkpoint``, every ``checkpoint_every`` steps (and at the last) the whole state — UNet, EMA, optimiser,
    learning-rate schedule, step, loss curve, the classifier, and every RNG state (the generator of the data order
    and noise, torch's global CPU and CUDA states) — is written there atomically; ``resume=True`` continues from it, and
    on the CPU the resumed run ends bitwise equal to an uninterrupted one (same thread count).

    Args:
        steps: optimiser steps.
        batch_size: images per step (drawn with replacement, fresh dequantisation noise each time).
        lr: peak Adam learning rate.
        ema_decay: EMA decay (the EMA weights are the returned model).
        seed: seeds the initialisation, batches, times and noise.
        log_every: steps between loss-curve points (mean loss over the interval).
        progress: show a tqdm bar.
        classifier_steps: full-batch steps of the feature classifier, trained first.
        sde: ``"vp"`` or ``"rectified_flow"`` (`MODEL_SDES`).
        checkpoint: the checkpoint file (``torch.save`` format, loaded with ``weights_only=True``); None: none.
        checkpoint_every: steps between checkpoints.
        resume: continue from ``checkpoint`` (which must exist and come from a run with the same arguments).

    Returns:
        A `DigitsModel` whose ``info`` holds the configs, the loss curve, wall time and classifier accuracy.

    Raises:
        ValueError: ``resume`` without a checkpoint file, a checkpoint from a run with other arguments (naming them),
            a truncated or corrupt checkpoint (naming the file), or an existing checkpoint without ``resume``.
    """
    from tqdm.auto import tqdm

    steps, batch_size = check_int("steps", steps), check_int("batch_size", batch_size)
    lr = check_positive("lr", lr)
    check_int("log_every", log_every)  # the loss curve's interval: 0 would divide by zero at the first step
    check_choice("sde", sde, MODEL_SDES)
    config = {"steps": steps, "batch_size": batch_size, "lr": lr, "ema_decay": ema_decay, "seed": seed,
              "log_every": log_every, "classifier_steps": classifier_steps, "sde": sde}  # fmt: skip
    state = _resume_state(checkpoint, config, resume, check_int("checkpoint_every", checkpoint_every))
    data = load_digits_data()
    if state is None:
        classifier, accuracy = train_classifier(data, classifier_steps, seed)
    else:
        classifier, accuracy = DigitsClassifier().eval(), state["classifier_accuracy"]  # loaded below
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    unet = make_unet()
    averaged = ema(unet, ema_decay)
    untrained = DigitsModel(unet, classifier, {"sde": sde})
    if sde == "rectified_flow":
        flow = untrained.sde

        def loss_of(x0: Tensor) -> Tensor:
            return flow_matching_loss(flow, unet, x0, time_scale=FLOW_TIME_SCALE, eps=TRAIN_EPS, generator=gen)
    else:
        vp, score_fn = untrained.sde, untrained.score_fn()

        def loss_of(x0: Tensor) -> Tensor:
            return dsm_loss(vp, score_fn, x0, eps=TRAIN_EPS, generator=gen)

    opt = torch.optim.Adam(unet.parameters(), lr=lr)
    warmup = max(1, steps // 50)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))
    )
    history: list[dict] = []
    running, t0, start = torch.zeros(()), time.perf_counter(), 1
    modules = {"unet": unet, "ema": averaged, "optimizer": opt, "scheduler": sched, "classifier": classifier}
    if state is not None:
        for name, module in modules.items():
            module.load_state_dict(state[name])
        history, running, start = state["history"], state["running"], state["step"] + 1
        t0 -= state["elapsed_s"]
        _set_rng_states(state["rng"], gen)
    bar = tqdm(range(start, steps + 1), desc="train digits", disable=not progress, mininterval=2.0, initial=start - 1,
               total=steps)  # fmt: skip
    for step in bar:
        idx = torch.randint(data.train.shape[0], (batch_size,), generator=gen)
        loss = loss_of(to_model_scale(data.train[idx], gen))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(unet.parameters(), 1.0)  # score_sde's grad_clip = 1
        opt.step()
        sched.step()
        averaged.update_parameters(unet)
        running += loss.detach()
        if step % log_every == 0 or step == steps:
            done = step - (history[-1]["step"] if history else 0)
            history.append(
                {"step": step, "loss": round(float(running) / done, 6), "elapsed_s": round(time.perf_counter() - t0, 2)}
            )
            running.zero_()
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
        if checkpoint is not None and (step % checkpoint_every == 0 or step == steps):
            snapshot = {name: module.state_dict() for name, module in modules.items()}
            snapshot |= {"config": config, "step": step, "history": history, "running": running,
                      "elapsed_s": time.perf_counter() - t0, "classifier_accuracy": accuracy,
                      "rng": _rng_states(gen)}  # fmt: skip
            with atomic_open(checkpoint) as f:
                torch.save(snapshot, f)
    info = {
        "sde": sde,
        "unet_config": UNET_CONFIG,
        "scheduler_config": SCHEDULER_CONFIG if sde == "vp" else {"prediction_type": "velocity", "time_scale": FLOW_TIME_SCALE},
        "train": {"steps": steps, "batch_size": batch_size, "lr": lr, "ema_decay": ema_decay, "seed": seed,
                  "eps": TRAIN_EPS, "wall_s": round(time.perf_counter() - t0, 1), "torch_threads": torch.get_num_threads()},
        "loss_curve": history,
        "classifier_held_out_accuracy": accuracy,
    }  # fmt: skip
    model = averaged.module.eval()
    return DigitsModel(model, classifier, info)


def _resume_state(checkpoint: Path | str | None, config: dict, resume: bool, every: int) -> dict | None:
    """The checkpoint to continue from (None: start afresh), checked against this run's ``config``."""
    if checkpoint is None:
        if resume:
            raise ValueError("resume=True needs checkpoint= (the file to continue from)")
        return None
    path = Path(checkpoint)
    if not resume:
        if path.exists():
            raise ValueError(f"checkpoint {str(path)!r} exists: resume it (resume=True, --resume) or delete it")
        return None
    if not path.is_file():
        raise ValueError(f"nothing to resume: no checkpoint at {str(path)!r}")
    verify_zip(path, "checkpoint")
    try:
        state = torch.load(path, weights_only=True)
    except (RuntimeError, ValueError, OSError, EOFError) as err:
        raise ValueError(f"checkpoint {str(path)!r} cannot be read ({str(err).splitlines()[0]})") from None
    diff = config_diff(state["config"], config)
    if diff:
        raise ValueError(f"checkpoint {str(path)!r} is from a run with other arguments ({'; '.join(diff)})")
    return state


def _rng_states(gen: torch.Generator) -> dict:
    """Every RNG state a training step reads: the batch/noise generator and torch's own (CPU, CUDA). Training never
    draws from numpy's or Python's global RNGs (randomness only through generators)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"generator": gen.get_state(), "torch": torch.get_rng_state(), "cuda": cuda}


def _set_rng_states(states: dict, gen: torch.Generator) -> None:
    """Restore `_rng_states`."""
    gen.set_state(states["generator"])
    torch.set_rng_state(states["torch"])
    if states["cuda"]:
        torch.cuda.set_rng_state_all(states["cuda"])


def save_digits(model: DigitsModel, path: Path | str = WEIGHTS_PATH) -> None:
    """Write the UNet and classifier weights (float16 safetensors) and ``info`` (JSON beside it, same stem) as a
    verified pair (`sdesolve.weights.save_weights`: atomic, the record carrying the weights' SHA-256)."""
    save_weights(path, {"unet": model.unet, "classifier": model.classifier}, model.info)


def load_digits_model(path: Path | str = WEIGHTS_PATH, device=None, dtype=torch.float32) -> DigitsModel:
    """Load the shipped (or a given) digits model, in eval mode, on ``device`` in ``dtype``.

    Raises:
        FileNotFoundError: no weights at ``path``.
        ValueError: truncated or corrupt weights, or a record that does not describe them (`load_weights`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no digits weights at {path}; train them with `sdesolve train --problem digits`")
    unet, classifier = make_unet(), DigitsClassifier()
    info = load_weights(path, {"unet": unet, "classifier": classifier})
    for module in (unet, classifier):
        module.to(device=device).eval().requires_grad_(False)
        if dtype != torch.float32:  # diffusers warns on any dtype cast of a UNet
            module.to(dtype=dtype)
    return DigitsModel(unet, classifier, info)


DEPENDENCIES = {"sklearn": "scikit-learn", "diffusers": "diffusers", "safetensors": "safetensors", "PIL": "pillow"}
"""What the digits problem imports (module: distribution): the ``digits`` extra of the package."""


def check_digits_dependencies() -> None:
    """Raise ``ImportError`` naming every missing optional package of the digits problem, before any work."""
    from importlib.util import find_spec

    missing = [dist for module, dist in DEPENDENCIES.items() if find_spec(module) is None]
    if missing:
        raise ImportError(
            f'the digits problem needs {", ".join(missing)} (not installed): pip install -e ".[digits]" from the clone'
        )


def digits_metrics(samples: Tensor, classifier: DigitsClassifier, data: DigitsData | None = None) -> dict[str, Any]:
    r"""Fréchet distance of samples to the training split in the classifier's feature space, and label histograms.

    The estimator's bias grows as $1/n$ (Chong & Forsyth 2020), so the sample and its floor are compared at
    equal $n$: ``frechet_distance`` takes the first $m = \min(n, 297)$ samples (i.i.d., so any $m$ of them are a
    fair draw) and ``frechet_distance_floor`` the first $m$ held-out digits, both against the whole training
    split; ``frechet_distance_all_n`` uses all $n$ samples (lower bias, no floor at that $n$).

    Args:
        samples: ``[n, 1, 8, 8]`` in model scale, ``n >= 2``.
        classifier: the feature classifier.
        data: the split (loaded when None).

    Returns:
        ``frechet_distance``, ``frechet_distance_floor``, ``frechet_distance_n`` ($m$),
        ``frechet_distance_all_n``, ``frechet_distance_comparison`` (how they compare, in words), ``n``,
        ``label_histogram`` (fractions of 10 labels) and ``train_label_histogram``.

    Raises:
        FloatingPointError: for non-finite samples.
    """
    if not bool(torch.isfinite(samples).all()):  # the Fréchet distance of NaN features is a bare LinAlgError
        raise FloatingPointError("samples hold non-finite values (NaN or inf): the sampler diverged")
    data = load_digits_data() if data is None else data
    classifier = classifier.to("cpu", torch.float32)
    with torch.no_grad():
        feats = classifier.features(samples.detach().cpu().float()).double()
        train = classifier.features(to_model_scale(data.train)).double()
        held = classifier.features(to_model_scale(data.held_out)).double()
        labels = classifier(samples.detach().cpu().float()).argmax(1)
    hist = torch.bincount(labels, minlength=10).double() / labels.numel()
    train_hist = torch.bincount(data.train_labels, minlength=10).double() / data.train_labels.numel()
    m = min(feats.shape[0], held.shape[0])
    return {
        "frechet_distance": frechet_distance(feats[:m], train),
        "frechet_distance_floor": frechet_distance(held[:m], train),
        "frechet_distance_n": m,
        "frechet_distance_all_n": frechet_distance(feats, train),
        "frechet_distance_comparison": f"equal n: first {m} samples and first {m} held-out digits vs the train split",
        "n": int(samples.shape[0]),
        "label_histogram": [round(float(h), 4) for h in hist],
        "train_label_histogram": [round(float(h), 4) for h in train_hist],
    }


def save_grid(samples: Tensor, path: Path | str, columns: int = 16) -> None:
    """Write samples ``[n, 1, 8, 8]`` (model scale) as a grey PNG grid, 4× enlarged, values clipped to [-1, 1] for display."""
    from PIL import Image

    x = ((samples.detach().cpu().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0]
    n = x.shape[0]
    rows = math.ceil(n / columns)
    canvas = torch.full((rows * 9 + 1, columns * 9 + 1), 255, dtype=torch.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        canvas[1 + 9 * r : 9 + 9 * r, 1 + 9 * c : 9 + 9 * c] = x[i]
    image = Image.fromarray(canvas.numpy(), mode="L").resize((canvas.shape[1] * 4, canvas.shape[0] * 4), Image.NEAREST)
    with atomic_open(path) as f:
        image.save(f, format="PNG")
