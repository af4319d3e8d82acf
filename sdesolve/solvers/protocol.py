r"""The one step protocol of predictors and correctors: ``step(x, t, t_next, score_fn, *, noise)``.

Both families advance a state with explicit times and draw from the run's noise through a `StepNoise` (STYLE rule
12). `step_protocol` wraps each subclass's ``step`` once, at class creation, so that its body always receives
``noise`` as a `StepNoise`, whatever the caller passed (`as_step_noise`: the run's handle, a generator, one tensor,
None).

Code written before this protocol keeps working, with a ``DeprecationWarning``:

- calls ``Predictor.step(x, t, t_next, score_fn, generator, noise)`` and ``Corrector.step(x, t, score_fn, generator,
  t_next=...)`` (``generator=`` is now ``noise=``);
- subclasses whose ``step`` takes ``generator`` (the old signatures above). An old predictor receives the step's
  draw as its ``noise`` tensor, so seeds and Brownian paths still drive it; an old corrector draws from a generator
  itself, so it runs only where the run's noise is a generator's (a ``ValueError`` with ``seeds=`` or a tree).
"""

from __future__ import annotations

import abc
import functools
import inspect
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from ..sde import SDE
from .noise import CORRECTOR, PREDICTOR, BrownianNoise, GeneratorNoise, StepNoise, as_step_noise

__all__ = ["Step", "step_protocol"]

_OLD_PREDICTOR = ("t_next", "score_fn", "generator", "noise")


def _legacy(cls: str, form: str, stacklevel: int = 4) -> None:
    warnings.warn(
        f"{cls}.step: {form} is the form before the one step protocol; use "
        f"step(x, t, t_next, score_fn, *, noise) with noise= a generator, a tensor or the run's StepNoise",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def _bind(cls: str, stream: int, args: tuple, kwargs: dict, noise: object) -> tuple[object, object, StepNoise]:
    """``(t_next, score_fn, noise)`` from a call's arguments after ``(x, t)``, in either form."""
    given = dict(kwargs)
    if stream == CORRECTOR and args and callable(args[0]) and not isinstance(args[0], Tensor):
        _legacy(cls, "step(x, t, score_fn, generator, t_next=...)")
        names = ("score_fn", "generator", "t_next")
    else:
        names = _OLD_PREDICTOR if stream == PREDICTOR else ("t_next", "score_fn")
        if len(args) > 2 or "generator" in kwargs:
            _legacy(cls, "a generator= or positional generator")
    if len(args) > len(names):
        raise TypeError(f"{cls}.step() takes (x, t, t_next, score_fn, *, noise), got {2 + len(args)} positional")
    for name, value in zip(names, args, strict=False):
        if name in given:
            raise TypeError(f"{cls}.step() got multiple values for argument {name!r}")
        given[name] = value
    generator, old_noise = given.pop("generator", None), given.pop("noise", None)
    noise = old_noise if noise is None else noise
    if generator is not None:
        if noise is not None and not isinstance(noise, Tensor):  # the old API let a tensor override the generator
            raise ValueError(f"{cls}.step: pass noise= only (generator= is its old name)")
        noise = generator if noise is None else noise
    extra = set(given) - {"t_next", "score_fn"}
    if extra:
        raise TypeError(f"{cls}.step() got an unexpected keyword argument {sorted(extra)[0]!r}")
    if "score_fn" not in given:
        raise TypeError(f"{cls}.step() missing the argument 'score_fn'")
    return given.get("t_next"), given["score_fn"], as_step_noise(noise, stream)


def _old_generator(cls: str, noise: StepNoise):
    """The generator an old-protocol corrector draws from: the run's, where its noise is a generator's."""
    if type(noise.source) not in (GeneratorNoise, BrownianNoise):  # keyed sources (seeds, trees) have no generator
        raise ValueError(
            f"{cls}.step takes generator= (the protocol before StepNoise), so seeds= or a Brownian tree cannot key "
            f"its draws; write it as step(x, t, t_next, score_fn, *, noise) drawing noise.normal(x, j)"
        )
    return noise.source.generator


def _old_body(step: Callable, stream: int, cls: str) -> Callable | None:
    """An adapter from the protocol to a ``step`` written with ``generator`` (module docstring), or None."""
    params = list(inspect.signature(step).parameters)[1:]
    if "generator" not in params:
        return None
    _legacy(cls, f"a step{inspect.signature(step)} that takes generator", stacklevel=5)
    if stream == CORRECTOR and params[2:3] == ["score_fn"]:

        def corrector(self, x, t, t_next, score_fn, noise: StepNoise):
            return step(self, x, t, score_fn, generator=_old_generator(cls, noise), t_next=t_next)

        return corrector

    def predictor(self, x, t, t_next, score_fn, noise: StepNoise):
        z = noise.normal(x) if getattr(self, "stochastic", True) else None
        return step(self, x, t, t_next, score_fn, generator=None, noise=z)

    return predictor


def step_protocol(step: Callable, stream: int, cls: str = "step") -> Callable:
    """``step`` (a subclass's method) called with ``noise`` as a `StepNoise` of ``stream``, old call forms and old
    signatures accepted."""
    if getattr(step, "__step_protocol__", False):
        return step
    body = _old_body(step, stream, cls)

    @functools.wraps(step)
    def wrapped(self, x, t, *args, noise=None, **kwargs):
        t_next, score_fn, noise = _bind(type(self).__name__, stream, args, kwargs, noise)
        if stream == PREDICTOR and getattr(
            self, "stochastic", True
        ):  # a probability-flow step is reversible: either way is valid
            _check_order(type(self).__name__, t, t_next)
        if body is not None:
            return body(self, x, t, t_next, score_fn, noise)
        return step(self, x, t, t_next, score_fn, noise=noise)

    wrapped.__step_protocol__ = True
    return wrapped


def _check_order(cls: str, t: object, t_next: object) -> None:
    """A stochastic predictor steps backwards in time: ``t_next < t`` for every sample (a forward or zero step
    returned a number, NaN for ImprovedEuler); deterministic (probability-flow) steps may go either way, as
    likelihoods integrate them forward. Checked where it costs no device sync: Python numbers and CPU tensors (the
    sampling entry points check their grids once, on any device)."""
    if isinstance(t, Tensor) and t.device.type != "cpu" or isinstance(t_next, Tensor) and t_next.device.type != "cpu":
        return
    try:
        t0, t1 = torch.as_tensor(t, dtype=torch.float64), torch.as_tensor(t_next, dtype=torch.float64)
        backwards = bool((t1 < t0).all())
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"{cls}.step: t and t_next must be numbers or [B] tensors, got t={t!r}, t_next={t_next!r}"
        ) from None
    if not backwards:
        raise ValueError(
            f"{cls}.step must go backwards in time (t_next < t), got t=[{_head(t0)}], t_next=[{_head(t1)}]"
        )


def _head(v: Tensor) -> str:
    """The first four entries of ``v``, for a message."""
    return ", ".join(f"{float(u):.6g}" for u in v.flatten()[:4])


class Step(abc.ABC):
    """The common base of `Predictor` and `Corrector`: built with the forward SDE; each subclass's ``step`` is wrapped
    by `step_protocol` for the family's noise ``stream`` when the class is created."""

    stream: int

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        step = cls.__dict__.get("step")
        if step is not None and not getattr(step, "__isabstractmethod__", False):
            cls.step = step_protocol(step, cls.stream, cls.__name__)

    def __init__(self, sde: SDE) -> None:
        if not isinstance(sde, SDE):
            raise TypeError(f"sde must be an sdesolve SDE, got {sde!r}")
        self.sde = sde

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.sde!r})"
