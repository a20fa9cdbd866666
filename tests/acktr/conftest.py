"""Fixtures shared by the K-FAC core tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def float64():
    """Run a test in float64 with seed 0, restoring the default dtype afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)
