r"""Exact log-likelihoods through the probability-flow ODE, and bits per dimension.

The probability flow $\dot x = \tilde f(x, t) = f(x,t) - \tfrac12 g(t)^2\nabla_x\log p_t(x)$ (Song et al. 2021,
eq. 13) is a continuous normalising flow, so by the instantaneous change of variables (Chen et al. 2018,
Thm. 1; Song et al. 2021, App. D.2, eq. 39)

$$\log p_\varepsilon(x) = \log \pi(x_T) + \int_\varepsilon^T \nabla\cdot\tilde f(x_t, t)\,\mathrm dt,$$

with $x_t$ the flow started at $x_\varepsilon = x$ and $\pi$ the SDE's prior. We integrate the augmented state
$[x, \delta]$, $\dot\delta = \nabla\cdot\tilde f$, from ``eps`` up to ``T`` in one solve on device. The divergence is
exact (one vector-Jacobian product per dimension) or Hutchinson's estimate $v^\top J v$ with one probe $v$ per
sample, fixed over the integration (Grathwohl et al. 2019, FFJORD): unbiased, with variance
$2\sum_{i\ne j}\bar A_{ij}^2$ for Rademacher and $2\lVert\bar A\rVert_F^2$ for Gaussian probes, $\bar A$ the
symmetric part of $\int J\,\mathrm dt$ — so Rademacher is exact when the Jacobian is diagonal.

What the number means: ``log_likelihood`` is the density at ``x`` of the *model* — the prior pushed through
the flow of ``score_fn`` from ``T`` down to ``eps``. With the exact score this is $p_\varepsilon$ up to the prior
mismatch ($\pi \ne p_T$); under `VESDE` $p_\varepsilon$ is the data convolved with
$\mathcal N(0, \sigma(\varepsilon)^2 I)$, $\sigma(\varepsilon)\approx\sigma_{\min}$, and under VP/sub-VP it is
$\alpha(\varepsilon)$-scaled data plus noise of variance $\sigma(\varepsilon)^2$.
The result is in nats of the coordinates ``x`` is given in: for the same data as $x \in [0, 1]^d$ and
$y = 2x - 1 \in [-1, 1]^d$, $\log p_Y(y) = \log p_X(x) - d\log 2$ (a model trained on either scale reports
its own); `bits_per_dim` with `dequantization_offset` puts both on the 8-bit scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ._utils import batch_time, check_choice, check_int, check_positive, event_numel, flat_sum, randn_like
from .sampling.prepare import checked_score, fixed_grid
from .sde import SDE, ScoreFn, require_linear
from .solvers.fused import TimeTable
from .solvers.ode import ODE_METHODS, integrate
from .solvers.runge_kutta import FlowTerm, FuncTerm, ODEFunc
from .solvers.seeded import PROBE, seeds_for, stream_key

__all__ = ["log_likelihood", "bits_per_dim", "dequantization_offset", "DIVERGENCES"]

DIVERGENCES = ("hutchinson_rademacher", "hutchinson_gaussian", "exact")

Divergence = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def _exact_divergence(out: Tensor, x: Tensor, probe: Tensor | None) -> Tensor:
    r"""$\operatorname{tr} J = \sum_i \partial_i \tilde f_i$ by one vector-Jacobian product per dimension, ``[B]``.

    Summing output ``i`` over the batch is exact because samples do not interact (a score function acts on
    each sample alone).
    """
    out_flat = out.reshape(out.shape[0], -1)
    div = torch.zeros(out.shape[0], device=out.device, dtype=out.dtype)
    for i in range(out_flat.shape[1]):
        (g,) = torch.autograd.grad(out_flat[:, i].sum(), x, retain_graph=True)
        div = div + g.reshape(out.shape[0], -1)[:, i]
    return div


def _hutchinson_divergence(out: Tensor, x: Tensor, probe: Tensor | None) -> Tensor:
    r"""Hutchinson's $v^\top J v$ (Hutchinson 1989) with one vector-Jacobian product, ``[B]``."""
    (g,) = torch.autograd.grad((out * probe).sum(), x)
    return flat_sum(g * probe)


def _draw_probe(divergence: str, x: Tensor, generator: torch.Generator | None, seeds=None) -> Tensor | None:
    """One probe per sample, shaped like ``x``: Rademacher ±1, standard normal, or None (exact); keyed by
    ``seeds`` (stream ``PROBE``) when given."""
    keyed = seeds_for(seeds, x.shape, generator, x.device)
    if keyed is not None and divergence != "exact":
        if divergence == "hutchinson_gaussian":
            return keyed.normal_(torch.empty_like(x, memory_format=torch.contiguous_format), stream_key(PROBE))
        return keyed.rademacher(stream_key(PROBE), x)
    if divergence == "hutchinson_gaussian":
        return randn_like(x, generator)
    if divergence == "hutchinson_rademacher":
        bits = torch.randint(0, 2, x.shape, generator=generator, device=x.device)
        return (2 * bits - 1).to(x.dtype)
    return None


