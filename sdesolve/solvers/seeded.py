r"""Noise keyed by sample: every draw of row ``i`` is a pure function of ``(seeds[i], stream, element)``.

A counter-based generator in torch ops (Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3"):
the 64-bit SplitMix64 finaliser (Steele, Lea & Flood 2014; the mixer of Java's ``SplittableRandom``)

$$m(x) = h_3,\quad h_1 = (x \oplus x \gg 30)\,c_1,\ h_2 = (h_1 \oplus h_1 \gg 27)\,c_2,\ h_3 = h_2 \oplus h_2 \gg 31
\pmod{2^{64}}$$

turns the key of a draw into 64 random bits; two such words give one Box–Muller pair
$z_{0,1} = \sqrt{-2\ln u_1}\,(\cos, \sin)(2\pi u_2)$ with 53-bit uniforms. A row's draws never read another
row, so a sample is the same alone, in any batch, in any order, on any rank — which a batch
``torch.Generator`` cannot give (diffusers #2659, AUTOMATIC1111 PR #7730). ``benchmarks/noise.py`` measures
it against the batch generator and a generator per row; the keyed draw was chosen because its cost is a
fixed ~70 µs of launches plus a cost per element, flat in B, while a generator per row costs a launch per
sample and step (360x the keyed draw at B = 4096 in 2-D; on CPU it is 2-4x cheaper for 1024-entry events,
where the keyed draw costs 6-10x ``torch.randn`` per element).

Streams: the prior is stream ``(PRIOR,)``, interval ``i``'s predictor increment ``(PREDICTOR, i)`` and its
further draws ``(PREDICTOR, i, j)`` (Restart's re-noisings), corrector step ``j`` of interval ``i``
``(CORRECTOR, i, j)``, a sampler hook's draws ``(HOOK, i, j)``, uniforms of those streams ``(UNIFORM, stream, i,
j)``, Hutchinson probes ``(PROBE,)``; the per-sample Brownian tree (`sdesolve.solvers.brownian_tree`) uses
``(TREE, node)`` and ``(AT_TIME, time, j)`` (with the stream appended for streams other than the corrector's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .noise import CORRECTOR, HOOK, PREDICTOR, NoiseSource

__all__ = [
    "PRIOR",
    "PREDICTOR",
    "CORRECTOR",
    "HOOK",
    "PROBE",
    "TREE",
    "AT_TIME",
    "UNIFORM",
    "mix64",
    "mix64_",
    "stream_key",
    "check_seeds",
    "seeds_for",
    "sample_seeds",
    "KeyedNormal",
    "SeededNoise",
]

PRIOR, PROBE, TREE, AT_TIME, UNIFORM = 1, 4, 5, 6, 8
_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_C1, _C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _signed(v: int) -> int:
    """An unsigned 64-bit word as the int64 with the same bits."""
    v &= _MASK
    return v - (1 << 64) if v >> 63 else v


def mix64_(x: Tensor, tmp: Tensor) -> Tensor:
    """SplitMix64's finaliser in place on int64 words (wrap-around products mod 2^64); ``tmp`` like ``x``."""
    for shift, factor in ((30, _C1), (27, _C2), (31, None)):
        torch.bitwise_right_shift(x, shift, out=tmp).bitwise_and_((1 << (64 - shift)) - 1)
        x.bitwise_xor_(tmp)
        if factor is not None:
            x.mul_(_signed(factor))
    return x


def mix64(x: Tensor) -> Tensor:
    """SplitMix64's finaliser on int64 words: a bijection of 64-bit words (a new tensor)."""
    x = x.to(torch.int64, copy=True)
    return mix64_(x, torch.empty_like(x))


def _mix_int(v: int) -> int:
    """`mix64` on one Python int (host side: stream keys)."""
    v &= _MASK
    v = ((v ^ (v >> 30)) * _C1) & _MASK
    v = ((v ^ (v >> 27)) * _C2) & _MASK
    return _signed(v ^ (v >> 31))


