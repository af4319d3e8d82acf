r"""Explicit Runge–Kutta methods (Hairer, Nørsett & Wanner, *Solving ODEs I*, II.1) and the ODE terms they step.

A term is the right-hand side $\dot y = F(t, y)$: `FlowTerm`, the probability flow of a linear SDE,
$F = p(t)\,y + q(t)\,\nabla\log p_t(y)$ with $p = f(t)$ and $q = -\tfrac12 g(t)^2$ (Song et al. 2021, eq. 13),
whose $(p, q)$ are tabulated once per grid; or `FuncTerm`, any ``func(t, y)`` (the likelihood's augmented
flow). `RungeKuttaKernel` is the fused fixed-step solver (stage buffers allocated once, stage times and
coefficients precomputed); `rk_step` the out-of-place step behind the public predictors' ``step``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._utils import TimeLike, append_dims, batch_time
from ..sde import LinearSDE, ScoreFn
from .fused import Coefficient, Kernel, TimeTable, axpy_, coefficient_table, time_dtype
from .loop import maybe_compile
from .programs import check_data_end, no_data_prediction

__all__ = [
    "Tableau",
    "EULER",
    "HEUN",
    "RK3",
    "RK4",
    "DOPRI5",
    "DOPRI5_ERROR",
    "FIXED",
    "FlowTerm",
    "FuncTerm",
    "combine_",
    "rk_step",
    "RungeKuttaKernel",
]

ODEFunc = Callable[[TimeLike, Tensor], Tensor]


@dataclass(frozen=True)
class Tableau:
    """Butcher tableau of an explicit Runge–Kutta method of classical ``order``."""

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    order: int


EULER = Tableau(c=(0.0,), a=((),), b=(1.0,), order=1)
HEUN = Tableau(c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5), order=2)
RK3 = Tableau(c=(0.0, 0.5, 1.0), a=((), (0.5,), (-1.0, 2.0)), b=(1 / 6, 2 / 3, 1 / 6), order=3)
"""Kutta's third-order method (Hairer, Nørsett & Wanner I, Table II.1.1)."""
RK4 = Tableau(
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    order=4,
)
FIXED = {"euler": EULER, "heun": HEUN, "rk4": RK4}

# Dormand–Prince 5(4) (Dormand & Prince 1980): the 5th-order weights are the last row of `a` (FSAL).
DOPRI5 = Tableau(
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    ),
    b=(35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
    order=5,
)
DOPRI5_ERROR = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)
"""$E = b_5 - b_4$ over the six stages and the FSAL evaluation at the new point."""


def combine_(out: Tensor | None, y: Tensor, h: Coefficient, coeffs: Sequence[float], ks: Sequence[Tensor]) -> Tensor:
    """``out = y + h Σ_j coeffs[j] ks[j]`` (zero coefficients skipped); ``out`` may be ``y`` itself, or None
    for a new tensor (differentiable: no ``out=`` arguments)."""
    terms = [(cj, kj) for cj, kj in zip(coeffs, ks, strict=False) if cj != 0.0]
    if out is None:
        out = y.clone()
    elif out is not y:
        if terms and not isinstance(h, Tensor):
            (c0, k0), terms = terms[0], terms[1:]
            torch.add(y, k0, alpha=h * c0, out=out)
        else:
            out.copy_(y)
    for cj, kj in terms:
        axpy_(out, kj, h * cj)
    return out


class FlowTerm:
    r"""Probability flow $\dot y = p(t)\,y + q(t)\,s(y, t)$ of a linear SDE, $p = f$, $q = -\tfrac12 g^2$.

    Where $\alpha(t) = 0$ ($t = T$ of rectified flow and cosine) $f$ and $g$ are infinite but the velocity is not:
    there the term is $\dot y = P\,y + Q\,D$ in the data prediction (`LinearSDE.velocity_coefficients`), with $D$ from
    the model (``score_fn.data_prediction``): `coefficients` gives $(P, Q)$ at those times and `singular` marks them.
    """

    def __init__(self, sde: LinearSDE, score_fn: ScoreFn) -> None:
        self.sde, self.score_fn = sde, score_fn

    def singular(self, t: Tensor) -> Tensor:
        """Where $\alpha(t) = 0$ (a bool tensor like ``t``; only T can be, `LinearSDE.singular_at_T`): the term is in
        the data prediction there."""
        return t == self.sde.T if self.sde.singular_at_T else torch.zeros_like(t, dtype=torch.bool)

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        r"""$(p, q) = (f(t), -\tfrac12 g(t)^2)$ at the times ``t`` (any shape), $(P, Q)$ where `singular`."""
        p, q = self.sde.drift_coeff(t), -0.5 * self.sde.diffusion(t) ** 2
        if self.sde.singular_at_T:
            at = self.singular(t)
            big_p, big_q = self.sde.velocity_coefficients(t)
            p, q = torch.where(at, big_p, p), torch.where(at, big_q, q)
        return p, q

    def into_(
        self,
        out: Tensor | None,
        y: Tensor,
        t: Tensor,
        p: Coefficient,
        q: Coefficient,
        linear: bool = True,
        data: bool = False,
    ) -> Tensor:
        """``out = p y + q s(y, t)`` (``out`` None: a new, differentiable tensor); ``t`` is the score's ``[B]`` time;
        ``data``: ``q`` multiplies the model's data prediction instead of the score (where α(t) = 0)."""
        if data:
            model = getattr(self.score_fn, "data_prediction", None)
            if model is None:
                raise ValueError(no_data_prediction(float(t.reshape(-1)[0])))
            s = model(y, t)
        else:
            s = self.score_fn(y, t)
        if not linear:
            return s * q if out is None else torch.mul(s, q, out=out)
        return axpy_(y * p if out is None else torch.mul(y, p, out=out), s, q)

    def __call__(self, t: TimeLike, y: Tensor) -> Tensor:
        """Out of place, for any (per-sample) ``t`` (in the data prediction for all rows if any is singular)."""
        t = batch_time(t, y)
        t64 = t.to(torch.float64)
        data = self.sde.singular_at_T and bool(self.singular(t64).any())
        coeffs = self.sde.velocity_coefficients(t64) if data else self.coefficients(t64)
        p, q = (append_dims(c.to(y.dtype), y.ndim) for c in coeffs)
        return self.into_(None, y, t, p, q, data=data)


