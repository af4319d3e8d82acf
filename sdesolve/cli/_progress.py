"""A progress bar for the long commands: score evaluations counted on stderr, shown only on a terminal."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm


@contextmanager
def score_progress(score_fn: Callable, desc: str = "score evaluations") -> Iterator[Callable]:
    """``score_fn`` wrapped to advance a tqdm bar per call (any sampler: PC, fixed-step or adaptive ODE).

    The bar is off when stderr is not a terminal (logs, pipes, CI), so captured output stays clean.
    """
    bar = tqdm(desc=desc, unit="eval", disable=not sys.stderr.isatty(), mininterval=0.5, file=sys.stderr)

    @functools.wraps(score_fn)
    def counted(x, t):
        bar.update(1)
        return score_fn(x, t)

    try:
        yield counted
    finally:
        bar.close()
