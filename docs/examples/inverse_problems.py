r"""Measurements and figure: conditional samplers against exact posteriors of $y = x_1 + n$ (2-D data, VP SDE).

Data: a correlated Gaussian $\mathcal N((0.5, -0.3), [[1, 0.8], [0.8, 1]])$ and the ring mixture of
`sdesolve.problems.ring_mixture` (8 modes, std 0.2, radius 2, weights ∝ 1…8). The first coordinate is
observed, $A = (1, 0)$, with noise $s \in \{0, 0.1, 0.5\}$. Methods: the exact conditional score (the
posterior's own ``score_fn``: the control), replacement (noiseless only), DPS ($\zeta = 1$, noisy only) and
ΠGDM ($c = 1$, the paper's). All run Euler–Maruyama without corrector (so the conditional approximation is
measured, not the Langevin bias), ``denoise=False``, against the exact law of the posterior at ``eps``.

- Gaussian data: every step is affine, so `gaussian_sampler_law` gives each sampler's exact output law
  (no Monte Carlo) at any step count; the table gives its 2-Wasserstein distance to the exact posterior.
- Mixture data: 4000 samples per run; energy distance to 4000 exact posterior samples, and the floor (the
  mean ± sd of the energy distance between two independent exact sets, 5 pairs).

Run from the repository root: ``python docs/examples/inverse_problems.py`` writes
``docs/img/inverse_problems.png`` and prints the tables of the docs page (a few minutes on one core).
"""

from __future__ import annotations

import statistics
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
    Replacement,
    colorization_matrix,
    dps_score,
    gaussian_sampler_law,
    pc_sample,
    pigdm_score,
    replacement_sample,
)
from sdesolve.metrics import energy_distance
from sdesolve.problems import ring_mixture

F64 = torch.float64
EPS = 1e-3
PREDICTOR = "euler_maruyama"
NOISES = (0.0, 0.1, 0.5)
METHODS = ("exact score", "replacement", "DPS", "ΠGDM")
A = torch.tensor([[1.0, 0.0]], dtype=F64)


def problems() -> dict:
    """name -> (prior, observed value y)."""
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=F64)
    gaussian = MultivariateGaussian(torch.tensor([0.5, -0.3], dtype=F64), cov)
    return {
        "gaussian": (gaussian, torch.tensor([1.0], dtype=F64)),
        "mixture": (ring_mixture(dtype=F64), torch.tensor([1.2], dtype=F64)),
    }


def applies(method: str, noise_std: float) -> bool:
    """Replacement needs noiseless observations, DPS noisy ones."""
    return not ((method == "replacement" and noise_std > 0) or (method == "DPS" and noise_std == 0))


def conditional_score(method: str, sde, prior, post, obs: LinearObservation):
    """The score a guided method samples with (replacement samples with the prior's)."""
    if method == "exact score":
        return post.score_fn(sde)
    if method == "DPS":
        return dps_score(prior.score_fn(sde), sde, obs)
    if method == "ΠGDM":
        return pigdm_score(prior.score_fn(sde), sde, obs)
    return prior.score_fn(sde)


def sample(method: str, sde, prior, post, obs: LinearObservation, n: int, steps: int, seed: int) -> torch.Tensor:
    """``[n, 2]`` posterior samples from ``method``."""
    opts = dict(predictor=PREDICTOR, corrector=None, steps=steps, eps=EPS, denoise=False)
    gen = torch.Generator().manual_seed(seed)
    score = conditional_score(method, sde, prior, post, obs)
    if method == "replacement":
        return replacement_sample(sde, score, obs, n, generator=gen, **opts)
    return pc_sample(sde, score, (n, 2), generator=gen, dtype=F64, **opts)


def wasserstein2(p: MultivariateGaussian, q: MultivariateGaussian) -> float:
    r"""$W_2$ between Gaussians: $\|m_p - m_q\|^2 + \operatorname{tr}(C_p + C_q - 2(C_q^{1/2}C_pC_q^{1/2})^{1/2})$."""

    def sqrtm(c: torch.Tensor) -> torch.Tensor:
        lam, U = torch.linalg.eigh(c)
        return U @ torch.diag(lam.clamp_min(0).sqrt()) @ U.T  # clamp: round-off of PSD matrices only

    root = sqrtm(q.cov)
    cross = torch.trace(p.cov + q.cov - 2 * sqrtm(root @ p.cov @ root))
    return float(((p.mean - q.mean).square().sum() + cross.clamp_min(0)).sqrt())


