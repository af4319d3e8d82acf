r"""Few-step solvers as step programs: linear forms in the state and the data predictions, run by one kernel.

Every deterministic few-step solver here (DDIM, DPM-Solver(++), UniPC, iPNDM, EDM's Heun) computes, on each
grid interval, stage states and the new state as linear combinations of the interval's start state $x$ and
data predictions $D_j = (y_j + \sigma_j^2\,\nabla\log p_{t_j}(y_j))/\alpha_j$ evaluated earlier (Tweedie's
formula; the current interval's stages and the multistep history alike). A solver is therefore written once,
in float64 on the host, as arithmetic on `Form` objects (its formulas read as in the papers), producing an
`IntervalProgram` per interval; `ProgramKernel` runs the programs with in-place axpy updates and a ring of
$D$ buffers (the multistep history, held as explicit kernel state). Coefficients are computed per grid once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..sde import LinearSDE, ScoreFn, data_prediction
from .fused import Kernel, TimeTable, axpy_, time_dtype
from .noise import PREDICTOR, NoiseSource

__all__ = [
    "no_data_prediction",
    "check_data_end",
    "Point",
    "Form",
    "Schedule",
    "NOISE",
    "IntervalProgram",
    "ProgramBuilder",
    "ProgramKernel",
]

NOISE = "noise"
"""Stage marker: a standard-normal draw from the run's noise source into the bank (stochastic samplers)."""


def no_data_prediction(t: float) -> str:
    """The error for a score without ``data_prediction`` asked for D where α(t) = 0."""
    return (
        f"alpha(t) = 0 at t={t:.6g}: there the score (-x/sigma^2) does not determine the data prediction "
        "D = E[x0 | x_t] the first step needs; pass a model that predicts it (score_from_velocity, score_from_x0, "
        "score_from_denoiser, or an exact oracle's score_fn, which carry score_fn.data_prediction)"
    )


def check_data_end(sde: LinearSDE, times: TimeTable, method: str, allowed: tuple[str, ...]) -> None:
    """A ``ValueError`` if the grid ends where σ = 0 (the data: flow models' ``t = 0``) and ``method`` cannot take that
    last step (only those in ``allowed`` return the data prediction there, in the limit)."""
    if (
        times.values[-1] == 0.0
        and float(sde.std(torch.tensor(0.0, dtype=torch.float64))) == 0
        and method not in allowed
    ):
        raise ValueError(
            f"the grid ends at t=0 where sigma = 0: {method} cannot step there (its formulas evaluate or divide by "
            f"sigma at the end); end the grid at eps > 0, or use {' or '.join(allowed) or 'another method'}"
        )


@dataclass(frozen=True)
class Point:
    r"""A time of the flow with its coefficients, read off the SDE: $\alpha(t)$, $\sigma(t)$, the half log-SNR
    $\lambda(t)$ and the noise level $\tilde\sigma(t) = e^{-\lambda}$.

    Floats (float64) on a grid's programs; per-sample tensors broadcasting against the state in the adaptive
    solver (`sdesolve.solvers.dpm_solver_adaptive`), where ``t`` is the score's ``[B]`` time.
    """

    t: float | Tensor
    alpha: float | Tensor
    sigma: float | Tensor
    lam: float | Tensor
    level: float | Tensor


@dataclass
class Form:
    r"""A linear form $a\,x + \sum_j b_j D_j$: ``x`` the interval's start state, ``d`` maps $D$ indices to $b_j$."""

    x: float = 0.0
    d: dict[int, float] = field(default_factory=dict)

    def __add__(self, other: Form) -> Form:
        d = dict(self.d)
        for k, v in other.d.items():
            d[k] = d.get(k, 0.0) + v
        return Form(self.x + other.x, d)

    def __mul__(self, c: float) -> Form:
        return Form(self.x * c, {k: v * c for k, v in self.d.items()})

    __rmul__ = __mul__

    def __neg__(self) -> Form:
        return self * -1.0

    def __sub__(self, other: Form) -> Form:
        return self + (-other)

    def __truediv__(self, c: float) -> Form:
        return self * (1.0 / c)

    def is_state(self) -> bool:
        """True when the form is exactly $x$ (the stage evaluates at the start state, no copy needed)."""
        return self.x == 1.0 and not any(self.d.values())


