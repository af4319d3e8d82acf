r"""Continuous-time denoising score matching for every linear SDE here (Song et al. 2021, eq. 7).

$\mathcal L(\theta) = \mathbb E_{t\sim U[\varepsilon, T]}\,\mathbb E_{x_0, z}\,\lambda(t)\,
\|s_\theta(\alpha_t x_0 + \sigma_t z, t) + z/\sigma_t\|^2$ with $\lambda(t) = \sigma_t^2$ (the default, score_sde's
``get_sde_loss_fn``: for a noise-prediction model this is DDPM's $\|\hat\varepsilon - z\|^2$) or $\lambda(t) = g(t)^2$
(``likelihood_weighting=True``: the loss bounds the negative log-likelihood, Song et al. 2021b, Thm. 1).
Models of any parameterisation enter through the adapters of `sdesolve.adapters`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ._utils import append_dims, check_choice, check_positive, randn_like
from .adapters import model_output, score_from_eps, score_from_x0
from .sde import LinearSDE, ScoreFn, require_linear

__all__ = ["PARAMETERIZATIONS", "dsm_losses", "dsm_loss", "flow_matching_losses", "flow_matching_loss", "ema"]

PARAMETERIZATIONS = ("score", "epsilon", "sample")


def _as_score(model: Callable[[Tensor, Tensor], Tensor], sde: LinearSDE, parameterization: str) -> ScoreFn:
    check_choice("parameterization", parameterization, PARAMETERIZATIONS)
    if parameterization == "epsilon":
        return score_from_eps(model, sde)
    if parameterization == "sample":
        return score_from_x0(model, sde)
    return model


def dsm_losses(
    sde: LinearSDE,
    model: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    *,
    parameterization: str = "score",
    reduce_mean: bool = True,
    likelihood_weighting: bool = False,
    eps: float = 1e-5,
    t: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Per-sample denoising score-matching losses (score_sde's ``get_sde_loss_fn`` before its batch mean).

    Draws $t \sim U[\varepsilon, T]$ (unless ``t`` is given) and $z \sim \mathcal N(0, I)$, perturbs
    $x_t = \alpha_t x_0 + \sigma_t z$, and returns $\|\sigma_t s + z\|^2$ or, with likelihood weighting,
    $g(t)^2\|s + z/\sigma_t\|^2$, reduced over the event by a sum or (``reduce_mean``) a mean.

    Args:
        sde: a linear SDE (VE, VP, sub-VP).
        model: the network, called as ``model(x_t, t)`` with ``x_t`` ``[B, *event]`` and ``t`` ``[B]``.
        x0: data ``[B, *event]``.
        parameterization: what ``model`` predicts: ``"score"`` (∇ log p_t), ``"epsilon"`` (the noise z) or
            ``"sample"`` (x₀).
        reduce_mean: average over the event entries instead of summing (score_sde's ``reduce_mean``).
        likelihood_weighting: weight by $g(t)^2$ instead of $\sigma_t^2$.
        eps: smallest training time, ``0 < eps < T`` (score_sde: 1e-5).
        t: optional fixed times ``[B]`` in ``[eps, T]`` instead of uniform draws (for tests and studies).
        generator: source of ``t`` and ``z``.

    Returns:
        ``[B]`` losses, differentiable in the model's parameters.
    """
    sde = require_linear(sde, "dsm_losses")
    score_fn = _as_score(model, sde, parameterization)
    t, z, x_t = _perturbed(sde, x0, t, eps, generator)
    std = append_dims(sde.std(t), x0.ndim)
    score = model_output("model", score_fn(x_t, t), x_t)
    if likelihood_weighting:
        residual = (score + z / std) ** 2 * append_dims(sde.diffusion(t) ** 2, x0.ndim)
    else:
        residual = (score * std + z) ** 2
    residual = residual.reshape(x0.shape[0], -1)
    return residual.mean(1) if reduce_mean else residual.sum(1)


