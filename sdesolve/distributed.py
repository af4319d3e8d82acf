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
from collections.abc import Callable, Iterator
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor

from ._utils import check_int
from .solvers.seeded import sample_seeds

__all__ = ["CHUNK_SIZE", "TIMEOUT", "process_group", "rank_and_world", "chunks", "local_device", "sample"]

CHUNK_SIZE = 1024
TIMEOUT = timedelta(minutes=10)
Sampler = Callable[[Tensor], Tensor]


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


def _exchange(error: BaseException | None, local: Tensor | None) -> list[tuple[str | None, tuple, object]]:
    """Every rank's (error message, event shape, dtype): the collective a failed rank still reaches."""
    status = (None if error is None else f"{type(error).__name__}: {error}",)
    status += (tuple(local.shape[1:]), local.dtype) if local is not None else ((), None)
    statuses: list = [None] * dist.get_world_size()
    dist.all_gather_object(statuses, status)
    return statuses


def sample(
    sampler: Sampler, num_samples: int, *, seed: int, chunk_size: int = CHUNK_SIZE, root: int = 0
) -> Tensor | None:
    """Run ``sampler`` on this rank's chunks and gather every sample on ``root``, in index order.

    Args:
        sampler: ``sampler(seeds)`` → samples ``[m, *event]`` for the int64 per-sample seeds ``[m]`` (e.g.
            ``lambda s: pc_sample(sde, score, (len(s), d), seeds=s)``), the same shape and dtype on every rank.
        num_samples: total number of samples ``n``.
        seed: the run's seed; sample ``k`` gets ``sample_seeds(seed, k)``.
        chunk_size: samples per ``sampler`` call; results depend on it (adaptive solvers, batch statistics)
            but never on the number of ranks.
        root: the rank that receives the samples.

    Returns:
        ``[n, *event]`` on ``root`` (on the sampler's device), None on the other ranks.

    Raises:
        RuntimeError: on every rank but the failing one, naming the rank that failed and its error.
    """
    work = chunks(num_samples, chunk_size)
    rank, world = rank_and_world()
    _check_root(root, world)
    error, local = None, None
    try:
        parts = [_checked_chunk(sampler, sample_seeds(seed, torch.arange(c.start, c.stop))) for c in work[rank::world]]
        local = torch.cat(parts) if parts else None
    except Exception as err:  # reported to every rank below, then re-raised here
        if world == 1:
            raise
        error = err
    if world == 1:
        return local
    statuses = _exchange(error, local)
    failed = [(r, s[0]) for r, s in enumerate(statuses) if s[0] is not None]
    if error is not None:
        raise error
    if failed:
        raise RuntimeError(f"rank {failed[0][0]} of {world} failed: {failed[0][1]}")
    return _gather(local, statuses, work, rank, world, root)


def _check_root(root: int, world: int) -> int:
    """The gathering rank: an int in ``[0, world)`` (checked on every rank before any work)."""
    root = check_int("root", root, minimum=0)
    if root >= world:
        raise ValueError(f"root must be a rank in [0, {world}) (world size {world}), got root={root}")
    return root


def _checked_chunk(sampler: Sampler, seeds: Tensor) -> Tensor:
    """``sampler(seeds)``, refused unless it is a tensor with one row per seed (fewer rows would be gathered as
    zero padding, more would shift every later sample)."""
    out = sampler(seeds)
    if not isinstance(out, Tensor) or out.ndim < 1 or out.shape[0] != seeds.shape[0]:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"sampler(seeds) must return [{seeds.shape[0]}, *event] for {seeds.shape[0]} seeds, got {got}")
    return out


def _gather(local: Tensor | None, statuses: list, work: list[range], rank: int, world: int, root: int) -> Tensor | None:
    """Pad each rank's samples to the largest share, ``dist.gather`` them on ``root`` and restore index order."""
    event, dtype = next((s[1], s[2]) for s in statuses if s[2] is not None)
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
