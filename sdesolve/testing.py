r"""Test helpers for users' own samplers: hypothesis strategies and assertions against exact oracles.

The way to test a new predictor: build it on an SDE from `sdes()`, then `check_sampler(MyPredictor(sde), sde,
data)` fits its weak order against the exact law $p_{\rm eps}$ (exact mean/variance propagation for Gaussian
data, so no Monte Carlo noise) and fails when the slope misses the claimed order. Check a corrector or a
whole sampler's output with `assert_moments_close(samples, dist)`::

    from hypothesis import given
    from sdesolve.testing import sdes, gaussian_data, check_sampler

    @given(sde=sdes(ORDER_KINDS), data=gaussian_data())
    def test_my_predictor(sde, data):
        check_sampler(MyPredictor(sde), sde, data)

The strategies need hypothesis (``pip install -e ".[testing]"`` from a clone).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._utils import check_choice
from .analytic import Gaussian, GaussianMixture
from .predictors import Predictor
from .sde import EDMSDE, SCORE_SDES, SDES, VESDE, VPSDE, CosineSDE, LinearSDE, RectifiedFlowSDE, SubVPSDE
from .verify import OrderFit, OrderStudy, exact_expectations, fit_order, weak_order

__all__ = [
    "ORDER_KINDS",
    "sdes",
    "gaussian_data",
    "mixtures",
    "time_grids",
    "assert_moments_close",
    "assert_order",
    "check_sampler",
]


ORDER_KINDS = ("vp", "subvp")
"""SDEs on which a weak-order fit over 64–1024 steps with Gaussian data measures the declared order. On VE the
weak error of the first-order predictors is a sum of terms of opposite sign: Euler–Maruyama's fitted slope ranges
from 0.2 to 2.4 over drawn VE schedules (the error even grows from 64 to 128 steps on some), so VE is no place to
fit an order."""


def _st():
    try:
        from hypothesis import strategies
    except ImportError as err:  # pragma: no cover - hypothesis is a dev dependency
        raise ImportError(
            'sdesolve.testing strategies need hypothesis: pip install -e ".[testing]" from the clone'
        ) from err
    return strategies


def sdes(kinds: Sequence[str] = SCORE_SDES, T: float | tuple[float, float] = 1.0):
    """Strategy of SDEs named in `sdesolve.sde.SDES`: VE with σ_min ∈ [0.005, 0.05], σ_max ∈ [5, 100]; VP/sub-VP with
    β_min ∈ [0.05, 0.5], β_max ∈ [5, 25]; rectified flow and cosine; EDM with σ_max ∈ [5, 100] (its T).

    Args:
        kinds: names in `SDES` (default score_sde's three).
        T: the end time, or a range ``(lo, hi)`` to draw it from (a T misplaced in a formula shows only at T ≠ 1);
            EDM's T is its σ_max.
    """
    st = _st()
    ts = st.just(float(T)) if isinstance(T, (int, float)) else st.floats(float(T[0]), float(T[1]))
    beta = {"beta_min": st.floats(0.05, 0.5), "beta_max": st.floats(5.0, 25.0), "T": ts}
    options = {
        "ve": st.builds(VESDE, sigma_min=st.floats(0.005, 0.05), sigma_max=st.floats(5.0, 100.0), T=ts),
        "vp": st.builds(VPSDE, **beta),
        "subvp": st.builds(SubVPSDE, **beta),
        "rectified_flow": st.builds(RectifiedFlowSDE, T=ts),
        "cosine": st.builds(CosineSDE, T=ts),
        "edm": st.builds(EDMSDE, sigma_max=st.floats(5.0, 100.0)),
    }
    return st.one_of(*(options[check_choice("kinds", k, tuple(SDES))] for k in kinds))


def gaussian_data(dtype: torch.dtype = torch.float64):
    """Strategy of 1-D Gaussian data N(μ, s²), μ ∈ [-1, 1], s ∈ [0.2, 1.5]."""
    st = _st()
    return st.builds(
        lambda m, s: Gaussian(torch.tensor([m], dtype=dtype), torch.tensor([s], dtype=dtype)),
        st.floats(-1.0, 1.0),
        st.floats(0.2, 1.5),
    )


def mixtures(max_components: int = 4, dtype: torch.dtype = torch.float64):
    """Strategy of 1-D Gaussian mixtures: 2..``max_components`` components, means in [-2, 2], stds in [0.1, 1]."""
    st = _st()

    @st.composite
    def build(draw):
        k = draw(st.integers(2, max_components))
        w = draw(st.lists(st.floats(0.1, 1.0), min_size=k, max_size=k))
        m = draw(st.lists(st.floats(-2.0, 2.0), min_size=k, max_size=k))
        s = draw(st.lists(st.floats(0.1, 1.0), min_size=k, max_size=k))
        return GaussianMixture(
            torch.tensor(w, dtype=dtype), torch.tensor(m, dtype=dtype).reshape(k, 1), torch.tensor(s, dtype=dtype)
        )

    return build()


def time_grids(T: float = 1.0, eps: float = 1e-3, min_steps: int = 2, max_steps: int = 64):
    """Strategy of strictly decreasing float64 grids from ``T`` to ``eps`` with random interior points."""
    st = _st()
    inner = st.lists(
        st.floats(eps, T, exclude_min=True, exclude_max=True),
        min_size=min_steps - 1,
        max_size=max_steps - 1,
        unique=True,
    )
    return inner.map(lambda ts: torch.tensor([T, *sorted(ts, reverse=True), eps], dtype=torch.float64)).filter(
        lambda g: bool((g[:-1] - g[1:] > 1e-9).all())
    )


def assert_moments_close(samples: Tensor, dist: Gaussian | GaussianMixture, sigmas: float = 4.0) -> None:
    r"""Assert the sample mean and second moment of every coordinate match ``dist``'s within ``sigmas`` standard errors.

    The standard error of $\overline{\varphi}$ is the sample sd of $\varphi(x)$ over $\sqrt n$; ``sigmas = 4`` gives
    a false-alarm rate ≈ 6e-5 per moment.

    Args:
        samples: ``[n, *event]``.
        dist: the exact law (`Gaussian` or `GaussianMixture`).

    Raises:
        AssertionError: naming the moment, the coordinate, the deviation and its standard error.
    """
    n = samples.shape[0]
    if n < 2:
        raise ValueError(f"samples needs at least 2 rows, got shape {tuple(samples.shape)}")
    x = samples.to(dist.mean.dtype)
    phi = torch.stack([x, x**2])
    dev = phi.mean(1) - exact_expectations(dist, ("x", "x2"))
    se = phi.std(1) / math.sqrt(n)
    bad = dev.abs() > sigmas * se
    if bool(bad.any()):
        k = int(bad.flatten().nonzero()[0])
        moment = ("E[x]", "E[x^2]")[k // dev[0].numel()]
        raise AssertionError(
            f"{moment} off by {float(dev.flatten()[k]):.3g} = {float(dev.flatten()[k] / se.flatten()[k]):.1f} "
            f"standard errors (se {float(se.flatten()[k]):.3g}, allowed {sigmas}) at flat coordinate {k % dev[0].numel()}"
        )


def assert_order(
    errors: Sequence[float], steps: Sequence[int], expected: float, tol: float = 0.15, *, sharp: bool = True
) -> OrderFit:
    """Assert the fitted log-log order of ``errors`` against ``steps``: within ``tol`` of ``expected``
    (``sharp=True``), or at least ``expected - tol`` (``sharp=False``: the declared order is a lower bound).

    Returns:
        The `OrderFit` (slope and 95% interval), for further checks.
    """
    fit = fit_order(steps, errors)
    ok = fit.within(expected, tol) if sharp else fit.slope >= expected - tol
    if not ok:
        claim = f"within ±{tol} of {expected}" if sharp else f"at least {expected} - {tol}"
        raise AssertionError(
            f"fitted order {fit.slope:.3f} (95% CI [{fit.lo:.3f}, {fit.hi:.3f}]) is not {claim}; "
            f"errors {list(errors)} at steps {list(steps)}"
        )
    return fit


def check_sampler(
    predictor: Predictor,
    sde: LinearSDE,
    data: Gaussian | GaussianMixture,
    *,
    steps: Sequence[int] = (64, 128, 256, 512, 1024),
    expected: float | None = None,
    tol: float = 0.15,
    sharp: bool = False,
    eps: float = 1e-3,
) -> OrderStudy:
    r"""Measure a predictor's weak order against the exact $p_{\rm eps}$ and assert it (see `verify.weak_order`).

    A declared weak order $p$ is a lower bound: the error expands as $C h^p + O(h^{p+1})$ (Talay & Tubaro 1990)
    and $C$ vanishes for some (SDE, data, statistic) combinations — Euler–Maruyama on VE with Gaussian data
    measures order ~2, not 1. So by default a correct sampler passes when the fitted order is at least
    ``expected - tol``; ``sharp=True`` asserts ``|slope - expected| <= tol``, for combinations known to be sharp.
    Draw SDEs from `ORDER_KINDS` (VP and sub-VP): on VE the error terms cancel and no fitted slope is reliable.

    Gaussian data uses exact propagation (the step must be affine in ``x`` and ``noise``, as every step with the
    exact Gaussian score is); mixtures use Monte Carlo against a torchsde reference and also assert the Monte
    Carlo error stays below a quarter of the smallest error.

    Args:
        predictor: the sampler step under test (a `Predictor` instance built on ``sde``).
        expected: order to assert (default: ``predictor.weak_order``).
        sharp: assert the order itself, not a lower bound.

    Returns:
        The `OrderStudy`.
    """
    study = weak_order(sde, predictor, data, steps=steps, eps=eps, expected=expected)
    if not study.mc_ok:
        raise AssertionError(f"Monte Carlo error {study.se.max():.3g} too large for errors {study.errors.tolist()}")
    assert_order(study.errors, study.steps, study.expected, tol, sharp=sharp)
    return study
