r"""The sampling wing: the entry points and the one run preparation they share.

- `prepare`: validation, the start state (prior draw or ``x_init``), seeds and the noise source, the grid, the
  score's first-call checks, master precision, the execution mode and the finiteness check — once for all;
- `pc`: predictor–corrector sampling (`pc_sample`) and the `StepHook` conditional samplers plug in;
- `ode`: probability-flow ODE sampling (`ode_sample`);
- `sde_adaptive`: the adaptive-step reverse-SDE sampler (`sde_adaptive_sample`).

`log_likelihood` (`sdesolve.likelihood`) and `replacement_sample` (`sdesolve.conditional`) are prepared here too.
"""

from ..solvers.noise import Brownian
from ..solvers.ode import ODE_METHODS
from .ode import ode_sample
from .pc import StepHook, pc_sample
from .prepare import EXECUTIONS
from .sde_adaptive import sde_adaptive_sample

__all__ = [
    "pc_sample",
    "ode_sample",
    "sde_adaptive_sample",
    "StepHook",
    "ODE_METHODS",
    "EXECUTIONS",
    "Brownian",
]
