"""The step loop against the anchors' loops and against its floor (issue 11), ratios side by side in one run.

(a) `pc_sample` (reverse diffusion, with and without one batch-norm Langevin step) vs diffusers'
``ScoreSdeVeScheduler`` loop as ``ScoreSdeVePipeline`` runs it, on the same exact-score VE model, and vs the
floor: a loop doing only the same score calls, ``randn(out=)`` and two in-place axpys per evaluation — the
least any reverse-diffusion step does. (b) Euler–Maruyama vs ``torchsde.sdeint(method="euler")``.
(d) k-diffusion's ``sample_euler``/``sample_heun`` vs our fixed-step flow on the same σ grid.
(g) ``execution="compile"`` vs eager, and (h) where CUDA exists, the loop on the GPU: diffusers', ours eager and
ours replayed as one CUDA graph (``execution="cuda_graph"``).
Best of ``repeats`` wall times, one thread; ratios > 1 mean ours is faster (``speedup``) or slower (``vs_floor``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from sdesolve import VESDE, VPSDE, Gaussian, LangevinCorrector, ode_sample, pc_sample, score_from_sigma_model
from sdesolve.grids import uniform_grid
from sdesolve.torchsde import to_torchsde

from ._kdiffusion import load_sampling

SIGMA_MIN, SIGMA_MAX, SNR = 0.01, 50.0, 0.16
MU, S = 0.5, 0.2  # per-pixel Gaussian data N(0.5, 0.2²): exact score for every σ


def best(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


class SigmaModel(torch.nn.Module):
    r"""The exact VE score $s(x, \sigma) = (\mu - x)/(s^2 + \sigma^2)$ as a ``model(x, sigma)``."""

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        w = (-1.0 / (S**2 + sigma**2)).reshape(-1, *([1] * (x.ndim - 1)))
        return (x - MU) * w


def _diffusers_loop(shape, steps: int, correct: str | None, model: SigmaModel, device: str = "cpu") -> torch.Tensor:
    """diffusers' ``ScoreSdeVePipeline.__call__`` loop body, on its own ``ScoreSdeVeScheduler``."""
    from diffusers import ScoreSdeVeScheduler

    sched = ScoreSdeVeScheduler(
        sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, snr=SNR, correct_steps=int(correct is not None)
    )
    gen = torch.Generator(device).manual_seed(0)
    sample = torch.randn(shape, generator=gen, device=device) * sched.init_noise_sigma
    sched.set_timesteps(steps, device=device)
    sched.set_sigmas(steps)
    for i, t in enumerate(sched.timesteps):
        sigma_t = sched.sigmas[i] * torch.ones(shape[0], device=device)
        for _ in range(sched.config.correct_steps):
            sample = sched.step_correct(model(sample, sigma_t), sample, generator=gen).prev_sample
        output = sched.step_pred(model(sample, sigma_t), t, sample, generator=gen)
        sample, sample_mean = output.prev_sample, output.prev_sample_mean
    return sample_mean


def _ours(shape, steps: int, correct: str | None, model: SigmaModel, device: str = "cpu", **kwargs) -> torch.Tensor:
    sde = VESDE(SIGMA_MIN, SIGMA_MAX)
    corr = LangevinCorrector(sde, snr=SNR, norm=correct) if correct else None
    gen = torch.Generator(device).manual_seed(0)
    score = score_from_sigma_model(model, sde)
    return pc_sample(
        sde, score, shape, predictor="reverse_diffusion", corrector=corr, steps=steps, generator=gen, device=device,
        **kwargs,
    )  # fmt: skip


def _floor(shape, steps: int, correct: str | None, model: SigmaModel) -> torch.Tensor:
    """The same score calls, ``randn(out=)`` and two in-place axpys per evaluation, nothing else."""
    sde = VESDE(SIGMA_MIN, SIGMA_MAX)
    score = score_from_sigma_model(model, sde)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).mul_(SIGMA_MAX)
    buf = torch.empty_like(x)
    ts = [t.expand(shape[0]) for t in uniform_grid(sde, steps, 1e-3)]
    for i in range(steps):
        for _ in range(1 + int(correct is not None)):
            s = score(x, ts[i])
            torch.randn(shape, generator=gen, out=buf)
            x.add_(s, alpha=1e-3).add_(buf, alpha=1e-3)
    return x


def pc_vs_diffusers(shapes, steps: int, repeats: int) -> list[dict]:
    """Rows per (shape, corrector): µs per step of diffusers' loop, ours and the floor; speedup and vs_floor.

    Correctors: none, the batch-norm rule (diffusers' only one) and our σ-rule default (no diffusers counterpart).
    """
    model = SigmaModel()
    rows = []
    for shape in shapes:
        for correct in (None, "batch", "sigma"):
            loops = (("ours", _ours), ("floor", _floor)) + (
                (("diffusers", _diffusers_loop),) if correct != "sigma" else ()
            )
            per_step = {
                name: 1e6 * best(lambda f=fn, s=shape, c=correct: f(s, steps, c, model), repeats) / steps
                for name, fn in loops
            }
            per_step.setdefault("diffusers", float("nan"))
            rows.append(
                {
                    "shape": "x".join(map(str, shape)),
                    "corrector": f"langevin[{correct}]" if correct else "none",
                    "diffusers_us": per_step["diffusers"],
                    "ours_us": per_step["ours"],
                    "floor_us": per_step["floor"],
                    "speedup": per_step["diffusers"] / per_step["ours"],
                    "speedup_target": 3.0 if shape[0] <= 16 else 1.5,
                    "vs_floor": per_step["ours"] / per_step["floor"],
                    "vs_floor_target": 1.15 if correct else 1.10,
                }
            )
    return rows


