r"""The SDE bases: `SDE` (any Itô SDE with additive noise), `LinearSDE` (x_t = α(t)x₀ + σ(t)ε, the schedule in closed
form: λ, σ̃ and their inverses, the data prediction), and `ReverseSDE`.

Song et al. 2021, *Score-Based Generative Modeling through Stochastic Differential Equations* (ICLR): forward SDE
eq. (5) $\mathrm dx = f(x,t)\,\mathrm dt + g(t)\,\mathrm dw$, reverse SDE eq. (6), probability flow eq. (13).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .._utils import (
    TimeLike,
    append_dims,
    batch_time,
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
    "ReverseSDE",
    "ScoreFn",
    "require_linear",
    "data_prediction",
    "REVERSE_DIFFUSIONS",
    "reverse_diffusion",
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

    singular_at_T: bool = False
    r"""Whether $\alpha(T) = 0$ (rectified flow, cosine): there $\lambda = -\infty$, $f$ and $g$ are infinite and samplers
    step from $T$ in the data prediction; only $T$ can be such a point ($\lambda$ is strictly decreasing)."""

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

    def d_mean_coeff(self, t: TimeLike) -> Tensor:
        r"""$\alpha'(t) = f(t)\,\alpha(t)$ (schedules given by $\alpha$ and $\sigma$ give it in closed form)."""
        t = torch.as_tensor(t)
        return self.drift_coeff(t) * self.mean_coeff(t)

    def d_std(self, t: TimeLike) -> Tensor:
        r"""$\sigma'(t) = (2f\sigma^2 + g^2)/(2\sigma)$, from $(\sigma^2)' = 2f\sigma^2 + g^2$ (infinite where $\sigma = 0$ and $g > 0$)."""
        t = torch.as_tensor(t)
        sigma = self.std(t)
        return (2 * self.drift_coeff(t) * sigma**2 + self.diffusion(t) ** 2) / (2 * sigma)

    def velocity_coefficients(self, t: TimeLike) -> tuple[Tensor, Tensor]:
        r"""$(P, Q)$ of the probability-flow velocity in the data prediction, $u = f x - \tfrac12 g^2\nabla\log p_t = P x + Q D$:
        $P = \sigma'/\sigma$, $Q = \alpha' - \alpha\sigma'/\sigma$ ($u = \alpha'D + \sigma'(x - \alpha D)/\sigma$). Finite where
        $\alpha = 0$ (rectified flow and cosine at $T$), where $f$ and $g$ are not."""
        t = torch.as_tensor(t)
        ratio = self.d_std(t) / self.std(t)
        return ratio, self.d_mean_coeff(t) - self.mean_coeff(t) * ratio

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

    def score_from_data(self, x: Tensor, data: Tensor, t: TimeLike) -> Tensor:
        r"""Tweedie's formula inverted, the score of a data prediction: $\nabla\log p_t(x) = (\alpha(t)D - x)/\sigma(t)^2$."""
        t = batch_time(t, x)
        return (append_dims(self.mean_coeff(t), x.ndim) * data - x) / append_dims(self.std(t), x.ndim) ** 2

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


REVERSE_DIFFUSIONS = ("g", "sigma", "none")
r"""Named diffusions $w(t)$ of the reverse SDEs with $p_t$'s marginals, $\mathrm dx = [f x - \tfrac12(g^2 + w^2)\nabla\log p_t]\,
\mathrm dt + w\,\mathrm d\bar W$: ``"g"`` (score_sde's reverse SDE, Anderson 1982), ``"sigma"`` ($w = \sigma(t)$, one of
SiT's choices, finite where $g$ is not), ``"none"`` ($w = 0$: the probability flow)."""


def reverse_diffusion(sde: LinearSDE, w: str | float | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    r"""The diffusion $w(t)$ (a function of float64 times) of a reverse SDE with the forward SDE's marginals.

    Args:
        sde: the forward SDE.
        w: a name of `REVERSE_DIFFUSIONS`, a constant $w \ge 0$, or a function ``w(t) -> tensor`` ($\ge 0$).
    """
    if isinstance(w, str):
        if w not in REVERSE_DIFFUSIONS:
            raise ValueError(
                f"unknown diffusion {w!r}; choose one of: {', '.join(REVERSE_DIFFUSIONS)}, a number or w(t)"
            )
        return {"g": sde.diffusion, "sigma": sde.std, "none": torch.zeros_like}[w]
    if callable(w):
        return w
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not (math.isfinite(w) and w >= 0):
        raise ValueError(
            f"diffusion must be a name ({', '.join(REVERSE_DIFFUSIONS)}), a finite number >= 0 or w(t), got {w!r}"
        )
    return lambda t: torch.full_like(torch.as_tensor(t), float(w))


def require_linear(sde: object, who: str) -> LinearSDE:
    """``sde`` if it is a `LinearSDE` (closed-form α(t), σ(t)), else a ``TypeError`` naming ``who`` and the value."""
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be an sdesolve SDE (e.g. VPSDE()), got {sde!r}")
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"{who} needs a LinearSDE (closed-form alpha(t), sigma(t)), got {sde!r}")
    return sde


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
