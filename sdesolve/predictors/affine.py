r"""Predictors whose step is affine in the state, the score and the noise: $x' = a\,x + b\,\nabla\log p_t(x) + c\,z$.

Euler–Maruyama, reverse diffusion, ancestral sampling, the identity and the probability-flow Euler step: each gives
its coefficients $(a, b, c)$ as functions of the times, and both the public `step` (per-sample times) and the fused
kernel (float64 tables per grid, three in-place passes) apply them through `affine_mean_`.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from .._utils import batch_time
from ..sde import SDE, ScoreFn, require_linear
from ..solvers.fused import Kernel, RunSpec, TimeTable, affine_mean_, axpy_, coefficient_table
from ..solvers.loop import maybe_compile
from ..solvers.runge_kutta import FlowTerm
from .base import Predictor

__all__ = [
    "AffinePredictor",
    "AffineKernel",
    "EulerMaruyama",
    "ReverseDiffusion",
    "AncestralSampling",
    "NoPredictor",
    "ProbabilityFlowEuler",
]


class AffinePredictor(Predictor):
    r"""A step affine in the state, the score and the noise: $x' = a\,x + b\,\nabla\log p_t(x) + c\,z$.

    Subclasses give `coefficients` $(a, b, c)$ as functions of the times; `step` (per-sample times) and the
    fused kernel (float64 tables per grid, three in-place passes) both apply them through `affine_mean_`.
    """

    def __init__(self, sde: SDE) -> None:
        super().__init__(require_linear(sde, type(self).__name__))

    @abc.abstractmethod
    def coefficients(self, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(a, b, c)`` for steps from ``t`` to ``t_next`` (tensors of any common shape)."""

    def step(self, x, t, t_next, score_fn, *, noise):
        t, t_next = batch_time(t, x), batch_time(t_next, x)
        a, b, c = (v.to(x.dtype) for v in self.coefficients(t.double(), t_next.double()))
        x_mean = affine_mean_(x.clone(), score_fn(x, t) if self.nfe else None, a, b)
        if not self.stochastic:
            return x_mean, x_mean
        return axpy_(x_mean.clone(), noise.normal(x), c), x_mean

    def kernel(self, score_fn, times, x, run):
        return AffineKernel(self.coefficients(times.host[:-1], times.host[1:]), self.nfe, score_fn, times, x, run)


class AffineKernel(Kernel):
    """Fused affine step on a grid: ``x.mul_(a)`` (skipped where every a = 1), ``add_(s, b)``, ``add_(z, c)``."""

    def __init__(self, columns, nfe: int, score_fn: ScoreFn, times: TimeTable, x: Tensor, run: RunSpec) -> None:
        table = coefficient_table(columns, x, run.compile)
        self.scale, self.noisy = table.not_one[0], table.nonzero[2]
        self.nfe = nfe if table.nonzero[1] else 0
        self.rows, self.score_fn, self.times, self.run = table.rows, score_fn, times, run
        self.buf = torch.empty_like(x) if self.noisy else None
        self._update = maybe_compile(type(self)._apply, run.compile)

    def _apply(self, x: Tensor, t: Tensor, z: Tensor | None, a, b, c) -> None:
        affine_mean_(x, self.score_fn(x, t) if self.nfe else None, a, b, self.scale)
        if z is not None:
            axpy_(x, z, c)

    def __call__(self, x, i, last):
        t = self.times.values
        z = None
        if self.noisy and not (last and self.run.denoise):
            z = self.run.noise.predictor(self.buf, i, t[i], t[i + 1])
        self._update(self, x, self.times.batch[i], z, *self.rows[i])


class EulerMaruyama(AffinePredictor):
    r"""Euler–Maruyama on the reverse SDE: $x' = x + [f - g^2\nabla\log p_t]\Delta t + g\sqrt{|\Delta t|}\,z$.

    Song et al. 2021, App. F: $a = 1 + f\Delta t$, $b = -g^2\Delta t$, $c = g\sqrt{|\Delta t|}$. The diffusion
    depends on t only (additive noise), so the strong order is 1 (Kloeden & Platen 1992, §10.2), not ½; the
    weak order is 1.
    """

    strong_order = 1.0
    weak_order = 1.0

    def coefficients(self, t, t_next):
        dt = t_next - t
        g = self.sde.diffusion(t)
        return 1 + self.sde.drift_coeff(t) * dt, -(g**2) * dt, g * dt.abs().sqrt()


class ReverseDiffusion(AffinePredictor):
    r"""Reverse diffusion (Song et al. 2021, eq. 46): $x' = x - f + G^2\nabla\log p_t(x) + G z$.

    ``(f, G)`` is the exact transition from ``t_next`` up to ``t`` (`LinearSDE.discretize`): $f = (r - 1)x$,
    $r = \alpha_t/\alpha_{t'}$, so $a = 2 - r$, $b = G^2$, $c = G$.
    """

    weak_order = 1.0

    def coefficients(self, t, t_next):
        G2 = self.sde.transition_var(t, t_next)
        return 2 - self.sde.mean_ratio(t, t_next), G2, G2.sqrt()


class AncestralSampling(AffinePredictor):
    r"""Ancestral sampling: draw from the Gaussian posterior $q(x_{t'} \mid x_t, \hat x_0)$.

    With $\hat x_0 = (x + \sigma_t^2 s)/\alpha_t$ (Tweedie), $r = \alpha_t/\alpha_{t'}$ and $G^2$ the
    transition variance, the posterior is $\mathcal N\big((x + G^2 s)/r,\ \sigma_{t'}^2 G^2/\sigma_t^2\big)$:
    score_sde's VE step (Song et al. 2021, eq. 47) and the DDPM posterior $\tilde\beta$ for VP (Ho et al.
    2020, eq. 7; score_sde uses $\beta$).
    """

    weak_order = 1.0

    def coefficients(self, t, t_next):
        sde = self.sde
        r, G2 = sde.mean_ratio(t, t_next), sde.transition_var(t, t_next)
        return 1 / r, G2 / r, sde.std(t_next) * G2.sqrt() / sde.std(t)


class NoPredictor(AffinePredictor):
    """Identity step (corrector-only sampling, e.g. annealed Langevin dynamics): a = 1, b = c = 0."""

    nfe = 0
    stochastic = False

    def coefficients(self, t, t_next):
        return torch.ones_like(t), torch.zeros_like(t), torch.zeros_like(t)


class ProbabilityFlowEuler(AffinePredictor):
    r"""Euler step of the probability-flow ODE: $a = 1 + f\Delta t$, $b = -\tfrac12 g^2\Delta t$ (order 1)."""

    strong_order = weak_order = 1.0
    stochastic = False

    def coefficients(self, t, t_next):
        dt = t_next - t
        p, q = FlowTerm(self.sde, None).coefficients(t)
        return 1 + p * dt, q * dt, torch.zeros_like(t)
