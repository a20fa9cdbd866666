"""Test-wide settings."""

from __future__ import annotations

import torch

# The suite is many tiny tensors: one intra-op thread avoids oversubscription on small CI
# machines (2 cores) without changing any result.
torch.set_num_threads(1)
