r"""Step-size control for the adaptive solvers: one error norm and one controller (Hairer, Nørsett & Wanner, *Solving
ODEs I*, II.4).

The per-sample solvers (DPM-Solver-12/23, `sdesolve.solvers.dpm_solver_adaptive`; the adaptive reverse-SDE
solver, `sdesolve.solvers.gotta_go_fast`) measure the difference of a lower- and a higher-order solution in the mixed
tolerance $\delta = \max(\varepsilon_{\rm abs}, \varepsilon_{\rm rel}\max(|x_{\rm low}|, |x_{\rm low}^{\rm prev}|))$,
$E = \operatorname{RMS}((x_{\rm high} - x_{\rm low})/\delta)$ per sample (Lu et al. 2022, Alg. 4; Jolicoeur-Martineau
et al. 2021, Alg. 1), accumulated in at least float32 (a half-precision norm loses $\varepsilon_{\rm abs}$ and
overflows). Every solver then scales its step by `StepController.factor`; dopri5 keeps scipy's whole-batch norm
(it reproduces scipy's RK45 step for step) and uses the controller.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .fused import time_dtype

__all__ = ["mixed_error", "StepController"]


def mixed_error(high: Tensor, low: Tensor, prev: Tensor, rtol: float, atol: float) -> Tensor:
    r"""$E$ per sample, float64 ``[B]``: the RMS over coordinates of $(x_{\rm high} - x_{\rm low})/\delta$,
    $\delta = \max(\varepsilon_{\rm abs}, \varepsilon_{\rm rel}\max(|x_{\rm low}|, \text{prev}))$ (``prev``: $|x_{\rm low}|$ of
    the previous accepted step, like ``low``), in at least float32."""
    work = time_dtype(high.dtype)
    delta = torch.maximum(low.to(work).abs(), prev.to(work)).mul_(rtol).clamp_min_(atol)
    ratio = (high.to(work) - low.to(work)).div_(delta)
    return ratio.reshape(len(ratio), -1).pow(2).mean(1).sqrt().to(torch.float64)


@dataclass(frozen=True)
class StepController:
    r"""The elementary controller $h \leftarrow h\,\mathrm{clip}(\text{safety}\cdot E^{-\text{exponent}},
    \text{min\_factor}, \text{max\_factor})$ ($E = 0$: ``max_factor``), on a float or per sample.

    Attributes:
        safety: the safety factor (0.9 in all three solvers here).
        exponent: $1/k$ for an error estimate of order $h^k$.
        max_factor: the largest growth per step.
        min_factor: the largest shrink per step (0: none).
    """

    safety: float
    exponent: float
    max_factor: float
    min_factor: float = 0.0

    def factor(self, err: float | Tensor) -> float | Tensor:
        """The step's scale factor for the error ``err`` (a float, or a float64 ``[B]`` tensor; NaN stays NaN)."""
        if isinstance(err, Tensor):  # E^-k as exp(-k log E): torch's fractional pow differs between its vectorised
            # and scalar CPU kernels in the last bit, which would make a sample's steps depend on its batch
            raw = self.safety * torch.exp(-self.exponent * err.clamp_min(torch.finfo(err.dtype).tiny).log())
            return raw.clamp(self.min_factor, self.max_factor)
        if err == 0:
            return self.max_factor
        return min(self.max_factor, max(self.min_factor, self.safety * err**-self.exponent))
