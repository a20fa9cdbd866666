"""The exact state of one gymnasium environment (wrapper chain and core), as numpy/Python data.

``get_env_state(env)`` walks the wrapper chain and records, per wrapper, the attributes that
carry over between steps (a time limit's step counter, a frame stack's queue, ...), then the
core environment's own state and its ``np_random`` bit generator. ``set_env_state`` writes them
back into an env built the same way. Anything unknown raises ``NotImplementedError`` naming it,
rather than guessing: a snapshot that silently misses a field would resume a different run.

Core environments with a known state:

* MuJoCo (``gymnasium.envs.mujoco.MujocoEnv``): MuJoCo's full integration state
  (``mjSTATE_INTEGRATION``: time, qpos, qvel, act, warm start, ctrl, applied forces, mocap,
  plugin and user data), read and written with ``mj_getState`` / ``mj_setState``;
* classic control (CartPole, Acrobot, MountainCar, MountainCarContinuous, Pendulum): their
  ``state`` and episode bookkeeping attributes;
* ale-py's ``AtariEnv``: the serialized ALE state including its RNG (``cloneState``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import (
    AtariPreprocessing,
    FrameStackObservation,
    OrderEnforcing,
    PassiveEnvChecker,
    TimeLimit,
)

# Attributes of gymnasium's wrappers that carry over from one step to the next. A wrapper of our
# own declares its fields with a ``snapshot_fields`` class attribute (``()``: stateless).
WRAPPER_FIELDS: dict[type, tuple[str, ...]] = {
    TimeLimit: ("_elapsed_steps",),
    OrderEnforcing: ("_has_reset",),
    PassiveEnvChecker: (),
    AtariPreprocessing: ("lives", "game_over", "obs_buffer"),
    FrameStackObservation: ("obs_queue", "padding_value"),
}

# Set on restore instead: the passive checker only warns, and its first-step checks compare
# with data (``_previous_data``) that a restored env never saw.
CHECKS_DONE: dict[type, dict[str, Any]] = {
    PassiveEnvChecker: {
        "checked_reset": True,
        "checked_step": True,
        "checked_data_reuse": True,
        "_previous_data": None,
    },
}

CLASSIC_FIELDS = ("state", "steps_beyond_terminated", "last_u")


def _wrapper_fields(wrapper: gym.Wrapper) -> tuple[str, ...]:
    own = getattr(type(wrapper), "snapshot_fields", None)
    if own is not None:
        return tuple(own)
    for cls in type(wrapper).__mro__:
        if cls in WRAPPER_FIELDS:
            return WRAPPER_FIELDS[cls]
    raise NotImplementedError(
        f"the wrapper {type(wrapper).__name__} has no known snapshot fields"
    )


def _copy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list | tuple | deque):
        return [_copy(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str | np.generic):
        return value
    raise NotImplementedError(f"cannot snapshot a value of type {type(value).__name__}")


def _restore_value(current: Any, value: Any) -> Any:
    """``value`` in the container type of ``current`` (deques keep their maxlen)."""
    if isinstance(current, deque):
        return deque((_copy(v) for v in value), maxlen=current.maxlen)
    if isinstance(current, list):
        return [_copy(v) for v in value]
    return _copy(value)


def _rng_state(env: gym.Env) -> dict[str, Any] | None:
    rng = env._np_random  # not ``np_random``, which would create (and seed) one if missing
    return None if rng is None else dict(rng.bit_generator.state)


def _set_rng_state(env: gym.Env, state: dict[str, Any] | None) -> None:
    if state is None:
        env._np_random = None
        return
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    env._np_random = np.random.Generator(bit_generator)


def _core_kind(env: gym.Env) -> str:
    """``"mujoco"``, ``"classic"`` or ``"atari"``; NotImplementedError for anything else."""
    from gymnasium.envs import classic_control as cc

    classic = (cc.CartPoleEnv, cc.AcrobotEnv, cc.MountainCarEnv, cc.Continuous_MountainCarEnv,
               cc.PendulumEnv)
    if isinstance(env, classic):
        return "classic"
    module = type(env).__module__
    if module.startswith("gymnasium.envs.mujoco"):
        from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

        if isinstance(env, MujocoEnv):
            return "mujoco"
    if module.startswith("ale_py"):
        from ale_py.env import AtariEnv

        if isinstance(env, AtariEnv):
            return "atari"
    raise NotImplementedError(
        f"{type(env).__name__} has no exact snapshot (supported: MuJoCo, classic control, "
        "ale-py Atari)"
    )


def _get_core_state(env: gym.Env) -> dict[str, Any]:
    kind = _core_kind(env)
    state: dict[str, Any] = {"kind": kind, "class": type(env).__name__}
    if kind == "mujoco":
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.empty(mujoco.mj_stateSize(env.model, spec), dtype=np.float64)
        mujoco.mj_getState(env.model, env.data, physics, spec)
        state["physics"] = physics
    elif kind == "classic":
        state["fields"] = {k: _copy(getattr(env, k)) for k in CLASSIC_FIELDS if hasattr(env, k)}
    else:
        serialized = env.ale.cloneState(include_rng=True).serialize()
        state["ale"] = np.frombuffer(serialized, dtype=np.uint8).copy()
    return state


def _set_core_state(env: gym.Env, state: dict[str, Any]) -> None:
    kind = _core_kind(env)
    if state["kind"] != kind or state["class"] != type(env).__name__:
        raise ValueError(
            f"snapshot of a {state['class']} ({state['kind']}) does not fit a "
            f"{type(env).__name__}"
        )
    if kind == "mujoco":
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics = np.asarray(state["physics"], dtype=np.float64)
        if physics.shape != (mujoco.mj_stateSize(env.model, spec),):
            raise ValueError(f"MuJoCo state of size {physics.shape} does not fit this model")
        mujoco.mj_setState(env.model, env.data, physics, spec)
        # Recompute the derived quantities (positions of bodies, sensors) that rendering and
        # some observations read; the next mj_step recomputes them anyway from this state.
        mujoco.mj_forward(env.model, env.data)
    elif kind == "classic":
        for key, value in state["fields"].items():
            setattr(env, key, _copy(value))
    else:
        import ale_py

        env.ale.restoreState(ale_py.ALEState(np.asarray(state["ale"], np.uint8).tobytes()))


def _chain(env: gym.Env) -> list[gym.Env]:
    """The wrappers from the outside in, then the core environment."""
    out = [env]
    while isinstance(out[-1], gym.Wrapper):
        out.append(out[-1].env)
    return out


def get_env_state(env: gym.Env) -> dict[str, Any]:
    """Everything that determines ``env``'s future steps, as numpy arrays and Python data.

    Raises:
        NotImplementedError: A wrapper or core environment whose state is not known.
    """
    *wrappers, core = _chain(env)
    wrapper_states = []
    for w in wrappers:
        fields = _wrapper_fields(w)
        wrapper_states.append(
            {"class": type(w).__name__, "fields": {k: _copy(getattr(w, k)) for k in fields}}
        )
    return {
        "wrappers": wrapper_states,
        "core": _get_core_state(core),
        "np_random": _rng_state(core),
        "np_random_seed": getattr(core, "_np_random_seed", None),
    }


def set_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Writes back what :func:`get_env_state` returned, into an env built the same way.

    Raises:
        ValueError: The state was taken from a differently built environment.
    """
    *wrappers, core = _chain(env)
    saved = state["wrappers"]
    names = [type(w).__name__ for w in wrappers]
    if names != [s["class"] for s in saved]:
        raise ValueError(
            f"snapshot of wrappers {[s['class'] for s in saved]} does not fit {names}"
        )
    _set_core_state(core, state["core"])
    for w, s in zip(wrappers, saved, strict=True):
        for key, value in s["fields"].items():
            setattr(w, key, _restore_value(getattr(w, key), value))
        for key, value in CHECKS_DONE.get(type(w), {}).items():
            setattr(w, key, value)
    _set_rng_state(core, state["np_random"])
    if hasattr(core, "_np_random_seed"):
        core._np_random_seed = state["np_random_seed"]
