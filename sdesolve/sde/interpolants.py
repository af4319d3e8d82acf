r"""Any noise schedule $x_t = \alpha(t)x_0 + \sigma(t)\varepsilon$ as an SDE, and the schedules of current models.

For a schedule with $\lambda = \log(\alpha/\sigma)$ strictly decreasing, the linear SDE with these marginals has
$f = \alpha'/\alpha$ and $g^2 = 2\sigma\sigma' - 2f\sigma^2 = -2\sigma^2\lambda'$ (the Fokker–Planck conditions
$\alpha' = f\alpha$, $(\sigma^2)' = 2f\sigma^2 + g^2$; Kingma et al. 2021, App. A; Karras et al. 2022, eq. 4).

- `RectifiedFlowSDE`: $\alpha = 1 - t$, $\sigma = t$ (flow matching's linear interpolant: Lipman et al. 2023, Liu et al.
  2023; SD3, Flux, Wan, SiT);
- `CosineSDE`: $\alpha = \cos(\pi t/2)$, $\sigma = \sin(\pi t/2)$ (Nichol & Dhariwal 2021's cosine schedule, continuous);
- `EDMSDE`: $\alpha = 1$, $\sigma = t$ on $[0, \sigma_{\max}]$ (Karras et al. 2022);
- `InterpolantSDE`: any user schedule, derivatives by autograd unless given.

Where $\alpha(T) = 0$ (rectified flow, cosine), $f$ and $g$ are infinite at $T$ while the probability-flow velocity
$u = \alpha'D + \sigma'(x - \alpha D)/\sigma$ stays finite: samplers start at $T$ exactly from $\mathcal N(0, \sigma(T)^2I)$,
the exact law of $x_T$ there.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .._utils import TimeLike, check_int, check_positive
from .base import LinearSDE

__all__ = ["InterpolantSDE", "RectifiedFlowSDE", "CosineSDE", "EDMSDE"]

Schedule = Callable[[Tensor], Tensor]
_CHECK_POINTS = 4097  # the grid on which a schedule's λ is checked to decrease


def _t(t: TimeLike) -> Tensor:
    t = torch.as_tensor(t)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


class _Interpolant(LinearSDE):
    r"""A linear SDE given by its schedule: subclasses give $\alpha$, $\sigma$, $\alpha'$, $\sigma'$ (`alpha`, `sigma`,
    `d_alpha`, `d_sigma`); $f$, $g$, $\log\alpha$ and the prior $\mathcal N(0, \sigma(T)^2I)$ follow."""

    def alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def sigma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def d_alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def d_sigma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def mean_coeff(self, t: TimeLike) -> Tensor:
        return self.alpha(_t(t))

    def log_mean_coeff(self, t: Tensor) -> Tensor:
        return self.alpha(_t(t)).log()

    def std(self, t: TimeLike) -> Tensor:
        return self.sigma(_t(t))

    def d_mean_coeff(self, t: TimeLike) -> Tensor:
        return self.d_alpha(_t(t))

    def d_std(self, t: TimeLike) -> Tensor:
        return self.d_sigma(_t(t))

    def drift_coeff(self, t: Tensor) -> Tensor:
        t = _t(t)
        return self.d_alpha(t) / self.alpha(t)

    def diffusion(self, t: TimeLike) -> Tensor:
        r"""$g = \sqrt{2\sigma\sigma' - 2\sigma^2\alpha'/\alpha} = \sigma\sqrt{-2\lambda'}$ (infinite where $\alpha = 0$)."""
        t = _t(t)
        sigma = self.sigma(t)
        return (2 * sigma * (self.d_sigma(t) - sigma * self.d_alpha(t) / self.alpha(t))).clamp(min=0).sqrt()

    def prior_sampling(self, shape, generator=None, device=None, dtype=None) -> Tensor:
        return self._gaussian_prior(shape, generator, device, dtype, self._prior_std)

    def prior_logp(self, z: Tensor) -> Tensor:
        return self._gaussian_prior_logp(z, self._prior_std)

    def prior_from_normal(self, z: Tensor) -> Tensor:
        return self._prior_std * z

    @property
    def _prior_std(self) -> float:
        return float(self.sigma(torch.tensor(self.T, dtype=torch.float64)))


class InterpolantSDE(_Interpolant):
    r"""The SDE of any schedule $x_t = \alpha(t)x_0 + \sigma(t)\varepsilon$: $f = \alpha'/\alpha$, $g^2 = -2\sigma^2\lambda'$.

    Args:
        alpha: $\alpha(t)$, a function of a float64 tensor of times (elementwise, differentiable by autograd
            unless ``d_alpha`` is given); $\alpha(0) > 0$. The singular end is taken where $\alpha(T)$ is exactly 0:
            write $\cos(\pi t/2)$ as $\sin(\pi(1 - t)/2)$ ($\cos(\pi/2) = 6\cdot10^{-17}$ in float64).
        sigma: $\sigma(t)$, likewise; $\sigma(T) > 0$.
        d_alpha: $\alpha'(t)$ (default: autograd of ``alpha``).
        d_sigma: $\sigma'(t)$ (default: autograd of ``sigma``).
        T: end time.
        N: reference number of steps (score_sde's ``N``).

    Raises:
        ValueError: $\lambda = \log(\alpha/\sigma)$ not strictly decreasing on $[0, T]$ (checked on 4097 points),
            $\alpha$ or $\sigma$ negative or non-finite, $\alpha(0) = 0$ or $\sigma(T) = 0$.
    """

    def __init__(
        self,
        alpha: Schedule,
        sigma: Schedule,
        d_alpha: Schedule | None = None,
        d_sigma: Schedule | None = None,
        T: float = 1.0,
        N: int = 1000,
    ) -> None:
        super().__init__(N=N, T=T)
        for name, fn in (("alpha", alpha), ("sigma", sigma), ("d_alpha", d_alpha), ("d_sigma", d_sigma)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be a function of a tensor of times, got {fn!r}")
        self._alpha, self._sigma = alpha, sigma
        self._d_alpha = d_alpha or _derivative(alpha)
        self._d_sigma = d_sigma or _derivative(sigma)
        self._check_schedule()

    def alpha(self, t):
        return self._alpha(t)

    def sigma(self, t):
        return self._sigma(t)

    def d_alpha(self, t):
        return self._d_alpha(t)

    def d_sigma(self, t):
        return self._d_sigma(t)

    def _check_schedule(self) -> None:
        t = torch.linspace(0.0, self.T, _CHECK_POINTS, dtype=torch.float64)
        a, s = self.alpha(t), self.sigma(t)
        if not (isinstance(a, Tensor) and isinstance(s, Tensor)) or a.shape != t.shape or s.shape != t.shape:
            raise ValueError("alpha and sigma must map a tensor of times to a tensor of the same shape (elementwise)")
        if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(s).all())) or bool((a < 0).any() | (s < 0).any()):
            raise ValueError("alpha(t) and sigma(t) must be finite and >= 0 on [0, T]")
        if float(a[0]) <= 0 or float(s[-1]) <= 0:
            raise ValueError(
                f"need alpha(0) > 0 and sigma(T) > 0, got alpha(0)={float(a[0])!r}, sigma(T)={float(s[-1])!r}"
            )
        self.singular_at_T = float(a[-1]) == 0
        lam = a.log() - s.log()
        bad = (lam[1:] >= lam[:-1]).nonzero()
        if bad.numel():
            k = int(bad[0, 0])
            raise ValueError(
                "the schedule's log-SNR lambda = log(alpha/sigma) must be strictly decreasing in t; it is not between "
                f"t={float(t[k]):.6g} and t={float(t[k + 1]):.6g} (lambda {float(lam[k]):.6g} -> {float(lam[k + 1]):.6g})"
            )

    def _params(self) -> dict[str, object]:
        return {"alpha": self._alpha, "sigma": self._sigma, "N": self.N}


