r"""Exact oracles: Gaussian and Gaussian-mixture data, whose perturbed laws are known for every t.

Under a linear SDE with marginal $x_t = \alpha(t)x_0 + \sigma(t)z$, data
$\mathcal N(\mu, s^2)$ becomes $\mathcal N(\alpha\mu, \alpha^2 s^2 + \sigma^2)$ and a mixture stays a
mixture with the same weights. These closed forms (score, density, probability-flow map) are the
ground truth of every test in sdesolve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ._utils import TimeLike, append_dims, batch_time, check_int, check_points
from .sde import LinearSDE

__all__ = ["Gaussian", "GaussianMixture"]

_LOG_2PI = math.log(2 * math.pi)


def _as_float_tensor(name: str, value, dtype=None, device=None) -> Tensor:
    """``value`` as a real floating tensor (ints and bools cast to the default dtype); complex is refused."""
    try:
        v = torch.as_tensor(value, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a real number or a tensor of them, got {value!r}") from None
    if v.is_complex():
        raise TypeError(f"{name} must be real, got dtype {v.dtype}")
    if not v.is_floating_point():
        v = v.to(torch.get_default_dtype())
    return v


def _check_finite(name: str, value: Tensor) -> None:
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} must be finite, got {value.tolist()!r}")


def _check_std(name: str, std: Tensor) -> None:
    if not bool(torch.isfinite(std).all()) or not bool((std > 0).all()):
        raise ValueError(f"{name} must be finite and > 0, got {std.tolist()!r}")


def _check_linear(sde: object) -> LinearSDE:
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"exact marginals need a LinearSDE (VESDE, VPSDE, SubVPSDE), got {sde!r}")
    return sde


def _marginal_coeffs(sde: LinearSDE, t: Tensor) -> tuple[Tensor, Tensor]:
    _check_linear(sde)
    return sde.mean_coeff(t), sde.std(t) ** 2


def _scalar_time(sde: LinearSDE, t: TimeLike, like: Tensor, name: str = "t") -> Tensor:
    _check_linear(sde)
    if isinstance(t, Tensor):
        if t.ndim != 0:
            raise ValueError(f"{name} must be a scalar time for marginal/flow, got shape {tuple(t.shape)}")
        sde.check_time(name, float(t))
    else:
        sde.check_time(name, t)
    return torch.as_tensor(t, dtype=like.dtype, device=like.device)  # Python floats straight to like's dtype


class Gaussian:
    r"""Diagonal Gaussian data $\mathcal N(\mu, \operatorname{diag}(s^2))$ over an event shape.

    Args:
        mean: $\mu$, a number or a tensor of the event shape.
        std: $s > 0$, a number (isotropic) or a tensor broadcastable to the event shape.
        event_shape: optional event shape to broadcast ``mean`` and ``std`` to; a scalar mean and std
            with no event shape give 1-D data (event shape ``(1,)``).
    """

    def __init__(self, mean, std, event_shape: Sequence[int] | None = None) -> None:
        mean = _as_float_tensor("mean", mean)
        std = _as_float_tensor("std", std, dtype=mean.dtype, device=mean.device)
        _check_finite("mean", mean)
        _check_std("std", std)
        if event_shape is not None and (
            isinstance(event_shape, (str, Tensor))
            or not hasattr(event_shape, "__iter__")
            or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in event_shape)
        ):
            raise TypeError(f"event_shape must be a sequence of ints >= 1 or None, got {event_shape!r}")
        try:
            shape = torch.broadcast_shapes(mean.shape, std.shape, () if event_shape is None else tuple(event_shape))
        except (RuntimeError, TypeError):
            raise ValueError(
                f"mean {tuple(mean.shape)}, std {tuple(std.shape)} and event_shape {event_shape!r} must broadcast"
            ) from None
        if len(shape) == 0:
            shape = (1,)
        self.mean = mean.expand(shape).clone()
        self.std = std.expand(shape).clone()

    @property
    def event_shape(self) -> torch.Size:
        return self.mean.shape

    @property
    def var(self) -> Tensor:
        return self.std**2

    def to(self, device=None, dtype=None) -> Gaussian:
        """Copy onto ``device`` / ``dtype``."""
        return Gaussian(self.mean.to(device=device, dtype=dtype), self.std.to(device=device, dtype=dtype))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``[n, *event]`` samples."""
        n = check_int("n", n)
        z = torch.randn((n, *self.event_shape), generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * z

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density at ``x`` (``[B, *event]``) summed over the event: ``[B]``."""
        return _normal_logp(check_points("x", x, self.event_shape), self.mean, self.var)

    def score(self, x: Tensor) -> Tensor:
        r"""$\nabla_x\log p(x) = -(x - \mu)/s^2$."""
        return -(x - self.mean) / self.var

    def marginal(self, sde: LinearSDE, t: TimeLike) -> Gaussian:
        r"""Exact law of $x_t$: $\mathcal N(\alpha\mu, \alpha^2 s^2 + \sigma^2)$."""
        return self._marginal(sde, t, "t")

    def _marginal(self, sde: LinearSDE, t: TimeLike, name: str) -> Gaussian:
        t = _scalar_time(sde, t, self.mean, name)
        alpha, sigma2 = _marginal_coeffs(sde, t)
        return Gaussian(alpha * self.mean, (alpha**2 * self.var + sigma2).sqrt())

    def _batched(self, sde: LinearSDE, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        t = batch_time(t, x)
        alpha, sigma2 = _marginal_coeffs(sde, t)
        alpha, sigma2 = append_dims(alpha, x.ndim), append_dims(sigma2, x.ndim)
        return alpha * self.mean, alpha**2 * self.var + sigma2

    def score_fn(self, sde: LinearSDE) -> Callable[[Tensor, Tensor], Tensor]:
        r"""Exact score $\nabla\log p_t(x)$ for a batch of times ``t`` (``[B]`` or scalar)."""

        def score(x: Tensor, t: TimeLike) -> Tensor:
            mean, var = self._batched(sde, x, t)
            return -(x - mean) / var

        return score

    def log_prob_fn(self, sde: LinearSDE) -> Callable[[Tensor, Tensor], Tensor]:
        r"""Exact $\log p_t(x)$, ``[B]``, for a batch of times ``t``."""

        def log_prob(x: Tensor, t: TimeLike) -> Tensor:
            mean, var = self._batched(sde, x, t)
            return _normal_logp(x, mean, var)

        return log_prob

    def flow(self, sde: LinearSDE, x: Tensor, t: TimeLike, s: TimeLike) -> Tensor:
        r"""Exact probability-flow map from time ``t`` to ``s``.

        Along the flow ODE the standardized coordinate $(x_t - \alpha_t\mu)/\sqrt{v_t}$ is constant,
        $v_t = \alpha_t^2 s^2 + \sigma_t^2$ (since $v' = 2fv + g^2$), so
        $x_s = \alpha_s\mu + \sqrt{v_s/v_t}\,(x_t - \alpha_t\mu)$.
        """
        pt, ps = self._marginal(sde, t, "t"), self._marginal(sde, s, "s")
        return ps.mean + ps.std / pt.std * (x - pt.mean)

    def __repr__(self) -> str:
        return f"Gaussian(mean={self.mean.tolist()}, std={self.std.tolist()})"


def _normal_logp(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Diagonal normal log-density summed over all dims but the first."""
    lp = -0.5 * ((x - mean) ** 2 / var + torch.log(var) + _LOG_2PI)
    lp = lp.expand(torch.broadcast_shapes(lp.shape, x.shape))
    return lp.reshape(lp.shape[0], -1).sum(dim=1)


class GaussianMixture:
    r"""Mixture $\sum_k w_k\,\mathcal N(\mu_k, \operatorname{diag}(s_k^2))$ over an event shape.

    Args:
        weights: ``[K]`` non-negative weights (normalised here).
        means: ``[K, *event]`` component means.
        stds: ``[K]`` (isotropic components) or ``[K, *event]`` (diagonal components), all > 0.
    """

    def __init__(self, weights, means, stds) -> None:
        means = _as_float_tensor("means", means)
        weights = _as_float_tensor("weights", weights, dtype=means.dtype, device=means.device)
        stds = _as_float_tensor("stds", stds, dtype=means.dtype, device=means.device)
        if means.ndim < 2:
            raise ValueError(f"means must have shape [K, *event], got {tuple(means.shape)}")
        _check_finite("means", means)
        K = means.shape[0]
        if weights.shape != (K,):
            raise ValueError(f"weights must have shape [K]=[{K}], got {tuple(weights.shape)}")
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {weights.tolist()!r}")
        if stds.shape not in ((K,), means.shape):
            raise ValueError(
                f"stds must have shape [K]=[{K}] or [K, *event]={tuple(means.shape)}, got {tuple(stds.shape)}"
            )
        _check_std("stds", stds)
        self.weights = weights / weights.sum()
        self.means = means
        self.stds = stds
        self._var = (stds if stds.shape == means.shape else append_dims(stds, means.ndim)) ** 2

    @property
    def event_shape(self) -> torch.Size:
        return self.means.shape[1:]

    @property
    def component_vars(self) -> Tensor:
        r"""Component variances $s_k^2$ broadcastable against ``means`` (``[K, *event]`` or ``[K, 1, …]``)."""
        return self._var

    @property
    def mean(self) -> Tensor:
        r"""Mixture mean $\sum_k w_k\mu_k$."""
        return torch.einsum("k,k...->...", self.weights, self.means)

    @property
    def std(self) -> Tensor:
        r"""Per-coordinate standard deviation of the mixture (law of total variance)."""
        second = self._var + self.means**2
        return (torch.einsum("k,k...->...", self.weights, second.expand_as(self.means)) - self.mean**2).sqrt()

    def to(self, device=None, dtype=None) -> GaussianMixture:
        """Copy onto ``device`` / ``dtype``."""
        return GaussianMixture(*(a.to(device=device, dtype=dtype) for a in (self.weights, self.means, self.stds)))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``[n, *event]`` samples (component by `torch.multinomial`, then a Gaussian draw)."""
        n = check_int("n", n)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn((n, *self.event_shape), generator=generator, device=self.means.device, dtype=self.means.dtype)
        return self.means[k] + self._var.expand_as(self.means)[k].sqrt() * z

    def component_log_probs(self, x: Tensor, means: Tensor, var: Tensor) -> Tensor:
        """``[B, K]`` log w_k + log N(x; means_k, var_k), with means/var ``[B or 1, K, *event]``."""
        diff = x.unsqueeze(1) - means
        lp = -0.5 * (diff**2 / var + torch.log(var) + _LOG_2PI)
        lp = lp.expand(diff.shape).reshape(diff.shape[0], diff.shape[1], -1).sum(dim=2)
        return lp + torch.log(self.weights)

    def _mixture_score(self, x: Tensor, means: Tensor, var: Tensor) -> Tensor:
        gamma = torch.softmax(self.component_log_probs(x, means, var), dim=1)  # [B, K] responsibilities
        comp = -(x.unsqueeze(1) - means) / var
        return (append_dims(gamma, comp.ndim) * comp).sum(dim=1)

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density (log-sum-exp over components), ``[B]``."""
        x = check_points("x", x, self.event_shape)
        return torch.logsumexp(self.component_log_probs(x, self.means.unsqueeze(0), self._var.unsqueeze(0)), dim=1)

    def score(self, x: Tensor) -> Tensor:
        r"""$\nabla\log p(x) = \sum_k \gamma_k(x)\,(\mu_k - x)/s_k^2$ with softmax responsibilities."""
        return self._mixture_score(x, self.means.unsqueeze(0), self._var.unsqueeze(0))

    def marginal(self, sde: LinearSDE, t: TimeLike) -> GaussianMixture:
        r"""Exact law of $x_t$: weights kept, $\mu_k \to \alpha\mu_k$, $s_k^2 \to \alpha^2 s_k^2 + \sigma^2$."""
        t = _scalar_time(sde, t, self.means)
        alpha, sigma2 = _marginal_coeffs(sde, t)
        return GaussianMixture(self.weights, alpha * self.means, (alpha**2 * self.stds**2 + sigma2).sqrt())

    def _batched(self, sde: LinearSDE, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        t = batch_time(t, x)
        alpha, sigma2 = _marginal_coeffs(sde, t)
        ndim = x.ndim + 1  # [B, K, *event]
        alpha, sigma2 = append_dims(alpha, ndim), append_dims(sigma2, ndim)
        return alpha * self.means.unsqueeze(0), alpha**2 * self._var.unsqueeze(0) + sigma2

    def score_fn(self, sde: LinearSDE) -> Callable[[Tensor, Tensor], Tensor]:
        r"""Exact score of $p_t$ for a batch of times ``t``."""

        def score(x: Tensor, t: TimeLike) -> Tensor:
            return self._mixture_score(x, *self._batched(sde, x, t))

        return score

    def log_prob_fn(self, sde: LinearSDE) -> Callable[[Tensor, Tensor], Tensor]:
        r"""Exact $\log p_t(x)$, ``[B]``, for a batch of times ``t``."""

        def log_prob(x: Tensor, t: TimeLike) -> Tensor:
            return torch.logsumexp(self.component_log_probs(x, *self._batched(sde, x, t)), dim=1)

        return log_prob

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.weights.shape[0]}, event_shape={tuple(self.event_shape)})"
