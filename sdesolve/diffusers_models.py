r"""diffusers models as sdesolve score functions: a ``UNet2DModel`` with its DDPM scheduler config.

DDPM's discrete schedule (Ho et al. 2020) and the VP SDE (Song et al. 2021, eq. 11) meet as follows. DDPM's
linear schedule $\beta_i = \beta_1 + \frac{i}{N-1}(\beta_N - \beta_1)$, $i = 0..N-1$, is score_sde's
``discrete_betas`` of ``VPSDE(beta_min = N\beta_1, beta_max = N\beta_N, N)``, and
$\log\bar\alpha_i = \sum_{j\le i}\log(1-\beta_j) \approx -\sum_{j\le i}\beta_j \approx
-\int_0^{(i+1)/N}\beta(s)\,\mathrm ds = \log\alpha((i+1)/N)^2$: DDPM's timestep $i$ sits near SDE time
$(i+1)/N$ (DPM-Solver's convention), to $O(\sum_j\beta_j^2) + O(1/N)$. The adapter does not rely on that
approximation: it evaluates the network at the fractional timestep of equal noise level (`sdesolve.adapters`),
exact at DDPM's grid points, for VP, sub-VP and VE alike.

Needs diffusers (``pip install -e ".[diffusers]"`` from a clone); the core of sdesolve never imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from diffusers import DDPMScheduler, SchedulerMixin

from .adapters import DDPMTimeMap, score_from_ddpm
from .sde import VPSDE, InterpolantSDE, LinearSDE, ScoreFn

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


def vp_sde_from_ddpm(scheduler: SchedulerMixin | Mapping[str, Any]) -> LinearSDE:
    r"""The SDE of a DDPM schedule, with DDPM's $\bar\alpha_i$ at time $(i+1)/N$ (DPM-Solver's convention).

    ``beta_schedule="linear"`` gives score_sde's VP SDE, $\beta_{\min} = N\beta_1$, $\beta_{\max} = N\beta_N$.
    Any other table (``"scaled_linear"``, ``"squaredcos_cap_v2"``, ``trained_betas``) gives the
    `InterpolantSDE` whose $\log\bar\alpha(t)$ is piecewise linear through $(0, 0)$ and $((i+1)/N, \log\bar\alpha_i)$:
    the same $\bar\alpha$ at every training timestep, piecewise-constant $\beta(t) = -\mathrm d\log\bar\alpha/\mathrm dt$.

    Raises:
        ValueError: a table that is not strictly decreasing in $(0, 1]$ (zero-SNR rescaling ends at $\bar\alpha = 0$,
            an infinite noise level no `LinearSDE` reaches at finite $\lambda$).
    """
    config = _config(scheduler)
    n = int(config.get("num_train_timesteps", 1000))
    if (
        config.get("beta_schedule", "linear") == "linear"
        and config.get("trained_betas") is None
        and not config.get("rescale_betas_zero_snr", False)
    ):
        return VPSDE(
            beta_min=n * float(config.get("beta_start", 1e-4)), beta_max=n * float(config.get("beta_end", 0.02)), N=n
        )
    log_abar = ddpm_alphas_cumprod(config).log()
    if not bool(torch.isfinite(log_abar).all()) or not bool((log_abar[1:] < log_abar[:-1]).all()):
        raise ValueError("vp_sde_from_ddpm needs 0 < alphas_cumprod strictly decreasing (zero-SNR ends have none)")
    knots = torch.arange(n + 1, dtype=torch.float64) / n
    values = torch.cat([log_abar.new_zeros(1), log_abar])
    slopes = (values[1:] - values[:-1]) * n

    def log_abar_at(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""$\log\bar\alpha(t)$ and its slope, linear between the knots."""
        t64 = torch.as_tensor(t, dtype=torch.float64)
        i = torch.searchsorted(knots, t64.clamp(0.0, 1.0).contiguous(), right=True).clamp(1, n) - 1
        return (values[i] + slopes[i] * (t64 - knots[i])).to(t64), slopes[i]

    def alpha(t):
        return (0.5 * log_abar_at(t)[0]).exp()

    def sigma(t):
        return (-torch.expm1(log_abar_at(t)[0])).sqrt()

    def d_alpha(t):
        value, slope = log_abar_at(t)
        return 0.5 * slope * (0.5 * value).exp()

    def d_sigma(t):  # d sqrt(1 - abar) = -abar' / (2 sigma)
        value, slope = log_abar_at(t)
        return -slope * value.exp() / (2 * (-torch.expm1(value)).sqrt())

    return InterpolantSDE(alpha, sigma, d_alpha, d_sigma, T=1.0, N=n)


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
