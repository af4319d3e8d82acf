"""``sdesolve bench``: run the ``benchmarks/`` package of the source checkout sdesolve was imported from.

The package is located beside the imported ``sdesolve`` package (an editable install or a checkout on the path)
and imported from that file path, never from the working directory: running ``sdesolve bench`` inside an
untrusted folder must not execute that folder's ``benchmarks/``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer

import sdesolve

from ._common import fail, writable_file


def checkout_root() -> Path:
    """The folder holding the imported ``sdesolve`` package (a source checkout holds ``benchmarks/`` there too)."""
    return Path(sdesolve.__file__).resolve().parent.parent


def load_benchmarks(root: Path) -> ModuleType:
    """Import ``root/benchmarks/__main__.py`` as the package ``benchmarks`` by file path (no ``sys.path`` search).

    Args:
        root: a source checkout: ``pyproject.toml`` and ``benchmarks/__main__.py`` beside ``sdesolve/``.

    Returns:
        The ``benchmarks.__main__`` module (its ``main(argv)`` runs the tables).
    """
    package = root / "benchmarks"
    if not ((root / "pyproject.toml").is_file() and (package / "__main__.py").is_file()):
        fail(
            f"`sdesolve bench` runs the benchmarks/ package of a source checkout, and {str(root)!r} (where sdesolve "
            "is imported from) is not one; install sdesolve from a clone with `pip install -e .`"
        )
    loaded = sys.modules.get("benchmarks")
    if loaded is None or Path(loaded.__file__).resolve().parent != package.resolve():
        for name in [m for m in sys.modules if m == "benchmarks" or m.startswith("benchmarks.")]:
            del sys.modules[name]  # a `benchmarks` imported from elsewhere (e.g. the working directory)
        spec = importlib.util.spec_from_file_location(
            "benchmarks", package / "__init__.py", submodule_search_locations=[str(package)]
        )
        loaded = importlib.util.module_from_spec(spec)
        sys.modules["benchmarks"] = loaded
        spec.loader.exec_module(loaded)
    return importlib.import_module("benchmarks.__main__")


def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes (< 1 min on 2 cores).")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write the results as JSON.")] = None,
) -> None:
    """Benchmark ODE solvers (ours vs scipy vs torchdiffeq) and pc_sample throughput, ratios in one run."""
    if out is not None:
        writable_file("--out", out)
    benchmarks = load_benchmarks(checkout_root())
    benchmarks.main((["--quick"] if quick else []) + (["--out", str(out)] if out else []))