def _flow_with_divergence(
    sde: SDE, score_fn: ScoreFn, shape: tuple[int, ...], divergence: Divergence, probe: Tensor | None
) -> ODEFunc:
    """Right-hand side of the augmented ODE on flat states ``[B, d + 1]``: ``[f̃(x, t), ∇·f̃(x, t)]``."""
    drift = FlowTerm(require_linear(sde, "log_likelihood"), score_fn)  # finite where alpha = 0 too (data prediction)
    d = math.prod(shape[1:])

    def func(t, y: Tensor) -> Tensor:
        with torch.enable_grad():
            x = y[:, :d].detach().reshape(y.shape[0], *shape[1:]).requires_grad_(True)
            out = drift(batch_time(t, x), x)
            div = divergence(out, x, probe)
        return torch.cat([out.detach().reshape(y.shape[0], d), div.detach()[:, None]], dim=1)

    return func


def _validate_x(x: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape [B, *event], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape [B, *event] with B >= 1 and at least one event dim, got {tuple(x.shape)}")
    return x.detach()


def log_likelihood(
    sde: SDE,
    score_fn: ScoreFn,
    x: Tensor,
    *,
    eps: float = 1e-5,
    divergence: str = "hutchinson_rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    steps: int | None = None,
    grid: str | Tensor | None = None,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    return_info: bool = False,
    seeds: Sequence[int] | Tensor | None = None,
) -> Tensor | tuple[Tensor, dict]:
    r"""Log-likelihood $\log p_\varepsilon(x)$ in nats per sample by the probability-flow ODE (Song et al. 2021, App. D.2).

    $\log p_\varepsilon(x) = \log\pi(x_T) + \int_\varepsilon^T\nabla\cdot\tilde f(x_t, t)\,\mathrm dt$, integrated
    jointly from ``eps`` to ``T`` (see the module docstring for what the density is of).

    Args:
        sde: the forward SDE; its `prior_logp` is $\log\pi$.
        score_fn: ``score_fn(x, t)`` → ∇ log p_t(x), differentiable in ``x`` by autograd; samples must not
            interact (no batch statistics).
        x: points ``[B, *event]`` (float32 or float64, any device).
        eps: start time of the flow, ``0 < eps < T`` (score_sde's default 1e-5).
        divergence: ``"hutchinson_rademacher"`` (default), ``"hutchinson_gaussian"`` (one probe per sample from
            ``generator``, fixed over the integration; unbiased) or ``"exact"`` (one backward pass per dimension
            at every evaluation: for low dimensions).
        rtol: relative tolerance of the adaptive methods; the error norm covers the divergence integral too.
        atol: absolute tolerance of the adaptive methods.
        method: ``"dopri5"`` (default, in-house Dormand–Prince on device), ``"torchdiffeq_dopri5"``,
            ``"scipy_rk45"`` (score_sde's host path), or fixed-step ``"euler"``, ``"heun"``, ``"rk4"``.
        steps: intervals of the fixed-step grid, as in `ode_sample` (integrated in reverse, from ``eps`` up
            to ``T``).
        grid: grid name or decreasing 1-D tensor of times for the fixed-step methods, as in `ode_sample`.
        batch_size: solve in chunks of at most this many samples (memory); each chunk is its own adaptive
            solve, so results change within the solver tolerance, not more. Probes are drawn for the whole
            batch first, so they do not depend on ``batch_size``.
        generator: source of the Hutchinson probes (unused for ``"exact"``).
        return_info: also return a dict with ``"nfe"`` (right-hand-side evaluations over all chunks; each is
            one score evaluation plus one backward pass, or ``d`` for ``"exact"``), ``"method"``,
            ``"divergence"``, ``"prior_logp"`` ``[B]``, ``"delta_logp"`` ``[B]`` (the divergence integral) and
            ``"z"`` (the latent $x_T$, like ``x``).
        seeds: one integer per sample instead of ``generator``: row i's probe depends only on ``seeds[i]``
            (as in `ode_sample`, adaptive methods agree across batches to the solver tolerance).

    Returns:
        ``[B]`` log-likelihoods in nats, in ``x``'s dtype and detached (and the info dict with ``return_info``).
    """
    x = _validate_x(x)
    check_choice("divergence", divergence, DIVERGENCES)
    check_choice("method", method, ODE_METHODS)
    eps = check_positive("eps", eps)
    if eps >= sde.T:
        raise ValueError(f"eps must be < T={sde.T}, got {eps!r}")
    rtol, atol = check_positive("rtol", rtol), check_positive("atol", atol)
    batch_size = x.shape[0] if batch_size is None else check_int("batch_size", batch_size)
    t_grid = fixed_grid(sde, method, steps, grid, eps)
    t_grid = None if t_grid is None else t_grid.flip(0)  # the likelihood integrates from eps up to T
    score_fn = checked_score(score_fn, differentiable=True)  # its first call (x requires grad) is checked

    div_fn = _exact_divergence if divergence == "exact" else _hutchinson_divergence
    probe = _draw_probe(divergence, x, generator, seeds)
    d = event_numel(x)
    chunks, nfe = [], 0
    for start in range(0, x.shape[0], batch_size):
        xc = x[start : start + batch_size]
        pc = None if probe is None else probe[start : start + batch_size]
        func = _flow_with_divergence(sde, score_fn, tuple(xc.shape), div_fn, pc)
        y0 = torch.cat([xc.reshape(xc.shape[0], d), xc.new_zeros(xc.shape[0], 1)], dim=1)
        times = None if t_grid is None else TimeTable(t_grid, y0)
        y, n = integrate(FuncTerm(func), y0, method=method, t0=eps, t1=sde.T, rtol=rtol, atol=atol, times=times)
        chunks.append(y)
        nfe += n
    y = torch.cat(chunks)
    z, delta_logp = y[:, :d].reshape(x.shape), y[:, d]
    prior_logp = sde.prior_logp(z)
    logp = prior_logp + delta_logp
    if not return_info:
        return logp
    info = {"nfe": nfe, "method": method, "divergence": divergence, "prior_logp": prior_logp}
    return logp, {**info, "delta_logp": delta_logp, "z": z}


def dequantization_offset(low: float, high: float, bits: int = 8) -> float:
    r"""Bits-per-dim offset for ``bits``-bit data scaled to ``[low, high]``: $\text{bits} - \log_2(\text{high} - \text{low})$.

    Uniform dequantisation puts the integer data $k \in \{0,\dots,2^{b}-1\}$ at $u = k + U[0,1) \in [0, 2^b)$;
    the model sees $y = \text{low} + (\text{high}-\text{low})\,u/2^b$, so $p_u(u) = p_y(y)\,(\text{high}-\text{low})/2^b$
    and per dimension $-\log_2 p_u = -\log_2 p_y + b - \log_2(\text{high} - \text{low})$. For 8 bits: 8 for
    $[0, 1]$, 7 for $[-1, 1]$ — score_sde's ``offset = 7 - inverse_scaler(-1)``. (score_sde scales by 1/255,
    not 1/256; the difference, $\log_2(256/255) \approx 0.0056$ bits/dim, is ignored there and here.)
    """
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise ValueError(f"need finite low < high, got low={low!r}, high={high!r}")
    return check_int("bits", bits) - math.log2(high - low)


def bits_per_dim(logp: Tensor, x: Tensor, *, offset: float = 0.0) -> Tensor:
    r"""Bits per dimension $-\log p(x) / (d \log 2) + \text{offset}$, ``[B]``, with $d$ the entries per sample.

    Use ``offset=dequantization_offset(-1, 1)`` (= 7) for 8-bit images scaled to $[-1, 1]$ and
    ``dequantization_offset(0, 1)`` (= 8) for $[0, 1]$ to report bpd on the 8-bit scale, as in the
    literature; evaluated on uniformly dequantised data $x$ this is an upper bound on the discrete
    negative log-likelihood (Theis et al. 2016). The default 0 reports the continuous density as is.

    Args:
        logp: ``[B]`` log-likelihoods in nats (e.g. from `log_likelihood`).
        x: the points ``[B, *event]`` (only the shape is used).
        offset: bits added per dimension.

    Returns:
        ``[B]`` bits per dimension.
    """
    if logp.ndim != 1 or x.ndim < 2 or logp.shape[0] != x.shape[0]:
        raise ValueError(
            f"logp must be [B] and x [B, *event] with the same B, got {tuple(logp.shape)} and {tuple(x.shape)}"
        )
    offset = float(offset)
    if not math.isfinite(offset):
        raise ValueError(f"offset must be finite, got {offset!r}")
    return -logp / (event_numel(x) * math.log(2)) + offset