def hidden_moments(mean: float, std: float, exact) -> dict:
    """The hidden coordinate x₂: measured and exact mean and std."""
    return {
        "x2_mean": mean,
        "x2_std": std,
        "x2_mean_exact": float(exact.mean.reshape(-1)[1]),
        "x2_std_exact": float(exact.cov[1, 1].sqrt()),
    }


def colour_problem() -> tuple[MultivariateGaussian, torch.Tensor, torch.Tensor]:
    """Colorization of a 1×2 RGB image: correlated channels (unequal, so gray and colour are dependent)."""
    k_colour = torch.tensor([[1.0, 0.8, 0.6], [0.8, 1.0, 0.7], [0.6, 0.7, 1.2]], dtype=F64)
    k_space = torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=F64)
    prior = MultivariateGaussian(torch.full((3, 1, 2), 0.5, dtype=F64), torch.kron(k_colour, k_space))
    return prior, colorization_matrix(3, 1, 2).to(F64), torch.tensor([1.2, 0.6], dtype=F64)


def measure_gaussian(prior, A: torch.Tensor, y: torch.Tensor, noises, step_counts: tuple[int, ...]) -> dict:
    """``{(noise, method): {steps: stats}}`` from exact sampler laws: W2 to the posterior and x₂'s moments."""
    sde, results = VPSDE(), {}
    for s in noises:
        obs = LinearObservation(A, y, s, event_shape=prior.event_shape)
        post = prior.condition(A, y, s)
        target = post.marginal(sde, EPS)
        for method in filter(lambda m: applies(m, s), METHODS):
            start = (post if method == "exact score" else prior).marginal(sde, sde.T)
            replacement = Replacement(sde, obs) if method == "replacement" else None
            score = conditional_score(method, sde, prior, post, obs)
            rows = {}
            for steps in step_counts:
                try:
                    law = gaussian_sampler_law(
                        sde, score, start, predictor=PREDICTOR, steps=steps, eps=EPS, replacement=replacement
                    )
                except FloatingPointError:  # unstable at this step count
                    rows[steps] = {"w2": float("inf"), **hidden_moments(float("nan"), float("nan"), target)}
                    continue
                rows[steps] = {
                    "w2": wasserstein2(law, target),
                    **hidden_moments(float(law.mean.reshape(-1)[1]), float(law.cov[1, 1].sqrt()), target),
                }
            results[(s, method)] = rows
    return results


def measure_mixture(n: int, step_counts: tuple[int, ...]) -> dict:
    """``{(noise, method): {steps: stats}}`` by Monte Carlo: energy distance to exact samples, x₂'s moments."""
    sde, (prior, y), results = VPSDE(), problems()["mixture"], {}
    for s in NOISES:
        obs, post = LinearObservation(A, y, s), prior.condition(A, y, s)
        target = post.marginal(sde, EPS)
        ref = target.sample(n, generator=torch.Generator().manual_seed(100))
        floors = [
            energy_distance(target.sample(n, generator=torch.Generator().manual_seed(200 + i)), ref) for i in range(5)
        ]
        for method in filter(lambda m: applies(m, s), METHODS):
            rows = {}
            for steps in step_counts:
                try:
                    x = sample(method, sde, prior, post, obs, n, steps, seed=steps)
                except FloatingPointError:  # the sampler blew up: no samples to compare
                    x = torch.full((n, 2), float("nan"), dtype=F64)
                rows[steps] = {
                    "energy": energy_distance(x, ref),
                    "floor": (statistics.mean(floors), statistics.stdev(floors)),
                    **hidden_moments(float(x[:, 1].mean()), float(x[:, 1].std()), target),
                }
            results[(s, method)] = rows
    return results


