r"""Measurements and figure: conditional samplers against exact posteriors of $y = x_1 + n$ (2-D data, VP SDE).

Data: a correlated Gaussian $\mathcal N((0.5, -0.3), [[1, 0.8], [0.8, 1]])$ and the ring mixture of
`sdesolve.problems.ring_mixture` (8 modes, std 0.2, radius 2, weights ∝ 1…8). The first coordinate is
observed, $A = (1, 0)$, with noise $s \in \{0, 0.1, 0.5\}$. Methods: the exact conditional score (the
posterior's own ``score_fn``: the control), replacement (noiseless only), DPS ($\zeta = 1$, noisy only) and
ΠGDM ($c = 1$, the paper's). All run ancestral sampling without corrector (so only the conditional
approximation is measured), ``denoise=False``, against the exact law of the posterior at ``eps``.

Run from the repository root: ``python docs/examples/inverse_problems.py`` writes
``docs/img/inverse_problems.png`` and prints the table of the docs page (about 2 minutes on one core).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from _figures import save

from sdesolve import (
    VPSDE,
    LinearObservation,
    MultivariateGaussian,
    dps_score,
    pc_sample,
    pigdm_score,
    replacement_sample,
)
from sdesolve.metrics import energy_distance, moment_errors
from sdesolve.problems import ring_mixture

F64 = torch.float64
EPS = 1e-3
NOISES = (0.0, 0.1, 0.5)
METHODS = ("exact score", "replacement", "DPS", "ΠGDM")
A = torch.tensor([[1.0, 0.0]], dtype=F64)


def problems() -> dict:
    """name -> (prior, observed value y)."""
    gaussian = MultivariateGaussian(
        torch.tensor([0.5, -0.3], dtype=F64), torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=F64)
    )
    return {
        "gaussian": (gaussian, torch.tensor([1.0], dtype=F64)),
        "mixture": (ring_mixture(dtype=F64), torch.tensor([1.2], dtype=F64)),
    }


def sample(method: str, sde, prior, post, obs: LinearObservation, n: int, steps: int, seed: int) -> torch.Tensor | None:
    """Posterior samples ``[n, 2]`` from ``method`` (None where it does not apply)."""
    opts = dict(predictor="ancestral", corrector=None, steps=steps, eps=EPS, denoise=False)
    gen = torch.Generator().manual_seed(seed)
    if method == "replacement":
        if obs.noise_std > 0:
            return None
        return replacement_sample(sde, prior.score_fn(sde), obs, n, generator=gen, **opts)
    if method == "DPS" and obs.noise_std == 0:
        return None
    score = {
        "exact score": lambda: post.score_fn(sde),
        "DPS": lambda: dps_score(prior.score_fn(sde), sde, obs),
        "ΠGDM": lambda: pigdm_score(prior.score_fn(sde), sde, obs),
    }[method]()
    return pc_sample(sde, score, (n, 2), generator=gen, dtype=F64, **opts)


def measure(n: int, step_counts: tuple[int, ...]) -> dict:
    """``{(problem, noise, method): {steps: stats}}`` with stats: energy distance, its floor, moment errors."""
    sde, results = VPSDE(), {}
    for name, (prior, y) in problems().items():
        for s in NOISES:
            obs = LinearObservation(A, y, s)
            post = prior.condition(A, y, s)
            target = post.marginal(sde, EPS)
            ref = target.sample(n, generator=torch.Generator().manual_seed(100))
            floor = energy_distance(target.sample(n, generator=torch.Generator().manual_seed(101)), ref)
            for method in METHODS:
                rows = {}
                for steps in step_counts:
                    try:
                        x = sample(method, sde, prior, post, obs, n, steps, seed=steps)
                    except FloatingPointError:  # non-finite samples: recorded as diverged
                        rows[steps] = None
                        continue
                    if x is None:
                        break
                    rows[steps] = {
                        "energy": energy_distance(x, ref),
                        "floor": floor,
                        **moment_errors(x, target.mean, target.cov),
                        "x2_mean": float(x[:, 1].mean()),
                        "x2_std": float(x[:, 1].std()),
                        "x2_mean_exact": float(target.mean.reshape(-1)[1]),
                        "x2_std_exact": float(target.cov[1, 1].sqrt()),
                    }
                if rows:
                    results[(name, s, method)] = rows
    return results


def table(results: dict) -> str:
    """The docs page's Markdown table."""
    step_counts = sorted(next(iter(results.values())))
    head = " | ".join(f"ED {k}" for k in step_counts)
    lines = [
        f"| data | s | method | {head} | ED floor | x₂ mean (exact) | x₂ std (exact) |",
        "|---|---|---|" + "---|" * (len(step_counts) + 3),
    ]
    for (name, s, method), rows in results.items():
        last = rows[step_counts[-1]]
        eds = " | ".join(_fmt(rows[k]) for k in step_counts)
        moments = (
            f"{last['x2_mean']:.3f} ({last['x2_mean_exact']:.3f}) | {last['x2_std']:.3f} ({last['x2_std_exact']:.3f})"
            if last
            else "– | –"
        )
        floor = next(r["floor"] for r in rows.values() if r) if any(rows.values()) else float("nan")
        lines.append(f"| {name} | {s} | {method} | {eds} | {floor:.4f} | {moments} |")
    return "\n".join(lines)


