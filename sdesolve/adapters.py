r"""Adapters turning trained networks into score functions ``score_fn(x, t) -> ∇ log p_t(x)``, and back.

Outputs with a ``.sample`` attribute (diffusers' ``UNet2DOutput``) are unwrapped. Besides the SDE-time
adapters, two conventions of the ecosystem are covered without importing either library:

- DDPM's discrete schedule $\bar\alpha_i$ (diffusers, Ho et al. 2020), any prediction type, through a
  noise-level match to the SDE (`DDPMTimeMap`, `score_from_ddpm`; `sdesolve.diffusers_models` builds it
  from a diffusers scheduler config);
- k-diffusion's denoiser $D(\tilde x, \tilde\sigma)$ on $\tilde x = x/\alpha_t$, $\tilde\sigma = \sigma_t/\alpha_t$
  (Karras et al. 2022, eq. 4), both ways (`score_from_denoiser`, `denoiser_from_score`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ._utils import TimeLike, append_dims, batch_time, check_choice
from .sde import LinearSDE, ScoreFn, require_linear

__all__ = [
    "score_from_eps",
    "score_from_x0",
    "score_from_velocity",
    "velocity_from_score",
    "TIME_CONVENTIONS",
    "score_from_sigma_model",
    "as_tensor_output",
    "model_output",
    "PREDICTION_TYPES",
    "DDPMTimeMap",
    "ddpm_model_input",
    "eps_from_prediction",
    "score_from_ddpm",
    "score_from_denoiser",
    "denoiser_from_score",
]

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def as_tensor_output(out) -> Tensor:
    """Return ``out.sample`` for diffusers-style outputs, else ``out``."""
    return getattr(out, "sample", out)


def model_output(name: str, out, like: Tensor) -> Tensor:
    """A network's output (``.sample`` unwrapped) checked to be a tensor of ``like``'s shape, so that a ``[B, 1]`` or
    scalar output is refused instead of broadcast against the sample (a shape check only: no host sync)."""
    out = as_tensor_output(out)
    if not isinstance(out, Tensor):
        raise TypeError(f"{name} must return a torch.Tensor (or an output with .sample), got {type(out).__name__}")
    if out.shape != like.shape:
        raise ValueError(f"{name} output must have the sample's shape {tuple(like.shape)}, got {tuple(out.shape)}")
    return out


def score_from_eps(model: Callable[[Tensor, Tensor], Tensor], sde: LinearSDE) -> ScoreFn:
    r"""Noise-prediction network $\hat\varepsilon(x, t)$: $\nabla\log p_t = -\hat\varepsilon/\sigma(t)$ (Ho et al. 2020)."""
    sde = require_linear(sde, "adapter")

    def score_fn(x: Tensor, t: TimeLike) -> Tensor:
        t = batch_time(t, x)
        return -model_output("noise-prediction model", model(x, t), x) / append_dims(sde.std(t), x.ndim)

    return score_fn


def score_from_x0(model: Callable[[Tensor, Tensor], Tensor], sde: LinearSDE) -> ScoreFn:
    r"""Data-prediction network $\hat x_0(x, t)$: $\nabla\log p_t = (\alpha_t\hat x_0 - x)/\sigma_t^2$ (Tweedie,
    `LinearSDE.score_from_data`); ``score_fn.data_prediction`` is $\hat x_0$ itself (finite where $\alpha = 0$)."""
    sde = require_linear(sde, "adapter")

    def data_prediction(x: Tensor, t: TimeLike) -> Tensor:
        return model_output("data-prediction model", model(x, batch_time(t, x)), x)

    def score_fn(x: Tensor, t: TimeLike) -> Tensor:
        return sde.score_from_data(x, data_prediction(x, t), t)

    score_fn.data_prediction = data_prediction
    return score_fn


TIME_CONVENTIONS = ("data_at_0", "data_at_T")
r"""Where a model's data end lies: ``"data_at_0"`` (score SDEs, diffusers' flow models, SD3/Flux: noise at $t = T$)
or ``"data_at_T"`` (Liu et al. 2023's rectified flow, $x_t = t x_1 + (1 - t)x_0$ with data $x_1$: time and velocity
reversed)."""


def score_from_velocity(
    model: Callable[[Tensor, Tensor], Tensor],
    sde: LinearSDE,
    *,
    time_scale: float = 1.0,
    convention: str = "data_at_0",
) -> ScoreFn:
    r"""A velocity (flow-matching) network $\hat v(x, \tau) \approx \mathbb E[\alpha'x_0 + \sigma'\varepsilon \mid x_t]$ as a score
    (Lipman et al. 2023; Liu et al. 2023): the flow's velocity is $v = Px + QD$ (`LinearSDE.velocity_coefficients`),
    so $D = (v - Px)/Q$ and $\nabla\log p_t = (\alpha D - x)/\sigma^2$; for rectified flow $\nabla\log p_t =
    -(x + (1 - t)v)/t$. ``score_fn.data_prediction`` is $D$ (finite where $\alpha = 0$: samplers start at $T$ with it).

    Args:
        model: called as ``model(x, tau)`` with ``tau`` ``[B]``; a diffusers output's ``.sample`` is unwrapped.
        sde: the schedule the model was trained on (e.g. `RectifiedFlowSDE`).
        time_scale: $\tau = $ ``time_scale`` $\cdot\,t$ (1: t in [0, 1]; 1000: diffusers' flow models and SD3's
            timesteps).
        convention: ``"data_at_0"`` or ``"data_at_T"`` (`TIME_CONVENTIONS`): with the latter the model is called at
            $\tau = $ ``time_scale`` $\cdot(T - t)$ and its velocity is $-\hat v$.
    """
    sde = require_linear(sde, "score_from_velocity")
    check_choice("convention", convention, TIME_CONVENTIONS)
    scale = float(time_scale)
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"time_scale must be finite and > 0, got {time_scale!r}")
    sign, reverse = (1.0, False) if convention == "data_at_0" else (-1.0, True)

    def data_prediction(x: Tensor, t: TimeLike) -> Tensor:
        t = batch_time(t, x)
        tau = (sde.T - t if reverse else t) * scale
        v = sign * model_output("velocity model", model(x, tau), x)
        p, q = (append_dims(c.to(x.dtype), x.ndim) for c in sde.velocity_coefficients(t))
        return (v - p * x) / q

    def score_fn(x: Tensor, t: TimeLike) -> Tensor:
        return sde.score_from_data(x, data_prediction(x, t), t)

    score_fn.data_prediction = data_prediction
    return score_fn


def velocity_from_score(score_fn: ScoreFn, sde: LinearSDE) -> Callable[[Tensor, Tensor], Tensor]:
    r"""Any score as the flow velocity $v(x, t) = Px + QD = \alpha'D + \sigma'(x - \alpha D)/\sigma$ (the probability flow
    $f x - \tfrac12 g^2\nabla\log p_t$; a flow-matching model's target), with $D$ from ``score_fn.data_prediction`` where
    the score carries it, else Tweedie's $D = (x + \sigma^2 s)/\alpha$."""
    sde = require_linear(sde, "velocity_from_score")
    model = getattr(score_fn, "data_prediction", None)

    def velocity(x: Tensor, t: TimeLike) -> Tensor:
        t = batch_time(t, x)
        d = model(x, t) if model is not None else sde.data_prediction(x, score_fn(x, t), t)
        p, q = (append_dims(c.to(x.dtype), x.ndim) for c in sde.velocity_coefficients(t))
        return p * x + q * d

    return velocity


def score_from_sigma_model(model: Callable[[Tensor, Tensor], Tensor], sde: LinearSDE) -> ScoreFn:
    r"""VE score network called as ``model(x, sigma)`` (NCSN++, diffusers' ``ScoreSdeVePipeline``): $\sigma = \sigma(t)$.

    The SDE maps t to σ (the contract's one-argument form cannot know the schedule).
    """
    sde = require_linear(sde, "adapter")

    def score_fn(x: Tensor, t: TimeLike) -> Tensor:
        return model_output("sigma model", model(x, sde.std(batch_time(t, x))), x)

    return score_fn


class DDPMTimeMap:
    r"""DDPM's discrete schedule as a continuous map between timestep and log-SNR.

    The table is $\ell_i = \log\frac{\bar\alpha_i}{1 - \bar\alpha_i}$, $i = 0..N-1$ (strictly decreasing); a
    fractional timestep $\tau$ has the log-SNR of the piecewise-linear interpolant through $(i, \ell_i)$, and
    `timestep` inverts it (both extrapolate the end segments linearly: training times below DDPM's first
    level, e.g. ``eps = 1e-5``, map to $\tau < 0$). At integer $\tau = i$ the noise level is DDPM's exactly.
    k-diffusion's ``DiscreteSchedule`` interpolates $\log\tilde\sigma = -\ell/2$ the same way, but clamps.

    Args:
        alphas_cumprod: $\bar\alpha_i$ ``[N]``, strictly decreasing in ``(0, 1)`` (diffusers' ``alphas_cumprod``).
    """

    def __init__(self, alphas_cumprod: Tensor) -> None:
        acp = torch.as_tensor(alphas_cumprod).detach().to(device="cpu", dtype=torch.float64)
        if acp.ndim != 1 or acp.numel() < 2:
            raise ValueError(f"alphas_cumprod must be 1-D with at least 2 entries, got shape {tuple(acp.shape)}")
        if not bool(((acp > 0) & (acp < 1)).all()) or not bool((acp[1:] < acp[:-1]).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing inside (0, 1)")
        self.alphas_cumprod = acp
        self.log_snrs = acp.log() - torch.log1p(-acp)

    @property
    def num_train_timesteps(self) -> int:
        """N, the length of the discrete schedule."""
        return self.log_snrs.numel()

    def timestep(self, log_snr: Tensor) -> Tensor:
        r"""Fractional timestep $\tau$ whose interpolated log-SNR is ``log_snr`` (any shape; float64 inside)."""
        table = (-self.log_snrs).to(log_snr.device)  # increasing
        q = -log_snr.double()
        hi = torch.searchsorted(table, q).clamp(1, table.numel() - 1)  # segment choice, not a value clamp
        lo = hi - 1
        w = (q - table[lo]) / (table[hi] - table[lo])
        return (lo + w).to(log_snr.dtype)

    def log_snr(self, timestep: Tensor) -> Tensor:
        r"""Interpolated log-SNR $\ell(\tau)$ of a fractional timestep (any shape; float64 inside)."""
        table = self.log_snrs.to(timestep.device)
        tau = timestep.double()
        lo = tau.floor().long().clamp(0, table.numel() - 2)  # segment choice, not a value clamp
        return (table[lo] + (tau - lo) * (table[lo + 1] - table[lo])).to(timestep.dtype)


def ddpm_model_input(sde: LinearSDE, time_map: DDPMTimeMap, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r"""What a DDPM network sees at SDE time t: $x_{\rm in} = x/\sqrt{\alpha_t^2+\sigma_t^2}$ at $\bar\alpha = \frac{\alpha_t^2}{\alpha_t^2+\sigma_t^2}$.

    $x_t = \alpha_t x_0 + \sigma_t z$ rescaled is $\sqrt{\bar\alpha}\,x_0 + \sqrt{1-\bar\alpha}\,z$, DDPM's
    $q(x_\tau | x_0)$ at the timestep $\tau$ with the same log-SNR $\ell = 2\log(\alpha_t/\sigma_t)$ (VP: no
    rescaling; VE: k-diffusion's $c_{\rm in} = 1/\sqrt{\sigma^2+1}$).

    Args:
        sde: a linear SDE.
        time_map: the network's discrete schedule.
        x: states ``[B, *event]``.
        t: times ``[B]``.

    Returns:
        ``(x_in, timestep, alpha_bar)``: ``[B, *event]``, ``[B]`` and ``[B, 1, ...]`` (broadcastable).
    """
    alpha, std = sde.mean_coeff(t), sde.std(t)
    log_snr = 2 * (alpha.log() - std.log())
    scale = append_dims(torch.rsqrt(alpha**2 + std**2), x.ndim)
    alpha_bar = append_dims(torch.sigmoid(log_snr), x.ndim)
    return x * scale, time_map.timestep(log_snr), alpha_bar


def eps_from_prediction(out: Tensor, x_in: Tensor, alpha_bar: Tensor, prediction_type: str) -> Tensor:
    r"""Noise prediction from a DDPM network's output (diffusers' conventions).

    ``"epsilon"``: $\hat\varepsilon$; ``"sample"``: $(x - \sqrt{\bar\alpha}\hat x_0)/\sqrt{1-\bar\alpha}$;
    ``"v_prediction"`` ($v = \sqrt{\bar\alpha}\varepsilon - \sqrt{1-\bar\alpha}x_0$, Salimans & Ho 2022):
    $\sqrt{\bar\alpha}\,v + \sqrt{1-\bar\alpha}\,x$.
    """
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    out = model_output("model", out, x_in)
    if prediction_type == "epsilon":
        return out
    if prediction_type == "sample":
        return (x_in - alpha_bar.sqrt() * out) / (1 - alpha_bar).sqrt()
    return alpha_bar.sqrt() * out + (1 - alpha_bar).sqrt() * x_in


def score_from_ddpm(
    model: Callable[[Tensor, Tensor], Tensor],
    alphas_cumprod: Tensor | DDPMTimeMap,
    sde: LinearSDE,
    prediction_type: str = "epsilon",
) -> ScoreFn:
    r"""A DDPM network ``model(x_in, timestep)`` (e.g. diffusers' ``UNet2DModel``) as a score for any linear SDE.

    $\nabla\log p_t(x) = -\hat\varepsilon/\sigma_t$, with the network evaluated as in `ddpm_model_input` and
    its output converted by `eps_from_prediction`. For the VP SDE with $\beta_{\min} = N\beta_1$,
    $\beta_{\max} = N\beta_N$ (score_sde's mapping of DDPM's linear schedule) the timesteps of DDPM's grid
    fall at $t \approx (i+1)/N$; the match here is by noise level, so it needs no such approximation.

    Args:
        model: called with ``x_in`` ``[B, *event]`` and fractional timesteps ``[B]``.
        alphas_cumprod: DDPM's $\bar\alpha_i$ ``[N]`` or a `DDPMTimeMap`.
        sde: the SDE whose time the returned score takes.
        prediction_type: ``"epsilon"``, ``"sample"`` or ``"v_prediction"``.

    Returns:
        ``score_fn(x, t)``.
    """
    sde = require_linear(sde, "adapter")
    check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
    time_map = alphas_cumprod if isinstance(alphas_cumprod, DDPMTimeMap) else DDPMTimeMap(alphas_cumprod)

    def score_fn(x: Tensor, t: TimeLike) -> Tensor:
        t = batch_time(t, x)
        x_in, timestep, alpha_bar = ddpm_model_input(sde, time_map, x, t)
        eps = eps_from_prediction(as_tensor_output(model(x_in, timestep)), x_in, alpha_bar, prediction_type)
        return -eps / append_dims(sde.std(t), x.ndim)

    return score_fn


def score_from_denoiser(denoiser: Callable[[Tensor, Tensor], Tensor], sde: LinearSDE) -> ScoreFn:
    r"""A k-diffusion denoiser $D(\tilde x, \tilde\sigma) \approx \mathbb E[x_0 | \tilde x]$ as a score.

    With $\tilde x = x/\alpha_t$, $\tilde\sigma = \sigma_t/\alpha_t$ (Karras et al. 2022, eq. 4) Tweedie gives
    $\nabla\log p_t(x) = (\alpha_t D(x/\alpha_t, \tilde\sigma) - x)/\sigma_t^2$.
    """
    sde = require_linear(sde, "adapter")

    def score_fn(x: Tensor, t: TimeLike) -> Tensor:
        t = batch_time(t, x)
        alpha = append_dims(sde.mean_coeff(t), x.ndim)
        return sde.score_from_data(x, model_output("denoiser", denoiser(x / alpha, sde.noise_level(t)), x), t)

    return score_fn


def denoiser_from_score(score_fn: ScoreFn, sde: LinearSDE) -> Callable[[Tensor, Tensor], Tensor]:
    r"""Any sdesolve score as a k-diffusion denoiser ``D(x, sigma)``: $D = (x_t + \sigma_t^2 s(x_t, t))/\alpha_t$.

    $t$ solves $\tilde\sigma(t) = $ ``sigma`` (`LinearSDE.inverse_noise_level`, float64) and $x_t = \alpha_t\tilde x$. ``sigma`` must
    lie in $[\tilde\sigma(0), \tilde\sigma(T)]$ (checked, one host sync per call), so k-diffusion's samplers
    (``sample_euler``, ``sample_dpmpp_2m``, …) run on sdesolve's SDEs and exact oracles.
    """
    sde = require_linear(sde, "adapter")
    ends = sde.noise_level(torch.tensor([0.0, sde.T], dtype=torch.float64))
    lo, hi = float(ends[0]), float(ends[1])

    def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
        sigma = batch_time(sigma, x)
        s = sigma.detach().double()
        if not bool(((s >= lo * (1 - 1e-6)) & (s <= hi * (1 + 1e-6))).all()):  # float32 rounding of the ends
            raise ValueError(f"sigma must lie in the SDE's range [{lo:.6g}, {hi:.6g}], got {s.tolist()!r}")
        t = sde.inverse_noise_level(s).to(x.dtype)
        x_t = append_dims(sde.mean_coeff(t), x.ndim) * x
        return sde.data_prediction(x_t, score_fn(x_t, t), t)

    return denoiser
