"""How many CPU threads torch uses in a run (``run.threads``, ``train.py --threads``).

``"auto"`` (the default) picks by device and network, from side-by-side timings on a 2-core
machine (docs/benchmarks.md, "CPU threads"):

- CPU, MLP policies (classic control, MuJoCo): 1 thread. Their products are a few rows by 64
  columns: extra threads add synchronisation, not speed, and on a machine where other work
  runs a second spinning OpenMP thread made a default CartPole run 10x slower (186 s instead
  of 17 s).
- CPU, convolutional policies (Atari): torch's default (one per core): the convolutions of an
  update are large enough to share.
- CUDA: torch's default; the networks run on the GPU, the CPU threads serve the envs.
"""

from __future__ import annotations

from typing import Literal

import torch

ThreadsSetting = int | Literal["auto"]

_TORCH_DEFAULT = torch.get_num_threads()  # before anyone changed it


def auto_threads(device: torch.device, env_kind: str) -> int:
    """The ``"auto"`` thread count for a run on ``device`` of an ``env_kind`` env
    (``"atari"``, ``"mujoco"`` or ``"gym"``)."""
    if device.type == "cpu" and env_kind != "atari":
        return 1
    return _TORCH_DEFAULT


def resolve_threads(setting: ThreadsSetting, device: torch.device, env_kind: str) -> int:
    """``setting`` as a thread count (``"auto"``: :func:`auto_threads`).

    Raises:
        ValueError: ``setting`` is neither ``"auto"`` nor an integer >= 1.
    """
    if setting == "auto":
        return auto_threads(device, env_kind)
    if isinstance(setting, bool) or not isinstance(setting, int) or setting < 1:
        raise ValueError(f"threads must be 'auto' or an integer >= 1, got {setting!r}")
    return setting
