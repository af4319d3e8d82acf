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
import warnings

import torch
from torch import Tensor

from ._utils import TimeLike, append_dims, batch_time, check_choice, check_int, check_positive, event_numel, randn_like
from .sde import SDE, LinearSDE, ScoreFn

__all__ = ["Corrector", "LangevinCorrector", "AnnealedLangevin", "NoCorrector", "CORRECTORS", "get_corrector"]

NORMS = ("sigma", "batch", "sample")
_SAMPLE_NORM_MIN_DIM = 64


class Corrector(abc.ABC):
    """Base corrector, built with the forward SDE; ``nfe`` score evaluations per call."""

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sde!r})"


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

    def step_size(self, grad: Tensor, z: Tensor, t: Tensor, alpha: Tensor) -> Tensor:
        r"""Per-sample step $\varepsilon = 2\alpha(\mathrm{snr}\cdot\rho)^2$, ``[B]``, $\rho$ per ``norm``."""
        if self.norm == "sigma":
            ratio = self.sde.std(t)
        else:
            g = grad.reshape(grad.shape[0], -1).norm(dim=1)
            n = z.reshape(z.shape[0], -1).norm(dim=1)
            ratio = n.mean() / g.mean() if self.norm == "batch" else n / g
            ratio = ratio.expand(grad.shape[0])
        return 2 * alpha * (self.snr * ratio) ** 2

    def step(self, x, t, score_fn, generator=None, t_next=None):
        sde: LinearSDE = self.sde
        t = batch_time(t, x)
        if t_next is None:
            alpha = torch.ones_like(t)
        else:
            alpha = (2 * (sde.log_mean_coeff(t) - sde.log_mean_coeff(batch_time(t_next, x)))).exp()
        if self.norm == "sample" and event_numel(x) < _SAMPLE_NORM_MIN_DIM:
            warnings.warn(
                f"norm='sample' with {event_numel(x)} entries per sample: the per-sample norm ratio is heavy-tailed "
                f"below {_SAMPLE_NORM_MIN_DIM} entries (infinite mean in d=1); use norm='sigma'",
                stacklevel=2,
            )
        x_mean = x
        for _ in range(self.n_steps):
            grad = score_fn(x, t)
            z = randn_like(x, generator)
            eps = append_dims(self.step_size(grad, z, t, alpha), x.ndim)
            x_mean = x + eps * grad
            x = x_mean + (2 * eps).sqrt() * z
        return x, x_mean


class AnnealedLangevin(LangevinCorrector):
    """Annealed Langevin dynamics (Song & Ermon 2019, Alg. 1; score_sde's name): the σ-rule step."""

    def __init__(self, sde: SDE, snr: float = 0.16, n_steps: int = 1) -> None:
        super().__init__(sde, snr=snr, n_steps=n_steps, norm="sigma")


class NoCorrector(Corrector):
    """Identity corrector."""

    nfe = 0

    def step(self, x, t, score_fn, generator=None, t_next=None):
        return x, x


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
