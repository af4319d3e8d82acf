r"""Convergence verification: strong and weak orders of every predictor against exact answers.

Errors are measured at ``t = eps`` from the exact law $p_T$ (``data.marginal(sde, T)``), never from the SDE's
prior, so the only error left is the discretisation's. Three measurements:

- **exact propagation** (Gaussian data, exact score): every predictor step is affine,
  $x' = a\odot x + b + c\odot z$ per coordinate, so mean and variance propagate in closed form,
  $m' = am + b$, $v' = a^2v + c^2$ — weak errors with no Monte Carlo at all. $a, b, c$ are read off one
  step on the probes $(x, z) = (0, 0), (1, 0), (0, 1)$.
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

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ._utils import check_choice, check_int, check_positive
from .analytic import Gaussian, GaussianMixture
from .few_step_orders import WEAK_STEPS, few_step_study
from .grids import uniform_grid
from .predictors import PREDICTORS, Predictor, get_predictor
from .problems import gaussian_data, ring_mixture
from .sampling import ode_sample, pc_sample
from .sde import SDES, LinearSDE, get_sde
from .solvers.few_step import FEW_STEP
from .torchsde import to_torchsde

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

Data = Gaussian | GaussianMixture
FUNCTIONALS = ("x", "x2", "x3", "cos")


# -- order fits -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderFit:
    """Fitted order ``slope`` of ``error ≈ C·N^(-slope)`` with its confidence interval ``[lo, hi]``."""

    slope: float
    lo: float
    hi: float
    stderr: float
    log_c: float

    def within(self, expected: float, tol: float) -> bool:
        """Whether the fitted slope lies within ``tol`` of ``expected``."""
        return abs(self.slope - expected) <= tol


def fit_order(steps: Sequence[int], errors: Sequence[float], confidence: float = 0.95) -> OrderFit:
    r"""Least-squares fit of $\log e = \log C - p\log N$; the interval is slope ± $t_{n-2}$·stderr.

    Args:
        steps: step counts N (at least 3 distinct values).
        errors: positive errors, one per N.
        confidence: level of the two-sided interval.

    Returns:
        `OrderFit` with the order p (positive for converging errors).
    """
    from scipy import stats

    n, e = np.asarray(steps, dtype=float), np.asarray(errors, dtype=float)
    if n.shape != e.shape or n.ndim != 1 or n.size < 3:
        raise ValueError(f"steps and errors must be 1-D of equal length >= 3, got {n.shape} and {e.shape}")
    if not (np.all(np.isfinite(e)) and np.all(e > 0)):
        raise ValueError(f"errors must be finite and > 0, got {e.tolist()}")
    res = stats.linregress(np.log(n), np.log(e))
    q = stats.t.ppf(0.5 + confidence / 2, n.size - 2) * res.stderr
    return OrderFit(slope=-res.slope, lo=-res.slope - q, hi=-res.slope + q, stderr=res.stderr, log_c=res.intercept)


# -- exact expectations ---------------------------------------------------------------------------------------
def _gauss_expect(name: str, m: Tensor, v: Tensor) -> Tensor:
    """E φ(y) for y ~ N(m, v) elementwise."""
    if name == "x":
        return m
    if name == "x2":
        return m**2 + v
    if name == "x3":
        return m**3 + 3 * m * v
    return torch.cos(m) * torch.exp(-v / 2)


def _apply(name: str, x: Tensor) -> Tensor:
    return {"x": x, "x2": x**2, "x3": x**3, "cos": torch.cos(x)}[name]


def exact_expectations(dist: Data, functionals: Sequence[str] = FUNCTIONALS) -> Tensor:
    r"""Exact $\mathbb E\varphi(x_j)$ per functional and coordinate, ``[F, *event]``, for diagonal laws.

    $\varphi \in \{x, x^2, x^3, \cos x\}$ in closed form per Gaussian component, weighted over a mixture.
    """
    for f in functionals:
        check_choice("functional", f, FUNCTIONALS)
    if isinstance(dist, Gaussian):
        return torch.stack([_gauss_expect(f, dist.mean, dist.var) for f in functionals])
    var = dist.stds**2 if dist.stds.shape == dist.means.shape else dist.stds.reshape(-1, 1) ** 2
    var = var.expand_as(dist.means)
    w = dist.weights.reshape(-1, *([1] * (dist.means.ndim - 1)))
    return torch.stack([(w * _gauss_expect(f, dist.means, var)).sum(0) for f in functionals])


# -- exact propagation ----------------------------------------------------------------------------------------
def _affine_step(pred: Predictor, t: Tensor, t_next: Tensor, score_fn, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(a, b, c)`` of the affine step ``x' = a x + b + c z`` read off the probes (0,0), (1,0), (0,1)."""
    zero, one = torch.zeros_like(like), torch.ones_like(like)
    x = torch.stack([zero, one, zero])
    noise = torch.stack([zero, zero, one])
    out, _ = pred.step(x, t, t_next, score_fn, noise=noise)
    b = out[0]
    return out[1] - b, b, out[2] - b


