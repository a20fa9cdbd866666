"""collect_rollout on a scripted env: truncations bootstrap from V(info["final_obs"])."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from agents.rollout import collect_rollout
from agents.storage import RolloutStorage
from envs.episodes import EpisodeStats, EpisodeTracker
from envs.vec_env import VecEnv

TIME_LIMIT = 3  # env 0 is truncated after 3 steps
TERMINAL_STEP = 2  # env 1 terminates after 2 steps


class ScriptedEnv(VecEnv):
    """Two envs observing ``[t, env index]`` (steps since their reset), reward 1 per step.

    Env 0 is truncated by a time limit after ``TIME_LIMIT`` steps, env 1 terminates after
    ``TERMINAL_STEP`` steps; both reset on the same step (same-step autoreset, so ``obs`` is
    then ``[0, i]`` and ``info["final_obs"]`` holds ``[t_end, i]``).
    """

    num_envs = 2
    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.t = np.zeros(2, dtype=int)
        self.tracker = EpisodeTracker(2)

    def _obs(self) -> np.ndarray:
        return np.stack([self.t, np.arange(2)], axis=1).astype(np.float32)

    def reset(self, seed=None) -> np.ndarray:
        self.t[:] = 0
        return self._obs()

    def step(self, actions):
        self.t += 1
        truncated = np.array([self.t[0] == TIME_LIMIT, False])
        terminated = np.array([False, self.t[1] == TERMINAL_STEP])
        reward = np.ones(2, dtype=np.float32)
        ended = terminated | truncated
        final_obs = self._obs()
        self.t[ended] = 0
        finished = self.tracker.update(reward.astype(np.float64), ended)
        info = {"final_obs": final_obs, "episode_returns": finished.returns,
                "episode_lengths": finished.lengths}
        return self._obs(), reward, terminated, truncated, info

    def pop_episode_stats(self) -> EpisodeStats:
        return self.tracker.pop()

    def close(self) -> None:
        pass


def known_value(obs: torch.Tensor) -> torch.Tensor:
    """``V([t, i]) = 10 t + 100 i + 1``: which observation a value came from is readable."""
    return 10 * obs[:, 0] + 100 * obs[:, 1] + 1


class StubPolicy(nn.Module):
    """Uniform over two actions, with the value ``known_value``."""

    def forward(self, obs: torch.Tensor):
        logits = torch.zeros(obs.shape[0], 2)
        return torch.distributions.Categorical(logits=logits), known_value(obs)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return known_value(obs)


@pytest.fixture
def rollout():
    env, policy = ScriptedEnv(), StubPolicy()
    storage = RolloutStorage.from_spaces(5, 2, env.observation_space, env.action_space)
    obs = torch.as_tensor(env.reset())
    next_obs, returns, lengths = collect_rollout(env, policy, storage, obs, 0.5, 1.0)
    return storage, next_obs, returns, lengths


def test_truncation_bootstraps_from_the_final_observation(rollout):
    storage, *_ = rollout
    truncated_at = TIME_LIMIT - 1  # row of the step that hit the time limit
    assert storage.truncated[:, 0].tolist() == [False, False, True, False, False]
    # V([3, 0]) = 31 from info["final_obs"], not V([0, 0]) = 1 of the next episode's start.
    expected = torch.zeros(5)
    expected[truncated_at] = 31.0
    torch.testing.assert_close(storage.final_values[:, 0], expected)
    # With lambda = 1 the recursion is cut there: return = r + gamma V(final obs).
    assert storage.returns[truncated_at, 0].item() == pytest.approx(1.0 + 0.5 * 31.0)


def test_termination_bootstraps_from_zero(rollout):
    storage, *_ = rollout
    assert storage.terminated[:, 1].tolist() == [False, True, False, True, False]
    assert not storage.final_values[:, 1].any()
    assert storage.returns[TERMINAL_STEP - 1, 1].item() == pytest.approx(1.0)


def test_rollout_values_observations_and_episode_statistics(rollout):
    storage, next_obs, returns, lengths = rollout
    # values[t] is V of the observation the action was taken in (resets included).
    torch.testing.assert_close(storage.values, known_value(storage.obs.reshape(10, 2)).view(5, 2))
    torch.testing.assert_close(next_obs, torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    assert sorted(lengths) == [2, 2, 3] and sorted(returns) == [2.0, 2.0, 3.0]
    # The last step bootstraps from V(next_obs): env 0 has t = 2 after step 5.
    assert storage.returns[4, 0].item() == pytest.approx(1.0 + 0.5 * known_value(next_obs)[0])


class SeparateValueStub(StubPolicy):
    """A policy whose critic shares nothing with the actor; counts how it is called."""

    separate_value = True

    def __init__(self) -> None:
        super().__init__()
        self.forward_calls = 0
        self.value_rows: list[int] = []

    def forward(self, obs: torch.Tensor):
        self.forward_calls += 1
        return super().forward(obs)

    def distribution(self, obs: torch.Tensor):
        return torch.distributions.Categorical(logits=torch.zeros(obs.shape[0], 2))

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        self.value_rows.append(obs.shape[0])
        return known_value(obs)


def test_separate_value_policies_get_their_values_in_one_batched_pass(rollout):
    reference, _, ref_returns, _ = rollout
    env, policy = ScriptedEnv(), SeparateValueStub()
    storage = RolloutStorage.from_spaces(5, 2, env.observation_space, env.action_space)
    collect_rollout(env, policy, storage, torch.as_tensor(env.reset()), 0.5, 1.0)
    assert policy.forward_calls == 0
    # One call for the truncated env's final observation, one for all 10 rows, one for the
    # bootstrap value of the last observation.
    assert policy.value_rows == [1, 10, 2]
    for name in ("values", "log_probs", "final_values", "advantages", "returns"):
        torch.testing.assert_close(getattr(storage, name), getattr(reference, name))


def test_rollout_threads_apply_while_collecting_and_are_restored():
    env, seen = ScriptedEnv(), []

    class ThreadProbe(StubPolicy):
        def forward(self, obs):
            seen.append(torch.get_num_threads())
            return super().forward(obs)

    storage = RolloutStorage.from_spaces(5, 2, env.observation_space, env.action_space)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        collect_rollout(env, ThreadProbe(), storage, torch.as_tensor(env.reset()), 0.5, 1.0,
                        threads=1)
        assert set(seen) == {1} and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_batched_values_and_log_probs_equal_per_step_ones_for_a_real_mlp_policy():
    from agents.policies import make_policy

    env = ScriptedEnv()
    policy = make_policy(env.observation_space, env.action_space)
    storages = []
    for batched in (True, False):
        policy.separate_value = batched  # instance attribute: force either path
        storage = RolloutStorage.from_spaces(5, 2, env.observation_space, env.action_space)
        torch.manual_seed(0)
        collect_rollout(env, policy, storage, torch.as_tensor(env.reset()), 0.5, 0.9)
        storages.append(storage)
    batched, per_step = storages
    assert torch.equal(batched.actions, per_step.actions)
    for name in ("values", "log_probs", "final_values", "advantages", "returns"):
        torch.testing.assert_close(getattr(batched, name), getattr(per_step, name))
