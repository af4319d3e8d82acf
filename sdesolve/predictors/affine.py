r"""Predictors whose step is affine in the state, the score and the noise: $x' = a\,x + b\,\nabla\log p_t(x) + c\,z$.

Euler–Maruyama, reverse diffusion, ancestral sampling, the identity and the probability-flow Euler step: each gives
its coefficients $(a, b, c)$ as functions of the times, and both the public `step` (per-sample times) and the fused
kernel (float64 tables per grid, three in-place passes) apply them through `affine_mean_`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
from torch import Tensor

from .._utils import append_dims, batch_time
from ..sde import SDE, ScoreFn, require_linear, reverse_diffusion
from ..solvers.fused import Kernel, RunSpec, TimeTable, affine_mean_, axpy_, coefficient_table
from ..solvers.loop import maybe_compile
from ..solvers.programs import no_data_prediction
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

    def data_coefficients(self, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
        r"""``(a, b, c)`` of the step written in the data prediction, $x' = a\,x + b\,D + c\,z$, used where $\alpha(t) = 0$
        (rectified flow and cosine at $T$: there the score does not determine $D$ and the score's coefficients are
        infinite); None where the predictor has no such limit (a ``ValueError`` then names it)."""
        return None

    def table(self, t: Tensor, t_next: Tensor) -> tuple[tuple[Tensor, Tensor, Tensor], Tensor]:
        """The coefficient columns on float64 times, in the data prediction where α(t) = 0, and that mask."""
        columns = self.coefficients(t, t_next)
        data = t == self.sde.T if self.sde.singular_at_T else torch.zeros_like(t, dtype=torch.bool)
        if self.sde.singular_at_T and bool(data.any()):
            limit = self.data_coefficients(t, t_next)
            where = float(t[data].reshape(-1)[0])
            if limit is None:
                raise ValueError(
                    f"{type(self).__name__} is not defined where alpha(t) = 0 (t={where:.6g} on {self.sde!r}): its "
                    "coefficients there are infinite or inconsistent; use ancestral, euler_maruyama with a finite "
                    "diffusion (diffusion='sigma'), a few-step predictor or an ODE method"
                )
            columns = tuple(torch.where(data, d, c) for c, d in zip(columns, limit, strict=True))
            if not all(bool(torch.isfinite(c[data]).all()) for c in columns):
                raise ValueError(
                    f"{type(self).__name__}'s step from t={where:.6g} (alpha = 0) is infinite on {self.sde!r}: "
                    f"{self._infinite_hint()}"
                )
        return columns, data

    def _infinite_hint(self) -> str:
        return "use an ODE method or a few-step predictor there"

    def step(self, x, t, t_next, score_fn, *, noise):
        t, t_next = batch_time(t, x), batch_time(t_next, x)
        columns, data = self.table(t.double(), t_next.double())
        a, b, c = (v.to(x.dtype) for v in columns)
        model = None
        if self.nfe:
            model = score_fn(x, t)
            if self.sde.singular_at_T and bool(data.any()):  # D where α = 0, the score elsewhere
                model = torch.where(append_dims(data, x.ndim), _data_prediction(score_fn, x, t), model)
        x_mean = affine_mean_(x.clone(), model, a, b)
        if not self.stochastic:
            return x_mean, x_mean
        return axpy_(x_mean.clone(), noise.normal(x), c), x_mean

    def kernel(self, score_fn, times, x, run):
        columns, _ = self.table(times.host[:-1], times.host[1:])
        first = self.sde.singular_at_T and times.values[0] == self.sde.T  # only T can have α = 0
        return AffineKernel(columns, self.nfe, score_fn, times, x, run, first)


def _data_prediction(score_fn: ScoreFn, x: Tensor, t: Tensor) -> Tensor:
    """``score_fn.data_prediction(x, t)``, or the error saying why it is needed."""
    model = getattr(score_fn, "data_prediction", None)
    if model is None:
        raise ValueError(no_data_prediction(float(t.reshape(-1)[0])))
    return model(x, t)


class AffineKernel(Kernel):
    """Fused affine step on a grid: ``x.mul_(a)`` (skipped where every a = 1), ``add_(s, b)``, ``add_(z, c)``; with
    ``data_first`` (the first interval starts at T where α = 0) the data prediction takes the score's place there."""

    def __init__(
        self, columns, nfe: int, score_fn: ScoreFn, times: TimeTable, x: Tensor, run: RunSpec, data_first: bool = False
    ) -> None:
        table = coefficient_table(columns, x, run.compile)
        self.scale, self.noisy = table.not_one[0], table.nonzero[2]
        self.nfe = nfe if table.nonzero[1] else 0
        self.rows, self.score_fn, self.times, self.run = table.rows, score_fn, times, run
        self.data_first = data_first  # the first interval starts where α = 0: D takes the score's place there
        if self.data_first and self.nfe and not callable(getattr(score_fn, "data_prediction", None)):
            raise ValueError(no_data_prediction(times.values[0]))
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
        if i == 0 and self.data_first:
            a, b, c = self.rows[i]
            affine_mean_(x, self.score_fn.data_prediction(x, self.times.batch[i]) if self.nfe else None, a, b)
            if z is not None:
                axpy_(x, z, c)
            return
        self._update(self, x, self.times.batch[i], z, *self.rows[i])


