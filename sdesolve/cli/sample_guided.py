"""``sdesolve sample --problem digits --label K --guidance W``: class-conditional digits with guidance.

Samples the shipped class-conditional UNet (`sdesolve.digits_conditional`) with classifier-free guidance (one batched
call per evaluation) or, with ``--classifier-guidance``, score_sde's classifier guidance (the null-label score plus
the noise-conditional classifier's gradient); ``--guidance-interval lo,hi`` limits the guidance to noise levels
$\\tilde\\sigma \\in (lo, hi]$. Several scales (``--guidance 0,1,2,4``) make a sweep.

Writes ``samples.npy`` (float32 ``[scales, labels, n, 1, 8, 8]``), one PNG per label (``label_K.png``: a row block per
scale), ``metrics.json`` (per scale and label: the fraction the fixed digits classifier labels as requested, the
Fréchet distance to the held-out digits of that label and its floor, `sdesolve.digits_conditional.label_metrics`;
NFE, model calls and rows, wall time) and, for a sweep, ``guidance_sweep.png``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import typer

from ..digits import load_digits_data, load_digits_model, save_grid
from ..digits_conditional import NUM_CLASSES, label_metrics, load_conditional_digits_model
from ..durable import atomic_open, atomic_write
from ..sde import get_sde
from ._run import dtype_name, run_config, run_sampler

DEFAULT_N = 160
"""Samples per label: at least each label's 139-157 training digits, so the Fréchet distance and its floor use equal n."""


def parse_labels(text: str) -> list[int]:
    """``"3"``, ``"1,7"`` or ``"all"`` → labels (``ValueError`` naming ``--label``)."""
    if text.strip() == "all":
        return list(range(NUM_CLASSES))
    try:
        labels = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--label must be a digit 0-9, a comma-separated list of them or 'all', got {text!r}"
        ) from None
    if not labels or any(not 0 <= v < NUM_CLASSES for v in labels) or len(set(labels)) != len(labels):
        raise ValueError(f"--label must be distinct digits 0-9 (or 'all'), got {text!r}")
    return labels


