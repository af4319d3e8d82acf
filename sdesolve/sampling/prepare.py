r"""The one run preparation shared by every entry point: `pc_sample`, `ode_sample`, `sde_adaptive_sample`, conditional
sampling (a `pc_sample` hook) and `log_likelihood`.

Validation of the arguments, the start state (a prior draw from a generator or from per-sample seeds, or a copy of
``x_init``), the grid in float64, the noise source every stochastic draw comes from, the score's first-call checks,
half-precision master copies, the execution mode (eager, compiled, one CUDA graph) and the final finiteness check
are written once here, so an entry point is its own loop and nothing else.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._utils import (
    check_all_finite,
    check_available,
    check_choice,
    check_float_dtype,
    check_generator,
    check_int,
    check_like,
    check_sample,
    check_shape,
    check_time_grid,
)
from ..grids import make_grid
from ..sde import SDE, ScoreFn
from ..solvers.brownian_tree import SampleBrownianTree, TreeNoise
from ..solvers.fused import TimeTable, time_dtype
from ..solvers.loop import check_graph
from ..solvers.noise import Brownian, BrownianNoise, GeneratorNoise, NoiseSource
from ..solvers.ode import FIXED_STEP, ODE_METHODS
from ..solvers.seeded import KeyedNormal, SeededNoise, seeds_for

__all__ = [
    "EXECUTIONS",
    "Run",
    "prepare",
    "checked_score",
    "initial_state",
    "noise_source",
    "resolve_grid",
    "fixed_grid",
    "master",
    "execution_mode",
    "finish",
    "model_usage",
]

EXECUTIONS = ("eager", "compile", "cuda_graph")
"""How the fixed-step loop runs: step by step (``"eager"``), each fused step through ``torch.compile``, or the whole
loop captured once as a CUDA graph and replayed (bitwise equal to eager)."""


def checked_score(score_fn: ScoreFn, *, differentiable: bool = False) -> ScoreFn:
    """Wrap ``score_fn`` with checks of its first call: a clear error when it fails on the state's shape, then its
    output's shape, dtype, device and finiteness (and, with ``differentiable``, that it depends on ``x`` through autograd).

    The loop updates ``x`` in place, so a score that returns ``x`` itself (or a view of it) is copied from then on;
    later calls pay one flag test. No extra evaluation: the checks read the run's own first call. A score that
    carries ``data_prediction(x, t)`` (exact oracles, the x₀/velocity/denoiser adapters; samplers read it where
    α(t) = 0) keeps it, checked the same way.
    """
    if not callable(score_fn):
        raise TypeError(f"score_fn must be callable as score_fn(x, t), got {score_fn!r}")
    score = _checked(score_fn, "score_fn", differentiable)
    if callable(getattr(score_fn, "data_prediction", None)):
        score.data_prediction = _checked(score_fn.data_prediction, "score_fn.data_prediction", differentiable)
    return score


def _checked(fn: ScoreFn, name: str, differentiable: bool) -> ScoreFn:
    """``fn`` with `checked_score`'s first-call checks under ``name``."""
    checked, aliases = False, False

    def call(x: Tensor, t) -> Tensor:
        nonlocal checked, aliases
        if checked:
            s = fn(x, t)
            return s.clone() if aliases else s
        try:
            s = fn(x, t)
        except (RuntimeError, IndexError) as err:  # torch's broadcasting/shape errors
            raise ValueError(
                f"{name} failed on x of shape {tuple(x.shape)} (event shape {tuple(x.shape[1:])}); "
                f"is x shaped like the model's data? ({type(err).__name__}: {err})"
            ) from err
        check_like(name, s, x)
        if not bool(torch.isfinite(s).all()):  # one host sync, on the first call only
            raise FloatingPointError(
                f"{name} returned non-finite values (NaN or inf) on its first call, at step 0 (x of shape "
                f"{tuple(x.shape)}, t = {t if not isinstance(t, Tensor) else t.flatten()[:4].tolist()}); check the "
                "model or score"
            )
        if differentiable and x.requires_grad and not s.requires_grad:
            raise TypeError(
                f"{name}'s output does not depend on x through autograd (computed under torch.no_grad() or "
                "detached?); the divergence of the probability flow needs a differentiable score"
            )
        checked, aliases = True, s.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
        return s.clone() if aliases else s

    return call


