"""Private helpers shared across sdesolve: broadcasting, time handling, validation."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

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
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of shape [B, *event], got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError(f"x must have shape [B, *event], got a 0-d tensor {x!r}")
    if isinstance(t, Tensor) and (t.is_complex() or t.dtype == torch.bool):
        raise TypeError(f"t must hold real times, got dtype {t.dtype}")
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


def check_time(name: str, t: object, T: float) -> float:
    """Validate a Python time in ``[0, T]`` (finite, real) and return it as float."""
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise TypeError(f"{name} must be a real number, got {t!r}")
    t = float(t)
    if not (0.0 <= t <= T):
        raise ValueError(f"{name} must lie in [0, T]=[0, {T}], got {t!r}")
    return t


def check_python_time(name: str, t: TimeLike, T: float) -> TimeLike:
    """Check ``t`` in ``[0, T]`` when it is a Python number; tensors pass unchanged (checking them would sync)."""
    if isinstance(t, Tensor):
        return t
    return check_time(name, t, T)


def check_shape(name: str, shape: object) -> tuple[int, ...]:
    """Validate a sample shape ``[B, *event]``: a sequence of Python ints, ``B >= 1``, at least one event dim >= 1."""
    if isinstance(shape, (str, bytes, Tensor)) or not hasattr(shape, "__len__"):
        raise TypeError(f"{name} must be a sequence of ints [B, *event], got {shape!r}")
    try:
        if any(isinstance(d, bool) for d in shape):
            raise TypeError
        dims = tuple(operator.index(d) for d in shape)  # Python, numpy and torch integers; never floats
    except TypeError:
        raise TypeError(f"{name} must hold ints only (no floats: 2.7 is not a size), got {shape!r}") from None
    if len(dims) < 2:
        raise ValueError(f"{name} must be [B, *event] with at least one event dim, got {dims}")
    if any(d < 1 for d in dims):
        raise ValueError(f"{name} must have every size >= 1 (batch and event), got {dims}")
    return dims


def check_float_dtype(name: str, dtype: object) -> torch.dtype:
    """Validate a real floating torch dtype (``None`` means torch's default dtype)."""
    if dtype is None:
        return torch.get_default_dtype()
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"{name} must be a torch.dtype, got {dtype!r}")
    if not dtype.is_floating_point:
        raise TypeError(f"{name} must be a real floating dtype (float16, bfloat16, float32, float64), got {dtype}")
    return dtype


def check_sample(name: str, x: object) -> Tensor:
    """Validate a state ``[B, *event]``: a real floating tensor with ``B >= 1`` and at least one event dim."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [B, *event], got {type(x).__name__}")
    check_float_dtype(f"{name}.dtype", x.dtype)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must have shape [B, *event] with B >= 1 and an event dim, got {tuple(x.shape)}")
    return x


def check_like(name: str, value: object, like: Tensor) -> Tensor:
    """Validate that ``value`` (e.g. a score function's output) is a tensor of ``like``'s shape, dtype and device."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must return a torch.Tensor, got {type(value).__name__}")
    if value.shape != like.shape:
        raise ValueError(f"{name} must be shaped like x {tuple(like.shape)}, got {tuple(value.shape)}")
    if value.dtype != like.dtype:
        raise TypeError(f"{name} must have x's dtype {like.dtype}, got {value.dtype} (cast inside the score function)")
    if value.device != like.device:
        raise ValueError(f"{name} must be on x's device {like.device}, got {value.device}")
    return value


def check_all_finite(name: str, x: Tensor) -> Tensor:
    """Raise ``FloatingPointError`` if ``x`` holds NaN or inf (one host sync: call at entry points only)."""
    if not bool(torch.isfinite(x).all()):
        raise FloatingPointError(f"{name} holds non-finite values (NaN or inf)")
    return x


def check_time_grid(name: str, grid: Tensor, eps: float, T: float, *, to_data: bool = False) -> Tensor:
    """Validate a sampling grid: 1-d floating, >= 2 points, strictly decreasing, within ``[eps, T]`` (one sync).

    With ``to_data`` the last time may also be exactly 0, where σ(0) = 0 and the step returns the data prediction
    (flow models' grids end there); every other time stays within ``[eps, T]``.
    """
    if not isinstance(grid, Tensor) or grid.ndim != 1 or grid.shape[0] < 2 or not grid.is_floating_point():
        raise ValueError(f"{name} must be a 1-d floating tensor of >= 2 times, got {grid!r}")
    lo, hi, last = (float(v) for v in torch.stack([grid.min(), grid.max(), grid[-1]]).tolist())
    if to_data and last == 0.0:
        lo = float(grid[:-1].min())
    slack = torch.finfo(grid.dtype).eps * T  # a grid rounded to its dtype may sit an ulp outside [eps, T]
    if not bool((grid[1:] < grid[:-1]).all()):
        raise ValueError(f"{name} must be strictly decreasing (T down to eps), got {grid.tolist()!r}")
    if lo < eps - slack or hi > T + slack:
        end = " (or end at exactly 0, the data)" if to_data else ""
        raise ValueError(f"{name} must lie in [eps, T]=[{eps}, {T}]{end}, got times in [{lo}, {hi}]")
    return grid


def check_built_on(name: str, part: object, sde: object) -> object:
    """Validate that a predictor or corrector instance ``part`` was built on ``sde`` (same class and parameters)."""
    own = getattr(part, "sde", sde)
    if own is not sde and repr(own) != repr(sde):
        raise ValueError(f"{name} was built on {own!r} but the sampler runs {sde!r}; build it with the same SDE")
    return part