def propagate_gaussian(
    sde: LinearSDE, predictor: str | Predictor, data: Gaussian, steps: int, eps: float = 1e-3
) -> Gaussian:
    r"""Exact law after ``steps`` predictor steps from the exact $p_T$, for Gaussian data with exact score.

    Args:
        sde: the forward SDE.
        predictor: name or instance; each step must be affine in ``x`` and the noise (true for every
            predictor here with the exact Gaussian score).
        data: diagonal Gaussian data (float64 recommended).
        steps: intervals of the uniform grid from T to ``eps``.

    Returns:
        The Gaussian law of the final state (the last step's noise included).
    """
    pred = get_predictor(predictor, sde)
    score_fn = data.score_fn(sde)
    grid = uniform_grid(sde, check_int("steps", steps), eps, dtype=data.mean.dtype)
    prior = data.marginal(sde, sde.T)
    m, v = prior.mean, prior.var
    for i in range(steps):
        a, b, c = _affine_step(pred, grid[i], grid[i + 1], score_fn, m)
        m, v = a * m + b, a**2 * v + c**2
    return Gaussian(m, v.sqrt())


# -- order studies --------------------------------------------------------------------------------------------
@dataclass
class OrderStudy:
    """Errors at several step counts, their fitted order and the order theory claims.

    Attributes:
        kind: ``"strong"`` or ``"weak"``; method: how the errors were measured.
        se: Monte Carlo standard errors of the errors (zeros for exact propagation).
    """

    kind: str
    method: str
    steps: tuple[int, ...]
    errors: np.ndarray
    se: np.ndarray
    expected: float
    fit: OrderFit = field(init=False)

    def __post_init__(self) -> None:
        self.fit = fit_order(self.steps, self.errors)

    @property
    def mc_ok(self) -> bool:
        """Weak Monte Carlo error below a quarter of the smallest error measured (issue 7's rule).

        Strong studies use common paths for every N (the error curve is one smooth function of N for the
        fixed paths), so their ``se`` is reported but does not gate.
        """
        return self.kind == "strong" or bool(np.all(self.se <= 0.25 * self.errors.min()))

    def passed(self, tol: float) -> bool:
        """Slope within ``tol`` of theory and Monte Carlo error small enough."""
        return self.fit.within(self.expected, tol) and self.mc_ok


@dataclass
class _Paths:
    """Common random numbers for every step count: start states, one Brownian path, the fine reference."""

    x_T: Tensor
    bm: object
    reference: Tensor


def _check_setup(sde, predictor, steps, eps) -> tuple[Predictor, tuple[int, ...], float]:
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"sde must be a LinearSDE (exact marginals), got {sde!r}")
    pred = get_predictor(predictor, sde)
    steps = tuple(check_int("steps", int(n)) for n in steps)
    if len(set(steps)) < 4:
        raise ValueError(f"steps needs at least 4 distinct step counts, got {steps}")
    return pred, steps, check_positive("eps", eps)


_PATHS_CACHE: dict[tuple, tuple[Data, _Paths]] = {}
_PATHS_CACHE_SIZE = 8


def _paths(sde: LinearSDE, data: Data, n_paths: int, eps: float, seed: int, ref_steps: int, stochastic: bool):
    """Start states from the exact p_T, a seeded BrownianInterval on [0, T - eps] and the fine reference.

    The reference is the costly part (torchsde's srk runs ~4 ms a step), so the last few are kept: every
    predictor and step count of a case shares one (a pure function of its arguments; data kept alive).
    """
    key = (repr(sde), id(data), n_paths, eps, seed, ref_steps, stochastic)
    if key not in _PATHS_CACHE:
        if len(_PATHS_CACHE) >= _PATHS_CACHE_SIZE:
            _PATHS_CACHE.pop(next(iter(_PATHS_CACHE)))
        _PATHS_CACHE[key] = (data, _make_paths(sde, data, n_paths, eps, seed, ref_steps, stochastic))
    return _PATHS_CACHE[key][1]


