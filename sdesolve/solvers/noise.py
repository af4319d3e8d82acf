r"""Noise sources: the one object every stochastic step draws its standard normals from.

k-diffusion's ``noise_sampler(sigma, sigma_next)`` idea (STYLE rule 12): a sampler asks the source for the
normals of grid interval ``i`` (from ``t`` down to ``t_next``) and of corrector step ``j`` at ``t``, so a
generator, per-sample seeds or a Brownian path drive predictor and corrector alike without a second code path.
Draws fill a preallocated buffer (``out=``): no allocation per step.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["NoiseSource", "GeneratorNoise", "BrownianNoise", "Brownian"]

Brownian = Callable[[float, float], Tensor]


class NoiseSource(abc.ABC):
    """Standard-normal draws for the steps of one sampling run."""

    @abc.abstractmethod
    def predictor(self, out: Tensor, i: int, t: float, t_next: float) -> Tensor:
        """Fill ``out`` with the predictor's normals of interval ``i`` (``t`` down to ``t_next``); return it."""

    @abc.abstractmethod
    def corrector(self, out: Tensor, i: int, j: int, t: float) -> Tensor:
        """Fill ``out`` with the normals of corrector step ``j`` at grid time ``t`` (interval ``i``); return it."""

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

    def _draw(self, out: Tensor) -> Tensor:
        return torch.randn(out.shape, generator=self.generator, out=out)

    def predictor(self, out, i, t, t_next):
        return self._draw(out)

    def corrector(self, out, i, j, t):
        return self._draw(out)

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
    r"""Predictor normals $z = \Delta W/\sqrt{|\Delta t|}$ from a Brownian path in reversed time $s = T - t$.

    ``brownian(s0, s1)`` returns $W(s_1) - W(s_0)$ (e.g. a torchsde ``BrownianInterval``, the path torchsde
    integrates on). Corrector steps, at a fixed time, draw from ``generator``.
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
