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
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from ._utils import (
    TimeLike,
    append_dims,
    batch_time,
    check_choice,
    check_int,
    check_positive,
    event_numel,
    flat_sum,
    randn_like,
)
from .sde import SDE, LinearSDE, ScoreFn
from .solvers.fused import Coefficient, Kernel, RunSpec, TimeTable, axpy_, coefficient_table
from .solvers.loop import maybe_compile

__all__ = [
    "Corrector",
    "LangevinCorrector",
    "AnnealedLangevin",
    "NoCorrector",
    "CORRECTORS",
    "get_corrector",
    "sigma_rule_step",
    "GridLangevin",
    "MALACorrector",
    "AcceptanceLog",
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
        return _sigma_and_factor(self.sde, t, t_next)

    def step_size(self, grad: Tensor, z: Tensor, t: Tensor, alpha: Tensor) -> Tensor:
        r"""Per-sample step $\varepsilon = 2\alpha(\mathrm{snr}\cdot\rho)^2$, ``[B]``, $\rho$ per ``norm``."""
        eps = self._step_size(grad, z, self.sde.std(t), alpha)
        return eps.expand(grad.shape[0])

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

    def _step_size(self, grad: Tensor, z: Tensor, sigma: Coefficient, alpha: Coefficient) -> Coefficient:
        r"""`step_size` from $\sigma(t)$: $c\rho^2$ of `_step_factors`."""
        rho, c = self._step_factors(grad, z, sigma, alpha)
        return c * rho**2

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


# -- correctors whose error vanishes (issue 14) ------------------------------------------------------------------
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


def _ula_proposal(x: Tensor, grad: Tensor, eps: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
    r"""One unadjusted Langevin move out of place (`ula_`), ``(x', mean)``; ``eps`` ``[B]``."""
    out = x.clone()
    mean = ula_(out, grad, z, eps.sqrt(), mean=True)
    return out, mean


class _StateFreeLangevin(Corrector):
    """Langevin correctors whose step depends on ``(t, t_next)`` only (subclasses give `step_size`)."""

    def __init__(self, sde: SDE, snr: float, n_steps: int) -> None:
        super().__init__(sde)
        if not isinstance(sde, LinearSDE):
            raise TypeError(f"{type(self).__name__} needs a LinearSDE (sigma(t), alpha(t)), got {sde!r}")
        self.snr = check_positive("snr", snr, strict=False)
        self.n_steps = check_int("n_steps", n_steps, minimum=1)

    @abc.abstractmethod
    def step_size(self, t: Tensor, t_next: Tensor | None) -> Tensor:
        """Step ``[B]`` at times ``t`` ``[B]`` (``t_next`` the predictor's next times, or None)."""

    def _time_and_step(self, x: Tensor, t: TimeLike, t_next: TimeLike | None) -> tuple[Tensor, Tensor]:
        """``t`` as ``[B]`` and the step ``[B]``."""
        t = batch_time(t, x)
        return t, self.step_size(t, None if t_next is None else batch_time(t_next, x))


class GridLangevin(_StateFreeLangevin):
    r"""Unadjusted Langevin with a step tied to the grid spacing, so that PC sampling converges (weak order 1).

    $\varepsilon_i = 2\alpha\,\mathrm{snr}^2\sigma(t_i)^2\cdot\min(1, N_{\rm ref}|t_i - t_{i+1}|/T)$: the σ-rule on
    grids up to $N_{\rm ref}$ uniform steps (default ``sde.N``, score_sde's 1000), shrinking in proportion to the
    spacing on finer ones (never larger than the σ-rule: unadjusted Langevin on $\mathcal N(\mu, v)$ is unstable
    for $\varepsilon \ge 2v$). The corrector then adds Langevin dynamics at the finite rate
    $\lambda(t) = 2\mathrm{snr}^2\sigma^2N_{\rm ref}/T$ to the reverse SDE, which keeps every marginal $p_t$ in
    continuous time (Karras et al. 2022, eq. 6, with $\beta(t)\sigma(t)^2 = \lambda(t)$): the PC chain is a
    consistent splitting of that SDE, with weak error O(h). With a fixed snr instead, $\lambda = \varepsilon/h \to
    \infty$ and the unadjusted chain's stationary bias $V = v/(1-\varepsilon/2v)$ is reached at every level.

    Args:
        sde: a `LinearSDE`.
        snr: the σ-rule's snr (applied as is on grids of at most ``ref_steps`` steps).
        n_steps: Langevin steps per call.
        ref_steps: $N_{\rm ref}$ (default ``sde.N``).
    """

    weak_order = 1.0  # of PC sampling with a first-order predictor (measured: `corrector_bias.grid_rule_study`)

    def __init__(self, sde: SDE, snr: float = 0.16, n_steps: int = 1, ref_steps: int | None = None) -> None:
        super().__init__(sde, snr, n_steps)
        self.ref_steps = check_int("ref_steps", sde.N if ref_steps is None else ref_steps, minimum=1)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.sde!r}, snr={self.snr}, n_steps={self.n_steps}, ref_steps={self.ref_steps})"
        )

    def step_size(self, t: Tensor, t_next: Tensor | None) -> Tensor:
        if t_next is None:
            raise ValueError("GridLangevin needs t_next (its step is proportional to |t - t_next|); got t_next=None")
        shrink = (self.ref_steps * (t - t_next).abs() / self.sde.T).clamp(max=1.0)
        return sigma_rule_step(self.sde, self.snr, t, t_next) * shrink

    def step(self, x, t, score_fn, generator=None, t_next=None):
        tb, eps = self._time_and_step(x, t, t_next)
        x_mean = x
        for _ in range(self.n_steps):
            x, x_mean = _ula_proposal(x, score_fn(x, tb), eps, randn_like(x, generator))
        return x, x_mean


