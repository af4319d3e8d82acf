r"""Conditional (inverse-problem) sampling for linear observations $y = Ax_0 + n$, $n \sim \mathcal N(0, s^2 I)$.

Two families, both running on the samplers' own loops:

- **Replacement** (score_sde's inpainting and colorization, Song et al. 2021, App. I.2): after every
  predictor and corrector step the observed part $Ax$ is overwritten by a fresh forward sample
  $\alpha_t y + \sigma_t z$ (a `pc_sample` hook). Noiseless observations, $A$ with orthonormal rows (a row
  selection, or score_sde's decoupled colour basis). Exact when the observed and unobserved parts are independent
  a priori.
- **Likelihood guidance** (a conditional score to hand to any sampler, `pc_sample` or `ode_sample` alike):
  $\nabla\log p_t(x\mid y) \approx \nabla\log p_t(x) + \nabla_x\log\mathcal N\big(y;\,A\hat x_0(x),\,
  r_t^2AA^\top + s^2I\big)$ with Tweedie's $\hat x_0 = (x + \sigma_t^2\nabla\log p_t)/\alpha_t$ and the
  Jacobian of $\hat x_0$ by autograd. DPS (Chung et al. 2023) takes $r_t = 0$; ΠGDM (Song et al. 2023)
  $r_t^2 = c\,\sigma_t^2/(\alpha_t^2c + \sigma_t^2)$, the posterior variance of $x_0$ given $x_t$ for data
  $\mathcal N(\mu, cI)$, which makes it exact for such data.

The exact posterior to compare with is ``prior.condition(A, y, noise_std)`` (`sdesolve.analytic`); its
``score_fn(sde)`` is the exact conditional score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._utils import TimeLike, append_dims, batch_time, check_int, check_positive
from .analytic import MultivariateGaussian
from .grids import make_grid
from .predictors import Predictor, get_predictor
from .sampling.pc import StepHook, pc_sample
from .sde import LinearSDE, ScoreFn, require_linear
from .solvers.noise import StepNoise

__all__ = [
    "LinearObservation",
    "inpainting_matrix",
    "colorization_matrix",
    "Replacement",
    "replacement_sample",
    "dps_score",
    "pigdm_score",
    "gaussian_sampler_law",
]


class LinearObservation:
    r"""A linear observation $y = Ax + n$, $n \sim \mathcal N(0, s^2 I)$, of events of a fixed shape.

    Args:
        A: ``[m, d]`` matrix acting on the flattened event (``d`` = event size).
        y: ``[m]`` (one observation for the whole batch) or ``[B, m]`` (one per sample).
        noise_std: $s \ge 0$.
        event_shape: the event shape (default ``(d,)``).
    """

    def __init__(self, A, y, noise_std: float = 0.0, event_shape: Sequence[int] | None = None) -> None:
        A = torch.as_tensor(A)
        if not A.is_floating_point():
            A = A.to(torch.get_default_dtype())
        if A.ndim != 2:
            raise ValueError(f"A must have shape [m, d], got {tuple(A.shape)}")
        y = torch.as_tensor(y, dtype=A.dtype, device=A.device)
        if y.ndim not in (1, 2) or y.shape[-1] != A.shape[0]:
            raise ValueError(f"y must have shape [m] or [B, m] with m={A.shape[0]}, got {tuple(y.shape)}")
        event_shape = torch.Size((A.shape[1],) if event_shape is None else tuple(event_shape))
        if math.prod(event_shape) != A.shape[1]:
            raise ValueError(
                f"event_shape {tuple(event_shape)} has {math.prod(event_shape)} entries, A has d={A.shape[1]}"
            )
        if not (bool(torch.isfinite(A).all()) and bool(torch.isfinite(y).all())):
            raise ValueError("A and y must be finite")
        self.A, self.y = A, y
        self.noise_std = check_positive("noise_std", noise_std, strict=False)
        self.event_shape = event_shape
        # AAᵀ = V diag(e) Vᵀ, once: solves with r²AAᵀ + s²I for any r are then elementwise.
        self._gram_eig, self._gram_vecs = torch.linalg.eigh(A @ A.T)

    @property
    def has_orthonormal_rows(self) -> bool:
        """Whether $AA^\\top = I$ (to 1e-6): the case replacement needs."""
        eye = torch.eye(self.A.shape[0], dtype=self.A.dtype, device=self.A.device)
        return bool(((self.A @ self.A.T - eye).abs() <= 1e-6).all())

    def apply(self, x: Tensor) -> Tensor:
        """$Ax$ for ``x`` ``[B, *event]``: ``[B, m]``."""
        if tuple(x.shape[1:]) != tuple(self.event_shape):
            raise ValueError(
                f"the observation's A acts on events of shape {tuple(self.event_shape)}, but the samples have shape "
                f"{tuple(x.shape)} (event {tuple(x.shape[1:])}): build the LinearObservation for the data's event shape"
            )
        return x.reshape(x.shape[0], -1) @ self.A.to(x).T

    def adjoint(self, v: Tensor) -> Tensor:
        r"""$A^\top v$ for ``v`` ``[B, m]``: ``[B, *event]``."""
        return (v @ self.A.to(v)).reshape(v.shape[0], *self.event_shape)

    def solve_cov(self, v: Tensor, r2: Tensor) -> Tensor:
        r"""$(r^2AA^\top + s^2I)^{-1}v$ for ``v`` ``[B, m]`` and per-sample ``r2`` ``[B]`` (via the eigenbasis of $AA^\top$)."""
        vecs, e = self._gram_vecs.to(v), self._gram_eig.to(v)
        c = v @ vecs
        return (c / (r2[:, None] * e + self.noise_std**2)) @ vecs.T

    def __repr__(self) -> str:
        return (
            f"LinearObservation(m={self.A.shape[0]}, event_shape={tuple(self.event_shape)}, noise_std={self.noise_std})"
        )


def inpainting_matrix(mask: Tensor) -> Tensor:
    """Row selection of the entries where ``mask`` (of the event shape) is true: ``[m, d]``, orthonormal rows."""
    mask = torch.as_tensor(mask)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean tensor of the event shape, got dtype {mask.dtype}")
    if not bool(mask.any()):
        raise ValueError("mask must observe at least one entry")
    eye = torch.eye(mask.numel(), dtype=torch.get_default_dtype())
    return eye[mask.reshape(-1)]


def colorization_matrix(channels: int, height: int, width: int) -> Tensor:
    r"""Gray-scale observation of ``[C, H, W]`` images: per pixel the row $(1, \dots, 1)/\sqrt C$ over its channels.

    ``[H·W, C·H·W]`` with orthonormal rows: score_sde's decoupled first colour coordinate, so a gray image
    $g$ (the channel mean) is the observation $y = \sqrt C\,g$.
    """
    channels, height, width = (
        check_int(n, v) for n, v in (("channels", channels), ("height", height), ("width", width))
    )
    pixel = torch.eye(height * width, dtype=torch.get_default_dtype())
    return (torch.ones(1, channels, 1, dtype=pixel.dtype) / math.sqrt(channels) * pixel[:, None, :]).reshape(
        height * width, channels * height * width
    )


class Replacement(StepHook):
    r"""score_sde's imputation step: $x \leftarrow x + A^\top(\alpha_t y + \sigma_t z - Ax)$, $z \sim \mathcal N(0, I_m)$.

    With orthonormal rows, $Ax$ are coordinates of an orthonormal basis, and the step sets them to a sample of
    the forward marginal of $y$ at $t$ (Song et al. 2021, App. I.2, inpainting and colorization); on the final,
    denoised mean it sets them to $\alpha_t y$. A `StepHook`: `pc_sample(..., hook=Replacement(sde, obs))` applies
    it after every corrector and predictor step (that is `replacement_sample`), its draws $z$ taken from the run's
    noise (so ``seeds=`` key them by sample).

    Args:
        sde: the forward SDE (a `LinearSDE`).
        observation: a noiseless `LinearObservation` with orthonormal rows.
    """

    def __init__(self, sde: LinearSDE, observation: LinearObservation) -> None:
        require_linear(sde, "Replacement")
        if not isinstance(observation, LinearObservation):
            raise TypeError(f"observation must be a LinearObservation, got {observation!r}")
        if observation.noise_std != 0:
            raise ValueError(
                f"replacement needs a noiseless observation, got noise_std={observation.noise_std}; "
                "use dps_score or pigdm_score for noisy observations"
            )
        if not observation.has_orthonormal_rows:
            raise ValueError("replacement needs A with orthonormal rows (A Aᵀ = I); use dps_score or pigdm_score")
        self.sde, self.observation = sde, observation

    def check(self, shape: tuple[int, ...]) -> None:
        obs = self.observation
        if tuple(shape[1:]) != tuple(obs.event_shape):
            raise ValueError(
                f"the samples' event shape {tuple(shape[1:])} is not the observation's {tuple(obs.event_shape)}"
            )
        if obs.y.ndim == 2 and obs.y.shape[0] != shape[0]:
            raise ValueError(f"observation.y has {obs.y.shape[0]} rows, the batch has {shape[0]} samples")

    def __call__(self, x: Tensor, t: Tensor, noise: StepNoise | None, j: int = 0) -> None:
        """Replace the observed part of ``x`` (``[B, *event]``) in place at times ``t`` (``[B]``): with the forward
        sample $\alpha_t y + \\sigma_t z$, $z$ = ``noise.normal(·, j)``, or with $\alpha_t y$ where ``noise`` is None."""
        obs = self.observation
        target = append_dims(self.sde.mean_coeff(t), 2).to(x) * obs.y.to(x)
        if noise is not None:
            target = target + append_dims(self.sde.std(t), 2).to(x) * noise.normal(target.expand(len(x), -1), j)
        x.add_(obs.adjoint(target - obs.apply(x)))


def replacement_sample(
    sde: LinearSDE, score_fn: ScoreFn, observation: LinearObservation, batch_size: int, **kwargs
) -> Tensor | tuple[Tensor, dict]:
    r"""Inpainting / colorization by replacement inside PC sampling (score_sde's ``get_pc_inpainter``/``colorizer``):
    `pc_sample` with the `Replacement` hook.

    Per interval $(t_i, t_{i+1})$: corrector at $t_i$, replacement at $t_i$, predictor to $t_{i+1}$, replacement
    at $t_{i+1}$ (and once at $T$ before the first step). So every predictor runs at its own order (multistep and
    step-program predictors, Restart included), with ``seeds=``, the fused kernels, the finiteness check and the true
    NFE. Two deliberate differences from score_sde: the replacement after the predictor uses the new time
    $t_{i+1}$ (score_sde noises the data at $t_i$), and the denoised result keeps the predictor's mean in the
    unobserved part (score_sde copies the noisy state there, so its ``denoise`` leaves that noise in).

    Args:
        sde: the forward SDE.
        score_fn: the unconditional score ``score_fn(x, t)``.
        observation: noiseless, orthonormal rows (`inpainting_matrix`, `colorization_matrix`).
        batch_size: number of samples ``B`` (the event shape is the observation's).
        **kwargs: every keyword of `pc_sample` but ``hook`` (``predictor``, ``corrector``, ``steps``, ``seeds``,
            ``return_info``, ...); ``dtype`` defaults to the observation's.

    Returns:
        Samples ``[B, *event]`` at ``eps`` (and the info dict with ``return_info``).
    """
    if "hook" in kwargs:
        raise TypeError("replacement_sample() sets the hook itself (Replacement); call pc_sample for another hook")
    hook = Replacement(sde, observation)
    shape = (check_int("batch_size", batch_size), *observation.event_shape)
    if kwargs.get("dtype") is None and kwargs.get("x_init") is None:
        kwargs["dtype"] = observation.A.dtype
    return pc_sample(sde, score_fn, shape, hook=hook, **kwargs)


def _guided_score(score_fn: ScoreFn, sde: LinearSDE, observation: LinearObservation, r2_fn, scale: float) -> ScoreFn:
    r"""$\nabla\log p_t(x) + \zeta\,J^\top A^\top(r_t^2AA^\top + s^2I)^{-1}(y - A\hat x_0)$, $J = \partial\hat x_0/\partial x$."""
    require_linear(sde, "likelihood guidance")
    if not isinstance(observation, LinearObservation):
        raise TypeError(f"observation must be a LinearObservation, got {observation!r}")
    scale = check_positive("scale", scale, strict=False)

    def score(x: Tensor, t: TimeLike) -> Tensor:
        t = batch_time(t, x)
        alpha, sigma2 = sde.mean_coeff(t), sde.std(t) ** 2
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            s = score_fn(xg, t)
            x0 = (xg + append_dims(sigma2, x.ndim) * s) / append_dims(alpha, x.ndim)  # Tweedie
            Ax0 = observation.apply(x0)
            w = observation.solve_cov(observation.y.to(x) - Ax0, r2_fn(alpha, sigma2))
            (guide,) = torch.autograd.grad(Ax0, xg, grad_outputs=w)  # Jᵀ Aᵀ w
        return s.detach() + scale * guide

    return score


def dps_score(score_fn: ScoreFn, sde: LinearSDE, observation: LinearObservation, scale: float = 1.0) -> ScoreFn:
    r"""DPS conditional score (Chung et al. 2023, eq. 16): $\nabla\log p_t(x) + \zeta\nabla_x\log\mathcal N(y; A\hat x_0(x), s^2I)$.

    The likelihood is taken at Tweedie's posterior mean, ignoring the spread of $x_0$ given $x_t$; the paper's
    Alg. 1 uses a tuned $\zeta' / \lVert y - A\hat x_0\rVert$ instead of $\zeta/s^2$ — here $\zeta$ = ``scale``
    (1: the Gaussian likelihood as stated). Needs a differentiable ``score_fn`` and ``noise_std > 0``.

    Args:
        score_fn: the unconditional score.
        sde: the forward SDE.
        observation: `LinearObservation` with ``noise_std > 0``.
        scale: guidance weight $\zeta \ge 0$.

    Returns:
        A score function ``(x, t) -> [B, *event]`` for any sampler.
    """
    if isinstance(observation, LinearObservation) and observation.noise_std == 0:
        raise ValueError("dps_score needs noise_std > 0 (its likelihood N(y; A x̂0, s²I) is singular at s = 0)")
    return _guided_score(score_fn, sde, observation, lambda alpha, sigma2: torch.zeros_like(sigma2), scale)


def pigdm_score(
    score_fn: ScoreFn, sde: LinearSDE, observation: LinearObservation, data_var: float = 1.0, scale: float = 1.0
) -> ScoreFn:
    r"""ΠGDM conditional score (Song et al. 2023, eq. 7–8): $\nabla\log p_t + \zeta\nabla_x\log\mathcal N(y; A\hat x_0, r_t^2AA^\top + s^2I)$.

    $r_t^2 = c\,\sigma_t^2/(\alpha_t^2 c + \sigma_t^2)$ (the paper's $\sigma_t^2/(1 + \sigma_t^2)$ in variance-exploding
    units, $c = 1$), the variance of $x_0 \mid x_t$ for data $\mathcal N(\mu, cI)$: for such data the
    approximation is exact. Works with noiseless observations (``noise_std = 0``) when $AA^\top$ is invertible.

    Args:
        score_fn: the unconditional score.
        sde: the forward SDE.
        observation: a `LinearObservation`.
        data_var: $c > 0$, the data variance the approximation assumes.
        scale: guidance weight $\zeta \ge 0$.

    Returns:
        A score function ``(x, t) -> [B, *event]`` for any sampler.
    """
    c = check_positive("data_var", data_var)
    if isinstance(observation, LinearObservation) and observation.noise_std == 0:
        e = observation._gram_eig
        if not bool((e > 1e-10 * e.abs().max()).all()):
            raise ValueError("pigdm_score with noise_std=0 needs A of full row rank (A Aᵀ invertible)")
    return _guided_score(score_fn, sde, observation, lambda alpha, sigma2: c * sigma2 / (alpha**2 * c + sigma2), scale)


def _affine_step(pred: Predictor, t: Tensor, t_next: Tensor, score_fn: ScoreFn, like: Tensor):
    r"""``(K [d, d], b [d], N [d, d])`` of a step $x' = Kx + b + Nz$, read off probes; a random probe checks it."""
    d, event = like.numel(), like.shape
    eye, zero = (
        torch.eye(d, dtype=like.dtype, device=like.device),
        torch.zeros(1, d, dtype=like.dtype, device=like.device),
    )
    gen = torch.Generator(device=like.device).manual_seed(0)
    probe = torch.randn(2, d, generator=gen, dtype=like.dtype, device=like.device)
    x = torch.cat([zero, eye, torch.zeros_like(eye), probe[:1]])
    noise = torch.cat([zero, torch.zeros_like(eye), eye, probe[1:]])
    out, _ = pred.step(x.reshape(-1, *event), t, t_next, score_fn, noise=noise.reshape(-1, *event))
    out = out.reshape(out.shape[0], d)
    b = out[0]
    K, N = (out[1 : d + 1] - b).T, (out[d + 1 : 2 * d + 1] - b).T
    expect = K @ probe[0] + b + N @ probe[1]
    if not torch.allclose(out[-1], expect, rtol=1e-6, atol=1e-6 * float(expect.abs().max() + 1)):
        raise ValueError(
            f"the step at t={float(t):.4g} is not affine in the state: gaussian_sampler_law needs a score affine "
            "in x (Gaussian data: its exact score, or DPS/PiGDM guidance on it)"
        )
    return K, b, N


def gaussian_sampler_law(
    sde: LinearSDE,
    score_fn: ScoreFn,
    start: MultivariateGaussian,
    *,
    predictor: str | Predictor = "ancestral",
    steps: int = 1000,
    eps: float = 1e-3,
    grid: str | Tensor | None = None,
    replacement: Replacement | None = None,
) -> MultivariateGaussian:
    r"""Exact law of PC sampling without corrector (``denoise=False``) when every step is affine: no Monte Carlo.

    A predictor step with a score affine in $x$ — Gaussian data's exact score, or `dps_score` / `pigdm_score`
    guidance on Gaussian data — is $x' = Kx + b + Nz$ and maps $\mathcal N(m, C)$ to
    $\mathcal N(Km + b, KCK^\top + NN^\top)$; $K, b, N$ are read off probe states. A `Replacement` maps it to
    $\mathcal N(Pm + \alpha A^\top y, PCP + \sigma^2A^\top A)$ with $P = I - A^\top A$, in the order of
    `replacement_sample`. The full-covariance version of `sdesolve.verify.propagate_gaussian`.

    Args:
        sde: the forward SDE.
        score_fn: a score affine in ``x`` (a ``ValueError`` says when it is not).
        start: law of $x_T$ (e.g. ``prior.marginal(sde, sde.T)``), float64 recommended.
        predictor: name or instance (every predictor here is affine given an affine score).
        steps: intervals of the grid.
        eps: final time.
        grid: grid name or decreasing tensor of times.
        replacement: apply this replacement as `replacement_sample` does (its observation's ``y`` must be ``[m]``).

    Returns:
        The law of the final state, a `MultivariateGaussian` of ``start``'s event shape.

    Raises:
        FloatingPointError: the sampler is unstable at this step count (the moments blew up).
    """
    pred = get_predictor(predictor, sde)
    m, C = start.mean.reshape(-1), start.cov
    grid = make_grid(grid, sde, check_int("steps", steps), check_positive("eps", eps), device=m.device, dtype=m.dtype)

    def replace(m: Tensor, C: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        if replacement is None:
            return m, C
        A, y = replacement.observation.A.to(m), replacement.observation.y.to(m)
        if y.ndim != 1:
            raise ValueError(f"gaussian_sampler_law needs one observation y of shape [m], got {tuple(y.shape)}")
        alpha, sigma = replacement.sde.mean_coeff(t), replacement.sde.std(t)
        P = torch.eye(m.numel(), dtype=m.dtype, device=m.device) - A.T @ A
        return P @ m + alpha * (A.T @ y), P @ C @ P + sigma**2 * (A.T @ A)

    m, C = replace(m, C, grid[0])
    for i in range(grid.shape[0] - 1):
        K, b, N = _affine_step(pred, grid[i], grid[i + 1], score_fn, start.mean)
        m, C = K @ m + b, K @ C @ K.T + N @ N.T
        m, C = replace(m, C, grid[i + 1])
    try:
        return MultivariateGaussian(m.reshape(start.event_shape), 0.5 * (C + C.T))
    except ValueError as err:  # K C Kᵀ + N Nᵀ is PSD: only round-off of a blown-up recursion breaks it
        raise FloatingPointError(
            f"the sampler diverged: its propagated covariance (max |C| = {float(C.abs().max()):.3g}) is not "
            "finite and positive semi-definite; take more steps"
        ) from err