def check_tolerance(name: str, tol: float, dtype: torch.dtype) -> float:
    """Validate an adaptive solver tolerance: finite, > 0, and not below the state dtype's resolution.

    A relative tolerance under the unit roundoff of ``dtype`` can never be met, so the solver would shrink its
    step until ``max_steps`` (measured: dopri5 at 1e-14 in float32 ran 77 s); refuse it up front instead.
    """
    tol = check_positive(name, tol)
    resolution = torch.finfo(dtype).eps
    if tol < resolution:
        raise ValueError(f"{name}={tol!r} is below the resolution of {dtype} ({resolution:.3g}); it cannot be met")
    return tol


def as_batch_tensor(name: str, value: object, batch: int, dtype: torch.dtype | None = None) -> Tensor:
    """``value`` (a real number, a 0-d or ``[batch]`` tensor or sequence) as a tensor; bad types/shapes name it."""
    if isinstance(value, (bool, str, bytes, complex)) or value is None:
        raise TypeError(f"{name} must be a real number or a [B] tensor of them, got {value!r}")
    try:
        v = torch.as_tensor(value, dtype=dtype) if not isinstance(value, Tensor) else value
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be a real number or a [B] tensor of them, got {value!r}") from None
    if v.is_complex() or v.dtype == torch.bool:
        raise TypeError(f"{name} must be real, got dtype {v.dtype}")
    if v.ndim > 1 or (v.ndim == 1 and v.shape[0] != batch):
        raise ValueError(f"{name} must be a scalar or have shape [B]=[{batch}], got {tuple(v.shape)}")
    return v if dtype is None else v.to(dtype)


def check_points(name: str, x: object, event_shape: tuple[int, ...] | torch.Size) -> Tensor:
    """Validate points ``[B, *event]`` for a density: `check_sample`, and no silent broadcast of ``x`` itself."""
    x = check_sample(name, x)
    try:
        ok = torch.broadcast_shapes(x.shape[1:], tuple(event_shape)) == x.shape[1:]
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must have shape [B, *event] with event {tuple(event_shape)}, got {tuple(x.shape)}")
    return x


def check_device(name: str, device: object) -> torch.device | None:
    """Parse a device argument (``None``, a string or a ``torch.device``); a malformed one is a ``ValueError``."""
    if device is None or isinstance(device, torch.device):
        return device
    if not isinstance(device, (str, int)) or isinstance(device, bool):
        raise TypeError(f"{name} must be a str, int or torch.device, got {device!r}")
    try:
        return torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown {name} {device!r}; use e.g. 'cpu', 'cuda', 'cuda:0' or 'mps'") from None


def check_available(name: str, device: object) -> torch.device | None:
    """`check_device`, and the device must exist here: ``cuda`` without CUDA, a CUDA index beyond the visible ones,
    ``mps`` without MPS and ``meta`` (no data: nothing can be sampled on it) are each a ``ValueError``."""
    dev = check_device(name, device)
    if dev is None or dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name}={device!r} asked for, but CUDA is not available on this machine (torch {torch.__version__})"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name}={device!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{name}={device!r} asked for, but MPS is not available on this machine")
    else:
        raise ValueError(f"{name}={device!r}: device type {dev.type!r} is not supported; use cpu, cuda or mps")
    return dev


def check_generator(name: str, generator: object) -> torch.Generator | None:
    """Validate an optional ``torch.Generator`` (an int seed is not one: ``torch.Generator().manual_seed(seed)``)."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {generator!r}")
    return generator


def check_labels(name: str, labels: int | Sequence[int] | Tensor, num_classes: int | None = None) -> Tensor:
    """``labels`` as an int64 tensor (0-d for one label, ``[B]`` for one per sample), each in ``[0, num_classes)``.

    Raises:
        TypeError: for non-integer labels (floats, bools).
        ValueError: for labels out of range or of more than one dimension.
    """
    if isinstance(labels, bool) or (isinstance(labels, Tensor) and labels.dtype == torch.bool):
        raise TypeError(f"{name} must be integer class labels, got {labels!r}")
    try:
        y = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{name} must be an int or a 1-D sequence of ints, got {labels!r}") from None
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} must be integer class labels, got dtype {y.dtype}: {labels!r}")
    if y.ndim > 1:
        raise ValueError(f"{name} must be one label or one per sample ([B]), got shape {tuple(y.shape)}")
    y = y.to(torch.int64)
    top = "" if num_classes is None else f" and < {num_classes}"
    if y.numel() == 0 or bool((y < 0).any()) or (num_classes is not None and bool((y >= num_classes).any())):
        raise ValueError(f"{name} must be >= 0{top}, got {y.tolist()!r}")
    return y


def check_interval(name: str, interval: Sequence[float] | None) -> tuple[float, float] | None:
    """A guidance interval ``(lo, hi)`` of noise levels with ``0 <= lo < hi`` (``hi`` may be inf), or None."""
    if interval is None:
        return None
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (lo, hi) of noise levels, got {interval!r}") from None
    if not (math.isfinite(lo) and lo >= 0 and hi > lo) or math.isnan(hi):
        raise ValueError(
            f"{name} must satisfy 0 <= lo < hi (noise levels sigma/alpha; hi may be inf), got {interval!r}"
        )
    return lo, hi
