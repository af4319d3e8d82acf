"""A spy on the host-synchronising ``torch.Tensor`` conversions, for the tests that count them."""

import torch

HOST_SYNCS = ("item", "__float__", "__bool__", "tolist", "cpu")
"""The conversions every sampler test counts (``item``, ``float``, ``bool``, ``tolist``, ``cpu``)."""


def spy_host_syncs(monkeypatch, names: tuple[str, ...] = HOST_SYNCS) -> list[str]:
    """Record the name of each of ``names`` called on a tensor from now on (until ``monkeypatch`` undoes it)."""
    calls: list[str] = []
    for name in names:
        orig = getattr(torch.Tensor, name)

        def spy(self, *a, _orig=orig, _name=name, **k):
            calls.append(_name)
            return _orig(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, spy)
    return calls
