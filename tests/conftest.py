"""Test-wide settings."""

from __future__ import annotations

import pytest
import torch

# The suite is many tiny tensors: one intra-op thread avoids oversubscription on small CI
# machines (2 cores) without changing any result.
torch.set_num_threads(1)


@pytest.fixture
def one_thread():
    """One intra-op thread for the test, the previous count restored after it (for tests whose
    code may change it; tiny networks are faster and immune to other processes' load on one).
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