def _make_paths(sde, data, n_paths, eps, seed, ref_steps, stochastic) -> _Paths:
    import torchsde

    dtype = data.mean.dtype
    gen = torch.Generator().manual_seed(seed)
    x_T = data.marginal(sde, sde.T).sample(n_paths, gen)
    event = tuple(x_T.shape[1:])
    flat = x_T.reshape(n_paths, -1)
    score_fn = data.score_fn(sde)
    span = sde.T - eps
    bm = torchsde.BrownianInterval(
        0.0, span, size=flat.shape, dtype=dtype, entropy=seed, levy_area_approximation="space-time"
    )
    if stochastic:
        ts = torch.tensor([0.0, span], dtype=dtype)
        ref = torchsde.sdeint(to_torchsde(sde, score_fn, event), flat, ts, bm=bm, method="srk", dt=span / ref_steps)
        ref = ref[-1].reshape(x_T.shape)
    elif isinstance(data, Gaussian):
        ref = data.flow(sde, x_T, sde.T, eps)
    else:
        ref = ode_sample(sde, score_fn, x_T.shape, method="scipy_rk45", rtol=1e-12, atol=1e-12, eps=eps, x_init=x_T)
    return _Paths(x_T, bm, ref)


def _solve(sde, pred: Predictor, data: Data, paths: _Paths, n: int, eps: float) -> Tensor:
    """Our solve on the shared path: the last step's noise included (no denoising)."""
    return pc_sample(
        sde,
        data.score_fn(sde),
        paths.x_T.shape,
        predictor=pred,
        corrector=None,
        steps=n,
        eps=eps,
        denoise=False,
        x_init=paths.x_T,
        brownian=paths.bm if pred.stochastic else None,
    )


def strong_order(
    sde: LinearSDE,
    predictor: str | Predictor,
    data: Data,
    *,
    steps: Sequence[int] = (16, 32, 64, 128, 256),
    eps: float = 1e-3,
    n_paths: int = 256,
    ref_steps: int = 4096,
    seed: int = 0,
    expected: float | None = None,
) -> OrderStudy:
    r"""Strong errors $\mathbb E|X_N - X_{\rm ref}|$ at ``eps`` on one Brownian path, and their fitted order.

    The reference is torchsde's ``srk`` (strong order 1.5) with ``ref_steps`` steps on the same
    ``BrownianInterval`` for stochastic predictors; for probability-flow predictors, the exact flow
    (Gaussian data) or scipy RK45 at rtol = atol = 1e-12.

    Args:
        sde: a linear forward SDE.
        predictor: name or instance.
        data: `Gaussian` or `GaussianMixture` (float64 recommended); its exact score drives both solvers.
        steps: at least 4 step counts.
        eps: final time.
        n_paths: Brownian paths (and start states from the exact p_T).
        ref_steps: steps of the reference solve.
        seed: seeds the start states and the Brownian path.
        expected: the order to compare with (default: the predictor's ``strong_order``).

    Returns:
        `OrderStudy` with ``kind="strong"``; ``se`` is the Monte Carlo standard error of each mean.
    """
    pred, steps, eps = _check_setup(sde, predictor, steps, eps)
    expected = pred.strong_order if expected is None else expected
    if expected is None:
        raise ValueError(f"{pred!r} claims no strong order; pass expected=")
    paths = _paths(
        sde, data, check_int("n_paths", n_paths, 2), eps, seed, check_int("ref_steps", ref_steps), pred.stochastic
    )
    errs, ses = [], []
    for n in steps:
        d = (_solve(sde, pred, data, paths, n, eps) - paths.reference).abs().reshape(n_paths, -1).mean(1)
        errs.append(float(d.mean()))
        ses.append(float(d.std() / math.sqrt(n_paths)))
    method = "torchsde srk reference" if pred.stochastic else "exact/scipy flow reference"
    return OrderStudy("strong", method, steps, np.array(errs), np.array(ses), float(expected))


