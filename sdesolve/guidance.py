r"""Guided scores for class-conditional sampling: plain score functions that every sampler takes.

- Classifier guidance (Song et al. 2021, §5 and App. I.4; Dhariwal & Nichol 2021, eq. 10):
  $\nabla\log p_t(x) + w\,\nabla_x\log p_t(y \mid x)$, with a time-dependent classifier's gradient by autograd
  (or a given one, e.g. the exact $\nabla_x\log p_t(y \mid x)$ of a labelled mixture,
  `sdesolve.analytic.GaussianMixture.class_score_fn`). At $w = 1$ it is the conditional score $\nabla\log p_t(x \mid y)$.
- Classifier-free guidance (Ho & Salimans 2022, eq. 6): $s_u + w(s_c - s_u)$ from a conditional and an unconditional
  score (`cfg_score`), or from one model with a null label, both halves in one batched call (`cfg_one_model`).
  $w = 1$ is the conditional score, $w = 0$ the unconditional one.
- A guidance interval (Kynkäänniemi et al. 2024): the scale applies only where EDM's noise level
  $\tilde\sigma(t) = \sigma_t/\alpha_t$ (`LinearSDE.noise_level`) lies in $(\tilde\sigma_{lo}, \tilde\sigma_{hi}]$; elsewhere the
  result is the conditional score (scale 1), returned bitwise as the conditional model gives it, without evaluating
  the unconditional half.

Every guided score is a `GuidedScore`: a callable ``(x, t) -> score`` that counts the calls of the functions it was
built from (``model_calls``) and the rows they evaluated (``model_rows``); `pc_sample`, `ode_sample` and
`sde_adaptive_sample` report the counts of their run in ``info``. The exact references are in `sdesolve.analytic`
(`GaussianMixture.class_log_prob_fn`, `GuidedGaussian`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ._utils import TimeLike, append_dims, batch_time, check_int, check_interval, check_labels, check_positive
from .sde import LinearSDE, ScoreFn, require_linear

__all__ = [
    "GuidedScore",
    "classifier_guidance",
    "cfg_score",
    "cfg_one_model",
    "guidance_interval",
    "interval_grid",
]

LogProbFn = Callable[[Tensor, Tensor], Tensor]
LabelledScoreFn = Callable[[Tensor, Tensor, Tensor], Tensor]


class GuidedScore:
    """A guided score function ``score(x, t)`` that counts the evaluations of the functions it wraps.

    Attributes:
        model_calls: calls of the wrapped functions so far (score models and classifiers alike).
        model_rows: rows those calls evaluated (a batched conditional + unconditional call of ``B`` samples: ``2B``).
        scale: the guidance scale.
        interval: ``(lo, hi)`` in noise level $\\tilde\\sigma$, or None (guidance everywhere).
    """

    def __init__(self, evaluate: Callable[[Tensor, Tensor], Tensor], scale: float, interval, name: str) -> None:
        self._evaluate, self.scale, self.interval, self._name = evaluate, scale, interval, name
        self.model_calls = 0
        self.model_rows = 0

    def count(self, rows: int) -> None:
        """Record one call of a wrapped function on ``rows`` rows."""
        self.model_calls += 1
        self.model_rows += rows

    def __call__(self, x: Tensor, t: TimeLike) -> Tensor:
        return self._evaluate(x, batch_time(t, x))

    def __repr__(self) -> str:
        return f"{self._name}(scale={self.scale}, interval={self.interval})"


def _check_scale(scale: float) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be a finite number >= 0, got {scale!r}")
    return float(scale)


def guidance_interval(sde: LinearSDE | None, interval: Sequence[float] | None) -> tuple[float, float] | None:
    r"""Validate a guidance interval ``(lo, hi)`` in noise level $\tilde\sigma$: ``0 <= lo < hi`` (``hi`` may be inf).

    Guidance applies where $\tilde\sigma_{lo} < \tilde\sigma(t) \le \tilde\sigma_{hi}$ (Kynkäänniemi et al. 2024,
    eq. 4); ``sde`` gives $\tilde\sigma(t)$ and is required with an interval.
    """
    bounds = check_interval("interval", interval)
    if bounds is None:
        return None
    if sde is None:
        raise ValueError("a guidance interval is in noise level sigma(t)/alpha(t): pass sde= as well")
    require_linear(sde, "a guidance interval")
    return bounds


def _inside(sde: LinearSDE, bounds: tuple[float, float], t: Tensor) -> Tensor:
    """``[B]`` bool: whether $\\tilde\\sigma(t)$ lies in ``(lo, hi]``."""
    level = sde.noise_level(t)
    return (level > bounds[0]) & (level <= bounds[1])


def _guided_rows(sde: LinearSDE | None, bounds, t: Tensor) -> Tensor | None:
    """Rows where guidance applies: None for all rows (no interval), else a ``[B]`` mask (one host read follows)."""
    return None if bounds is None else _inside(sde, bounds, t)


def classifier_guidance(
    score_fn: ScoreFn,
    log_prob_y_fn: LogProbFn | None,
    scale: float = 1.0,
    *,
    grad_fn: ScoreFn | None = None,
    sde: LinearSDE | None = None,
    interval: Sequence[float] | None = None,
) -> GuidedScore:
    r"""$\nabla\log p_t(x) + w\,\nabla_x\log p_t(y \mid x)$: score_sde's class-conditional sampling (Song et al. 2021,
    §5, App. I.4) with a guidance scale $w$ (Dhariwal & Nichol 2021).

    Args:
        score_fn: the unconditional score ``score_fn(x, t)``.
        log_prob_y_fn: ``log_prob_y_fn(x, t) -> [B]``, the time-dependent classifier's $\log p_t(y \mid x)$ of the
            requested labels; its gradient is taken by autograd (per sample, through ``.sum()``). None when
            ``grad_fn`` is given.
        scale: $w \ge 0$ (1: the exact conditional score for an exact classifier).
        grad_fn: ``grad_fn(x, t)`` → $\nabla_x\log p_t(y \mid x)$ like ``x``, instead of autograd.
        sde: the SDE (needed with ``interval``).
        interval: ``(lo, hi)``: scale $w$ where $\tilde\sigma(t) \in (lo, hi]$, scale 1 (the conditional score)
            elsewhere.

    Returns:
        A `GuidedScore`; each evaluation counts one call of ``score_fn`` and one of the classifier.
    """
    if not callable(score_fn):
        raise TypeError(f"score_fn must be callable as score_fn(x, t), got {score_fn!r}")
    if (log_prob_y_fn is None) == (grad_fn is None):
        raise ValueError("pass exactly one of log_prob_y_fn (gradient by autograd) and grad_fn (a given gradient)")
    if not callable(log_prob_y_fn if grad_fn is None else grad_fn):
        raise TypeError("log_prob_y_fn / grad_fn must be callable as f(x, t)")
    scale, bounds = _check_scale(scale), guidance_interval(sde, interval)

    def gradient(x: Tensor, t: Tensor) -> Tensor:
        if grad_fn is not None:
            return grad_fn(x, t)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            log_prob = log_prob_y_fn(xg, t)
            if log_prob.shape != (x.shape[0],):
                raise ValueError(f"log_prob_y_fn must return [B]=[{x.shape[0]}], got {tuple(log_prob.shape)}")
            (grad,) = torch.autograd.grad(log_prob.sum(), xg)
        return grad

    def evaluate(x: Tensor, t: Tensor) -> Tensor:
        guided.count(x.shape[0])
        s = score_fn(x, t)
        guided.count(x.shape[0])
        g = gradient(x, t)
        inside = _guided_rows(sde, bounds, t)
        w = torch.full_like(t, scale) if inside is None else torch.where(inside, scale, 1.0).to(t)
        return s + append_dims(w, x.ndim).to(s) * g

    guided = GuidedScore(evaluate, scale, bounds, "classifier_guidance")
    return guided


def _combine(uncond: Tensor, cond: Tensor, scale: float) -> Tensor:
    """$s_u + w(s_c - s_u)$ (one ``lerp``); the two scores must have one shape (``lerp`` would broadcast a ``[B, 1]``
    half into a guided score of the right shape, which no later check could tell from a correct one)."""
    if uncond.shape != cond.shape:
        raise ValueError(
            f"the conditional and unconditional scores must have one shape, got {tuple(cond.shape)} and "
            f"{tuple(uncond.shape)}"
        )
    return torch.lerp(uncond, cond, scale)


def cfg_score(
    cond_score_fn: ScoreFn,
    uncond_score_fn: ScoreFn,
    scale: float,
    *,
    sde: LinearSDE | None = None,
    interval: Sequence[float] | None = None,
) -> GuidedScore:
    r"""Classifier-free guidance $s_u + w(s_c - s_u)$ from two score functions (Ho & Salimans 2022, eq. 6).

    Args:
        cond_score_fn: the conditional score $s_c(x, t) = \nabla\log p_t(x \mid y)$.
        uncond_score_fn: the unconditional score $s_u(x, t)$.
        scale: $w \ge 0$ (1: $s_c$, 0: $s_u$; > 1 sharpens towards the class).
        sde: the SDE (needed with ``interval``).
        interval: ``(lo, hi)`` in $\tilde\sigma$: guided inside, $s_c$ itself (bitwise, no $s_u$ call) outside.

    Returns:
        A `GuidedScore`: a call inside the interval evaluates both functions on the batch (2 calls, 2B rows).
    """
    for name, fn in (("cond_score_fn", cond_score_fn), ("uncond_score_fn", uncond_score_fn)):
        if not callable(fn):
            raise TypeError(f"{name} must be callable as f(x, t), got {fn!r}")
    scale, bounds = _check_scale(scale), guidance_interval(sde, interval)

    def evaluate(x: Tensor, t: Tensor) -> Tensor:
        guided.count(x.shape[0])
        cond = cond_score_fn(x, t)
        inside = _guided_rows(sde, bounds, t)
        if inside is None:
            guided.count(x.shape[0])
            return _combine(uncond_score_fn(x, t), cond, scale)
        rows = inside.nonzero()[:, 0]  # one host read: the unconditional half only where guidance applies
        if rows.numel() == 0:
            return cond
        guided.count(rows.numel())
        out = cond.clone()
        out[rows] = _combine(uncond_score_fn(x[rows], t[rows]), cond[rows], scale)
        return out

    guided = GuidedScore(evaluate, scale, bounds, "cfg_score")
    return guided


def cfg_one_model(
    labelled_score_fn: LabelledScoreFn,
    labels: int | Sequence[int] | Tensor,
    null_label: int,
    scale: float,
    *,
    sde: LinearSDE | None = None,
    interval: Sequence[float] | None = None,
    num_classes: int | None = None,
) -> GuidedScore:
    r"""Classifier-free guidance from one label-conditioned model (trained with label dropout to ``null_label``):
    $s(x, t, \varnothing) + w\,(s(x, t, y) - s(x, t, \varnothing))$, both halves in one batched call.

    Args:
        labelled_score_fn: ``f(x, t, y)`` → the score of labels ``y`` (``[B]`` int64) for ``x`` ``[B, *event]``.
        labels: the requested label (an int) or one per sample (``[B]``).
        null_label: the label of the unconditional score (not a requested label).
        scale: $w \ge 0$.
        sde: the SDE (needed with ``interval``).
        interval: ``(lo, hi)`` in $\tilde\sigma$: guided inside; outside, one call on the ``B`` conditional rows,
            returned as it is.
        num_classes: if given, labels must lie in ``[0, num_classes)``.

    Returns:
        A `GuidedScore`: each evaluation is one call of ``labelled_score_fn`` on ``2B`` rows inside the interval
        (the batch and its copy with the null label), ``B`` rows outside.
    """
    if not callable(labelled_score_fn):
        raise TypeError(f"labelled_score_fn must be callable as f(x, t, y), got {labelled_score_fn!r}")
    y = check_labels("labels", labels, num_classes)
    if isinstance(null_label, bool) or not isinstance(null_label, int) or null_label < 0:
        raise ValueError(f"null_label must be an int >= 0, got {null_label!r}")
    if bool((y == null_label).any()):
        raise ValueError(f"labels must not contain the null label {null_label} (that is the unconditional score)")
    scale, bounds = _check_scale(scale), guidance_interval(sde, interval)

    def evaluate(x: Tensor, t: Tensor) -> Tensor:
        b = x.shape[0]
        if y.ndim == 1 and y.shape[0] != b:
            raise ValueError(f"labels has {y.shape[0]} entries, the batch has {b} samples")
        cond_y = y.to(x.device).expand(b)
        inside = _guided_rows(sde, bounds, t)
        rows = None if inside is None else inside.nonzero()[:, 0]  # one host read with an interval
        if rows is not None and rows.numel() == 0:
            guided.count(b)
            return labelled_score_fn(x, t, cond_y)
        both_x = torch.cat([x, x if rows is None else x[rows]])
        both_t = torch.cat([t, t if rows is None else t[rows]])
        null = torch.full((both_x.shape[0] - b,), null_label, dtype=torch.int64, device=x.device)
        guided.count(both_x.shape[0])
        s = labelled_score_fn(both_x, both_t, torch.cat([cond_y, null]))
        cond, uncond = s[:b], s[b:]
        if rows is None:
            return _combine(uncond, cond, scale)
        out = cond.clone()
        out[rows] = _combine(uncond, cond[rows], scale)
        return out

    guided = GuidedScore(evaluate, scale, bounds, "cfg_one_model")
    return guided


def interval_grid(sde: LinearSDE, steps: int, eps: float, interval: Sequence[float]) -> Tensor:
    r"""The logSNR grid with nodes on a guidance interval's ends: uniform in $\lambda = -\log\tilde\sigma$ on each
    piece between $T$, the ends inside $(\epsilon, T)$ and $\epsilon$, the ``steps`` shared by $\lambda$-length
    (largest remainders, at least one per piece).

    The interval makes the guided score jump in $t$ at its ends; a step across a jump is first order whatever the
    method. With nodes on the ends (each moved down by ulps until $\tilde\sigma \le$ the end, so that it belongs to
    the piece below it, as in the half-open $(lo, hi]$), a method that evaluates the score on $[t_i, t_{i+1})$ only
    sees one side of each jump; one that also evaluates at $t_{i+1}$ (Heun, RK4, UniPC's corrector) still straddles
    it (measured in the guidance docs).

    Returns:
        A strictly decreasing float64 grid of ``steps + 1`` times from ``T`` to ``eps`` for `ode_sample(grid=...)`.
    """
    sde = require_linear(sde, "interval_grid")
    bounds = check_interval("interval", interval)
    if bounds is None:
        raise ValueError("interval_grid needs an interval (lo, hi)")
    steps, eps = check_int("steps", steps), check_positive("eps", eps)
    ends = torch.tensor([sde.T, eps], dtype=torch.float64)
    lam_T, lam_eps = (float(v) for v in sde.marginal_lambda(ends))
    cuts = sorted(-math.log(b) for b in bounds if 0 < b < math.inf and lam_T < -math.log(b) < lam_eps)
    knots = [lam_T, *cuts, lam_eps]
    lengths = [b - a for a, b in zip(knots[:-1], knots[1:], strict=True)]
    if steps < len(lengths):
        raise ValueError(f"steps must be >= {len(lengths)} (one per piece of the interval grid), got {steps}")
    share = [steps * n / sum(lengths) for n in lengths]
    counts = [max(1, int(s)) for s in share]
    for k in sorted(range(len(share)), key=lambda k: int(share[k]) - share[k])[: steps - sum(counts)]:
        counts[k] += 1
    while sum(counts) > steps:  # the minimum of one per piece overshot: take from the largest
        counts[counts.index(max(counts))] -= 1
    lam = torch.cat(
        [
            torch.linspace(a, b, n + 1, dtype=torch.float64)[:-1]
            for a, b, n in zip(knots[:-1], knots[1:], counts, strict=True)
        ]
        + [torch.tensor([lam_eps], dtype=torch.float64)]
    )
    t = sde.inverse_lambda(lam)
    t[0], t[-1] = sde.T, eps
    for k in torch.cumsum(torch.tensor(counts[:-1]), 0).tolist():  # the nodes on the ends
        t[k] = _on_or_below(sde, t[k], float((-lam[k]).exp()))
    return t


def _on_or_below(sde: LinearSDE, t: Tensor, level: float) -> Tensor:
    r"""``t`` moved down by ulps until $	ilde\sigma(t) \le$ ``level`` in float64 and float32: a node on an interval's end
    then belongs to the piece below it, as the half-open $(lo, hi]$ and a step evaluated from its start require."""
    for dtype in (torch.float64, torch.float32):
        while float(sde.noise_level(t.to(dtype))) > level:
            t = torch.nextafter(t.to(dtype), torch.zeros((), dtype=dtype)).to(torch.float64)
    return t
