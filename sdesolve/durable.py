r"""Files that survive a kill: atomic writes.

Every file sdesolve writes goes through `atomic_open` (or `atomic_write`): the bytes go to a temporary file in the
target's folder, are flushed and ``fsync``\ ed, and ``os.replace`` puts them under the final name (POSIX rename is
atomic), so a reader — or a rerun after ``kill -9`` — sees the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_open", "atomic_write"]


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
