"""The solver wing: precomputed schedules, fused in-place steps, noise sources and the one step loop.

- `fused`: coefficient tables per grid, in-place axpy updates, times kept in float32/float64;
- `noise`: the noise source every stochastic step draws from (generator, Brownian path);
- `seeded`: noise keyed by sample (per-sample seeds); `brownian_tree`: a Brownian path per sample;
- `loop`: the fixed-step loop shared by `pc_sample`, fixed-step `ode_sample` and `log_likelihood`;
- `runge_kutta`: tableaus, ODE terms and the fused fixed-step RK kernel;
- `dopri5`: the adaptive Dormand–Prince 5(4); `ode`: ODE method dispatch;
- `programs`, `exponential`, `unipc`, `ipndm`, `edm`, `few_step`: the few-step solvers (DDIM, DPM-Solver(++),
  UniPC, iPNDM, EDM's Heun).

Predictors and correctors (`sdesolve.predictors`, `sdesolve.correctors`) build their fused kernels from these.
"""

from .brownian_tree import SampleBrownianTree, TreeNoise
from .few_step import FEW_STEP
from .fused import Kernel, TimeTable
from .loop import run
from .noise import BrownianNoise, GeneratorNoise, NoiseSource
from .ode import ODE_METHODS, integrate
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
