r"""Predictors: one reverse-time step of the sampler from ``t`` down to ``t_next``.

Every step takes explicit times, so $\Delta t = t_{\rm next} - t$ is the real grid spacing (score_sde and
diffusers use $-1/N$ on a grid of $N-1$ intervals). ``noise`` overrides the standard-normal draw, e.g.
with $\Delta W/\sqrt{|\Delta t|}$ from a Brownian path shared with torchsde.
"""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from ._utils import TimeLike, batch_time, check_choice, randn_like
from .sde import SDE, LinearSDE, ScoreFn
from .solvers.adaptive_sde import improved_euler_pair
from .solvers.fused import Kernel, RunSpec, TimeTable, affine_mean_, axpy_, coefficient_table
from .solvers.loop import maybe_compile
from .solvers.runge_kutta import HEUN, RK4, FlowTerm, RungeKuttaKernel, Tableau, rk_step

__all__ = [
    "Predictor",
    "AffinePredictor",
    "EulerMaruyama",
    "ImprovedEuler",
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

    Subclasses give `step`; the sampling loop runs `kernel`, which by default calls `step` (so any predictor
    plugs in) and which the predictors here replace by a fused in-place kernel with coefficients per grid.

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

    def kernel(self, score_fn: ScoreFn, times: TimeTable, x: Tensor, run: RunSpec) -> Kernel:
        """This predictor bound to a grid for the sampling loop (default: one `step` call per interval)."""
        return _StepKernel(self, score_fn, times, x, run)

    def _noise(self, x: Tensor, generator: torch.Generator | None, noise: Tensor | None) -> Tensor:
        if noise is None:
            return randn_like(x, generator)
        if noise.shape != x.shape:
            raise ValueError(f"noise must have the sample's shape {tuple(x.shape)}, got {tuple(noise.shape)}")
        return noise

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sde!r})"


class _StepKernel(Kernel):
    """Any predictor's `step` on the loop (user predictors): the state is replaced each interval."""

    def __init__(self, pred: Predictor, score_fn: ScoreFn, times: TimeTable, x: Tensor, run: RunSpec) -> None:
        self.pred, self.score_fn, self.times, self.run, self.nfe = pred, score_fn, times, run, pred.nfe
        self.buf = torch.empty_like(x) if pred.stochastic else None

    def __call__(self, x, i, last):
        t = self.times.values
        z = self.run.noise.predictor(self.buf, i, t[i], t[i + 1]) if self.buf is not None else None
        x_new, x_mean = self.pred.step(x, self.times.batch[i], self.times.batch[i + 1], self.score_fn, noise=z)
        x.copy_(x_mean if last and self.run.denoise else x_new)


