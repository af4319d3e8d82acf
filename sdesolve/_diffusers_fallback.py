"""Stand-ins for the parts of diffusers that `sdesolve.diffusers` builds on, used when diffusers is absent.

They read and write the same ``scheduler_config.json`` fields as diffusers' ``ConfigMixin`` (the ``__init__``
arguments plus ``_class_name``), so a folder saved here loads in diffusers and vice versa. Pipelines get a
progress bar and a device; saving a whole pipeline needs diffusers.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from tqdm.auto import tqdm

__all__ = ["BaseOutput", "ConfigMixin", "SchedulerMixin", "PipelineBase", "register_to_config"]


class BaseOutput:
    """Dataclass output readable by field name, by position (``out[0]``) or as ``to_tuple()``, as in diffusers."""

    def to_tuple(self) -> tuple:
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))

    def __getitem__(self, key: int | slice | str) -> Any:
        return getattr(self, key) if isinstance(key, str) else self.to_tuple()[key]

    def __iter__(self):
        return iter(self.to_tuple())


class FrozenConfig(dict):
    """Read-only config mapping with attribute access (``config.snr``), like diffusers' ``FrozenDict``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no field {name!r}") from None

    def _frozen(self, *args, **kwargs):
        raise TypeError("a config is read-only; build a new object with from_config(config, **overrides)")

    __setitem__ = __delitem__ = update = pop = popitem = setdefault = clear = _frozen


def register_to_config(init: Callable) -> Callable:
    """Decorate ``__init__`` so its bound arguments (defaults included) become ``self.config``."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        self._internal_dict = FrozenConfig({k: v for k, v in bound.arguments.items() if k != "self"})
        init(self, *args, **kwargs)

    return wrapper


class ConfigMixin:
    """Config save/load with diffusers' JSON layout: ``{"_class_name": ..., <init arguments>}``."""

    config_name: str = "config.json"

    @property
    def config(self) -> FrozenConfig:
        return self._internal_dict

    def save_config(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """Write ``config_name`` into ``save_directory`` (created if missing)."""
        if os.path.isfile(save_directory):
            raise ValueError(f"save_directory must be a folder, got the file {os.fspath(save_directory)!r}")
        os.makedirs(save_directory, exist_ok=True)
        payload = {"_class_name": type(self).__name__, **self.config}
        with open(os.path.join(save_directory, self.config_name), "w", encoding="utf-8") as fh:
            json.dump(payload, fh, indent=2, sort_keys=True)
            fh.write("\n")

    @classmethod
    def load_config(cls, pretrained_model_name_or_path: str | os.PathLike, subfolder: str | None = None, **kwargs):
        """Read the JSON config from a local folder (or a JSON file); hub ids need diffusers."""
        path = os.fspath(pretrained_model_name_or_path)
        if subfolder:
            path = os.path.join(path, subfolder)
        if os.path.isdir(path):
            path = os.path.join(path, cls.config_name)
        if not os.path.isfile(path):
            raise OSError(f"no {cls.config_name} at {path!r} (without diffusers only local folders load)")
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | Any = None, return_unused_kwargs: bool = False, **kwargs: Any):
        """Build from a config mapping (or an object with ``.config``); ``kwargs`` override its fields."""
        config = dict(getattr(config, "config", config) or {})
        config.update(kwargs)
        names = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        init_kwargs = {k: config.pop(k) for k in names if k in config}
        unused = {k: v for k, v in config.items() if not k.startswith("_")}
        obj = cls(**init_kwargs)
        return (obj, unused) if return_unused_kwargs else obj


class SchedulerMixin:
    """``from_pretrained`` / ``save_pretrained`` for schedulers on a local folder, diffusers' file name."""

    config_name = "scheduler_config.json"

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, subfolder: str | None = None, **kwargs: Any):
        config = cls.load_config(pretrained_model_name_or_path, subfolder=subfolder)
        return cls.from_config(config, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        self.save_config(save_directory)


class PipelineBase:
    """Minimal stand-in for ``DiffusionPipeline``: registered components, ``device`` and a tqdm progress bar."""

    def __init__(self) -> None:
        self._progress_bar_config: dict[str, Any] = {}

    def register_modules(self, **modules: Any) -> None:
        for name, module in modules.items():
            setattr(self, name, module)

    @property
    def device(self) -> torch.device:
        """Device of the first registered ``torch.nn.Module`` holding parameters or buffers; CPU otherwise."""
        for value in vars(self).values():
            if isinstance(value, torch.nn.Module):
                for tensor in (*value.parameters(), *value.buffers()):
                    return tensor.device
        return torch.device("cpu")

    def set_progress_bar_config(self, **kwargs: Any) -> None:
        self._progress_bar_config = dict(kwargs)

    def progress_bar(self, iterable: Iterable) -> Iterable:
        return tqdm(iterable, **self._progress_bar_config)
