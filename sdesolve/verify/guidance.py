r"""What classifier-free guidance does to the solvers, measured against the exact guided laws.

The problem: a labelled 2-D mixture (`labelled_mixture`) whose label-0 component $\mathcal N(\mu_c, s_c^2)$ is the
conditional law and whose moment-matched Gaussian $\mathcal N(\mu_u, s_u^2)$ (the mixture's mean and per-coordinate
std) is the unconditional one, so the guided score $s_u + w(s_c - s_u)$ is affine and its flow is exact
(`sdesolve.analytic.GuidedGaussian`, quadrature at 1e-13).

- ODE methods (`guided_flow_errors`): the same prior samples $x_T$ through ``ode_sample`` with the guided score and
  through the exact guided flow map; the error is the RMS distance at ``eps`` relative to the data's scale
  $\sqrt{\operatorname{tr}\Sigma_u}$ (the unconditional law's spread), so "1 %" means 1 % of the data's spread. (Not
  relative to the guided law's own spread: the guided flow contracts it, to 5 % of the data's at $w = 3$ and
  $10^{-6}$ at $w = 15$ on this problem.) Adaptive methods (`guided_adaptive_errors`): the same error at a ladder of
  tolerances.
- Stochastic predictors (`guided_sde_errors`): the exact law of the sampler's output (`probe_law`: the run is
  affine in $x_T$ and its draws, no Monte Carlo) against the exact law of the guided reverse SDE
  (`GuidedGaussian.reverse_law`); the error is $\max(|m - m^*|/s^*, |v/v^* - 1|)$ over coordinates.

A guidance interval makes the guided score jump in $t$ at the interval's ends; a fixed-step method whose step
straddles a jump loses its order there, and `sdesolve.guidance.interval_grid` puts grid points on the ends.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..analytic import Gaussian, GaussianMixture, GuidedGaussian
from ..grids import make_grid
from ..guidance import cfg_score, interval_grid
from ..sampling import ode_sample
from ..sde import LinearSDE
from ..solvers.ode import FEW_STEP, FIXED
from .few_step import probe_law
from .orders import fit_order

__all__ = [
    "GUIDANCE_SCALES",
    "GUIDANCE_INTERVAL",
    "STUDY_STEPS",
    "STOCHASTIC_PREDICTORS",
    "ADAPTIVE_METHODS",
    "ADAPTIVE_TOLERANCES",
    "labelled_mixture",
    "guidance_pair",
    "evaluations_per_step",
    "guided_flow_errors",
    "guided_adaptive_errors",
    "guided_sde_errors",
    "first_nfe_below",
    "local_orders",
    "study_methods",
    "split_solve",
    "claimed_order",
]

GUIDANCE_SCALES = (0.0, 1.0, 3.0, 7.5, 15.0)
GUIDANCE_INTERVAL = (0.28, 5.42)
"""Kynkäänniemi et al. 2024's interval for EDM2-S on ImageNet-512, $(\\tilde\\sigma_{lo}, \\tilde\\sigma_{hi}]$."""
STUDY_STEPS = (4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
STOCHASTIC_PREDICTORS = ("euler_maruyama", "reverse_diffusion", "ancestral", "sde_dpm_solver_pp_2m")
ADAPTIVE_METHODS = ("dopri5", "dpm_solver_adaptive", "dpm_solver_pp_adaptive")
ADAPTIVE_TOLERANCES = (1e-2, 1e-3, 1e-4, 1e-5)


def labelled_mixture(dtype: torch.dtype = torch.float64) -> GaussianMixture:
    """Three labelled 2-D components (labels = components): weights 0.5, 0.3, 0.2, stds 0.3, 0.4, 0.25."""
    means = torch.tensor([[1.0, 0.5], [-1.0, 0.0], [0.0, -1.2]], dtype=dtype)
    return GaussianMixture(
        torch.tensor([0.5, 0.3, 0.2], dtype=dtype), means, torch.tensor([0.3, 0.4, 0.25], dtype=dtype)
    )


def guidance_pair(mixture: GaussianMixture | None = None, label: int = 0) -> tuple[Gaussian, Gaussian]:
    """``(cond, uncond)``: component ``label`` and the mixture's moment-matched Gaussian (mean and per-coordinate std)."""
    mixture = labelled_mixture() if mixture is None else mixture
    return mixture.component(label), Gaussian(mixture.mean, mixture.std)


def evaluations_per_step(method: str) -> int:
    """Score evaluations per interval of a fixed-step ODE method (multistep methods: 1)."""
    if method in FIXED:
        return {"euler": 1, "heun": 2, "rk4": 4}[method]
    return {"edm_heun": 2, "dpm_solver_2": 2, "dpm_solver_3": 3, "dpm_solver_pp_2s": 2}.get(method, 1)


def _grid(sde: LinearSDE, steps: int, eps: float, grid: str, interval) -> torch.Tensor:
    """The study grid: a named grid, or ``"interval"``/``"split"``: the logSNR grid with nodes on the interval's ends."""
    if grid in ("interval", "split"):
        return interval_grid(sde, steps, eps, interval)
    return make_grid(grid, sde, steps, eps, dtype=torch.float64)


def split_solve(sde, cond: Gaussian, uncond: Gaussian, scale: float, interval, x: torch.Tensor, grid: torch.Tensor,
                **options) -> tuple[torch.Tensor, int]:  # fmt: skip
    r"""Interval guidance as one `ode_sample` per piece of an `interval_grid`, each with its constant-scale score
    ($w$ inside, the conditional score outside): no step sees a jump, and multistep methods restart at the ends.

    Returns:
        The samples at ``grid[-1]`` and the total NFE.
    """
    level = sde.noise_level(grid)
    inside = (level > interval[0]) & (level <= interval[1])  # node k belongs to the piece below it
    cuts = [0, *(k for k in range(1, len(grid) - 1) if bool(inside[k]) != bool(inside[k - 1])), len(grid) - 1]
    nfe = 0
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        w = scale if bool(inside[a]) else 1.0
        score = cfg_score(cond.score_fn(sde), uncond.score_fn(sde), w)
        x, info = ode_sample(sde, score, x.shape, grid=grid[a : b + 1], eps=float(grid[b]), x_init=x, return_info=True,
                             **options)  # fmt: skip
        nfe += info["nfe"]
    return x, nfe


def guided_flow_errors(
    sde: LinearSDE,
    method: str,
    scale: float,
    steps: Sequence[int] = STUDY_STEPS,
    *,
    interval: tuple[float, float] | None = None,
    grid: str = "logsnr",
    lower_order_final: bool = False,
    pair: tuple[Gaussian, Gaussian] | None = None,
    n_paths: int = 64,
    eps: float = 1e-3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(nfe, errors)`` of ``method`` with the guided score against the exact guided flow (module docstring).

    Args:
        sde: the SDE.
        method: a fixed-step `ode_sample` method.
        scale: guidance scale $w$.
        steps: intervals per run.
        interval: guidance interval in $\\tilde\\sigma$ or None.
        grid: a grid name, ``"interval"`` (`interval_grid`) or ``"split"`` (`split_solve` on it).
        lower_order_final: passed to `ode_sample` (multistep methods).
        pair: ``(cond, uncond)`` Gaussians (default `guidance_pair`).
        n_paths: prior samples, the same for every step count.
    """
    cond, uncond = guidance_pair() if pair is None else pair
    score, x_T, error = _flow_problem(sde, cond, uncond, scale, interval, n_paths, eps, seed)
    nfe, errors = [], []
    for n in steps:
        times = _grid(sde, n, eps, grid, interval)
        if grid == "split":
            y, used = split_solve(sde, cond, uncond, scale, interval, x_T, times, method=method,
                                  lower_order_final=lower_order_final)  # fmt: skip
        else:
            y, info = ode_sample(sde, score, x_T.shape, method=method, grid=times, eps=eps, x_init=x_T,
                                 lower_order_final=lower_order_final, return_info=True)  # fmt: skip
            used = info["nfe"]
        nfe.append(used)
        errors.append(error(y))
    return np.asarray(nfe), np.asarray(errors)


def guided_adaptive_errors(
    sde: LinearSDE,
    method: str,
    scale: float,
    tolerances: Sequence[float] = ADAPTIVE_TOLERANCES,
    *,
    interval: tuple[float, float] | None = None,
    pair: tuple[Gaussian, Gaussian] | None = None,
    n_paths: int = 64,
    eps: float = 1e-3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(nfe, errors)`` of an adaptive `ode_sample` method at ``rtol = atol = tol`` for each of ``tolerances``,
    against the exact guided flow (the error as in `guided_flow_errors`)."""
    cond, uncond = guidance_pair() if pair is None else pair
    score, x_T, error = _flow_problem(sde, cond, uncond, scale, interval, n_paths, eps, seed)
    nfe, errors = [], []
    for tol in tolerances:
        y, info = ode_sample(sde, score, x_T.shape, method=method, rtol=tol, atol=tol, eps=eps, x_init=x_T,
                             return_info=True)  # fmt: skip
        nfe.append(info["nfe"])
        errors.append(error(y))
    return np.asarray(nfe), np.asarray(errors)


def _flow_problem(sde, cond: Gaussian, uncond: Gaussian, scale: float, interval, n_paths: int, eps: float, seed: int):
    """``(score, x_T, error)``: the guided score, prior samples and ``error(y)``, the RMS distance of ``y`` to their
    exact guided flow at ``eps`` relative to the data's scale."""
    score = cfg_score(cond.score_fn(sde), uncond.score_fn(sde), scale, sde=sde, interval=interval)
    shape = (n_paths, *cond.event_shape)
    x_T = sde.prior_sampling(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    exact = GuidedGaussian(cond, uncond, scale, interval).flow(sde, x_T, sde.T, eps)
    spread = float(uncond.var.sum().sqrt())  # the data's scale, not the guided law's (which collapses with w)

    def error(y: torch.Tensor) -> float:
        return float((y - exact).reshape(n_paths, -1).pow(2).sum(1).mean().sqrt()) / spread

    return score, x_T, error


def guided_sde_errors(
    sde: LinearSDE,
    predictor: str,
    scale: float,
    steps: Sequence[int] = STUDY_STEPS,
    *,
    interval: tuple[float, float] | None = None,
    pair: tuple[Gaussian, Gaussian] | None = None,
    eps: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """``(nfe, errors)`` of a stochastic predictor with the guided score against the exact guided reverse-SDE law,
    coordinate by coordinate (`probe_law`, logSNR grid, from $x_T \\sim \\mathcal N(0, \\sigma_T^2)$)."""
    cond, uncond = guidance_pair() if pair is None else pair
    d = cond.mean.numel()
    errors = np.zeros(len(steps))
    for i in range(d):
        c = Gaussian(cond.mean.reshape(-1)[i : i + 1], cond.std.reshape(-1)[i : i + 1])
        u = Gaussian(uncond.mean.reshape(-1)[i : i + 1], uncond.std.reshape(-1)[i : i + 1])
        score = cfg_score(c.score_fn(sde), u.score_fn(sde), scale, sde=sde, interval=interval)
        start = Gaussian(torch.zeros(1, dtype=torch.float64), sde.std(torch.tensor(sde.T, dtype=torch.float64)))
        exact = GuidedGaussian(c, u, scale, interval).reverse_law(sde, start, sde.T, eps)
        for k, n in enumerate(steps):
            law = probe_law(sde, predictor, score, start, n, eps)
            err = max(
                float((law.var / exact.var - 1).abs().max()), float(((law.mean - exact.mean) / exact.std).abs().max())
            )
            errors[k] = max(errors[k], err)
    return np.asarray(steps), errors


def first_nfe_below(nfe: np.ndarray, errors: np.ndarray, tol: float = 0.01) -> int | None:
    """The smallest NFE from which every larger NFE's error stays below ``tol`` (None if never)."""
    ok = errors < tol
    for k in range(len(ok)):
        if ok[k:].all():
            return int(nfe[k])
    return None


def local_orders(nfe: np.ndarray, errors: np.ndarray, window: int = 4) -> np.ndarray:
    """Fitted orders (`fit_order`) over sliding windows of ``window`` consecutive counts, against NFE."""
    return np.asarray(
        [fit_order(nfe[k : k + window], errors[k : k + window]).slope for k in range(len(nfe) - window + 1)]
    )


def study_methods() -> tuple[str, ...]:
    """Every fixed-step ODE method: Runge–Kutta and the few-step solvers."""
    return (*FIXED, *FEW_STEP)


def claimed_order(method: str) -> int:
    """The order a fixed-step ODE method declares (its tableau's, or `FewStepMethod.order`)."""
    return FIXED[method].order if method in FIXED else FEW_STEP[method].order
