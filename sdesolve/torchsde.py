r"""Bridge to torchsde: our SDEs as torchsde modules, so both libraries can run on one Brownian path.

torchsde (Li et al. 2020) integrates Itô SDEs $\mathrm dy = f(s, y)\,\mathrm ds + g(s, y)\,\mathrm dW_s$ in
increasing time on states ``[B, d]``. The forward SDE maps over directly. The reverse SDE (Song et al. 2021,
eq. 6) runs in reversed time $s = T - t$, $y(s) = x(T - s)$:
$\mathrm dy = -[f - g^2\nabla\log p_{T-s}](y, T - s)\,\mathrm ds + g(T - s)\,\mathrm dW_s$ — the same path that
`pc_sample(..., brownian=bm)` reads in the same reversed time. Diffusions depend on t only, so the noise is
diagonal (and additive).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._utils import check_int, check_like, check_sample
from .sde import SDE, ScoreFn

__all__ = ["TorchsdeSDE", "to_torchsde"]


class TorchsdeSDE(torch.nn.Module):
    """A torchsde-compatible module (``f``, ``g``, ``noise_type="diagonal"``, ``sde_type="ito"``).

    Args:
        sde: the forward SDE.
        score_fn: ``None`` for the forward SDE; a score function for the reverse SDE in reversed time.
        event_shape: the event shape that flattened states ``[B, d]`` are viewed as before calling ``sde`` and
            ``score_fn`` (default: ``(d,)``).
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, sde: SDE, score_fn: ScoreFn | None = None, event_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be an sdesolve SDE, got {sde!r}")
        if score_fn is not None and not callable(score_fn):
            raise TypeError(f"score_fn must be callable or None, got {score_fn!r}")
        self.sde = sde
        self.reverse = score_fn is not None
        self._drift = sde.reverse(_shape_checked(score_fn)).drift if self.reverse else sde.drift
        if event_shape is not None and (isinstance(event_shape, (str, Tensor)) or not hasattr(event_shape, "__iter__")):
            raise TypeError(f"event_shape must be a sequence of ints or None, got {event_shape!r}")
        self.event_shape = None if event_shape is None else tuple(check_int("event_shape", s) for s in event_shape)

    def _time(self, s: Tensor) -> Tensor:
        return self.sde.T - s if self.reverse else s

    def _view(self, y: Tensor) -> Tensor:
        check_sample("y", y)
        if y.ndim != 2:
            raise ValueError(f"torchsde states must have shape [B, d], got {tuple(y.shape)}")
        if self.event_shape is None:
            return y
        if math.prod(self.event_shape) != y.shape[1]:
            raise ValueError(f"event_shape {self.event_shape} does not hold d={y.shape[1]} entries per state")
        return y.reshape(y.shape[0], *self.event_shape)

    def f(self, s: Tensor, y: Tensor) -> Tensor:
        """Drift in torchsde's time, ``[B, d]``."""
        x = self._view(y)
        t = torch.as_tensor(self._time(s), dtype=y.dtype, device=y.device)
        drift = self._drift(x, t).reshape(y.shape)
        return -drift if self.reverse else drift

    def g(self, s: Tensor, y: Tensor) -> Tensor:
        """Diagonal diffusion in torchsde's time, ``[B, d]`` (g depends on t only)."""
        t = torch.as_tensor(self._time(s), dtype=y.dtype, device=y.device)
        return self.sde.diffusion(t).to(y).expand_as(y)


def _shape_checked(score_fn: ScoreFn) -> ScoreFn:
    """``score_fn`` whose output must match x's shape, dtype and device (else the drift would broadcast it)."""

    def checked(x: Tensor, t: Tensor) -> Tensor:
        return check_like("score_fn", score_fn(x, t), x)

    return checked


def to_torchsde(sde: SDE, score_fn: ScoreFn | None = None, event_shape: Sequence[int] | None = None) -> TorchsdeSDE:
    r"""The forward SDE (``score_fn=None``) or the reverse SDE in reversed time $s = T - t$ as a torchsde module.

    Example: the reverse SDE from ``T`` to ``eps`` on a Brownian path shared with `pc_sample`::

        bm = torchsde.BrownianInterval(0.0, sde.T - eps, size=(B, d), entropy=0)
        ys = torchsde.sdeint(to_torchsde(sde, score_fn), x_T, torch.tensor([0.0, sde.T - eps]), bm=bm,
                             method="euler", dt=(sde.T - eps) / N)
        xs = pc_sample(sde, score_fn, (B, d), predictor="euler_maruyama", corrector=None, steps=N,
                       eps=eps, x_init=x_T, denoise=False, brownian=bm)   # == ys[-1]

    Args:
        sde: the forward SDE.
        score_fn: score function of the reverse SDE, or None for the forward SDE.
        event_shape: shape each flattened state ``[B, d]`` is viewed as (default ``(d,)``).

    Returns:
        A `TorchsdeSDE` (a ``torch.nn.Module``) for ``torchsde.sdeint``.
    """
    return TorchsdeSDE(sde, score_fn, event_shape)