def _derivative(fn: Schedule) -> Schedule:
    """The elementwise derivative of ``fn`` by autograd (also inside ``torch.no_grad()``)."""

    def d(t: Tensor) -> Tensor:
        with torch.enable_grad():
            tt = _t(t).detach().requires_grad_(True)
            out = fn(tt)
            if not out.requires_grad:  # a constant schedule
                return torch.zeros_like(tt.detach())
            (grad,) = torch.autograd.grad(out.sum(), tt, allow_unused=True)
        return torch.zeros_like(tt.detach()) if grad is None else grad

    return d


class RectifiedFlowSDE(_Interpolant):
    r"""Flow matching's linear interpolant: $\alpha = 1 - t/T$, $\sigma = t/T$ (Lipman et al. 2023; Liu et al. 2023;
    SD3, Flux). $\lambda = \log((T - t)/t)$, $f = -1/(T - t)$, $g^2 = 2t/(T(T - t))$; $\alpha(T) = 0$: the prior
    $\mathcal N(0, I)$ is exact."""

    singular_at_T = True

    def __init__(self, N: int = 1000, T: float = 1.0) -> None:
        super().__init__(N=N, T=T)

    def alpha(self, t):
        return (self.T - t) / self.T

    def sigma(self, t):
        return t / self.T

    def d_alpha(self, t):
        return torch.full_like(t, -1.0 / self.T)

    def d_sigma(self, t):
        return torch.full_like(t, 1.0 / self.T)

    def inverse_lambda(self, lam: Tensor) -> Tensor:
        r"""Closed form: $e^\lambda = (T - t)/t$, $t = T\,\mathrm{sigmoid}(-\lambda)$."""
        return self.T * torch.sigmoid(-torch.as_tensor(lam, dtype=torch.float64))

    def _params(self) -> dict[str, object]:
        return {"N": self.N}