def initial_state(sde: SDE, shape, x_init, generator, device, dtype, seeds=None) -> tuple[Tensor, KeyedNormal | None]:
    """The start state at T, owned by the sampler (``x_init`` is copied, never updated in place), and the keyed
    draws of ``seeds`` on its device (None without seeds; the prior is then drawn from them)."""
    shape = check_shape("shape", shape)
    device, generator = check_available("device", device), check_generator("generator", generator)
    dtype = None if dtype is None else check_float_dtype("dtype", dtype)
    if x_init is not None:  # a NaN start would surface steps later as the score's or the solver's fault
        x_init = check_all_finite("x_init", check_sample("x_init", x_init))
        check_available("x_init.device", x_init.device)
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


def noise_source(
    sde: SDE, times: TimeTable | None, x: Tensor, generator, keyed: KeyedNormal | None, brownian
) -> NoiseSource:
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


def resolve_grid(sde: SDE, grid, steps: int | None, eps: float) -> Tensor:
    """The decreasing grid in float64 (named grids are built on the host; a tensor grid is upcast exactly)."""
    if isinstance(grid, Tensor):
        check_time_grid("grid", grid, eps, sde.T, to_data=True)  # host copies at the entry point only
    if grid is not None and not isinstance(grid, str):
        return make_grid(grid, sde, 1, eps, dtype=torch.float64)
    return make_grid(grid, sde, check_int("steps", steps), eps, dtype=torch.float64)


def fixed_grid(sde: SDE, method: str, steps: int | None, grid, eps: float) -> Tensor | None:
    """Validate ``steps``/``grid`` against ``method``: the float64 decreasing grid of a fixed-step method, else None."""
    check_choice("method", method, ODE_METHODS)
    if method not in FIXED_STEP:
        if steps is not None or grid is not None:
            raise ValueError(f"steps/grid apply to fixed-step methods ({', '.join(FIXED_STEP)}), not method={method!r}")
        return None
    if steps is None and (grid is None or isinstance(grid, str)):
        raise ValueError(f"method={method!r} is fixed-step: pass steps= or a grid tensor")
    return resolve_grid(sde, grid, steps, eps)


def master(x: Tensor, score_fn: ScoreFn) -> tuple[Tensor, ScoreFn]:
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

    def score(y: Tensor, t) -> Tensor:
        return score_fn(y.to(dtype), t)

    if hasattr(score_fn, "data_prediction"):
        score.data_prediction = lambda y, t: score_fn.data_prediction(y.to(dtype), t)
    return x.to(work), score


def execution_mode(entry: str, execution: str, legacy: dict) -> str:
    """``execution`` with the keywords it replaces (``compile=True``, ``cuda_graph=True``: deprecated, still
    accepted) folded in; any other stray keyword is a ``TypeError`` as Python's own."""
    extra = set(legacy) - {"compile", "cuda_graph"}
    if extra:
        raise TypeError(f"{entry}() got an unexpected keyword argument {sorted(extra)[0]!r}")
    chosen = [name for name in ("compile", "cuda_graph") if bool(legacy.get(name, False))]
    if legacy:
        warnings.warn(
            f"{entry}: compile=/cuda_graph= are replaced by execution='compile' / 'cuda_graph'",
            DeprecationWarning,
            stacklevel=3,
        )
    if len(chosen) == 2:
        raise ValueError("cuda_graph=True and compile=True: choose one execution ('compile' or 'cuda_graph')")
    if chosen:
        if execution != "eager":
            raise ValueError(f"execution={execution!r} together with {chosen[0]}=True: choose one")
        execution = chosen[0]
    return check_choice("execution", execution, EXECUTIONS)


