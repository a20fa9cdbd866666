"""Gymnasium environments (MuJoCo v5 and any other id) as same-step-autoreset vector envs."""

from __future__ import annotations

import signal
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from envs.gym_adapter import GymnasiumVecEnv, check_spaces
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


def vectorize(
    env_fns: Sequence[Callable[[], gym.Env]], vectorization: Vectorization
) -> gym.vector.VectorEnv:
    """Builds gymnasium's sync (one process) or async (one process per env) vector env.

    Both use same-step autoreset, the convention ``GymnasiumVecEnv`` expects.

    Args:
        env_fns: One picklable constructor per sub-environment (picklable so that the async
            workers can be started with any multiprocessing context).
        vectorization: ``"sync"`` or ``"async"``.
    """
    if vectorization == "sync":
        return SyncVectorEnv(env_fns, autoreset_mode=AutoresetMode.SAME_STEP)
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


def make_env(env_id: str, is_mujoco: bool = False, render_mode: str | None = None) -> gym.Env:
    """``gym.make(env_id)`` in a ``SnapshotWrapper`` (see ``envs.snapshot``).

    A module-level function so that ``partial(make_env, ...)`` pickles for async workers.

    Args:
        env_id: Registered gymnasium id.
        is_mujoco: Route MuJoCo's warnings to Python's first. Default False.
        render_mode: Passed to ``gym.make`` (``"rgb_array"`` for videos). Default None.
    """
    if is_mujoco:
        route_mujoco_warnings()
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
    """
    probe = make_env(env_id, is_mujoco)
    try:
        check_spaces(env_id, probe.observation_space, probe.action_space)
    finally:
        probe.close()
    env_fn = partial(make_env, env_id, is_mujoco, render_mode)
    venv = vectorize([env_fn] * num_envs, vectorization)
    return GymnasiumVecEnv(venv, env_id, seed)
