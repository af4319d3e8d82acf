r"""Measured orders of the few-step ODE solvers (`sdesolve.solvers.ode.FEW_STEP`), for ``sdesolve verify``.

The error is pathwise: the same prior samples $x_T$ through the solver and through the exact flow map
(`Gaussian.flow`: no Monte Carlo error at all) or, for mixture data, through an adaptive Dormand–Prince solve
at rtol = atol = 1e-11 (its error, ≤ 1.3e-8 against DPM-Solver-3 at 2000 steps, is below 0.3% of the smallest
error fitted). The RMS over samples of $\lVert x - x^{\rm ref}\rVert$ is fitted against the step count on the
logSNR grid.

DPM-Solver++(3M) on Gaussian data is order 4, not 3. Its local error is $C h^4 D'''(\lambda)$, and the global
error sums it with the variational propagator, which for this linear flow is $y(\lambda_{\rm end})/y(\lambda)$,
$y = \tilde x - \mu$. Along the flow $D - \mu = z f(\lambda)$ and $y = z\,s^2/f$ with $f = s^2/\sqrt{s^2 + e^{-2\lambda}}$,
so the $h^3$ coefficient is $\propto \int f''' f\,d\lambda = [f''f - \tfrac12 f'^2]$, a boundary term that is
exponentially small at both ends. The $h^3$ of the start-up step (local $O(h^3)$, times $D''$ at $\lambda(T)$, also
small) takes over only beyond ~300 steps: local slopes 3.98, 3.99, 3.95, 3.88 from 20 to 320 VP steps. On the
ring mixture there is no such identity and it measures 3 (2.90, 3.02, 3.03 from 40 to 320).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..analytic import Gaussian, GaussianMixture
from ..grids import make_grid
from ..predictors import Predictor, Restart, get_predictor
from ..sampling import ode_sample
from ..sde import LinearSDE
from ..solvers.fused import RunSpec, TimeTable
from ..solvers.loop import run
from ..solvers.noise import NoiseSource
from ..solvers.ode import FEW_STEP

__all__ = [
    "FLOW_STEPS",
    "MIXTURE_METHODS",
    "WEAK_STEPS",
    "RESTART_INNER_RATIO",
    "flow_steps",
    "expected_flow_order",
    "flow_errors",
    "sde_weak_errors",
    "probe_law",
    "law_error",
    "affine_law_error",
    "weak_study_errors",
    "few_step_study",
    "lambda_resolution",
]

FLOW_STEPS = {
    ("gaussian", 1): (20, 40, 80, 160),
    ("gaussian", 2): (40, 80, 160, 320),
    ("gaussian", 3): (80, 160, 320, 640),
    ("gaussian", 4): (20, 40, 80, 160),
    ("mixture", 2): (80, 160, 320, 640),
    ("mixture", 3): (80, 160, 320, 640),
    ("gaussian", "unipc_3"): (160, 320, 640, 1280),
}
"""Step counts (8×) per (data, expected order) in the asymptotic range, measured. First order from 20 (DDIM
local slopes 0.87, 0.94, 0.97 from 10 to 80 on sub-VP); second order from 40 (sub-VP DPM-Solver++(2M): 0.9,
1.75, 1.95 from 10 to 80, its first-order first step); DPM-Solver++(3M)'s order 4 on Gaussian data from 20,
before the start-up's h³ shows; the 3-stage single-step method from 80 (VP local slopes 3.25, 3.14, 3.07, 3.04
from 20 to 320; sub-VP 3.32, 3.19 at 40, 80). On the ring mixture second-order methods are pre-asymptotic
below 80 (DPM-Solver++(2M): 1.81, 1.79, 1.9, 1.95 from 20 to 320).
UniPC-3 on Gaussian data reaches 4 from above 160 (local slopes 3.32, 3.77, 3.9 from 40 to 320)."""


def flow_steps(method: str, data: str) -> tuple[int, ...]:
    """The step counts of ``method``'s study on ``data`` (a per-method entry of `FLOW_STEPS`, else per order)."""
    return FLOW_STEPS.get((data, method)) or FLOW_STEPS[(data, int(expected_flow_order(method, data)))]


MIXTURE_METHODS = ("edm_heun", "dpm_solver_2", "dpm_solver_pp_3m", "ipndm")
"""Methods with mixture rows: first order (DDIM) is erratic on the ring up to 320 steps (a few paths change
basin), DPM-Solver-3 and UniPC-2 approach 3 from below (2.76, 2.87, 2.94 from 40 to 320; UniPC-2 on sub-VP fits
2.88 over 80..640, VP 2.87, 2.96, 2.98 from 80 to 640) and UniPC-3 approaches 4 from above
(4.28, 4.11, 4.02 from 80 to 640, where the reference's 1e-8 is near its error)."""


def expected_flow_order(method: str, data: str) -> float:
    """The declared order, except DPM-Solver++(3M) on Gaussian data: 4 (see the module docstring)."""
    if method == "dpm_solver_pp_3m" and data == "gaussian":
        return 4.0
    return float(FEW_STEP[method].order)