def finish(y: Tensor, dtype: torch.dtype, check_finite: bool, what: str) -> Tensor:
    """The result in the caller's dtype; with ``check_finite`` a ``FloatingPointError`` naming ``what`` if it holds
    NaN or inf (one host sync, after the solve: for solvers that do not name their step themselves)."""
    if check_finite and not bool(torch.isfinite(y).all()):
        raise FloatingPointError(f"non-finite sample from {what}")
    return y.to(dtype)


def model_usage(score_fn: ScoreFn) -> Callable[[], dict[str, int]]:
    """The ``info`` entries of a score that counts its model evaluations (attributes ``model_calls`` and
    ``model_rows``, as `sdesolve.guidance.GuidedScore`): a function giving what was evaluated since this call, so an
    entry point reports its own run's counts; ``{}`` for other scores (``info["nfe"]`` counts score evaluations)."""
    calls, rows = getattr(score_fn, "model_calls", None), getattr(score_fn, "model_rows", None)
    if not (isinstance(calls, int) and isinstance(rows, int)):
        return dict
    return lambda: {"model_calls": score_fn.model_calls - calls, "model_rows": score_fn.model_rows - rows}


@dataclass
class Run:
    """A prepared run: the working state and everything the entry point's loop reads.

    Attributes:
        sde: the forward SDE.
        x: the working state ``[B, *event]`` (owned by the run; float32 for a half-precision request).
        dtype: the dtype the result is returned in.
        score: the checked score (first-call checks; casts a float32 working state back for the model).
        noise: the run's noise source (None where nothing is drawn).
        times: the grid (None for adaptive solvers).
        compile: each fused step through ``torch.compile``.
        graph: the loop captured as one CUDA graph.
        keyed: the per-sample keyed draws (None without ``seeds``).
        usage: the score's model evaluations during the run, for ``info`` (`model_usage`).
    """

    sde: SDE
    x: Tensor
    dtype: torch.dtype
    score: ScoreFn
    noise: NoiseSource | None
    times: TimeTable | None
    compile: bool
    graph: bool
    keyed: KeyedNormal | None
    usage: Callable[[], dict[str, int]] = dict


def prepare(
    entry: str,
    sde: SDE,
    score_fn: ScoreFn,
    shape: Sequence[int],
    *,
    grid: Tensor | None,
    x_init: Tensor | None,
    generator: torch.Generator | None,
    seeds,
    device,
    dtype,
    execution: str = "eager",
    brownian: Brownian | str | None = None,
    progress: bool = False,
    noisy: bool = True,
) -> Run:
    """Everything a sampling loop needs, validated once (module docstring).

    Args:
        entry: the entry point's name, for messages.
        sde: the forward SDE.
        score_fn: the user's score.
        shape: ``[B, *event]``.
        grid: the float64 decreasing grid (`resolve_grid`, `fixed_grid`) or None (adaptive steps).
        x_init: start state at T or None (a prior draw).
        generator: the run's generator (or None).
        seeds: per-sample seeds (or None).
        device: device of a prior draw.
        dtype: dtype of the state.
        execution: one of `EXECUTIONS` (`execution_mode`).
        brownian: a Brownian path, ``"per_sample"`` or None.
        progress: whether the loop shows a progress bar (not with a CUDA graph).
        noisy: whether the run draws noise (False: no noise source).
    """
    usage = model_usage(score_fn)
    x, keyed = initial_state(sde, shape, x_init, generator, device, dtype, seeds)
    if execution == "cuda_graph" and callable(brownian):  # a user's path object answers on the host, draw by draw
        raise ValueError(
            "execution='cuda_graph' cannot capture a brownian= callable; use brownian='per_sample' or seeds"
        )
    graph = check_graph(execution == "cuda_graph", x, progress=progress)
    out_dtype = x.dtype
    x, score = master(x, checked_score(score_fn))
    times = None if grid is None else TimeTable(grid, x)
    noise = noise_source(sde, times, x, generator, keyed, brownian) if noisy else None
    return Run(sde, x, out_dtype, score, noise, times, execution == "compile", graph, keyed, usage)
