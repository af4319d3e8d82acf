r"""Exact law of the PC / flow samplers on Gaussian data, propagated in float64 without Monte Carlo.

Test oracle, written independently of ``sdesolve`` (numpy only, the SDE formulas of Song et al. 2021,
eqs. 9, 11, 12 rewritten from the paper). For data $\mathcal N(\mu, s^2)$ per coordinate the exact score
$-(x - \alpha_t\mu)/v_t$ is affine, so every predictor and the σ-rule Langevin corrector is a map
$x' = A x + b + c z$ and the law after each step is Gaussian with $m' = Am + b$, $V' = A^2V + c^2$.
"""

from __future__ import annotations

import math

import numpy as np


class Schedule:
    r"""$\alpha(t)$, $\sigma(t)$, $f(t)$, $g(t)^2$ of the VE / VP / sub-VP SDE, in float64."""

    def __init__(self, kind: str, sigma_min=0.01, sigma_max=50.0, beta_min=0.1, beta_max=20.0) -> None:
        self.kind, self.smin, self.smax, self.b0, self.b1 = kind, sigma_min, sigma_max, beta_min, beta_max

    def log_alpha(self, t):
        return 0.0 * t if self.kind == "ve" else -0.25 * t**2 * (self.b1 - self.b0) - 0.5 * t * self.b0

    def alpha(self, t):
        return math.exp(self.log_alpha(t))

    def sigma2(self, t):
        if self.kind == "ve":
            return (self.smin * (self.smax / self.smin) ** t) ** 2
        a2 = self.alpha(t) ** 2
        return 1 - a2 if self.kind == "vp" else (1 - a2) ** 2

    def f(self, t):
        return 0.0 if self.kind == "ve" else -0.5 * (self.b0 + t * (self.b1 - self.b0))

    def g2(self, t):
        if self.kind == "ve":
            return self.sigma2(t) * 2 * math.log(self.smax / self.smin)
        beta = self.b0 + t * (self.b1 - self.b0)
        return beta if self.kind == "vp" else beta * (1 - self.alpha(t) ** 4)

    def prior_var(self):
        return self.smax**2 if self.kind == "ve" else 1.0


def _steps(sch: Schedule, mu: float, s: float, name: str, t: float, tn: float):
    """The step ``x -> F(x, z)`` of predictor ``name`` from t to tn (scalars)."""

    def score(x, u):
        a = sch.alpha(u)
        return -(x - a * mu) / (a**2 * s**2 + sch.sigma2(u))

    def flow(u, x):
        return sch.f(u) * x - 0.5 * sch.g2(u) * score(x, u)

    dt = tn - t
    r = sch.alpha(t) / sch.alpha(tn)
    G2 = sch.sigma2(t) - r**2 * sch.sigma2(tn)
    if name == "euler_maruyama":
        return lambda x, z: x + (sch.f(t) * x - sch.g2(t) * score(x, t)) * dt + math.sqrt(sch.g2(t) * -dt) * z
    if name == "reverse_diffusion":
        return lambda x, z: x - (r - 1) * x + G2 * score(x, t) + math.sqrt(G2) * z
    if name == "ancestral":
        return lambda x, z: (x + G2 * score(x, t)) / r + math.sqrt(sch.sigma2(tn) * G2 / sch.sigma2(t)) * z
    if name == "none":
        return lambda x, z: x
    if name == "pf_euler":
        return lambda x, z: x + dt * flow(t, x)
    if name == "pf_heun":

        def heun(x, z):
            k1 = flow(t, x)
            return x + 0.5 * dt * (k1 + flow(tn, x + dt * k1))

        return heun
    if name == "pf_rk4":

        def rk4(x, z):
            k1 = flow(t, x)
            k2 = flow(t + dt / 2, x + dt / 2 * k1)
            k3 = flow(t + dt / 2, x + dt / 2 * k2)
            k4 = flow(tn, x + dt * k3)
            return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

        return rk4
    raise ValueError(name)


def _langevin(sch: Schedule, mu: float, s: float, snr: float, t: float, tn: float):
    """σ-rule Langevin step at t: ε = 2 α snr² σ(t)², α = α(t)²/α(tn)² (score_sde's VP factor)."""
    a = sch.alpha(t)
    v = a**2 * s**2 + sch.sigma2(t)
    eps = 2 * (sch.alpha(t) / sch.alpha(tn)) ** 2 * snr**2 * sch.sigma2(t)
    return lambda x, z: x - eps * (x - a * mu) / v + math.sqrt(2 * eps) * z


def _affine(F) -> tuple[float, float, float]:
    b = F(0.0, 0.0)
    return F(1.0, 0.0) - b, b, F(0.0, 1.0) - b


def pc_law(
    kind: str,
    predictor: str,
    steps: int,
    *,
    corrector: bool = False,
    snr: float = 0.16,
    corrector_steps: int = 1,
    mu: float = 0.3,
    s: float = 0.5,
    eps: float = 1e-3,
    sde_kwargs: dict | None = None,
    x_init: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Exact (mean, variance) per coordinate of ``pc_sample(..., denoise=True)`` on a uniform grid.

    ``x_init = (m, V)`` overrides the prior N(0, prior variance).
    """
    sch = Schedule(kind, **(sde_kwargs or {}))
    grid = np.linspace(1.0, eps, steps + 1)
    m, V = x_init if x_init is not None else (0.0, sch.prior_var())
    for i in range(steps):
        t, tn = float(grid[i]), float(grid[i + 1])
        if corrector:
            for _ in range(corrector_steps):
                A, b, c = _affine(_langevin(sch, mu, s, snr, t, tn))
                m, V = A * m + b, A * A * V + c * c
        A, b, c = _affine(_steps(sch, mu, s, predictor, t, tn))
        last = i == steps - 1
        m, V = A * m + b, A * A * V + (0.0 if last else c * c)  # denoise: the last step returns its mean
    return m, V


def target(kind: str, mu: float = 0.3, s: float = 0.5, eps: float = 1e-3, sde_kwargs: dict | None = None):
    """(mean, variance) of the exact p_eps."""
    sch = Schedule(kind, **(sde_kwargs or {}))
    a = sch.alpha(eps)
    return a * mu, a**2 * s**2 + sch.sigma2(eps)
