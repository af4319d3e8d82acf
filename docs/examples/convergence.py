r"""Figure: error vs steps, log–log, with fitted slopes, against exact answers for Gaussian data on the VP SDE.

* Probability-flow steppers (Euler, Heun, RK4): strong error $\max|x_N - \Phi(x_T)|$ against the exact flow
  map $\Phi$ = `Gaussian.flow` from T to eps, over 256 starting points drawn from the exact $p_T$.
* Stochastic predictors (Euler–Maruyama, reverse diffusion, ancestral): weak error, with no Monte Carlo. For
  Gaussian data the exact score is affine in x, so one predictor step is $x' = a x + b + c z$ and the law of
  $x_N$ stays Gaussian: its mean and variance are propagated exactly (coefficients read off the library's own
  `step` with noise 0 and 1; `sdesolve.verify.propagate_gaussian`). The error is the 2-Wasserstein distance to the exact marginal at eps,
  $W_2 = \sqrt{(\Delta m)^2 + (\Delta s)^2}$.

Run from the repository root: ``python docs/examples/convergence.py`` writes ``docs/img/convergence.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from _figures import save

from sdesolve import VPSDE, Gaussian, get_predictor, uniform_grid
from sdesolve.verify import fit_order, propagate_gaussian

EPS = 1e-3


def pf_errors(sde, data: Gaussian, name: str, steps_list, n: int = 256) -> list[float]:
    """Strong error of a probability-flow stepper against the exact flow map, per step count."""
    gen = torch.Generator().manual_seed(0)
    x_T = data.marginal(sde, sde.T).sample(n, generator=gen)
    exact = data.flow(sde, x_T, sde.T, EPS)
    score, pred = data.score_fn(sde), get_predictor(name, sde)
    errors = []
    for steps in steps_list:
        grid, x = uniform_grid(sde, steps, EPS, dtype=torch.float64), x_T
        for i in range(steps):
            x, _ = pred.step(x, grid[i], grid[i + 1], score)
        errors.append(float((x - exact).abs().max()))
    return errors


def weak_error(sde, data: Gaussian, name: str, steps: int) -> float:
    """Exact W2 distance between the law of the predictor's x_N and p_eps (1-D Gaussian data, no Monte Carlo)."""
    law, target = propagate_gaussian(sde, name, data, steps, EPS), data.marginal(sde, EPS)
    return float(((law.mean - target.mean) ** 2 + (law.std - target.std) ** 2).sqrt())


def main(out_dir: Path = Path("docs/img"), quick: bool = False) -> dict:
    """Measure both studies, draw the figure, return ``{name: {"steps", "errors", "slope"}}``."""
    sde = VPSDE()
    steps_list = [8, 16, 32, 64] if quick else [16, 32, 64, 128, 256]
    weak_steps = steps_list if quick else [16, 32, 64, 128, 256, 512, 1024]  # exact moments: cheap, so go finer
    data = Gaussian(torch.full((2,), 0.3, dtype=torch.float64), 0.5)
    data1 = Gaussian(torch.tensor([0.3], dtype=torch.float64), 0.5)
    results = {}
    for name in ["pf_euler", "pf_heun", "pf_rk4"]:
        results[name] = {"steps": steps_list, "errors": pf_errors(sde, data, name, steps_list)}
    for name in ["euler_maruyama", "reverse_diffusion", "ancestral"]:
        results[name] = {"steps": weak_steps, "errors": [weak_error(sde, data1, name, s) for s in weak_steps]}
    for r in results.values():
        r["slope"] = fit_order(r["steps"], r["errors"]).slope

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, names, title in [
        (axes[0], ["pf_euler", "pf_heun", "pf_rk4"], "probability flow: strong error vs exact flow"),
        (axes[1], ["euler_maruyama", "reverse_diffusion", "ancestral"], "reverse SDE: exact weak error ($W_2$)"),
    ]:
        for name in names:
            r = results[name]
            ax.loglog(r["steps"], r["errors"], "o-", label=f"{name} (slope {r['slope']:.2f})")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("steps N")
        ax.set_ylabel("error")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, out_dir / "convergence.png", dpi=90)
    return results


if __name__ == "__main__":
    for name, r in main(quick="--quick" in sys.argv).items():
        errs = " ".join(f"{e:.3e}" for e in r["errors"])
        print(f"{name:18s} slope {r['slope']:.3f}   errors {errs}")
