r"""Adaptive Dormand–Prince 5(4) on device (Hairer, Nørsett & Wanner, *Solving ODEs I*, II.4–5).

Written here rather than taken from torchdiffeq because its dopri5 interpolates at the end time and carries
per-step overhead (DESIGN.md: 2.5–6× slower and 15× less accurate than scipy's RK45 on the exact-score VP
flow). This one reproduces scipy's RK45 — same tableau, error norm, initial step and step control, so the
same steps and NFE — lands exactly on the end time, keeps the state on device with stage buffers allocated
once and fused in-place stage sums, and moves one scalar (the error norm) to the host per step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .fused import time_dtype
from .runge_kutta import DOPRI5, DOPRI5_ERROR, FlowTerm, Term, combine_
from .step_control import StepController

__all__ = ["dopri5_solve"]

_CONTROLLER = StepController(safety=0.9, exponent=1 / 5, max_factor=10.0, min_factor=0.2)
"""scipy's RK45 controller: 0.9 err^(-1/5) clipped to [0.2, 10]."""


def _rms(x: Tensor) -> float:
    """RMS accumulated in at least float32 (a float16 norm overflows at 65504)."""
    return float(torch.linalg.vector_norm(x, dtype=time_dtype(x.dtype))) / math.sqrt(x.numel())


def _initial_step(term: Term, t0: float, y0: Tensor, f0: Tensor, direction: float, rtol, atol, order: int) -> float:
    """Hairer's starting step (Solving ODEs I, II.4), as scipy's ``select_initial_step``; costs one NFE."""
    scale = y0.abs().to(time_dtype(y0.dtype)).mul_(rtol).add_(atol)
    d0, d1 = _rms(y0 / scale), _rms(f0 / scale)
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    f1 = term(t0 + direction * h0, y0 + direction * h0 * f0)
    d2 = _rms((f1 - f0) / scale) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1 / (order + 1))
    return min(100 * h0, h1)


class _Evaluator:
    """``term`` at host times: coefficients tabulated for all of a step's stage times at once (one float64
    evaluation per step, not per stage), and the score's ``[B]`` time."""

    def __init__(self, term: Term, like: Tensor) -> None:
        self.term, self.like = term, like
        coeffs = term.coefficients(torch.linspace(0.0, 1.0, 5, dtype=torch.float64))
        self.linear = not coeffs or bool(coeffs[0].ne(0).any())  # VE's p = 0: one pass saved per evaluation

    def table(self, times: list[float]) -> list[tuple[float, ...]]:
        """Coefficients at each of ``times`` (one host copy); a `FlowTerm`'s last entry flags the data prediction
        (α(t) = 0, `FlowTerm.singular`)."""
        t = torch.tensor(times, dtype=torch.float64)
        coeffs = self.term.coefficients(t)
        if isinstance(self.term, FlowTerm):
            coeffs = (*coeffs, self.term.singular(t))  # host tensors: no device synchronisation
        return list(zip(*(c.tolist() for c in coeffs), strict=True)) if coeffs else [()] * len(times)

    def into_(self, out: Tensor, y: Tensor, t: float, coeffs: tuple[float, ...]) -> Tensor:
        tb = torch.full((y.shape[0],), t, device=y.device, dtype=time_dtype(y.dtype))
        if isinstance(self.term, FlowTerm):
            *coeffs, data = coeffs
            return self.term.into_(out, y, tb, *coeffs, linear=self.linear or data, data=data)
        return self.term.into_(out, y, tb, *coeffs, linear=self.linear)


def dopri5_solve(
    term: Term,
    y0: Tensor,
    t0: float,
    t1: float,
    *,
    rtol: float,
    atol: float,
    max_steps: int = 100_000,
) -> tuple[Tensor, int, int]:
    """Adaptive Dormand–Prince 5(4) from ``t0`` to ``t1`` (either direction), landing exactly on ``t1``.

    Error norm and controller as scipy's RK45: RMS of ``err / (atol + rtol max(|y|, |y_new|))``, step factor
    ``0.9 err^{-1/5}`` clipped to [0.2, 10], and at most 1 for a step accepted right after a rejection.

    Returns:
        ``(y(t1), nfe, accepted_steps)``.
    """
    ev = _Evaluator(term, y0)
    direction = 1.0 if t1 >= t0 else -1.0
    ks = [torch.empty_like(y0) for _ in range(7)]
    y, y_new, ystage = y0.clone(), torch.empty_like(y0), torch.empty_like(y0)
    # error control in float32 at least: a half-precision scale atol + rtol|y| loses atol, and its norm overflows
    err, scale, absbuf = (torch.empty_like(y0, dtype=time_dtype(y0.dtype)) for _ in range(3))
    f = ev.into_(ks[0], y, t0, ev.table([t0])[0])
    ks[0] = f
    nfe = 2
    h = _initial_step(term, t0, y, f, direction, rtol, atol, order=4)
    t, n_accepted, rejected = t0, 0, False
    for _ in range(max_steps):
        if direction * (t1 - t) <= 0:
            return y, nfe, n_accepted
        h = min(h, abs(t1 - t))
        last = h >= abs(t1 - t) * (1 - 1e-12)
        hs = direction * (abs(t1 - t) if last else h)
        times = [t + c * hs for c in DOPRI5.c[1:]] + [t1 if last else t + hs]
        coeffs = ev.table(times)
        for j in range(1, 6):
            yj = combine_(ystage, y, hs, DOPRI5.a[j], ks[:j])
            ks[j] = ev.into_(ks[j], yj, times[j - 1], coeffs[j - 1])
        combine_(y_new, y, hs, DOPRI5.b, ks[:6])
        ks[6] = ev.into_(ks[6], y_new, times[5], coeffs[5])
        nfe += 6
        combine_(err, torch.mul(ks[0], hs * DOPRI5_ERROR[0], out=err), hs, DOPRI5_ERROR[1:], ks[1:])
        torch.maximum(scale.copy_(y).abs_(), absbuf.copy_(y_new).abs_(), out=scale).mul_(rtol).add_(atol)
        err_norm = _rms(err.div_(scale))  # the one host transfer per step: step-size control
        if not math.isfinite(err_norm):
            raise FloatingPointError(f"non-finite state in dopri5 at t={t!r} (step {hs!r})")
        factor = _CONTROLLER.factor(err_norm)
        if err_norm <= 1.0:
            t = t1 if last else t + hs
            y, y_new = y_new, y
            ks[0], ks[6] = ks[6], ks[0]
            n_accepted += 1
            h = abs(hs) * (min(1.0, factor) if rejected else factor)  # no growth right after a rejection
            rejected = False
        else:
            h = abs(hs) * factor
            rejected = True
    raise RuntimeError(
        f"dopri5 did not reach t1={t1!r} within max_steps={max_steps}: stopped at t={t!r} with step size {h:.3g}; "
        "loosen rtol/atol or check the score for stiffness"
    )