class AcceptanceLog:
    """MALA acceptance, recorded per corrector call without host syncs: the time and the mean acceptance probability.

    Pass one to `MALACorrector(..., acceptance=log)`; read it after sampling with `as_arrays`.
    """

    def __init__(self) -> None:
        self._times: list[Tensor] = []
        self._rates: list[Tensor] = []

    def record(self, t: Tensor, accept_prob: Tensor) -> None:
        """Append the batch means of ``t`` ``[B]`` and of the acceptance probabilities ``[B]``."""
        self._times.append(t.detach().mean())
        self._rates.append(accept_prob.detach().mean())

    def __len__(self) -> int:
        return len(self._rates)

    def as_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(times, rates)``, each ``[calls × n_steps]`` float64 (one host copy)."""
        if not self._rates:
            return np.zeros(0), np.zeros(0)
        return (torch.stack(self._times).double().cpu().numpy(), torch.stack(self._rates).double().cpu().numpy())


class MALACorrector(_StateFreeLangevin):
    r"""Metropolis-adjusted Langevin corrector (Roberts & Tweedie 1996; Besag 1994): leaves $p_t$ exactly invariant.

    Proposal $y = x + \varepsilon\nabla\log p_t(x) + \sqrt{2\varepsilon}z$ with the σ-rule step
    $\varepsilon = 2\alpha\,\mathrm{snr}^2\sigma(t)^2$ (`sigma_rule_step`: state- and batch-independent, as the
    Metropolis–Hastings ratio requires), accepted with probability $\min(1, r)$,
    $\log r = \log p_t(y) - \log p_t(x) - \tfrac{\|x - y - \varepsilon\nabla\log p_t(y)\|^2 -
    \|y - x - \varepsilon\nabla\log p_t(x)\|^2}{4\varepsilon}$, per sample. The score at an accepted point is
    reused, so ``n_steps`` steps cost ``n_steps + 1`` score and ``n_steps + 1`` log-density evaluations.

    Args:
        sde: a `LinearSDE`.
        log_prob_fn: ``log_prob_fn(x, t) -> [B]``, the log-density of $p_t$ up to a constant in x (e.g.
            `Gaussian.log_prob_fn`, an energy-based model); its gradient must be the ``score_fn`` used.
        snr: signal-to-noise ratio of the σ-rule.
        n_steps: Metropolis–Hastings steps per call.
        acceptance: optional `AcceptanceLog` recording each step's mean acceptance probability.
    """

    def __init__(
        self,
        sde: SDE,
        log_prob_fn: Callable[[Tensor, Tensor], Tensor],
        snr: float = 0.16,
        n_steps: int = 1,
        acceptance: AcceptanceLog | None = None,
    ) -> None:
        super().__init__(sde, check_positive("snr", snr), n_steps)  # snr > 0: the acceptance ratio divides by ε
        if not callable(log_prob_fn):
            raise TypeError(
                f"MALACorrector needs a callable log_prob_fn(x, t) -> [B] (e.g. data.log_prob_fn(sde)), got {log_prob_fn!r}"
            )
        if acceptance is not None and not isinstance(acceptance, AcceptanceLog):
            raise TypeError(f"acceptance must be an AcceptanceLog or None, got {acceptance!r}")
        self.log_prob_fn = log_prob_fn
        self.acceptance = acceptance
        self.nfe = self.n_steps + 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sde!r}, snr={self.snr}, n_steps={self.n_steps})"

    def step_size(self, t: Tensor, t_next: Tensor | None) -> Tensor:
        return sigma_rule_step(self.sde, self.snr, t, t_next)

    def step(self, x, t, score_fn, generator=None, t_next=None):
        tb, eps = self._time_and_step(x, t, t_next)
        grad, logp = score_fn(x, tb), self.log_prob_fn(x, tb)
        x_mean = x
        for _ in range(self.n_steps):
            y, y_mean = _ula_proposal(x, grad, eps, randn_like(x, generator))
            grad_y, logp_y = score_fn(y, tb), self.log_prob_fn(y, tb)
            forward = flat_sum((y - y_mean) ** 2)
            backward = flat_sum((x - y - append_dims(eps, x.ndim) * grad_y) ** 2)
            log_r = logp_y - logp + (forward - backward) / (4 * eps)
            u = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
            accept = u.log() < log_r
            if self.acceptance is not None:
                self.acceptance.record(tb, log_r.clamp(max=0).exp())
            keep = append_dims(accept, x.ndim)
            x, x_mean, grad = torch.where(keep, y, x), torch.where(keep, y_mean, x), torch.where(keep, grad_y, grad)
            logp = torch.where(accept, logp_y, logp)
        return x, x_mean


CORRECTORS["grid_langevin"] = GridLangevin  # MALA is not registered: no name can supply its log-density
