"""What every ``sdesolve`` command shares: option checks and one-line errors.

A bad option is one line on stderr that names the option (``Error: --n: n must be >= 1, got 0``) and exit
code 2, whether typer/click rejects it (``--n abc``, an unknown option) or a check below does. Output paths
and the device are checked before any work starts, so a run never fails after sampling has finished.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import torch
import typer
from typer.core import TyperGroup

from .._utils import check_available

try:  # recent typer vendors click and raises its own copies of click's exceptions
    from typer._click import exceptions as click_errors
except ImportError:  # typer that runs on the click package
    from click import exceptions as click_errors

EXIT_USAGE = 2
T = TypeVar("T")


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (torch's messages run on for lines)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def fail(message: str) -> NoReturn:
    """Print ``Error: message`` as one line on stderr and exit with code 2."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code=EXIT_USAGE)


def option(flag: str, check: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run the library check ``check(*args, **kwargs)`` for the option ``flag``; a bad value fails naming it."""
    try:
        return check(*args, **kwargs)
    except (ValueError, TypeError) as err:
        fail(f"{flag}: {first_line(err)}")


@contextmanager
def reported(errors: tuple[type[BaseException], ...] = (ValueError, TypeError, FloatingPointError)) -> Iterator[None]:
    """Turn ``errors`` raised inside the block into one line on stderr, exit code 2."""
    try:
        yield
    except errors as err:
        fail(first_line(err))


def check_device(flag: str, device: str) -> torch.device:
    """Parse a torch device and check it is available here (``cuda`` without CUDA is one line, not a traceback)."""
    return option(flag, check_available, "device", device) or torch.device("cpu")


def writable_dir(flag: str, path: str | Path) -> Path:
    """Create the output folder ``path`` if needed and prove it writable with a probe file, before any work."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        fail(f"{flag}: cannot write to folder {str(folder)!r}: {err.strerror or first_line(err)}")
    return folder


def writable_file(flag: str, path: str | Path) -> Path:
    """Check that the output file ``path`` can be written (its folder exists and is writable; not a folder)."""
    target = Path(path)
    if target.is_dir():
        fail(f"{flag}: {str(target)!r} is a folder; give a file path")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        fail(f"{flag}: folder {str(parent)!r} of {str(target)!r} does not exist")
    if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        fail(f"{flag}: cannot write {str(target)!r} (permission denied)")
    return target


def unexpected(err: Exception) -> str:
    """One line for an error no check foresaw: its type, the file it concerns (``OSError``) and its first line."""
    where = f" {err.filename!r}" if isinstance(err, OSError) and err.filename else ""
    what = err.strerror if isinstance(err, OSError) and err.strerror else first_line(err)
    return f"{type(err).__name__}{where}: {what}"


class OneLineErrors(TyperGroup):
    """The command group: click's usage errors (bad type, unknown option) become one ``Error:`` line, exit 2.

    typer/click print a usage block or a boxed panel for them; the shared format keeps every bad option one line.
    An error no check foresaw (a truncated weights file, a disk that fills up) is one ``Error:`` line too, naming
    its type and, for a file error, the file, with exit code 1; ``SDESOLVE_TRACEBACK=1`` shows the traceback.
    """

    def main(
        self, args: Sequence[str] | None = None, prog_name: str | None = None, standalone_mode: bool = True, **extra
    ) -> Any:
        try:
            code = super().main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
        except getattr(click_errors, "NoArgsIsHelpError", ()) as err:  # `sdesolve` alone: the help text, as before
            if not standalone_mode:
                raise
            typer.echo(err.format_message(), err=True)
            sys.exit(err.exit_code)
        except click_errors.ClickException as err:
            if not standalone_mode:
                raise
            message = err.format_message().strip()
            typer.echo(f"Error: {message.splitlines()[0] if message else type(err).__name__}", err=True)
            sys.exit(err.exit_code)
        except typer.Abort:  # typer's public Abort: click's own class, or typer's copy where typer vendors click
            if not standalone_mode:
                raise
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        except Exception as err:
            if not standalone_mode or os.environ.get("SDESOLVE_TRACEBACK"):
                raise
            typer.echo(f"Error: {unexpected(err)}", err=True)
            sys.exit(1)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)
