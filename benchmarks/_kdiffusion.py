"""Load k-diffusion's ``sampling.py`` alone (``import k_diffusion`` pulls torchvision, kornia, skimage, ...).

Its one helper from ``k_diffusion.utils``, ``append_dims``, is replaced by a stand-in with the same
definition (append trailing singleton dims). Returns None where k-diffusion is not installed.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path


def load_sampling() -> types.ModuleType | None:
    """k-diffusion's sampling module, or None."""
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "sampling.py"
    package = types.ModuleType("k_diffusion")
    package.__path__ = []
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    package.utils = utils
    sys.modules.setdefault("k_diffusion", package)
    sys.modules.setdefault("k_diffusion.utils", utils)
    module_spec = importlib.util.spec_from_file_location("k_diffusion.sampling", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules["k_diffusion.sampling"] = module
    module_spec.loader.exec_module(module)
    return module
