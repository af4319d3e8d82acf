r"""The shipped rectified-flow digits model: FD against NFE for every method, beside diffusers' flow scheduler on
the same model: ``python -m benchmarks.digits_flow [--n N] [--out DIR]``.

Fréchet distance in the fixed classifier's feature space to the training split (`sdesolve.digits.digits_metrics`),
with the held-out split's floor; n = 297 samples (the held-out split's size) from the same prior draws for every
sampler, so differences below about 1 are noise (docs/examples/digits.md). ODE methods on the uniform t grid
(Runge–Kutta) and the logSNR grid (exponential integrators); stochastic samplers with w = σ (Euler–Maruyama,
improved Euler); diffusers' ``FlowMatchEulerDiscreteScheduler`` (shift 1) on the model's own timesteps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from sdesolve import EulerMaruyama, ImprovedEuler, ode_sample, pc_sample
from sdesolve.digits import digits_metrics, load_digits_model, weights_path

NFES = (4, 6, 8, 10, 20, 50)
ODE = {"euler": ("uniform", 1), "heun": ("uniform", 2), "ddim": ("logsnr", 1), "dpm_solver_pp_2m": ("logsnr", 1),
       "dpm_solver_pp_3m": ("logsnr", 1), "unipc_2": ("logsnr", 1), "unipc_3": ("logsnr", 1),
       "ipndm": ("uniform", 1)}  # fmt: skip
EPS = 1e-3


def run(n: int = 297, nfes=NFES, seed: int = 0) -> dict:
    model = load_digits_model(weights_path("rectified_flow"))
    sde, score = model.sde, model.score_fn()
    x_t = sde.prior_sampling((n, 1, 8, 8), generator=torch.Generator().manual_seed(seed))
    rows = []

    def record(sampler: str, nfe: int, x: torch.Tensor) -> None:
        m = digits_metrics(x, model.classifier)
        rows.append({"sampler": sampler, "nfe": nfe, "fd": m["frechet_distance"], "floor": m["frechet_distance_floor"]})
        print(json.dumps(rows[-1]), flush=True)

    with torch.no_grad():
        for method, (grid, per_step) in ODE.items():
            for target in nfes:
                steps = max(1, round(target / per_step))
                x, info = ode_sample(sde, score, x_t.shape, method=method, steps=steps, grid=grid, eps=EPS,
                                     x_init=x_t, return_info=True)  # fmt: skip
                record(f"{method} ({grid})", info["nfe"], x)
        for predictor in (EulerMaruyama(sde, diffusion="sigma"), ImprovedEuler(sde, diffusion="sigma")):
            for target in nfes:
                steps = max(1, round(target / predictor.nfe))
                x, info = pc_sample(sde, score, x_t.shape, predictor=predictor, corrector="none", steps=steps,
                                    eps=EPS, x_init=x_t, seeds=range(n), return_info=True)  # fmt: skip
                record(f"{type(predictor).__name__} (w = sigma)", info["nfe"], x)
        try:
            from diffusers import FlowMatchEulerDiscreteScheduler
        except ImportError:
            return {"rows": rows}
        for target in nfes:
            sch = FlowMatchEulerDiscreteScheduler()
            sch.set_timesteps(target)
            x = x_t.clone()
            for t in sch.timesteps:
                x = sch.step(model.unet(x, t.expand(n)).sample, t, x).prev_sample
            record("diffusers FlowMatchEuler", target, x)
    return {"rows": rows}


def markdown(result: dict) -> str:
    rows = result["rows"]
    floor = rows[0]["floor"]
    samplers = list(dict.fromkeys(r["sampler"] for r in rows))
    out = [f"FD to the training digits (held-out floor {floor:.2f}; n = 297, differences below ~1 are noise); "
           "NFE in brackets where it differs from the column", "", "| sampler | " + " | ".join(map(str, NFES)) + " |",
           "|---|" + "---|" * len(NFES)]  # fmt: skip
    for s in samplers:
        rs = [r for r in rows if r["sampler"] == s]
        cells = [f"{r['fd']:.2f}" + ("" if r["nfe"] == k else f" ({r['nfe']})") for r, k in zip(rs, NFES, strict=False)]
        out.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.digits_flow", description=__doc__)
    parser.add_argument("--n", type=int, default=297)
    parser.add_argument("--out", type=Path, default=None, help="folder for digits_flow.json and digits_flow.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = run(args.n)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "digits_flow.json").write_text(json.dumps(result, indent=1))
        (args.out / "digits_flow.md").write_text(markdown(result))
    return result


if __name__ == "__main__":
    main()
