r"""A Brownian path per sample, keyed by its seed and the time: one path for every step count.

A virtual Brownian tree (Gaines & Lyons 1997; Li et al. 2020, §4, torchsde's ``BrownianTree``) whose node
normals are keyed draws (`sdesolve.solvers.seeded`), so nothing is stored and nothing depends on the batch:
on the span $[a, b]$, $W(a) = 0$, $W(b) = \sqrt{b - a}\,z_0$, and node $k$ (heap order) on $[l, h]$ puts its
midpoint by Lévy's Brownian-bridge construction,

$$W\big(\tfrac{l + h}2\big) = \tfrac12\big(W(l) + W(h)\big) + \tfrac12\sqrt{h - l}\;z_k,$$

the conditional law of $W$ at the midpoint given its ends. A query draws the normals of its descent in one keyed call and sums them
with weights computed on the host. A time on the dyadic lattice of depth ``depth`` is
exact (a grid of $2^k$ uniform steps hits it); any other time takes the bridge mean between the two leaves
around it (error std $\le \tfrac12\sqrt{(b - a)\,2^{-\text{depth}}}$). Runs with 20 and 40 steps thus share
one path per sample, and a corrector's draws at a fixed time are keyed by that time's lattice index, so the
same grid time gets the same corrector noise at any step count.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .noise import CORRECTOR, BrownianNoise
from .seeded import AT_TIME, TREE, UNIFORM, KeyedNormal, stream_key

__all__ = ["SampleBrownianTree", "TreeNoise"]


class SampleBrownianTree:
    """Per-sample Brownian motion on ``span``, called as ``tree(s0, s1)`` → ``W(s1) - W(s0)`` ``[B, *event]``.

    Args:
        keyed: the keyed draws of the samples' seeds (`sdesolve.solvers.seeded.seeds_for`).
        event: the event shape of one sample.
        span: ``(a, b)``, ``a < b``: the times the path is defined on.
        depth: levels of the dyadic lattice (leaf width ``(b - a) 2^-depth``).
    """

    def __init__(self, keyed: KeyedNormal, event: tuple[int, ...], span: tuple[float, float], depth: int = 30) -> None:
        a, b = (float(v) for v in span)
        if not (math.isfinite(a) and math.isfinite(b) and a < b):
            raise ValueError(f"span must be finite (a, b) with a < b, got {span!r}")
        if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= 52:
            raise ValueError(f"depth must be an int in 1..52 (float64 times), got {depth!r}")
        self.keyed, self.a, self.b, self.depth = keyed, a, b, depth
        self.shape = (keyed.seeds.shape[0], *event)
        self._tol = (b - a) * 2.0 ** -(depth + 2)  # a quarter leaf: grid times within rounding hit their node
        self._last: tuple[float, Tensor] | None = None

    def index(self, s: float) -> int:
        """The lattice index ``round((s - a) / (b - a) 2^depth)`` of time ``s`` (``ValueError`` outside the span)."""
        if not self.a - self._tol <= s <= self.b + self._tol:
            raise ValueError(f"time {s!r} is outside the Brownian path's span [{self.a!r}, {self.b!r}]")
        return round((s - self.a) / (self.b - self.a) * 2**self.depth)

    def weights(self, s: float) -> dict[int, float]:
        r"""``W(s)`` as a combination $\sum_k c_k z_k$ of node normals, ``{k: c_k}``: the descent on the host.

        Node 0 is the end, $W(b) = \sqrt{b - a}\,z_0$; each level adds its midpoint's $\tfrac12\sqrt{h - l}\,z_k$.
        """
        self.index(s)
        lo, hi, w_lo, w_hi, k = self.a, self.b, {}, {0: math.sqrt(self.b - self.a)}, 1
        if abs(s - lo) <= self._tol:
            return w_lo
        if abs(s - hi) <= self._tol:
            return w_hi
        for _ in range(self.depth):
            mid = 0.5 * (lo + hi)
            w_mid = {j: 0.5 * (w_lo.get(j, 0.0) + w_hi.get(j, 0.0)) for j in w_lo.keys() | w_hi.keys()}
            w_mid[k] = 0.5 * math.sqrt(hi - lo)
            if abs(s - mid) <= self._tol:
                return w_mid
            if s < mid:
                hi, w_hi, k = mid, w_mid, 2 * k
            else:
                lo, w_lo, k = mid, w_mid, 2 * k + 1
        lam = (s - lo) / (hi - lo)  # inside a leaf: the bridge mean
        return {j: (1 - lam) * w_lo.get(j, 0.0) + lam * w_hi.get(j, 0.0) for j in w_lo.keys() | w_hi.keys()}

    def value(self, s: float) -> Tensor:
        """``W(s)`` ``[B, *event]`` in float64: the node normals of its descent in one keyed draw, then summed."""
        weights = self.weights(float(s))
        if not weights:
            return torch.zeros(self.shape, dtype=torch.float64, device=self.keyed.seeds.device)
        nodes = sorted(weights)
        z = self.keyed.normals([stream_key(TREE, k) for k in nodes], self.shape[1:])
        c = torch.tensor([weights[k] for k in nodes], dtype=torch.float64).to(z.device)
        return torch.tensordot(c, z, dims=([0], [1]))

    def __call__(self, s0: float, s1: float) -> Tensor:
        """``W(s1) - W(s0)`` ``[B, *event]`` (the last value is reused: a sampler's steps chain end to start)."""
        w0 = self._last[1] if self._last is not None and self._last[0] == s0 else self.value(s0)
        w1 = self.value(s1)
        self._last = (s1, w1)
        return w1 - w0

    def _key(self, s: float, j: int, stream: int) -> int:
        """The key of draw ``j`` of ``stream`` at time ``s``: its lattice index (the corrector's keys carry no stream)."""
        parts = (AT_TIME, self.index(float(s)), j)
        return stream_key(*parts) if stream == CORRECTOR else stream_key(*parts, stream)

    def normal_(self, out: Tensor, s: float, j: int, stream: int = CORRECTOR) -> Tensor:
        """Fill ``out`` with the ``j``-th standard normals of ``stream`` at time ``s``, keyed by its lattice index."""
        return self.keyed.normal_(out, self._key(s, j, stream))

    def uniform_(self, out: Tensor, s: float, j: int, stream: int = CORRECTOR) -> Tensor:
        """Fill ``out`` with the ``j``-th uniforms of ``stream`` at time ``s``, keyed by its lattice index."""
        return self.keyed.uniform_(out, stream_key(UNIFORM, self._key(s, j, stream)))


class TreeNoise(BrownianNoise):
    r"""Predictor increments $\Delta W/\sqrt{|\Delta t|}$ from a `SampleBrownianTree` in $s = T - t$; every other
    draw (corrector steps, further predictor draws, hooks) is the tree's keyed draw at $s = T - t$, so the same grid
    time gets the same draws at any step count."""

    def __init__(self, tree: SampleBrownianTree, T: float) -> None:
        super().__init__(tree, T)

    def draw(self, out, stream, i, j, t):
        return self.brownian.normal_(out, self.T - t, j, stream)

    def uniform(self, out, stream, i, j, t):
        return self.brownian.uniform_(out, self.T - t, j, stream)

    def snapshot(self, device: torch.device) -> None:
        return None

    def restore(self, state) -> None:
        """Nothing to restore: every draw is keyed."""