def stream_key(*parts: int) -> int:
    """The int64 key of a stream ``parts`` (e.g. ``(PREDICTOR, i)``): SplitMix64 chained over the parts."""
    key = 0
    for p in parts:
        key = _mix_int(key + _GOLDEN + (int(p) & _MASK))
    return key


def check_seeds(seeds, batch: int, generator: torch.Generator | None, device: torch.device | str | None) -> Tensor:
    """Validate per-sample ``seeds`` (ints or an integer tensor of length ``batch``); int64 ``[B]`` on ``device``.

    Raises:
        ValueError: together with ``generator``, a length other than ``batch``, or a value outside int64.
        TypeError: not integers.
    """
    if generator is not None:
        raise ValueError("pass seeds= or generator=, not both: seeds key every draw of a row by itself")
    if isinstance(seeds, Tensor):
        if seeds.dtype.is_floating_point or seeds.dtype.is_complex or seeds.dtype == torch.bool:
            raise TypeError(f"seeds must be an integer tensor, got dtype {seeds.dtype}")
        values = seeds.detach().to(device=device, dtype=torch.int64)
    else:
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
            raise TypeError(f"seeds must be a sequence of ints or an int64 tensor, got {type(seeds).__name__}")
        bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int)]
        if bad:
            raise TypeError(f"seeds must be ints, got {bad[0]!r}")
        out_of_range = [s for s in seeds if not _INT64_MIN <= s <= _INT64_MAX]
        if out_of_range:
            raise ValueError(f"seeds must fit in int64, got {out_of_range[0]!r}")
        values = torch.tensor(list(seeds), dtype=torch.int64, device=device)
    if values.ndim != 1 or values.shape[0] != batch:
        raise ValueError(f"seeds must have one entry per sample (length {batch}), got shape {tuple(values.shape)}")
    return values


def seeds_for(seeds, shape, generator: torch.Generator | None, device) -> KeyedNormal | None:
    """`check_seeds` for a state of ``shape`` (``[B, *event]``): the keyed draws on ``device``, None without seeds."""
    return None if seeds is None else KeyedNormal(check_seeds(seeds, int(shape[0]), generator, device))


