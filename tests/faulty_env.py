"""``FaultyCartPole-v0``: CartPole whose env with a chosen seed fails at a chosen step.

    register_faulty("raise", at_step=40, seed=1)   # env 1 of a run seeded 0 raises at step 40

Faults: ``"raise"`` (ValueError in step), ``"nan_reward"``, ``"inf_obs"``, ``"die"`` (the
process kills itself with SIGKILL: an async worker dying), ``"none"``. A module of its own so
that async workers (forked) find the entry point.
"""

from __future__ import annotations

import os
import signal

import gymnasium as gym
import numpy as np

ENV_ID = "FaultyCartPole-v0"


class FaultInjector(gym.Wrapper):
    def __init__(self, env: gym.Env, fault: str = "none", at_step: int = 0, seed: int = 1):
        super().__init__(env)
        self.fault, self.at_step, self.target_seed = fault, at_step, seed
        self.is_target, self.steps = False, 0

    def reset(self, **kwargs):
        if kwargs.get("seed") is not None:
            self.is_target = kwargs["seed"] == self.target_seed
        return self.env.reset(**kwargs)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.is_target and self.steps == self.at_step:
            if self.fault == "raise":
                raise ValueError("simulated physics failure")
            if self.fault == "nan_reward":
                reward = float("nan")
            if self.fault == "inf_obs":
                obs = np.array(obs, copy=True)
                obs[2] = np.inf
            if self.fault == "die":
                os.kill(os.getpid(), signal.SIGKILL)
        return obs, reward, terminated, truncated, info


def make(fault: str = "none", at_step: int = 0, seed: int = 1) -> gym.Env:
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv

    return gym.wrappers.TimeLimit(FaultInjector(CartPoleEnv(), fault, at_step, seed), 500)


def register_faulty(fault: str, at_step: int, seed: int = 1) -> str:
    """(Re-)register ``FaultyCartPole-v0`` with this fault; returns the id."""
    gym.registry.pop(ENV_ID, None)
    gym.register(ENV_ID, entry_point="tests.faulty_env:make",
                 kwargs={"fault": fault, "at_step": at_step, "seed": seed})
    return ENV_ID
