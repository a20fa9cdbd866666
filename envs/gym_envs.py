"""Gymnasium environments (MuJoCo v5 and any other id) as same-step-autoreset vector envs."""

from __future__ import annotations

import signal
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from envs.gym_adapter import GymnasiumVecEnv, check_spaces
from envs.pixels import PixelOptions, make_pixel_env
from envs.snapshot import SnapshotWrapper

Vectorization = Literal["sync", "async"]


def _in_worker(env_fn: Callable[[], gym.Env]) -> gym.Env:
    """Builds the env in an async worker that ignores Ctrl-C.

    Ctrl-C reaches every process of the terminal's foreground group; the trainer handles it
    (finishes the update, snapshots the envs, saves a checkpoint), which needs live workers.
    The workers still exit when the main process closes them or dies.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return env_fn()


class SameStepSyncVectorEnv(SyncVectorEnv):
    """gymnasium's ``SyncVectorEnv`` with same-step autoreset, minus the info merging.

    ``step`` returns an ``info`` with only what :class:`envs.gym_adapter.GymnasiumVecEnv`
    reads: ``final_obs`` (dense: rows of ended episodes hold their last observation, other rows
    are unspecified) when an episode ended, and ``lives`` when the sub-environments report it.
    The parent merges every key of every sub-environment's info dict on every step, which costs
    more than the simulation step of a small MuJoCo model. Everything else (reset, seeding,
    ``call``, ``set_attr``, rendering, closing) is the parent's.

    Args:
        env_fns: One constructor per sub-environment; Box or Discrete observation spaces.
    """

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]]) -> None:
        super().__init__(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)
        space = self.single_observation_space
        if not isinstance(space, spaces.Box | spaces.Discrete):
            raise ValueError(
                f"SameStepSyncVectorEnv needs Box or Discrete observations, not {space}"
            )
        self._obs_shape = (self.num_envs, *space.shape)
        self._obs_dtype = space.dtype

    def step(self, actions):  # type: ignore[override]
        """Steps every sub-environment, resetting those whose episode ended (same step)."""
        n = self.num_envs
        obs = np.empty(self._obs_shape, self._obs_dtype)
        rewards = np.empty(n, dtype=np.float64)
        terminated = np.empty(n, dtype=bool)
        truncated = np.empty(n, dtype=bool)
        final_obs: np.ndarray | None = None
        lives: np.ndarray | None = None
        for i, env in enumerate(self.envs):
            o, rewards[i], terminated[i], truncated[i], env_info = env.step(actions[i])
            if terminated[i] or truncated[i]:
                if final_obs is None:
                    final_obs = np.empty_like(obs)
                final_obs[i] = o
                o, env_info = env.reset()
            obs[i] = o
            if "lives" in env_info:
                if lives is None:
                    lives = np.zeros(n, dtype=np.int32)
                lives[i] = env_info["lives"]
        info: dict[str, np.ndarray] = {}
        if final_obs is not None:
            info["final_obs"] = final_obs
        if lives is not None:
            info["lives"] = lives
        return obs, rewards, terminated, truncated, info


def vectorize(
    env_fns: Sequence[Callable[[], gym.Env]], vectorization: Vectorization
) -> gym.vector.VectorEnv:
    """Builds a sync (one process: :class:`SameStepSyncVectorEnv`) or gymnasium's async (one
    process per env) vector env.

    Both use same-step autoreset, the convention ``GymnasiumVecEnv`` expects.

    Args:
        env_fns: One picklable constructor per sub-environment (picklable so that the async
            workers can be started with any multiprocessing context).
        vectorization: ``"sync"`` or ``"async"``.
    """
    if vectorization == "sync":
        return SameStepSyncVectorEnv(env_fns)
    if vectorization == "async":
        workers = [partial(_in_worker, fn) for fn in env_fns]
        return AsyncVectorEnv(workers, autoreset_mode=AutoresetMode.SAME_STEP)
    raise ValueError(f"vectorization must be 'sync' or 'async', got {vectorization!r}")


def _warn_from_mujoco(message: str) -> None:
    warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2)


def route_mujoco_warnings() -> None:
    """Sends MuJoCo's warnings to Python's ``warnings`` (RuntimeWarning, shown once each).

    Otherwise MuJoCo prints them and appends them to ``MUJOCO_LOG.TXT`` in the working
    directory; MuJoCo 4 warns on every HalfCheetah load (``settotalmass`` is deprecated).
    A handler the user installed first is kept.
    """
    import mujoco

    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_warn_from_mujoco)


def make_env(
    env_id: str,
    is_mujoco: bool = False,
    render_mode: str | None = None,
    pixels: PixelOptions | None = None,
) -> gym.Env:
    """``gym.make(env_id)`` in a ``SnapshotWrapper`` (see ``envs.snapshot``).

    A module-level function so that ``partial(make_env, ...)`` pickles for async workers.

    Args:
        env_id: Registered gymnasium id.
        is_mujoco: Route MuJoCo's warnings to Python's first. Default False.
        render_mode: Passed to ``gym.make`` (``"rgb_array"`` for videos). Default None.
        pixels: Observe a MuJoCo env through stacked rendered frames (``envs.pixels``; its
            ``render()`` then gives those low-resolution frames). Default None: the state.
    """
    if is_mujoco:
        route_mujoco_warnings()
    if pixels is not None:
        return SnapshotWrapper(make_pixel_env(env_id, pixels))
    kwargs = {} if render_mode is None else {"render_mode": render_mode}
    return SnapshotWrapper(gym.make(env_id, **kwargs))


def make_gym_vec_env(
    env_id: str,
    num_envs: int,
    seed: int,
    vectorization: Vectorization = "sync",
    *,
    is_mujoco: bool = False,
    render_mode: str | None = None,
    pixels: PixelOptions | None = None,
) -> GymnasiumVecEnv:
    """Vectorizes ``gym.make(env_id)`` (MuJoCo or any gymnasium env with Box/Discrete actions).

    The spaces are checked on one probe env before the workers start, so an unsupported action
    space fails fast with a ValueError naming the space.

    Args:
        env_id: Registered gymnasium id, e.g. ``"HalfCheetah-v5"`` or ``"CartPole-v1"``.
        num_envs: Number of sub-environments.
        seed: Sub-environment ``i`` is seeded with ``seed + i`` on the first reset.
        vectorization: ``"sync"`` (default) or ``"async"``.
        is_mujoco: Route MuJoCo's warnings to Python's (see ``route_mujoco_warnings``).
            Default False.
        render_mode: ``gym.make``'s render mode, e.g. ``"rgb_array"``. Default None.
        pixels: Pixel observations of a MuJoCo env (see :func:`make_env`). Default None.
    """
    probe = make_env(env_id, is_mujoco)
    try:
        check_spaces(env_id, probe.observation_space, probe.action_space)
    finally:
        probe.close()
    env_fn = partial(make_env, env_id, is_mujoco, render_mode, pixels)
    venv = vectorize([env_fn] * num_envs, vectorization)
    return GymnasiumVecEnv(venv, env_id, seed)