def sample_seeds(seed: int, indices: Tensor) -> Tensor:
    """Per-sample seeds of a run seeded ``seed``: ``mix64(stream_key(seed) + index)``, int64 like ``indices``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):  # int(2.7) would silently be seed 2
        raise TypeError(f"seed must be an int, got {seed!r}")
    return mix64(indices.to(torch.int64) + stream_key(seed))


class KeyedNormal:
    """Keyed draws for one batch of seeds, with int64/float64 work buffers kept between calls of one shape.

    Args:
        seeds: int64 ``[B]`` (`check_seeds`), on the device of the tensors it fills.
    """

    def __init__(self, seeds: Tensor) -> None:
        self.seeds, self.mixed = seeds, mix64(seeds)
        self._shape: tuple[int, int, int] | None = None

    def words(self, keys: int | Sequence[int], count: int) -> Tensor:
        """``[B, L, count]`` 64-bit words for the ``L`` keys: SplitMix64's stream of state ``mix64(mix64(seed) ⊕ key)``,
        outputs 1..count (one int: ``L = 1``). The result is a work buffer, overwritten by the next call."""
        many = not isinstance(keys, int)
        shape = (self.seeds.shape[0], len(keys) if many else 1, count)
        if self._shape != shape:
            self._shape, device = shape, self.seeds.device
            self.step = torch.arange(1, count + 1, device=device, dtype=torch.int64) * _signed(_GOLDEN)
            self.w, self.tmp = (torch.empty(shape, dtype=torch.int64, device=device) for _ in range(2))
            self.u = torch.empty(shape, dtype=torch.float64, device=device)
        key = torch.tensor(keys, dtype=torch.int64).to(self.seeds.device) if many else keys
        base = mix64(self.mixed[:, None] ^ key)
        torch.add(base[:, :, None], self.step, out=self.w)
        return mix64_(self.w, self.tmp)

    def _fill(self, flat: Tensor, keys: int | Sequence[int]) -> Tensor:
        r"""Fill ``flat`` ``[B, L, n]`` with standard normals keyed by ``(seed, key_l, element)``.

        Box–Muller on 53-bit uniforms $u_1 = (k_1 + 1)\,2^{-53} \in (0, 1]$, $u_2 = k_2\,2^{-53} \in [0, 1)$
        from two words per pair, in float64, rounded to ``flat``'s dtype.
        """
        n = flat.shape[2]
        m = (n + 1) // 2
        w = self.words(keys, 2 * m)
        torch.bitwise_right_shift(w, 11, out=self.tmp).bitwise_and_((1 << 53) - 1)
        u = self.u.copy_(self.tmp).mul_(2.0**-53)
        r, angle = u[..., :m].add_(2.0**-53).log_().mul_(-2).sqrt_(), u[..., m:].mul_(2 * torch.pi)
        sin = torch.sin(angle)
        flat[..., :m].copy_(angle.cos_().mul_(r))
        flat[..., m:].copy_(sin.mul_(r)[..., : n - m])
        return flat

    def normal_(self, out: Tensor, key: int) -> Tensor:
        """Fill ``out`` ``[B, *event]`` (contiguous) with standard normals keyed by ``(seed, key, element)``."""
        self._fill(out.view(out.shape[0], 1, -1), key)
        return out

    def uniform_(self, out: Tensor, key: int) -> Tensor:
        r"""Fill ``out`` ``[B, ...]`` with uniforms on [0, 1) keyed by ``(seed, key, element)``: the top $b$ bits of one
        word each, $u = k\,2^{-b}$ with $b$ the significand bits of ``out``'s dtype (exact, never rounded up to 1)."""
        bits = 1 - round(math.log2(torch.finfo(out.dtype).eps))  # significand bits: 53 for float64, 24 for float32
        w = self.words(key, out[0].numel())[:, 0]
        u = torch.bitwise_right_shift(w, 64 - bits).bitwise_and_((1 << bits) - 1).to(torch.float64).mul_(2.0**-bits)
        return out.copy_(u.reshape(out.shape))

    def normals(self, keys: Sequence[int], event: tuple[int, ...]) -> Tensor:
        """``[B, L, *event]`` float64 standard normals, one block per key (each as `normal_` would draw it)."""
        flat = torch.empty((self.seeds.shape[0], len(keys), math.prod(event)), dtype=torch.float64,
                           device=self.seeds.device)  # fmt: skip
        return self._fill(flat, keys).reshape(flat.shape[0], len(keys), *event)

    def prior(self, sde, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """The prior sample ``[B, *event]`` of ``sde`` from the keyed normals of stream ``(PRIOR,)``."""
        z = self.normal_(torch.empty(shape, dtype=dtype, device=self.seeds.device), stream_key(PRIOR))
        return sde.prior_from_normal(z)

    def rademacher(self, key: int, like: Tensor) -> Tensor:
        """±1 shaped like ``like`` (``[B, *event]``, its dtype): the top bit of one word per element."""
        w = self.words(key, like[0].numel())[:, 0]
        return (1 - 2 * torch.bitwise_right_shift(w, 63).bitwise_and_(1)).to(like.dtype).reshape(like.shape)


class SeededNoise(NoiseSource):
    """Every predictor and corrector draw keyed by the sample's seed and the step (module docstring).

    Args:
        keyed: the keyed draws of the run's seeds, on the state's device (`seeds_for`).
    """

    def __init__(self, keyed: KeyedNormal) -> None:
        self.keyed = keyed

    def predictor(self, out, i, t, t_next):
        return self.keyed.normal_(out, stream_key(PREDICTOR, i))

    def draw(self, out, stream, i, j, t):
        return self.keyed.normal_(out, stream_key(stream, i, j))

    def uniform(self, out, stream, i, j, t):
        return self.keyed.uniform_(out, stream_key(UNIFORM, stream, i, j))
