"""Side by side on the shipped digits UNet: sdesolve's samplers vs diffusers' own schedulers, FD and time vs NFE.

Run from the repository root (about 15-30 minutes on one CPU thread; not part of the test suite):

    OMP_NUM_THREADS=1 python scripts/digits_side_by_side.py [--full]

At 1000 NFE only `AT_1000` run unless ``--full`` is given (on a shared 2-core machine one UNet evaluation of
the 297 samples took 0.1-0.3 s, so each 1000-NFE row costs minutes).

Every sampler starts from the same prior draw x_T (n = 297, the held-out split's size, so the Fréchet distance
compares with the held-out-vs-train floor at equal n) and drives the same network: sdesolve's through
`score_from_unet` (noise-level-matched timesteps), diffusers' schedulers with their own integer timesteps, in
the loop of diffusers' pipelines (``scale_model_input``, ``unet(x, t).sample``, ``step``) minus the final
[0, 1] clamp. Writes ``digits_side_by_side.json`` and ``digits_side_by_side.md`` (the table, included by the docs
page "A real model: digits") beside this file, and the figures ``docs/img/digits_training.png`` and
``docs/img/digits_samples.png``.
"""

from __future__ import annotations

import inspect
import json
import math
import time
from pathlib import Path

import torch

from sdesolve import bits_per_dim, log_likelihood, ode_sample, pc_sample
from sdesolve.diffusers import ScoreSdeVpScheduler
from sdesolve.digits import (
    BITS_OFFSET,
    SCHEDULER_CONFIG,
    digits_metrics,
    load_digits_data,
    load_digits_model,
    save_grid,
    to_model_scale,
)
from sdesolve.losses import dsm_losses
from sdesolve.sampling import ODE_METHODS

HERE = Path(__file__).parent
IMG = HERE.parent / "docs" / "img"
NFES = (10, 20, 50, 1000)
EPS = 1e-3
N = 297
AT_1000 = ("sdesolve reverse_diffusion", "sdesolve ode euler", "diffusers DDPMScheduler", "diffusers DDIMScheduler")

# Few-step solvers of ode_sample (DPM-Solver++, UniPC, ...) are being written in another issue. Once a name
# below is in ODE_METHODS it joins the table automatically, at steps = NFE / (evaluations per step).
FEW_STEP_SOLVERS = {"ddim": 1, "dpm_solver_pp_2m": 1, "dpm_solver_pp_3m": 1, "unipc_2": 1, "unipc_3": 1, "edm_heun": 2}


def _timed(fn):
    t0 = time.perf_counter()
    with torch.no_grad():
        x, nfe = fn()
    return x, nfe, time.perf_counter() - t0


