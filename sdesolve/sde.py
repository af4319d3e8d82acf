r"""Forward SDEs of score-based generative modelling and their reverse-time SDEs.

Song et al. 2021, *Score-Based Generative Modeling through Stochastic Differential Equations*
(ICLR): forward SDE eq. (5) $\mathrm dx = f(x,t)\,\mathrm dt + g(t)\,\mathrm dw$, reverse SDE eq. (6),
probability flow eq. (13), VE/VP/sub-VP SDEs eqs. (9), (11), (12) and Appendix B.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ._utils import (
    TimeLike,
    append_dims,
    batch_time,
    check_choice,
    check_float_dtype,
    check_int,
    check_positive,
    check_python_time,
    check_sample,
    check_shape,
    event_numel,
    flat_sum,
)

ScoreFn = Callable[[Tensor, Tensor], Tensor]
Coefficient = float | Tensor

__all__ = [
    "SDE",
    "LinearSDE",
    "VESDE",
    "VPSDE",
    "SubVPSDE",
    "ReverseSDE",
    "ScoreFn",
    "SDES",
    "get_sde",
    "require_linear",
    "data_prediction",
]


class SDE(abc.ABC):
    r"""Abstract Itô SDE $\mathrm dx = f(x,t)\,\mathrm dt + g(t)\,\mathrm dw$ on $t \in [0, T]$.

    Subclasses implement `drift`, `diffusion`, `prior_sampling` and `prior_logp`; the base derives
    `sde`, an Euler `discretize` and `reverse`. The diffusion depends on t only (additive noise),
    as for every SDE of Song et al. 2021.

    Args:
        N: number of discretisation steps of the reference grid (score_sde's ``N``).
        T: end time of the forward process.
    """

    def __init__(self, N: int = 1000, T: float = 1.0) -> None:
        self.N = check_int("N", N)
        self.T = check_positive("T", T)

    # -- formulas ------------------------------------------------------------------------------
    @abc.abstractmethod
    def drift(self, x: Tensor, t: TimeLike) -> Tensor:
        """Drift $f(x, t)$, shaped like ``x``."""

    @abc.abstractmethod
    def diffusion(self, t: TimeLike) -> Tensor:
        """Diffusion coefficient $g(t)$; per-sample ``[B]`` for ``t`` of shape ``[B]``."""

    @abc.abstractmethod
    def prior_sampling(
        self,
        shape: Sequence[int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Draw ``shape = [B, *event]`` samples from the prior $p_T$ approximation."""

    @abc.abstractmethod
    def prior_logp(self, z: Tensor) -> Tensor:
        """Log-density of the prior at ``z`` (``[B, *event]``), summed over the event: ``[B]``."""

    def prior_from_normal(self, z: Tensor) -> Tensor:
        """The prior sample made of the standard normals ``z`` (``[B, *event]``): how ``seeds=`` draws the prior."""
        raise TypeError(f"{type(self).__name__} does not define prior_from_normal(z), which seeds= needs")

    # -- derived -------------------------------------------------------------------------------
    def sde(self, x: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        """Return ``(drift, diffusion)``: $f(x,t)$ like ``x`` and $g(t)$ of shape ``[B]``."""
        t = batch_time(self.check_time("t", t), x)
        return self.drift(x, t), self.diffusion(t)

    def discretize(self, x: Tensor, t: TimeLike, t_next: TimeLike) -> tuple[Tensor, Tensor]:
        r"""One forward step from ``t_next`` up to ``t``: $x_t = x_{t'} + f + G z$.

        The base class uses Euler–Maruyama, $f = f(x, t)\,\Delta$, $G = g(t)\sqrt{\Delta}$ with
        $\Delta = t - t'$; linear SDEs override it with the exact transition.

        Returns:
            ``(f, G)``: ``f`` like ``x`` and ``G`` of shape ``[B]``.
        """
        t, t_next = self._step_times(x, t, t_next)
        delta = t - t_next
        drift, g = self.sde(x, t)
        return drift * append_dims(delta, x.ndim), g * delta.abs().sqrt()

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        r"""The reverse-time SDE (eq. 6) or probability-flow ODE (eq. 13) driven by ``score_fn``."""
        return ReverseSDE(self, score_fn, probability_flow)

    def check_time(self, name: str, t: TimeLike) -> TimeLike:
        """Validate a Python time in ``[0, T]`` (``ValueError`` naming ``name``); tensors pass unchanged.

        Tensors are checked at the sampling entry points instead: a check here would sync inside step loops.
        """
        return check_python_time(name, t, self.T)

    def _step_times(self, x: Tensor, t: TimeLike, t_next: TimeLike) -> tuple[Tensor, Tensor]:
        """``t`` and ``t_next`` as ``[B]`` tensors; Python times checked in ``[0, T]`` and ordered ``t_next <= t``."""
        t, t_next = self.check_time("t", t), self.check_time("t_next", t_next)
        if not isinstance(t, Tensor) and not isinstance(t_next, Tensor) and t_next > t:
            raise ValueError(f"discretize steps from t_next up to t: need t_next <= t, got t={t!r}, t_next={t_next!r}")
        return batch_time(t, x), batch_time(t_next, x)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in {**self._params(), "T": self.T}.items())
        return f"{type(self).__name__}({params})"

    def _params(self) -> dict[str, float]:
        return {"N": self.N}


class LinearSDE(SDE):
    r"""SDE with linear drift $f(x,t) = f(t)\,x$: Gaussian transitions in closed form.

    The marginal of $x_t$ given $x_0$ is $\mathcal N(\alpha(t)x_0, \sigma(t)^2 I)$ with
    $\alpha' = f\alpha$ and $(\sigma^2)' = 2f\sigma^2 + g^2$ (the Fokker–Planck equation;
    Särkkä & Solin 2019, eq. 6.2). Subclasses give `drift_coeff` $f(t)$, `diffusion`,
    `log_mean_coeff` $\log\alpha(t)$ and `std` $\sigma(t)$.
    """

    @abc.abstractmethod
    def drift_coeff(self, t: Tensor) -> Tensor:
        """Scalar drift coefficient $f(t)$, ``[B]``."""

    @abc.abstractmethod
    def log_mean_coeff(self, t: Tensor) -> Tensor:
        r"""$\log\alpha(t)$, ``[B]``."""

    @abc.abstractmethod
    def std(self, t: TimeLike) -> Tensor:
        r"""Marginal standard deviation $\sigma(t)$, ``[B]``."""

    def mean_coeff(self, t: TimeLike) -> Tensor:
        r"""Marginal mean coefficient $\alpha(t)$, ``[B]``."""
        return self.log_mean_coeff(torch.as_tensor(t)).exp()

    def drift(self, x: Tensor, t: TimeLike) -> Tensor:
        return append_dims(self.drift_coeff(batch_time(t, x)), x.ndim) * x

    def marginal_prob(self, x0: Tensor, t: TimeLike) -> tuple[Tensor, Tensor]:
        r"""Mean $\alpha(t)x_0$ (like ``x0``) and std $\sigma(t)$ (``[B]``) of $p_{0t}(x_t \mid x_0)$."""
        t = batch_time(self.check_time("t", t), x0)
        return append_dims(self.mean_coeff(t), x0.ndim) * x0, self.std(t)

    def mean_ratio(self, t: Tensor, t_next: Tensor) -> Tensor:
        r"""$r = \alpha(t)/\alpha(t') = e^{\log\alpha(t) - \log\alpha(t')}$, the mean factor of $x_t \mid x_{t'}$."""
        return (self.log_mean_coeff(t) - self.log_mean_coeff(t_next)).exp()

    def transition_var(self, t: Tensor, t_next: Tensor) -> Tensor:
        r"""Variance $G^2 = \sigma(t)^2 - r^2\sigma(t')^2$ of $x_t \mid x_{t'}$, $r = \alpha(t)/\alpha(t')$."""
        return self.std(t) ** 2 - (self.mean_ratio(t, t_next) * self.std(t_next)) ** 2

    # -- the schedule in log-SNR and noise level: one place for grids, solvers and adapters --------------------
    def marginal_lambda(self, t: TimeLike) -> Tensor:
        r"""Half log-SNR $\lambda(t) = \log\alpha(t) - \log\sigma(t)$ (DPM-Solver's ``marginal_lambda``), decreasing in t."""
        t = torch.as_tensor(t)
        return self.log_mean_coeff(t) - self.std(t).log()

    def noise_level(self, t: TimeLike) -> Tensor:
        r"""EDM's noise level $\tilde\sigma(t) = \sigma(t)/\alpha(t) = e^{-\lambda(t)}$ (Karras et al. 2022, eq. 4:
        $x_t/\alpha_t = x_0 + \tilde\sigma z$), increasing in t; $\sigma(t)$ itself for VE."""
        t = torch.as_tensor(t)
        return self.std(t) / self.mean_coeff(t)

    def inverse_lambda(self, lam: Tensor) -> Tensor:
        r"""The time $t \in [0, T]$ with $\lambda(t) =$ ``lam`` (float64, any shape); a value beyond the schedule's
        range $[\lambda(T), \lambda(0)]$ gives the nearest end.

        Here by vectorised bisection of the decreasing $\lambda$ (64 halvings of $[0, T]$: float64 resolution);
        VE, VP and sub-VP override it with closed forms.
        """
        lam = torch.as_tensor(lam, dtype=torch.float64)
        lo, hi = torch.zeros_like(lam), torch.full_like(lam, self.T)
        for _ in range(64):
            mid = 0.5 * (lo + hi)
            before = self.marginal_lambda(mid) > lam  # λ decreases: the root lies later than mid
            lo, hi = torch.where(before, mid, lo), torch.where(before, hi, mid)
        return 0.5 * (lo + hi)

    def inverse_noise_level(self, level: Tensor) -> Tensor:
        r"""The time $t \in [0, T]$ with $\tilde\sigma(t) =$ ``level`` (float64): `inverse_lambda` of $-\log\tilde\sigma$."""
        return self.inverse_lambda(-torch.as_tensor(level, dtype=torch.float64).log())

    def data_prediction(self, x: Tensor, score: Tensor, t: TimeLike) -> Tensor:
        r"""Tweedie's $D = \mathbb E[x_0 \mid x_t = x] = (x + \sigma(t)^2\nabla\log p_t(x))/\alpha(t)$ (`data_prediction`),
        out of place (differentiable); ``t`` ``[B]`` or a scalar."""
        t = batch_time(t, x)
        return data_prediction(x, score, append_dims(self.mean_coeff(t), x.ndim), append_dims(self.std(t), x.ndim))

    def discretize(self, x: Tensor, t: TimeLike, t_next: TimeLike) -> tuple[Tensor, Tensor]:
        r"""Exact transition from ``t_next`` up to ``t``: $f = (r-1)x$, $G^2 = \sigma_t^2 - r^2\sigma_{t'}^2$."""
        t, t_next = self._step_times(x, t, t_next)
        return append_dims(self.mean_ratio(t, t_next) - 1, x.ndim) * x, self.transition_var(t, t_next).sqrt()

    def _gaussian_prior_logp(self, z: Tensor, std: float) -> Tensor:
        d = event_numel(check_sample("z", z))
        return -0.5 * d * math.log(2 * math.pi * std**2) - flat_sum(z**2) / (2 * std**2)

    def _gaussian_prior(self, shape, generator, device, dtype, std: float) -> Tensor:
        shape = check_shape("shape", shape)
        return std * torch.randn(shape, generator=generator, device=device, dtype=check_float_dtype("dtype", dtype))


def data_prediction(
    x: Tensor, score: Tensor, alpha: Coefficient, sigma: Coefficient, out: Tensor | None = None
) -> Tensor:
    r"""Tweedie's formula, the data prediction $D = \mathbb E[x_0 \mid x_t = x] = (x + \sigma^2\nabla\log p_t(x))/\alpha$
    (Efron 2011; Song et al. 2021, eq. 47; Karras et al. 2022's denoiser): the one copy every solver and adapter uses.

    Args:
        x: the state ``[B, *event]``.
        score: $\nabla\log p_t(x)$, like ``x``.
        alpha: $\alpha(t)$, a float or a tensor broadcasting against ``x``.
        sigma: $\sigma(t)$, likewise.
        out: write $D$ here in place (two passes, no allocation: the fused kernels), or None for a new tensor.
    """
    if out is None:
        return (x + sigma**2 * score) / alpha
    if isinstance(sigma, Tensor):
        torch.addcmul(x, score, sigma**2, out=out)
    else:
        torch.add(x, score, alpha=sigma**2, out=out)
    return out.div_(alpha) if isinstance(alpha, Tensor) else out.mul_(1.0 / alpha)


def require_linear(sde: object, who: str) -> LinearSDE:
    """``sde`` if it is a `LinearSDE` (closed-form α(t), σ(t)), else a ``TypeError`` naming ``who`` and the value."""
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an sdesolve SDE (e.g. VPSDE()), got {sde!r}")
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"{who} needs a LinearSDE (closed-form alpha(t), sigma(t)), got {sde!r}")
    return sde


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