def compiled_vs_eager(shapes, steps: int, repeats: int) -> list[dict]:
    """``pc_sample(execution="compile")`` vs eager (µs per step, reverse diffusion with and without the batch Langevin
    step; compilation is the warm-up call's, outside the timing). Target: compiled at least as fast."""
    import torch._dynamo

    torch._dynamo.config.recompile_limit = 64  # one graph per shape and step variant, all in this one process
    model, rows = SigmaModel(), []
    for shape in shapes:
        for correct in (None, "batch"):
            us = {
                mode: 1e6
                * best(lambda s=shape, c=correct, m=mode: _ours(s, steps, c, model, execution=m), repeats)
                / steps
                for mode in ("eager", "compile")
            }
            rows.append(
                {
                    "shape": "x".join(map(str, shape)),
                    "corrector": f"langevin[{correct}]" if correct else "none",
                    "eager_us": us["eager"],
                    "compiled_us": us["compile"],
                    "speedup": us["eager"] / us["compile"],
                    "speedup_target": 1.0,
                }
            )
    return rows


def on_cuda(shapes, steps: int, repeats: int) -> list[dict]:
    """The PC loop on the GPU (µs per step, synchronised): diffusers', ours eager, ours as one CUDA graph; [] without
    CUDA. The graph's capture is inside each timed call (a run captures its own grid)."""
    if not torch.cuda.is_available():
        return []
    model, rows = SigmaModel(), []

    def timed(fn):
        def call():
            fn()
            torch.cuda.synchronize()

        return 1e6 * best(call, repeats) / steps

    for shape in shapes:
        for correct in (None, "batch"):
            diffusers = timed(lambda s=shape, c=correct: _diffusers_loop(s, steps, c, model, "cuda"))
            eager = timed(lambda s=shape, c=correct: _ours(s, steps, c, model, "cuda"))
            graph = timed(lambda s=shape, c=correct: _ours(s, steps, c, model, "cuda", execution="cuda_graph"))
            rows.append(
                {
                    "shape": "x".join(map(str, shape)),
                    "corrector": f"langevin[{correct}]" if correct else "none",
                    "device": torch.cuda.get_device_name(),
                    "diffusers_us": diffusers,
                    "eager_us": eager,
                    "graph_us": graph,
                    "speedup_eager": diffusers / eager,
                    "speedup_graph": diffusers / graph,
                    "speedup_target": 3.0 if shape[0] <= 16 else 1.5,
                    "graph_vs_eager": eager / graph,
                    "graph_vs_eager_target": 1.0,
                }
            )
    return rows


def em_vs_torchsde(batch: int, steps: int, repeats: int) -> list[dict]:
    """Euler–Maruyama on the reverse VP SDE: ours vs ``torchsde.sdeint(method="euler")`` (same dt, own noise)."""
    import torchsde

    sde, data = VPSDE(), Gaussian(torch.full((2,), 0.3), 0.5)
    score = data.score_fn(sde)
    eps = 1e-3
    x_T = data.marginal(sde, sde.T).sample(batch, torch.Generator().manual_seed(0))
    module, ts = to_torchsde(sde, score, (2,)), torch.tensor([0.0, sde.T - eps])

    def theirs():
        return torchsde.sdeint(module, x_T, ts, method="euler", dt=(sde.T - eps) / steps)

    def ours():
        return pc_sample(sde, score, x_T.shape, predictor="euler_maruyama", corrector=None, steps=steps, x_init=x_T)

    t_theirs, t_ours = best(theirs, repeats), best(ours, repeats)
    return [
        {
            "batch": batch,
            "steps": steps,
            "torchsde_s": t_theirs,
            "ours_s": t_ours,
            "speedup": t_theirs / t_ours,
            "speedup_target": 8.0,
        }
    ]


def vs_kdiffusion(shape, steps: int, repeats: int) -> list[dict]:
    """k-diffusion's Euler and Heun samplers vs ``ode_sample`` euler/heun on the same VE σ grid (speed only)."""
    kd = load_sampling()
    if kd is None:
        return []
    sde, model = VESDE(SIGMA_MIN, SIGMA_MAX), SigmaModel()
    t_grid = uniform_grid(sde, steps, 1e-3, dtype=torch.float64)
    sigmas = torch.cat([sde.std(t_grid).float(), torch.zeros(1)])  # k-diffusion ends with σ = 0
    sigmas_ours = sigmas[:-1]
    x_T = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * SIGMA_MAX

    def denoiser(x, sigma):  # D = x + σ² s (Tweedie), k-diffusion's model interface
        return x + (sigma**2).reshape(-1, *([1] * (x.ndim - 1))) * model(x, sigma)

    score = score_from_sigma_model(model, sde)
    rows = []
    for kd_name, method in (("sample_euler", "euler"), ("sample_heun", "heun")):
        kd_fn = getattr(kd, kd_name)
        # k-diffusion takes one more (final, to σ = 0) step; time its loop over our steps only.
        t_theirs = best(lambda f=kd_fn: f(denoiser, x_T.clone(), sigmas_ours, disable=True), repeats)
        t_ours = best(lambda m=method: ode_sample(sde, score, shape, method=m, grid=t_grid, x_init=x_T), repeats)
        rows.append(
            {
                "shape": "x".join(map(str, shape)),
                "method": method,
                "kdiffusion_s": t_theirs,
                "ours_s": t_ours,
                "speedup": t_theirs / t_ours,
                "speedup_target": 1.0,
            }
        )
    return rows
