r"""Metropolis-adjusted Langevin corrector: the Langevin move accepted or rejected so that $p_t$ stays invariant."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .._utils import append_dims, check_positive, flat_sum
from ..sde import SDE
from .langevin import StateFreeLangevin, sigma_rule_step, ula_proposal

__all__ = ["MALACorrector", "AcceptanceLog"]


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


class MALACorrector(StateFreeLangevin):
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
        self.log_prob_fn = _checked_log_prob(log_prob_fn)
        self.acceptance = acceptance
        self.nfe = self.n_steps + 1

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sde!r}, snr={self.snr}, n_steps={self.n_steps})"

    def step_size(self, t: Tensor, t_next: Tensor | None) -> Tensor:
        return sigma_rule_step(self.sde, self.snr, t, t_next)

    def step(self, x, t, t_next, score_fn, *, noise):
        tb, eps = self.time_and_step(x, t, t_next)
        grad, logp = score_fn(x, tb), self.log_prob_fn(x, tb)
        x_mean = x
        for j in range(self.n_steps):
            y, y_mean = ula_proposal(x, grad, eps, noise.normal(x, j))
            grad_y, logp_y = score_fn(y, tb), self.log_prob_fn(y, tb)
            forward = flat_sum((y - y_mean) ** 2)
            backward = flat_sum((x - y - append_dims(eps, x.ndim) * grad_y) ** 2)
            log_r = logp_y - logp + (forward - backward) / (4 * eps)
            accept = noise.uniform(log_r, j).log() < log_r
            if self.acceptance is not None:
                self.acceptance.record(tb, log_r.clamp(max=0).exp())
            keep = append_dims(accept, x.ndim)
            x, x_mean, grad = torch.where(keep, y, x), torch.where(keep, y_mean, x), torch.where(keep, grad_y, grad)
            logp = torch.where(accept, logp_y, logp)
        return x, x_mean


def _checked_log_prob(log_prob_fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Tensor, Tensor], Tensor]:
    """``log_prob_fn`` checked on every call to return a ``[B]`` tensor (a float or a ``[B, 1]`` would broadcast into
    the acceptance ratio) and on its first call to be finite (a NaN log-density rejects every proposal silently)."""
    checked = False

    def call(x: Tensor, t: Tensor) -> Tensor:
        nonlocal checked
        logp = log_prob_fn(x, t)
        if not isinstance(logp, Tensor) or logp.shape != x.shape[:1]:
            got = tuple(logp.shape) if isinstance(logp, Tensor) else type(logp).__name__
            raise ValueError(f"MALACorrector's log_prob_fn must return a tensor of shape [B]=[{x.shape[0]}], got {got}")
        if not checked:
            if not bool(torch.isfinite(logp).all()):  # one host sync, on the first call only
                raise FloatingPointError("MALACorrector's log_prob_fn returned non-finite values (NaN or inf)")
            checked = True
        return logp

    return call
