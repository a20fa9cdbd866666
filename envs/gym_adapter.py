"""Adapter from a gymnasium ``VectorEnv`` (same-step autoreset) to our ``VecEnv``.

Used for ale-py's native ``AtariVectorEnv`` and for gymnasium's ``SyncVectorEnv`` /
``AsyncVectorEnv`` alike: both report the last observation of an ended episode in
``info["final_obs"]`` when built with ``autoreset_mode=SAME_STEP``; the first as a dense array
whose other rows are stale, the others as an object array with ``None`` in the other rows.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from envs.episodes import EpisodeStats, EpisodeTracker
from envs.faults import EnvStepError, check_finite, dead_workers
from envs.snapshot import check_type, from_plain, restore_sub_envs, snapshot_sub_envs, to_plain
from envs.vec_env import StepResult, VecEnv

SUPPORTED_ACTION_SPACES = (spaces.Box, spaces.Discrete)
SUPPORTED_OBSERVATION_SPACES = (spaces.Box, spaces.Discrete)


def check_spaces(env_id: str, observation_space: gym.Space, action_space: gym.Space) -> None:
    """Raises ValueError when a space is one the agents cannot handle.

    Args:
        env_id: Named in the message.
        observation_space: Single-env observation space; ``Box`` or ``Discrete`` allowed.
        action_space: Single-env action space; ``Box`` or ``Discrete`` allowed.
    """
    if not isinstance(action_space, SUPPORTED_ACTION_SPACES):
        raise ValueError(
            f"{env_id!r} has action space {action_space} ({type(action_space).__name__}); "
            "only Box (continuous) and Discrete action spaces are supported"
        )
    if not isinstance(observation_space, SUPPORTED_OBSERVATION_SPACES):
        raise ValueError(
            f"{env_id!r} has observation space {observation_space} "
            f"({type(observation_space).__name__}); only Box and Discrete observation spaces "
            "are supported"
        )


def _float32_space(space: gym.Space) -> gym.Space:
    """A float64 ``Box`` becomes float32 (what the networks use); other spaces are unchanged."""
    if isinstance(space, spaces.Box) and np.issubdtype(space.dtype, np.floating):
        return spaces.Box(
            space.low.astype(np.float32), space.high.astype(np.float32), dtype=np.float32
        )
    return space


class GymnasiumVecEnv(VecEnv):
    """Wraps a gymnasium vector env built with ``autoreset_mode=SAME_STEP``.

    Args:
        venv: The gymnasium vector env; closed by ``close()``.
        env_id: For error messages.
        seed: Seed of the first ``reset()``; sub-environment ``i`` gets ``seed + i``.
    """

    def __init__(self, venv: gym.vector.VectorEnv, env_id: str, seed: int) -> None:
        mode = venv.metadata.get("autoreset_mode")
        if mode is not None and AutoresetMode(mode) != AutoresetMode.SAME_STEP:
            raise ValueError(f"{env_id!r}: expected a SAME_STEP autoreset vector env, got {mode}")
        check_spaces(env_id, venv.single_observation_space, venv.single_action_space)
        self.venv = venv
        self.env_id = env_id
        self.num_envs = venv.num_envs
        self.observation_space = _float32_space(venv.single_observation_space)
        self.action_space = venv.single_action_space
        self._obs_dtype = self.observation_space.dtype
        self._pending_seed: int | None = seed
        self._tracker = EpisodeTracker(self.num_envs)
        self._env_ids = np.arange(self.num_envs)
        self.render_fps = venv.metadata.get("render_fps")
        self._steps = 0
        try:  # lets each SnapshotWrapper name its index when its env raises
            venv.set_attr("env_index", list(range(self.num_envs)))
        except (AttributeError, NotImplementedError):
            pass  # ale-py's native vector env: no Python sub-environments

    def reset(self, seed: int | np.ndarray | None = None) -> np.ndarray:
        """Resets all sub-environments; see ``VecEnv.reset``.

        ``seed`` may also be an integer array with one seed per sub-environment.
        """
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        if seed is not None:
            seed = np.asarray(seed, dtype=np.int64)
            seed = int(seed) if seed.ndim == 0 else self._per_env_seeds(seed)
        obs, _ = self.venv.reset(seed=seed)
        self._tracker.reset()
        return np.asarray(obs, dtype=self._obs_dtype)

    def _per_env_seeds(self, seeds: np.ndarray) -> np.ndarray | list[int]:
        if seeds.shape != (self.num_envs,):
            raise ValueError(f"expected {self.num_envs} seeds, got shape {seeds.shape}")
        # ale-py's vector env takes an array, gymnasium's a list of ints.
        if isinstance(self.venv, gym.vector.SyncVectorEnv | gym.vector.AsyncVectorEnv):
            return [int(x) for x in seeds]
        return seeds

    def step(self, actions: np.ndarray) -> StepResult:
        """Steps all sub-environments; see ``VecEnv.step``.

        Raises:
            envs.faults.EnvStepError: A sub-environment raised, or its worker process died.
            envs.faults.NonFiniteEnvOutput: A sub-environment returned NaN/Inf.
        """
        try:
            obs, reward, terminated, truncated, raw_info = self.venv.step(self._prepare(actions))
        except (BrokenPipeError, EOFError, ConnectionError) as err:
            dead = ", ".join(dead_workers(self.venv)) or "unknown"
            self._terminate_workers()
            raise EnvStepError(
                f"{self.env_id!r}: an environment worker process died (dead: {dead}); "
                f"{type(err).__name__}: {err}"
            ) from err
        self._steps += 1
        if "env_id" in raw_info and not np.array_equal(raw_info["env_id"], self._env_ids):
            # ale-py returns envs in index order when batch_size == num_envs; check it stays so.
            raise RuntimeError(f"{self.env_id!r}: sub-environments came back out of order")
        obs = np.asarray(obs, dtype=self._obs_dtype)
        reward = np.asarray(reward, dtype=np.float64)
        check_finite(self.env_id, obs, reward, self._steps)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        ended = terminated | truncated
        finished = self._tracker.update(reward, ended)
        info: dict[str, Any] = {
            "final_obs": self._final_obs(obs, ended, raw_info),
            "episode_returns": finished.returns,
            "episode_lengths": finished.lengths,
        }
        if "lives" in raw_info:
            info["lives"] = np.asarray(raw_info["lives"], dtype=np.int32)
        return obs, reward.astype(np.float32), terminated, truncated, info

    def pop_episode_stats(self) -> EpisodeStats:
        """See ``VecEnv.pop_episode_stats``."""
        return self._tracker.pop()

    def close(self) -> None:
        """Closes the wrapped gymnasium vector env; one with a dead worker process is
        terminated instead (closing it gracefully would fail on the broken pipe)."""
        if getattr(self.venv, "closed", False):
            return  # terminated after a worker died
        try:
            self.venv.close()
        except (BrokenPipeError, EOFError, ConnectionError):
            self._terminate_workers()

    def _terminate_workers(self) -> None:
        """Stop an async vector env whose worker died: gymnasium's close() would wait for the
        results the dead worker never sends (or that the others already sent)."""
        processes = getattr(self.venv, "processes", None) or []
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(timeout=5)
        for pipe in getattr(self.venv, "parent_pipes", None) or []:
            if pipe is not None:
                pipe.close()
        self.venv.closed = True  # gymnasium's __del__ would try to close it again

    def render(self) -> np.ndarray:
        """The first sub-environment's frame (envs built with ``render_mode="rgb_array"``)."""
        frames = self.venv.render()
        if frames is None or len(frames) == 0 or frames[0] is None:
            raise RuntimeError(f"{self.env_id!r} returned no frame; build it with a render_mode")
        return np.asarray(frames[0])

    def snapshot(self, sub_envs: bool = True) -> dict[str, Any]:
        """See ``VecEnv.snapshot``.

        Args:
            sub_envs: Include the sub-environments' states (gymnasium sync/async vector envs
                of ``SnapshotWrapper``-wrapped envs). Default True; False gives only this
                adapter's own bookkeeping, for a wrapper that restores the games itself.
        """
        state: dict[str, Any] = {
            "type": "GymnasiumVecEnv",
            "num_envs": self.num_envs,
            "pending_seed": self._pending_seed,
            "tracker": self._tracker.state_dict(),
        }
        if sub_envs:
            state["sub_envs"] = snapshot_sub_envs(self.venv, self.env_id)
        return to_plain(state)

    def restore(self, state: dict[str, Any]) -> None:
        """See ``VecEnv.restore`` (and ``snapshot``'s ``sub_envs``)."""
        check_type(state, "GymnasiumVecEnv")
        state = from_plain(state)
        if state["num_envs"] != self.num_envs:
            raise ValueError(
                f"{self.env_id!r}: snapshot of {state['num_envs']} envs, this env has "
                f"{self.num_envs}"
            )
        if "sub_envs" in state:
            restore_sub_envs(self.venv, state["sub_envs"], self.env_id)
        self._pending_seed = state["pending_seed"]
        self._tracker.load_state_dict(state["tracker"])

    def _prepare(self, actions: np.ndarray) -> np.ndarray:
        """Casts actions to what the backend asserts: int64 ``(n,)`` or clipped Box arrays."""
        actions = np.asarray(actions)
        if isinstance(self.action_space, spaces.Discrete):
            return actions.astype(np.int64).reshape(self.num_envs)
        box = self.action_space
        actions = actions.reshape(self.num_envs, *box.shape).astype(box.dtype)
        return np.clip(actions, box.low, box.high)

    def _final_obs(self, obs: np.ndarray, ended: np.ndarray, raw_info: dict) -> np.ndarray:
        """Dense final observations: ``obs`` with the rows of ended episodes replaced."""
        final_obs = obs.copy()
        if not ended.any():
            return final_obs
        if "final_obs" not in raw_info:
            raise RuntimeError(f"{self.env_id!r}: an episode ended but no final_obs was reported")
        for i in np.flatnonzero(ended):
            final_obs[i] = raw_info["final_obs"][i]
        return final_obs