def weak_order(
    sde: LinearSDE,
    predictor: str | Predictor,
    data: Data,
    *,
    steps: Sequence[int] = (16, 32, 64, 128, 256),
    eps: float = 1e-3,
    functionals: Sequence[str] = FUNCTIONALS,
    n_paths: int = 4096,
    ref_steps: int = 2048,
    seed: int = 0,
    expected: float | None = None,
) -> OrderStudy:
    r"""Weak errors $\max_{\varphi, j}|\mathbb E\varphi(X_{N,j}) - \mathbb E\varphi(x_j)|$ at ``eps`` and their order.

    Gaussian data: the law of $X_N$ by exact propagation (`propagate_gaussian`) against the exact $p_{\rm eps}$
    — no Monte Carlo. Mixture data: Monte Carlo over ``n_paths`` common paths with the fine reference of
    `strong_order` as control variate, $|\overline{\varphi(X_N) - \varphi(X_{\rm ref})}|$; ``se`` holds the
    standard errors, and the study fails unless they stay below a quarter of the smallest error. Check the
    reference itself against the exact moments with `reference_check`.

    Args:
        sde: a linear forward SDE.
        predictor: name or instance.
        data: `Gaussian` (exact propagation) or `GaussianMixture` (Monte Carlo), float64 recommended.
        steps: at least 4 step counts.
        eps: final time.
        functionals: names from `FUNCTIONALS` (x, x², x³, cos x).
        n_paths: Monte Carlo paths (mixture data only).
        ref_steps: steps of the torchsde/scipy reference solve (mixture data only).
        seed: seeds the start states and the Brownian path (mixture data only).
        expected: the order to compare with (default: the predictor's ``weak_order``).

    Returns:
        `OrderStudy` with ``kind="weak"``.
    """
    pred, steps, eps = _check_setup(sde, predictor, steps, eps)
    expected = pred.weak_order if expected is None else expected
    if expected is None:
        raise ValueError(f"{pred!r} claims no weak order; pass expected=")
    functionals = tuple(functionals)
    if isinstance(data, Gaussian):
        exact = exact_expectations(data.marginal(sde, eps), functionals)
        errs = [
            float((exact_expectations(propagate_gaussian(sde, pred, data, n, eps), functionals) - exact).abs().max())
            for n in steps
        ]
        return OrderStudy("weak", "exact propagation", steps, np.array(errs), np.zeros(len(steps)), float(expected))
    paths = _paths(
        sde, data, check_int("n_paths", n_paths, 2), eps, seed, check_int("ref_steps", ref_steps), pred.stochastic
    )
    phi_ref = torch.stack([_apply(f, paths.reference) for f in functionals])
    errs, ses = [], []
    for n in steps:
        x = _solve(sde, pred, data, paths, n, eps)
        diff = torch.stack([_apply(f, x) for f in functionals]) - phi_ref  # [F, B, *event]
        mean, se = diff.mean(1), diff.std(1) / math.sqrt(n_paths)
        k = int(mean.abs().argmax())
        errs.append(float(mean.abs().flatten()[k]))
        ses.append(float(se.flatten()[k]))
    return OrderStudy("weak", "Monte Carlo vs reference", steps, np.array(errs), np.array(ses), float(expected))


def reference_check(
    sde: LinearSDE,
    data: Data,
    *,
    eps: float = 1e-3,
    n_paths: int = 4096,
    ref_steps: int = 2048,
    seed: int = 0,
    stochastic: bool = True,
    functionals: Sequence[str] = ("x", "x2"),
) -> tuple[Tensor, Tensor]:
    """Sanity of the fine reference: its Monte Carlo expectations minus the exact ones, and their standard errors.

    Returns:
        ``(deviation, se)``, each ``[F, *event]``; a sound reference has ``|deviation| ≲ 4 se``.
    """
    paths = _paths(sde, data, n_paths, eps, seed, ref_steps, stochastic)
    phi = torch.stack([_apply(f, paths.reference) for f in functionals])
    return phi.mean(1) - exact_expectations(data.marginal(sde, eps), functionals), phi.std(1) / math.sqrt(n_paths)


