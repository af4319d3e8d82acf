r"""score_sde's three SDEs (Song et al. 2021, eqs. (9), (11), (12) and App. B): VE, VP and sub-VP."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._utils import TimeLike, check_positive
from .base import LinearSDE

__all__ = ["VESDE", "VPSDE", "SubVPSDE"]


class VESDE(LinearSDE):
    r"""Variance-exploding SDE (Song et al. 2021, eq. 9; NCSN++).

    $\sigma(t) = \sigma_{\min}(\sigma_{\max}/\sigma_{\min})^t$, $f = 0$,
    $g(t) = \sigma(t)\sqrt{2\log(\sigma_{\max}/\sigma_{\min})}$, prior $\mathcal N(0, \sigma_{\max}^2 I)$.

    Following score_sde, `marginal_prob` reports std $\sigma(t)$ rather than
    $\sqrt{\sigma(t)^2 - \sigma_{\min}^2}$: $p_0$ is the data smoothed by $\mathcal N(0, \sigma_{\min}^2)$.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000, T: float = 1.0):
        super().__init__(N=N, T=T)
        self.sigma_min = check_positive("sigma_min", sigma_min)
        self.sigma_max = check_positive("sigma_max", sigma_max)
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min must be < sigma_max, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}")
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def _params(self) -> dict[str, float]:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "N": self.N}

    def drift_coeff(self, t: Tensor) -> Tensor:
        return torch.as_tensor(t) * 0.0  # zero, but stays on t's device, dtype and autograd graph

    def diffusion(self, t: TimeLike) -> Tensor:
        return self.std(t) * math.sqrt(2 * self._log_ratio / self.T)

    def log_mean_coeff(self, t: Tensor) -> Tensor:
        return torch.as_tensor(t) * 0.0

    def std(self, t: TimeLike) -> Tensor:
        t = torch.as_tensor(t)
        return self.sigma_min * torch.exp(t / self.T * self._log_ratio)

    def transition_var(self, t: Tensor, t_next: Tensor) -> Tensor:
        # sigma_t^2 - sigma_t'^2 = sigma_t'^2 expm1(2 log(ratio) (t - t')): no cancellation for t ≈ t'.
        return self.std(t_next) ** 2 * torch.expm1(2 * self._log_ratio * (t - t_next) / self.T)

    def inverse_lambda(self, lam: Tensor) -> Tensor:
        r"""Closed form: $\lambda = -\log\sigma(t)$, so $t = T(-\lambda - \log\sigma_{\min})/\log(\sigma_{\max}/\sigma_{\min})$,
        clamped to $[0, T]$."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        return ((-lam - math.log(self.sigma_min)) * (self.T / self._log_ratio)).clamp(0.0, self.T)

    def prior_sampling(self, shape, generator=None, device=None, dtype=None) -> Tensor:
        return self._gaussian_prior(shape, generator, device, dtype, self.sigma_max)

    def prior_logp(self, z: Tensor) -> Tensor:
        return self._gaussian_prior_logp(z, self.sigma_max)

    def prior_from_normal(self, z: Tensor) -> Tensor:
        return self.sigma_max * z


class _BetaSDE(LinearSDE):
    r"""Shared linear noise schedule $\beta(t) = \beta_{\min} + \tfrac tT(\beta_{\max} - \beta_{\min})$."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000, T: float = 1.0):
        super().__init__(N=N, T=T)
        self.beta_min = check_positive("beta_min", beta_min, strict=False)
        self.beta_max = check_positive("beta_max", beta_max)
        if self.beta_max < self.beta_min:
            raise ValueError(f"beta_max must be >= beta_min, got beta_min={beta_min!r}, beta_max={beta_max!r}")

    def _params(self) -> dict[str, float]:
        return {"beta_min": self.beta_min, "beta_max": self.beta_max, "N": self.N}

    def beta(self, t: TimeLike) -> Tensor:
        r"""Noise rate $\beta(t)$."""
        t = torch.as_tensor(t)
        return self.beta_min + t / self.T * (self.beta_max - self.beta_min)

    def drift_coeff(self, t: Tensor) -> Tensor:
        return -0.5 * self.beta(t)

    def log_mean_coeff(self, t: Tensor) -> Tensor:
        r"""$\log\alpha(t) = -\tfrac12\int_0^t\beta = -\tfrac{t^2}{4T}(\beta_{\max}-\beta_{\min}) - \tfrac t2\beta_{\min}$."""
        t = torch.as_tensor(t)
        return -0.25 * t**2 / self.T * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def _time_for_log_mean(self, L: Tensor) -> Tensor:
        r"""The $t \in [0, T]$ with $-2\log\alpha(t) = \tfrac{\beta_{\max} - \beta_{\min}}{2T}t^2 + \beta_{\min}t = L \ge 0$:
        the quadratic's root $t = 2L/(\beta_{\min} + \sqrt{\beta_{\min}^2 + 2(\beta_{\max} - \beta_{\min})L/T})$ (rationalised:
        no cancellation as $L \to 0$ or $\beta_{\max} \to \beta_{\min}$; DPM-Solver's ``inverse_lambda``)."""
        root = torch.sqrt(self.beta_min**2 + 2 * (self.beta_max - self.beta_min) * L / self.T)
        return (2 * L / (self.beta_min + root)).clamp(0.0, self.T)

    def prior_sampling(self, shape, generator=None, device=None, dtype=None) -> Tensor:
        return self._gaussian_prior(shape, generator, device, dtype, 1.0)

    def prior_logp(self, z: Tensor) -> Tensor:
        return self._gaussian_prior_logp(z, 1.0)

    def prior_from_normal(self, z: Tensor) -> Tensor:
        return z


