r"""Figure: probability-flow ODE trajectories from the prior to the 2-D ring mixture (VP SDE, exact score).

Left: paths in the plane over the exact data density; right: the first coordinate against t. The flow is
deterministic, so each prior point maps to one sample (RK4 steps of `ProbabilityFlowRK4` on a uniform grid).

Run from the repository root: ``python docs/examples/probability_flow.py`` writes ``docs/img/probability_flow.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from _figures import save

from sdesolve import VPSDE, ProbabilityFlowRK4, uniform_grid
from sdesolve.problems import ring_mixture


def trajectories(n: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RK4 probability-flow paths ``[steps + 1, n, 2]`` from prior samples, and their grid of times."""
    sde, mix = VPSDE(), ring_mixture(dtype=torch.float64)
    score, pred = mix.score_fn(sde), ProbabilityFlowRK4(sde)
    grid = uniform_grid(sde, steps, 1e-3, dtype=torch.float64)
    x = sde.prior_sampling((n, 2), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    path = [x]
    for i in range(steps):
        x, _ = pred.step(x, grid[i], grid[i + 1], score)
        path.append(x)
    return torch.stack(path), grid


def main(out_dir: Path = Path("docs/img"), quick: bool = False) -> dict:
    """Draw the trajectories; return the end points' nearest-mode counts."""
    path, grid = trajectories(n=20 if quick else 60, steps=20 if quick else 100)
    mix = ring_mixture(dtype=torch.float64)
    g = torch.linspace(-3, 3, 120, dtype=torch.float64)
    gx, gy = torch.meshgrid(g, g, indexing="xy")
    logp = mix.log_prob(torch.stack([gx.ravel(), gy.ravel()], 1)).reshape(gx.shape)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    axes[0].contour(gx, gy, logp, levels=[-8, -6, -4, -2, 0], colors="0.6", linewidths=0.6)
    for k in range(path.shape[1]):
        axes[0].plot(path[:, k, 0], path[:, k, 1], lw=0.6, alpha=0.7)
        axes[1].plot(grid, path[:, k, 0], lw=0.6, alpha=0.7)
    axes[0].scatter(path[-1, :, 0], path[-1, :, 1], s=6, c="k", zorder=3)
    axes[0].set_aspect("equal")
    axes[0].set_title("probability-flow paths (prior → data)", fontsize=10)
    axes[1].invert_xaxis()
    axes[1].set_xlabel("t (from T = 1 down to eps)")
    axes[1].set_ylabel("$x_1(t)$")
    axes[1].set_title("first coordinate along the flow", fontsize=10)
    fig.tight_layout()
    save(fig, out_dir / "probability_flow.png", dpi=90)
    nearest = ((path[-1].unsqueeze(1) - mix.means) ** 2).sum(-1).argmin(1)
    return {"mode_counts": torch.bincount(nearest, minlength=8).tolist()}


if __name__ == "__main__":
    print(main(quick="--quick" in sys.argv))