class Schedule:
    """The SDE's $\\alpha$, $\\sigma$ at the grid points (float64) and at stage times given by $\\lambda$.

    Args:
        sde: the linear SDE.
        times: the run's grid.
    """

    def __init__(self, sde: LinearSDE, times: TimeTable) -> None:
        self.sde = sde
        self.points = self._points(times.host)
        self._lo, self._hi = float(times.host.min()), float(times.host.max())

    def _points(self, t: Tensor) -> list[Point]:
        t = t.to(torch.float64)
        sde = self.sde
        columns = (t, sde.mean_coeff(t), sde.std(t), sde.marginal_lambda(t), sde.noise_level(t))
        return [Point(*row) for row in zip(*(c.tolist() for c in columns), strict=True)]

    def at_times(self, times: list[float]) -> list[Point]:
        """The points at ``times`` (float64 coefficients from the SDE)."""
        return self._points(torch.tensor(times, dtype=torch.float64))

    def at_lambdas(self, lams: list[float]) -> list[Point]:
        r"""The points whose $\lambda$'s are ``lams`` (`LinearSDE.inverse_lambda`, within the grid's time range);
        their coefficients are those of the times found, consistent with the score calls."""
        t = self.sde.inverse_lambda(torch.tensor(lams, dtype=torch.float64))
        return self._points(t.clamp(self._lo, self._hi))

    def fractions(self, r: float) -> list[Point]:
        r"""Per interval, the stage point at $(1 - r)\lambda_i + r\lambda_{i+1}$ (single-step solvers' intermediate times;
        an interval from $\lambda = -\infty$ keeps its stage there)."""
        pts = self.points
        return self.at_lambdas([(1 - r) * p.lam + r * q.lam for p, q in zip(pts[:-1], pts[1:], strict=True)])


@dataclass
class IntervalProgram:
    """One interval: ``stages`` in order, then the new state ``update``.

    A stage ``(point, form)`` stores $D$ at the state ``form`` and time ``point`` in the next bank slot; a stage
    ``(None, form)`` stores the combination ``form`` itself (history that depends on the state, e.g. iPNDM's
    derivatives), with no score evaluation; ``(NOISE, _)`` stores a standard-normal draw.
    """

    stages: list[tuple[Point | str | None, Form]]
    update: Form

    @property
    def nfe(self) -> int:
        """Score evaluations of the interval."""
        return sum(isinstance(point, Point) for point, _ in self.stages)


class ProgramBuilder:
    """Records the programs of a run: `evaluate` appends a stage and returns its $D$ as a form.

    Attributes:
        state: the form of the current interval's start state, $x$.
    """

    state = Form(1.0)

    def __init__(self) -> None:
        self.programs: list[IntervalProgram] = []
        self._stages: list[tuple[Point | str | None, Form]] = []
        self._count = 0

    def evaluate(self, point: Point, at: Form) -> Form:
        """Evaluate $D$ at the state ``at`` and time ``point``; return the form of that $D$."""
        return self._store(point, at)

    def save(self, form: Form) -> Form:
        """Store the combination ``form`` as a bank vector (kept across intervals); return its form."""
        return self._store(None, form)

    def noise(self) -> Form:
        """Draw a standard normal (shaped like the state) from the run's noise source; return its form."""
        return self._store(NOISE, Form())

    def _store(self, point: Point | str | None, form: Form) -> Form:
        self._stages.append((point, form))
        self._count += 1
        return Form(0.0, {self._count - 1: 1.0})

    def finish(self, update: Form) -> None:
        """Close the current interval with the new state ``update``."""
        self.programs.append(IntervalProgram(self._stages, update))
        self._stages = []


def _ring_size(programs: Iterable[IntervalProgram]) -> int:
    """Fewest bank buffers so that writing entry ``g`` into slot ``g % K`` never overwrites one still referenced
    (a saved combination is written while its terms are read: one slot more)."""
    size, newest = 1, -1
    for program in programs:
        for point, form in program.stages:
            size = max(size, *(newest - k + (2 if point is None else 1) for k in form.d), 1)
            newest += 1
        size = max(size, *(newest - k + 1 for k in program.update.d), 1)
    return size


