"""How many CPU threads torch uses in a run (``run.threads``, ``train.py --threads``).

``"auto"`` (the default) is 1 thread on the CPU and torch's default (one per core) on CUDA,
chosen from side-by-side timings on the project's 2-core machine (docs/benchmarks.md, "CPU
threads", ``python -m benchmarks.threads``):

- With other work on the machine, a second thread made every model slower, the more the
  smaller its products (medians of 3 interleaved rounds, load average 9-20): CartPole's MLP
  ran 33x slower with 2 threads than with 1, HalfCheetah's 7.7x, Pong's CNN 2.9x (OpenMP's
  threads wait for each other at every operation, and a loaded machine seldom runs both).
- On the idle machine, 2 threads gained 1.16x for HalfCheetah (docs/benchmarks.md, "Training
  throughput"): the price of 1 thread when nothing else runs is small, the price of 2 when
  something does is large.
- The choice must not depend on the machine's load at start: a convolution's gradients differ
  in their last bits between 1 and 2 threads, so seeded runs and exact resumes need a fixed count.
- CUDA: the networks run on the GPU; torch's default is kept (not measured here).
"""

from __future__ import annotations

from typing import Literal

import torch

ThreadsSetting = int | Literal["auto"]

_TORCH_DEFAULT = torch.get_num_threads()  # before anyone changed it


def auto_threads(device: torch.device, env_kind: str) -> int:
    """The ``"auto"`` thread count for a run on ``device`` of an ``env_kind`` env
    (``"atari"``, ``"mujoco"`` or ``"gym"``; all get the same count today)."""
    return 1 if device.type == "cpu" else _TORCH_DEFAULT


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
