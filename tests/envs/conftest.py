"""Test helpers for ``envs``: import path and small registered toy environments."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

# pytest's default "prepend" import mode puts only this folder on sys.path; make the repository
# importable when the project is not pip-installed.
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


class CounterEnv(gym.Env):
    """Observation ``[episode, t]``: which reset (counted per env) and steps since it.

    Reward is 1 per step; the episode terminates when ``action == 1`` and otherwise runs until
    the registered time limit truncates it.
    """

    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self) -> None:
        self.episode = -1
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 1.0, bool(action == 1), False, {}


class MultiDiscreteEnv(CounterEnv):
    """Same as ``CounterEnv`` but with an action space the agents do not support."""

    action_space = spaces.MultiDiscrete([2, 3])

    def step(self, action):
        return super().step(int(action[0]))


COUNTER_ID = "EnvsTestCounter-v0"
MULTIDISCRETE_ID = "EnvsTestMultiDiscrete-v0"
COUNTER_LIMIT = 3


def _register() -> None:
    if COUNTER_ID not in gym.registry:
        gym.register(COUNTER_ID, entry_point=CounterEnv, max_episode_steps=COUNTER_LIMIT)
    if MULTIDISCRETE_ID not in gym.registry:
        gym.register(MULTIDISCRETE_ID, entry_point=MultiDiscreteEnv, max_episode_steps=10)


_register()


@pytest.fixture
def counter_id() -> str:
    """Id of ``CounterEnv`` with a time limit of ``COUNTER_LIMIT`` steps."""
    return COUNTER_ID


@pytest.fixture
def counter_limit() -> int:
    """Time limit of ``counter_id``."""
    return COUNTER_LIMIT


@pytest.fixture
def multidiscrete_id() -> str:
    """Id of an env with a ``MultiDiscrete`` action space."""
    return MULTIDISCRETE_ID
