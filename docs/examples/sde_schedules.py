"""Figure: σ(t), α(t) and g(t) of the VE, VP and sub-VP SDEs (default parameters).

Run from the repository root: ``python docs/examples/sde_schedules.py`` writes ``docs/img/sde_schedules.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from _figures import save

from sdesolve import VESDE, VPSDE, SubVPSDE


def main(out_dir: Path = Path("docs/img"), quick: bool = False) -> dict:
    """Plot the three coefficient functions on [0, 1]; return their end values."""
    t = torch.linspace(1e-3, 1.0, 50 if quick else 400, dtype=torch.float64)
    sdes = {"VE": VESDE(), "VP": VPSDE(), "sub-VP": SubVPSDE()}
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    ends = {}
    for name, sde in sdes.items():
        sigma, alpha, g = sde.std(t), sde.mean_coeff(t), sde.diffusion(t)
        axes[0].semilogy(t, sigma, label=name)
        axes[1].plot(t, alpha, label=name)
        axes[2].semilogy(t, g, label=name)
        ends[name] = {"sigma(1)": float(sigma[-1]), "alpha(1)": float(alpha[-1]), "g(1)": float(g[-1])}
    for ax, title in zip(axes, [r"$\sigma(t)$", r"$\alpha(t)$", r"$g(t)$"], strict=True):
        ax.set_title(title)
        ax.set_xlabel("t")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    save(fig, out_dir / "sde_schedules.png", dpi=90)
    return ends


if __name__ == "__main__":
    print(main(quick="--quick" in sys.argv))