def ours_pc(predictor, corrector, evals_per_step):
    def run(model, x_T, nfe, gen):
        steps = max(1, nfe // evals_per_step)
        x, info = pc_sample(model.sde, model.score_fn(), x_T.shape, predictor=predictor, corrector=corrector,
                            steps=steps, eps=EPS, x_init=x_T, generator=gen, return_info=True)  # fmt: skip
        return x, info["nfe"]

    return run


def ours_ode(method, evals_per_step):
    def run(model, x_T, nfe, gen):
        steps = max(1, nfe // evals_per_step)
        x, info = ode_sample(model.sde, model.score_fn(), x_T.shape, method=method, steps=steps, eps=EPS,
                             x_init=x_T, return_info=True)  # fmt: skip
        return x, info["nfe"]

    return run


def ours_vp_scheduler(model, x_T, nfe, gen):
    """sdesolve's diffusers-compatible ScoreSdeVpScheduler in diffusers' ScoreSde loop, score from the UNet."""
    sched = ScoreSdeVpScheduler(num_train_timesteps=1000, prediction_type="score", sampling_eps=EPS)
    sched.set_timesteps(nfe)
    score_fn, x = model.score_fn(), x_T
    for t in sched.timesteps:
        x, x_mean = sched.step_pred(score_fn(x, t), x, t, generator=gen)
    return x_mean, nfe


def diffusers_scheduler(cls):
    def run(model, x_T, nfe, gen):
        sched = cls.from_config(SCHEDULER_CONFIG)
        sched.set_timesteps(nfe)
        takes_gen = "generator" in inspect.signature(sched.step).parameters
        x = x_T * sched.init_noise_sigma
        for t in sched.timesteps:
            eps = model.unet(sched.scale_model_input(x, t), t).sample
            x = sched.step(eps, t, x, **({"generator": gen} if takes_gen else {})).prev_sample
        return x, len(sched.timesteps)

    return run


def samplers():
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

    table = {
        "sdesolve reverse_diffusion": ours_pc("reverse_diffusion", None, 1),
        "sdesolve euler_maruyama": ours_pc("euler_maruyama", None, 1),
        "sdesolve ancestral": ours_pc("ancestral", None, 1),
        "sdesolve reverse_diffusion + langevin": ours_pc("reverse_diffusion", "langevin", 2),
        "sdesolve ScoreSdeVpScheduler": ours_vp_scheduler,
        "sdesolve ode euler": ours_ode("euler", 1),
        "sdesolve ode heun": ours_ode("heun", 2),
        "sdesolve ode rk4": ours_ode("rk4", 4),
    }
    table |= {f"sdesolve ode {m}": ours_ode(m, k) for m, k in FEW_STEP_SOLVERS.items() if m in ODE_METHODS}
    table |= {
        "diffusers DDPMScheduler": diffusers_scheduler(DDPMScheduler),
        "diffusers DDIMScheduler": diffusers_scheduler(DDIMScheduler),
        "diffusers DPMSolverMultistepScheduler": diffusers_scheduler(DPMSolverMultistepScheduler),
        "diffusers UniPCMultistepScheduler": diffusers_scheduler(UniPCMultistepScheduler),
    }
    return table


def adaptive(model, x_T, rtol):
    x, info = ode_sample(model.sde, model.score_fn(), x_T.shape, method="dopri5", rtol=rtol, atol=rtol, eps=EPS,
                         x_init=x_T, return_info=True)  # fmt: skip
    return x, info["nfe"]


def held_out_likelihood(model, data):
    """Bits/dim of the dequantised held-out digits by the probability-flow ODE (dopri5, rtol = atol = 1e-4)."""
    gen = torch.Generator().manual_seed(7)
    x = to_model_scale(data.held_out, gen)
    t0 = time.perf_counter()
    logp, info = log_likelihood(model.sde, model.score_fn(), x, eps=1e-5, rtol=1e-4, atol=1e-4, generator=gen,
                                return_info=True)  # fmt: skip
    bpd = bits_per_dim(logp, x, offset=BITS_OFFSET)
    return {"bits_per_dim": float(bpd.mean()), "bits_per_dim_se": float(bpd.std() / math.sqrt(len(bpd))),
            "nfe": int(info["nfe"]), "wall_s": time.perf_counter() - t0}  # fmt: skip


def held_out_loss(model, data):
    gen = torch.Generator().manual_seed(8)
    with torch.no_grad():
        losses = torch.cat([dsm_losses(model.sde, model.score_fn(), to_model_scale(data.held_out, gen), generator=gen)
                            for _ in range(10)])  # fmt: skip
    return {"loss": float(losses.mean()), "loss_se": float(losses.std() / math.sqrt(len(losses)))}


def training_figure(info, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = info["loss_curve"]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], lw=1)
    ax.set(xlabel="step", ylabel="DSM loss (ε, reduce_mean)", yscale="log",
           title=f"digits UNet: {info['train']['steps']} steps, {info['train']['wall_s'] / 60:.1f} min")  # fmt: skip
    ax.grid(alpha=0.3)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)


