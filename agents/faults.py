"""What the trainer does when an environment fails mid-rollout.

The policy, the optimizers and the counters change only in the update, so while a rollout runs
they are still those of the last completed update. :class:`LastGoodState` keeps, at the start
of each rollout, the two things the rollout does change (the RNG streams and the env's
normalization statistics), so that a checkpoint of the last completed update can still be
written after an env raised, returned NaN/Inf, or lost its worker process. The environments
themselves cannot be captured any more: resuming from such a checkpoint starts fresh seeded
episodes (with a warning), everything else continues from the last completed update.
"""

from __future__ import annotations

from typing import Any

import torch

from envs import VecEnv


class TrainingFault(RuntimeError):
    """Training stopped on a fault; the message says what, where, and what was saved."""


class LastGoodState:
    """The RNG streams and env statistics at the start of the current rollout.

    Args:
        device: the training device (its CUDA generator is kept too).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.rng: dict[str, Any] = {}
        self.env_stats: dict[str, Any] = {}

    def capture(self, env: VecEnv) -> None:
        """Call before each rollout (a few kB of copies)."""
        self.rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            self.rng["cuda"] = torch.cuda.get_rng_state(self.device)
        self.env_stats = env.state_dict()

    def checkpoint_state(self, state: dict[str, Any], why: str) -> dict[str, Any]:
        """``state`` (the trainer's checkpoint of the current objects) with the rollout's
        changes undone: RNG and statistics from the rollout's start, no env snapshot."""
        return {**state, "rng": self.rng, "env": self.env_stats, "env_snapshot": None,
                "obs": None, "env_snapshot_missing": why}
