"""The documentation runs: worked-example code blocks, figure scripts, notebooks, and the API inventory.

* Code blocks: every ```python fence of every page under ``docs/`` (pages added later are picked up
  automatically) runs, page by page in one namespace, in a temporary working directory with
  ``MPLBACKEND=Agg``. A ``--8<-- "path"`` snippet line is replaced by the file, as pymdownx.snippets does
  when it builds the page. A block is skipped only if the line right before its fence is
  ``<!-- docs-test: skip -->`` (documented in docs/contributing-docs.md; avoid it).
* Figure scripts ``docs/examples/*.py`` run with ``quick=True`` into a temporary directory; the committed
  PNGs stay ≤ 150 KB.
* Notebooks ``notebooks/*.ipynb`` execute with nbclient (the kernel imports this checkout).
* The site builds with ``mkdocs build --strict`` and its ``objects.inv`` lists every public name: each
  name in ``sdesolve.__all__`` and in the ``__all__`` of every public submodule that defines one.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch

import sdesolve

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
SKIP_MARKER = "<!-- docs-test: skip -->"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
SNIPPET = re.compile(r'^[ \t]*--8<--[ \t]+"(?P<path>[^"]+)"[ \t]*$', re.M)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def doc_pages() -> list[Path]:
    """Every Markdown page of the site (pages added later are picked up)."""
    return sorted(DOCS.rglob("*.md"))


def python_blocks(text: str) -> list[str]:
    """The ```python fences of a Markdown page (indented ones dedented), snippets resolved, skips dropped."""
    blocks = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        if before == SKIP_MARKER:
            continue
        indent = len(m.group("indent"))
        body = "".join(line[indent:] if line.strip() else "\n" for line in m.group("body").splitlines(True))
        blocks.append(SNIPPET.sub(lambda s: (ROOT / s.group("path")).read_text(), body))
    return blocks


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.syspath_prepend(str(EXAMPLES))  # the figure scripts' shared `_figures` helper
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: OpenMP threads on a busy 2-core machine cost up to 17x (measured)
    yield tmp_path
    torch.set_num_threads(threads)


def test_python_blocks_parser():
    text = (
        "a\n```python\nx = 1\n```\n\n" + SKIP_MARKER + "\n```python\nraise SystemExit\n```\n"
        '    ```python\n    y = 2\n    --8<-- "docs/examples/_figures.py"\n    ```\n```bash\nls\n```\n'
    )
    blocks = python_blocks(text)
    assert blocks[0] == "x = 1\n"
    assert len(blocks) == 2 and blocks[1].startswith("y = 2\n") and "def save(" in blocks[1]


@pytest.mark.parametrize("page", doc_pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_page_code_blocks_run(page, in_tmp):
    blocks = python_blocks(page.read_text())
    namespace = {"__name__": "docs_page"}  # not "__main__": included scripts define, their main guard stays off
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page.name}[block {i}]", "exec"), namespace)
    import matplotlib.pyplot as plt

    plt.close("all")


def _load_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"docs_example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "script", [p for p in sorted(EXAMPLES.glob("*.py")) if not p.name.startswith("_")], ids=lambda p: p.name
)
def test_figure_script_runs(script, in_tmp):
    _load_script(script).main(out_dir=in_tmp, quick=True)
    png = in_tmp / f"{script.stem}.png"
    assert png.is_file() and png.stat().st_size > 1000
    assert (DOCS / "img" / png.name).is_file(), "commit the full-size figure: run the script from the repo root"


def test_committed_figures_small():
    for png in (DOCS / "img").glob("*.png"):
        assert png.stat().st_size <= 150_000, png


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebook_executes(notebook, in_tmp, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = nbformat.read(notebook, as_version=4)
    assert any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks with outputs"
    nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(in_tmp)}}
    ).execute()


def public_names() -> set[str]:
    """Dotted names the API reference must document: top-level ``__all__`` and submodules' ``__all__``."""
    names = {f"sdesolve.{n}" for n in sdesolve.__all__}
    for info in pkgutil.iter_modules(sdesolve.__path__):
        if info.name.startswith("_") or info.name == "cli":
            continue
        module = importlib.import_module(f"sdesolve.{info.name}")
        names |= {f"sdesolve.{info.name}.{n}" for n in getattr(module, "__all__", ())}
    return names


def read_inventory(path: Path) -> set[str]:
    """Object names of a Sphinx v2 inventory (4 header lines, then zlib: ``name domain:role prio uri dispname``)."""
    data = path.read_bytes()
    header = data.split(b"\n", 4)
    assert header[0] == b"# Sphinx inventory version 2", header[0]
    return {line.split(" ", 1)[0] for line in zlib.decompress(header[4]).decode().splitlines() if line.strip()}


def test_inventory_reader_roundtrip(tmp_path):
    body = zlib.compress(b"sdesolve.VPSDE py:class 1 api/sde/#$ -\nsdesolve.sde py:module 1 api/sde/#$ -\n")
    inv = tmp_path / "objects.inv"
    inv.write_bytes(b"# Sphinx inventory version 2\n# Project: x\n# Version: 0\n# zlib\n" + body)
    assert read_inventory(inv) == {"sdesolve.VPSDE", "sdesolve.sde"}


def test_site_builds_strict_and_documents_every_public_name(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs not installed (the docs extra)")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [mkdocs, "build", "--strict", "-d", str(tmp_path / "site")],  # no -q: it hides warnings
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # math renders offline: MathJax is served from the site itself, no page loads a script from the network
    assert (tmp_path / "site" / "javascripts" / "vendor" / "mathjax" / "tex-svg.js").stat().st_size > 1_000_000
    remote = [
        p.name for p in (tmp_path / "site").rglob("*.html") if re.search(r"<script[^>]*src=\"https?:", p.read_text())
    ]
    assert not remote, f"pages loading scripts from the network: {remote}"
    missing = public_names() - read_inventory(tmp_path / "site" / "objects.inv")
    assert not missing, (
        f"public names missing from the API reference (add `::: sdesolve.<module>` pages): {sorted(missing)}"
    )
