r"""The one fixed-step loop: `pc_sample`, fixed-step `ode_sample` and `log_likelihood` all run through `run`.

No host synchronisation inside the loop. Finiteness is checked on device every ``CHECK_EVERY`` intervals
(NaN and inf persist through the affine updates, so a bad state is still bad at the next check) and synced
once after the loop; only when that check fails is the run repeated from the same start and noise with a
check after every interval, to name the first bad step and its times exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .fused import TimeTable
from .noise import NoiseSource

__all__ = ["run", "CHECK_EVERY", "maybe_compile"]

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


def _first_bad(checked: list[int], finite: list[Tensor]) -> int:
    """The first checked interval whose state was non-finite, -1 if none: the one host sync of a run."""
    if not finite:
        return -1
    bad = (~torch.stack(finite)).nonzero()
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
) -> Tensor:
    """Apply ``step(x, i, last)`` in place over every interval of ``times``, under ``torch.no_grad()``.

    Args:
        step: the fused step (predictor, corrector, Runge–Kutta stages).
        x: the state ``[B, *event]``, owned by the loop (updated in place and returned).
        times: the grid; interval ``i`` runs from ``times.values[i]`` to ``times.values[i + 1]``.
        noise: the run's noise source, rewound for the failure-path rerun.
        check_finite: raise ``FloatingPointError`` naming the first non-finite step (one sync after the loop).

    Returns:
        ``x`` after the last interval.
    """
    n = len(times) - 1
    start = x.clone() if check_finite else None
    state = noise.snapshot(x.device) if check_finite and noise is not None else None
    with torch.no_grad():
        seen = _first_bad(*_loop(step, x, n, CHECK_EVERY if check_finite else 0, progress, desc))
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


def maybe_compile(fn: Callable, compile: bool) -> Callable:
    """``torch.compile(fn)`` (inductor; one graph per step shape, coefficients as tensor inputs) or ``fn``."""
    return torch.compile(fn, dynamic=False) if compile else fn