def _fmt(stats: dict | None) -> str:
    """Energy distance to 3 significant digits; "diverged" for non-finite samples, "≫1" past 1."""
    if stats is None or not stats["energy"] < float("inf"):
        return "diverged"
    return "≫1" if stats["energy"] > 1 else f"{stats['energy']:.4f}"


def figure(out_dir: Path, n: int, steps: int) -> Path:
    """Row per data set: three samplers at s = 0.1 over exact posterior contours, and the s = 0 histogram of x₂."""
    sde = VPSDE()
    fig, axes = plt.subplots(2, 4, figsize=(14, 6.8))
    g = torch.linspace(-3, 3, 160, dtype=F64)
    gx, gy = torch.meshgrid(g, g, indexing="xy")
    grid = torch.stack([gx.ravel(), gy.ravel()], 1)
    for row, (name, (prior, y)) in enumerate(problems().items()):
        obs = LinearObservation(A, y, 0.1)
        post = prior.condition(A, y, 0.1)
        logp = post.marginal(sde, EPS).log_prob(grid).reshape(gx.shape)
        levels = [float(logp.max()) - k for k in (8, 6, 4, 2, 0.5)]
        for col, method in enumerate(("exact score", "DPS", "ΠGDM")):
            ax = axes[row, col]
            x = sample(method, sde, prior, post, obs, n, steps, seed=0)
            ax.contour(gx, gy, logp, levels=levels, colors="0.5", linewidths=0.6)
            ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.4)
            ax.set_title(f"{name}: {method}, s = 0.1", fontsize=9)
            ax.set_xlim(-3, 3)
            ax.set_ylim(-3, 3)
            ax.set_aspect("equal")
        # s = 0: posterior of x₂ on the line x₁ = y; exact density from the posterior's x₂ marginal at eps
        ax = axes[row, 3]
        obs0, post0 = LinearObservation(A, y, 0.0), prior.condition(A, y, 0.0)
        target = post0.marginal(sde, EPS)
        t2 = torch.linspace(-3, 3, 400, dtype=F64)
        for method in ("exact score", "replacement", "ΠGDM"):
            x = sample(method, sde, prior, post0, obs0, n, steps, seed=0)
            ax.hist(x[:, 1].numpy(), bins=60, range=(-3, 3), density=True, histtype="step", label=method)
        ax.plot(t2, _x2_density(target, t2), "k", lw=1, label="exact")
        ax.set_title(f"{name}: x₂ given x₁ = {float(y[0])}, s = 0", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"VP SDE, ancestral sampling, {steps} steps, {n} samples; observed: x₁", fontsize=10)
    fig.tight_layout()
    return save(fig, out_dir / "inverse_problems.png", dpi=80)


def _x2_density(target, t2: torch.Tensor) -> torch.Tensor:
    """Density of the second coordinate of a (mixture of) 2-D Gaussian(s) on the points ``t2``."""
    if isinstance(target, MultivariateGaussian):
        weights, means, var = torch.ones(1, dtype=F64), target.mean[None, 1], target.cov[None, 1, 1]
    else:
        weights, means, var = target.weights, target.means[:, 1], target.covs[:, 1, 1]
    comp = torch.distributions.Normal(means, var.sqrt())
    return (weights * comp.log_prob(t2[:, None]).exp()).sum(1)


def main(out_dir: Path = Path("docs/img"), quick: bool = False) -> dict:
    """Measure every method (table) and draw the figure; return the measurements."""
    n, step_counts, fig_steps = (300, (10, 20), 20) if quick else (4000, (50, 100, 200, 400), 400)
    results = measure(n, step_counts)
    figure(out_dir, n, fig_steps)
    return results


if __name__ == "__main__":
    print(table(main(quick="--quick" in sys.argv)))
