"""``sdesolve train --problem digits``: train the digits UNet (VP SDE, ε-prediction, EMA) and save its weights.

Writes ``digits.safetensors`` (UNet EMA weights and the feature classifier, float16) and ``digits.json``
(configs, loss curve, wall time) to ``--out`` (default ``sdesolve-train/`` in the working directory: never the
installed package's data folder, whose shipped weights are the result of the default run). Every
``--checkpoint-every`` steps the whole training state goes to ``--out``/``checkpoint.pt`` (atomically); ``--resume``
continues a killed run from it, to the same weights bit for bit on the CPU, and it is removed once the weights are
written.
"""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from .._utils import check_choice, check_int
from ..digits import CHECKPOINT_EVERY, MODEL_SDES, save_digits, train_digits, weights_path
from ._common import fail, option, writable_dir

CHECKPOINT = "checkpoint.pt"

PROBLEMS = ("digits", "digits_conditional")
DEFAULT_OUT = "sdesolve-train"


def train(
    problem: str = typer.Option(
        "digits", help="digits (scikit-learn's 8×8 digits) or digits_conditional (label-conditioned UNet + classifier)."
    ),
    steps: int = typer.Option(6000, help="Optimiser steps."),
    batch_size: int = typer.Option(128, help="Images per step."),
    lr: float = typer.Option(2e-3, help="Peak Adam learning rate (warm-up, then cosine decay)."),
    ema_decay: float = typer.Option(0.999, help="EMA decay of the saved weights."),
    classifier_steps: int | None = typer.Option(
        None,
        help="Steps of the classifier (digits: the feature classifier, 2000; digits_conditional: the noisy one, 8000).",
    ),
    seed: int = typer.Option(0, help="Seed of initialisation, batches, times and noise."),
    threads: int = typer.Option(2, help="Torch CPU threads."),
    sde: str = typer.Option("vp", help="SDE and parameterisation: vp (ε-prediction) or rectified_flow (velocity)."),
    out: str = typer.Option(
        DEFAULT_OUT, help="Output folder for the weights (digits[_<sde>].safetensors, .json); created if needed."
    ),
    checkpoint_every: int = typer.Option(CHECKPOINT_EVERY, help=f"Steps between checkpoints (--out/{CHECKPOINT})."),
    resume: bool = typer.Option(False, "--resume", help=f"Continue the run whose {CHECKPOINT} is in --out."),
) -> None:
    """Train the digits UNet on scikit-learn's digits and save it (the shipped weights come from the defaults)."""
    option("--checkpoint-every", check_int, "checkpoint_every", checkpoint_every)
    option("--threads", check_int, "threads", threads)
    writable_dir("--out", out)  # before training: an unwritable folder found after an hour of training loses it
    if resume and not (Path(out) / CHECKPOINT).is_file():
        fail(f"--resume: nothing to resume: no checkpoint at {str(Path(out) / CHECKPOINT)!r}")
    try:
        check_choice("problem", problem, PROBLEMS)
        torch.set_num_threads(threads)
        check_choice("sde", sde, MODEL_SDES)
        if problem == "digits_conditional":
            if sde != "vp":
                raise ValueError(f"--problem digits_conditional trains the VP model only, got --sde {sde}")
            kw = {} if classifier_steps is None else {"classifier_steps": classifier_steps}
            _train_conditional(
                out, unet_steps=steps, batch_size=batch_size, lr=lr, ema_decay=ema_decay, seed=seed, **kw
            )
            return
        Path(out).mkdir(parents=True, exist_ok=True)
        model = train_digits(steps=steps, batch_size=batch_size, lr=lr, ema_decay=ema_decay, seed=seed,
                             classifier_steps=2000 if classifier_steps is None else classifier_steps, sde=sde,
                             checkpoint=Path(out) / CHECKPOINT, checkpoint_every=checkpoint_every,
                             resume=resume)  # fmt: skip
    except (ValueError, TypeError, OSError) as err:
        typer.echo(f"Error: {str(err).splitlines()[0]}", err=True)
        raise typer.Exit(code=2) from None
    path = Path(out) / weights_path(sde).name
    save_digits(model, path)
    (Path(out) / CHECKPOINT).unlink()  # the weights are safe: a rerun starts afresh
    info = model.info
    typer.echo(
        f"sdesolve train: digits, {steps} steps in {info['train']['wall_s']:.1f} s, final loss "
        f"{info['loss_curve'][-1]['loss']:.4f}, classifier held-out accuracy {info['classifier_held_out_accuracy']:.3f}"
    )
    typer.echo(f"wrote {path} and {path.with_suffix('.json')}")


def _train_conditional(out: str, **settings) -> None:
    """``--problem digits_conditional``: the class-conditional UNet and the noise-conditional classifier
    (`sdesolve.digits_conditional.train_conditional_digits`), saved as ``digits_conditional.safetensors``."""
    from ..digits_conditional import save_conditional_digits, train_conditional_digits

    model = train_conditional_digits(**settings)
    path = Path(out) / "digits_conditional.safetensors"
    save_conditional_digits(model, path)
    train, clf = model.info["train"], model.info["classifier"]
    typer.echo(
        f"sdesolve train: digits_conditional, {train['steps']} steps in {train['wall_s']:.1f} s, final loss "
        f"{train['loss_curve'][-1]['loss']:.4f}; classifier {clf['steps']} steps, held-out accuracy by noise level "
        f"{clf['held_out_accuracy_by_noise_level']}"
    )
    typer.echo(f"wrote {path} and {path.with_suffix('.json')}")
