r"""Sampling entry points: predictor–corrector (`pc_sample`) and probability-flow ODE (`ode_sample`).

Song et al. 2021, Alg. 1 (PC sampling) and §4.3 (probability flow). Both run from ``T`` down to ``eps``
on device through the solver wing (`sdesolve.solvers`): coefficients per grid, fused in-place steps, no host
synchronisation inside the step loop, and a ``FloatingPointError`` naming the first non-finite step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._utils import (
    check_built_on,
    check_choice,
    check_device,
    check_float_dtype,
    check_generator,
    check_int,
    check_like,
    check_positive,
    check_sample,
    check_shape,
    check_time_grid,
    check_tolerance,
)
from .correctors import Corrector, get_corrector
from .grids import make_grid
from .predictors import Predictor, get_predictor
from .sde import SDE, LinearSDE, ScoreFn
from .solvers.brownian_tree import SampleBrownianTree, TreeNoise
from .solvers.fused import RunSpec, TimeTable, time_dtype
from .solvers.loop import check_graph, run
from .solvers.noise import Brownian, BrownianNoise, GeneratorNoise, NoiseSource
from .solvers.ode import FIXED_STEP, ODE_METHODS, integrate
from .solvers.runge_kutta import FlowTerm
from .solvers.seeded import KeyedNormal, SeededNoise, seeds_for

__all__ = ["pc_sample", "ode_sample", "ODE_METHODS", "Brownian"]

_DEFAULT_SNR = 0.16


def _checked_score(score_fn: ScoreFn) -> ScoreFn:
    """Wrap ``score_fn`` with a check of its first output (shape, dtype, device; storage shared with ``x``).

    Validated once per entry point, on the first evaluation. The loop updates ``x`` in place, so a score that
    returns ``x`` itself (or a view of it) is copied from then on; later calls pay one flag test.
    """
    if not callable(score_fn):
        raise TypeError(f"score_fn must be callable as score_fn(x, t), got {score_fn!r}")
    checked, aliases = False, False

    def score(x: Tensor, t) -> Tensor:
        nonlocal checked, aliases
        s = score_fn(x, t)
        if not checked:
            check_like("score_fn", s, x)
            checked, aliases = True, s.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
        return s.clone() if aliases else s

    return score


def _initial_state(sde: SDE, shape, x_init, generator, device, dtype, seeds=None) -> tuple[Tensor, KeyedNormal | None]:
    """The start state at T, owned by the sampler (``x_init`` is copied, never updated in place), and the keyed
    draws of ``seeds`` on its device (None without seeds; the prior is then drawn from them)."""
    shape = check_shape("shape", shape)
    device, generator = check_device("device", device), check_generator("generator", generator)
    dtype = None if dtype is None else check_float_dtype("dtype", dtype)
    x_init = None if x_init is None else check_sample("x_init", x_init)
    home = device or (torch.empty(0).device if x_init is None else x_init.device)  # where the state will live
    keyed = seeds_for(seeds, shape, generator, home)
    if x_init is not None:
        if tuple(x_init.shape) != shape:
            raise ValueError(f"x_init must have shape {shape}, got {tuple(x_init.shape)}")
        return x_init.detach().to(device=device or x_init.device, dtype=dtype or x_init.dtype, copy=True), keyed
    if keyed is not None:
        return keyed.prior(sde, shape, dtype or torch.get_default_dtype()), keyed
    x = sde.prior_sampling(shape, generator=generator, device=device, dtype=dtype or torch.get_default_dtype())
    return x, None


def _noise_source(sde: SDE, times: TimeTable, x: Tensor, generator, keyed: KeyedNormal | None, brownian) -> NoiseSource:
    """The run's noise: keyed by sample (``seeds``), a per-sample Brownian tree, a user's path, or ``generator``."""
    if isinstance(brownian, str):
        check_choice("brownian", brownian, ("per_sample",))
        if keyed is None:
            raise ValueError("brownian='per_sample' keys one path per sample by its seed: pass seeds= as well")
        span = (sde.T - times.values[0], sde.T - times.values[-1])
        return TreeNoise(SampleBrownianTree(keyed, tuple(x.shape[1:]), span), sde.T)
    if brownian is not None:
        if keyed is not None:
            raise ValueError("seeds= with a brownian path: use brownian='per_sample' for a path per seed")
        return BrownianNoise(brownian, sde.T, generator)
    return GeneratorNoise(generator) if keyed is None else SeededNoise(keyed)


def _resolve_grid(sde: SDE, grid, steps: int | None, eps: float) -> Tensor:
    """The decreasing grid in float64 (named grids are built on the host; a tensor grid is upcast exactly)."""
    if isinstance(grid, Tensor):
        check_time_grid("grid", grid, eps, sde.T)  # one host copy, at the entry point
    if grid is not None and not isinstance(grid, str):
        return make_grid(grid, sde, 1, eps, dtype=torch.float64)
    return make_grid(grid, sde, check_int("steps", steps), eps, dtype=torch.float64)


def _fixed_grid(sde: SDE, method: str, steps: int | None, grid, eps: float) -> Tensor | None:
    """Validate ``steps``/``grid`` against ``method``: the float64 decreasing grid of a fixed-step method, else None."""
    check_choice("method", method, ODE_METHODS)
    if method not in FIXED_STEP:
        if steps is not None or grid is not None:
            raise ValueError(f"steps/grid apply to fixed-step methods ({', '.join(FIXED_STEP)}), not method={method!r}")
        return None
    if steps is None and (grid is None or isinstance(grid, str)):
        raise ValueError(f"method={method!r} is fixed-step: pass steps= or a grid tensor")
    return _resolve_grid(sde, grid, steps, eps)


def _master(x: Tensor, score_fn: ScoreFn) -> tuple[Tensor, ScoreFn]:
    """Integrate a half-precision state in float32 (mixed precision's master copy); the score sees ``x.dtype``.

    bfloat16 carries 8 significand bits: a step's increment below half an ulp of the state (2^-9 relative) is
    rounded away, which over 1000 steps biased the variance by −15% (Euler–Maruyama) and +300% (Heun, whose
    stage derivative is a difference of two O(β) terms). Accumulating in float32 leaves only the score input's
    rounding.
    """
    work = time_dtype(x.dtype)
    if work == x.dtype:
        return x, score_fn
    dtype = x.dtype
    return x.to(work), lambda y, t: score_fn(y.to(dtype), t)


def _linear(sde: SDE) -> LinearSDE:
    if not isinstance(sde, LinearSDE):
        raise TypeError(f"the probability flow is integrated for a LinearSDE (f(t) x drift), got {sde!r}")
    return sde


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
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    return_info: bool = False,
    check_finite: bool = True,
    brownian: Brownian | str | None = None,
    compile: bool = False,
    seeds: Sequence[int] | Tensor | None = None,
    cuda_graph: bool = False,
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
        snr: Langevin signal-to-noise ratio for a corrector given by name (default 0.16); a ``ValueError``
            together with a corrector instance.
        corrector_steps: Langevin steps per interval for a corrector given by name.
        denoise: return the last predictor mean (no noise on the final step), as score_sde.
        grid: ``"uniform"`` (default), ``"log_sigma"``/``"logsnr"``, ``"karras"``, ``"cosine"`` or a decreasing 1-D
            tensor of times.
        x_init: start state at ``T`` (default: a prior sample); copied, not modified.
        generator: the only source of randomness.
        progress: show a tqdm bar.
        return_info: also return ``{"nfe", "steps", "grid"}`` (``grid`` in float32 or float64 on the device).
        check_finite: raise ``FloatingPointError`` naming the first non-finite step (one sync after the loop).
        brownian: callable ``(s0, s1) -> W(s1) - W(s0)`` in reversed time ``s = T - t`` (e.g. a torchsde
            ``BrownianInterval``) driving the predictor's noise, to share a path with torchsde (corrector
            draws then come from ``generator``); or ``"per_sample"`` with ``seeds``: one Brownian tree per
            sample (`SampleBrownianTree`) drives predictor and corrector alike, the same path at any step
            count.
        compile: ``torch.compile`` each fused step (equal to eager to float tolerance).
        seeds: one integer per sample (a sequence or an integer tensor of length B) instead of ``generator``:
            every draw of row i (prior, predictor, corrector) depends only on ``seeds[i]``
            (`sdesolve.solvers.seeded`), so a sample is the same in any batch, order or process.
        cuda_graph: capture the whole loop as one CUDA graph and replay it (CUDA states; bitwise equal to
            eager). The score must be capturable: device work only, no host synchronisation.

    Returns:
        Samples ``[B, *event]`` at ``eps`` (and the info dict with ``return_info``).
    """
    eps = check_positive("eps", eps)
    if isinstance(corrector, Corrector) and snr is not None:
        raise ValueError("snr= configures a corrector given by name; set it on the corrector instance instead")
    pred = check_built_on("predictor", get_predictor(predictor, sde), sde)
    corr = get_corrector(
        corrector, sde, snr=_DEFAULT_SNR if snr is None else snr, n_steps=check_int("corrector_steps", corrector_steps)
    )
    check_built_on("corrector", corr, sde)
    x, keyed = _initial_state(sde, shape, x_init, generator, device, dtype, seeds)
    out_dtype = x.dtype
    if cuda_graph and callable(brownian):  # a user's path object answers on the host, draw by draw
        raise ValueError("cuda_graph=True cannot capture a brownian= callable; use brownian='per_sample' or seeds")
    graph = check_graph(cuda_graph, x, progress=progress, compile=compile)
    x, score_fn = _master(x, _checked_score(score_fn))
    times = TimeTable(_resolve_grid(sde, grid, steps, eps), x)
    noise = _noise_source(sde, times, x, generator, keyed, brownian)
    spec = RunSpec(noise, denoise=bool(denoise), compile=bool(compile))
    corrector_kernel = corr.kernel(score_fn, times, x, spec)
    predictor_kernel = pred.kernel(score_fn, times, x, spec)

    def step(x: Tensor, i: int, last: bool) -> None:
        if corrector_kernel is not None:
            corrector_kernel(x, i, last)
        predictor_kernel(x, i, last)

    x = run(step, x, times, noise=noise, check_finite=check_finite, progress=progress, desc="pc_sample", graph=graph)
    x = x.to(out_dtype)
    n = len(times) - 1
    if return_info:
        nfe = n * corr.nfe + getattr(predictor_kernel, "total_nfe", n * pred.nfe)  # step programs count their own
        return x, {"nfe": nfe, "steps": n, "grid": times.device}
    return x


def ode_sample(
    sde: SDE,
    score_fn: ScoreFn,
    shape: Sequence[int],
    *,
    method: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    steps: int | None = None,
    grid: str | Tensor | None = None,
    eps: float = 1e-3,
    x_init: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    return_info: bool = False,
    check_finite: bool = True,
    compile: bool = False,
    lower_order_final: bool = False,
    seeds: Sequence[int] | Tensor | None = None,
    cuda_graph: bool = False,
) -> Tensor | tuple[Tensor, dict]:
    r"""Sample by integrating the probability-flow ODE $\dot x = f - \tfrac12 g^2\nabla\log p_t$ from T to eps.

    Args:
        sde: the forward SDE (a `LinearSDE`).
        score_fn: ``score_fn(x, t)`` → ∇ log p_t(x), shaped like ``x``.
        shape: ``[B, *event]``.
        method: ``"dopri5"`` (adaptive Dormand–Prince on device), ``"euler"``, ``"heun"``, ``"rk4"`` (fixed
            steps on ``grid``/``steps``, on the fused loop), ``"scipy_rk45"`` (score_sde's host path) or
            ``"torchdiffeq_dopri5"`` (both kept for comparison), a few-step solver on the fused loop
            (`sdesolve.solvers.few_step.FEW_STEP`: ``"ddim"``, ``"edm_heun"``, ``"dpm_solver_pp_2m"``, ...), or
            DPM-Solver's adaptive step size with per-sample steps in λ (``"dpm_solver_adaptive"``: DPM-Solver-23,
            noise prediction; ``"dpm_solver_pp_adaptive"``: in data prediction; `dpm_adaptive_solve`).
        rtol: relative tolerance of the adaptive methods (DPM-Solver's paper uses 0.05 with atol = 0.0078 for
            images in [-1, 1]; the 1e-5 default is dopri5's).
        atol: absolute tolerance of the adaptive methods.
        steps: number of intervals of the fixed-step grid (as in `pc_sample`).
        grid: grid name or decreasing 1-D tensor of times for the fixed-step methods (as in `pc_sample`); fixed-step
            methods need ``steps`` or a grid tensor.
        eps: final time (> 0).
        x_init: start state at ``T`` (default: a prior sample).
        generator: source of the prior sample.
        return_info: also return ``{"nfe", "method"}`` (and ``"grid"`` for fixed-step methods; for the
            per-sample DPM-Solver methods also ``"nfe_per_sample"``, ``"accepted"``, ``"rejected"`` (``[B]``) and
            ``"iterations"``: ``"nfe"`` counts batched score calls, the largest per-sample NFE).
        check_finite: raise ``FloatingPointError`` if the result is non-finite (naming the step for fixed steps).
        compile: ``torch.compile`` the fixed-step kernel.
        lower_order_final: lower orders on the last intervals of ``dpm_solver_pp_2m``/``_3m`` and ``unipc_2``/``_3``
            (diffusers' option for very few steps; a ``ValueError`` for other methods).
        seeds: one integer per sample instead of ``generator``: row i's prior draw depends only on ``seeds[i]``
            (fixed-step methods and the per-sample DPM-Solver methods then give the same row in any batch;
            dopri5 and scipy choose their steps for the whole batch, so a row agrees across batches to the
            solver tolerance).
        cuda_graph: capture the fixed-step loop as one CUDA graph and replay it (as in `pc_sample`).

    Returns:
        Samples ``[B, *event]`` at ``eps`` (and the info dict with ``return_info``).
    """
    check_choice("method", method, ODE_METHODS)
    eps = check_positive("eps", eps)
    x, _ = _initial_state(sde, shape, x_init, generator, device, dtype, seeds)
    out_dtype = x.dtype
    if method in FIXED_STEP:
        rtol, atol = check_positive("rtol", rtol), check_positive("atol", atol)
    else:  # a tolerance under the state's resolution can never be met: dopri5 would creep to max_steps
        rtol, atol = (
            check_tolerance("rtol", rtol, time_dtype(out_dtype)),
            check_tolerance("atol", atol, time_dtype(out_dtype)),
        )
    if cuda_graph and method not in FIXED_STEP:
        raise ValueError(f"cuda_graph=True applies to the fixed-step methods, not method={method!r}")
    graph = check_graph(cuda_graph, x, compile=compile)
    x, score_fn = _master(x, _checked_score(score_fn))
    term = FlowTerm(_linear(sde), score_fn)
    t_grid = _fixed_grid(sde, method, steps, grid, eps)
    times = None if t_grid is None else TimeTable(t_grid, x)
    extra: dict = {}
    with torch.no_grad():
        y, nfe = integrate(
            term,
            x,
            method=method,
            t0=sde.T,
            t1=eps,
            rtol=rtol,
            atol=atol,
            times=times,
            check_finite=check_finite,
            compile=bool(compile),
            lower_order_final=bool(lower_order_final),
            graph=graph,
            info=extra,
        )
    if check_finite and times is None and not bool(torch.isfinite(y).all()):  # one sync, after the solve
        raise FloatingPointError(f"non-finite sample from the probability-flow ODE ({method}, T -> eps={eps})")
    info = {"nfe": nfe, "method": method} if times is None else {"nfe": nfe, "method": method, "grid": times.device}
    y = y.to(out_dtype)
    info.update(extra)
    return (y, info) if return_info else y
