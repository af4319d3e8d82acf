r"""Files that survive a kill: atomic writes, and a run's samples stored chunk by chunk beside a manifest.

Every file sdesolve writes goes through `atomic_open` (or `atomic_write`): the bytes go to a temporary file in the
target's folder, are flushed and ``fsync``\ ed, and ``os.replace`` puts them under the final name (POSIX rename is
atomic), so a reader — or a rerun after ``kill -9`` — sees the old file or the new one, never a torn one.

A sampling run's output folder (`ChunkStore`, used by `sdesolve.distributed.sample` with ``out_dir=``):

- ``manifest.json``: everything that determines the samples (the caller's config, the number of samples, the chunk
  size, the per-sample seeds' SHA-256, the sdesolve version), written once, before any chunk;
- ``chunks/chunk-000000.npz``, ...: chunk ``c`` holds samples ``c·chunk_size`` onward — ``samples`` ``[m, *event]``,
  their ``seeds`` ``[m]`` and the sampler's ``info`` (JSON). An ``.npz`` is a zip archive with a CRC-32 per member
  (checked by Python's ``zipfile``), so a truncated or corrupted chunk is detected and redone, never used;
- ``samples.npy``: the chunks in index order, assembled by streaming one chunk at a time (memory flat in the number
  of samples), byte for byte what ``numpy.save`` writes for the whole array.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor

from ._utils import check_int

__all__ = [
    "MANIFEST",
    "CHUNKS",
    "SAMPLES",
    "atomic_open",
    "atomic_write",
    "verify_zip",
    "config_diff",
    "ChunkStore",
    "StoredSamples",
]

MANIFEST = "manifest.json"
CHUNKS = "chunks"
SAMPLES = "samples.npy"
FORMAT = 1
_CHUNK = re.compile(r"chunk-(\d+)\.npz")
_TEMPORARY = re.compile(r"\..+\.\d+\.[0-9a-f]{8}\.tmp")


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for the ``with`` block; on a clean exit flush, ``fsync`` it and rename
    it to ``path`` (then ``fsync`` the folder, so the rename itself is durable). On an error the temporary file is
    removed and ``path`` is untouched.

    Args:
        path: the final file (its folder must exist).
        mode: ``"wb"`` or ``"w"`` (text, UTF-8).

    Yields:
        The open file object.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask, like open(path, "w")
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically (`atomic_open`)."""
    with atomic_open(path, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX; a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify_zip(path: str | Path, what: str = "file") -> None:
    """Check that ``path`` is a whole zip archive (``.npz``, ``torch.save`` files) whose members match their CRC-32.

    ``torch.load`` does not check the CRCs it writes, so a corrupted checkpoint would load silently.

    Raises:
        ValueError: naming ``what`` and ``path``, for a missing, truncated or corrupt archive.
    """
    reason = _zip_problem(Path(path))
    if reason is not None:
        raise ValueError(f"{what} {str(path)!r} is truncated or corrupt ({reason}); delete it to start over")


def _zip_problem(path: Path) -> str | None:
    """Why ``path`` is not a sound zip archive, or None."""
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as err:
        return f"{type(err).__name__}: {err}"
    return None if bad is None else f"bad CRC-32 in member {bad!r}"


def _normalised(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists)."""
    return json.loads(json.dumps(value))


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out |= _flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v}
    return out


def config_diff(recorded: dict, current: dict) -> list[str]:
    """The keys (dotted for nested dicts) whose values differ, each as ``"key: recorded → current"``."""
    old, new = _flat(_normalised(recorded)), _flat(_normalised(current))

    def show(key: str, src: dict) -> str:
        text = json.dumps(src[key]) if key in src else "(absent)"
        return text if len(text) <= 70 else text[:67] + "..."

    return [
        f"{k}: {show(k, old)} → {show(k, new)}"
        for k in sorted(old.keys() | new.keys())
        if old.get(k, ...) != new.get(k, ...)
    ]


def _seeds_digest(seeds: Tensor) -> str:
    """SHA-256 of the per-sample seeds as little-endian int64: pins every seed of a run in the manifest."""
    return hashlib.sha256(seeds.to(torch.int64).cpu().numpy().astype("<i8").tobytes()).hexdigest()


@dataclass(frozen=True)
class StoredSamples:
    """What a durable run left on disk (returned on the root rank by `sdesolve.distributed.sample` with ``out_dir``).

    Attributes:
        path: ``samples.npy`` (``[n, *event]``, the sampler's dtype).
        num_samples: ``n``.
        chunks: number of chunks.
        chunks_reused: chunks found finished on disk and kept.
        chunks_redone: chunks found truncated or corrupt and sampled again.
        samples_computed: samples computed by this call (not reused).
        wall_s: wall time of the call (checks, sampling, writing, assembly).
        infos: the sampler's ``info`` of every chunk, in chunk order (empty dicts where it gave none).
    """

    path: Path
    num_samples: int
    chunks: int
    chunks_reused: int
    chunks_redone: int
    samples_computed: int
    wall_s: float
    infos: list[dict]

    @property
    def samples_per_s(self) -> float:
        """Samples computed by this call per second of its wall time."""
        return self.samples_computed / self.wall_s if self.wall_s > 0 else 0.0

    def array(self) -> np.ndarray:
        """``samples.npy`` as a read-only memory map (nothing is read until indexed)."""
        return np.load(self.path, mmap_mode="r")


class ChunkStore:
    """One run's output folder: ``manifest.json``, ``chunks/chunk-NNNNNN.npz`` and the assembled ``samples.npy``.

    Args:
        folder: the output folder (created by `prepare`).
        seeds: int64 ``[n]``, the per-sample seeds in sample order; chunk ``c`` holds samples
            ``c·chunk_size … min((c+1)·chunk_size, n) − 1``.
        chunk_size: samples per chunk.
        config: JSON-serialisable description of everything else that determines the samples (problem, model, SDE,
            method, steps, grid, dtype, ...); recorded in the manifest and compared on every rerun.
    """

    def __init__(self, folder: str | Path, seeds: Tensor, chunk_size: int, config: dict | None = None) -> None:
        from . import __version__

        self.folder, self.chunk_dir = Path(folder), Path(folder) / CHUNKS
        self.seeds = seeds.detach().to("cpu", torch.int64)
        self.chunk_size = check_int("chunk_size", chunk_size)
        n = self.seeds.shape[0]
        self.spans = [range(s, min(s + chunk_size, n)) for s in range(0, n, chunk_size)]
        self.manifest = _normalised(
            {"format": FORMAT, "sdesolve": __version__, "num_samples": n, "chunk_size": chunk_size,
             "seeds_sha256": _seeds_digest(self.seeds), "config": config or {}}
        )  # fmt: skip

    def chunk_path(self, c: int) -> Path:
        """The file of chunk ``c``."""
        return self.chunk_dir / f"chunk-{c:06d}.npz"

    def prepare(self, overwrite: bool = False) -> None:
        """Create the folder and its manifest, or check an existing manifest against this run (one process only,
        before any other touches the folder); remove temporary files left by a killed writer.

        Raises:
            ValueError: the folder holds a run with other arguments (each difference named) or chunks without a
                manifest, unless ``overwrite``, which deletes that run's files first.
        """
        self.chunk_dir.mkdir(parents=True, exist_ok=True)
        manifest = self.folder / MANIFEST
        recorded = self._read_manifest()
        own = [p for p in self.chunk_dir.iterdir() if _CHUNK.fullmatch(p.name)]
        if overwrite:
            for p in [*own, manifest, self.folder / SAMPLES]:
                p.unlink(missing_ok=True)
            recorded, own = None, []
        if recorded is None and own:
            raise ValueError(f"{str(self.folder)!r} holds {len(own)} chunk file(s) but no {MANIFEST}: their arguments "
                             "are unknown; choose another folder or overwrite (--overwrite) to start over")  # fmt: skip
        if recorded is not None:
            self._check(recorded)
        for folder in (self.folder, self.chunk_dir):
            for p in folder.iterdir():
                if _TEMPORARY.fullmatch(p.name):
                    p.unlink(missing_ok=True)
        if recorded is None:
            atomic_write(manifest, json.dumps(self.manifest, indent=1) + "\n")

    def check_manifest(self) -> None:
        """Check, from any process, that the folder's manifest is this run's (it must be shared by every rank)."""
        recorded = self._read_manifest()
        if recorded is None:
            raise ValueError(f"{str(self.folder / MANIFEST)!r} is not visible from this process: the output folder "
                             "must be one folder shared by every rank")  # fmt: skip
        self._check(recorded)

    def _read_manifest(self) -> dict | None:
        path = self.folder / MANIFEST
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"{str(path)!r} is not valid JSON ({err}); overwrite to start over") from None

    def _check(self, recorded: dict) -> None:
        def fields(manifest: dict) -> dict:
            return {**manifest.get("config", {}), **{k: v for k, v in manifest.items() if k != "config"}}

        diff = config_diff(fields(recorded), fields(self.manifest))
        if len(diff) > 1:  # the seeds' digest differs whenever the seeds' description or number does
            diff = [d for d in diff if not d.startswith("seeds_sha256:")]
        if diff:
            raise ValueError(f"{str(self.folder)!r} holds a run with other arguments ({'; '.join(diff)}); rerun with "
                             "the same arguments to resume, or overwrite (sdesolve sample --overwrite) to start over")  # fmt: skip

    def problem(self, c: int) -> str | None:
        """Why chunk ``c``'s file cannot be used (missing, truncated, corrupt, other seeds), or None if it is whole."""
        path = self.chunk_path(c)
        if not path.exists():
            return "missing"
        reason = _zip_problem(path)
        if reason is not None:
            return reason
        span = self.spans[c]
        try:
            with zipfile.ZipFile(path) as zf:
                with zf.open("seeds.npy") as f:
                    seeds = np.lib.format.read_array(f, allow_pickle=False)
                with zf.open("samples.npy") as f:
                    shape = _npy_shape(f)
                zf.getinfo("info.npy")
        except (KeyError, ValueError, OSError) as err:
            return f"{type(err).__name__}: {err}"
        if shape[:1] != (len(span),):
            return f"holds samples of shape {shape}, expected {len(span)} rows"
        if not np.array_equal(seeds, self.seeds[span.start : span.stop].numpy()):
            return "holds samples of other seeds"
        return None

    def write(self, c: int, samples: Tensor | np.ndarray, info: dict | None = None) -> None:
        """Write chunk ``c`` atomically: ``samples`` ``[m, *event]`` (m = the chunk's length), its seeds and ``info``."""
        span = self.spans[c]
        if isinstance(samples, Tensor):
            if samples.dtype in (torch.bfloat16,) or samples.is_complex():
                raise TypeError(f"chunk samples need a numpy dtype, got {samples.dtype}: return .float() samples")
            samples = samples.detach().cpu().numpy()
        if samples.ndim < 1 or samples.shape[0] != len(span):
            raise ValueError(f"chunk {c} must hold {len(span)} samples [m, *event], got shape {samples.shape}")
        with atomic_open(self.chunk_path(c)) as f:
            np.savez(f, samples=np.ascontiguousarray(samples), seeds=self.seeds[span.start : span.stop].numpy(),
                     info=np.array(json.dumps(info or {})))  # fmt: skip

    def samples_on_disk(self) -> int:
        """Samples in chunk files present now (by name; for progress)."""
        done = (int(m.group(1)) for p in os.scandir(self.chunk_dir) if (m := _CHUNK.fullmatch(p.name)))
        return sum(len(self.spans[c]) for c in done if c < len(self.spans))

    def assemble(self) -> tuple[Path, list[dict]]:
        """Stream the chunks, in index order, into ``samples.npy`` (atomically); return its path and the infos.

        Raises:
            ValueError: a chunk is unreadable or its event shape or dtype differs from chunk 0's (naming it).
        """
        path, infos, layout = self.folder / SAMPLES, [], None
        with atomic_open(path) as out:
            for c in range(len(self.spans)):
                try:
                    with np.load(self.chunk_path(c), allow_pickle=False) as z:  # zipfile checks the CRC on reading
                        samples, info = z["samples"], json.loads(str(z["info"]))
                except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
                    raise ValueError(f"chunk file {str(self.chunk_path(c))!r} cannot be read ({err}); rerun to "
                                     "redo it") from None  # fmt: skip
                if layout is None:
                    layout = (samples.shape[1:], samples.dtype)
                    header = {"descr": np.lib.format.dtype_to_descr(samples.dtype), "fortran_order": False,
                              "shape": (len(self.seeds), *samples.shape[1:])}  # fmt: skip
                    np.lib.format.write_array_header_1_0(out, header)  # what numpy.save writes for this header
                elif (samples.shape[1:], samples.dtype) != layout:
                    raise ValueError(f"chunk {c} holds samples {samples.shape[1:]} {samples.dtype}, chunk 0 "
                                     f"{layout[0]} {layout[1]}: the sampler must return one shape and dtype")  # fmt: skip
                out.write(np.ascontiguousarray(samples).data)
                infos.append(info)
        return path, infos


def _npy_shape(f: IO[bytes]) -> tuple[int, ...]:
    """The shape in an ``.npy`` header (versions 1–3), reading nothing past it."""
    major, _ = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, _, _ = read(f)
    return tuple(shape)
