r"""Exact oracles: Gaussian and Gaussian-mixture data, whose perturbed laws are known for every t.

Under a linear SDE with marginal $x_t = \alpha(t)x_0 + \sigma(t)z$, data
$\mathcal N(\mu, s^2)$ becomes $\mathcal N(\alpha\mu, \alpha^2 s^2 + \sigma^2)$ and a mixture stays a
mixture with the same weights. These closed forms (score, density, probability-flow map) are the
ground truth of every test in sdesolve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ._utils import (
    TimeLike,
    append_dims,
    batch_time,
    check_int,
    check_interval,
    check_labels,
    check_points,
    check_positive,
)
from .sde import LinearSDE

__all__ = [
    "Gaussian",
    "GaussianMixture",
    "MultivariateGaussian",
    "MultivariateGaussianMixture",
    "GuidedGaussian",
]

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
        raise TypeError(f"exact marginals need a LinearSDE (e.g. VPSDE, RectifiedFlowSDE), got {sde!r}")
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
        r"""Exact score $\nabla\log p_t(x)$ for a batch of times ``t`` (``[B]`` or scalar), carrying the exact data
        prediction ``score.data_prediction(x, t)`` = $\mathbb E[x_0 \mid x_t] = \mu + \alpha s^2(x - \alpha\mu)/(\alpha^2s^2 +
        \sigma^2)$ (regular where $\alpha = 0$, where the score does not determine it)."""

        def score(x: Tensor, t: TimeLike) -> Tensor:
            mean, var = self._batched(sde, x, t)
            return -(x - mean) / var

        def data_prediction(x: Tensor, t: TimeLike) -> Tensor:
            mean, var = self._batched(sde, x, t)
            alpha = append_dims(sde.mean_coeff(batch_time(t, x)), x.ndim)
            return self.mean + alpha * self.var * (x - mean) / var

        score.data_prediction = data_prediction
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

    def condition(self, A, y, noise_std: float) -> MultivariateGaussian:
        r"""Exact posterior $p(x \mid y)$ for $y = Ax + n$, $n \sim \mathcal N(0, s^2 I)$: a full-covariance Gaussian.

        $\mu' = \mu + \Sigma A^\top S^{-1}(y - A\mu)$, $\Sigma' = \Sigma - \Sigma A^\top S^{-1}A\Sigma$ with
        $\Sigma = \operatorname{diag}(s_i^2)$ and $S = A\Sigma A^\top + s^2 I$ (Bishop 2006, eq. 2.116–2.117).

        Args:
            A: ``[m, d]`` observation matrix over the flattened event (inpainting: a row selection).
            y: ``[m]`` observation.
            noise_std: observation noise $s \ge 0$ (0: noiseless).

        Returns:
            The posterior, a `MultivariateGaussian` of the same event shape.
        """
        return MultivariateGaussian(self.mean, torch.diag(self.var.reshape(-1))).condition(A, y, noise_std)

    def __repr__(self) -> str:
        return f"Gaussian(mean={self.mean.tolist()}, std={self.std.tolist()})"


def _normal_logp(x: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """Diagonal normal log-density summed over all dims but the first."""
    lp = -0.5 * ((x - mean) ** 2 / var + torch.log(var) + _LOG_2PI)
    lp = lp.expand(torch.broadcast_shapes(lp.shape, x.shape))
    return lp.reshape(lp.shape[0], -1).sum(dim=1)


class _Mixture:
    """What every mixture oracle derives from its ``weights`` ``[K]`` and ``means`` ``[K, *event]``."""

    weights: Tensor
    means: Tensor

    @property
    def event_shape(self) -> torch.Size:
        return self.means.shape[1:]

    @property
    def mean(self) -> Tensor:
        r"""Mixture mean $\sum_k w_k\mu_k$."""
        return torch.einsum("k,k...->...", self.weights, self.means)


class GaussianMixture(_Mixture):
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
    def component_vars(self) -> Tensor:
        r"""Component variances $s_k^2$ broadcastable against ``means`` (``[K, *event]`` or ``[K, 1, …]``)."""
        return self._var

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

    def _mixture_score(self, x: Tensor, means: Tensor, var: Tensor, alpha: Tensor | None = None) -> Tensor:
        """The score, or with ``alpha`` (``[B, 1, ...]``) the data prediction $\\sum_k\\gamma_k(\\mu_k - \alpha s_k^2 s_k)$
        ($s_k$ component k's score: $\\mathbb E[x_0 \\mid x_t, k] = \\mu_k + \alpha s_k^2(x - \alpha\\mu_k)/(\alpha^2s_k^2 + \\sigma^2)$)."""
        gamma = torch.softmax(self.component_log_probs(x, means, var), dim=1)  # [B, K] responsibilities
        comp = -(x.unsqueeze(1) - means) / var
        if alpha is not None:
            comp = self.means.unsqueeze(0) - alpha * self._var.unsqueeze(0) * comp
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
        r"""Exact score of $p_t$ for a batch of times ``t``, carrying the exact data prediction
        ``score.data_prediction(x, t)`` = $\mathbb E[x_0 \mid x_t]$ (regular where $\alpha = 0$)."""

        def score(x: Tensor, t: TimeLike) -> Tensor:
            return self._mixture_score(x, *self._batched(sde, x, t))

        def data_prediction(x: Tensor, t: TimeLike) -> Tensor:
            alpha = append_dims(sde.mean_coeff(batch_time(t, x)), x.ndim + 1)
            return self._mixture_score(x, *self._batched(sde, x, t), alpha=alpha)

        score.data_prediction = data_prediction
        return score

    def log_prob_fn(self, sde: LinearSDE) -> Callable[[Tensor, Tensor], Tensor]:
        r"""Exact $\log p_t(x)$, ``[B]``, for a batch of times ``t``."""

        def log_prob(x: Tensor, t: TimeLike) -> Tensor:
            return torch.logsumexp(self.component_log_probs(x, *self._batched(sde, x, t)), dim=1)

        return log_prob

    # -- labelled mixtures: the labels are the components ---------------------------------------------------------
    def component(self, label: int) -> Gaussian:
        r"""The exact conditional law $p(x \mid y)$ of a labelled mixture (labels = components): component ``label``."""
        k = check_labels("label", label, self.means.shape[0])
        if k.ndim != 0:
            raise ValueError(f"label must be one int, got {label!r}")
        return Gaussian(self.means[k], self._var.expand_as(self.means)[k].sqrt())

    def _class_terms(self, sde: LinearSDE, labels: Tensor, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor, Tensor]:
        """``[B, K]`` component log-probabilities at t, the labels ``[B]`` and the moved means/variances."""
        y = labels.to(x.device)
        if y.ndim == 1 and y.shape[0] != x.shape[0]:
            raise ValueError(f"labels has {y.shape[0]} entries, x has {x.shape[0]} rows")
        means, var = self._batched(sde, x, t)
        return self.component_log_probs(x, means, var), y.expand(x.shape[0]), (means, var)

    def class_log_prob_fn(self, sde: LinearSDE, labels: int | Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        r"""Exact $\log p_t(y \mid x) = \log w_y\mathcal N_y(x) - \log\sum_k w_k\mathcal N_k(x)$ (the log-responsibility of
        component $y$ under the marginals at $t$), ``[B]``; ``labels`` one int or ``[B]``."""
        labels = check_labels("labels", labels, self.means.shape[0])

        def log_prob(x: Tensor, t: TimeLike) -> Tensor:
            lp, y, _ = self._class_terms(sde, labels, x, t)
            return torch.log_softmax(lp, dim=1).gather(1, y[:, None])[:, 0]

        return log_prob

    def class_score_fn(self, sde: LinearSDE, labels: int | Tensor) -> Callable[[Tensor, Tensor], Tensor]:
        r"""Exact $\nabla_x\log p_t(y \mid x) = \nabla\log\mathcal N_y(x) - \nabla\log p_t(x)$ (component $y$'s score
        minus the mixture's), like ``x``: the classifier gradient of score_sde's class-conditional sampling."""
        labels = check_labels("labels", labels, self.means.shape[0])

        def grad(x: Tensor, t: TimeLike) -> Tensor:
            lp, y, (means, var) = self._class_terms(sde, labels, x, t)
            comp = -(x.unsqueeze(1) - means) / var  # [B, K, *event]
            gamma = append_dims(torch.softmax(lp, dim=1), comp.ndim)
            own = comp.gather(1, append_dims(y, comp.ndim).expand(-1, 1, *comp.shape[2:]))[:, 0]
            return own - (gamma * comp).sum(dim=1)

        return grad

    def condition(self, A, y, noise_std: float) -> MultivariateGaussianMixture:
        r"""Exact posterior for $y = Ax + n$, $n \sim \mathcal N(0, s^2 I)$: a full-covariance mixture.

        Each component is conditioned as in `Gaussian.condition`; the weights become
        $w_k' \propto w_k\,\mathcal N(y; A\mu_k, A\Sigma_kA^\top + s^2 I)$ (Bayes' rule per component).

        Args:
            A: ``[m, d]`` observation matrix over the flattened event.
            y: ``[m]`` observation.
            noise_std: observation noise $s \ge 0$.

        Returns:
            A `MultivariateGaussianMixture` of the same event shape.
        """
        K = self.means.shape[0]
        covs = torch.diag_embed(self.component_vars.expand_as(self.means).reshape(K, -1))
        return MultivariateGaussianMixture(self.weights, self.means, covs).condition(A, y, noise_std)

    def __repr__(self) -> str:
        return f"GaussianMixture(K={self.weights.shape[0]}, event_shape={tuple(self.event_shape)})"


def _flat_event(x: Tensor, event_shape: torch.Size, name: str = "x") -> Tensor:
    """``[B, *event] -> [B, d]``, checking the event shape."""
    if tuple(x.shape[1:]) != tuple(event_shape):
        raise ValueError(f"{name} must have shape [B, *{tuple(event_shape)}], got {tuple(x.shape)}")
    return x.reshape(x.shape[0], -1)


def _eigh_psd(cov: Tensor, name: str) -> tuple[Tensor, Tensor]:
    r"""Eigendecomposition $\Sigma = U\operatorname{diag}(\lambda)U^\top$ of symmetric PSD ``[..., d, d]`` matrices.

    Eigenvalues within round-off of 0 ($|\lambda| \le 8d\,\epsilon_{\rm mach}\lambda_{\max}$, as a noiseless
    observation's posterior leaves them) are set to 0; a clearly negative one is a ``ValueError``.
    """
    if cov.ndim < 2 or cov.shape[-1] != cov.shape[-2]:
        raise ValueError(f"{name} must be square [..., d, d], got {tuple(cov.shape)}")
    if not bool(torch.isfinite(cov).all()):
        raise ValueError(f"{name} must be finite")
    scale = cov.abs().amax(dim=(-2, -1), keepdim=True)
    if not bool(((cov - cov.mT).abs() <= 1e-6 * scale).all()):
        raise ValueError(f"{name} must be symmetric")
    lam, U = torch.linalg.eigh(0.5 * (cov + cov.mT))
    tol = 8 * cov.shape[-1] * torch.finfo(cov.dtype).eps * lam.amax(dim=-1, keepdim=True).clamp_min(0)
    if bool((lam < -tol).any()):
        raise ValueError(f"{name} must be positive semi-definite, got eigenvalues {lam.tolist()!r}")
    return torch.where(lam.abs() <= tol, torch.zeros_like(lam), lam), U


def _eig_terms(x: Tensor, means: Tensor, U: Tensor, lam: Tensor, data: Tensor | None = None) -> tuple[Tensor, Tensor]:
    r"""Per-component $\log\mathcal N(x; m_k, U_k\Lambda_kU_k^\top)$ ``[B, K]`` and scores ``[B, K, d]``.

    In the eigenbasis the coordinates are independent: with $c = U_k^\top(x - m_k)$,
    $\log\mathcal N = -\tfrac12\sum_i (c_i^2/\lambda_i + \log 2\pi\lambda_i)$ and the score is $-U_k(c/\lambda)$.
    With ``data`` $= \alpha\Lambda^{(0)}_k$ (the data's eigenvalues times $\alpha$) the second output is instead the
    component's data prediction offset $U_k(\alpha\Lambda^{(0)}c/\lambda) = \mathbb E[x_0 \mid x_t, k] - \mu_k$.

    Args:
        x: ``[B, d]``.
        means: ``[B or 1, K, d]``.
        U: ``[K, d, d]`` eigenvectors (columns).
        lam: ``[B or 1, K, d]`` eigenvalues, > 0.
        data: ``[B or 1, K, d]`` or None.
    """
    c = torch.einsum("kde,bkd->bke", U, x.unsqueeze(1) - means)
    logp = -0.5 * (c**2 / lam + torch.log(lam) + _LOG_2PI).sum(-1)
    if data is not None:
        return logp, torch.einsum("kde,bke->bkd", U, data * c / lam)
    return logp, -torch.einsum("kde,bke->bkd", U, c / lam)


def _condition_components(means: Tensor, covs: Tensor, A, y, noise_std: float) -> tuple[Tensor, Tensor, Tensor]:
    r"""Condition Gaussians $\mathcal N(\mu_k, \Sigma_k)$ on $y = Ax + n$, $n \sim \mathcal N(0, s^2 I)$.

    With $S_k = A\Sigma_kA^\top + s^2I$ (Bishop 2006, eq. 2.81–2.82 via the joint Gaussian of $(x, y)$):
    $\mu_k' = \mu_k + \Sigma_kA^\top S_k^{-1}(y - A\mu_k)$, $\Sigma_k' = \Sigma_k - \Sigma_kA^\top S_k^{-1}A\Sigma_k$,
    and the evidence $\log\mathcal N(y; A\mu_k, S_k)$.

    Args:
        means: ``[K, d]``; covs: ``[K, d, d]``.
        A: ``[m, d]`` observation matrix (over the flattened event).
        y: ``[m]`` observation.
        noise_std: $s \ge 0$ (0: noiseless; then every $A\Sigma_kA^\top$ must be invertible).

    Returns:
        ``(means' [K, d], covs' [K, d, d], log_evidence [K])``.
    """
    d = means.shape[-1]
    A = _as_float_tensor("A", A, dtype=means.dtype, device=means.device)
    y = _as_float_tensor("y", y, dtype=means.dtype, device=means.device)
    if A.ndim != 2 or A.shape[1] != d:
        raise ValueError(f"A must have shape [m, d] with d={d} (the flattened event), got {tuple(A.shape)}")
    if y.shape != (A.shape[0],):
        raise ValueError(f"y must have shape [m]=[{A.shape[0]}], got {tuple(y.shape)}")
    noise_std = check_positive("noise_std", noise_std, strict=False)
    A_cov = A @ covs  # [K, m, d]
    S = A_cov @ A.T + noise_std**2 * torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    L, info = torch.linalg.cholesky_ex(S)
    if bool((info != 0).any()):
        raise ValueError(
            f"A Σ Aᵀ + noise_std² I is singular (noise_std={noise_std}): with noiseless observations A must "
            "have full row rank on the data's support"
        )
    resid = y - means @ A.T  # [K, m]
    gain_t = torch.cholesky_solve(A_cov, L)  # S⁻¹ A Σ, [K, m, d]
    post_means = means + (gain_t.mT @ resid.unsqueeze(-1)).squeeze(-1)
    post_covs = covs - A_cov.mT @ gain_t
    white = torch.linalg.solve_triangular(L, resid.unsqueeze(-1), upper=False).squeeze(-1)
    log_ev = -0.5 * ((white**2).sum(-1) + A.shape[0] * _LOG_2PI) - torch.log(torch.diagonal(L, dim1=-2, dim2=-1)).sum(
        -1
    )
    return post_means, 0.5 * (post_covs + post_covs.mT), log_ev


class _EigenOracle:
    """What both full-covariance oracles derive from their eigenbasis ``_terms(x, α, σ²) -> (log p, score)``.

    Subclasses set ``_lam`` (eigenvalues, all components) and implement ``_terms``.
    """

    _lam: Tensor

    def _terms(self, x: Tensor, alpha: Tensor, sigma2: Tensor, data: bool = False) -> tuple[Tensor, Tensor]:
        """(log-density ``[B]``, score shaped like ``x``) at (α, σ²); with ``data`` the data prediction instead."""
        raise NotImplementedError

    def _at_data(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not bool((self._lam > 0).all()):
            raise ValueError(
                "covariance is singular: log_prob/score exist only for the smoothed law, use marginal(sde, t)"
            )
        one = torch.ones((), dtype=x.dtype, device=x.device)
        return self._terms(x, one, 0 * one)

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density at ``x`` (``[B, *event]``): ``[B]``."""
        return self._at_data(x)[0]

    def score(self, x: Tensor) -> Tensor:
        r"""$\nabla_x\log p(x)$, shaped like ``x``."""
        return self._at_data(x)[1]

    def score_fn(self, sde: LinearSDE) -> Callable[[Tensor, Tensor], Tensor]:
        r"""Exact score of $p_t$ for a batch of times ``t``, carrying the exact data prediction
        ``score.data_prediction(x, t)`` = $\mathbb E[x_0 \mid x_t]$ (regular where $\alpha = 0$)."""

        def score(x: Tensor, t: TimeLike) -> Tensor:
            return self._terms(x, *_marginal_coeffs(sde, batch_time(t, x)))[1]

        def data_prediction(x: Tensor, t: TimeLike) -> Tensor:
            return self._terms(x, *_marginal_coeffs(sde, batch_time(t, x)), data=True)[1]

        score.data_prediction = data_prediction
        return score

    def log_prob_fn(self, sde: LinearSDE) -> Callable[[Tensor, Tensor], Tensor]:
        r"""Exact $\log p_t(x)$, ``[B]``, for a batch of times ``t``."""

        def log_prob(x: Tensor, t: TimeLike) -> Tensor:
            return self._terms(x, *_marginal_coeffs(sde, batch_time(t, x)))[0]

        return log_prob


class MultivariateGaussian(_EigenOracle):
    r"""Full-covariance Gaussian data $\mathcal N(\mu, \Sigma)$; $\Sigma$ acts on the flattened event.

    Under a linear SDE, $x_t \sim \mathcal N(\alpha\mu, \alpha^2\Sigma + \sigma^2 I)$. Everything is computed in
    the eigenbasis $\Sigma = U\Lambda U^\top$, where $x_t$'s coordinates are independent with variances
    $\alpha^2\lambda_i + \sigma^2$, so batched times cost one ``[d, d]`` product per sample.
    $\Sigma$ may be singular (a noiseless observation's posterior): `marginal`, `score_fn` and
    `log_prob_fn` are then fine for $\sigma(t) > 0$, while `log_prob` and `score` at $t = 0$ raise.

    Args:
        mean: $\mu$, a tensor of the event shape (a 1-D tensor for vector data).
        cov: $\Sigma$, ``[d, d]`` symmetric positive semi-definite, ``d = mean.numel()``.
    """

    def __init__(self, mean, cov) -> None:
        mean = _as_float_tensor("mean", mean)
        if mean.ndim == 0:
            mean = mean.reshape(1)
        cov = _as_float_tensor("cov", cov, dtype=mean.dtype, device=mean.device)
        d = mean.numel()
        if cov.shape != (d, d):
            raise ValueError(f"cov must have shape [d, d]=[{d}, {d}] (d = mean.numel()), got {tuple(cov.shape)}")
        if not bool(torch.isfinite(mean).all()):
            raise ValueError("mean must be finite")
        self.mean = mean
        self.cov = cov
        self._lam, self._U = _eigh_psd(cov, "cov")

    @property
    def event_shape(self) -> torch.Size:
        return self.mean.shape

    @property
    def std(self) -> Tensor:
        r"""Per-coordinate standard deviation $\sqrt{\Sigma_{ii}}$, of the event shape."""
        return torch.diagonal(self.cov).sqrt().reshape(self.event_shape)

    def to(self, device=None, dtype=None) -> MultivariateGaussian:
        """Copy onto ``device`` / ``dtype``."""
        return MultivariateGaussian(self.mean.to(device=device, dtype=dtype), self.cov.to(device=device, dtype=dtype))

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        r"""Draw ``[n, *event]`` samples $\mu + U\Lambda^{1/2}z$."""
        n = check_int("n", n)
        z = torch.randn((n, self.mean.numel()), generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + ((z * self._lam.sqrt()) @ self._U.T).reshape(n, *self.event_shape)

    def _terms(self, x: Tensor, alpha: Tensor, sigma2: Tensor, data: bool = False) -> tuple[Tensor, Tensor]:
        """(log-density ``[B]``, score ``[B, *event]``) of N(αμ, α²Σ + σ²I) with α, σ² ``[B]`` or 0-d; with ``data``
        the data prediction $\\mu + \alpha\\Sigma(\alpha^2\\Sigma + \\sigma^2I)^{-1}(x - \alpha\\mu)$ instead of the score."""
        xf = _flat_event(x, self.event_shape)
        alpha, sigma2 = alpha.reshape(-1, 1, 1), sigma2.reshape(-1, 1, 1)
        lam_t, mean = alpha**2 * self._lam + sigma2, self.mean.reshape(1, 1, -1)
        logp, out = _eig_terms(xf, alpha * mean, self._U[None], lam_t, alpha * self._lam if data else None)
        return logp[:, 0], ((mean + out) if data else out)[:, 0].reshape(x.shape)

    def marginal(self, sde: LinearSDE, t: TimeLike) -> MultivariateGaussian:
        r"""Exact law of $x_t$: $\mathcal N(\alpha\mu, \alpha^2\Sigma + \sigma^2 I)$."""
        t = _scalar_time(sde, t, self.mean)
        alpha, sigma2 = _marginal_coeffs(sde, t)
        eye = torch.eye(self.mean.numel(), dtype=self.mean.dtype, device=self.mean.device)
        return MultivariateGaussian(alpha * self.mean, alpha**2 * self.cov + sigma2 * eye)

    def flow(self, sde: LinearSDE, x: Tensor, t: TimeLike, s: TimeLike) -> Tensor:
        r"""Exact probability-flow map from time ``t`` to ``s``.

        Each eigen-coordinate is a 1-D Gaussian flow (`Gaussian.flow`): with $v = \alpha^2\lambda + \sigma^2$,
        $x_s = \alpha_s\mu + U\operatorname{diag}(\sqrt{v_s/v_t})\,U^\top(x_t - \alpha_t\mu)$.
        """
        t, s = _scalar_time(sde, t, self.mean), _scalar_time(sde, s, self.mean, name="s")
        (a_t, s2_t), (a_s, s2_s) = _marginal_coeffs(sde, t), _marginal_coeffs(sde, s)
        ratio = ((a_s**2 * self._lam + s2_s) / (a_t**2 * self._lam + s2_t)).sqrt()
        c = (_flat_event(x, self.event_shape) - a_t * self.mean.reshape(-1)) @ self._U
        return (a_s * self.mean.reshape(-1) + (c * ratio) @ self._U.T).reshape(x.shape)

    def condition(self, A, y, noise_std: float) -> MultivariateGaussian:
        r"""Exact posterior $p(x \mid y)$ for $y = Ax + n$, $n \sim \mathcal N(0, s^2 I)$ (Bishop 2006, eq. 2.116).

        Args:
            A: ``[m, d]`` observation matrix over the flattened event (inpainting: a row selection).
            y: ``[m]`` observation.
            noise_std: $s \ge 0$.

        Returns:
            The posterior, a `MultivariateGaussian` of the same event shape.
        """
        m, c, _ = _condition_components(self.mean.reshape(1, -1), self.cov[None], A, y, noise_std)
        return MultivariateGaussian(m[0].reshape(self.event_shape), c[0])

    def __repr__(self) -> str:
        return f"MultivariateGaussian(event_shape={tuple(self.event_shape)})"


class MultivariateGaussianMixture(_Mixture, _EigenOracle):
    r"""Mixture $\sum_k w_k\,\mathcal N(\mu_k, \Sigma_k)$ of full-covariance components.

    Its own class rather than a mode of `GaussianMixture`: that one keeps diagonal variances broadcast over
    the event (``component_vars``), which metrics and tests read, while full covariances act on the flattened
    event. Conditioning either on a linear observation gives this class. Under a linear SDE each component
    moves as in `MultivariateGaussian` and the weights stay.

    Args:
        weights: ``[K]`` non-negative weights (normalised here).
        means: ``[K, *event]`` component means.
        covs: ``[K, d, d]`` symmetric positive semi-definite covariances, ``d`` the event size.
    """

    def __init__(self, weights, means, covs) -> None:
        means = _as_float_tensor("means", means)
        weights = _as_float_tensor("weights", weights, dtype=means.dtype, device=means.device)
        covs = _as_float_tensor("covs", covs, dtype=means.dtype, device=means.device)
        if means.ndim < 2:
            raise ValueError(f"means must have shape [K, *event], got {tuple(means.shape)}")
        K, d = means.shape[0], means[0].numel()
        if weights.shape != (K,):
            raise ValueError(f"weights must have shape [K]=[{K}], got {tuple(weights.shape)}")
        if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {weights.tolist()!r}")
        if covs.shape != (K, d, d):
            raise ValueError(f"covs must have shape [K, d, d]=[{K}, {d}, {d}], got {tuple(covs.shape)}")
        self.weights = weights / weights.sum()
        self.means = means
        self.covs = covs
        self._lam, self._U = _eigh_psd(covs, "covs")

    @property
    def cov(self) -> Tensor:
        r"""Mixture covariance $\sum_k w_k(\Sigma_k + \mu_k\mu_k^\top) - \mu\mu^\top$, ``[d, d]``."""
        m = self.means.reshape(self.means.shape[0], -1)
        mu = self.weights @ m
        second = torch.einsum("k,kij->ij", self.weights, self.covs) + torch.einsum("k,ki,kj->ij", self.weights, m, m)
        return second - torch.outer(mu, mu)

    def to(self, device=None, dtype=None) -> MultivariateGaussianMixture:
        """Copy onto ``device`` / ``dtype``."""
        return MultivariateGaussianMixture(
            *(a.to(device=device, dtype=dtype) for a in (self.weights, self.means, self.covs))
        )

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``[n, *event]`` samples (component by `torch.multinomial`, then a Gaussian draw)."""
        n = check_int("n", n)
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        d = self.covs.shape[-1]
        z = torch.randn((n, d), generator=generator, device=self.means.device, dtype=self.means.dtype)
        x = torch.einsum("nde,ne->nd", self._U[k], z * self._lam[k].sqrt())
        return self.means[k] + x.reshape(n, *self.event_shape)

    def _terms(self, x: Tensor, alpha: Tensor, sigma2: Tensor, data: bool = False) -> tuple[Tensor, Tensor]:
        r"""(log-density ``[B]``, score shaped like ``x``) of the mixture moved to (α, σ²), each ``[B]`` or 0-d; with
        ``data`` the data prediction $\sum_k\gamma_k\,\mathbb E[x_0 \mid x_t, k]$ instead of the score."""
        xf = _flat_event(x, self.event_shape)
        alpha, sigma2 = alpha.reshape(-1, 1, 1), sigma2.reshape(-1, 1, 1)
        mus = self.means.reshape(1, self.means.shape[0], -1)
        logp, out = _eig_terms(
            xf, alpha * mus, self._U, alpha**2 * self._lam + sigma2, alpha * self._lam if data else None
        )
        logp = logp + torch.log(self.weights)
        gamma = torch.softmax(logp, dim=1)  # [B, K] responsibilities
        out = mus + out if data else out
        return torch.logsumexp(logp, dim=1), torch.einsum("bk,bkd->bd", gamma, out).reshape(x.shape)

    def marginal(self, sde: LinearSDE, t: TimeLike) -> MultivariateGaussianMixture:
        r"""Exact law of $x_t$: weights kept, $\mu_k \to \alpha\mu_k$, $\Sigma_k \to \alpha^2\Sigma_k + \sigma^2 I$."""
        t = _scalar_time(sde, t, self.means)
        alpha, sigma2 = _marginal_coeffs(sde, t)
        eye = torch.eye(self.covs.shape[-1], dtype=self.covs.dtype, device=self.covs.device)
        return MultivariateGaussianMixture(self.weights, alpha * self.means, alpha**2 * self.covs + sigma2 * eye)

    def condition(self, A, y, noise_std: float) -> MultivariateGaussianMixture:
        r"""Exact posterior for $y = Ax + n$: each component conditioned (`MultivariateGaussian.condition`),
        weights $w_k' \propto w_k\,\mathcal N(y; A\mu_k, A\Sigma_kA^\top + s^2 I)$.

        Args:
            A: ``[m, d]`` observation matrix over the flattened event.
            y: ``[m]`` observation.
            noise_std: $s \ge 0$.
        """
        K = self.means.shape[0]
        m, c, log_ev = _condition_components(self.means.reshape(K, -1), self.covs, A, y, noise_std)
        return MultivariateGaussianMixture(
            torch.softmax(torch.log(self.weights) + log_ev, 0), m.reshape(self.means.shape), c
        )

    def __repr__(self) -> str:
        return f"MultivariateGaussianMixture(K={self.weights.shape[0]}, event_shape={tuple(self.event_shape)})"


class GuidedGaussian:
    r"""Classifier-free guidance of two diagonal Gaussian laws, solved exactly: the guided probability flow and the
    law of the guided reverse SDE, at any scale and with a guidance interval.

    With data $\mathcal N(\mu_c, c)$ (conditional) and $\mathcal N(\mu_u, v)$ (unconditional) per coordinate, the guided
    score $s_u + w(s_c - s_u)$ (Ho & Salimans 2022) is affine in $x$. In EDM's coordinates $\tilde x = x/\alpha_t$,
    $u = \tilde\sigma_t^2$ (`LinearSDE.noise_level`) the probability flow becomes, for every linear SDE,
    $\mathrm d\tilde x/\mathrm du = \tfrac12\big[(1-w)(\tilde x-\mu_u)/(v+u) + w(\tilde x-\mu_c)/(c+u)\big]
    = A\tilde x - B$, a linear ODE with the integrating factor $\Phi(u) = (v+u)^{(1-w)/2}(c+u)^{w/2}$:
    $\tilde x(u_1) = \tfrac{\Phi(u_1)}{\Phi(u_0)}\tilde x(u_0) - \Phi(u_1)\int_{u_0}^{u_1}B/\Phi\,\mathrm dr$.
    The guided reverse SDE $\mathrm dx = [f x - g^2 s]\,\mathrm dt + g\,\mathrm d\bar w$ keeps Gaussians Gaussian, with
    $\mathrm d\tilde m/\mathrm du = 2(A\tilde m - B)$ and $\mathrm d\tilde V/\mathrm du = 4A\tilde V - 1$ (integrating
    factors $\Phi^2$ and $\Phi^4$). The scalar integrals, which depend on the schedule only through $u$, are taken by
    adaptive Gauss–Kronrod quadrature (``scipy.integrate.quad``) in $\log(u + \min(c, v))$ at relative tolerance
    ``rtol``; at $w \in \{0, 1\}$ everything reduces to `Gaussian.flow` and the exact marginals. A guidance interval
    $(\tilde\sigma_{lo}, \tilde\sigma_{hi}]$ (Kynkäänniemi et al. 2024) splits the path: scale $w$ inside, 1 (the
    conditional score) outside.

    Args:
        cond: the conditional law $\mathcal N(\mu_c, c)$ (a `Gaussian`).
        uncond: the unconditional law $\mathcal N(\mu_u, v)$, of the same event shape.
        scale: $w \ge 0$.
        interval: ``(lo, hi)`` in $\tilde\sigma$ or None (guided on the whole path).
        rtol: relative tolerance of the quadrature (``scipy.integrate.quad``'s ``epsrel``, at least 1e-14).
    """

    def __init__(self, cond: Gaussian, uncond: Gaussian, scale: float, interval=None, rtol: float = 1e-13) -> None:
        if not (isinstance(cond, Gaussian) and isinstance(uncond, Gaussian)):
            raise TypeError(f"cond and uncond must be Gaussian, got {cond!r} and {uncond!r}")
        if cond.event_shape != uncond.event_shape:
            raise ValueError(
                f"cond and uncond must share an event shape, got {tuple(cond.event_shape)} and "
                f"{tuple(uncond.event_shape)}"
            )
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
            raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
        if not 1e-14 <= float(rtol) < 1:
            raise ValueError(f"rtol must lie in [1e-14, 1), got {rtol!r}")
        self.cond, self.uncond, self.scale, self.rtol = cond, uncond, float(scale), float(rtol)
        self.interval = check_interval("interval", interval)
        d = lambda a: a.detach().cpu().double().reshape(-1).numpy()  # noqa: E731
        self._mu_c, self._c, self._mu_u, self._v = d(cond.mean), d(cond.var), d(uncond.mean), d(uncond.var)

    # -- the path in u = σ̃², split at the interval's ends ------------------------------------------------------------
    def _pieces(
        self, sde: LinearSDE, t: TimeLike, s: TimeLike
    ) -> tuple[float, float, list[tuple[float, float, float]]]:
        """``(α_t, α_s, [(u0, u1, w), ...])`` from t to s."""
        _check_linear(sde)
        times = torch.tensor([float(sde.check_time("t", _as_time(t))), float(sde.check_time("s", _as_time(s)))])
        times = times.double()
        alpha, u = sde.mean_coeff(times), sde.noise_level(times) ** 2
        u0, u1 = float(u[0]), float(u[1])
        cuts = [u0]
        if self.interval is not None:
            inner = sorted(b**2 for b in self.interval if math.isfinite(b) and min(u0, u1) < b**2 < max(u0, u1))
            cuts += inner if u1 > u0 else inner[::-1]
        cuts.append(u1)
        pieces = []
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            mid = math.sqrt(0.5 * (a + b))
            inside = self.interval is None or self.interval[0] < mid <= self.interval[1]
            pieces.append((a, b, self.scale if inside else 1.0))
        return float(alpha[0]), float(alpha[1]), pieces

    def _integral(self, power: float, w: float, u0: float, u1: float, pole: np.ndarray | None) -> np.ndarray:
        r"""$\int_{u_0}^{u_1}\Phi_e(u_1)/\Phi_e(r)\cdot(\text{pole}+r)^{-1}\,\mathrm dr$ per coordinate (no pole factor
        when ``pole`` is None), $\log\Phi_e = \tfrac e2[(1-w)\log(v+r) + w\log(c+r)]$ with $e$ = ``power``."""
        from scipy.integrate import quad

        v, c = self._v, self._c
        out, cache = np.empty_like(v), {}
        for i in range(v.size):  # one quadrature per coordinate (cached over repeated variance pairs)
            key = (v[i], c[i], None if pole is None else pole[i])
            if key in cache:
                out[i] = cache[key]
                continue
            vi, ci, pi = key
            kappa = min(vi, ci)
            end = power / 2 * ((1 - w) * math.log(vi + u1) + w * math.log(ci + u1))

            def f(rho, vi=vi, ci=ci, pi=pi, kappa=kappa, end=end):
                r = math.exp(rho) - kappa
                log_phi = power / 2 * ((1 - w) * math.log(vi + r) + w * math.log(ci + r))
                value = math.exp(end - log_phi) * (r + kappa)
                return value if pi is None else value / (pi + r)

            val, _ = quad(f, math.log(u0 + kappa), math.log(u1 + kappa), epsabs=0.0, epsrel=self.rtol, limit=500)
            out[i] = cache[key] = val
        return out

    def _log_phi(self, power: float, w: float, u: float):
        return power / 2 * ((1 - w) * np.log(self._v + u) + w * np.log(self._c + u))

    def _mean_map(self, power: float, pieces) -> tuple[np.ndarray, np.ndarray]:
        """``(R, m)``: $\\tilde x \\mapsto R\\tilde x + m$ over the path for the flow (power 1) or the SDE's mean (2)."""
        R, m = np.ones_like(self._v), np.zeros_like(self._v)
        for u0, u1, w in pieces:
            r = np.exp(self._log_phi(power, w, u1) - self._log_phi(power, w, u0))
            forcing = np.zeros_like(self._v)
            if w != 1.0:
                forcing += (1 - w) * self._mu_u * self._integral(power, w, u0, u1, self._v)
            if w != 0.0:
                forcing += w * self._mu_c * self._integral(power, w, u0, u1, self._c)
            R, m = r * R, r * m - power / 2 * forcing
        return R, m

    def _var_map(self, pieces) -> tuple[np.ndarray, np.ndarray]:
        """``(R, n)``: $\\tilde V \\mapsto R\\tilde V + n$ over the path for the guided reverse SDE."""
        R, n = np.ones_like(self._v), np.zeros_like(self._v)
        for u0, u1, w in pieces:
            r = np.exp(self._log_phi(4.0, w, u1) - self._log_phi(4.0, w, u0))
            R, n = r * R, r * n - self._integral(4.0, w, u0, u1, None)
        return R, n

    def _as(self, a: np.ndarray, like: Tensor) -> Tensor:
        return torch.as_tensor(a, dtype=like.dtype, device=like.device).reshape(self.cond.event_shape)

    # -- public maps -----------------------------------------------------------------------------------------------------
    def flow(self, sde: LinearSDE, x: Tensor, t: TimeLike, s: TimeLike) -> Tensor:
        r"""Exact guided probability-flow map from time ``t`` to ``s`` for ``x`` ``[B, *event]`` (affine in $x$)."""
        x = check_points("x", x, self.cond.event_shape)
        a_t, a_s, pieces = self._pieces(sde, t, s)
        R, m = self._mean_map(1.0, pieces)
        return a_s * (self._as(R, x) * (x / a_t) + self._as(m, x))

    def flow_law(self, sde: LinearSDE, start: Gaussian, t: TimeLike, s: TimeLike) -> Gaussian:
        """The law at ``s`` of the guided probability flow started from ``start`` at ``t``."""
        a_t, a_s, pieces = self._pieces(sde, t, s)
        R, m = self._mean_map(1.0, pieces)
        mean = start.mean
        return Gaussian(
            a_s * (self._as(R, mean) * mean / a_t + self._as(m, mean)), (a_s / a_t) * self._as(R, mean) * start.std
        )

    def reverse_law(self, sde: LinearSDE, start: Gaussian, t: TimeLike, s: TimeLike) -> Gaussian:
        r"""The law at ``s`` of the guided reverse SDE $\mathrm dx = [f x - g^2 s_w]\,\mathrm dt + g\,\mathrm d\bar w$ started
        from ``start`` at ``t`` (``s < t``): what stochastic samplers with the guided score converge to."""
        a_t, a_s, pieces = self._pieces(sde, t, s)
        R, m = self._mean_map(2.0, pieces)
        Rv, n = self._var_map(pieces)
        mean = start.mean
        var = self._as(Rv, mean) * start.var / a_t**2 + self._as(n, mean)
        return Gaussian(a_s * (self._as(R, mean) * mean / a_t + self._as(m, mean)), a_s * var.sqrt())

    def __repr__(self) -> str:
        return (
            f"GuidedGaussian(scale={self.scale}, interval={self.interval}, event_shape={tuple(self.cond.event_shape)})"
        )


def _as_time(t: TimeLike) -> float:
    """A scalar time (Python number or 0-d tensor) as a float."""
    if isinstance(t, Tensor):
        if t.ndim != 0:
            raise ValueError(f"times must be scalars, got shape {tuple(t.shape)}")
        return float(t)
    return t