# -- error against score evaluations --------------------------------------------------------------------------
def error_vs_nfe(
    sde: LinearSDE,
    data: Data,
    configs: Mapping[str, Mapping[str, object]],
    *,
    steps: Sequence[int] = (10, 20, 50, 100),
    eps: float = 1e-3,
    n_samples: int = 4096,
    seed: int = 0,
) -> list[dict[str, object]]:
    r"""Error of $(\mathbb E x, \mathbb E x^2)$ at ``eps`` against score evaluations, for any sampler configuration.

    Each config is keyword arguments of `pc_sample`, or of `ode_sample` when it has ``"method"``; every run
    starts from the same exact-$p_T$ states. The error is the largest absolute deviation of the sample's first
    two moments from the exact ones of $p_{\rm eps}$, with its Monte Carlo standard error.

    Args:
        configs: ``{name: kwargs}``, e.g. ``{"EM+Langevin": {"predictor": "euler_maruyama"},
            "RK4": {"method": "rk4"}}``.
        steps: step counts to sweep.

    Returns:
        Rows ``{"sampler", "steps", "nfe", "error", "se"}``.
    """
    gen = torch.Generator().manual_seed(seed)
    x_T = data.marginal(sde, sde.T).sample(check_int("n_samples", n_samples, 2), gen)
    exact = exact_expectations(data.marginal(sde, eps), ("x", "x2"))
    score_fn = data.score_fn(sde)
    rows = []
    for name, kw in configs.items():
        for n in steps:
            kw = dict(kw)
            g = torch.Generator().manual_seed(seed + 1)
            if "method" in kw:
                x, info = ode_sample(sde, score_fn, x_T.shape, steps=n, eps=eps, x_init=x_T, return_info=True, **kw)
            else:
                x, info = pc_sample(
                    sde, score_fn, x_T.shape, steps=n, eps=eps, x_init=x_T, generator=g, return_info=True, **kw
                )
            phi = torch.stack([x, x**2])
            dev = phi.mean(1) - exact
            k = int(dev.abs().argmax())
            se = (phi.std(1) / math.sqrt(n_samples)).flatten()[k]
            rows.append(
                {"sampler": name, "steps": n, "nfe": info["nfe"], "error": float(dev.abs().max()), "se": float(se)}
            )
    return rows


# -- the verification matrix ----------------------------------------------------------------------------------
SUITE_PREDICTORS = ("euler_maruyama", "reverse_diffusion", "ancestral", "pf_euler", "pf_heun", "pf_rk4")
SUITE_PREDICTORS_CLS = {name: PREDICTORS[name] for name in SUITE_PREDICTORS}
SUITE_FEW_STEP = (*FEW_STEP, *WEAK_STEPS)
"""Few-step ODE solvers (flow-map errors) and stochastic few-step predictors (exact weak errors), on the logSNR
grid (`sdesolve.few_step_orders`)."""
SUITE_DATA: dict[str, Callable[[], Data]] = {
    "gaussian": lambda: gaussian_data(2, dtype=torch.float64),
    "mixture": lambda: ring_mixture(dtype=torch.float64),
}


@dataclass(frozen=True)
class SuiteRow:
    """One line of the verification table."""

    sde: str
    data: str
    predictor: str
    study: OrderStudy
    tol: float

    @property
    def passed(self) -> bool:
        return self.study.passed(self.tol)

    def as_dict(self) -> dict[str, object]:
        s = self.study
        return {
            "sde": self.sde,
            "data": self.data,
            "predictor": self.predictor,
            "kind": s.kind,
            "method": s.method,
            "expected": s.expected,
            "slope": s.fit.slope,
            "ci95": [s.fit.lo, s.fit.hi],
            "tol": self.tol,
            "steps": list(s.steps),
            "errors": s.errors.tolist(),
            "se": s.se.tolist(),
            "passed": bool(self.passed),
        }


def _suite_steps(kind: str, predictor: str, sde: str, data: str, quick: bool) -> tuple[int, ...]:
    """Step counts in each case's asymptotic range (measured; see NOTES-verify.md), a ratio of ≥ 16×.

    Gaussian weak studies (exact propagation) run far out (from 64, 128 in the full suite): ancestral sampling's error has an O(N^-1/2)
    relative correction near t = eps on VP/sub-VP (fitted order 0.76 over 16..256, 0.89 over 64..1024).
    Below these ranges RK4/Heun are pre-asymptotic (fitted 4.2-4.3 from N = 8) and VE needs N ≳ 32
    (g²/v ≈ 2 log(σmax/σmin) ≈ 17).
    """
    if predictor == "pf_rk4":
        # sub-VP approaches order 4 from below (local slopes 3.3, 3.7, 3.87, 3.94 from N = 16), and past
        # N = 2048 the error (~1e-14) meets float64 round-off: 64..2048 is the asymptotic window.
        start = 64
    elif kind == "weak" and predictor == "euler_maruyama" and sde == "ve" and data == "gaussian":
        start = 32  # the O(1/N) term (∝ σ_min²) takes over near N ~ 10^4: fitted 1.90 over 128..4096
    elif kind == "weak":
        start = 64 if quick else 128
    elif data == "mixture":
        start = 64
    elif predictor.startswith("pf_"):
        start = 32  # RK4 from N = 16 fits 4.10 over 16..512 (pre-asymptotic)
    else:
        start = 32 if sde == "ve" else 16
    return tuple(start * 2**k for k in range(4 if quick else 6))


