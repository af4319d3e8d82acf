r"""The class-conditional digits problem: a label-conditioned digits UNet and a noise-conditional classifier.

Model: the digits ``UNet2DModel`` of `sdesolve.digits` with a class embedding of 11 entries (`NUM_CLASSES` digits
and the null label `NULL_LABEL`), trained like the shipped VP model (VP SDE, ε-prediction, continuous-time DSM,
EMA) with each training label replaced by the null label with probability `LABEL_DROPOUT` (Ho & Salimans 2022,
Alg. 1), so one network gives the conditional score $s(x, t, y)$ and the unconditional one $s(x, t, \varnothing)$:
classifier-free guidance evaluates both in one batched call (`sdesolve.guidance.cfg_one_model`).

Classifier: `NoisyDigitsClassifier`, $p_t(y \mid x_t)$ for score_sde's class-conditional sampling (Song et al. 2021,
§5 and App. I.4: a time-dependent classifier trained on perturbed data), on EDM's scaled input
$\tilde x = x_t/\alpha_t$ at noise level $\tilde\sigma = \sigma_t/\alpha_t$ (`LinearSDE.noise_level`), so it serves every
linear SDE; its gradient guides the unconditional score (`sdesolve.guidance.classifier_guidance`).

Metrics: the fixed clean classifier of `sdesolve.digits` (the one that gives the Fréchet features) labels the
samples; `label_metrics` gives the fraction labelled as requested and the Fréchet distance to the held-out digits of
that label beside its floor (the training digits of that label against the same held-out digits, at equal n).

The shipped weights (``sdesolve/data/digits_conditional.safetensors``, float16, with ``digits_conditional.json``)
were made by ``sdesolve train --problem digits_conditional``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._utils import append_dims, batch_time, check_int, check_labels, check_positive
from .digits import (
    SCHEDULER_CONFIG,
    TRAIN_EPS,
    UNET_CONFIG,
    DigitsClassifier,
    DigitsData,
    load_digits_data,
    to_model_scale,
)
from .guidance import GuidedScore, cfg_one_model, classifier_guidance
from .losses import dsm_loss, ema
from .metrics import frechet_distance
from .sde import VPSDE, LinearSDE, ScoreFn
from .weights import load_weights, save_weights

__all__ = [
    "NUM_CLASSES",
    "NULL_LABEL",
    "LABEL_DROPOUT",
    "CONDITIONAL_UNET_CONFIG",
    "CONDITIONAL_WEIGHTS_PATH",
    "NoisyDigitsClassifier",
    "ConditionalDigitsModel",
    "make_conditional_unet",
    "train_conditional_unet",
    "train_noisy_classifier",
    "train_conditional_digits",
    "save_conditional_digits",
    "load_conditional_digits_model",
    "label_metrics",
]

NUM_CLASSES = 10
NULL_LABEL = NUM_CLASSES
"""The label of the unconditional score (the embedding's last entry)."""
LABEL_DROPOUT = 0.1
CONDITIONAL_UNET_CONFIG: dict[str, Any] = {**UNET_CONFIG, "num_class_embeds": NUM_CLASSES + 1}
CONDITIONAL_WEIGHTS_PATH = Path(__file__).parent / "data" / "digits_conditional.safetensors"
SIGMA_DATA = 0.5
"""EDM's $\\sigma_{\\rm data}$ for the classifier's input scaling $c_{\\rm in} = (\\sigma_{\\rm data}^2 + \\tilde\\sigma^2)^{-1/2}$
(the digits in model scale have standard deviation 0.59 over pixels)."""


def make_conditional_unet():
    """A fresh (untrained) ``UNet2DModel`` with `CONDITIONAL_UNET_CONFIG` (11 class embeddings)."""
    from diffusers import UNet2DModel

    return UNet2DModel(**CONDITIONAL_UNET_CONFIG)


class NoisyDigitsClassifier(nn.Module):
    r"""Logits of $p(y \mid \tilde x, \tilde\sigma)$: an MLP on $c_{\rm in}\tilde x$ with a Fourier embedding of $\log\tilde\sigma$
    added to each hidden layer (64→256→256→10, SiLU).

    ``forward(x_scaled, level)``: ``x_scaled`` ``[B, 1, 8, 8]`` is $\tilde x = x_t/\alpha_t$, ``level`` ``[B]`` is
    $\tilde\sigma$. `log_prob_fn` turns it into $\log p_t(y \mid x)$ for any linear SDE.
    """

    def __init__(self, width: int = 256, frequencies: int = 16) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(64.0), frequencies)) / 8)
        self.embed = nn.Sequential(nn.Linear(2 * frequencies, width), nn.SiLU())
        self.inp, self.hidden, self.head = nn.Linear(64, width), nn.Linear(width, width), nn.Linear(width, NUM_CLASSES)
        self.film1, self.film2 = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x_scaled: Tensor, level: Tensor) -> Tensor:
        """Logits ``[B, 10]``."""
        level = level.to(x_scaled.dtype)
        c_in = append_dims((SIGMA_DATA**2 + level**2).rsqrt(), 2)
        phase = level.log()[:, None] * self.freqs
        e = self.embed(torch.cat([phase.sin(), phase.cos()], dim=1))
        h = nn.functional.silu(self.inp(c_in * x_scaled.flatten(1)) + self.film1(e))
        h = nn.functional.silu(self.hidden(h) + self.film2(e))
        return self.head(h)

    def log_prob_fn(self, sde: LinearSDE, labels: int | Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        r"""$\log p_t(y \mid x)$ ``[B]`` for ``x`` ``[B, 1, 8, 8]`` at times ``t`` of ``sde`` (any linear SDE)."""
        labels = check_labels("labels", labels, NUM_CLASSES)

        def log_prob(x: Tensor, t) -> Tensor:
            t = batch_time(t, x)
            logits = self(x / append_dims(sde.mean_coeff(t), x.ndim), sde.noise_level(t))
            y = labels.to(x.device).expand(x.shape[0])
            return torch.log_softmax(logits, dim=1).gather(1, y[:, None])[:, 0]

        return log_prob


@dataclass
class ConditionalDigitsModel:
    """The class-conditional UNet (EMA weights), the noise-conditional classifier and their info."""

    unet: nn.Module
    classifier: NoisyDigitsClassifier
    info: dict[str, Any]

    @property
    def sde(self) -> VPSDE:
        """The VP SDE of `SCHEDULER_CONFIG` (β ∈ [0.1, 20]), the one the UNet was trained on."""
        from .diffusers_models import vp_sde_from_ddpm

        return vp_sde_from_ddpm(SCHEDULER_CONFIG)

    def labelled_score_fn(self, sde: LinearSDE | None = None) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
        """``score_fn(x, t, y)``: the UNet's score with class labels ``y`` ``[B]`` (`NULL_LABEL`: unconditional)."""
        from .diffusers_models import score_from_unet

        sde = self.sde if sde is None else sde

        def score(x: Tensor, t, y: Tensor) -> Tensor:
            return score_from_unet(lambda x_in, ts: self.unet(x_in, ts, class_labels=y), SCHEDULER_CONFIG, sde)(x, t)

        return score

    def score_fn(self, label: int | Tensor = NULL_LABEL, sde: LinearSDE | None = None) -> ScoreFn:
        """The conditional score of ``label`` (a digit, or `NULL_LABEL` for the unconditional score)."""
        labels = check_labels("label", label, NUM_CLASSES + 1)
        labelled = self.labelled_score_fn(sde)
        return lambda x, t: labelled(x, t, labels.to(x.device).expand(x.shape[0]))

    def cfg_score_fn(
        self, label: int | Tensor, scale: float, sde: LinearSDE | None = None, interval=None
    ) -> GuidedScore:
        """Classifier-free guidance of ``label`` at ``scale``: both halves in one batched UNet call."""
        sde = self.sde if sde is None else sde
        return cfg_one_model(
            self.labelled_score_fn(sde), label, NULL_LABEL, scale, sde=sde, interval=interval, num_classes=NUM_CLASSES
        )

    def classifier_guided_score_fn(
        self, label: int | Tensor, scale: float, sde: LinearSDE | None = None, interval=None
    ) -> GuidedScore:
        """score_sde's class-conditional score: the unconditional score plus ``scale`` × the classifier's gradient."""
        sde = self.sde if sde is None else sde
        log_prob = self.classifier.log_prob_fn(sde, label)
        return classifier_guidance(self.score_fn(NULL_LABEL, sde), log_prob, scale, sde=sde, interval=interval)


def _fit(
    module: nn.Module,
    loss_of_step: Callable[[], Tensor],
    *,
    steps: int,
    lr: float,
    ema_decay: float | None,
    clip: float | None,
    log_every: int,
    desc: str,
    progress: bool,
) -> tuple[nn.Module, list[dict]]:
    """Adam with a 2 % linear warm-up then cosine decay; the EMA module (or ``module``) and the loss curve."""
    from tqdm.auto import tqdm

    check_int("log_every", log_every)  # the loss curve's interval: 0 would divide by zero at the first step
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    warmup = max(1, steps // 50)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: min(1.0, (k + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(k, steps) / steps))
    )
    averaged = None if ema_decay is None else ema(module, ema_decay)
    history: list[dict] = []
    running, t0 = torch.zeros(()), time.perf_counter()
    bar = tqdm(range(1, steps + 1), desc=desc, disable=not progress, mininterval=2.0)
    for step in bar:
        loss = loss_of_step()
        opt.zero_grad()
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(module.parameters(), clip)
        opt.step()
        sched.step()
        if averaged is not None:
            averaged.update_parameters(module)
        running += loss.detach()
        if step % log_every == 0 or step == steps:
            done = step - (history[-1]["step"] if history else 0)
            elapsed = round(time.perf_counter() - t0, 2)
            history.append({"step": step, "loss": round(float(running) / done, 6), "elapsed_s": elapsed})
            running.zero_()
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
    return (module if averaged is None else averaged.module).eval(), history


def train_conditional_unet(
    data: DigitsData | None = None,
    *,
    steps: int = 6000,
    batch_size: int = 128,
    lr: float = 2e-3,
    ema_decay: float = 0.999,
    label_dropout: float = LABEL_DROPOUT,
    seed: int = 0,
    log_every: int = 100,
    progress: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    r"""Train the class-conditional UNet like `sdesolve.digits.train_digits` (VP, ε, DSM, Adam, EMA, clip 1), each
    label replaced by `NULL_LABEL` with probability ``label_dropout``.

    Returns:
        The EMA UNet (eval mode) and its training info (settings, loss curve, wall time).
    """
    steps, batch_size = check_int("steps", steps), check_int("batch_size", batch_size)
    lr = check_positive("lr", lr)
    if not 0.0 < float(label_dropout) < 1.0:
        raise ValueError(f"label_dropout must lie in (0, 1), got {label_dropout!r}")
    data = load_digits_data() if data is None else data
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    unet = make_conditional_unet()
    untrained = ConditionalDigitsModel(unet, NoisyDigitsClassifier(), {})
    sde, labelled = untrained.sde, untrained.labelled_score_fn()

    def loss_of_step() -> Tensor:
        idx = torch.randint(data.train.shape[0], (batch_size,), generator=gen)
        drop = torch.rand(batch_size, generator=gen) < label_dropout
        y = torch.where(drop, NULL_LABEL, data.train_labels[idx])
        x0 = to_model_scale(data.train[idx], gen)
        return dsm_loss(sde, lambda x, t: labelled(x, t, y), x0, eps=TRAIN_EPS, generator=gen)

    t0 = time.perf_counter()
    model, history = _fit(unet, loss_of_step, steps=steps, lr=lr, ema_decay=ema_decay, clip=1.0,
                          log_every=log_every, desc="train conditional digits", progress=progress)  # fmt: skip
    info = {"steps": steps, "batch_size": batch_size, "lr": lr, "ema_decay": ema_decay, "seed": seed,
            "label_dropout": label_dropout, "eps": TRAIN_EPS, "wall_s": round(time.perf_counter() - t0, 1),
            "torch_threads": torch.get_num_threads(), "loss_curve": history}  # fmt: skip
    return model, info


def train_noisy_classifier(
    data: DigitsData | None = None,
    *,
    steps: int = 8000,
    batch_size: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    log_every: int = 200,
    progress: bool = True,
) -> tuple[NoisyDigitsClassifier, dict[str, Any]]:
    r"""Train `NoisyDigitsClassifier` by cross-entropy on $x_t = \alpha_t x_0 + \sigma_t z$ of the VP SDE, $t \sim U[\epsilon, T]$.

    Returns:
        The classifier (eval mode) and its info, with held-out accuracies at a few noise levels.
    """
    steps, batch_size = check_int("steps", steps), check_int("batch_size", batch_size)
    lr = check_positive("lr", lr)
    data = load_digits_data() if data is None else data
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    sde = ConditionalDigitsModel(None, None, {}).sde
    clf = NoisyDigitsClassifier()

    def loss_of_step() -> Tensor:
        idx = torch.randint(data.train.shape[0], (batch_size,), generator=gen)
        x0 = to_model_scale(data.train[idx], gen)
        t = TRAIN_EPS + (sde.T - TRAIN_EPS) * torch.rand(batch_size, generator=gen)
        xt = append_dims(sde.mean_coeff(t), 4) * x0 + append_dims(sde.std(t), 4) * torch.randn(x0.shape, generator=gen)
        logits = clf(xt / append_dims(sde.mean_coeff(t), 4), sde.noise_level(t))
        return nn.functional.cross_entropy(logits, data.train_labels[idx])

    t0 = time.perf_counter()
    clf, history = _fit(clf, loss_of_step, steps=steps, lr=lr, ema_decay=None, clip=None, log_every=log_every,
                        desc="train noisy classifier", progress=progress)  # fmt: skip
    accuracy = {}
    eval_gen = torch.Generator().manual_seed(seed + 1)
    x0 = to_model_scale(data.held_out)
    with torch.no_grad():
        for level in (0.01, 0.1, 0.3, 1.0, 3.0):
            noisy = x0 + level * torch.randn(x0.shape, generator=eval_gen)
            pred = clf(noisy, torch.full((x0.shape[0],), level)).argmax(1)
            accuracy[str(level)] = round(float((pred == data.held_out_labels).double().mean()), 4)
    info = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
            "wall_s": round(time.perf_counter() - t0, 1), "held_out_accuracy_by_noise_level": accuracy,
            "loss_curve": history}  # fmt: skip
    return clf, info


def train_conditional_digits(
    *,
    unet_steps: int = 6000,
    batch_size: int = 128,
    lr: float = 2e-3,
    ema_decay: float = 0.999,
    classifier_steps: int = 8000,
    seed: int = 0,
    progress: bool = True,
) -> ConditionalDigitsModel:
    """Both networks (`train_conditional_unet`, `train_noisy_classifier`); the defaults made the shipped weights.
    ``info`` records the configs, settings and loss curves."""
    data = load_digits_data()
    unet, unet_info = train_conditional_unet(
        data, steps=unet_steps, batch_size=batch_size, lr=lr, ema_decay=ema_decay, seed=seed, progress=progress
    )
    clf, clf_info = train_noisy_classifier(data, steps=classifier_steps, seed=seed, progress=progress)
    info = {"unet_config": CONDITIONAL_UNET_CONFIG, "scheduler_config": SCHEDULER_CONFIG, "null_label": NULL_LABEL,
            "train": unet_info, "classifier": clf_info}  # fmt: skip
    return ConditionalDigitsModel(unet, clf, info)


def save_conditional_digits(model: ConditionalDigitsModel, path: Path | str = CONDITIONAL_WEIGHTS_PATH) -> None:
    """Write the UNet and classifier weights (float16 safetensors) and ``info`` (JSON beside it, same stem) as a
    verified pair (`sdesolve.weights.save_weights`: atomic, the record carrying the weights' SHA-256)."""
    save_weights(path, {"unet": model.unet, "classifier": model.classifier}, model.info)


def load_conditional_digits_model(
    path: Path | str = CONDITIONAL_WEIGHTS_PATH, device=None, dtype=torch.float32
) -> ConditionalDigitsModel:
    """Load the shipped (or a given) class-conditional digits model, in eval mode, on ``device`` in ``dtype``.

    Raises:
        FileNotFoundError: no weights at ``path``.
        ValueError: truncated or corrupt weights, or a record that does not describe them (`load_weights`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no class-conditional digits weights at {path}; train them with "
            "`sdesolve train --problem digits_conditional`"
        )
    unet, classifier = make_conditional_unet(), NoisyDigitsClassifier()
    info = load_weights(path, {"unet": unet, "classifier": classifier})
    for module in (unet, classifier):
        module.to(device=device).eval().requires_grad_(False)
        if dtype != torch.float32:  # diffusers warns on any dtype cast of a UNet
            module.to(dtype=dtype)
    return ConditionalDigitsModel(unet, classifier, info)


def label_metrics(
    samples: Tensor, label: int, classifier: DigitsClassifier, data: DigitsData | None = None
) -> dict[str, Any]:
    r"""How well ``samples`` of one requested ``label`` carry it, by the fixed clean classifier of `sdesolve.digits`.

    ``label_accuracy`` is the fraction the classifier labels ``label``. ``frechet_distance`` is taken in its feature
    space to the held-out digits of ``label``, and ``frechet_distance_floor`` is the training digits of ``label``
    against the same held-out digits; both use the same number of points, $n = \min(n_{\rm samples},
    n_{\rm train})$ (the first $n$ of each), since the estimator's bias grows as $1/n$.

    Args:
        samples: ``[n, 1, 8, 8]`` in model scale.
        label: the requested digit.
        classifier: the fixed feature classifier (`sdesolve.digits.DigitsModel.classifier`).
        data: the split (loaded when None).
    """
    label = int(check_labels("label", label, NUM_CLASSES))
    if not bool(torch.isfinite(samples).all()):
        raise FloatingPointError("samples hold non-finite values (NaN or inf): the sampler diverged")
    data = load_digits_data() if data is None else data
    train, held = data.train[data.train_labels == label], data.held_out[data.held_out_labels == label]
    n = min(samples.shape[0], train.shape[0])
    classifier = classifier.to("cpu", torch.float32)
    with torch.no_grad():
        x = samples.detach().cpu().float()
        predicted = classifier(x).argmax(1)
        feats = classifier.features(x[:n]).double()
        train_feats = classifier.features(to_model_scale(train[:n])).double()
        held_feats = classifier.features(to_model_scale(held)).double()
    return {
        "label": label,
        "label_accuracy": float((predicted == label).double().mean()),
        "frechet_distance": frechet_distance(feats, held_feats),
        "frechet_distance_floor": frechet_distance(train_feats, held_feats),
        "n": int(samples.shape[0]),
        "n_frechet": n,
        "n_held_out": int(held.shape[0]),
    }
