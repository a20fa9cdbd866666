"""The vectorized-environment interface the agents use.

Conventions (every ``VecEnv`` follows them):

* ``reset(seed=None) -> obs`` with ``obs`` of shape ``(num_envs, *observation_space.shape)``.
* ``step(actions) -> (obs, reward, terminated, truncated, info)``:

  - ``reward``: float32 ``(num_envs,)``, the *training* reward (clipped for Atari training,
    scaled when reward normalization is on).
  - ``terminated`` / ``truncated``: bool ``(num_envs,)``, kept apart so the learner can
    bootstrap truncations. For Atari training a life loss counts as ``terminated``.
  - Same-step autoreset: where ``terminated | truncated``, ``obs`` is already the *first*
    observation of the next episode.
  - ``info["final_obs"]``: always present, same shape and dtype as ``obs``. Rows where
    ``terminated | truncated`` hold the last observation of the episode that just ended
    (normalized like ``obs``); every other row equals ``obs``. So
    ``value(info["final_obs"])`` is the bootstrap value for every env at once.
  - ``info["episode_returns"]`` (float64) / ``info["episode_lengths"]`` (int64): 1-D arrays,
    one entry per *real* episode that ended on this step (often empty). Returns are raw
    (unclipped, unnormalized) sums over the full game, across Atari lives; lengths are in
    agent steps. ``pop_episode_stats()`` returns the same episodes accumulated since its
    last call.
  - Atari only: ``info["lives"]`` (int32 ``(num_envs,)``), lives after the step.

* ``observation_space`` / ``action_space`` describe a *single* sub-environment.
* ``state_dict()`` / ``load_state_dict()`` carry normalization statistics (empty when there
  are none) as plain tensors, numbers and strings, so ``torch.load(weights_only=True)`` reads
  them back.
* ``snapshot()`` / ``restore()`` capture and restore *everything* that determines future steps
  (simulator states, RNGs, time-limit counters, frame stacks, normalization statistics and
  accumulators, episode bookkeeping), in the same plain form, so that a restored env continues
  exactly as the original would have. Envs that cannot do this raise ``SnapshotUnsupported``;
  ``envs.snapshot`` lists which can.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from envs.episodes import EpisodeStats
from envs.snapshot import SnapshotUnsupported

EnvKind = Literal["atari", "mujoco", "gym"]
StepResult = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]


@dataclass(frozen=True)
class VecEnvSpec:
    """What was built, for the agent to choose its networks and for logs.

    Attributes:
        env_id: Gymnasium id, e.g. ``"ALE/Pong-v5"``.
        kind: ``"atari"``, ``"mujoco"`` or ``"gym"``.
        num_envs: Number of sub-environments.
        seed: Base seed; sub-environment ``i`` is seeded with ``seed + i``.
        backend: ``"ale_native"`` (ale-py's threaded C++ vector env), ``"sync"`` or ``"async"``
            (gymnasium's vector envs).
        normalize_obs: Whether observations are normalized by running statistics.
        normalize_reward: Whether rewards are scaled by the running std of discounted returns.
        training: False when statistics are frozen and Atari training transforms (episodic
            life, reward clipping) are off.
        observation: ``"state"`` (the env's own observations) or ``"pixels"`` (a MuJoCo env
            seen through stacked rendered frames, ``envs.pixels``). Default ``"state"``.
    """

    env_id: str
    kind: EnvKind
    num_envs: int
    seed: int
    backend: Literal["ale_native", "sync", "async"]
    normalize_obs: bool
    normalize_reward: bool
    training: bool
    observation: Literal["state", "pixels"] = "state"

    @property
    def is_atari(self) -> bool:
        """True for image-based Atari environments (uint8 ``(4, 84, 84)`` observations)."""
        return self.kind == "atari"


class VecEnv(abc.ABC):
    """A batch of ``num_envs`` environments stepped together (see the module docstring).

    Subclasses set ``num_envs``, ``observation_space``, ``action_space`` and ``spec``.
    """

    num_envs: int
    observation_space: gym.Space
    action_space: gym.Space
    spec: VecEnvSpec | None = None
    render_fps: float | None = None
    """Frames per second of ``render()`` output, from the env's metadata (None: unknown)."""

    @abc.abstractmethod
    def reset(self, seed: int | None = None) -> np.ndarray:
        """Resets every sub-environment.

        Args:
            seed: Sub-environment ``i`` is seeded with ``seed + i``. Defaults to None: the first
                reset uses the seed given at construction, later ones continue the RNG streams.

        Returns:
            Observations, shape ``(num_envs, *observation_space.shape)``.
        """

    @abc.abstractmethod
    def step(self, actions: np.ndarray) -> StepResult:
        """Steps every sub-environment once; see the module docstring for the conventions.

        Args:
            actions: Shape ``(num_envs,)`` of ints for ``Discrete`` action spaces,
                ``(num_envs, *action_space.shape)`` for ``Box`` (clipped to the bounds here,
                so the learner may pass raw Gaussian samples).
        """

    @abc.abstractmethod
    def pop_episode_stats(self) -> EpisodeStats:
        """Returns the real episodes finished since the last call (raw returns, full games)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Releases the sub-environments (threads or worker processes)."""

    def state_dict(self) -> dict[str, Any]:
        """Normalization statistics as tensors/numbers; empty when there are none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what ``state_dict`` returned. Defaults to accepting only an empty dict."""
        if state:
            raise ValueError(
                f"{type(self).__name__} keeps no statistics but got state keys {sorted(state)}"
            )

    def render(self) -> np.ndarray:
        """The first sub-environment's RGB frame ``(H, W, 3)`` uint8, for envs built with
        ``render_mode="rgb_array"``."""
        raise NotImplementedError(f"{type(self).__name__} cannot render")

    def snapshot(self) -> dict[str, Any]:
        """Everything that determines future steps, as plain data (see the module docstring).

        Take it between steps (after ``reset()``); the observation the learner holds is not
        part of it. Restore with ``restore()`` on an env built with the same arguments.

        Raises:
            SnapshotUnsupported: This env (or a sub-environment) cannot be captured exactly.
        """
        raise SnapshotUnsupported(f"{type(self).__name__} does not support snapshots")

    def restore(self, state: dict[str, Any]) -> None:
        """Continues from ``snapshot()`` output, instead of calling ``reset()``.

        Raises:
            SnapshotUnsupported: This env cannot be restored exactly.
            ValueError: ``state`` was taken from a differently built env.
        """
        raise SnapshotUnsupported(f"{type(self).__name__} does not support snapshots")

    def __enter__(self) -> VecEnv:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class VecEnvWrapper(VecEnv):
    """A ``VecEnv`` that transforms another (``self.venv``); episode statistics, rendering and
    closing go to the wrapped env unless a subclass changes them."""

    venv: VecEnv

    def pop_episode_stats(self) -> EpisodeStats:
        """The wrapped env's raw full-game statistics."""
        return self.venv.pop_episode_stats()

    def close(self) -> None:
        """Closes the wrapped env."""
        self.venv.close()

    def render(self) -> np.ndarray:
        """The wrapped env's frame."""
        return self.venv.render()
