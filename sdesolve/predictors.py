r"""Predictors: one reverse-time step of the sampler from ``t`` down to ``t_next``.

Every step takes explicit times, so $\Delta t = t_{\rm next} - t$ is the real grid spacing (score_sde and
diffusers use $-1/N$ on a grid of $N-1$ intervals). ``noise`` overrides the standard-normal draw, e.g.
with $\Delta W/\sqrt{|\Delta t|}$ from a Brownian path shared with torchsde.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from . import _ode
from ._utils import TimeLike, append_dims, batch_time, check_choice, randn_like
from .sde import SDE, LinearSDE, ScoreFn

__all__ = [
    "Predictor",
    "EulerMaruyama",
    "ReverseDiffusion",
    "AncestralSampling",
    "NoPredictor",
    "ProbabilityFlowEuler",
    "ProbabilityFlowHeun",
    "ProbabilityFlowRK4",
    "PREDICTORS",
    "get_predictor",
]


class Predictor(abc.ABC):
    """Base predictor, built with the forward SDE.

    Attributes:
        strong_order: strong order of convergence claimed (None where theory gives none); asserted by the
            verification suite.
        weak_order: weak order claimed.
        nfe: score evaluations per step.
        stochastic: whether a step draws noise.
    """

    strong_order: float | None = None
    weak_order: float | None = None
    nfe: int = 1
    stochastic: bool = True

    def __init__(self, sde: SDE) -> None:
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be an sdesolve SDE, got {sde!r}")
        self.sde = sde

    @abc.abstractmethod
    def step(
        self,
        x: Tensor,
        t: TimeLike,
        t_next: TimeLike,
        score_fn: ScoreFn,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Advance ``x`` (``[B, *event]``) from ``t`` to ``t_next``; return ``(x, x_mean)`` (mean: no noise)."""

    def _noise(self, x: Tensor, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
        if noise is None:
            return randn_like(x, generator)
        if noise.shape != x.shape:
            raise ValueError(f"noise must have the sample's shape {tuple(x.shape)}, got {tuple(noise.shape)}")
        return noise

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sde!r})"


class EulerMaruyama(Predictor):
    r"""Euler–Maruyama on the reverse SDE: $x' = x + [f - g^2\nabla\log p_t]\Delta t + g\sqrt{|\Delta t|}\,z$.

    Song et al. 2021, App. F. The diffusion depends on t only (additive noise), so the strong order is 1
    (Kloeden & Platen 1992, §10.2), not ½; the weak order is 1.
    """

    strong_order = 1.0
    weak_order = 1.0

    def step(self, x, t, t_next, score_fn, generator=None, noise=None):
        t, t_next = batch_time(t, x), batch_time(t_next, x)
        dt = t_next - t
        drift = self.sde.reverse(score_fn).drift(x, t)
        x_mean = x + drift * append_dims(dt, x.ndim)
        g = self.sde.diffusion(t) * dt.abs().sqrt()
        return x_mean + append_dims(g, x.ndim) * self._noise(x, generator, noise), x_mean


class ReverseDiffusion(Predictor):
    r"""Reverse diffusion (Song et al. 2021, eq. 46): $x' = x - f + G^2\nabla\log p_t(x) + G z$.

    ``(f, G)`` is the SDE's `discretize` from ``t_next`` up to ``t`` (exact for linear SDEs).
    """

    weak_order = 1.0

    def step(self, x, t, t_next, score_fn, generator=None, noise=None):
        rev_f, rev_G = self.sde.reverse(score_fn).discretize(x, t, t_next)
        x_mean = x - rev_f
        return x_mean + append_dims(rev_G, x.ndim) * self._noise(x, generator, noise), x_mean


class AncestralSampling(Predictor):
    r"""Ancestral sampling: draw from the Gaussian posterior $q(x_{t'} \mid x_t, \hat x_0)$.

    With $\hat x_0 = (x + \sigma_t^2 s)/\alpha_t$ (Tweedie), $r = \alpha_t/\alpha_{t'}$ and $G^2$ the
    transition variance, the posterior is $\mathcal N\big((x + G^2 s)/r,\ \sigma_{t'}^2 G^2/\sigma_t^2\big)$:
    score_sde's VE step (Song et al. 2021, eq. 47) and the DDPM posterior $\tilde\beta$ for VP (Ho et al.
    2020, eq. 7; score_sde uses $\beta$).
    """

    weak_order = 1.0

    def __init__(self, sde: SDE) -> None:
        super().__init__(sde)
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"AncestralSampling needs a LinearSDE (closed-form transitions), got {sde!r}")

    def step(self, x, t, t_next, score_fn, generator=None, noise=None):
        sde: LinearSDE = self.sde
        t, t_next = batch_time(t, x), batch_time(t_next, x)
        r = (sde.log_mean_coeff(t) - sde.log_mean_coeff(t_next)).exp()
        G2 = sde.transition_var(t, t_next)
        x_mean = (x + append_dims(G2, x.ndim) * score_fn(x, t)) / append_dims(r, x.ndim)
        std = (sde.std(t_next) ** 2 * G2 / sde.std(t) ** 2).sqrt()
        return x_mean + append_dims(std, x.ndim) * self._noise(x, generator, noise), x_mean


class NoPredictor(Predictor):
    """Identity step (corrector-only sampling, e.g. annealed Langevin dynamics)."""

    nfe = 0
    stochastic = False

    def step(self, x, t, t_next, score_fn, generator=None, noise=None):
        return x, x


class _ProbabilityFlow(Predictor):
    r"""One explicit Runge–Kutta step of the probability-flow ODE $\dot x = f - \tfrac12 g^2\nabla\log p_t$."""

    tableau: _ode.Tableau
    stochastic = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.nfe = len(cls.tableau.b)
        cls.strong_order = cls.weak_order = float(cls.tableau.order)

    def step(self, x, t, t_next, score_fn, generator=None, noise=None):
        t, t_next = batch_time(t, x), batch_time(t_next, x)
        drift = self.sde.reverse(score_fn, probability_flow=True).drift
        x, _ = _ode.rk_step(lambda s, y: drift(y, s), t, x, t_next - t, self.tableau)
        return x, x


class ProbabilityFlowEuler(_ProbabilityFlow):
    """Euler step of the probability-flow ODE (order 1)."""

    tableau = _ode.EULER


class ProbabilityFlowHeun(_ProbabilityFlow):
    """Heun (explicit trapezoidal) step of the probability-flow ODE (order 2; Karras et al. 2022, Alg. 1)."""

    tableau = _ode.HEUN


class ProbabilityFlowRK4(_ProbabilityFlow):
    """Classical 4-stage Runge–Kutta step of the probability-flow ODE (order 4)."""

    tableau = _ode.RK4


PREDICTORS: dict[str, type[Predictor]] = {
    "euler_maruyama": EulerMaruyama,
    "reverse_diffusion": ReverseDiffusion,
    "ancestral": AncestralSampling,
    "none": NoPredictor,
    "pf_euler": ProbabilityFlowEuler,
    "pf_heun": ProbabilityFlowHeun,
    "pf_rk4": ProbabilityFlowRK4,
}


def get_predictor(predictor: str | Predictor | None, sde: SDE) -> Predictor:
    """Resolve a predictor given by registry name, instance, or None (= ``NoPredictor``)."""
    if predictor is None:
        return NoPredictor(sde)
    if isinstance(predictor, Predictor):
        return predictor
    if isinstance(predictor, str):
        return PREDICTORS[check_choice("predictor", predictor, tuple(PREDICTORS))](sde)
    raise TypeError(f"predictor must be a name, a Predictor or None, got {predictor!r}")