class ReverseSDE(SDE):
    r"""Reverse-time SDE $\mathrm dx = [f - g^2\nabla\log p_t]\,\mathrm dt + g\,\mathrm d\bar w$ (eq. 6).

    With ``probability_flow=True`` the probability-flow ODE
    $\mathrm dx = [f - \tfrac12 g^2\nabla\log p_t]\,\mathrm dt$ (eq. 13). Time still runs forward in
    the formulas; samplers integrate it from ``T`` down to ``eps``.
    """

    def __init__(self, forward: SDE, score_fn: ScoreFn, probability_flow: bool = False) -> None:
        super().__init__(N=forward.N, T=forward.T)
        if not callable(score_fn):
            raise TypeError(f"score_fn must be callable, got {score_fn!r}")
        self.forward = forward
        self.score_fn = score_fn
        self.probability_flow = bool(probability_flow)
        self._weight = 0.5 if self.probability_flow else 1.0

    def _params(self) -> dict[str, object]:
        return {"forward": self.forward, "probability_flow": self.probability_flow}

    def drift(self, x: Tensor, t: TimeLike) -> Tensor:
        t = batch_time(t, x)
        f, g = self.forward.sde(x, t)
        return f - append_dims(g**2 * self._weight, x.ndim) * self.score_fn(x, t)

    def diffusion(self, t: TimeLike) -> Tensor:
        g = self.forward.diffusion(t)
        return torch.zeros_like(g) if self.probability_flow else g

    def discretize(self, x: Tensor, t: TimeLike, t_next: TimeLike) -> tuple[Tensor, Tensor]:
        r"""Reverse step from ``t`` down to ``t_next`` (score_sde): $x' = x - f_{\rm rev} + G_{\rm rev} z$.

        $f_{\rm rev} = f - G^2\nabla\log p_t(x)$ (×½ for the flow), $G_{\rm rev} = G$ (0 for the flow),
        with ``(f, G)`` the forward `discretize`.
        """
        t, t_next = self._step_times(x, t, t_next)
        f, G = self.forward.discretize(x, t, t_next)
        rev_f = f - append_dims(G**2 * self._weight, x.ndim) * self.score_fn(x, t)
        return rev_f, torch.zeros_like(G) if self.probability_flow else G

    def prior_sampling(self, shape, generator=None, device=None, dtype=None) -> Tensor:
        return self.forward.prior_sampling(shape, generator=generator, device=device, dtype=dtype)

    def prior_logp(self, z: Tensor) -> Tensor:
        return self.forward.prior_logp(z)

    def prior_from_normal(self, z: Tensor) -> Tensor:
        return self.forward.prior_from_normal(z)


SDES: dict[str, type[LinearSDE]] = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}
"""The SDEs by name (the CLI's ``--sde``, the verification suite, the hypothesis strategies)."""


def get_sde(name: str, **params) -> LinearSDE:
    """Build the SDE registered as ``name`` (``"vp"``, ``"subvp"``, ``"ve"``) with constructor ``params``."""
    return SDES[check_choice("sde", name, tuple(SDES))](**params)
