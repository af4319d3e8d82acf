"""Durable chunked output (issue 25): what writing every chunk to disk costs, and the root's peak memory.

(a) ``distributed.sample(..., out_dir=)`` — each chunk to its own CRC-checked ``.npz``, written, flushed, fsync'ed and
renamed, then ``samples.npy`` streamed from the chunk files — against the path it replaced (every chunk kept in
memory, then one ``numpy.save``), on the samplers of ``sdesolve sample`` (`sdesolve.cli._sampling.chunk_sampler`):
the ring mixture with its exact score and the digits UNet. The two runs alternate; best of ``repeats`` after a
warm-up. (b) Peak resident memory of a fresh process sampling ``n`` and ``10 n`` samples either way (after a warm-up chunk,
Linux's ``VmHWM`` reset), for the ring (2-D) and for 1×16×16 Gaussian data, where the samples weigh 1 KiB each.
(c) One and two processes (``torchrun --standalone``, gloo) sampling the ring to disk and gathered: rank 0's wall
time from a barrier after a warm-up chunk.
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

OVERHEAD_TARGET, FLAT_TARGET, SCALING_TARGET = 0.05, 1.05, 1.8
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
                         corrector="langevin", steps=steps, snr=0.16, eps=1e-3, grid="uniform",
                         lower_order_final=False, device="cpu", dtype=torch.float32)  # fmt: skip


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


def scaling_child(n: int, steps: int, mode: str, folder: str) -> None:
    """In each torchrun worker: sample ``n`` ring samples over the ranks (to disk or gathered) and print, from a
    barrier after the warm-up to the end, this rank's wall time and its process CPU time (all threads; JSON)."""
    torch.set_num_threads(1)
    sampler = _sampler("ring", steps)
    with distributed.process_group():
        distributed.sample(sampler, 1024, seed=1)  # warm-up, then line up
        rank, world = distributed.rank_and_world()
        if world > 1:
            torch.distributed.barrier()
        start, cpu = time.perf_counter(), time.process_time()
        if mode == "durable":
            done = distributed.sample(sampler, n, seed=0, out_dir=folder)
        else:
            done = distributed.sample(sampler, n, seed=0)
            if done is not None:
                np.save(Path(folder) / "samples.npy", done.numpy())
        print(json.dumps({"rank": rank, "wall_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu}))


def scaling(n: int, steps: int, repeats: int) -> list[dict]:
    """1 vs 2 processes (``torchrun --standalone``, gloo), to disk and gathered, alternating; best of ``repeats`` of
    rank 0's wall time, and of the busiest rank's CPU time. ``cpu_speedup`` (one process's CPU time over the busiest
    rank's) is the wall-time speedup the split allows when every process has a core of its own; ``speedup`` is what
    the wall clock gave on this machine."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    walls: dict[tuple[str, int], list[float]] = {}
    cpus: dict[tuple[str, int], list[float]] = {}
    for _ in range(repeats):
        for procs in (1, 2):
            for mode in ("durable", "memory"):
                with tempfile.TemporaryDirectory() as tmp:
                    code = (
                        f"from benchmarks.durable import scaling_child; scaling_child({n}, {steps}, {mode!r}, {tmp!r})"
                    )
                    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
                           "--no-python", sys.executable, "-c", code]  # fmt: skip
                    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
                ranks = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
                walls.setdefault((mode, procs), []).append(next(r["wall_s"] for r in ranks if r["rank"] == 0))
                cpus.setdefault((mode, procs), []).append(max(r["cpu_s"] for r in ranks))
    rows = [
        {
            "path": mode,
            "processes": procs,
            "wall_s": min(w),
            "samples_per_s": n / min(w),
            "cpu_s": min(cpus[mode, procs]),
        }
        for (mode, procs), w in walls.items()
    ]
    for r in rows:
        one = next(q for q in rows if q["path"] == r["path"] and q["processes"] == 1)
        r["speedup"], r["cpu_speedup"] = one["wall_s"] / r["wall_s"], one["cpu_s"] / r["cpu_s"]
        r["speedup_target"] = SCALING_TARGET if r["processes"] == 2 else 1.0
    return rows


def run(cases: list[dict], repeats: int, memory_problems: list[str], memory_sizes: list[int], memory_steps: int,
        processes: int = 0, process_steps: int = 200) -> dict:  # fmt: skip
    """The three tables; ``processes`` ring samples for the 1-vs-2-process one (0: skip it)."""
    return {
        "overhead": overhead(cases, repeats),
        "memory": peak_memory(memory_problems, memory_sizes, memory_steps),
        "processes": scaling(processes, process_steps, repeats) if processes else [],
    }
