r"""Sampling across processes with ``torch.distributed``: the same samples for any number of ranks.

The ``n`` samples are cut into fixed chunks of ``chunk_size`` consecutive indices; chunk ``c`` runs on rank
``c mod N`` with per-sample seeds ``sample_seeds(seed, index)`` (`sdesolve.solvers.seeded`), so every chunk
is the same computation — same shape, same seeds — whatever ``N`` is, and the gathered result is bitwise the
same for one process or many. Ranks first exchange their status (``all_gather_object``): a rank that failed
raises its own error and every other rank raises a ``RuntimeError`` naming it, instead of waiting in the
gather; a rank that dies outright is caught by torchrun or by the process group's timeout.

Run under ``torchrun --nproc_per_node=N`` (gloo on CPU, nccl on CUDA); without it everything runs in one
process.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from ._utils import check_int
from .durable import ChunkStore, StoredSamples
from .solvers.seeded import check_seeds, sample_seeds

__all__ = [
    "CHUNK_SIZE",
    "TIMEOUT",
    "process_group",
    "rank_and_world",
    "chunks",
    "local_device",
    "parse_seeds",
    "format_seeds",
    "per_sample_seeds",
    "sample",
]

CHUNK_SIZE = 1024
TIMEOUT = timedelta(minutes=10)
Sampler = Callable[[Tensor], "Tensor | tuple[Tensor, dict]"]
T = TypeVar("T")


@contextlib.contextmanager
def process_group(backend: str | None = None, timeout: timedelta = TIMEOUT) -> Iterator[bool]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1) for the ``with`` block; yield whether one
    is active. ``backend`` defaults to nccl when CUDA is available, else gloo; collectives time out after
    ``timeout``. An existing process group (the user's own) is used and left alone."""
    owned = int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized()
    if owned:
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":  # one GPU per rank; object collectives run on the current device
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=timeout)
    try:
        yield dist.is_available() and dist.is_initialized()
    finally:
        if owned:
            dist.destroy_process_group()


def rank_and_world() -> tuple[int, int]:
    """``(rank, world size)`` of the active process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_device(device: str) -> str:
    """``"cuda"`` → this rank's GPU ``cuda:LOCAL_RANK`` (torchrun sets it); any other device unchanged."""
    return f"cuda:{os.environ.get('LOCAL_RANK', '0')}" if device == "cuda" else device


def chunks(num_samples: int, chunk_size: int = CHUNK_SIZE) -> list[range]:
    """The sample indices ``0..num_samples-1`` in consecutive chunks of ``chunk_size`` (the last one shorter)."""
    num_samples, chunk_size = check_int("num_samples", num_samples), check_int("chunk_size", chunk_size)
    return [range(s, min(s + chunk_size, num_samples)) for s in range(0, num_samples, chunk_size)]


def parse_seeds(text: str) -> Tensor:
    """Per-sample seeds from NVlabs/edm's ``--seeds`` syntax: comma-separated ints and inclusive ranges.

    ``"0-3,7,10-11"`` → ``[0, 1, 2, 3, 7, 10, 11]`` (edm's ``parse_int_list``).

    Returns:
        int64 ``[n]`` in the order given.

    Raises:
        ValueError: an empty or malformed part, a range whose end is below its start, a negative or repeated seed
            (each named).
    """
    parts = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if m is None:
            raise ValueError(f"seeds: {part.strip()!r} in {text!r} is not a non-negative int or a range A-B")
        lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
        if hi < lo:
            raise ValueError(f"seeds: range {part.strip()!r} ends below its start")
        if hi >= 2**63:
            raise ValueError(f"seeds: {hi} does not fit in int64")
        parts.append(torch.arange(lo, hi + 1, dtype=torch.int64))
    seeds = torch.cat(parts)
    unique, counts = torch.unique(seeds, return_counts=True)
    if bool((counts > 1).any()):
        raise ValueError(f"seeds: {int(unique[counts > 1][0])} appears {int(counts[counts > 1][0])} times in {text!r}")
    return seeds


