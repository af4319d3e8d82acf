import os

import pytest
import torch
from host_sync import spy_host_syncs
from hypothesis import settings

# One torch thread per test process: the suite's tensors are small, and on a 2-core machine intra-op threads
# oversubscribe the cores (measured: the mixture score 14 ms with 1 thread, 170-240 ms with 2 under load).
# Parallelism comes from pytest-xdist workers instead (scripts/test.sh runs `-n 2`).
torch.set_num_threads(1)

settings.register_profile("default", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "default")

SLOW_TIMEOUT_S = 900  # slow convergence studies run a few minutes each on 2 cores; 3x headroom


def pytest_collection_modifyitems(config, items):
    """Slow studies get their own timeout unless a test sets one with ``@pytest.mark.timeout``."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT_S))


@pytest.fixture
def host_syncs(monkeypatch):
    """The names of the host-synchronising Tensor methods called while the test runs, in call order."""
    return spy_host_syncs(monkeypatch)
