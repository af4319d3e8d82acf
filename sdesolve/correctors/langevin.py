r"""Langevin correctors: unadjusted Langevin steps at fixed t toward $p_t$ (Song et al. 2021, Alg. 2-4; Song & Ermon 2019).

Step: $x' = x + \varepsilon\nabla\log p_t(x) + \sqrt{2\varepsilon}\,z$ with
$\varepsilon = 2\alpha\,\mathrm{snr}^2\,(\|z\|/\|\nabla\log p_t\|)^2$ and the ratio chosen by ``norm``:

- ``"sigma"`` (default): replaced by $\sigma(t)$ — NCSN's annealed rule. Batch- and state-independent,
  never larger than the gradient-norm step for Gaussian-like data, safe in any dimension.
- ``"batch"``: batch-mean norms, exactly score_sde / diffusers (one sample's step depends on its batch).
- ``"sample"``: each sample's own norms. Only for high-dimensional events: in d = 1 the ratio is
  F(1,1)-distributed with infinite mean, so a warning is issued below 64 entries per sample.

$\alpha = \alpha(t)^2/\alpha(t')^2$ when ``t_next`` is given (score_sde's VP factor $1-\beta_i$), else 1.
"""

from __future__ import annotations

import abc
import math
import warnings

import torch
from torch import Tensor

from .._utils import TimeLike, batch_time, check_choice, check_int, check_positive, event_numel
from ..sde import SDE, LinearSDE, ScoreFn, require_linear
from ..solvers.fused import Coefficient, Kernel, RunSpec, TimeTable, axpy_, coefficient_table
from ..solvers.loop import maybe_compile
from .base import Corrector

__all__ = [
    "NORMS",
    "ula_",
    "LangevinCorrector",
    "LangevinKernel",
    "AnnealedLangevin",
    "sigma_rule_step",
    "StateFreeLangevin",
]

NORMS = ("sigma", "batch", "sample")
_SAMPLE_NORM_MIN_DIM = 64


def _sigma_and_factor(sde: LinearSDE, t: Tensor, t_next: Tensor | None) -> tuple[Tensor, Tensor]:
    r"""$(\sigma(t), \alpha)$, $\alpha = \alpha(t)^2/\alpha(t')^2$ (score_sde's VP factor $1 - \beta_i$; 1 without ``t_next``)."""
    return sde.std(t), torch.ones_like(t) if t_next is None else sde.mean_ratio(t, t_next) ** 2


def ula_(
    x: Tensor, grad: Tensor, z: Tensor, rho: Coefficient, c: Coefficient = 1.0, mean: bool = False
) -> Tensor | None:
    r"""One unadjusted Langevin step in place, $x \leftarrow x + \varepsilon\nabla\log p_t + \sqrt{2\varepsilon}\,z$,
    with the step factored as $\varepsilon = c\rho^2$.

    ``rho`` a float, 0-d or ``[B]`` tensor, ``c \ge 0`` a float (a 0-d tensor in compiled steps). Factored, a
    tensor step costs three passes ($\rho^2$, then two axpys with $c$ and $\sqrt{2c}$ as scalars) instead of
    forming $\varepsilon$ and $\sqrt{2\varepsilon}$. Returns a copy of the mean $x + \varepsilon\nabla\log p_t$ if ``mean``.
    """
    if isinstance(c, Tensor):  # compiled steps: fold c into ρ (inductor fuses the scalar work)
        rho, c = rho * c.sqrt(), 1.0
    axpy_(x, grad, rho.square() if isinstance(rho, Tensor) else rho**2, value=c)
    x_mean = x.clone() if mean else None
    axpy_(x, z, rho, value=math.sqrt(2 * c))
    return x_mean


