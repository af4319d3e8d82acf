"""Predictor–corrector throughput on the 2-D ring mixture: steps per second per predictor and corrector."""

from __future__ import annotations

import torch

from sdesolve import VPSDE, LangevinCorrector, pc_sample
from sdesolve.problems import ring_mixture

from .engine import best

PREDICTORS = ("euler_maruyama", "reverse_diffusion", "ancestral", "pf_euler", "pf_heun", "pf_rk4")


def _steps_per_s(sde, score, batch: int, steps: int, predictor, corrector) -> float:
    def sample():
        gen = torch.Generator().manual_seed(0)
        pc_sample(sde, score, (batch, 2), predictor=predictor, corrector=corrector, steps=steps, generator=gen)

    return steps / best(sample, 1)


def run(batch: int, steps: int) -> list[dict]:
    """Rows ``{"predictor", "corrector", "steps_per_s", "vs_reverse_diffusion"}`` (throughput ratio)."""
    sde, mix = VPSDE(), ring_mixture()
    score = mix.score_fn(sde)
    rows = [
        {"predictor": p, "corrector": "none", "steps_per_s": _steps_per_s(sde, score, batch, steps, p, None)}
        for p in PREDICTORS
    ]
    for norm in ("sigma", "batch", "sample"):
        corr = LangevinCorrector(sde, snr=0.16, norm=norm)
        rate = _steps_per_s(sde, score, batch, steps, "reverse_diffusion", corr)
        rows.append({"predictor": "reverse_diffusion", "corrector": f"langevin[{norm}]", "steps_per_s": rate})
    base = next(r["steps_per_s"] for r in rows if r["predictor"] == "reverse_diffusion")
    for r in rows:
        r["vs_reverse_diffusion"] = r["steps_per_s"] / base
    return rows
