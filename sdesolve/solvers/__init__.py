"""The solver wing: precomputed schedules, fused in-place steps, noise sources and the one step loop.

- `fused`: coefficient tables per grid, in-place axpy updates, times kept in float32/float64;
- `noise`: the noise source every stochastic draw comes from, and the `StepNoise` a step receives;
  `protocol`: the one step protocol of predictors and correctors;
- `seeded`: noise keyed by sample (per-sample seeds); `brownian_tree`: a Brownian path per sample;
- `loop`: the fixed-step loop shared by `pc_sample`, fixed-step `ode_sample` and `log_likelihood`;
- `runge_kutta`: tableaus, ODE terms and the fused fixed-step RK kernel; `dopri5`: the adaptive Dormand–Prince
  5(4); `ode`: the ODE methods by name (`FEW_STEP`, `ODE_METHODS`) and their dispatch;
- `programs`: step programs (linear forms in the state and the data predictions) and the kernel that runs them;
  `dpm_solver` (DDIM, DPM-Solver, DPM-Solver++, SDE-DPM-Solver++), `unipc`, `ipndm`, `edm` (EDM's Heun and
  stochastic sampler), `restart`: the few-step solvers written as programs;
- `dpm_solver_adaptive` (DPM-Solver-12/23) and `gotta_go_fast` (the adaptive reverse-SDE solver), with their error
  norm and controller in `step_control`.

Predictors and correctors (`sdesolve.predictors`, `sdesolve.correctors`) build their fused kernels from these.
"""

from .brownian_tree import SampleBrownianTree, TreeNoise
from .fused import Kernel, TimeTable
from .loop import run
from .noise import BrownianNoise, GeneratorNoise, NoiseSource
from .ode import FEW_STEP, ODE_METHODS, integrate
from .runge_kutta import FIXED, FlowTerm, FuncTerm, RungeKuttaKernel, Tableau
from .seeded import KeyedNormal, SeededNoise

__all__ = [
    "Kernel",
    "TimeTable",
    "run",
    "NoiseSource",
    "GeneratorNoise",
    "BrownianNoise",
    "KeyedNormal",
    "SeededNoise",
    "SampleBrownianTree",
    "TreeNoise",
    "ODE_METHODS",
    "FEW_STEP",
    "integrate",
    "FIXED",
    "Tableau",
    "FlowTerm",
    "FuncTerm",
    "RungeKuttaKernel",
]
