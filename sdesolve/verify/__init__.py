r"""Convergence verification (a wing: `orders` holds the fits and measurements, `suite` the matrix): strong and weak orders of every predictor against exact answers.

Errors are measured at ``t = eps`` from the exact law $p_T$ (``data.marginal(sde, T)``), never from the SDE's
prior, so the only error left is the discretisation's. Three measurements:

- **exact propagation** (Gaussian data, exact score): every predictor step is affine,
  $x' = a\odot x + b + c\odot z$ per coordinate, so mean and variance propagate in closed form,
  $m' = am + b$, $v' = a^2v + c^2$ — weak errors with no Monte Carlo at all. $a, b, c$ come from the
  predictor's coefficient table (affine predictors) or are read off one step on the probes
  $(x, z) = (0, 0), (1, 0), (0, 1)$ (any other predictor).
- **strong errors** $\mathbb E|X_N - X_{\rm ref}|$ on one Brownian path (a torchsde ``BrownianInterval``)
  against torchsde's strong-order-1.5 ``srk`` at a fine step (stochastic predictors), the exact flow
  `Gaussian.flow` or scipy's RK45 at tight tolerance (probability-flow predictors).
- **weak errors by Monte Carlo** (mixture data): $|\mathbb E[\varphi(X_N) - \varphi(X_{\rm ref})]|$ over the
  same paths — the fine reference is a control variate, so the Monte Carlo error scales with the strong
  error, not with $\operatorname{sd}\varphi(X)$; the reference itself is checked against the exact mixture
  moments (`reference_check`).

The diffusions of VE/VP/sub-VP depend on t only (additive noise), so Euler–Maruyama has strong order 1
(Kloeden & Platen 1992, §10.2), not ½. Orders are fitted by least squares on log error against log N, with a
t-distribution confidence interval (`fit_order`).
"""

from .orders import (
    FUNCTIONALS,
    OrderFit,
    OrderStudy,
    error_vs_nfe,
    exact_expectations,
    fit_order,
    propagate_gaussian,
    reference_check,
    strong_order,
    weak_order,
)
from .suite import SUITE_FEW_STEP, SUITE_PREDICTORS, SuiteRow, expected_order, run_suite, suite_cases

__all__ = [
    "OrderFit",
    "OrderStudy",
    "fit_order",
    "FUNCTIONALS",
    "exact_expectations",
    "propagate_gaussian",
    "strong_order",
    "weak_order",
    "reference_check",
    "error_vs_nfe",
    "run_suite",
    "SUITE_PREDICTORS",
    "SUITE_FEW_STEP",
    "SuiteRow",
    "suite_cases",
    "expected_order",
]
