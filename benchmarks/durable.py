"""Durable chunked output (issue 25): what writing every chunk to disk costs, and the root's peak memory.

(a) ``distributed.sample(..., out_dir=)`` — each chunk to its own CRC-checked ``.npz``, written, flushed, fsync'ed and
renamed, then ``samples.npy`` streamed from the chunk files — against the path it replaced (every chunk kept in
memory, then one ``numpy.save``), on the samplers of ``sdesolve sample`` (`sdesolve.cli._sampling.chunk_sampler`):
the ring mixture with its exact score and the digits UNet. The two runs alternate; best of ``repeats`` after a
warm-up. (b) Peak resident memory of a fresh process sampling ``n`` and ``10 n`` samples either way (after a warm-up chunk,
Linux's ``VmHWM`` reset), for the ring (2-D) and for 1×16×16 Gaussian data, where the samples weigh 1 KiB each.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sdesolve import VPSDE, Gaussian, distributed
from sdesolve.cli._sampling import chunk_sampler
from sdesolve.problems import ring_mixture

OVERHEAD_TARGET, FLAT_TARGET = 0.05, 1.05
ROOT = Path(__file__).resolve().parents[1]


def _sampler(problem: str, steps: int, ode: bool = False, method: str = "dopri5"):
    """The CLI's chunk sampler for ``problem`` (``"ring"``, ``"digits"`` or ``"gauss16"``) on the VP SDE."""
    sde = VPSDE()
    if problem == "digits":
        from sdesolve.digits import load_digits_model

        score, event = load_digits_model().score_fn(sde), (1, 8, 8)
    elif problem == "gauss16":
        score, event = Gaussian(0.3, 0.5, event_shape=(1, 16, 16)).score_fn(sde), (1, 16, 16)
    else:
        score, event = ring_mixture(torch.float32).score_fn(sde), (2,)
    return chunk_sampler(sde, score, event, ode=ode, method=method, predictor="reverse_diffusion",
                         corrector="langevin", steps=steps, snr=0.16, eps=1e-3, device="cpu",
                         dtype=torch.float32)  # fmt: skip


def overhead(cases: list[dict], repeats: int) -> list[dict]:
    """Wall time of a run kept in memory (+ one ``numpy.save``) vs the same run written chunk by chunk."""
    rows = []
    for case in cases:
        if case["problem"] == "digits":
            try:
                import diffusers  # noqa: F401
            except ImportError:
                continue
        sampler, n = (
            _sampler(case["problem"], case["steps"], case.get("ode", False), case.get("method", "dopri5")),
            case["n"],
        )
        with tempfile.TemporaryDirectory() as tmp:

            def memory(tmp=tmp, sampler=sampler, n=n):
                np.save(Path(tmp) / "samples.npy", distributed.sample(sampler, n, seed=0).numpy())

            def durable(tmp=tmp, sampler=sampler, n=n):
                distributed.sample(sampler, n, seed=0, out_dir=Path(tmp) / "run", overwrite=True)

            distributed.sample(sampler, min(n, 1024), seed=0)  # warm-up: one chunk
            times: dict[str, list[float]] = {"memory": [], "durable": []}
            for _ in range(case.get("repeats", repeats)):
                for name, fn in (("memory", memory), ("durable", durable)):
                    start = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - start)
        mem, dur = min(times["memory"]), min(times["durable"])
        rows.append({"problem": case["problem"], "n": n, "sampler": case["label"], "memory_s": mem, "durable_s": dur,
                     "overhead": dur / mem - 1, "overhead_target": OVERHEAD_TARGET})  # fmt: skip
    return rows


def _status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_child(problem: str, n: int, mode: str, steps: int, folder: str) -> None:
    """In a fresh process: after a one-chunk warm-up, reset the peak resident set (``VmHWM``, Linux's
    ``/proc/self/clear_refs``), sample ``n`` either way, and print the peak and the resident set at the start (JSON,
    MiB). ``ru_maxrss`` cannot be reset, and torch's import peak hides what sampling adds to it."""
    torch.set_num_threads(1)
    sampler = _sampler(problem, steps)
    distributed.sample(sampler, 1024, seed=1)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    start = _status_mib("VmRSS")
    if mode == "durable":
        distributed.sample(sampler, n, seed=0, out_dir=folder)
    else:
        np.save(Path(folder) / "samples.npy", distributed.sample(sampler, n, seed=0).numpy())
    print(json.dumps({"peak_mib": _status_mib("VmHWM"), "start_mib": start}))


def peak_memory(problems: list[str], sizes: list[int], steps: int) -> list[dict]:
    """Peak resident memory at ``n`` and ``10 n``, per problem and path, each in a fresh subprocess."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    rows = []
    for problem in problems:
        for mode in ("durable", "memory"):
            runs = []
            for n in sizes:
                with tempfile.TemporaryDirectory() as tmp:
                    code = f"from benchmarks.durable import peak_child; peak_child({problem!r}, {n}, {mode!r}, {steps}, {tmp!r})"
                    out = subprocess.run(
                        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
                    )
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            small, large = (r["peak_mib"] for r in runs)
            rows.append({"problem": problem, "path": mode, "n_small": sizes[0], "n_large": sizes[1],
                         "start_mib": runs[0]["start_mib"], "peak_small_mib": small, "peak_large_mib": large,
                         "growth_small_mib": small - runs[0]["start_mib"], "growth_large_mib": large - runs[1]["start_mib"],
                         "ratio": large / small, "ratio_target": FLAT_TARGET if mode == "durable" else float("nan")})  # fmt: skip
    return rows


def run(
    cases: list[dict], repeats: int, memory_problems: list[str], memory_sizes: list[int], memory_steps: int
) -> dict:
    """Both tables."""
    return {
        "overhead": overhead(cases, repeats),
        "memory": peak_memory(memory_problems, memory_sizes, memory_steps),
    }
