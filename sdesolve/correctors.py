r"""Langevin correctors: MCMC steps at fixed t toward $p_t$ (Song et al. 2021, Alg. 2-4; Song & Ermon 2019).

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

from ._utils import TimeLike, batch_time, check_choice, check_int, check_positive, event_numel, randn_like
from .sde import SDE, LinearSDE, ScoreFn
from .solvers.fused import Coefficient, Kernel, RunSpec, TimeTable, axpy_, coefficient_table
from .solvers.loop import maybe_compile

__all__ = ["Corrector", "LangevinCorrector", "AnnealedLangevin", "NoCorrector", "CORRECTORS", "get_corrector"]

NORMS = ("sigma", "batch", "sample")
_SAMPLE_NORM_MIN_DIM = 64


class Corrector(abc.ABC):
    """Base corrector, built with the forward SDE; ``nfe`` score evaluations per call.

    Subclasses give `step`; the sampling loop runs `kernel`, by default one `step` call per interval.
    """

    nfe: int = 1

    def __init__(self, sde: SDE) -> None:
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be an sdesolve SDE, got {sde!r}")
        self.sde = sde

    @abc.abstractmethod
    def step(
        self,
        x: Tensor,
        t: TimeLike,
        score_fn: ScoreFn,
        generator: torch.Generator | None = None,
        t_next: TimeLike | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Correct ``x`` (``[B, *event]``) at time ``t``; return ``(x, x_mean)``."""

    def kernel(self, score_fn: ScoreFn, times: TimeTable, x: Tensor, run: RunSpec) -> Kernel | None:
        """This corrector bound to a grid for the sampling loop (default: one `step` call at each grid time;
        None: nothing to do)."""
        return _StepKernel(self, score_fn, times, run)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sde!r})"


class _StepKernel(Kernel):
    """Any corrector's `step` on the loop (user correctors), at ``t_i`` with ``t_next = t_{i+1}``."""

    def __init__(self, corr: Corrector, score_fn: ScoreFn, times: TimeTable, run: RunSpec) -> None:
        self.corr, self.score_fn, self.times, self.run, self.nfe = corr, score_fn, times, run, corr.nfe

    def __call__(self, x, i, last):
        gen = getattr(self.run.noise, "generator", None)
        x_new, _ = self.corr.step(x, self.times.batch[i], self.score_fn, generator=gen, t_next=self.times.batch[i + 1])
        x.copy_(x_new)


class LangevinCorrector(Corrector):
    """Unadjusted Langevin corrector with step size from a signal-to-noise ratio (module docstring).

    Args:
        sde: the forward SDE (a `LinearSDE`: σ(t) and α(t) are read from it).
        snr: signal-to-noise ratio ≥ 0 (score_sde: 0.16 for VE/CIFAR-10).
        n_steps: Langevin steps per call.
        norm: ``"sigma"``, ``"batch"`` or ``"sample"``.
    """

    def __init__(self, sde: SDE, snr: float = 0.16, n_steps: int = 1, norm: str = "sigma") -> None:
        super().__init__(sde)
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"LangevinCorrector needs a LinearSDE (sigma(t), alpha(t)), got {sde!r}")
        self.snr = check_positive("snr", snr, strict=False)
        self.n_steps = check_int("n_steps", n_steps, minimum=1)
        self.norm = check_choice("norm", norm, NORMS)
        self.nfe = self.n_steps

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sde!r}, snr={self.snr}, n_steps={self.n_steps}, norm={self.norm!r})"

    def coefficients(self, t: Tensor, t_next: Tensor | None) -> tuple[Tensor, Tensor]:
        r"""$(\sigma(t), \alpha)$ with $\alpha = \alpha(t)^2/\alpha(t')^2$ (1 without ``t_next``)."""
        sde: LinearSDE = self.sde
        alpha = torch.ones_like(t) if t_next is None else sde.mean_ratio(t, t_next) ** 2
        return sde.std(t), alpha

    def step_size(self, grad: Tensor, z: Tensor, t: Tensor, alpha: Tensor) -> Tensor:
        r"""Per-sample step $\varepsilon = 2\alpha(\mathrm{snr}\cdot\rho)^2$, ``[B]``, $\rho$ per ``norm``."""
        eps = self._step_size(grad, z, self.sde.std(t), alpha)
        return eps.expand(grad.shape[0])

    def _step_size(self, grad: Tensor, z: Tensor, sigma: Coefficient, alpha: Coefficient) -> Coefficient:
        r"""`step_size` from $\sigma(t)$: a float (or like ``sigma``) for the σ-rule, else a device tensor
        (``[B]`` for ``"sample"``, 0-d for ``"batch"``; no host sync)."""
        if self.norm == "sigma":
            ratio = sigma
        else:
            g = torch.linalg.vector_norm(grad.reshape(grad.shape[0], -1), dim=1)
            n = torch.linalg.vector_norm(z.reshape(z.shape[0], -1), dim=1)
            ratio = n.mean() / g.mean() if self.norm == "batch" else n / g
        return 2 * alpha * (self.snr * ratio) ** 2

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
        eps = self._step_size(grad, z, sigma, alpha)
        axpy_(x, grad, eps)
        x_mean = x.clone() if mean else None
        axpy_(x, z, (2 * eps).sqrt() if isinstance(eps, Tensor) else math.sqrt(2 * eps))
        return x_mean

    def step(self, x, t, score_fn, generator=None, t_next=None):
        t = batch_time(t, x)
        t_next = None if t_next is None else batch_time(t_next, x).double()
        sigma, alpha = (v.to(x.dtype) for v in self.coefficients(t.double(), t_next))
        self._check_norm(x)
        x, x_mean = x.clone(), x
        for _ in range(self.n_steps):
            grad = score_fn(x, t)
            x_mean = self.langevin_(x, grad, randn_like(x, generator), sigma, alpha, mean=True)
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
        self._update = maybe_compile(self._apply, run.compile)

    def _apply(self, x: Tensor, t: Tensor, z: Tensor, sigma, alpha) -> None:
        self.corr.langevin_(x, self.score_fn(x, t), z, sigma, alpha)

    def __call__(self, x, i, last):
        t = self.times.values[i]
        for j in range(self.nfe):
            z = self.run.noise.corrector(self.buf, i, j, t)
            self._update(x, self.times.batch[i], z, *self.rows[i])


class AnnealedLangevin(LangevinCorrector):
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1; score_sde's name): the σ-rule step."""

    def __init__(self, sde: SDE, snr: float = 0.16, n_steps: int = 1) -> None:
        super().__init__(sde, snr=snr, n_steps=n_steps, norm="sigma")


class NoCorrector(Corrector):
    """Identity corrector."""

    nfe = 0

    def step(self, x, t, score_fn, generator=None, t_next=None):
        return x, x

    def kernel(self, score_fn, times, x, run):
        return None


CORRECTORS: dict[str, type[Corrector]] = {
    "langevin": LangevinCorrector,
    "annealed_langevin": AnnealedLangevin,
    "none": NoCorrector,
}


def get_corrector(corrector: str | Corrector | None, sde: SDE, **kwargs) -> Corrector:
    """Resolve a corrector by registry name (``kwargs`` go to its constructor), instance, or None."""
    if corrector is None:
        return NoCorrector(sde)
    if isinstance(corrector, Corrector):
        return corrector
    if isinstance(corrector, str):
        cls = CORRECTORS[check_choice("corrector", corrector, tuple(CORRECTORS))]
        return cls(sde) if cls is NoCorrector else cls(sde, **kwargs)
    raise TypeError(f"corrector must be a name, a Corrector or None, got {corrector!r}")