def parse_floats(flag: str, text: str, count: int | None = None) -> list[float]:
    """Comma-separated finite numbers ≥ 0 (``ValueError`` naming ``flag``), ``count`` of them if given."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if any(not np.isfinite(v) or v < 0 for v in values) or (count is not None and len(values) != count):
        need = "" if count is None else f"{count} "
        raise ValueError(f"{flag} must be {need}finite numbers >= 0, got {text!r}")
    return values


def sample_digits_guided(
    *,
    labels: list[int],
    scales: list[float],
    classifier: bool,
    interval: tuple[float, float] | None,
    sde: str,
    ode: bool,
    method: str | None,
    steps: int,
    grid: str,
    lower_order_final: bool,
    predictor: str | None,
    corrector: str | None,
    snr: float | None,
    n: int | None,
    seed: int,
    device: str,
    dtype: torch.dtype,
    eps: float,
    out: Path,
) -> dict:
    """Sample ``n`` digits per label and scale with guidance; write the outputs (module docstring).

    Returns:
        The ``metrics.json`` content.
    """
    n = DEFAULT_N if n is None else n
    sde_obj = get_sde(sde)
    model = load_conditional_digits_model(device=device, dtype=dtype)
    fixed_classifier = load_digits_model().classifier  # the fixed labeller and feature space of the digits problem
    data = load_digits_data()
    y = torch.tensor(labels, device=device).repeat_interleave(n)
    shape = (len(y), 1, 8, 8)
    runs, samples = [], []
    sampler = dict(ode=ode, method=method, steps=steps, grid=grid, lower_order_final=lower_order_final,
                   predictor=predictor, corrector=corrector, snr=snr)  # fmt: skip
    for w in scales:
        make = model.classifier_guided_score_fn if classifier else model.cfg_score_fn
        score = make(y, w, sde_obj, interval)
        t0 = time.perf_counter()
        x, info = run_sampler(score, sde_obj, shape, **sampler, eps=eps, device=device, dtype=dtype,
                              generator=torch.Generator(device=device).manual_seed(seed))  # fmt: skip
        wall = time.perf_counter() - t0
        x = x.detach().cpu().float().reshape(len(labels), n, 1, 8, 8)
        per_label = [label_metrics(x[k], label, fixed_classifier, data) for k, label in enumerate(labels)]
        ratios = [m["frechet_distance"] / m["frechet_distance_floor"] for m in per_label]
        runs.append({"scale": w, "label_accuracy_mean": float(np.mean([m["label_accuracy"] for m in per_label])),
                     "label_accuracy_min": min(m["label_accuracy"] for m in per_label),
                     "fd_over_floor_mean": float(np.mean(ratios)), "fd_over_floor_max": max(ratios),
                     "nfe": int(info["nfe"]), "model_calls": int(info["model_calls"]),
                     "model_rows": int(info["model_rows"]), "wall_s": wall, "labels": per_label})  # fmt: skip
        samples.append(x)
    config = {"problem": "digits", "labels": labels, "guidance": scales,
              "guidance_kind": "classifier" if classifier else "classifier_free", "guidance_interval": interval,
              **run_config(sde=sde, **sampler), "n_per_label": n, "seed": seed, "device": device,
              "dtype": dtype_name(dtype), "eps": eps}  # fmt: skip
    result = {"config": config, "metrics": runs}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "metrics.json", json.dumps(result, indent=2) + "\n")
    stacked = torch.stack(samples)  # [scales, labels, n, 1, 8, 8]
    with atomic_open(out / "samples.npy") as f:
        np.save(f, stacked.numpy())
    for k, label in enumerate(labels):
        rows = max(1, 64 // len(scales)) if len(scales) > 1 else 64
        save_grid(torch.cat([s[k, :rows] for s in samples]), out / f"label_{label}.png", columns=16)
    if len(scales) > 1:
        _plot_sweep(runs, out / "guidance_sweep.png", "classifier" if classifier else "classifier-free")
    _echo(result, out)
    return result


def _plot_sweep(runs: list[dict], path: Path, kind: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = [r["scale"] for r in runs]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    a.plot(w, [r["label_accuracy_mean"] for r in runs], "o-", label="mean over labels")
    a.plot(w, [r["label_accuracy_min"] for r in runs], "s--", label="worst label")
    a.axhline(0.95, color="gray", lw=0.8)
    a.set(xlabel="guidance scale w", ylabel="fraction labelled as requested", title=f"{kind} guidance")
    a.legend(fontsize=8)
    b.plot(w, [r["fd_over_floor_mean"] for r in runs], "o-", label="mean over labels")
    b.plot(w, [r["fd_over_floor_max"] for r in runs], "s--", label="worst label")
    b.axhline(2.0, color="gray", lw=0.8)
    b.set(xlabel="guidance scale w", ylabel="FD / floor (per label)", yscale="log", title="Fréchet distance")
    b.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path) as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)


def _echo(result: dict, out: Path) -> None:
    c = result["config"]
    label = f"probability-flow ODE ({c['ode_method']})" if c["ode_method"] else f"{c['predictor']} + {c['corrector']}"
    typer.echo(f"sdesolve sample: class-conditional digits, {c['guidance_kind']} guidance, {c['sde']} SDE, {label}, "
               f"{c['steps']} steps, {c['n_per_label']} per label, labels {c['labels']}")  # fmt: skip
    typer.echo("  scale   labelled as requested (mean, worst)   FD/floor (mean, worst)   NFE   model rows")
    for r in result["metrics"]:
        typer.echo(f"  {r['scale']:>5g}   {r['label_accuracy_mean']:>8.3f} {r['label_accuracy_min']:>8.3f}"
                   f"               {r['fd_over_floor_mean']:>8.3g} {r['fd_over_floor_max']:>8.3g}"
                   f"   {r['nfe']:>5d}   {r['model_rows']}")  # fmt: skip
    typer.echo(f"wrote {out / 'metrics.json'}, {out / 'samples.npy'} and the label PNGs")
