r"""The one fixed-step loop: `pc_sample`, fixed-step `ode_sample` and `log_likelihood` all run through `run`.

No host synchronisation inside the loop. Finiteness is checked on device every ``CHECK_EVERY`` intervals
(NaN and inf persist through the affine updates, so a bad state is still bad at the next check) and synced
once after the loop; only when that check fails is the run repeated from the same start and noise with a
check after every interval, to name the first bad step and its times exactly.

With ``graph=True`` (``execution="cuda_graph"``, CUDA states) the whole loop is captured once as a CUDA graph and
replayed: the same kernels on the same buffers, so the result is bitwise the eager run's. The generators' Philox
offsets are registered with the graph, which replays the draws eager would make from the same state and leaves the
generator where eager would.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .fused import TimeTable
from .noise import NoiseSource

__all__ = ["run", "CHECK_EVERY", "maybe_compile", "check_graph"]

CHECK_EVERY = 16
Step = Callable[[Tensor, int, bool], None]


def _loop(step: Step, x: Tensor, n: int, every: int, progress: bool, desc: str) -> tuple[list[int], list[Tensor]]:
    """Run the ``n`` intervals; return the checked intervals and their on-device "all finite" flags."""
    checked: list[int] = []
    finite: list[Tensor] = []
    for i in tqdm(range(n), disable=not progress, desc=desc):
        last = i == n - 1
        step(x, i, last)
        if every and ((i + 1) % every == 0 or last):
            checked.append(i)
            finite.append(torch.isfinite(x).all())
    return checked, finite


def _replayed(
    step: Step, x: Tensor, n: int, every: int, noise: NoiseSource | None, desc: str, start: Tensor, state: object
) -> tuple[list[int], list[Tensor]]:
    """`_loop` captured as one CUDA graph and replayed once from ``start`` (a copy of ``x``; ``state``: the noise
    source's snapshot at the start); the flags are read after the replay."""
    graph = torch.cuda.CUDAGraph()
    default = torch.cuda.default_generators[x.device.index or 0]
    for gen in noise.generators() if noise is not None else ():
        if gen is default:  # torch's default CUDA generator is registered by the capture itself
            continue
        if not hasattr(graph, "register_generator_state"):
            raise ValueError(
                f"{desc}: execution='cuda_graph' with an explicit generator needs torch >= 2.4 "
                f"(CUDAGraph.register_generator_state; this is {torch.__version__}): pass seeds= or generator=None"
            )
        graph.register_generator_state(gen)
    side = torch.cuda.Stream(device=x.device)
    side.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(side):  # warm-up outside the capture: lazy initialisation (library handles, allocator)
        step(x, 0, n == 1)
    torch.cuda.current_stream(x.device).wait_stream(side)
    if state is not None:  # the warm-up's draws are not the run's
        noise.restore(state)
    try:
        with torch.cuda.graph(graph):
            checked, finite = _loop(step, x, n, every, False, desc)
    except RuntimeError as err:
        raise RuntimeError(
            f"{desc}: the step loop could not be captured as a CUDA graph ({err}); the score and the noise must run "
            "on the device without host synchronisation; use execution='eager'"
        ) from err
    x.copy_(start)
    graph.replay()
    return checked, [torch.stack(finite)] if finite else []


def _first_bad(checked: list[int], finite: list[Tensor]) -> int:
    """The first checked interval whose state was non-finite, -1 if none: the one host sync of a run."""
    if not finite:
        return -1
    bad = (~torch.cat([f.reshape(-1) for f in finite])).nonzero()
    return checked[int(bad[0, 0])] if bad.numel() else -1


def run(
    step: Step,
    x: Tensor,
    times: TimeTable,
    *,
    noise: NoiseSource | None = None,
    check_finite: bool = True,
    progress: bool = False,
    desc: str = "sampling",
    hint: str = "check the score function for NaN/inf",
    graph: bool = False,
) -> Tensor:
    """Apply ``step(x, i, last)`` in place over every interval of ``times``, under ``torch.no_grad()``.

    Args:
        step: the fused step (predictor, corrector, Runge–Kutta stages).
        x: the state ``[B, *event]``, owned by the loop (updated in place and returned).
        times: the grid; interval ``i`` runs from ``times.values[i]`` to ``times.values[i + 1]``.
        noise: the run's noise source, rewound for the failure-path rerun.
        check_finite: raise ``FloatingPointError`` naming the first non-finite step (one sync after the loop).
        graph: capture the loop as one CUDA graph and replay it (bitwise equal to eager; see `check_graph`).

    Returns:
        ``x`` after the last interval.
    """
    n = len(times) - 1
    rewind = check_finite or graph  # the failure-path rerun and the graph's warm-up both go back to the start
    start = x.clone() if rewind else None
    state = noise.snapshot(x.device) if rewind and noise is not None else None
    with torch.no_grad():
        every = CHECK_EVERY if check_finite else 0
        if graph:
            flags = _replayed(step, x, n, every, noise, desc, start, state)
        else:
            flags = _loop(step, x, n, every, progress, desc)
        seen = _first_bad(*flags)
        if seen < 0:
            return x
        x.copy_(start)
        if state is not None:
            noise.restore(state)
        first = _first_bad(*_loop(step, x, n, 1, False, desc))
    t = times.values
    if first < 0:  # a score that does not repeat itself: name the window the first run saw
        lo = max(0, seen - CHECK_EVERY + 1)
        where = f"steps {lo}..{seen} (t={t[lo]:.6g} -> {t[seen + 1]:.6g})"
    else:
        where = f"step {first} (t={t[first]:.6g} -> {t[first + 1]:.6g})"
    raise FloatingPointError(f"non-finite sample at {where}; {hint}")


def check_graph(graph: bool, x: Tensor, *, progress: bool = False) -> bool:
    """Validate ``execution="cuda_graph"``: a CUDA state and no progress bar (nothing runs on the host during a
    replay)."""
    graph = bool(graph)
    if graph and progress:
        raise ValueError(
            "execution='cuda_graph' replays the loop without the host: progress=True is not available with it"
        )
    if graph and x.device.type != "cuda":
        raise ValueError(f"execution='cuda_graph' needs a CUDA state, got device {x.device}")
    return graph


def maybe_compile(fn: Callable, compile: bool) -> Callable:
    """``fn`` compiled by ``torch.compile`` (inductor; one graph per step shape, coefficients as tensor inputs) from
    its second call on, or ``fn``. The first call runs eagerly, so one-time work in the score (its first-output
    check in `sdesolve.sampling`) stays out of the graph instead of breaking it and recompiling every run.

    A kernel passes its class's function (``type(self)._apply``) and itself as the first argument: a bound method
    stored on its own instance would be a reference cycle, keeping the kernel's buffers (a few copies of the state)
    alive after the run until Python's cyclic collector ran — on a GPU, device memory, chunk after chunk."""
    if not compile:
        return fn
    compiled = torch.compile(fn, dynamic=False)
    first = True

    def call(*args):
        nonlocal first
        if first:
            first = False
            return fn(*args)
        return compiled(*args)

    return call