class FuncTerm:
    """Any right-hand side ``func(t, y)`` (``t`` a ``[B]`` tensor); it allocates its own output."""

    def __init__(self, func: ODEFunc) -> None:
        self.func = func

    def coefficients(self, t: Tensor) -> tuple[()]:
        return ()

    def into_(self, out: Tensor, y: Tensor, t: Tensor, *coeffs, linear: bool = True) -> Tensor:
        return self.func(t, y)

    def __call__(self, t: TimeLike, y: Tensor) -> Tensor:
        return self.func(batch_time(t, y), y)


Term = FlowTerm | FuncTerm


def rk_step(func: ODEFunc, t, y: Tensor, h, tableau: Tableau) -> Tensor:
    """One explicit RK step of size ``h`` (scalar or per-sample ``[B]``) from ``(t, y)``, out of place."""
    hy = append_dims(h, y.ndim) if isinstance(h, Tensor) and h.ndim == 1 else h
    ks: list[Tensor] = []
    for ci, ai in zip(tableau.c, tableau.a, strict=True):
        ks.append(func(t + ci * h, combine_(None, y, hy, ai, ks)))
    return combine_(None, y, hy, tableau.b, ks)


class RungeKuttaKernel(Kernel):
    """Fixed-step explicit RK over a grid: stage times and term coefficients tabulated once, buffers reused.

    Args:
        tableau: the method.
        term: the right-hand side.
        times: the grid (any direction).
        x: the state (device, dtype, shape of the buffers).
        compile: ``torch.compile`` the step (coefficients then enter as tensors).
    """

    def __init__(self, tableau: Tableau, term: Term, times: TimeTable, x: Tensor, compile: bool = False) -> None:
        self.tableau, self.term, self.nfe = tableau, term, len(tableau.b)
        t0, h = times.host[:-1], times.host[1:] - times.host[:-1]
        stage_t = t0[:, None] + h[:, None] * torch.tensor(tableau.c, dtype=torch.float64)  # [n, stages]
        dev_t = stage_t.to(x.device, time_dtype(x.dtype))
        self.stage_times = [[v.expand(x.shape[0]) for v in row.unbind()] for row in dev_t.unbind()]
        stages = len(tableau.c)
        coeffs = term.coefficients(stage_t)
        if isinstance(term, FlowTerm) and times.values[-1] == 0.0 and tableau.c[-1] == 1.0:
            check_data_end(term.sde, times, "this Runge-Kutta method (its last stage at t_next)", ("euler",))
        self.data = [[False] * len(tableau.c) for _ in range(len(times) - 1)]  # per interval and stage: α = 0 there
        if isinstance(term, FlowTerm) and term.sde.singular_at_T:
            self.data = term.singular(stage_t).tolist()
        table = coefficient_table([h, *(c[:, j] for c in coeffs for j in range(stages))], x, compile)
        self.linear = not coeffs or any(table.nonzero[1 : 1 + stages])
        self.rows = [(r[0], _stage_rows(r[1:], stages)) for r in table.rows]
        self.ybuf = torch.empty_like(x)
        self.kbufs = [torch.empty_like(x) for _ in tableau.c]
        self._step = maybe_compile(type(self)._apply, compile)

    def _apply(self, x: Tensor, h: Coefficient, ts: list[Tensor], coeffs: list[tuple], data: list[bool]) -> None:
        ks: list[Tensor] = []
        for j, (ai, tj, cj) in enumerate(zip(self.tableau.a, ts, coeffs, strict=True)):
            yj = x if j == 0 else combine_(self.ybuf, x, h, ai, ks)
            if data[j]:
                ks.append(self.term.into_(self.kbufs[j], yj, tj, *cj, data=True))
            else:
                ks.append(self.term.into_(self.kbufs[j], yj, tj, *cj, linear=self.linear))
        combine_(x, x, h, self.tableau.b, ks)

    def __call__(self, x: Tensor, i: int, last: bool) -> None:
        h, coeffs = self.rows[i]
        self._step(self, x, h, self.stage_times[i], coeffs, self.data[i])


def _stage_rows(values: Sequence[Coefficient], stages: int) -> list[tuple]:
    """Regroup a flat ``(p_0..p_s, q_0..q_s)`` row into per-stage ``(p_j, q_j)`` (empty for a `FuncTerm`)."""
    k = len(values) // stages if stages else 0
    return [tuple(values[m * stages + j] for m in range(k)) for j in range(stages)]
