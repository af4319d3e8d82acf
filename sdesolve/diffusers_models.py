r"""diffusers models as sdesolve score functions: a ``UNet2DModel`` with its DDPM scheduler config.

DDPM's discrete schedule (Ho et al. 2020) and the VP SDE (Song et al. 2021, eq. 11) meet as follows. DDPM's
linear schedule $\beta_i = \beta_1 + \frac{i}{N-1}(\beta_N - \beta_1)$, $i = 0..N-1$, is score_sde's
``discrete_betas`` of ``VPSDE(beta_min = N\beta_1, beta_max = N\beta_N, N)``, and
$\log\bar\alpha_i = \sum_{j\le i}\log(1-\beta_j) \approx -\sum_{j\le i}\beta_j \approx
-\int_0^{(i+1)/N}\beta(s)\,\mathrm ds = \log\alpha((i+1)/N)^2$: DDPM's timestep $i$ sits near SDE time
$(i+1)/N$ (DPM-Solver's convention), to $O(\sum_j\beta_j^2) + O(1/N)$. The adapter does not rely on that
approximation: it evaluates the network at the fractional timestep of equal noise level (`sdesolve.adapters`),
exact at DDPM's grid points, for VP, sub-VP and VE alike.

Needs diffusers (``pip install sdesolve[diffusers]``); the core of sdesolve never imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from diffusers import DDPMScheduler, SchedulerMixin

from .adapters import DDPMTimeMap, score_from_ddpm
from .sde import VPSDE, LinearSDE, ScoreFn

__all__ = ["ddpm_alphas_cumprod", "ddpm_time_map", "vp_sde_from_ddpm", "score_from_unet"]


def _config(scheduler: SchedulerMixin | Mapping[str, Any]) -> dict[str, Any]:
    return dict(scheduler.config if hasattr(scheduler, "config") else scheduler)


def ddpm_alphas_cumprod(scheduler: SchedulerMixin | Mapping[str, Any]) -> torch.Tensor:
    r"""$\bar\alpha_i$ ``[N]`` of a diffusers scheduler or its config, as diffusers' ``DDPMScheduler`` computes it.

    Every DDPM-family scheduler (DDPM, DDIM, DPM-Solver, UniPC, …) shares these betas; the config's
    ``beta_schedule``, ``trained_betas`` and ``rescale_betas_zero_snr`` are honoured by diffusers itself.
    """
    return DDPMScheduler.from_config(_config(scheduler)).alphas_cumprod.double()


def ddpm_time_map(scheduler: SchedulerMixin | Mapping[str, Any]) -> DDPMTimeMap:
    """The `DDPMTimeMap` of a diffusers scheduler or config."""
    return DDPMTimeMap(ddpm_alphas_cumprod(scheduler))


def vp_sde_from_ddpm(scheduler: SchedulerMixin | Mapping[str, Any]) -> VPSDE:
    r"""The VP SDE of DDPM's linear schedule: $\beta_{\min} = N\beta_1$, $\beta_{\max} = N\beta_N$ (score_sde).

    Raises:
        ValueError: for any ``beta_schedule`` other than ``"linear"`` (no VP SDE with linear β matches it;
            use `score_from_unet` with any SDE instead).
    """
    config = _config(scheduler)
    schedule = config.get("beta_schedule", "linear")
    if schedule != "linear" or config.get("trained_betas") is not None:
        raise ValueError(f"vp_sde_from_ddpm needs beta_schedule='linear' without trained_betas, got {schedule!r}")
    n = int(config.get("num_train_timesteps", 1000))
    return VPSDE(
        beta_min=n * float(config.get("beta_start", 1e-4)), beta_max=n * float(config.get("beta_end", 0.02)), N=n
    )


def score_from_unet(
    unet: torch.nn.Module,
    scheduler: SchedulerMixin | Mapping[str, Any],
    sde: LinearSDE | None = None,
    prediction_type: str | None = None,
) -> ScoreFn:
    r"""A diffusers ``UNet2DModel`` (or any ``unet(x, timestep).sample``) trained on a DDPM schedule as ``score_fn``.

    Args:
        unet: the network, called with ``[B, C, H, W]`` inputs and fractional timesteps ``[B]``.
        scheduler: a diffusers scheduler or its config dict (``scheduler_config.json``).
        sde: the SDE whose time the score takes; default `vp_sde_from_ddpm` of the config.
        prediction_type: ``"epsilon"``, ``"sample"`` or ``"v_prediction"``; default the config's.

    Returns:
        ``score_fn(x, t)`` $= -\hat\varepsilon/\sigma_t$ (see `sdesolve.adapters.score_from_ddpm`).
    """
    config = _config(scheduler)
    prediction_type = prediction_type or config.get("prediction_type", "epsilon")
    sde = vp_sde_from_ddpm(config) if sde is None else sde
    return score_from_ddpm(unet, ddpm_time_map(config), sde, prediction_type)