class EulerMaruyama(AffinePredictor):
    r"""Euler–Maruyama on the reverse SDE $\mathrm dx = [f x - \tfrac12(g^2 + w^2)\nabla\log p_t]\,\mathrm dt + w\,\mathrm d\bar W$:
    $x' = x + [f x - \tfrac12(g^2 + w^2)\nabla\log p_t]\Delta t + w\sqrt{|\Delta t|}\,z$.

    Every $w \ge 0$ keeps the forward marginals $p_t$ (`sdesolve.sde.reverse_diffusion`); $w = g$ (the default) is
    score_sde's reverse SDE (Song et al. 2021, App. F: $a = 1 + f\Delta t$, $b = -g^2\Delta t$, $c = g\sqrt{|\Delta t|}$),
    $w = 0$ the probability flow's Euler step. The diffusion depends on t only (additive noise), so the strong order
    is 1 (Kloeden & Platen 1992, §10.2), not ½; the weak order is 1. Where $\alpha(T) = 0$ the first step is written in
    the data prediction (the score there is exactly $-x/\sigma^2$): it needs a finite $w(T)$ (not $g$).

    Args:
        sde: the forward SDE.
        diffusion: $w$: ``"g"``, ``"sigma"``, ``"none"``, a constant or ``w(t)`` (`REVERSE_DIFFUSIONS`).
    """

    strong_order = 1.0
    weak_order = 1.0

    def __init__(self, sde: SDE, diffusion: str | float | Callable[[Tensor], Tensor] = "g") -> None:
        super().__init__(sde)
        self.diffusion = diffusion
        self._w = reverse_diffusion(self.sde, diffusion)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sde!r}, diffusion={self.diffusion!r})"

    def coefficients(self, t, t_next):
        dt = t_next - t
        g, w = self.sde.diffusion(t), self._w(t)
        return 1 + self.sde.drift_coeff(t) * dt, -0.5 * (g**2 + w**2) * dt, w * dt.abs().sqrt()

    def data_coefficients(self, t, t_next):
        # drift = u - w²s/2 with u = P x + Q D and s = -x/σ² exactly where α = 0
        dt = t_next - t
        big_p, big_q = self.sde.velocity_coefficients(t)
        w = self._w(t)
        return 1 + (big_p + 0.5 * w**2 / self.sde.std(t) ** 2) * dt, big_q * dt, w * dt.abs().sqrt()

    def _infinite_hint(self) -> str:
        return f"its diffusion w = {self.diffusion!r} is infinite there; pass a finite one, e.g. diffusion='sigma'"


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

    def data_coefficients(self, t, t_next):
        # the posterior mean (r σ'² x + α' G² D)/σ²: at α = 0, r = 0 and G² = σ², so x' ~ N(α'D, σ'²) exactly
        sde = self.sde
        r, G2, var = sde.mean_ratio(t, t_next), sde.transition_var(t, t_next), sde.std(t) ** 2
        return (
            r * sde.std(t_next) ** 2 / var,
            sde.mean_coeff(t_next) * G2 / var,
            sde.std(t_next) * G2.sqrt() / sde.std(t),
        )


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
        p, q = self.sde.drift_coeff(t), -0.5 * self.sde.diffusion(t) ** 2
        return 1 + p * dt, q * dt, torch.zeros_like(t)

    def data_coefficients(self, t, t_next):
        dt = t_next - t
        big_p, big_q = self.sde.velocity_coefficients(t)
        return 1 + big_p * dt, big_q * dt, torch.zeros_like(t)