def flow_errors(
    sde: LinearSDE,
    method: str,
    data: Gaussian | GaussianMixture,
    steps: tuple[int, ...],
    *,
    n_paths: int = 32,
    eps: float = 1e-3,
    seed: int = 0,
) -> np.ndarray:
    """RMS distance at ``eps`` between ``method`` on the logSNR grid and the exact (or reference) flow map.

    Args:
        sde: the SDE.
        method: a name in `FEW_STEP`.
        data: Gaussian (exact `Gaussian.flow`) or mixture (Dormand–Prince reference at 1e-11).
        steps: the step counts.
        n_paths: prior samples ``[n_paths, *event]`` (float64), the same for every step count.

    Returns:
        ``[len(steps)]`` errors.
    """
    event = tuple(data.mean.shape) if isinstance(data, Gaussian) else tuple(data.means.shape[1:])
    x_t = sde.prior_sampling((n_paths, *event), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    score = data.score_fn(sde)
    if isinstance(data, Gaussian):
        ref = data.flow(sde, x_t, sde.T, eps)
    else:
        ref = ode_sample(sde, score, x_t.shape, method="dopri5", rtol=1e-11, atol=1e-11, eps=eps, x_init=x_t)
    errors = []
    for n in steps:
        y = ode_sample(sde, score, x_t.shape, method=method, steps=n, grid="logsnr", eps=eps, x_init=x_t)
        errors.append(float((y - ref).reshape(n_paths, -1).pow(2).sum(1).mean().sqrt()))
    return np.asarray(errors)


class _ProbeNoise(NoiseSource):
    r"""The k-th draw of the run is the unit vector of row ``2 + k`` (rows 0, 1: no noise): the run is affine in
    $(x_T, z_0, z_1, \dots)$, so one batched run reads off every coefficient."""

    def __init__(self) -> None:
        self.count = 0

    def predictor(self, out, i, t, t_next):
        out.zero_()[2 + self.count] = 1.0
        self.count += 1
        return out

    def draw(self, out, stream, i, j, t):
        return self.predictor(out, i, t, t)


def sde_weak_errors(
    sde: LinearSDE,
    predictor: str | Predictor,
    data: Gaussian,
    steps: tuple[int, ...],
    eps: float = 1e-3,
    extra_draws: int = 0,
) -> np.ndarray:
    r"""Exact weak errors of a stochastic few-step predictor on 1-D Gaussian data, from the exact $p_T$.

    The sample is $y = a\,x_T + b + \sum_i c_i z_i$ with independent normals, read off one batched run on probes
    ($x_T = 0, 1$; a unit draw per interval), so $m = a m_T + b$ and $v = a^2 v_T + \sum_i c_i^2$ exactly.

    Args:
        extra_draws: draws beyond one per interval (Restart's re-noisings).

    Returns:
        ``[len(steps)]`` values of max(|v/v_eps − 1|, |m − m_eps|/√v_eps) on the logSNR grid.
    """
    p_t, p_eps, errors = data.marginal(sde, sde.T), data.marginal(sde, eps), []
    for n in steps:
        law = probe_law(sde, predictor, data.score_fn(sde), p_t, n, eps, extra_draws)
        errors.append(law_error(law.mean, law.var, p_eps))
    return np.asarray(errors)


def law_error(mean: Tensor, var: Tensor, exact: Gaussian) -> float:
    """max(|v/v* − 1|, |m − m*|/√v*) over coordinates: a Gaussian law's error against the exact one."""
    return max(float((var / exact.var - 1).abs().max()), float(((mean - exact.mean) / exact.std).abs().max()))


def affine_law_error(y: Tensor, start: Gaussian, exact: Gaussian) -> float:
    r"""`law_error` of a deterministic sampler read off two probe rows: on an affine score it is affine in its start,
    $y = a\,x_T + b$, so rows ``y[0]`` ($x_T = 0$) and ``y[1]`` ($x_T = 1$) give $m = a m_T + b$, $v = a^2 v_T$
    for $x_T \sim$ ``start`` exactly (no Monte Carlo)."""
    a, b = y[1] - y[0], y[0]
    return law_error(a * start.mean + b, a**2 * start.var, exact)


def probe_law(
    sde: LinearSDE,
    predictor: str | Predictor,
    score_fn,
    start: Gaussian,
    steps: int,
    eps: float = 1e-3,
    extra_draws: int = 0,
) -> Gaussian:
    r"""Exact law at ``eps`` of a stochastic predictor on the logSNR grid, for 1-D data with a score affine in $x$.

    The sample is $y = a\,x_T + b + \sum_i c_i z_i$ with independent normals, read off one batched run on probes
    ($x_T = 0, 1$; a unit draw per interval), so $m = a m_T + b$ and $v = a^2 v_T + \sum_i c_i^2$ exactly.

    Args:
        score_fn: a score affine in ``x`` (Gaussian data's exact score, a guided score of Gaussian scores).
        start: the 1-D law of $x_T$.
        extra_draws: draws beyond one per interval (Restart's re-noisings).
    """
    x = torch.zeros(steps + 2 + extra_draws, 1, dtype=torch.float64)
    x[1] = 1.0
    times = TimeTable(make_grid("logsnr", sde, steps, eps, dtype=torch.float64), x)
    kernel = get_predictor(predictor, sde).kernel(score_fn, times, x, RunSpec(_ProbeNoise()))
    y = run(kernel, x, times, check_finite=False)[:, 0]
    a, b, c = y[1] - y[0], y[0], y[2:] - y[0]
    return Gaussian(a * start.mean + b, (a**2 * start.std**2 + (c**2).sum()).sqrt())


WEAK_STEPS = {
    "sde_dpm_solver_pp_2m": (64, 128, 256, 512),
    "edm_stochastic": (256, 512, 1024, 2048),
    "restart": (64, 128, 256, 512),
}
"""Stochastic few-step predictors: step counts in the asymptotic range of their exact weak errors (VP local slopes
of SDE-DPM-Solver++(2M) 1.94, 2.01, 2.05, 2.11 from 32 to 512; EDM's churn is capped at γ = √2 − 1 up to
N = churn/(√2 − 1) ≈ 193, so from 256: 1.89, 1.94, 1.97; Restart with N/8 inner steps 2.08, 2.05, 2.01, 2.01
from 32 to 512)."""

RESTART_INNER_RATIO = 8
r"""Restart's study refines its inner solves with the grid, ``inner_steps = N // 8``: the error is
$C_1 N^{-2} + C_2 M^{-2}$ (Heun on the main grid and on the $M$ inner steps), so order 2 holds in $N$ only with
$M \propto N$; at fixed $M$ it floors at $C_2 M^{-2}$ (0.46% at M = 4 on N(0.3, 0.5²), VP, sub-VP and VE alike)."""


def weak_study_errors(sde: LinearSDE, name: str, data: Gaussian, steps: tuple[int, ...]) -> np.ndarray:
    """`sde_weak_errors` of the predictor ``name`` as its order is claimed: Restart with
    ``inner_steps = N // RESTART_INNER_RATIO`` (and its re-noisings as extra draws), the others with defaults."""
    if name != "restart":
        return sde_weak_errors(sde, name, data, steps)
    runs = [(Restart(sde, inner_steps=max(1, n // RESTART_INNER_RATIO)), n) for n in steps]
    return np.concatenate([sde_weak_errors(sde, p, data, (n,), extra_draws=p.restarts) for p, n in runs])


def lambda_resolution(sde: LinearSDE, steps: tuple[int, ...], eps: float = 1e-3) -> tuple[float, ...] | None:
    r"""The logSNR grid's resolution $1/\bar h_\lambda$ per step count, the mean λ-step of its finite part, where
    $\alpha(T) = 0$ (None elsewhere: there $\bar h_\lambda \propto 1/N$ and the steps themselves are the abscissa).

    From $\lambda(T) = -\infty$ the grid's first interval is the uniform grid's (`sdesolve.grids`), so its λ-range
    $[\lambda(t_1), \lambda(\varepsilon)]$ grows like $\log N$ and $\bar h_\lambda \propto (\log N + c)/N$: an order-p method's
    error is $O(\bar h_\lambda^p)$, and fitted against N it would read $p(1 - O(1/\log N))$ (measured: 0.92p over
    40..320 on rectified flow). Fitting against $1/\bar h_\lambda$ measures the order in the solver's own variable.
    """
    if float(sde.mean_coeff(torch.tensor(sde.T, dtype=torch.float64))) != 0:
        return None
    out = []
    for n in steps:
        lam = sde.marginal_lambda(make_grid("logsnr", sde, n, eps, dtype=torch.float64)[1:])
        out.append(float(n - 1) / float(lam[-1] - lam[0]))
    return tuple(out)


def few_step_study(sde: LinearSDE, name: str, data: str, dist: Gaussian | GaussianMixture):
    """``(kind, steps, errors, expected, resolution)`` of a few-step solver (flow map) or stochastic few-step
    predictor (exact weak errors, Gaussian data only: its first coordinate, the others being iid), or None where not
    measured; ``resolution`` (`lambda_resolution`) is what the order is fitted against where α(T) = 0."""
    if name in WEAK_STEPS:
        if data != "gaussian":
            return None
        first = Gaussian(dist.mean.reshape(-1)[:1], dist.std.reshape(-1)[:1])
        steps = WEAK_STEPS[name]
        errors = weak_study_errors(sde, name, first, steps)
        return "weak", steps, errors, float(get_predictor(name, sde).weak_order), lambda_resolution(sde, steps)
    if data == "mixture" and name not in MIXTURE_METHODS:
        return None
    steps = flow_steps(name, data)
    errors = flow_errors(sde, name, dist, steps)
    return "strong", steps, errors, expected_flow_order(name, data), lambda_resolution(sde, steps)