def suite_cases(data: str, predictor: str, quick: bool = False) -> tuple[str, ...]:
    """The order claims the suite measures for a (data, predictor) pair.

    Gaussian data: every claim (weak by exact propagation, strong on a torchsde path). Mixture data: the
    probability-flow predictors pathwise against scipy RK45 (Monte Carlo weak studies of the stochastic
    predictors on the mixture need ~10^6 paths on 2 cores and are left to the notes). ``quick`` skips the
    pathwise probability-flow studies (their weak rows measure the same order).
    """
    if data == "mixture":
        return ("strong",) if predictor.startswith("pf_") else ()
    if predictor == "euler_maruyama" or (predictor.startswith("pf_") and not quick):
        return ("strong", "weak")
    return ("weak",)


def expected_order(kind: str, predictor: str, sde: str, data: str) -> float:
    r"""Theory for the case: the predictor's claim, except Euler–Maruyama's weak order on VE with Gaussian data.

    There the O(h) coefficient of the variance error integrates to $c\,\sigma_{\min}^2/2$ (c = 2 log(σmax/σmin)),
    negligible for σ_min = 0.01: the measured order is 2 until N ~ 10^4 (with σ_min = 0.3 it is 1; tested).
    """
    pred = SUITE_PREDICTORS_CLS[predictor]
    if kind == "weak" and predictor == "euler_maruyama" and sde == "ve" and data == "gaussian":
        return 2.0
    return float(pred.strong_order if kind == "strong" else pred.weak_order)


def run_suite(
    quick: bool = True,
    *,
    sdes: Sequence[str] = tuple(SDES),
    predictors: Sequence[str] = SUITE_PREDICTORS + SUITE_FEW_STEP,
    data: Sequence[str] | None = None,
    progress: Callable[[SuiteRow], None] | None = None,
) -> list[SuiteRow]:
    """Measure every claimed order of {VE, VP, sub-VP} × predictors × {Gaussian, mixture}.

    ``predictors`` may name few-step samplers (`SUITE_FEW_STEP`): ODE solvers' rows are flow-map errors from the
    same prior samples against `Gaussian.flow` (Gaussian) or a tight Dormand–Prince solve (mixture); the stochastic
    ones' rows exact weak errors on Gaussian data (`sdesolve.few_step_orders`).

    ``quick`` (Gaussian data only, < 1 min on 2 cores) uses tolerance ±0.15, 4 step counts (8×) and 128 paths on a
    srk reference of 512 steps; the full suite ±0.1, 6 step counts (32×), 512 paths, srk at 4096 steps, and
    the mixture (probability-flow predictors against scipy RK45).

    Returns:
        One `SuiteRow` per (SDE, data, predictor, strong/weak claim).
    """
    data = (("gaussian",) if quick else tuple(SUITE_DATA)) if data is None else tuple(data)
    tol = 0.15 if quick else 0.1
    n_paths, ref = (128, 512) if quick else (512, 4096)
    rows = []
    for sde_name in sdes:
        sde = get_sde(sde_name)
        for data_name in data:
            dist = SUITE_DATA[check_choice("data", data_name, tuple(SUITE_DATA))]()
            for name in (p for p in predictors if p in SUITE_FEW_STEP):
                if (case := few_step_study(sde, name, data_name, dist)) is None:
                    continue
                kind, steps, errors, expected = case
                study = OrderStudy(kind, "exact, logSNR grid", steps, errors, np.zeros_like(errors), expected)
                rows.append(SuiteRow(type(sde).__name__, data_name, name, study, tol))
                if progress is not None:
                    progress(rows[-1])
            for name in (p for p in predictors if p not in SUITE_FEW_STEP):
                pred = get_predictor(check_choice("predictor", name, SUITE_PREDICTORS), sde)
                for kind in suite_cases(data_name, name, quick):
                    steps = _suite_steps(kind, name, sde_name, data_name, quick)
                    expected = expected_order(kind, name, sde_name, data_name)
                    study_fn = strong_order if kind == "strong" else weak_order
                    study = study_fn(sde, pred, dist, steps=steps, n_paths=n_paths, ref_steps=ref, expected=expected)
                    row = SuiteRow(type(sde).__name__, data_name, name, study, tol)
                    rows.append(row)
                    if progress is not None:
                        progress(row)
    return rows
