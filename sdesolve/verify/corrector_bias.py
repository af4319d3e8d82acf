r"""The Langevin corrector's bias, measured against closed forms, and PC errors of the correctors that converge.

**Stationary bias at a fixed noise level.** Unadjusted Langevin (ULA) with step $\varepsilon$ on a Gaussian
$\mathcal N(\mu, v)$ is the AR(1) chain $x' = (1 - \varepsilon/v)x + \varepsilon\mu/v + \sqrt{2\varepsilon}z$, so
after $n$ steps from $\mathcal N(\mu, V_0)$ the mean stays $\mu$ and

$$V_{k+1} = (1 - \varepsilon/v)^2V_k + 2\varepsilon \;\to\; V = \frac{2\varepsilon}{1 - (1-\varepsilon/v)^2}
= \frac{v}{1 - \varepsilon/(2v)}\quad(\varepsilon < 2v).$$

With the σ-rule $\varepsilon = 2\alpha\,\mathrm{snr}^2\sigma^2$ this is $V = v/(1 - \alpha\,\mathrm{snr}^2\sigma^2/v)$;
with the batch gradient-norm rule $\varepsilon = 2\alpha\,\mathrm{snr}^2(\mathbb E\|z\|/\mathbb E\|\nabla\log p\|)^2 =
2\alpha\,\mathrm{snr}^2v^2/V_k$ (mean-field: $\nabla\log p = -(x-\mu)/v$ has norm $\sqrt{V_k}/v$ times a
$\chi_d$ variable, as $\|z\|$ is one) the fixed point of the same recursion is $V = v(1 + \alpha\,\mathrm{snr}^2)$.
MALA (`MALACorrector`) leaves $p_t$ invariant: $V = v$. For 1-D mixture data the reference is the ULA
kernel $K(x, y) = \mathcal N(y;\, x + \varepsilon\nabla\log p_t(x),\, 2\varepsilon)$ on a fine grid: the law after
$n$ steps is $p_tK^n$, the stationary law its left eigenvector (no Monte Carlo); the Gaussian closed form
with the mixture's variance is reported beside it.

**PC sampling.** For Gaussian data every predictor step and every ULA step with a state-independent $\varepsilon$
is affine, so the law of the PC chain propagates exactly (as in `sdesolve.verify.propagate_gaussian`):
`pc_gaussian_law`. `grid_rule_study` fits the order of `GridLangevin` (ε ∝ grid spacing) beside the σ-rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .._utils import check_choice, check_int, check_positive
from ..analytic import Gaussian, GaussianMixture
from ..correctors import (
    AcceptanceLog,
    Corrector,
    GridLangevin,
    LangevinCorrector,
    MALACorrector,
    NoCorrector,
    get_corrector,
)
from ..durable import atomic_open
from ..grids import uniform_grid
from ..predictors import Predictor, get_predictor
from ..sampling import pc_sample
from ..sde import SDES, LinearSDE, get_sde
from .orders import OrderStudy, _probed_step

__all__ = [
    "RULES",
    "BIAS_DATA",
    "BIAS_TIMES",
    "stationary_variance",
    "variance_recursion",
    "ula_law_1d",
    "default_steps",
    "BiasRow",
    "corrector_bias",
    "bias_table",
    "pc_gaussian_law",
    "pc_std_error",
    "grid_rule_study",
    "plot_bias",
]

Data = Gaussian | GaussianMixture
RULES = ("sigma", "batch", "mala")
BIAS_DATA: dict[str, Callable[[], Data]] = {
    "gaussian": lambda: Gaussian(torch.tensor(0.3, dtype=torch.float64), 0.5),
    "mixture": lambda: GaussianMixture(
        torch.tensor([0.4, 0.6], dtype=torch.float64),
        torch.tensor([[-0.6], [0.9]], dtype=torch.float64),
        torch.tensor([0.35, 0.5], dtype=torch.float64),
    ),
}


# -- closed forms ---------------------------------------------------------------------------------------------
def _check_params(v: float, snr: float, sigma: float, alpha: float, rule: str) -> tuple[float, float, float, float]:
    check_choice("rule", rule, RULES)
    snr, sigma = check_positive("snr", snr, strict=False), check_positive("sigma", sigma, strict=False)
    return check_positive("v", v), snr, sigma, check_positive("alpha", alpha)


def stationary_variance(v: float, snr: float, sigma: float, rule: str = "sigma", alpha: float = 1.0) -> float:
    r"""Closed-form stationary variance of the corrector on $\mathcal N(\mu, v)$ at noise level $\sigma$.

    ``"sigma"``: $v/(1 - \alpha\,\mathrm{snr}^2\sigma^2/v)$; ``"batch"``: $v(1 + \alpha\,\mathrm{snr}^2)$;
    ``"mala"``: $v$ (module docstring for the derivation).

    Args:
        v: variance of $p_t$ (> 0).
        snr: signal-to-noise ratio (≥ 0).
        sigma: the SDE's $\sigma(t)$ (≥ 0).
        rule: one of `RULES`.
        alpha: score_sde's VP factor $\alpha(t)^2/\alpha(t')^2$ (1 at a fixed t).

    Returns:
        The stationary variance; ``ValueError`` where the σ-rule chain is unstable ($\varepsilon \ge 2v$).
    """
    v, snr, sigma, alpha = _check_params(v, snr, sigma, alpha, rule)
    if rule == "mala":
        return v
    if rule == "batch":
        return v * (1 + alpha * snr**2)
    ratio = alpha * snr**2 * sigma**2 / v
    if ratio >= 1:
        raise ValueError(f"unstable sigma-rule chain: alpha*snr^2*sigma^2/v = {ratio:.4g} must be < 1 (eps < 2v)")
    return v / (1 - ratio)


def variance_recursion(
    v: float, snr: float, sigma: float, n_steps: int, rule: str = "sigma", alpha: float = 1.0, v0: float | None = None
) -> float:
    r"""Exact variance after ``n_steps`` ULA steps from $\mathcal N(\mu, v_0)$ on $\mathcal N(\mu, v)$ (no Monte Carlo).

    $V_{k+1} = (1 - \varepsilon_k/v)^2V_k + 2\varepsilon_k$ with $\varepsilon_k = 2\alpha\,\mathrm{snr}^2\sigma^2$
    (``"sigma"``) or the batch rule's mean-field $2\alpha\,\mathrm{snr}^2v^2/V_k$ (``"batch"``, a batch → ∞);
    ``"mala"`` keeps $V_k = v_0$ when $v_0 = v$ (invariance; other starts are not covered).

    Args:
        v: variance of $p_t$.
        snr: signal-to-noise ratio, as in `stationary_variance`.
        sigma: the SDE's $\sigma(t)$.
        n_steps: Langevin steps (≥ 0).
        rule: ``"sigma"``, ``"batch"`` or ``"mala"``.
        alpha: score_sde's VP factor (1 at a fixed t).
        v0: start variance (default ``v``: the chain starts from the exact $p_t$).
    """
    v, snr, sigma, alpha = _check_params(v, snr, sigma, alpha, rule)
    n_steps = check_int("n_steps", n_steps, minimum=0)
    V = check_positive("v0", v if v0 is None else v0)
    if rule == "mala":
        if V != v:
            raise ValueError(f"rule='mala' has no closed-form transient; start at v0 = v, got v0={V!r}, v={v!r}")
        return V
    for _ in range(n_steps):
        eps = 2 * alpha * snr**2 * (sigma**2 if rule == "sigma" else v**2 / V)
        V = (1 - eps / v) ** 2 * V + 2 * eps
    return V


# -- the ULA kernel on a grid (1-D reference for mixture data) -----------------------------------------------
def _grid_for(dist: Data, eps: float, points_per_kernel: float = 2.0) -> np.ndarray:
    """A grid covering ±10 component stds of ``dist`` with spacing ``√(2ε)/points_per_kernel`` (≤ 1/20 std)."""
    if isinstance(dist, Gaussian):
        means, stds = dist.mean.reshape(-1), dist.std.reshape(-1)
    else:
        means, stds = dist.means.reshape(-1), dist.component_vars.expand_as(dist.means).reshape(-1).sqrt()
    lo, hi = float((means - 10 * stds).min()), float((means + 10 * stds).max())
    step = min(math.sqrt(2 * eps) / points_per_kernel, float(stds.min()) / 20)
    n = int(math.ceil((hi - lo) / step)) + 1
    if n > 6000:
        raise ValueError(f"the ULA kernel grid needs {n} points (> 6000) for eps={eps:.3g}; use a larger step")
    return np.linspace(lo, hi, n)


def ula_law_1d(
    dist: Data, score_fn: Callable[[Tensor], Tensor], eps: float, n_steps: int | None = None
) -> tuple[float, float]:
    r"""Mean and variance of ULA after ``n_steps`` from ``dist`` (None: the stationary law), 1-D, by quadrature.

    The kernel $K_{ij} \propto \exp(-(x_j - x_i - \varepsilon s(x_i))^2/4\varepsilon)$ on a uniform grid of
    spacing $\le\sqrt{2\varepsilon}/2$ (the Riemann sum of a Gaussian of std τ at spacing Δ errs by
    $\approx 2e^{-2\pi^2\tau^2/\Delta^2} < 10^{-30}$), rows normalised; the law $p K^n$ by ``n_steps``
    vector–matrix products, or the stationary law by solving $\pi(K - I) = 0$, $\sum\pi = 1$.

    Args:
        dist: the start law (1-D `Gaussian` or `GaussianMixture`), e.g. the exact $p_t$.
        score_fn: ``x [n, 1] -> score [n, 1]`` of the target.
        eps: step ε > 0.
        n_steps: steps, or None for the stationary law.

    Returns:
        ``(mean, variance)``.
    """
    eps = check_positive("eps", eps)
    if tuple(dist.event_shape) != (1,):
        raise ValueError(f"ula_law_1d needs 1-D data (event shape (1,)), got {tuple(dist.event_shape)}")
    x = _grid_for(dist, eps)
    xt = torch.from_numpy(x).reshape(-1, 1)
    drift = (xt + eps * score_fn(xt)).reshape(-1).numpy()
    K = np.exp(-((x[None, :] - drift[:, None]) ** 2) / (4 * eps))
    K /= K.sum(axis=1, keepdims=True)
    if n_steps is None:
        A = K.T - np.eye(x.size)
        A[-1] = 1.0
        rhs = np.zeros(x.size)
        rhs[-1] = 1.0
        p = np.linalg.solve(A, rhs)
    else:
        p = dist.log_prob(xt).exp().numpy()
        p /= p.sum()
        for _ in range(check_int("n_steps", n_steps, minimum=0)):
            p = p @ K
    mean = float(p @ x)
    return mean, float(p @ (x - mean) ** 2)


# -- Monte Carlo at a fixed noise level -----------------------------------------------------------------------
@dataclass(frozen=True)
class BiasRow:
    """One corrector at one noise level: the variance of its chain, measured and predicted.

    Attributes:
        exact: variance of $p_t$. closed_form: `stationary_variance` (for mixture data the Gaussian formula
            with the mixture's variance: an approximation, reported). stationary: the chain's stationary
            variance (the closed form for Gaussian data, the kernel's for mixture data). expected: the
            variance after ``n_steps`` from $p_t$ (`variance_recursion` or `ula_law_1d`), what ``measured``
            (± ``se``, Monte Carlo over independent chains) must match. acceptance: MALA's mean rate.
    """

    sde: str
    data: str
    rule: str
    t: float
    sigma: float
    snr: float
    n_steps: int
    exact: float
    closed_form: float
    stationary: float
    expected: float
    measured: float
    se: float
    acceptance: float | None = None

    @property
    def z(self) -> float:
        """``(measured - expected) / se``."""
        return (self.measured - self.expected) / self.se

    @property
    def passed(self) -> bool:
        """Measured within 4 standard errors of the prediction."""
        return abs(self.z) <= 4.0

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "z": self.z, "passed": self.passed}


def _corrector_for(rule: str, sde: LinearSDE, data: Data, snr: float, n_steps: int, log: AcceptanceLog) -> Corrector:
    if rule == "mala":
        return MALACorrector(sde, data.log_prob_fn(sde), snr=snr, n_steps=n_steps, acceptance=log)
    return LangevinCorrector(sde, snr=snr, n_steps=n_steps, norm=rule)


def default_steps(v: float, eps: float, cap: int = 1000) -> int:
    r"""Steps to relax within $e^{-8}$ of stationarity from $p_t$: $\lceil 4v/\varepsilon\rceil$ (the AR(1)
    variance contracts by $(1-\varepsilon/v)^2 \approx e^{-2\varepsilon/v}$ a step), at most ``cap``."""
    return max(1, min(cap, math.ceil(4 * v / eps)))


def corrector_bias(
    sde: LinearSDE,
    data: Data,
    t: float,
    snr: float,
    *,
    rule: str = "sigma",
    n_steps: int | None = None,
    n_chains: int = 65536,
    seed: int = 0,
    sde_name: str = "",
    data_name: str = "",
) -> BiasRow:
    r"""Run ``n_chains`` independent corrector chains at fixed ``t`` from the exact $p_t$ and compare variances.

    Args:
        sde: a linear SDE.
        data: 1-D `Gaussian` or `GaussianMixture` (float64).
        t: the fixed time.
        snr: signal-to-noise ratio.
        rule: ``"sigma"``/``"batch"`` (`LangevinCorrector`'s ``norm``) or ``"mala"`` (`MALACorrector`).
        n_steps: corrector steps (default `default_steps`, ≳ 1/snr² at high noise).
        n_chains: independent chains (pooled 1-D samples).
        seed: seeds the start states and the chains.
        sde_name: label of the SDE in the row.
        data_name: label of the data in the row.

    Returns:
        `BiasRow`; ``se`` is $\sqrt{(m_4 - \hat V^2)/n}$ from the sample's fourth central moment.
    """
    check_choice("rule", rule, RULES)
    if tuple(data.event_shape) != (1,):
        raise ValueError(f"corrector_bias pools 1-D chains: data must have event shape (1,), got {data.event_shape}")
    if rule == "batch" and not isinstance(data, Gaussian):
        raise ValueError("rule='batch' has closed forms for Gaussian data only; use rule='sigma' or 'mala'")
    p_t = data.marginal(sde, t)
    tt = torch.tensor(t, dtype=torch.float64)
    sigma = float(sde.std(tt))
    v = float(p_t.std.reshape(-1)[0]) ** 2
    eps = 2 * snr**2 * sigma**2
    closed = stationary_variance(v, snr, sigma, rule)
    n_steps = default_steps(v, eps if rule != "batch" else 2 * snr**2 * v) if n_steps is None else n_steps
    if isinstance(data, Gaussian) or rule == "mala":
        stationary = closed if isinstance(data, Gaussian) else v
        expected = variance_recursion(v, snr, sigma, n_steps, rule) if rule != "mala" else v
    else:
        score = data.score_fn(sde)

        def at_t(x: Tensor) -> Tensor:
            return score(x, tt)

        stationary = ula_law_1d(p_t, at_t, eps)[1]
        expected = ula_law_1d(p_t, at_t, eps, n_steps)[1]
    gen = torch.Generator().manual_seed(seed)
    x = p_t.sample(check_int("n_chains", n_chains, 2), gen)
    log = AcceptanceLog()
    x, _ = _corrector_for(rule, sde, data, snr, n_steps, log).step(x, t, None, data.score_fn(sde), noise=gen)
    d = (x - x.mean()).reshape(-1).double()
    var = float((d**2).mean())
    se = math.sqrt(max(float((d**4).mean()) - var**2, 0.0) / d.numel())
    acc = float(log.as_arrays()[1].mean()) if rule == "mala" else None
    return BiasRow(sde_name, data_name, rule, t, sigma, snr, n_steps, v, closed, stationary, expected, var, se, acc)


BIAS_TIMES = {"VESDE": (0.3, 0.5, 0.85), "VPSDE": (0.1, 0.3, 0.9), "SubVPSDE": (0.1, 0.3, 0.9)}


def bias_table(
    quick: bool = True,
    *,
    sdes: Sequence[str] = ("ve", "vp"),
    data: Sequence[str] = tuple(BIAS_DATA),
    rules: Sequence[str] = RULES,
    snrs: Sequence[float] | None = None,
    n_chains: int | None = None,
    seed: int = 0,
    progress: Callable[[BiasRow], None] | None = None,
) -> list[BiasRow]:
    """The corrector's variance inflation over snr × noise level × SDE × data × rule, measured against theory.

    ``quick``: snr ∈ {0.16, 0.5}, 16 384 chains, the middle and highest noise levels; otherwise snr ∈ {0.1,
    0.16, 0.3, 0.5}, 32 768 chains, three noise levels (`BIAS_TIMES`). The batch rule runs on Gaussian data only.

    Returns:
        One `BiasRow` per case.
    """
    snrs = ((0.16, 0.5) if quick else (0.1, 0.16, 0.3, 0.5)) if snrs is None else tuple(snrs)
    n_chains = (16384 if quick else 32768) if n_chains is None else n_chains
    rows = []
    for sde_name in sdes:
        sde = get_sde(check_choice("sde", sde_name, tuple(SDES)))
        times = BIAS_TIMES[type(sde).__name__][1 if quick else 0 :]
        for data_name in data:
            dist = BIAS_DATA[check_choice("data", data_name, tuple(BIAS_DATA))]()
            for rule in rules:
                if rule == "batch" and data_name != "gaussian":
                    continue
                for t in times:
                    for snr in snrs:
                        row = corrector_bias(
                            sde,
                            dist,
                            t,
                            snr,
                            rule=rule,
                            n_chains=n_chains,
                            seed=seed + len(rows),  # independent chains per row
                            sde_name=sde_name,
                            data_name=data_name,
                        )
                        rows.append(row)
                        if progress is not None:
                            progress(row)
    return rows


# -- predictor–corrector sampling -----------------------------------------------------------------------------
def _ula_step_size(corr: Corrector, t: Tensor, t_next: Tensor, score_fn, like: Tensor) -> Tensor:
    r"""ε of a one-step ULA corrector read off its mean on two probes, $\varepsilon = (\bar x - x)/\nabla\log p_t(x)$.

    Raises ``ValueError`` unless the two agree (a state-dependent step, e.g. ``norm="batch"``, is not affine).
    """
    probes = [like + 1.0, like - 3.0]
    eps = []
    for x in probes:
        x = x.unsqueeze(0)
        _, x_mean = corr.step(x, t, t_next, score_fn, noise=torch.Generator().manual_seed(0))
        eps.append((x_mean - x) / score_fn(x, t))
    if not torch.allclose(eps[0], eps[1], rtol=1e-9, atol=0):
        raise ValueError(f"{corr!r} has a state-dependent step; exact propagation needs the sigma or grid rule")
    return eps[0][0]


def _batch_rule_step(corr: LangevinCorrector, m: Tensor, V: Tensor, p_t: Gaussian, t: Tensor, t_next: Tensor) -> Tensor:
    r"""The batch rule's step for 1-D data in the mean-field limit (batch → ∞), with $x \sim \mathcal N(m, V)$.

    $\varepsilon = 2\alpha\,\mathrm{snr}^2(\mathbb E|z|/\mathbb E|\nabla\log p_t(x)|)^2$, $\mathbb E|z| = \sqrt{2/\pi}$,
    $\mathbb E|x - \mu_t| = \sqrt{2V/\pi}\,e^{-\delta^2/2V} + \delta\operatorname{erf}(\delta/\sqrt{2V})$ (folded
    normal, $\delta = m - \mu_t$), $\alpha = \alpha(t)^2/\alpha(t')^2$.
    """
    delta = m - p_t.mean
    folded = (2 * V / math.pi).sqrt() * torch.exp(-(delta**2) / (2 * V)) + delta * torch.erf(delta / (2 * V).sqrt())
    alpha = (2 * (corr.sde.log_mean_coeff(t) - corr.sde.log_mean_coeff(t_next))).exp()
    return 2 * alpha * corr.snr**2 * (math.sqrt(2 / math.pi) * p_t.var / folded) ** 2


def pc_gaussian_law(
    sde: LinearSDE,
    data: Gaussian,
    predictor: str | Predictor,
    corrector: Corrector | None,
    steps: int,
    eps: float = 1e-3,
) -> Gaussian:
    r"""Exact law of `pc_sample`'s output (``denoise=True``) from the exact $p_T$, for Gaussian data, no Monte Carlo.

    Per interval, the corrector at $t_i$ maps $(m, V)$ to $m + \varepsilon(\mu_t - m)/v_t$,
    $(1 - \varepsilon/v_t)^2V + 2\varepsilon$ (ε read off the corrector); the predictor's affine step
    $x' = ax + b + cz$ gives $am + b$, $a^2V + c^2$ (without $c^2$ on the last, denoised step).

    Args:
        sde: a linear SDE.
        data: diagonal Gaussian data (float64 recommended).
        predictor: name or instance (affine with the exact Gaussian score).
        corrector: None or an unadjusted Langevin corrector with ``n_steps=1``: a state-independent step
            (`LangevinCorrector` with ``norm="sigma"``, `GridLangevin`), or ``norm="batch"`` on 1-D data in the
            large-batch limit (ε from the folded-normal mean of the current law).
        steps: intervals of the uniform grid.
        eps: final time.

    Returns:
        The Gaussian law of the samples.
    """
    pred = get_predictor(predictor, sde)
    corr = get_corrector(corrector, sde)
    if isinstance(corr, MALACorrector) or getattr(corr, "n_steps", 1) != 1:
        raise ValueError(f"exact propagation needs an unadjusted corrector with n_steps=1, got {corr!r}")
    batch_rule = isinstance(corr, LangevinCorrector) and corr.norm == "batch"
    if batch_rule and tuple(data.event_shape) != (1,):
        raise ValueError(f"the batch rule propagates exactly for 1-D data only, got event shape {data.event_shape}")
    score_fn = data.score_fn(sde)
    grid = uniform_grid(sde, check_int("steps", steps), eps, dtype=data.mean.dtype)
    prior = data.marginal(sde, sde.T)
    m, V = prior.mean, prior.var
    for i in range(steps):
        t, t_next = grid[i], grid[i + 1]
        if not isinstance(corr, NoCorrector):
            p_t = data.marginal(sde, t)
            if batch_rule:
                e = _batch_rule_step(corr, m, V, p_t, t, t_next)
            else:
                e = _ula_step_size(corr, t, t_next, score_fn, m)
            m, V = m + e * (p_t.mean - m) / p_t.var, (1 - e / p_t.var) ** 2 * V + 2 * e
        a, b, c = _probed_step(pred, t, t_next, score_fn, m)
        m, V = a * m + b, a**2 * V + (c**2 if i < steps - 1 else 0.0)
    return Gaussian(m, V.sqrt())


def pc_std_error(
    sde: LinearSDE,
    data: Data,
    corrector: Corrector | None,
    steps: int,
    *,
    predictor: str | Predictor = "reverse_diffusion",
    eps: float = 1e-3,
    n_samples: int | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    r"""Relative error of the sample std at ``eps``, $\hat s/s_{\rm eps} - 1$, per coordinate's maximum, and its SE.

    ``n_samples=None`` (Gaussian data): exact, by `pc_gaussian_law`, SE 0. Otherwise Monte Carlo with
    `pc_sample` over ``n_samples`` pooled rows of 1-D data, SE $\approx\sqrt{(m_4/\hat V^2 - 1)/n}/2$.

    Returns:
        ``(error, se)``.
    """
    target = data.marginal(sde, eps).std.reshape(-1)
    if n_samples is None:
        if not isinstance(data, Gaussian):
            raise ValueError("exact propagation needs Gaussian data; pass n_samples= for Monte Carlo")
        law = pc_gaussian_law(sde, data, predictor, corrector, steps, eps)
        err = law.std.reshape(-1) / target - 1
        return float(err[err.abs().argmax()]), 0.0
    if tuple(data.event_shape) != (1,):
        raise ValueError(f"Monte Carlo std errors pool 1-D rows: event shape (1,), got {tuple(data.event_shape)}")
    gen = torch.Generator().manual_seed(seed)
    x = pc_sample(
        sde,
        data.score_fn(sde),
        (check_int("n_samples", n_samples, 2), 1),
        predictor=predictor,
        corrector=corrector,
        steps=steps,
        eps=eps,
        generator=gen,
        x_init=data.marginal(sde, sde.T).sample(n_samples, gen),
    )
    d = (x - x.mean()).reshape(-1).double()
    var = float((d**2).mean())
    se = 0.5 * math.sqrt(max(float((d**4).mean()) / var**2 - 1, 0.0) / d.numel())
    return math.sqrt(var) / float(target[0]) - 1, se


def grid_rule_study(
    sde: LinearSDE,
    data: Gaussian,
    *,
    snr: float = 0.16,
    steps: Sequence[int] = (125, 250, 500, 1000),
    ref_steps: int = 100,
    baseline: str = "batch",
    predictor: str = "reverse_diffusion",
    eps: float = 1e-3,
) -> tuple[OrderStudy, np.ndarray]:
    r"""Exact PC std errors of `GridLangevin` (fitted order, claimed 1) beside a fixed-snr `LangevinCorrector`.

    Args:
        data: Gaussian data (1-D for ``baseline="batch"``).
        steps: step counts, all above ``ref_steps`` (where the grid rule shrinks).
        ref_steps: `GridLangevin`'s reference grid.
        baseline: the fixed-snr corrector's ``norm`` (``"batch"`` plateaus at $\sqrt{1+\mathrm{snr}^2}-1$).

    Returns:
        ``(study, baseline_errors)``: the grid rule's `OrderStudy` on |error| and the baseline's signed errors.
    """
    if min(steps) < ref_steps:
        raise ValueError(f"steps must be >= ref_steps={ref_steps} (the grid rule shrinks there), got {tuple(steps)}")
    grid_corr = GridLangevin(sde, snr=snr, ref_steps=ref_steps)
    base = LangevinCorrector(sde, snr=snr, norm=baseline)
    grid_errs = [pc_std_error(sde, data, grid_corr, n, predictor=predictor, eps=eps)[0] for n in steps]
    base_errs = [pc_std_error(sde, data, base, n, predictor=predictor, eps=eps)[0] for n in steps]
    study = OrderStudy(
        "weak", "exact propagation", tuple(steps), np.abs(grid_errs), np.zeros(len(steps)), GridLangevin.weak_order
    )
    return study, np.array(base_errs)


def plot_bias(rows: Sequence[BiasRow], path) -> None:
    """Write a PNG: measured variance inflation V/v - 1 (± 2 SE) against the prediction, one panel per rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = sorted({r.rule for r in rows}, key=RULES.index)
    fig, axes = plt.subplots(1, len(rules), figsize=(5 * len(rules), 4), squeeze=False)
    for ax, rule in zip(axes[0], rules, strict=True):
        sel = [r for r in rows if r.rule == rule]
        pred = np.array([r.expected / r.exact - 1 for r in sel])
        meas = np.array([r.measured / r.exact - 1 for r in sel])
        err = np.array([2 * r.se / r.exact for r in sel])
        ax.errorbar(pred, meas, yerr=err, fmt="o", ms=3)
        lim = [min(pred.min(), meas.min()), max(pred.max(), meas.max())]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set(xlabel="predicted V/v - 1", ylabel="measured V/v - 1", title=f"rule = {rule}")
    fig.tight_layout()
    with atomic_open(path) as f:
        fig.savefig(f, format=Path(path).suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)
