"""Per-episode statistics of vectorized environments, for reporting.

A tracker sees the raw environment reward (before clipping or normalization) and the *real*
episode ends (game over or time limit, never an Atari life loss), so the returns it reports are
the ones papers report: the unclipped score of a whole game.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class EpisodeStats:
    """Completed episodes, in the order they ended (ties broken by env index).

    Attributes:
        returns: Undiscounted sum of raw rewards of each episode, float64, shape ``(k,)``.
        lengths: Number of agent steps (vector-env steps) of each episode, int64, shape ``(k,)``.
    """

    returns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __len__(self) -> int:
        return int(self.returns.shape[0])


class EpisodeTracker:
    """Accumulates rewards and lengths per sub-environment and records finished episodes.

    Args:
        num_envs: Number of sub-environments.
    """

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self._returns = np.zeros(num_envs, dtype=np.float64)
        self._lengths = np.zeros(num_envs, dtype=np.int64)
        self._done_returns: list[np.ndarray] = []
        self._done_lengths: list[np.ndarray] = []

    def reset(self) -> None:
        """Forget running episodes (after a full reset); finished ones stay until popped."""
        self._returns[:] = 0.0
        self._lengths[:] = 0

    def update(self, rewards: np.ndarray, episode_over: np.ndarray) -> EpisodeStats:
        """Adds one step of raw rewards and closes the episodes that ended on it.

        Args:
            rewards: Raw rewards of this step, shape ``(num_envs,)``.
            episode_over: True where a real episode ended on this step (terminated or
                truncated), shape ``(num_envs,)``.

        Returns:
            The episodes that ended on this step.
        """
        self._returns += rewards
        self._lengths += 1
        ended = np.flatnonzero(episode_over)
        stats = EpisodeStats(self._returns[ended].copy(), self._lengths[ended].copy())
        self._returns[ended] = 0.0
        self._lengths[ended] = 0
        if len(stats):
            self._done_returns.append(stats.returns)
            self._done_lengths.append(stats.lengths)
        return stats

    def pop(self) -> EpisodeStats:
        """Returns the episodes finished since the last call and forgets them."""
        if not self._done_returns:
            return EpisodeStats()
        stats = EpisodeStats(np.concatenate(self._done_returns), np.concatenate(self._done_lengths))
        self._done_returns.clear()
        self._done_lengths.clear()
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Running and finished-but-unpopped episodes, as numpy arrays (for env snapshots)."""
        return {
            "returns": self._returns.copy(),
            "lengths": self._lengths.copy(),
            "done_returns": np.concatenate([np.zeros(0), *self._done_returns]),
            "done_lengths": np.concatenate([np.zeros(0, np.int64), *self._done_lengths]),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores ``state_dict()`` output."""
        returns = np.asarray(state["returns"], dtype=np.float64)
        if returns.shape != (self.num_envs,):
            raise ValueError(f"tracker state for {returns.shape} envs, expected {self.num_envs}")
        self._returns = returns.copy()
        self._lengths = np.asarray(state["lengths"], dtype=np.int64).copy()
        self._done_returns = [np.asarray(state["done_returns"], dtype=np.float64).copy()]
        self._done_lengths = [np.asarray(state["done_lengths"], dtype=np.int64).copy()]
