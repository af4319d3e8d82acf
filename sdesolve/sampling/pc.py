r"""Predictor–corrector sampling (Song et al. 2021, Alg. 1): `pc_sample`, and the hook conditional samplers plug in.

Runs from ``T`` down to ``eps`` on device through the solver wing (`sdesolve.solvers`): coefficients per grid, fused
in-place steps, no host synchronisation inside the step loop, and a ``FloatingPointError`` naming the first
non-finite step. The run is prepared by `sdesolve.sampling.prepare`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import Tensor

from .._utils import check_built_on, check_int, check_positive
from ..correctors import Corrector, get_corrector
from ..predictors import Predictor, get_predictor
from ..sde import SDE, ScoreFn
from ..solvers.fused import RunSpec
from ..solvers.loop import run
from ..solvers.noise import HOOK, Brownian, StepNoise
from .prepare import execution_mode, prepare, resolve_grid

__all__ = ["pc_sample", "StepHook"]

AFTER_CORRECTOR, AFTER_PREDICTOR, AT_START = 0, 1, 2
"""A hook's draw index ``j`` in interval ``i``: after the corrector at ``t_i``, after the predictor at ``t_{i+1}``, and
once before the first step at ``t_0``."""


class StepHook(abc.ABC):
    """A map applied to the state in place after every corrector and predictor step of `pc_sample` (and once at the
    start): score_sde's imputation for inpainting and colorization (`sdesolve.conditional.Replacement`).

    Its draws come from the run's noise source (stream `HOOK`), so ``seeds=`` and ``generator=`` drive them too.
    """

    @abc.abstractmethod
    def __call__(self, x: Tensor, t: Tensor, noise: StepNoise | None, j: int) -> None:
        """Update ``x`` (``[B, *event]``) in place at times ``t`` (``[B]``); draw with ``noise.normal(like, j)``.

        ``noise`` None: ``x`` is the final, denoised mean (no noise is added to it).
        """

    def check(self, shape: tuple[int, ...]) -> None:  # noqa: B027 - a hook without constraints checks nothing
        """Validate the run's ``[B, *event]`` before it starts (``ValueError``)."""


def _bound_hook(hook: StepHook, times, noise, denoise: bool):
    """``hook`` at each of its places in interval ``i``: ``place(x, i, j, last)``."""
    values, batch = times.values, times.batch

    def place(x: Tensor, i: int, j: int, last: bool) -> None:
        k = i + 1 if j == AFTER_PREDICTOR else i
        mean = j == AFTER_PREDICTOR and last and denoise
        hook(
            x, batch[k], None if mean else StepNoise(noise, HOOK, i, values[k], values[min(k + 1, len(values) - 1)]), j
        )

    return place


