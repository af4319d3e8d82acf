r"""Noise sources: the one object every stochastic draw of a run comes from, and the handle a step receives.

k-diffusion's ``noise_sampler(sigma, sigma_next)`` idea (STYLE rule 12): a sampler asks the run's source for the
draws of grid interval ``i`` by *stream* — the predictor's increment, its further draws, the corrector's steps, a
hook's replacements — so a generator, per-sample seeds or a Brownian path drive every draw of every step, the
library's and a user's own predictors and correctors alike, without a second code path. Draws fill a buffer
(``out=``): the fused kernels allocate nothing per step.

A step written against the public base (`sdesolve.predictors.Predictor`, `sdesolve.correctors.Corrector`) never
sees the source itself: it receives a `StepNoise`, the source bound to its stream, interval and times, and asks
it for its ``j``-th normal (``noise.normal(x, j)``) or uniform (``noise.uniform(t, j)``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "PREDICTOR",
    "CORRECTOR",
    "HOOK",
    "NoiseSource",
    "GeneratorNoise",
    "BrownianNoise",
    "GivenNoise",
    "StepNoise",
    "as_step_noise",
    "Brownian",
]

PREDICTOR, CORRECTOR, HOOK = 2, 3, 7
"""Streams: a predictor's draws (draw 0 is its Brownian increment), a corrector's, a sampler hook's (replacement)."""

Brownian = Callable[[float, float], Tensor]


class NoiseSource(abc.ABC):
    """Standard-normal (and uniform) draws for the steps of one sampling run.

    A draw is named by its stream, the grid interval ``i`` (from ``t`` down to ``t_next``) and its index ``j``
    within the step; draw 0 of the predictor's stream is its Brownian increment over the interval, the draw a
    Brownian path answers.
    """

    @abc.abstractmethod
    def predictor(self, out: Tensor, i: int, t: float, t_next: float) -> Tensor:
        """Fill ``out`` with the predictor's increment normals of interval ``i`` (``t`` down to ``t_next``)."""

    @abc.abstractmethod
    def draw(self, out: Tensor, stream: int, i: int, j: int, t: float) -> Tensor:
        """Fill ``out`` with the standard normals of draw ``j`` of ``stream`` in interval ``i`` at time ``t``."""

    def uniform(self, out: Tensor, stream: int, i: int, j: int, t: float) -> Tensor:
        """Fill ``out`` with uniforms on [0, 1) of draw ``j`` of ``stream`` in interval ``i`` (MALA's acceptance)."""
        raise TypeError(f"{type(self).__name__} draws no uniforms")

    def corrector(self, out: Tensor, i: int, j: int, t: float) -> Tensor:
        """Fill ``out`` with the normals of corrector step ``j`` at grid time ``t`` (interval ``i``)."""
        return self.draw(out, CORRECTOR, i, j, t)

    def snapshot(self, device: torch.device) -> object:
        """State to `restore` so that a rerun on ``device`` draws the same numbers (None: nothing to restore)."""
        return None

    def restore(self, state: object) -> None:  # noqa: B027 - a source without state has nothing to restore
        """Return to a `snapshot`."""

    def generators(self) -> tuple[torch.Generator, ...]:
        """The explicit generators the draws advance (a CUDA-graph capture registers them)."""
        return ()


class GeneratorNoise(NoiseSource):
    """Draws from one ``torch.Generator`` (torch's default generator for ``None``), in call order."""

    def __init__(self, generator: torch.Generator | None) -> None:
        self.generator = generator

    def predictor(self, out, i, t, t_next):
        return torch.randn(out.shape, generator=self.generator, out=out)

    def draw(self, out, stream, i, j, t):
        return torch.randn(out.shape, generator=self.generator, out=out)

    def uniform(self, out, stream, i, j, t):
        return torch.rand(out.shape, generator=self.generator, out=out)

    def _target(self, device: torch.device) -> torch.Generator:
        if self.generator is not None:
            return self.generator
        return torch.cuda.default_generators[device.index or 0] if device.type == "cuda" else torch.default_generator

    def snapshot(self, device: torch.device) -> tuple[torch.Generator, Tensor]:
        gen = self._target(device)
        return gen, gen.get_state()

    def restore(self, state):
        gen, rng = state
        gen.set_state(rng)

    def generators(self):
        return () if self.generator is None else (self.generator,)


