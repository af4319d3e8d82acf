"""Private helpers shared across sdesolve: broadcasting, time handling, validation."""

from __future__ import annotations

import math

import torch
from torch import Tensor

TimeLike = float | int | Tensor


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Append trailing singleton dims so a per-sample ``[B]`` tensor broadcasts over ``[B, *event]``."""
    missing = ndim - v.ndim
    if missing < 0:
        raise ValueError(f"cannot broadcast a tensor of {v.ndim} dims to {ndim} dims")
    return v.reshape(v.shape + (1,) * missing)


def batch_time(t: TimeLike, x: Tensor) -> Tensor:
    """Return ``t`` as a ``[B]`` tensor on ``x``'s device and dtype (floats and 0-d tensors broadcast)."""
    t = torch.as_tensor(t, device=x.device, dtype=x.dtype if x.is_floating_point() else None)
    if t.ndim == 0:
        return t.expand(x.shape[0])
    if t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ValueError(f"t must be a scalar or have shape [B]=[{x.shape[0]}], got {tuple(t.shape)}")
    return t


def as_tensor_time(t: TimeLike, like: Tensor | None = None) -> Tensor:
    """Return ``t`` as a floating tensor (at least 1-d) following ``like``'s device and dtype."""
    kwargs = {} if like is None else {"device": like.device, "dtype": like.dtype}
    t = torch.as_tensor(t, **kwargs)
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return t


def check_positive(name: str, value: float, *, strict: bool = True) -> float:
    """Validate a finite positive (or non-negative) Python number and return it as float."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    ok = value > 0 if strict else value >= 0
    if not (math.isfinite(value) and ok):
        bound = "> 0" if strict else ">= 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return value


def check_int(name: str, value: int, minimum: int = 1) -> int:
    """Validate an integer at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def check_choice(name: str, value: str, choices: tuple[str, ...] | list[str]) -> str:
    """Validate that ``value`` is one of ``choices``; the error lists them."""
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of: {', '.join(choices)}")
    return value


def flat_sum(x: Tensor) -> Tensor:
    """Sum over every dim except the batch dim: ``[B, *event] -> [B]``."""
    return x.reshape(x.shape[0], -1).sum(dim=1)


def event_numel(x: Tensor) -> int:
    """Number of entries per sample."""
    return x[0].numel() if x.shape[0] > 0 else math.prod(x.shape[1:])


def randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x`` from ``generator`` (torch's default generator when None)."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
