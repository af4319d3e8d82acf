r"""Adapters turning trained networks into score functions ``score_fn(x, t) -> ∇ log p_t(x)``.

Outputs with a ``.sample`` attribute (diffusers' ``UNet2DOutput``) are unwrapped.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from ._utils import TimeLike, append_dims, batch_time
from .sde import LinearSDE, ScoreFn

__all__ = ["score_from_eps", "score_from_x0", "score_from_sigma_model", "as_tensor_output"]


def as_tensor_output(out) -> Tensor:
    """Return ``out.sample`` for diffusers-style outputs, else ``out``."""
    return getattr(out, "sample", out)


def _check_linear(sde) -> LinearSDE:
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"adapter needs a LinearSDE (alpha(t), sigma(t)), got {sde!r}")
    return sde


def score_from_eps(model: Callable[[Tensor, Tensor], Tensor], sde: LinearSDE) -> ScoreFn:
    r"""Noise-prediction network $\hat\varepsilon(x, t)$: $\nabla\log p_t = -\hat\varepsilon/\sigma(t)$ (Ho et al. 2020)."""
    sde = _check_linear(sde)

    def score_fn(x: Tensor, t: TimeLike) -> Tensor:
        t = batch_time(t, x)
        return -as_tensor_output(model(x, t)) / append_dims(sde.std(t), x.ndim)

    return score_fn


def score_from_x0(model: Callable[[Tensor, Tensor], Tensor], sde: LinearSDE) -> ScoreFn:
    r"""Data-prediction network $\hat x_0(x, t)$: $\nabla\log p_t = -(x - \alpha_t\hat x_0)/\sigma_t^2$ (Tweedie)."""
    sde = _check_linear(sde)

    def score_fn(x: Tensor, t: TimeLike) -> Tensor:
        t = batch_time(t, x)
        alpha, std = append_dims(sde.mean_coeff(t), x.ndim), append_dims(sde.std(t), x.ndim)
        return -(x - alpha * as_tensor_output(model(x, t))) / std**2

    return score_fn


def score_from_sigma_model(model: Callable[[Tensor, Tensor], Tensor], sde: LinearSDE) -> ScoreFn:
    r"""VE score network called as ``model(x, sigma)`` (NCSN++, diffusers' ``ScoreSdeVePipeline``): $\sigma = \sigma(t)$.

    The SDE maps t to σ (the contract's one-argument form cannot know the schedule).
    """
    sde = _check_linear(sde)

    def score_fn(x: Tensor, t: TimeLike) -> Tensor:
        return as_tensor_output(model(x, sde.std(batch_time(t, x))))

    return score_fn