class VPSDE(_BetaSDE):
    r"""Variance-preserving SDE (Song et al. 2021, eq. 11; continuous DDPM).

    $f = -\tfrac12\beta(t)x$, $g = \sqrt{\beta(t)}$, $\alpha(t) = e^{-\frac12\int_0^t\beta}$,
    $\sigma(t)^2 = 1 - \alpha(t)^2$, prior $\mathcal N(0, I)$.
    """

    def diffusion(self, t: TimeLike) -> Tensor:
        return self.beta(t).sqrt()

    def std(self, t: TimeLike) -> Tensor:
        # 1 - alpha^2 = -expm1(2 log alpha): accurate for small t.
        return (-torch.expm1(2 * self.log_mean_coeff(t))).sqrt()

    def transition_var(self, t: Tensor, t_next: Tensor) -> Tensor:
        # G^2 = 1 - r^2 exactly for VP (sigma^2 = 1 - alpha^2).
        return -torch.expm1(2 * (self.log_mean_coeff(t) - self.log_mean_coeff(t_next)))

    def inverse_lambda(self, lam: Tensor) -> Tensor:
        r"""Closed form: $\sigma^2 = 1 - \alpha^2$ gives $-2\log\alpha = \log(1 + e^{-2\lambda}) = \max(a, 0) +
        \log(1 + e^{-|a|})$, $a = -2\lambda$ (exact for large $|\lambda|$; written out rather than ``torch.logaddexp``, whose
        vectorised and scalar CPU kernels differ in the last bit, so a sample's time would depend on its batch),
        then the quadratic in t (`_time_for_log_mean`)."""
        a = -2 * torch.as_tensor(lam, dtype=torch.float64)
        return self._time_for_log_mean(a.clamp(min=0) + torch.log1p(torch.exp(-a.abs())))


class SubVPSDE(_BetaSDE):
    r"""Sub-variance-preserving SDE (Song et al. 2021, eq. 12).

    $f = -\tfrac12\beta(t)x$, $g = \sqrt{\beta(t)(1 - \alpha(t)^4)}$, $\sigma(t) = 1 - \alpha(t)^2$,
    prior $\mathcal N(0, I)$.
    """

    def diffusion(self, t: TimeLike) -> Tensor:
        return (self.beta(t) * -torch.expm1(4 * self.log_mean_coeff(t))).sqrt()

    def std(self, t: TimeLike) -> Tensor:
        return -torch.expm1(2 * self.log_mean_coeff(t))

    def inverse_lambda(self, lam: Tensor) -> Tensor:
        r"""Closed form: $\sigma = 1 - \alpha^2$ gives $\tilde\sigma = 1/\alpha - \alpha$, so $\alpha = 2/(\tilde\sigma +
        \sqrt{\tilde\sigma^2 + 4})$, i.e. $-\log\alpha = \operatorname{asinh}(\tilde\sigma/2)$, $\tilde\sigma = e^{-\lambda}$; then
        the quadratic in t (`_time_for_log_mean`)."""
        lam = torch.as_tensor(lam, dtype=torch.float64)
        return self._time_for_log_mean(2 * torch.asinh(0.5 * torch.exp(-lam)))