def format_seeds(seeds: Tensor) -> str:
    """The shortest `parse_seeds` text for ``seeds`` (consecutive runs as ``A-B``): ``[0, 1, 2, 7]`` → ``"0-2,7"``."""
    v = seeds.to(torch.int64).tolist()
    runs, start = [], 0
    for i in range(1, len(v) + 1):
        if i == len(v) or v[i] != v[i - 1] + 1:
            runs.append(str(v[start]) if i - 1 == start else f"{v[start]}-{v[i - 1]}")
            start = i
    return ",".join(runs)


def per_sample_seeds(num_samples: int | None, seed: int | None, seeds: Sequence[int] | Tensor | None) -> Tensor:
    """The run's per-sample seeds, int64 ``[n]``: ``sample_seeds(seed, k)`` for ``k < num_samples``, or ``seeds``.

    Raises:
        ValueError: neither or both of ``seed`` and ``seeds``; ``num_samples`` missing, or unequal to ``len(seeds)``.
    """
    if seeds is None:
        if seed is None:
            raise ValueError("pass seed= (sample k gets sample_seeds(seed, k)) or seeds= (one seed per sample)")
        return sample_seeds(seed, torch.arange(check_int("num_samples", num_samples)))
    if seed is not None:
        raise ValueError("pass seed= or seeds=, not both: seeds= gives every sample's seed itself")
    values = check_seeds(seeds, len(seeds), None, "cpu")
    check_int("len(seeds)", values.shape[0])
    if num_samples is not None and num_samples != values.shape[0]:
        raise ValueError(f"num_samples={num_samples!r} differs from len(seeds)={values.shape[0]}; give one of them")
    return values


class _RankLost(RuntimeError):
    """A collective failed: another rank died (connection closed) or stopped answering (timeout)."""


def _everywhere(step: Callable[[], T], doing: str) -> list[T]:
    """Run ``step`` on every rank and return every rank's result, in rank order.

    A rank whose ``step`` raises re-raises it after the exchange, and every other rank raises a ``RuntimeError``
    naming it — nobody waits in a later collective for a rank that failed.
    """
    _, world = rank_and_world()
    if world == 1:
        return [step()]
    error, value = None, None
    try:
        value = step()
    except Exception as err:  # reported to every rank below, then re-raised here
        error = err
    statuses: list = [None] * world
    try:
        dist.all_gather_object(statuses, (None if error is None else f"{type(error).__name__}: {error}", value))
    except RuntimeError as err:
        text = re.sub(r"^\[[^\]]*\]\s*", "", str(err).strip())  # gloo prefixes its source location
        reason = text.splitlines()[0] if text else type(err).__name__
        raise _RankLost(f"lost contact with the other ranks after {doing} ({reason}): a rank died or hung") from err
    if error is not None:
        raise error
    failed = [(r, s[0]) for r, s in enumerate(statuses) if s[0] is not None]
    if failed:
        raise RuntimeError(f"rank {failed[0][0]} of {world} failed: {failed[0][1]}")
    return [s[1] for s in statuses]


def _call(sampler: Sampler, seeds: Tensor) -> tuple[Tensor, dict]:
    """``sampler(seeds)`` as ``(samples, info)``, refused unless the samples have one row per seed (fewer rows would
    be gathered as zero padding, more would shift every later sample)."""
    out = sampler(seeds)
    samples, info = out if isinstance(out, tuple) else (out, {})
    if not hasattr(samples, "shape") or len(samples.shape) < 1 or samples.shape[0] != seeds.shape[0]:
        got = tuple(samples.shape) if hasattr(samples, "shape") else type(samples).__name__
        raise ValueError(f"sampler(seeds) must return [{seeds.shape[0]}, *event] for {seeds.shape[0]} seeds, got {got}")
    return samples, info


def _check_root(root: int, world: int) -> int:
    """The gathering rank: an int in ``[0, world)`` (checked on every rank before any work)."""
    root = check_int("root", root, minimum=0)
    if root >= world:
        raise ValueError(f"root must be a rank in [0, {world}) (world size {world}), got root={root}")
    return root


