r"""DPM-Solver's adaptive step size (Lu et al. 2022, §4.2 and App. C, Alg. 4: DPM-Solver-12 and DPM-Solver-23).

In $\lambda = \log(\alpha/\sigma)$ a step of size $h$ from $(x, \lambda)$ runs a single-step DPM-Solver of order
$k - 1$ and one of order $k$ that share their first evaluations ($k = 2$: DPM-Solver-1 and -2 with $r_1 = \tfrac12$;
$k = 3$: DPM-Solver-2 with $r_1 = \tfrac13$ and DPM-Solver-3 with $r_1, r_2 = \tfrac13, \tfrac23$), so a step costs
$k$ NFE. Per sample, $E = \operatorname{RMS}\big((x_{\rm high} - x_{\rm low})/\delta\big)$ over its coordinates with
$\delta = \max(\varepsilon_{\rm abs}, \varepsilon_{\rm rel}\max(|x_{\rm low}|, |x_{\rm low}^{\rm prev}|))$; the step
is accepted (to $x_{\rm high}$) where $E \le 1$, and $h \leftarrow \min(h\min(\theta E^{-1/k}, g), \lambda_{\rm end} - \lambda)$.
$E$ estimates the lower method's local error, $O(h^k)$, hence the exponent $1/k$ (the official code's
``dpm_solver_adaptive`` uses the same $1/k$ with $k$ its ``order``; defaults $\varepsilon_{\rm rel} = 0.05$,
$\varepsilon_{\rm abs} = 0.0078$, $h_{\rm init} = 0.05$, $\theta = 0.9$ as there).

The growth cap $g$ (``max_growth``, default 2) is ours: the official rule has none, and per sample it accepts
steps on which the pair's difference badly underestimates the error. Measured on N(0.3, 0.5²) data in 2-D
(32–64 samples): without a cap, one VP sample at rtol = 0.01 jumped from $\lambda = -2.96$ to the end
($h = 7.5$) on $E = 0.36$ and ended 2.8 away from the exact flow (median 0.002); VE at rtol = 0.05 ended at
RMS error 1.8 after 15 NFE. With $g = 2$ (k-diffusion's ``sample_dpm_adaptive`` bounds growth by
$1 + \pi/2$ through its arctan limiter) the error falls with the tolerance on every SDE here, for a ramp-up
from $h_{\rm init}$ of about $\log_2(\text{range}/h_{\rm init})$ steps. Even so DPM-Solver-23 in noise
prediction can accept a step whose two solutions agree to 4e-3 while both are 4e-2 off (VP, rtol = 3e-3,
$h = 1.8$ through $\lambda \approx 0$, where $\epsilon$ turns over); the data-prediction pair is steadier.

Unlike the official code, which takes the batch maximum of $E$ (one sample's steps depend on its batch), every
sample carries its own $\lambda$ and $h$: each iteration gathers the samples still running, steps them with
per-sample times (the score gets a ``[B_active]`` ``t``), and scatters the results back, so a finished sample
never moves again and a sample's path does not depend on the rest of the batch. The loop syncs once per
iteration (which samples are still running), as ``adaptive_sde`` and ``dopri5`` do.

``prediction="data"`` is DPM-Solver++ (Lu et al. 2022b; the official ``algorithm_type="dpmsolver++"``): the
same formulas with $(\alpha, \sigma, \lambda, \epsilon)$ replaced by $(\sigma, \alpha, -\lambda, D)$, since
$x' = \tfrac{\sigma'}{\sigma}x + \alpha'\int e^{-(\lambda' - u)}D\,du$ is the noise form
$x' = \tfrac{\alpha'}{\alpha}x - \sigma'\int e^{u - \lambda}\epsilon\,du$ under that exchange (`sdesolve.solvers.exponential`).
The updates are `sdesolve.solvers.dpm_solver`'s own (`first_order`, `second_order`, `third_stage`, `third_order`),
called here with per-sample tensor coefficients instead of the grid programs' floats; the error norm and the
controller are `sdesolve.solvers.step_control`'s.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._utils import append_dims, check_choice, check_int, check_positive
from ..sde import LinearSDE, ScoreFn, data_prediction
from .dpm_solver import PREDICTIONS, first_order, frame, second_order, third_order, third_stage
from .fused import time_dtype
from .programs import Point
from .step_control import StepController, mixed_error

__all__ = ["ORDERS", "PREDICTIONS", "DPM_ADAPTIVE", "dpm_adaptive_solve"]

ORDERS = (2, 3)
"""The higher orders $k$: DPM-Solver-12 ($k = 2$) and DPM-Solver-23 ($k = 3$)."""

DPM_ADAPTIVE = {"dpm_solver_adaptive": (3, "noise"), "dpm_solver_pp_adaptive": (3, "data")}
"""``ode_sample`` methods: DPM-Solver-23 in noise prediction (the paper's) and in data prediction (DPM-Solver++),
as ``(order, prediction)``; DPM-Solver-12 is `dpm_adaptive_solve` with ``order=2``."""

_FRACTIONS = {2: (0.5,), 3: (1 / 3, 2 / 3)}


class _Stepper:
    r"""The SDE's coefficients at per-sample times, the model ($\epsilon$ or $D$) from the score, and one step's pair."""

    def __init__(self, sde: LinearSDE, score_fn: ScoreFn, prediction: str, t_end: float, like: Tensor) -> None:
        self.sde, self.score_fn, self.prediction = sde, score_fn, prediction
        self.t_end, self.ndim, self.tdt = t_end, like.ndim, time_dtype(like.dtype)

    def point(self, t: Tensor) -> Point:
        """The float64 coefficients at the times ``t`` ``[B]``, shaped to broadcast against the state (``t`` kept ``[B]``)."""
        sde, n = self.sde, self.ndim
        columns = (sde.mean_coeff(t), sde.std(t), sde.marginal_lambda(t), sde.noise_level(t))
        return Point(t, *(append_dims(c, n) for c in columns))

    def times(self, lams: Tensor) -> Tensor:
        r"""The times of the half log-SNRs ``lams`` (`LinearSDE.inverse_lambda`, not before ``t_end``; float64)."""
        return self.sde.inverse_lambda(lams).clamp(min=self.t_end)

    def model(self, y: Tensor, p: Point) -> Tensor:
        r"""$\epsilon = -\sigma s(y, t)$ or $D$ (`data_prediction`), from one score call."""
        s = self.score_fn(y, p.t.to(self.tdt))
        if self.prediction == "data":
            return data_prediction(y, s, p.alpha.to(y.dtype), p.sigma.to(y.dtype))
        return s * (-p.sigma).to(y.dtype)

    def pair(self, x: Tensor, p: Point, stages: list[Point], q: Point) -> tuple[Tensor, Tensor]:
        """``(x_low, x_high)`` of one step from ``p`` to ``q`` with the intermediate ``stages``."""
        fp, fq, *fs = (frame(v, self.prediction) for v in (p, q, *stages))
        m0 = self.model(x, p)
        m1 = self.model(first_order(x, m0, fp, fs[0]), stages[0])
        if len(stages) == 1:  # DPM-Solver-12
            return first_order(x, m0, fp, fq), second_order(x, m0, m1, fp, fs[0], fq)
        m2 = self.model(third_stage(x, m0, m1, fp, fs[0], fs[1]), stages[1])
        return second_order(x, m0, m1, fp, fs[0], fq), third_order(x, m0, m2, fp, fs[1], fq)


def dpm_adaptive_solve(
    sde: LinearSDE,
    score_fn: ScoreFn,
    x: Tensor,
    t0: float,
    t1: float,
    *,
    order: int = 3,
    prediction: str = "noise",
    rtol: float = 0.05,
    atol: float = 0.0078,
    h_init: float = 0.05,
    theta: float = 0.9,
    max_growth: float = 2.0,
    check_finite: bool = True,
    max_iterations: int = 10_000,
) -> tuple[Tensor, dict]:
    r"""Integrate the probability flow from ``t0`` down to ``t1`` with per-sample adaptive steps in $\lambda$.

    Args:
        sde: the linear SDE.
        score_fn: ``score_fn(x, t)`` with ``t`` a ``[B_active]`` tensor (the samples still running).
        x: the start state at ``t0``, ``[B, *event]`` (not modified).
        t0: start time (T).
        t1: end time (eps < t0); every sample's last accepted step lands on it exactly.
        order: the higher order $k$ of the pair (2: DPM-Solver-12, 3: DPM-Solver-23); a step costs $k$ NFE.
        prediction: ``"noise"`` (DPM-Solver) or ``"data"`` (DPM-Solver++).
        rtol: relative tolerance $\varepsilon_{\rm rel}$ (> 0).
        atol: absolute tolerance $\varepsilon_{\rm abs}$ (> 0).
        h_init: first step in $\lambda$ (> 0).
        theta: safety factor in (0, 1].
        max_growth: largest factor by which a step may grow (>= 1; ``float("inf")`` is the official rule).
        check_finite: raise ``FloatingPointError`` naming the first sample whose error estimate was non-finite
            (such a sample stops where it was, with its non-finite step written; without the check it is returned).
        max_iterations: raise ``RuntimeError`` beyond this many iterations.

    Returns:
        The state at ``t1`` and ``{"nfe", "nfe_per_sample", "iterations", "accepted", "rejected"}``: ``nfe`` counts
        the batched score calls ($k$ per iteration), ``nfe_per_sample`` (``[B]`` int64) the evaluations each
        sample went through; a sample runs from the first iteration until it lands, so the largest per-sample
        NFE equals ``nfe``. ``accepted``/``rejected`` are ``[B]`` step counts.
    """
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS} (DPM-Solver-12, DPM-Solver-23), got order={order!r}")
    check_choice("prediction", prediction, PREDICTIONS)
    rtol, atol, h_init = check_positive("rtol", rtol), check_positive("atol", atol), check_positive("h_init", h_init)
    theta = check_positive("theta", theta)
    if theta > 1:
        raise ValueError(f"theta must be in (0, 1], got theta={theta!r}")
    if not float(max_growth) >= 1:
        raise ValueError(f"max_growth must be >= 1 (inf: no cap), got max_growth={max_growth!r}")
    max_iterations = check_int("max_iterations", max_iterations)
    if not t1 < t0:
        raise ValueError(f"t1 must be < t0, got t0={t0!r}, t1={t1!r}")
    if float(sde.mean_coeff(torch.tensor(float(t0), dtype=torch.float64))) == 0:
        raise ValueError(
            f"the adaptive DPM-Solver steps in lambda, which is -inf at t0={t0!r} where alpha = 0 ({sde!r}); "
            "use dopri5 or a fixed-step method (they start there exactly)"
        )
    stepper = _Stepper(sde, score_fn, prediction, t1, x)
    controller = StepController(safety=theta, exponent=1.0 / order, max_factor=float(max_growth))
    n, dev = len(x), x.device
    x = x.clone()
    t = torch.full((n,), float(t0), dtype=torch.float64, device=dev)
    lam, lam_end = sde.marginal_lambda(t), float(sde.marginal_lambda(torch.tensor(float(t1), dtype=torch.float64)))
    h = torch.minimum(torch.full_like(t, h_init), lam_end - lam)
    prev = x.abs()  # |x_low| of the previous accepted step (the start state before the first)
    running = torch.ones(n, dtype=torch.bool, device=dev)
    failed = torch.zeros_like(running)
    accepted, rejected = (torch.zeros(n, dtype=torch.int64, device=dev) for _ in range(2))
    fractions, iterations = _FRACTIONS[order], 0
    with torch.no_grad():
        while (idx := running.nonzero().squeeze(1)).numel():  # the one host sync per iteration
            if iterations == max_iterations:
                raise RuntimeError(
                    f"dpm_solver_adaptive did not reach t1={t1!r} within max_iterations={max_iterations}: "
                    f"{idx.numel()} samples still running (smallest step {float(h[idx].min()):.3g} in lambda); "
                    "loosen rtol/atol or check the score"
                )
            iterations += 1
            xa, la, ha = x[idx], lam[idx], h[idx]
            landing = ha >= lam_end - la
            target = torch.where(landing, torch.full_like(la, lam_end), la + ha)
            step = target - la
            stage_lams = torch.cat([la + r * step for r in fractions] + [target])
            found = stepper.times(stage_lams).reshape(len(fractions) + 1, -1)
            t_next = torch.where(landing, torch.full_like(la, t1), found[-1])
            p, q = stepper.point(t[idx]), stepper.point(t_next)
            low, high = stepper.pair(xa, p, [stepper.point(s) for s in found[:-1]], q)
            err = mixed_error(high, low, prev[idx], rtol, atol)
            bad = ~torch.isfinite(err)
            ok = (err <= 1) & ~bad
            keep = append_dims(ok | bad, x.ndim)  # a non-finite step is written so the output shows it
            x[idx] = torch.where(keep, high, xa)
            prev[idx] = torch.where(append_dims(ok, x.ndim), low.abs(), prev[idx])
            t[idx] = torch.where(ok, t_next, t[idx])
            lam_new = torch.where(landing, torch.full_like(la, lam_end), sde.marginal_lambda(t_next))
            lam[idx] = torch.where(ok, lam_new, la)
            h_new = torch.minimum(ha * controller.factor(err), lam_end - lam[idx])
            h[idx] = torch.where(bad, ha, h_new)  # a failed sample keeps the step it failed on (for the message)
            running[idx] = ~((ok & landing) | bad)
            failed[idx] = bad
            accepted[idx] += ok.long()
            rejected[idx] += (~ok).long()
    nfe_per_sample = order * (accepted + rejected)
    if check_finite and bool(failed.any()):
        i = int(failed.nonzero()[0, 0])
        raise FloatingPointError(
            f"non-finite error estimate in dpm_solver_adaptive for sample {i} at t={float(t[i]):.6g} "
            f"(step {float(h[i]):.3g} in lambda towards t1={t1!r}); check the score function for NaN/inf"
        )
    info = {"nfe": order * iterations, "nfe_per_sample": nfe_per_sample, "iterations": iterations}
    return x, {**info, "accepted": accepted, "rejected": rejected}
