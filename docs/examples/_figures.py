"""Shared figure saving for the example scripts: a 64-colour palette PNG keeps each image well under 150 KB."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
from PIL import Image


def save(fig, path: Path, dpi: int = 90) -> Path:
    """Save ``fig`` to ``path`` (parents created) as a palette PNG and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.open(buf).convert("RGB").quantize(colors=64).save(path, optimize=True)
    return path
