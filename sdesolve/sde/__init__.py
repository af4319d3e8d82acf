r"""The SDE wing: forward SDEs x_t = α(t)x₀ + σ(t)ε of score-based generative modelling and their reverse SDEs.

- `base`: `SDE`, `LinearSDE` (the schedule: α, σ, λ = log(α/σ), σ̃ = σ/α and their inverses, the data
  prediction), `ReverseSDE`;
- `score_sde`: score_sde's VE, VP and sub-VP SDEs;
- `interpolants`: any α and σ (`InterpolantSDE`) and the schedules of 2022–2026 models: rectified flow (flow
  matching's linear interpolant), cosine, EDM.
"""

from __future__ import annotations

from .._utils import check_choice
from .base import (
    REVERSE_DIFFUSIONS,
    SDE,
    Coefficient,
    LinearSDE,
    ReverseSDE,
    ScoreFn,
    data_prediction,
    require_linear,
    reverse_diffusion,
)
from .interpolants import EDMSDE, CosineSDE, InterpolantSDE, RectifiedFlowSDE
from .score_sde import VESDE, VPSDE, SubVPSDE

__all__ = [
    "SDE",
    "LinearSDE",
    "VESDE",
    "VPSDE",
    "SubVPSDE",
    "RectifiedFlowSDE",
    "CosineSDE",
    "EDMSDE",
    "InterpolantSDE",
    "ReverseSDE",
    "ScoreFn",
    "Coefficient",
    "SDES",
    "SCORE_SDES",
    "get_sde",
    "require_linear",
    "data_prediction",
    "REVERSE_DIFFUSIONS",
    "reverse_diffusion",
]

SDES: dict[str, type[LinearSDE]] = {
    "vp": VPSDE,
    "subvp": SubVPSDE,
    "ve": VESDE,
    "rectified_flow": RectifiedFlowSDE,
    "cosine": CosineSDE,
    "edm": EDMSDE,
}
"""The SDEs by name (the CLI's ``--sde``, the verification suite, the hypothesis strategies)."""

SCORE_SDES = ("vp", "subvp", "ve")
"""score_sde's three, the ones every predictor is defined on (`SDES` adds the schedules of flow and EDM models)."""


def get_sde(name: str, **params) -> LinearSDE:
    """Build the SDE registered as ``name`` (`SDES`: ``"vp"``, ``"subvp"``, ``"ve"``, ``"rectified_flow"``,
    ``"cosine"``, ``"edm"``) with constructor ``params``."""
    return SDES[check_choice("sde", name, tuple(SDES))](**params)