class BrownianNoise(GeneratorNoise):
    r"""Predictor increments $z = \Delta W/\sqrt{|\Delta t|}$ from a Brownian path in reversed time $s = T - t$.

    ``brownian(s0, s1)`` returns $W(s_1) - W(s_0)$ (e.g. a torchsde ``BrownianInterval``, the path torchsde
    integrates on). Every other draw (corrector steps at a fixed time, further draws) comes from ``generator``.
    """

    def __init__(self, brownian: Brownian, T: float, generator: torch.Generator | None = None) -> None:
        if not callable(brownian):
            raise TypeError(f"brownian must be callable as brownian(s0, s1) -> W(s1) - W(s0), got {brownian!r}")
        super().__init__(generator)
        self.brownian, self.T = brownian, float(T)

    def predictor(self, out, i, t, t_next):
        dw = self.brownian(self.T - t, self.T - t_next)
        if not isinstance(dw, Tensor) or dw.shape != out.shape:
            shape = tuple(dw.shape) if isinstance(dw, Tensor) else type(dw).__name__
            raise ValueError(f"brownian increments must have the sample's shape {tuple(out.shape)}, got {shape}")
        return torch.mul(dw.to(out), abs(t - t_next) ** -0.5, out=out)


class GivenNoise(NoiseSource):
    """The one draw of a step given as a tensor (``step(..., noise=z)``: probes, a path shared with torchsde).

    Draw 0 of any stream is ``z``; a step that asks for a further draw gets a ``ValueError`` (give it a
    generator or the run's noise instead of one tensor).
    """

    def __init__(self, z: Tensor) -> None:
        self.z = z

    def _given(self, out: Tensor, j: int) -> Tensor:
        if self.z.shape != out.shape:
            raise ValueError(f"noise must have the sample's shape {tuple(out.shape)}, got {tuple(self.z.shape)}")
        if j != 0:
            raise ValueError(
                "noise= was one tensor but this step draws more than one normal: pass a torch.Generator as noise="
            )
        return out.copy_(self.z)

    def predictor(self, out, i, t, t_next):
        return self._given(out, 0)

    def draw(self, out, stream, i, j, t):
        return self._given(out, j)


class StepNoise:
    """The draws of one step of a run: the run's `NoiseSource` bound to a stream, an interval and its times.

    What `Predictor.step` and `Corrector.step` receive as ``noise``. Draw ``j`` of a step is the same number
    however the step asks for it (per-sample seeds key it by the sample, the stream, the interval and ``j``).

    Args:
        source: the run's noise source.
        stream: `PREDICTOR`, `CORRECTOR` or `HOOK`.
        i: the grid interval.
        t: its start time.
        t_next: its end time.
    """

    __slots__ = ("source", "stream", "i", "t", "t_next")

    def __init__(self, source: NoiseSource, stream: int, i: int = 0, t: float = 0.0, t_next: float = 0.0) -> None:
        self.source, self.stream, self.i, self.t, self.t_next = source, stream, i, float(t), float(t_next)

    def normal(self, like: Tensor, j: int = 0, *, out: Tensor | None = None) -> Tensor:
        """Draw ``j`` of this step: standard normals shaped like ``like`` (into ``out`` if given)."""
        out = torch.empty(like.shape, dtype=like.dtype, device=like.device) if out is None else out
        if self.stream == PREDICTOR and j == 0:
            return self.source.predictor(out, self.i, self.t, self.t_next)
        return self.source.draw(out, self.stream, self.i, j, self.t)

    def uniform(self, like: Tensor, j: int = 0) -> Tensor:
        """Uniforms on [0, 1) shaped like ``like`` (e.g. ``[B]``), draw ``j`` of this step's uniform stream."""
        out = torch.empty(like.shape, dtype=like.dtype, device=like.device)
        return self.source.uniform(out, self.stream, self.i, j, self.t)

    def __repr__(self) -> str:
        return f"StepNoise({type(self.source).__name__}, stream={self.stream}, i={self.i}, t={self.t}, t_next={self.t_next})"


def as_step_noise(noise: object, stream: int) -> StepNoise:
    """A step's ``noise=`` argument as a `StepNoise`: one already (a run's), a ``torch.Generator``, one tensor (the
    step's single draw), or None (torch's default generator, as ``torch.randn``)."""
    if isinstance(noise, StepNoise):
        return noise
    if noise is None or isinstance(noise, torch.Generator):
        return StepNoise(GeneratorNoise(noise), stream)
    if isinstance(noise, Tensor):
        return StepNoise(GivenNoise(noise), stream)
    raise TypeError(f"noise must be a StepNoise, a torch.Generator, a tensor of normals or None, got {noise!r}")