def table(results: dict, key: str, label: str, moments: bool = True) -> str:
    """A docs-page Markdown table: ``key`` at every step count, then x₂'s moments at the most steps."""
    step_counts = sorted(next(iter(results.values())))
    names = [f"{label} {k}" for k in step_counts] + ["floor"] * (key == "energy")
    names += ["x₂ mean (exact)", "x₂ std (exact)"] * moments
    lines = ["| s | method | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for (s, method), rows in results.items():
        last = rows[step_counts[-1]]
        cells = [_fmt(rows[k][key]) for k in step_counts]
        if key == "energy":
            cells.append(f"{last['floor'][0]:.4f} ± {last['floor'][1]:.4f}")
        if moments:
            cells.append(f"{last['x2_mean']:.3f} ({last['x2_mean_exact']:.3f})")
            cells.append(f"{last['x2_std']:.3f} ({last['x2_std_exact']:.3f})")
        lines.append(f"| {s} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(v: float) -> str:
    """4 decimals; powers of ten past 1000 (unstable runs); "diverged" for non-finite samples."""
    if v != v or v == float("inf"):
        return "diverged"
    return f"{v:.1e}" if v > 1e3 else f"{v:.4f}"


def _x2_density(target, t2: torch.Tensor) -> torch.Tensor:
    """Density of the second coordinate of a (mixture of) 2-D Gaussian(s) at the points ``t2``."""
    if isinstance(target, MultivariateGaussian):
        weights, means, var = torch.ones(1, dtype=F64), target.mean[None, 1], target.cov[None, 1, 1]
    else:
        weights, means, var = target.weights, target.means[:, 1], target.covs[:, 1, 1]
    return (weights * torch.distributions.Normal(means, var.sqrt()).log_prob(t2[:, None]).exp()).sum(1)


def figure(out_dir: Path, n: int, steps: int) -> Path:
    """Per data set: three samplers at s = 0.1 over exact posterior contours, and x₂'s histograms at s = 0."""
    sde = VPSDE()
    fig, axes = plt.subplots(2, 4, figsize=(14, 6.8))
    g = torch.linspace(-3, 3, 160, dtype=F64)
    gx, gy = torch.meshgrid(g, g, indexing="xy")
    grid = torch.stack([gx.ravel(), gy.ravel()], 1)
    t2 = torch.linspace(-3, 3, 400, dtype=F64)
    for row, (name, (prior, y)) in enumerate(problems().items()):
        obs, post = LinearObservation(A, y, 0.1), prior.condition(A, y, 0.1)
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
        ax = axes[row, 3]  # s = 0: the posterior lives on the line x₁ = y
        obs0, post0 = LinearObservation(A, y, 0.0), prior.condition(A, y, 0.0)
        for method in ("exact score", "replacement", "ΠGDM"):
            x = sample(method, sde, prior, post0, obs0, n, steps, seed=0)
            ax.hist(x[:, 1].numpy(), bins=60, range=(-3, 3), density=True, histtype="step", label=method)
        ax.plot(t2, _x2_density(post0.marginal(sde, EPS), t2), "k", lw=1, label="exact")
        ax.set_title(f"{name}: x₂ given x₁ = {float(y[0])}, s = 0", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"VP SDE, Euler–Maruyama, {steps} steps, {n} samples; observed: x₁", fontsize=10)
    fig.tight_layout()
    return save(fig, out_dir / "inverse_problems.png", dpi=80)


def main(out_dir: Path = Path("docs/img"), quick: bool = False) -> dict:
    """Measure every method on every data set and draw the figure; ``{"gaussian": …, "colour": …, "mixture": …}``."""
    if quick:
        n, gauss_steps, mix_steps, fig_steps = 300, (10, 20), (10, 20), 20
    else:
        n, gauss_steps, mix_steps, fig_steps = 4000, (100, 400, 1600, 6400), (50, 100, 200, 400), 400
    prior, y = problems()["gaussian"]
    results = {
        "gaussian": measure_gaussian(prior, A, y, NOISES, gauss_steps),
        "colour": measure_gaussian(*colour_problem(), NOISES[:2], gauss_steps),
        "mixture": measure_mixture(n, mix_steps),
    }
    figure(out_dir, n, fig_steps)
    return results


if __name__ == "__main__":
    res = main(quick="--quick" in sys.argv)
    print("Gaussian data (exact laws): W2 to the posterior\n" + table(res["gaussian"], "w2", "W₂"))
    print("\nColorization of a 1x2 RGB image (exact laws): W2\n" + table(res["colour"], "w2", "W₂", moments=False))
    print("\nMixture data (4000 samples): energy distance\n" + table(res["mixture"], "energy", "ED"))