class LangevinCorrector(Corrector):
    """Unadjusted Langevin corrector with step size from a signal-to-noise ratio (module docstring).

    ``AnnealedLangevin`` (score_sde's name for it with the σ-rule, the default here) is the same class.

    Args:
        sde: the forward SDE (a `LinearSDE`: σ(t) and α(t) are read from it).
        snr: signal-to-noise ratio ≥ 0 (score_sde: 0.16 for VE/CIFAR-10).
        n_steps: Langevin steps per call.
        norm: ``"sigma"``, ``"batch"`` or ``"sample"``.
    """

    def __init__(self, sde: SDE, snr: float = 0.16, n_steps: int = 1, norm: str = "sigma") -> None:
        super().__init__(require_linear(sde, type(self).__name__))
        self.snr = check_positive("snr", snr, strict=False)
        self.n_steps = check_int("n_steps", n_steps, minimum=1)
        self.norm = check_choice("norm", norm, NORMS)
        self.nfe = self.n_steps

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sde!r}, snr={self.snr}, n_steps={self.n_steps}, norm={self.norm!r})"

    def coefficients(self, t: Tensor, t_next: Tensor | None) -> tuple[Tensor, Tensor]:
        r"""$(\sigma(t), \alpha)$ with $\alpha = \alpha(t)^2/\alpha(t')^2$ (1 without ``t_next``)."""
        return _sigma_and_factor(self.sde, t, t_next)

    def step_size(self, grad: Tensor, z: Tensor, t: Tensor, alpha: Tensor) -> Tensor:
        r"""Per-sample step $\varepsilon = 2\alpha(\mathrm{snr}\cdot\rho)^2$, ``[B]``, $\rho$ per ``norm``."""
        rho, c = self._step_factors(grad, z, self.sde.std(t), alpha)
        return (c * rho**2).expand(grad.shape[0])

    def _step_factors(
        self, grad: Tensor, z: Tensor, sigma: Coefficient, alpha: Coefficient
    ) -> tuple[Coefficient, Coefficient]:
        r"""$(\rho, c)$ with $\varepsilon = c\rho^2$, $c = 2\alpha\,\mathrm{snr}^2$: $\rho = \sigma(t)$ for the σ-rule
        (a float, or like ``sigma``), else the norm ratio on device — of the batch means (0-d; the ratio of the sums,
        which is the same number) or per sample (``[B]``); no host sync."""
        if self.norm == "sigma":
            rho = sigma
        else:
            g = torch.linalg.vector_norm(grad.reshape(grad.shape[0], -1), dim=1)
            n = torch.linalg.vector_norm(z.reshape(z.shape[0], -1), dim=1)
            rho = n.sum() / g.sum() if self.norm == "batch" else n / g
        return rho, 2 * alpha * self.snr**2

    def _check_norm(self, x: Tensor) -> None:
        if self.norm == "sample" and event_numel(x) < _SAMPLE_NORM_MIN_DIM:
            warnings.warn(
                f"norm='sample' with {event_numel(x)} entries per sample: the per-sample norm ratio is heavy-tailed "
                f"below {_SAMPLE_NORM_MIN_DIM} entries (infinite mean in d=1); use norm='sigma'",
                stacklevel=3,
            )

    def langevin_(
        self, x: Tensor, grad: Tensor, z: Tensor, sigma: Coefficient, alpha: Coefficient, mean: bool = False
    ) -> Tensor | None:
        r"""One step in place, $x \leftarrow x + \varepsilon\nabla\log p_t + \sqrt{2\varepsilon}\,z$; the mean if ``mean``."""
        return ula_(x, grad, z, *self._step_factors(grad, z, sigma, alpha), mean=mean)

    def step(self, x, t, t_next, score_fn, *, noise):
        t = batch_time(t, x)
        t_next = None if t_next is None else batch_time(t_next, x).double()
        sigma, alpha = (v.to(x.dtype) for v in self.coefficients(t.double(), t_next))
        self._check_norm(x)
        x, x_mean = x.clone(), x
        for j in range(self.n_steps):
            grad = score_fn(x, t)
            x_mean = self.langevin_(x, grad, noise.normal(x, j), sigma, alpha, mean=True)
        return x, x_mean

    def kernel(self, score_fn, times, x, run):
        self._check_norm(x)
        return LangevinKernel(self, score_fn, times, x, run)


class LangevinKernel(Kernel):
    """Fused Langevin corrector on a grid: σ(t_i) and α_i tabulated once; two in-place passes per step."""

    def __init__(self, corr: LangevinCorrector, score_fn: ScoreFn, times: TimeTable, x: Tensor, run: RunSpec) -> None:
        self.corr, self.score_fn, self.times, self.run = corr, score_fn, times, run
        self.nfe = corr.n_steps
        self.rows = coefficient_table(corr.coefficients(times.host[:-1], times.host[1:]), x, run.compile).rows
        self.buf = torch.empty_like(x)
        self._update = maybe_compile(type(self)._apply, run.compile)

    def _apply(self, x: Tensor, t: Tensor, z: Tensor, sigma, alpha) -> None:
        self.corr.langevin_(x, self.score_fn(x, t), z, sigma, alpha)

    def __call__(self, x, i, last):
        t = self.times.values[i]
        for j in range(self.nfe):
            z = self.run.noise.corrector(self.buf, i, j, t)
            self._update(self, x, self.times.batch[i], z, *self.rows[i])


AnnealedLangevin = LangevinCorrector
"""Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1; score_sde's name): `LangevinCorrector` with its default
σ-rule, kept as an alias."""


def sigma_rule_step(sde: LinearSDE, snr: float, t: Tensor, t_next: Tensor | None) -> Tensor:
    r"""σ-rule Langevin step $\varepsilon = 2\alpha\,\mathrm{snr}^2\sigma(t)^2$, ``[B]`` (Song & Ermon 2019, Alg. 1).

    $\alpha = \alpha(t)^2/\alpha(t')^2$ with ``t_next`` (score_sde's VP factor), else 1. It depends on t only, never
    on the state or the batch (`LangevinCorrector` with ``norm="sigma"`` takes the same step).

    Args:
        sde: a linear SDE.
        snr: signal-to-noise ratio.
        t: times ``[B]``.
        t_next: the predictor's next times ``[B]`` or None.
    """
    sigma, alpha = _sigma_and_factor(sde, t, t_next)
    return 2 * alpha * (snr * sigma) ** 2


def ula_proposal(x: Tensor, grad: Tensor, eps: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    r"""One unadjusted Langevin move out of place (`ula_`), ``(x', mean)``; ``eps`` ``[B]``."""
    out = x.clone()
    mean = ula_(out, grad, z, eps.sqrt(), mean=True)
    return out, mean


class StateFreeLangevin(Corrector):
    """Langevin correctors whose step depends on ``(t, t_next)`` only (subclasses give `step_size`): the grid rule
    (`GridLangevin`) and MALA (`MALACorrector`)."""

    def __init__(self, sde: SDE, snr: float, n_steps: int) -> None:
        super().__init__(require_linear(sde, type(self).__name__))
        self.snr = check_positive("snr", snr, strict=False)
        self.n_steps = check_int("n_steps", n_steps, minimum=1)

    @abc.abstractmethod
    def step_size(self, t: Tensor, t_next: Tensor | None) -> Tensor:
        """Step ``[B]`` at times ``t`` ``[B]`` (``t_next`` the predictor's next times, or None)."""

    def time_and_step(self, x: Tensor, t: TimeLike, t_next: TimeLike | None) -> tuple[Tensor, Tensor]:
        """``t`` as ``[B]`` and the step ``[B]``."""
        t = batch_time(t, x)
        return t, self.step_size(t, None if t_next is None else batch_time(t_next, x))