class ProgramKernel(Kernel):
    """Runs one `IntervalProgram` per grid interval in place: stage states in one buffer, $D$'s in a ring.

    Args:
        programs: one per interval of ``times``.
        score_fn: the score.
        times: the grid (stage times at grid points reuse its ``[B]`` views).
        x: the state (device, dtype and shape of the buffers).
        noise: the run's noise source (needed by programs with `NOISE` stages): the first draw of interval ``i``
            is its predictor increment, further ones the predictor stream's draws ``j = 1, 2, ...``.
    """

    def __init__(
        self,
        programs: list[IntervalProgram],
        score_fn: ScoreFn,
        times: TimeTable,
        x: Tensor,
        noise: NoiseSource | None = None,
    ) -> None:
        if len(programs) != len(times) - 1:
            raise ValueError(f"need one program per interval ({len(times) - 1}), got {len(programs)}")
        self.programs, self.score_fn, self.noise, self.times = programs, score_fn, noise, times
        if noise is None and any(p == NOISE for prog in programs for p, _ in prog.stages):
            raise ValueError("a stochastic program needs a noise source (noise=None)")
        self.total_nfe = sum(p.nfe for p in programs)
        self.nfe = max((p.nfe for p in programs), default=0)
        grid_times = dict(zip(times.values, times.batch, strict=True))
        tdt = time_dtype(x.dtype)

        def batch(t: float) -> Tensor:
            return grid_times.get(t) if t in grid_times else torch.tensor(t, dtype=tdt, device=x.device).expand(len(x))

        self.stage_times = [[batch(p.t) if isinstance(p, Point) else None for p, _ in prog.stages] for prog in programs]
        singular = [p.t for prog in programs for p, _ in prog.stages if isinstance(p, Point) and p.alpha == 0.0]
        if singular and not callable(getattr(score_fn, "data_prediction", None)):
            raise ValueError(no_data_prediction(singular[0]))
        # a half-precision state is upcast inside the step: σ² and 1/α reach ~1e6 on VE (float16 max 65504)
        self.upcast = tdt != x.dtype
        self.ring = [torch.empty_like(x, dtype=tdt) for _ in range(_ring_size(programs))]
        self.ybuf = torch.empty_like(x, dtype=tdt)
        self.xbuf = torch.empty_like(x, dtype=tdt) if self.upcast else None
        self.first = list(itertools.accumulate((len(p.stages) for p in programs[:-1]), initial=0))

    def _combine(self, out: Tensor, x: Tensor, form: Form) -> Tensor:
        """``out = form.x * x + Σ b_j D_j``; ``out`` may be ``x`` itself (then scaled in place)."""
        if out is x:
            if form.x != 1.0:
                x.mul_(form.x)
        else:
            torch.mul(x, form.x, out=out)
        for k, b in form.d.items():
            if b != 0.0:
                axpy_(out, self.ring[k % len(self.ring)], b)
        return out

    def __call__(self, x: Tensor, i: int, last: bool) -> None:
        program, g = self.programs[i], self.first[i]
        xw = self.xbuf.copy_(x) if self.upcast else x
        draws = 0
        for (point, form), t in zip(program.stages, self.stage_times[i], strict=True):
            d = self.ring[g % len(self.ring)]
            g += 1
            if point is None:
                self._combine(d, xw, form)
                continue
            if point == NOISE:
                self._draw(d, i, draws)
                draws += 1
                continue
            y = xw if form.is_state() else self._combine(self.ybuf, xw, form)
            if point.alpha == 0.0:  # α = 0: the score does not determine D; the model gives it
                d.copy_(self.score_fn.data_prediction(y.to(x.dtype) if self.upcast else y, t))
                continue
            s = self.score_fn(y.to(x.dtype) if self.upcast else y, t)
            data_prediction(y, s, point.alpha, point.sigma, out=d)
        self._combine(xw, xw, program.update)
        if self.upcast:
            x.copy_(xw)

    def calls(self, n: int) -> int:
        return self.total_nfe

    def combine(self, out: Tensor, x: Tensor, form: Form) -> Tensor:
        """``out = form.x * x + Σ b_j D_j`` over the bank of the interval just run, ``x`` its start state (a second
        update from the same stages, e.g. a denoised one)."""
        if self.upcast:
            return out.copy_(self._combine(torch.empty_like(self.xbuf), x.to(self.xbuf.dtype), form))
        return self._combine(out, x, form)

    def _draw(self, out: Tensor, i: int, j: int) -> None:
        """Draw ``j`` of interval ``i``: 0 is the predictor's increment, further ones its stream's draws."""
        t = self.times.values
        if j == 0:
            self.noise.predictor(out, i, t[i], t[i + 1])
        else:
            self.noise.draw(out, PREDICTOR, i, j, t[i])


ProgramFn = Callable[[Schedule], list[IntervalProgram]]