def _perturbed(sde: LinearSDE, x0: Tensor, t: Tensor | None, eps: float, generator) -> tuple[Tensor, Tensor, Tensor]:
    r"""``(t, z, x_t)``: $t \sim U[\varepsilon, T]$ unless given, $z \sim \mathcal N(0, I)$, $x_t = \alpha_t x_0 + \sigma_t z$."""
    eps = check_positive("eps", eps)
    if eps >= sde.T:
        raise ValueError(f"eps must be < T={sde.T}, got eps={eps!r}")
    if x0.ndim < 2:
        raise ValueError(f"x0 must have shape [B, *event], got {tuple(x0.shape)}")
    if t is None:
        t = torch.rand(x0.shape[0], generator=generator, dtype=x0.dtype, device=x0.device) * (sde.T - eps) + eps
    elif t.shape != x0.shape[:1]:
        raise ValueError(f"t must have shape [B]=[{x0.shape[0]}], got {tuple(t.shape)}")
    z = randn_like(x0, generator)
    alpha, std = append_dims(sde.mean_coeff(t), x0.ndim), append_dims(sde.std(t), x0.ndim)
    return t, z, alpha * x0 + std * z


def flow_matching_losses(
    sde: LinearSDE,
    model: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    *,
    time_scale: float = 1.0,
    reduce_mean: bool = True,
    eps: float = 1e-5,
    t: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Per-sample conditional flow-matching losses (Lipman et al. 2023, eq. 23; Liu et al. 2023):
    $\|\hat v(x_t, \tau) - (\alpha'_t x_0 + \sigma'_t z)\|^2$ with $x_t = \alpha_t x_0 + \sigma_t z$, $\tau =$ ``time_scale`` $\cdot t$.

    For rectified flow the target is $z - x_0$; its minimiser is the flow's velocity $\mathbb E[\alpha'x_0 + \sigma'z \mid x_t]$,
    which `sdesolve.adapters.score_from_velocity` turns into a score (with the same ``time_scale``). In terms of the
    data prediction it is $Q(t)^2\|\hat D - x_0\|^2$, $Q = \alpha' - \alpha\sigma'/\sigma$ (`LinearSDE.velocity_coefficients`).

    Args:
        sde: any linear SDE (rectified flow, cosine, VP, ...).
        model: the velocity network, called as ``model(x_t, tau)`` with ``tau`` ``[B]``.
        x0: data ``[B, *event]``.
        time_scale: $\tau$ per unit t (1000 for diffusers-style timesteps).
        reduce_mean: average over the event entries instead of summing.
        eps: smallest training time, ``0 < eps < T``.
        t: optional fixed times ``[B]`` in ``[eps, T]``.
        generator: source of ``t`` and ``z``.

    Returns:
        ``[B]`` losses, differentiable in the model's parameters.
    """
    sde = require_linear(sde, "flow_matching_losses")
    t, z, x_t = _perturbed(sde, x0, t, eps, generator)
    target = append_dims(sde.d_mean_coeff(t), x0.ndim) * x0 + append_dims(sde.d_std(t), x0.ndim) * z
    residual = (model_output("velocity model", model(x_t, t * time_scale), x_t) - target) ** 2
    residual = residual.reshape(x0.shape[0], -1)
    return residual.mean(1) if reduce_mean else residual.sum(1)


def flow_matching_loss(sde: LinearSDE, model: Callable[[Tensor, Tensor], Tensor], x0: Tensor, **options) -> Tensor:
    """Batch-mean flow-matching loss, a scalar: the mean of `flow_matching_losses` (same arguments)."""
    return flow_matching_losses(sde, model, x0, **options).mean()


def dsm_loss(sde: LinearSDE, model: Callable[[Tensor, Tensor], Tensor], x0: Tensor, **options) -> Tensor:
    """Batch-mean denoising score-matching loss, a scalar: the mean of `dsm_losses` (same arguments)."""
    return dsm_losses(sde, model, x0, **options).mean()


def ema(model: nn.Module, decay: float = 0.999) -> AveragedModel:
    r"""Exponential moving average of a model's parameters and buffers (torch's ``AveragedModel``).

    Each ``update_parameters(model)`` sets $\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta$ (the first
    call copies $\theta$); sample from ``ema(model).module``. torch's implementation is used rather than a
    hand-written one (score_sde's ``ExponentialMovingAverage`` and diffusers' ``EMAModel`` do the same).

    Args:
        model: the network being trained.
        decay: $d \in [0, 1)$.

    Returns:
        An ``AveragedModel`` holding a copy of ``model``.
    """
    decay = float(decay)
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must lie in [0, 1), got {decay!r}")
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
