r"""The correctors wing: MCMC steps at a fixed time toward $p_t$, one family per module, one registry.

- `base`: the `Corrector` base (the one step protocol, shared with the predictors), the loop's default kernel,
  `NoCorrector`;
- `langevin`: unadjusted Langevin with the σ-, batch- or sample-norm step (score_sde's corrector), fused;
- `grid_langevin`: Langevin with a step tied to the grid spacing (PC sampling then converges);
- `mala`: Metropolis-adjusted Langevin (exactly invariant).

A corrector of your own subclasses `Corrector`, gives ``step(x, t, t_next, score_fn, *, noise)`` drawing with
``noise.normal(x, j)``, and is registered by ``CORRECTORS["name"] = MyCorrector`` (optional: instances work too).
"""

from __future__ import annotations

from .._utils import check_choice
from ..sde import SDE
from .base import Corrector, NoCorrector, StepKernel
from .grid_langevin import GridLangevin
from .langevin import NORMS, AnnealedLangevin, LangevinCorrector, LangevinKernel, StateFreeLangevin, sigma_rule_step
from .mala import AcceptanceLog, MALACorrector

__all__ = [
    "Corrector",
    "StepKernel",
    "LangevinCorrector",
    "LangevinKernel",
    "AnnealedLangevin",
    "NoCorrector",
    "StateFreeLangevin",
    "GridLangevin",
    "MALACorrector",
    "AcceptanceLog",
    "NORMS",
    "CORRECTORS",
    "get_corrector",
    "sigma_rule_step",
]

CORRECTORS: dict[str, type[Corrector]] = {
    "langevin": LangevinCorrector,
    "annealed_langevin": AnnealedLangevin,
    "none": NoCorrector,
    "grid_langevin": GridLangevin,
}
"""The correctors by name (configs, the CLI's ``--corrector``); MALA is not registered: no name can supply its
log-density."""


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
