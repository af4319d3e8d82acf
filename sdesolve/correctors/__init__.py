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

import inspect

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
    """Resolve a corrector by registry name, instance, or None.

    ``kwargs`` (e.g. ``snr``, ``n_steps``) go to a named corrector's constructor; one whose value is None is left to
    the constructor's default, and one the constructor does not take is a ``ValueError`` (``"none"`` takes nothing
    and ignores them).
    """
    if corrector is None:
        return NoCorrector(sde)
    if isinstance(corrector, Corrector):
        return corrector
    if not isinstance(corrector, str):
        raise TypeError(f"corrector must be a name, a Corrector or None, got {corrector!r}")
    cls = CORRECTORS[check_choice("corrector", corrector, tuple(CORRECTORS))]
    if cls is NoCorrector:
        return NoCorrector(sde)
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    given = {k: v for k, v in kwargs.items() if v is not None}
    for name in given:
        if name not in params and not takes_any:
            raise ValueError(f"{name}= does not apply to corrector {corrector!r} ({cls.__name__} takes no {name})")
    return cls(sde, **given)
