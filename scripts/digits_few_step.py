"""The few-step solvers of `ode_sample` on the shipped digits model, logSNR grid (docs/examples/digits.md).

    OMP_NUM_THREADS=1 python scripts/digits_few_step.py

Prints one Markdown row per solver: FD (NFE, wall s) at 10, 20 and 50 NFE, from the prior draw and network of
`scripts/digits_side_by_side.py` (`lower_order_final` for the multistep methods, as diffusers below 15 steps).
"""

import sys
from pathlib import Path

import torch

from sdesolve import ode_sample
from sdesolve.digits import digits_metrics, load_digits_data, load_digits_model
from sdesolve.solvers.ode import LOWER_ORDER_FINAL

sys.path.insert(0, str(Path(__file__).parent))
import digits_side_by_side as side  # noqa: E402  (a sibling script, not a package)


def ours_logsnr(method: str, evals_per_step: int):
    def run(model, x_T, nfe, gen):
        x, info = ode_sample(model.sde, model.score_fn(), x_T.shape, method=method, steps=max(1, nfe // evals_per_step),
                             eps=side.EPS, grid="logsnr", x_init=x_T, return_info=True,
                             lower_order_final=method in LOWER_ORDER_FINAL)  # fmt: skip
        return x, info["nfe"]

    return run


def main() -> None:
    torch.set_num_threads(1)
    model, data = load_digits_model(), load_digits_data()
    x_T = torch.randn((side.N, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    for method, k in side.FEW_STEP_SOLVERS.items():
        run, cells = ours_logsnr(method, k), []
        for nfe in (10, 20, 50):
            x, used, wall = side._timed(lambda run=run, nfe=nfe: run(model, x_T, nfe, torch.Generator().manual_seed(1)))
            cells.append(
                f"{digits_metrics(x, model.classifier, data)['frechet_distance']:.2f} ({int(used)} NFE, {wall:.1f} s)"
            )
        label = ", lower_order_final" if method in LOWER_ORDER_FINAL else ""
        print(f"| sdesolve ode {method} (logSNR{label}) | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
