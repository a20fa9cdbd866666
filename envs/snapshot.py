"""Environment snapshots: plain data for checkpoints, and the per-env hook vector envs call.

A snapshot is nested plain data (dicts, lists, numbers, strings, None, torch tensors), so a
checkpoint holding one is read back with ``torch.load(weights_only=True)``: nothing is ever
pickled as an object. Inside the process, and across gymnasium's async worker pipes, states are
numpy arrays and Python scalars; ``to_plain`` / ``from_plain`` convert at the checkpoint border.

Which environments snapshot exactly (the rest raise :class:`SnapshotUnsupported`):

* gymnasium sync/async vector envs of MuJoCo envs and of the classic-control envs
  (CartPole, Acrobot, MountainCar, MountainCarContinuous, Pendulum), see ``envs.env_state``;
* Atari on the gymnasium backend (ALE state with its RNG, preprocessing and frame stack);
* Atari on ale-py's native vector env, by replaying each game from its seed (``envs.atari_native``);
* the wrappers on top: ``VecNormalize`` (statistics and the discounted-return accumulator),
  Atari's episodic-life bookkeeping, the episode-statistics trackers.

Gymnasium's vector envs in same-step autoreset mode keep nothing between steps but their
sub-environments (``_autoreset_envs`` is only read in next-step mode), so the sub-environments'
states are all a sync or async vector env needs.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from envs.env_state import get_env_state, set_env_state
from envs.faults import EnvStepError


class SnapshotUnsupported(RuntimeError):
    """This environment cannot be captured exactly; the message says which part and why."""


def to_plain(value: Any) -> Any:
    """numpy arrays -> torch tensors, numpy scalars -> Python numbers, tuples -> lists
    (recursively), so that ``torch.load(weights_only=True)`` can read the result."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value).copy())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in an environment snapshot")


def from_plain(value: Any) -> Any:
    """The inverse of :func:`to_plain` up to container types: tensors -> numpy arrays."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().copy()
    if isinstance(value, dict):
        return {k: from_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [from_plain(v) for v in value]
    return value


def check_type(state: Any, expected: str) -> None:
    """Raises ValueError unless ``state`` is a snapshot dict written by ``expected``."""
    if not isinstance(state, dict) or state.get("type") != expected:
        found = state.get("type") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"environment snapshot of type {found!r} does not fit this {expected} (was the run "
            "resumed with a different env configuration?)"
        )


class SnapshotWrapper(gym.Wrapper):
    """Outermost wrapper of each sub-environment that vector envs reach through ``call``.

    Gymnasium's async workers die on any exception, so nothing here raises: an unsupported env
    reports ``{"unsupported": reason}`` and a failed restore returns the error message.

    * ``venv.call("snapshot_state")`` -> one state (numpy and Python data) per sub-env;
    * ``venv.set_attr("pending_state", states)`` then ``venv.call("apply_pending_state")`` ->
      None per sub-env that was restored, or an error message.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.pending_state: dict[str, Any] | None = None
        self.env_index: int | None = None  # set by the vector env, named in errors

    def step(self, action: Any) -> Any:
        """The env's step; an exception becomes an :class:`EnvStepError` naming this env."""
        try:
            return self.env.step(action)
        except Exception as err:
            raise EnvStepError(self._describe("step", err)) from err

    def reset(self, **kwargs: Any) -> Any:
        """The env's reset; an exception becomes an :class:`EnvStepError` naming this env."""
        try:
            return self.env.reset(**kwargs)
        except Exception as err:
            raise EnvStepError(self._describe("reset", err)) from err

    def _describe(self, method: str, err: Exception) -> str:
        who = "a sub-environment" if self.env_index is None else f"env {self.env_index}"
        return f"{who} raised {type(err).__name__} in {method}(): {err}"

    def snapshot_state(self) -> dict[str, Any]:
        """The sub-environment's state, or ``{"unsupported": reason}``."""
        try:
            return get_env_state(self.env)
        except NotImplementedError as err:
            return {"unsupported": str(err)}

    def apply_pending_state(self) -> str | None:
        """Restores ``pending_state``; returns None or the reason it failed."""
        state, self.pending_state = self.pending_state, None
        if state is None:
            return "no state was sent to this sub-environment"
        try:
            set_env_state(self.env, state)
        except Exception as err:  # reported to the main process, which raises
            return f"{type(err).__name__}: {err}"
        return None


def snapshot_sub_envs(venv: gym.vector.VectorEnv, env_id: str) -> list[dict[str, Any]]:
    """States of all sub-environments of a gymnasium sync or async vector env.

    Raises:
        SnapshotUnsupported: A sub-environment has no :class:`SnapshotWrapper` or an
            environment or wrapper whose state is unknown.
    """
    try:
        states = list(venv.call("snapshot_state"))
    except AttributeError as err:
        raise SnapshotUnsupported(
            f"{env_id!r}: the sub-environments were not built with a SnapshotWrapper"
        ) from err
    for state in states:
        if "unsupported" in state:
            raise SnapshotUnsupported(f"{env_id!r}: {state['unsupported']}")
    return states


def restore_sub_envs(venv: gym.vector.VectorEnv, states: list[dict[str, Any]], env_id: str) -> None:
    """Restores what :func:`snapshot_sub_envs` returned (one state per sub-environment)."""
    if len(states) != venv.num_envs:
        raise ValueError(
            f"{env_id!r}: the snapshot has {len(states)} sub-environments, this env {venv.num_envs}"
        )
    venv.set_attr("pending_state", list(states))
    errors = [e for e in venv.call("apply_pending_state") if e is not None]
    if errors:
        raise ValueError(f"{env_id!r}: could not restore the sub-environments: {errors[0]}")
