"""The one sampler call of ``sdesolve sample`` (ring, digits, class-conditional digits) and its config record."""

from __future__ import annotations

import torch

from ..sampling import ode_sample, pc_sample
from ..solvers.ode import FIXED_STEP


def run_sampler(score_fn, sde_obj, shape, *, ode: bool, method: str | None, steps: int, grid: str | torch.Tensor,
                lower_order_final: bool, predictor: str | None, corrector: str | None, snr: float | None, eps: float,
                **start) -> tuple[torch.Tensor, dict]:  # fmt: skip
    """``ode_sample`` (``ode``) or ``pc_sample`` with the command's options; ``start``: seeds or generator, device,
    dtype. Adaptive ODE methods take neither steps nor grid."""
    common = dict(eps=eps, return_info=True, **start)
    with torch.no_grad():
        if not ode:
            return pc_sample(sde_obj, score_fn, shape, predictor=predictor, corrector=corrector, steps=steps, snr=snr,
                             grid=grid, **common)  # fmt: skip
        if method not in FIXED_STEP:
            return ode_sample(sde_obj, score_fn, shape, method=method, **common)
        return ode_sample(sde_obj, score_fn, shape, method=method, steps=steps, grid=grid,
                          lower_order_final=lower_order_final, **common)  # fmt: skip


def run_config(*, sde: str, ode: bool, method, predictor, corrector, snr, steps: int, grid, lower_order_final: bool
               ) -> dict:  # fmt: skip
    """The sampler part of ``metrics.json``'s config: options that did not apply are null."""
    fixed = not ode or method in FIXED_STEP
    return {"sde": sde, "sampler": "ode" if ode else "pc", "ode_method": method if ode else None,
            "predictor": None if ode else predictor, "corrector": None if ode else corrector,
            "snr": None if ode else snr, "steps": steps if fixed else None,
            "grid": (grid if isinstance(grid, str) else grid.tolist()) if fixed else None,
            "lower_order_final": lower_order_final}  # fmt: skip


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` → ``"float32"``: the spelling of ``--dtype`` in every ``metrics.json``."""
    return str(dtype).removeprefix("torch.")