def main(full: bool = False) -> None:
    torch.set_num_threads(1)
    model, data = load_digits_model(), load_digits_data()
    x_T = torch.randn((N, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    rows = []
    grids = {}
    for name, run in samplers().items():
        for nfe in NFES:
            if nfe == 1000 and not full and name not in AT_1000:
                continue
            x, used, wall = _timed(lambda run=run, nfe=nfe: run(model, x_T, nfe, torch.Generator().manual_seed(1)))
            try:
                m = digits_metrics(x, model.classifier, data)
            except FloatingPointError:  # measured: diffusers' DPM-Solver++ and UniPC return NaN at 1000 steps here
                rows.append({"sampler": name, "nfe_target": nfe, "nfe": int(used), "fd": float("nan"),
                             "wall_s": wall, "non_finite": True})  # fmt: skip
                continue
            rows.append({"sampler": name, "nfe_target": nfe, "nfe": int(used), "fd": m["frechet_distance"],
                         "wall_s": wall, "label_histogram": m["label_histogram"]})  # fmt: skip
            print(f"{name:42s} NFE {int(used):5d}  FD {m['frechet_distance']:8.3f}  {wall:7.1f} s", flush=True)
            if nfe == 50:
                grids[name] = x[:32]
    for rtol in (1e-2, 1e-3, 1e-4):
        x, used, wall = _timed(lambda rtol=rtol: adaptive(model, x_T, rtol))
        m = digits_metrics(x, model.classifier, data)
        rows.append({"sampler": f"sdesolve ode dopri5 (rtol=atol={rtol:g})", "nfe_target": None, "nfe": int(used),
                     "fd": m["frechet_distance"], "wall_s": wall, "label_histogram": m["label_histogram"]})  # fmt: skip
        print(f"dopri5 rtol {rtol:g}: NFE {used} FD {m['frechet_distance']:.3f} {wall:.1f} s", flush=True)
    floor = digits_metrics(to_model_scale(data.held_out), model.classifier, data)
    result = {
        "n": N,
        "fd_floor_held_out_vs_train": floor["frechet_distance_floor"],
        "train": model.info["train"],
        "final_train_loss": model.info["loss_curve"][-1]["loss"],
        "held_out_loss": held_out_loss(model, data),
        "held_out_likelihood": held_out_likelihood(model, data),
        "classifier_held_out_accuracy": model.info["classifier_held_out_accuracy"],
        "rows": rows,
    }
    (HERE / "digits_side_by_side.json").write_text(json.dumps(result, indent=1) + "\n")
    (HERE / "digits_side_by_side.md").write_text(markdown_table(result))
    (HERE / "digits_training.md").write_text(markdown_training(result))
    training_figure(model.info, IMG / "digits_training.png")
    save_grid(torch.cat([grids["sdesolve ode heun"], grids["diffusers DPMSolverMultistepScheduler"]]),
              IMG / "digits_samples.png", columns=16)  # fmt: skip
    print(markdown_table(result))


def markdown_training(result) -> str:
    train, like, loss = result["train"], result["held_out_likelihood"], result["held_out_loss"]
    rows = [
        ("optimiser steps × batch", f"{train['steps']} × {train['batch_size']}"),
        ("wall time (torch threads)", f"{train['wall_s'] / 60:.1f} min ({train['torch_threads']})"),
        ("final training loss (last 100 steps)", f"{result['final_train_loss']:.4f}"),
        ("held-out loss (EMA weights)", f"{loss['loss']:.4f} ± {loss['loss_se']:.4f}"),
        (
            "held-out bits/dim (17 levels; uniform model: 4.09)",
            f"{like['bits_per_dim']:.3f} ± {like['bits_per_dim_se']:.3f}",
        ),
        ("feature classifier held-out accuracy", f"{result['classifier_held_out_accuracy']:.3f}"),
        (
            f"Fréchet distance floor (held-out vs train, n = {result['n']})",
            f"{result['fd_floor_held_out_vs_train']:.2f}",
        ),
    ]
    return "| training figure | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)


def markdown_table(result) -> str:
    names = list(dict.fromkeys(r["sampler"] for r in result["rows"] if r["nfe_target"] is not None))
    head = "| sampler | " + " | ".join(f"NFE {n}: FD / s" for n in NFES) + " |"
    lines = [head, "|---" * (len(NFES) + 1) + "|"]
    for name in names:
        cells = []
        for nfe in NFES:
            r = next((r for r in result["rows"] if r["sampler"] == name and r["nfe_target"] == nfe), None)
            if r is None:
                cells.append("not run")
                continue
            mark = "" if r["nfe"] == nfe else f" ({r['nfe']} NFE)"
            cells.append("NaN samples" if r.get("non_finite") else f"{r['fd']:.2f} / {r['wall_s']:.1f}{mark}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("| adaptive | NFE | FD | s |")
    lines.append("|---|---|---|---|")
    for r in (r for r in result["rows"] if r["nfe_target"] is None):
        lines.append(f"| {r['sampler']} | {r['nfe']} | {r['fd']:.2f} | {r['wall_s']:.1f} |")
    like = result["held_out_likelihood"]
    lines += [
        "",
        f"Fréchet distance floor (held-out vs train, n = {result['n']}): {result['fd_floor_held_out_vs_train']:.2f}. "
        f"Held-out bits/dim (17-level scale, dopri5 rtol = atol = 1e-4, Hutchinson): {like['bits_per_dim']:.3f} "
        f"± {like['bits_per_dim_se']:.3f} ({like['nfe']} NFE, {like['wall_s']:.0f} s). Final training loss "
        f"{result['final_train_loss']:.4f}; held-out loss {result['held_out_loss']['loss']:.4f} "
        f"± {result['held_out_loss']['loss_se']:.4f}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    main(full="--full" in sys.argv[1:])