def sample(
    sampler: Sampler,
    num_samples: int | None = None,
    *,
    seed: int | None = None,
    seeds: Sequence[int] | Tensor | None = None,
    chunk_size: int = CHUNK_SIZE,
    root: int = 0,
    out_dir: str | Path | None = None,
    config: dict | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Tensor | StoredSamples | None:
    """Run ``sampler`` on this rank's chunks; gather the samples on ``root`` in memory, or store them in ``out_dir``.

    With ``out_dir`` every finished chunk is written to its own file at once, atomically (`sdesolve.durable`), and
    ``root`` assembles ``samples.npy`` from the files by streaming: nothing is gathered in memory, and a run
    killed at any point resumes when called again with the same arguments, on any number of processes — chunks on
    disk are verified and kept, missing or corrupt ones are sampled (spread evenly over the ranks), and the result
    is bitwise the same as an uninterrupted run. ``out_dir`` must be one folder that every rank sees.

    Args:
        sampler: ``sampler(seeds)`` → samples ``[m, *event]`` for the int64 per-sample seeds ``[m]`` (e.g.
            ``lambda s: pc_sample(sde, score, (len(s), d), seeds=s)``), the same shape and dtype on every rank; or
            ``(samples, info)`` with a JSON-serialisable ``info`` dict, stored with the chunk (``out_dir`` only).
        num_samples: total number of samples ``n`` (with ``seed``).
        seed: the run's seed; sample ``k`` gets ``sample_seeds(seed, k)``.
        seeds: instead of ``seed``, every sample's own seed (``n = len(seeds)``; see `parse_seeds`).
        chunk_size: samples per ``sampler`` call; results depend on it (adaptive solvers, batch statistics)
            but never on the number of ranks.
        root: the rank that receives (or assembles) the samples.
        out_dir: folder for ``manifest.json``, ``chunks/`` and ``samples.npy`` (None: gather in memory).
        config: with ``out_dir``, a JSON-serialisable description of what else determines the samples (model, SDE,
            method, steps, dtype, ...); a rerun with a different one is refused, naming what differs.
        overwrite: with ``out_dir``, delete a previous run's files there instead of refusing a different one.
        progress: with ``out_dir``, one tqdm bar on ``root`` for the whole job (samples on disk across ranks, rate,
            ETA; shown only when stderr is a terminal).

    Returns:
        On ``root``: ``[n, *event]`` (on the sampler's device), or with ``out_dir`` a `StoredSamples` (its ``path``
        is ``samples.npy``); None on the other ranks.

    Raises:
        ValueError: bad ``seed``/``seeds``/``num_samples``; with ``out_dir``, a folder holding a run with other
            arguments (unless ``overwrite``), or a folder not shared by every rank.
        RuntimeError: on every rank but a failing one, naming the rank that failed and its error; on the survivors
            when a rank died (with ``out_dir``, how many samples are safe on disk).
    """
    values = per_sample_seeds(num_samples, seed, seeds)
    root = _check_root(root, rank_and_world()[1])
    if out_dir is not None:
        spec = {"rule": "sample_seeds(seed, k)", "seed": seed} if seeds is None else {"list": format_seeds(values)}
        store = ChunkStore(out_dir, values, chunk_size, {**(config or {}), "seeds": spec})
        return _sample_to_store(sampler, store, root=root, overwrite=overwrite, progress=progress)
    work = chunks(values.shape[0], chunk_size)
    rank, world = rank_and_world()
    local = None

    def run() -> tuple[tuple[int, ...], torch.dtype | None]:
        nonlocal local
        parts = [_call(sampler, values[c.start : c.stop])[0] for c in work[rank::world]]
        local = torch.cat(parts) if parts else None
        return (tuple(local.shape[1:]), local.dtype) if local is not None else ((), None)

    layouts = _everywhere(run, "sampling")
    return local if world == 1 else _gather(local, layouts, work, rank, world, root)


def _sample_to_store(
    sampler: Sampler, store: ChunkStore, *, root: int, overwrite: bool, progress: bool
) -> StoredSamples | None:
    """`sample` with ``out_dir``: prepare the folder, find the unfinished chunks, sample them, assemble on ``root``."""
    t0 = time.perf_counter()
    rank, world = rank_and_world()
    _everywhere(lambda: store.prepare(overwrite) if rank == root else None, "preparing the output folder")

    def survey() -> dict[int, str]:
        if rank != root:
            store.check_manifest()
        found = {c: why for c in range(rank, len(store.spans), world) if (why := store.problem(c)) is not None}
        for c, why in found.items():
            if why != "missing":  # unusable: gone before anyone counts the chunks on disk
                store.chunk_path(c).unlink()
        return found

    problems = {c: why for part in _everywhere(survey, "checking the chunks on disk") for c, why in part.items()}
    todo = sorted(problems)
    redone = {c: why for c, why in problems.items() if why != "missing"}
    if rank == root and redone:
        lines = "; ".join(f"{store.chunk_path(c).name}: {why}" for c, why in sorted(redone.items()))
        warnings.warn(f"{len(redone)} chunk file(s) in {str(store.chunk_dir)!r} cannot be used: deleted, and sampled again "
                      f"({lines})", RuntimeWarning, stacklevel=3)  # fmt: skip

    def work() -> None:  # one chunk is written (fsync: milliseconds) while the next is sampled
        with ThreadPoolExecutor(1, thread_name_prefix="sdesolve-chunk-writer") as writer:
            pending = None
            for c in todo[rank::world]:
                span = store.spans[c]
                samples, info = _call(sampler, store.seeds[span.start : span.stop])
                samples = samples.detach().cpu() if isinstance(samples, Tensor) else samples  # device work stays here
                if pending is not None:
                    pending.result()  # at most one chunk in flight; its error is raised here
                pending = writer.submit(store.write, c, samples, info)
            if pending is not None:
                pending.result()

    n = len(store.seeds)
    done_before = n - sum(len(store.spans[c]) for c in todo)
    with _progress_bar(store, n, done_before, progress and rank == root):
        try:
            _everywhere(work, "sampling")
        except _RankLost as err:
            raise RuntimeError(f"{err}; {store.samples_on_disk()} of {n} samples are safe in "
                               f"{str(store.folder)!r}: rerun the same command, on any number of processes, to "
                               "finish") from err  # fmt: skip
    if rank != root:
        return None
    path, infos = store.assemble()
    return StoredSamples(path, n, len(store.spans), len(store.spans) - len(todo), len(redone), n - done_before,
                         time.perf_counter() - t0, infos)  # fmt: skip


@contextlib.contextmanager
def _progress_bar(store: ChunkStore, total: int, initial: int, enabled: bool) -> Iterator[None]:
    """One tqdm bar of the samples on disk (every rank's), polled from the chunk folder by a thread."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, unit="sample", desc="sampling", disable=None if enabled else True,
               smoothing=0.1)  # fmt: skip
    if bar.disable:  # not asked for, or stderr is not a terminal
        yield
        return
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            bar.update(store.samples_on_disk() - bar.n)

    thread = threading.Thread(target=poll, name="sdesolve-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.update(store.samples_on_disk() - bar.n)
        bar.close()


def _gather(local: Tensor | None, layouts: list, work: list[range], rank: int, world: int, root: int) -> Tensor | None:
    """Pad each rank's samples to the largest share, ``dist.gather`` them on ``root`` and restore index order."""
    event, dtype = next((e, d) for e, d in layouts if d is not None)
    counts = [sum(len(c) for c in work[r::world]) for r in range(world)]
    device = local.device if local is not None else torch.device("cuda" if dist.get_backend() == "nccl" else "cpu")
    padded = torch.zeros((max(counts), *event), dtype=dtype, device=device)
    if local is not None:
        padded[: local.shape[0]] = local
    bufs = [torch.empty_like(padded) for _ in range(world)] if rank == root else None
    dist.gather(padded, bufs, dst=root)
    if rank != root:
        return None
    offsets = [0] * world
    out = []
    for c, span in enumerate(work):
        r = c % world
        out.append(bufs[r][offsets[r] : offsets[r] + len(span)])
        offsets[r] += len(span)
    return torch.cat(out)
