"""Model weights on disk: a float16 safetensors file and its JSON record beside it, saved as a verified pair.

The record carries the SHA-256 of the weights' bytes and is written first, the weights second, each atomically
(`sdesolve.durable.atomic_write`): a save interrupted between the two leaves a record that does not describe the
weights, which `load_weights` refuses, naming both files, instead of loading a mismatched pair as if complete. A
truncated, empty or foreign weights file is a ``ValueError`` naming the file. safetensors, not pickle: loading runs
no code.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from torch import nn

from .durable import atomic_write

__all__ = ["SHA256_KEY", "save_weights", "load_weights"]

SHA256_KEY = "weights_sha256"
"""The record's field holding the SHA-256 (hex) of the weights file's bytes."""


def save_weights(path: Path | str, modules: dict[str, nn.Module], info: dict[str, Any]) -> None:
    """Write ``modules``' state (float16, keys ``"<name>.<parameter>"``) to ``path`` and ``info`` plus the weights'
    SHA-256 to the JSON of the same stem, record first, each atomically (module docstring)."""
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"{name}.{key}": value.detach().half().contiguous()
        for name, module in modules.items()
        for key, value in module.state_dict().items()
    }
    data = save(tensors)
    record = {**info, SHA256_KEY: hashlib.sha256(data).hexdigest()}
    atomic_write(path.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    atomic_write(path, data)


def load_weights(path: Path | str, modules: dict[str, nn.Module]) -> dict[str, Any]:
    """Load the weights at ``path`` into ``modules`` (float32) and return the record beside it.

    Raises:
        FileNotFoundError: no record beside the weights.
        ValueError: a record that does not describe these weights (SHA-256), or weights or a record that are
            truncated, corrupt or not of these modules, each naming the file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    record_path = path.with_suffix(".json")
    if not record_path.is_file():
        raise FileNotFoundError(f"no record {str(record_path)!r} beside the weights {str(path)!r}")
    data = path.read_bytes()
    try:
        info = json.loads(record_path.read_text())
    except ValueError as err:
        raise ValueError(f"the record {str(record_path)!r} is truncated or corrupt ({err})") from None
    expected = info.get(SHA256_KEY)  # records written before the pair was verified carry none
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ValueError(
            f"the record {str(record_path)!r} does not describe the weights {str(path)!r} (SHA-256 differs): an "
            "interrupted save or a file replaced by hand; save (train) again, or restore both files"
        )
    try:
        tensors = load(data)
        for name, module in modules.items():
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix) :]: v.float() for k, v in tensors.items() if k.startswith(prefix)})
    except (SafetensorError, RuntimeError, ValueError) as err:
        raise ValueError(
            f"the weights {str(path)!r} are truncated, corrupt or not of this model ({str(err).strip()[:200]})"
        ) from None
    return info
