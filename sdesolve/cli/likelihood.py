"""``sdesolve likelihood``: probability-flow log-likelihood of an embedded problem against its exact density."""

from __future__ import annotations

import math
import time

import torch
import typer

from .._utils import check_choice, check_int, check_positive
from ..likelihood import DIVERGENCES, bits_per_dim, log_likelihood
from ..problems import PROBLEMS
from ..sde import get_sde
from ._common import option, reported

_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _build(data: str, sde: str, dim: int, dtype: str):
    option("--data", check_choice, "data", data, tuple(PROBLEMS))
    sde_obj = option("--sde", get_sde, sde)
    option("--dtype", check_choice, "dtype", dtype, tuple(_DTYPES))
    option("--dim", check_int, "dim", dim)
    kwargs = {"dim": dim} if data == "gaussian" else {}
    return PROBLEMS[data](dtype=_DTYPES[dtype], **kwargs), sde_obj


def likelihood(
    data: str = typer.Option("mixture", help="embedded problem: mixture (2-D ring of 8 modes) | gaussian"),
    sde: str = typer.Option("vp", help="vp | subvp | ve"),
    n: int = typer.Option(
        1000, "--num-samples", "--n", help="number of points, drawn from the exact p_eps (--n: alias)"
    ),
    dim: int = typer.Option(2, help="dimension of --data gaussian"),
    divergence: str = typer.Option("hutchinson_rademacher", help=" | ".join(DIVERGENCES)),
    rtol: float = typer.Option(1e-5, help="relative tolerance of the adaptive solver"),
    atol: float = typer.Option(1e-5, help="absolute tolerance of the adaptive solver"),
    eps: float = typer.Option(1e-5, help="start time of the flow (the density is p_eps)"),
    seed: int = typer.Option(0, help="seed of the points and the Hutchinson probes"),
    dtype: str = typer.Option("float64", help="float64 | float32"),
) -> None:
    """Estimate log p_eps(x) by the probability-flow ODE and compare with the exact density.

    The exact-divergence solve also runs (cheap in low dimension) to give the Hutchinson standard error
    sd(estimate - exact divergence)/sqrt(n) and the model's exact log-likelihood: log p_eps(x) plus the prior
    mismatch log pi(z) - log p_T(z) at the latent z (the flow starts from the prior pi, not p_T).
    """
    oracle, sde_obj = _build(data, sde, dim, dtype)
    option("--num-samples", check_int, "num_samples", n)
    option("--eps", check_positive, "eps", eps)
    option("--eps", sde_obj.check_time, "eps", eps)
    option("--divergence", check_choice, "divergence", divergence, tuple(DIVERGENCES))
    option("--rtol", check_positive, "rtol", rtol)
    option("--atol", check_positive, "atol", atol)
    with reported():
        gen = torch.Generator().manual_seed(seed)
        x = oracle.marginal(sde_obj, eps).sample(n, generator=gen)
        options = {"eps": eps, "rtol": rtol, "atol": atol, "return_info": True}
        score_fn = oracle.score_fn(sde_obj)
        start = time.perf_counter()
        logp, info = log_likelihood(sde_obj, score_fn, x, divergence=divergence, generator=gen, **options)
        wall = time.perf_counter() - start
        if divergence == "exact":
            exact_div, exact_info = logp, info
        else:
            exact_div, exact_info = log_likelihood(sde_obj, score_fn, x, divergence="exact", **options)

    z = exact_info["z"]
    oracle_logp = oracle.marginal(sde_obj, eps).log_prob(x)
    mismatch = sde_obj.prior_logp(z) - oracle.marginal(sde_obj, sde_obj.T).log_prob(z)
    diff = logp - exact_div
    se = float(diff.std()) / math.sqrt(n) if n > 1 else float("nan")
    d = x[0].numel()
    rows = [
        (f"estimate ({divergence})", float(logp.mean()), float(bits_per_dim(logp, x).mean())),
        ("exact divergence", float(exact_div.mean()), float(bits_per_dim(exact_div, x).mean())),
        ("exact model: log p_eps + mismatch", float((oracle_logp + mismatch).mean()), None),
        ("oracle log p_eps(x)", float(oracle_logp.mean()), float(bits_per_dim(oracle_logp, x).mean())),
    ]
    typer.echo(f"likelihood: data={data} (d={d}), sde={sde_obj!r}, n={n}, eps={eps:g}, rtol={rtol:g}, atol={atol:g}")
    typer.echo(f"{'mean over points':36s} {'nats':>11s} {'bits/dim':>9s}")
    for name, nats, bpd in rows:
        typer.echo(f"{name:36s} {nats:11.5f} {'' if bpd is None else f'{bpd:9.5f}'}")
    typer.echo(
        f"estimate - oracle: {float((logp - oracle_logp).mean()):+.2e} nats (prior mismatch {float(mismatch.mean()):+.2e})"
    )
    typer.echo(f"Hutchinson SE of the mean: {se:.2e} nats (estimate - exact divergence: {float(diff.mean()):+.2e})")
    typer.echo(f"NFE: {info['nfe']} (exact divergence: {exact_info['nfe']}), wall time {wall:.2f} s")
