"""The original MuJoCo ACKTR's extra network inputs (openai/baselines ``acktr_cont``, branch
``old_acktr_cont``), appended to each observation by a ``VecEnv`` wrapper.

- previous observation: the observation before this one in the same episode, zeros at an
  episode's first step (the original's ``prev_ob``: ``np.concatenate([ob, prev_ob])``, both
  filtered), so the policy and value function see a finite difference of the state;
- time step: ``t * scale`` with ``t`` the step index within the episode, 0 at its first
  observation (the original's value-function input ``np.arange(len(path)) / 10``, i.e. scale
  0.1), reset at every episode boundary (termination or time-limit truncation). With it the
  value function can tell how much of a time-limited episode is left.

Layout of a wrapped observation: ``[obs, prev_obs (if on), t * scale (if on)]``; the time step
is always the last column, so a policy can keep it for its critic alone
(``agents.policies.MLPActorCritic(critic_only_inputs=1)``). Put the wrapper *above* observation
normalization: the previous observation is the normalized one (as the original's filtered
``prev_ob``) and the time step is not normalized.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from envs.snapshot import check_type
from envs.vec_env import StepResult, VecEnv, VecEnvWrapper


class ExtraInputs(VecEnvWrapper):
    """Appends the previous observation and/or the scaled time step to 1-D observations.

    ``info["final_obs"]`` (the last observation of an episode that ended) gets the extra inputs
    of that last step: the observation before it and the episode's length times ``scale``, so a
    truncated episode is bootstrapped from the value of the state it was cut in.

    Args:
        venv: An env with 1-D ``Box`` observations; closed by ``close()``.
        prev_obs: Append the previous observation (zeros at an episode's first step).
        time_scale: Append ``t * time_scale`` (``t`` = steps since the episode began); None:
            no time step. The original used 0.1.

    Raises:
        ValueError: Observations are not a 1-D ``Box``, neither input is asked for, or
            ``time_scale`` is not positive.
    """

    def __init__(self, venv: VecEnv, *, prev_obs: bool = False,
                 time_scale: float | None = None) -> None:
        space = venv.observation_space
        if not (isinstance(space, spaces.Box) and len(space.shape) == 1):
            raise ValueError(f"prev_obs / time-step inputs need 1-D Box observations, not {space}")
        if not prev_obs and time_scale is None:
            raise ValueError("ExtraInputs needs prev_obs=True or a time_scale")
        if time_scale is not None and not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.venv = venv
        self.num_envs = venv.num_envs
        self.action_space = venv.action_space
        self.render_fps = venv.render_fps
        self.spec = venv.spec
        self.prev_obs = prev_obs
        self.time_scale = time_scale
        low, high = [space.low.astype(np.float32)], [space.high.astype(np.float32)]
        if prev_obs:
            low.append(np.minimum(space.low, 0).astype(np.float32))
            high.append(np.maximum(space.high, 0).astype(np.float32))
        if time_scale is not None:
            low.append(np.zeros(1, np.float32))
            high.append(np.full(1, np.inf, np.float32))
        self.observation_space = spaces.Box(np.concatenate(low), np.concatenate(high),
                                            dtype=np.float32)
        self._last = np.zeros((self.num_envs, *space.shape), np.float32)
        self._steps = np.zeros(self.num_envs, np.int64)

    def _augment(self, obs: np.ndarray, prev: np.ndarray, steps: np.ndarray) -> np.ndarray:
        parts = [obs.astype(np.float32)]
        if self.prev_obs:
            parts.append(prev.astype(np.float32))
        if self.time_scale is not None:
            parts.append((steps * self.time_scale).astype(np.float32)[:, None])
        return np.concatenate(parts, axis=1)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """See ``VecEnv.reset``: previous observations zero, time steps 0."""
        obs = self.venv.reset(seed)
        self._last = obs.astype(np.float32)
        self._steps[:] = 0
        return self._augment(obs, np.zeros_like(self._last), self._steps)

    def step(self, actions: np.ndarray) -> StepResult:
        """See ``VecEnv.step``; where an episode ended, the new first observation starts over
        (zero previous observation, time step 0)."""
        obs, reward, terminated, truncated, info = self.venv.step(actions)
        ended = terminated | truncated
        steps = self._steps + 1
        info["final_obs"] = self._augment(info["final_obs"], self._last, steps)
        prev = np.where(ended[:, None], 0.0, self._last).astype(np.float32)
        self._steps = np.where(ended, 0, steps)
        self._last = obs.astype(np.float32)
        return self._augment(obs, prev, self._steps), reward, terminated, truncated, info

    def state_dict(self) -> dict[str, Any]:
        """The wrapped env's normalization statistics."""
        return self.venv.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores the wrapped env's normalization statistics."""
        self.venv.load_state_dict(state)

    def snapshot(self) -> dict[str, Any]:
        """See ``VecEnv.snapshot``: the wrapped env's, the last observations and step counts."""
        return {"type": "ExtraInputs", "inner": self.venv.snapshot(),
                "last": torch.from_numpy(self._last.copy()),
                "steps": torch.from_numpy(self._steps.copy())}

    def restore(self, state: dict[str, Any]) -> None:
        """See ``VecEnv.restore``."""
        check_type(state, "ExtraInputs")
        last = np.asarray(state["last"], dtype=np.float32)
        steps = np.asarray(state["steps"], dtype=np.int64)
        if last.shape != self._last.shape or steps.shape != self._steps.shape:
            raise ValueError(f"ExtraInputs state of shapes {last.shape}/{steps.shape}, expected "
                             f"{self._last.shape}/{self._steps.shape}")
        self.venv.restore(state["inner"])
        self._last, self._steps = last.copy(), steps.copy()