class CosineSDE(_Interpolant):
    r"""The cosine schedule in continuous time: $\alpha = \cos(\tfrac{\pi t}{2T})$, $\sigma = \sin(\tfrac{\pi t}{2T})$
    (Nichol & Dhariwal 2021 without the offset). $\lambda = \log\cot(\tfrac{\pi t}{2T})$, $f = -\tfrac{\pi}{2T}\tan$,
    $g^2 = \tfrac{\pi}{T}\tan(\tfrac{\pi t}{2T})$; $\alpha(T) = 0$ exactly (written as $\sin(\tfrac\pi2(1 - t/T))$)."""

    singular_at_T = True

    def __init__(self, N: int = 1000, T: float = 1.0) -> None:
        super().__init__(N=N, T=T)
        self._w = math.pi / (2 * self.T)

    def alpha(self, t):
        return torch.sin(self._w * (self.T - t))

    def sigma(self, t):
        return torch.sin(self._w * t)

    def d_alpha(self, t):
        return -self._w * torch.sin(self._w * t)

    def d_sigma(self, t):
        return self._w * torch.sin(self._w * (self.T - t))

    def inverse_lambda(self, lam: Tensor) -> Tensor:
        r"""Closed form: $\tan(\tfrac{\pi t}{2T}) = e^{-\lambda}$, $t = \tfrac{2T}{\pi}\arctan e^{-\lambda}$."""
        return torch.atan(torch.exp(-torch.as_tensor(lam, dtype=torch.float64))) / self._w

    def _params(self) -> dict[str, object]:
        return {"N": self.N}


class EDMSDE(_Interpolant):
    r"""EDM's schedule (Karras et al. 2022): $\alpha = 1$, $\sigma = t$ on $[0, \sigma_{\max}]$, $f = 0$, $g = \sqrt{2t}$;
    prior $\mathcal N(0, \sigma_{\max}^2 I)$. Sampling ends at ``sigma_min`` in EDM (pass ``eps=sde.sigma_min``).

    Args:
        sigma_min: EDM's smallest noise level (0.002), the usual ``eps``.
        sigma_max: the largest, $T$ (80).
        N: reference number of steps.
    """

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, N: int = 1000) -> None:
        super().__init__(N=check_int("N", N), T=check_positive("sigma_max", sigma_max))
        self.sigma_min = check_positive("sigma_min", sigma_min)
        if self.sigma_min >= self.sigma_max:
            raise ValueError(f"sigma_min must be < sigma_max, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}")

    @property
    def sigma_max(self) -> float:
        return self.T

    def alpha(self, t):
        return torch.ones_like(t)

    def sigma(self, t):
        return t.clone()

    def d_alpha(self, t):
        return torch.zeros_like(t)

    def d_sigma(self, t):
        return torch.ones_like(t)

    def inverse_lambda(self, lam: Tensor) -> Tensor:
        r"""Closed form: $\lambda = -\log t$, $t = e^{-\lambda}$ (clamped to $[0, T]$)."""
        return torch.exp(-torch.as_tensor(lam, dtype=torch.float64)).clamp(0.0, self.T)

    def _params(self) -> dict[str, object]:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "N": self.N}
