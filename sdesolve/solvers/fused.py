r"""The pieces every fused step is made of: coefficient tables per grid and in-place axpy updates.

A solver splits what depends only on the grid from what depends on the state (STYLE rule 11, diffrax's
``init``/``step``): per-step coefficients are computed once per grid in float64 and read as Python floats
(eager) or 0-d tensors (``torch.compile``, where a float argument would recompile per step); the step loop
then updates the state in place. Times handed to the score stay in float32 or float64 even for a
half-precision state, so 1000 steps are 1000 distinct times.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .._utils import append_dims
from .noise import NoiseSource

__all__ = [
    "Coefficient",
    "axpy_",
    "affine_mean_",
    "time_dtype",
    "TimeTable",
    "Kernel",
    "CoefficientTable",
    "coefficient_table",
    "RunSpec",
]

Coefficient = float | Tensor


def axpy_(y: Tensor, x: Tensor, a: Coefficient, value: float = 1.0) -> Tensor:
    """``y += value * a * x`` in place (one pass); ``a`` a float, a 0-d tensor, or a per-sample ``[B]`` tensor."""
    if isinstance(a, Tensor):
        return y.addcmul_(x, append_dims(a, y.ndim) if a.ndim == 1 else a, value=value)
    return y.add_(x, alpha=a * value)


def affine_mean_(y: Tensor, s: Tensor | None, a: Coefficient, b: Coefficient, scale: bool = True) -> Tensor:
    r"""$y \leftarrow a\,y + b\,s$ in place (``scale=False`` when $a = 1$ on every step; ``s`` None when $b = 0$)."""
    if scale:
        y.mul_(append_dims(a, y.ndim) if isinstance(a, Tensor) and a.ndim == 1 else a)
    if s is not None:
        axpy_(y, s, b)
    return y


def time_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype of times and coefficient tensors for a state of ``dtype``: float32 below single precision."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


class TimeTable:
    """Times of a run: float64 on the host (coefficients, messages) and ``[B]`` views on device (score calls).

    Args:
        times: 1-D times (any device and dtype; copied to float64 once).
        like: the state ``[B, *event]``: device, batch size and precision of the score's time argument.
    """

    def __init__(self, times: Tensor, like: Tensor) -> None:
        self.host = times.detach().to("cpu", torch.float64)
        self.values: list[float] = self.host.tolist()
        self.device = self.host.to(like.device, time_dtype(like.dtype))
        self.batch = [v.expand(like.shape[0]) for v in self.device]

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class CoefficientTable:
    """Per-step coefficient rows of a grid and, per column, whether any entry is nonzero / differs from 1.

    The flags tell a fused step which passes it can skip (VE's unit mean factor, a noiseless predictor).
    """

    rows: list[tuple[Coefficient, ...]]
    nonzero: tuple[bool, ...]
    not_one: tuple[bool, ...]


def coefficient_table(columns: Sequence[Tensor], like: Tensor, compiled: bool) -> CoefficientTable:
    """Tabulate float64 columns ``[n]``: Python floats (one host copy of the whole table, before the loop), or
    0-d device tensors when compiled (a float argument would recompile the step for every new value)."""
    table = torch.stack([c.to("cpu", torch.float64).reshape(-1) for c in columns], dim=1)
    values = table.tolist()
    nonzero = tuple(any(r[j] != 0 for r in values) for j in range(len(columns)))
    not_one = tuple(any(r[j] != 1 for r in values) for j in range(len(columns)))
    rows = [tuple(r) for r in table.to(like.device, time_dtype(like.dtype))] if compiled else list(map(tuple, values))
    return CoefficientTable(rows, nonzero, not_one)


class Kernel(abc.ABC):
    """A step bound to one grid: coefficients computed at construction, then ``kernel(x, i, last)`` in place.

    Attributes:
        nfe: score evaluations per interval.
    """

    nfe: int = 0

    @abc.abstractmethod
    def __call__(self, x: Tensor, i: int, last: bool) -> None:
        """Advance the state ``x`` over grid interval ``i`` in place (``last``: the final interval)."""

    def calls(self, n: int) -> int:
        """Score evaluations over the grid's ``n`` intervals (``info["nfe"]``): ``nfe`` per interval."""
        return self.nfe * n


@dataclass(frozen=True)
class RunSpec:
    """What a kernel needs to know of its run: the noise source, denoising of the last step, compilation."""

    noise: NoiseSource
    denoise: bool = True
    compile: bool = False