class AffinePredictor(Predictor):
    r"""A step affine in the state, the score and the noise: $x' = a\,x + b\,\nabla\log p_t(x) + c\,z$.

    Subclasses give `coefficients` $(a, b, c)$ as functions of the times; `step` (per-sample times) and the
    fused kernel (float64 tables per grid, three in-place passes) both apply them through `affine_mean_`.
    """

    def __init__(self, sde: SDE) -> None:
        super().__init__(sde)
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"{type(self).__name__} needs a LinearSDE (closed-form coefficients), got {sde!r}")

    @abc.abstractmethod
    def coefficients(self, t: Tensor, t_next: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(a, b, c)`` for steps from ``t`` to ``t_next`` (tensors of any common shape)."""

    def step(self, x, t, t_next, score_fn, generator=None, noise=None):
        t, t_next = batch_time(t, x), batch_time(t_next, x)
        a, b, c = (v.to(x.dtype) for v in self.coefficients(t.double(), t_next.double()))
        x_mean = affine_mean_(x.clone(), score_fn(x, t) if self.nfe else None, a, b)
        if not self.stochastic:
            return x_mean, x_mean
        return axpy_(x_mean.clone(), self._noise(x, generator, noise), c), x_mean

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
        self._update = maybe_compile(self._apply, run.compile)

    def _apply(self, x: Tensor, t: Tensor, z: Tensor | None, a, b, c) -> None:
        affine_mean_(x, self.score_fn(x, t) if self.nfe else None, a, b, self.scale)
        if z is not None:
            axpy_(x, z, c)

    def __call__(self, x, i, last):
        t = self.times.values
        z = None
        if self.noisy and not (last and self.run.denoise):
            z = self.run.noise.predictor(self.buf, i, t[i], t[i + 1])
        self._update(x, self.times.batch[i], z, *self.rows[i])


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


class ImprovedEuler(Predictor):
    r"""Improved Euler (stochastic Heun) on the reverse SDE, one draw $z$ for both stages (`improved_euler_pair`):
    $x_1 = x + b(x, t)\Delta t + g(t)\sqrt{|\Delta t|}\,z$, $x' = \tfrac12\big(x_1 + x + b(x_1, t')\Delta t +
    g(t')\sqrt{|\Delta t|}\,z\big)$, $b = f - g^2\nabla\log p_t$.

    The accepted update of `sde_adaptive_sample` (Jolicoeur-Martineau et al. 2021) on a fixed grid. With additive
    noise it is Kloeden & Platen's explicit order-2.0 weak scheme (1992, §15.1) with $g$ averaged over the step
    ($h\,\bar g^2 = \int g^2 + O(h^3)$): weak order 2. Its strong order is 1 in theory, as Euler–Maruyama's (no
    $I_{(1,0)}$ term); measured 0.94 (VP) and 1.10 (VE) over 32–256 steps against torchsde's srk at 1024, it is left
    undeclared because the suite does not assert it. The draw enters both stages, so there is no noise-free mean:
    ``x_mean`` is the step itself.
    """

    weak_order = 2.0
    nfe = 2

    def __init__(self, sde: SDE) -> None:
        super().__init__(sde)
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"ImprovedEuler needs a LinearSDE, got {sde!r}")

    def step(self, x, t, t_next, score_fn, generator=None, noise=None):
        t, t_next = batch_time(t, x).double(), batch_time(t_next, x).double()
        _, y = improved_euler_pair(self.sde, score_fn, x, t, t - t_next, self._noise(x, generator, noise))
        return y, y


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
        sde: LinearSDE = self.sde
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


class _ProbabilityFlowRK(Predictor):
    r"""One explicit Runge–Kutta step of the probability flow $\dot x = f(t)\,x - \tfrac12 g^2\nabla\log p_t$."""

    tableau: Tableau
    stochastic = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.nfe = len(cls.tableau.b)
        cls.strong_order = cls.weak_order = float(cls.tableau.order)

    def __init__(self, sde: SDE) -> None:
        super().__init__(sde)
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"{type(self).__name__} needs a LinearSDE, got {sde!r}")

    def step(self, x, t, t_next, score_fn, generator=None, noise=None):
        t, t_next = batch_time(t, x), batch_time(t_next, x)
        x = rk_step(FlowTerm(self.sde, score_fn), t, x, t_next - t, self.tableau)
        return x, x

    def kernel(self, score_fn, times, x, run):
        return RungeKuttaKernel(self.tableau, FlowTerm(self.sde, score_fn), times, x, compile=run.compile)


class ProbabilityFlowHeun(_ProbabilityFlowRK):
    """Heun (explicit trapezoidal) step of the probability-flow ODE (order 2; Karras et al. 2022, Alg. 1)."""

    tableau = HEUN


class ProbabilityFlowRK4(_ProbabilityFlowRK):
    """Classical 4-stage Runge–Kutta step of the probability-flow ODE (order 4)."""

    tableau = RK4


PREDICTORS: dict[str, type[Predictor]] = {
    "euler_maruyama": EulerMaruyama,
    "reverse_diffusion": ReverseDiffusion,
    "ancestral": AncestralSampling,
    "none": NoPredictor,
    "pf_euler": ProbabilityFlowEuler,
    "pf_heun": ProbabilityFlowHeun,
    "pf_rk4": ProbabilityFlowRK4,
    "improved_euler": ImprovedEuler,
}

# stochastic few-step samplers (step programs, built on Predictor above): registered by name here too
from .few_step_predictors import EDMStochastic, Restart, SDEDPMSolverPP2M  # noqa: E402

PREDICTORS |= {"edm_stochastic": EDMStochastic, "sde_dpm_solver_pp_2m": SDEDPMSolverPP2M, "restart": Restart}


def get_predictor(predictor: str | Predictor | None, sde: SDE) -> Predictor:
    """Resolve a predictor given by registry name, instance, or None (= ``NoPredictor``)."""
    if predictor is None:
        return NoPredictor(sde)
    if isinstance(predictor, Predictor):
        return predictor
    if isinstance(predictor, str):
        return PREDICTORS[check_choice("predictor", predictor, tuple(PREDICTORS))](sde)
    raise TypeError(f"predictor must be a name, a Predictor or None, got {predictor!r}")