def pc_sample(
    sde: SDE,
    score_fn: ScoreFn,
    shape: Sequence[int],
    *,
    predictor: str | Predictor | None = "reverse_diffusion",
    corrector: str | Corrector | None = "langevin",
    steps: int = 1000,
    eps: float = 1e-3,
    snr: float | None = None,
    corrector_steps: int = 1,
    denoise: bool = True,
    grid: str | Tensor | None = None,
    x_init: Tensor | None = None,
    generator: torch.Generator | None = None,
    seeds: Sequence[int] | Tensor | None = None,
    brownian: Brownian | str | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    hook: StepHook | None = None,
    execution: str = "eager",
    check_finite: bool = True,
    progress: bool = False,
    return_info: bool = False,
    **legacy,
) -> Tensor | tuple[Tensor, dict]:
    r"""Predictor–corrector sampling from ``T`` down to ``eps`` (Song et al. 2021, Alg. 1).

    At each grid interval $(t_i, t_{i+1})$: ``corrector_steps`` Langevin steps at $t_i$, then one predictor
    step to $t_{i+1}$. Coefficients are tabulated once per grid in float64 and the steps update the state in
    place (`sdesolve.solvers`); the loop runs under ``torch.no_grad()``.

    Args:
        sde: the forward SDE.
        score_fn: ``score_fn(x, t)`` → ∇ log p_t(x), shaped like ``x``; ``t`` is ``[B]`` (float32 or float64,
            float32 for a half-precision state).
        shape: ``[B, *event]``.
        predictor: name (see `PREDICTORS`), instance, or None.
        corrector: name (see `CORRECTORS`), instance, or None.
        steps: number of intervals (``steps + 1`` grid points); ignored when ``grid`` is a tensor.
        eps: final time (> 0).
        snr: Langevin signal-to-noise ratio for a corrector given by name (default: the corrector's, 0.16 for
            ``"langevin"``, score_sde's CIFAR-10 VE setting); a ``ValueError`` together with a corrector instance.
        corrector_steps: Langevin steps per interval for a corrector given by name (its ``n_steps``).
        denoise: return the last predictor mean (no noise on the final step), as score_sde.
        grid: ``"uniform"`` (default), ``"log_sigma"``/``"logsnr"``, ``"karras"``, ``"cosine"`` or a decreasing 1-D
            tensor of times.
        x_init: start state at ``T`` (default: a prior sample); copied, not modified.
        generator: the only source of randomness.
        seeds: one integer per sample (a sequence or an integer tensor of length B) instead of ``generator``:
            every draw of row i (prior, predictor, corrector, hook) depends only on ``seeds[i]``
            (`sdesolve.solvers.seeded`), so a sample is the same in any batch, order or process.
        brownian: callable ``(s0, s1) -> W(s1) - W(s0)`` in reversed time ``s = T - t`` (e.g. a torchsde
            ``BrownianInterval``) driving the predictor's increments, to share a path with torchsde (every other
            draw then comes from ``generator``); or ``"per_sample"`` with ``seeds``: one Brownian tree per sample
            (`SampleBrownianTree`) drives every draw, the same path at any step count.
        device: device of a prior draw.
        dtype: dtype of the samples.
        hook: a `StepHook` applied after every corrector and predictor step (e.g. `Replacement`, score_sde's
            imputation; `replacement_sample` passes it).
        execution: ``"eager"``, ``"compile"`` (``torch.compile`` each fused step; equal to eager to float
            tolerance) or ``"cuda_graph"`` (the whole loop captured as one CUDA graph and replayed: CUDA states,
            bitwise equal to eager; the score must be capturable: device work only, no host synchronisation).
            The keywords it replaces, ``compile=True`` and ``cuda_graph=True``, are still accepted (deprecated).
        check_finite: raise ``FloatingPointError`` naming the first non-finite step (one sync after the loop).
        progress: show a tqdm bar.
        return_info: also return ``{"nfe", "steps", "grid"}`` (``grid`` in float32 or float64 on the device;
            ``nfe`` the score evaluations of the run; a guided score (`sdesolve.guidance.GuidedScore`) adds
            ``model_calls`` and ``model_rows``, the model evaluations behind them).

    Returns:
        Samples ``[B, *event]`` at ``eps`` (and the info dict with ``return_info``).
    """
    eps = check_positive("eps", eps)
    if isinstance(corrector, Corrector) and snr is not None:
        raise ValueError("snr= configures a corrector given by name; set it on the corrector instance instead")
    pred = check_built_on("predictor", get_predictor(predictor, sde), sde)
    n_steps = check_int("corrector_steps", corrector_steps)
    corr = get_corrector(corrector, sde, snr=snr, n_steps=None if n_steps == 1 else n_steps)
    check_built_on("corrector", corr, sde)
    if hook is not None and not isinstance(hook, StepHook):
        raise TypeError(f"hook must be a StepHook (e.g. Replacement) or None, got {hook!r}")
    r = prepare(
        "pc_sample", sde, score_fn, shape, grid=resolve_grid(sde, grid, steps, eps), x_init=x_init,
        generator=generator, seeds=seeds, device=device, dtype=dtype,
        execution=execution_mode("pc_sample", execution, legacy), brownian=brownian, progress=progress,
    )  # fmt: skip
    if hook is not None:
        hook.check(tuple(r.x.shape))
    spec = RunSpec(r.noise, denoise=bool(denoise), compile=r.compile)
    corrector_kernel = corr.kernel(r.score, r.times, r.x, spec)
    predictor_kernel = pred.kernel(r.score, r.times, r.x, spec)
    place = None if hook is None else _bound_hook(hook, r.times, r.noise, spec.denoise)

    def step(x: Tensor, i: int, last: bool) -> None:
        if place is not None and i == 0:
            place(x, i, AT_START, last)
        if corrector_kernel is not None:
            corrector_kernel(x, i, last)
            if place is not None:
                place(x, i, AFTER_CORRECTOR, last)
        predictor_kernel(x, i, last)
        if place is not None:
            place(x, i, AFTER_PREDICTOR, last)

    x = run(step, r.x, r.times, noise=r.noise, check_finite=check_finite, progress=progress, desc="pc_sample",
            graph=r.graph).to(r.dtype)  # fmt: skip
    if not return_info:
        return x
    n = len(r.times) - 1
    nfe = predictor_kernel.calls(n) + (0 if corrector_kernel is None else corrector_kernel.calls(n))
    return x, {"nfe": nfe, "steps": n, "grid": r.times.device, **r.usage()}
