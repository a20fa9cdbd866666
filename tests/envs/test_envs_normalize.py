"""Running statistics and ``VecNormalize``: numerics, freezing, state_dict round trip."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from envs import RunningMeanStd, VecNormalize, make_vec_env


def test_running_mean_std_matches_numpy_over_uneven_batches():
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 5)) * np.arange(1, 6)
    rms = RunningMeanStd((5,))
    for chunk in np.split(data, [1, 8, 200, 201, 650]):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, data.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(rms.var, data.var(axis=0), rtol=1e-10)
    assert rms.count == 1000


def test_running_mean_std_starts_as_identity():
    rms = RunningMeanStd((3,))
    np.testing.assert_array_equal(rms.mean, np.zeros(3))
    np.testing.assert_array_equal(rms.var, np.ones(3))
    rms.update(np.zeros((0, 3)))
    assert rms.count == 0


class _FixedEnv:
    """A stand-in VecEnv that replays given observations and rewards (2 envs, obs dim 2)."""

    def __init__(self, observations: np.ndarray, rewards: np.ndarray, dones: np.ndarray):
        from gymnasium import spaces

        self.num_envs = 2
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.observations, self.rewards, self.dones = observations, rewards, dones
        self.t = 0

    def reset(self, seed=None):
        self.t = 0
        return self.observations[0]

    def step(self, actions):
        self.t += 1
        obs = self.observations[self.t]
        done = self.dones[self.t - 1]
        info = {"final_obs": obs.copy(), "episode_returns": np.zeros(0)}
        return obs, self.rewards[self.t - 1], done, np.zeros(2, bool), info

    def pop_episode_stats(self):
        raise NotImplementedError

    def close(self):
        pass


def _fixed(steps: int = 6, seed: int = 0) -> _FixedEnv:
    rng = np.random.default_rng(seed)
    observations = rng.normal(5.0, 3.0, size=(steps + 1, 2, 2)).astype(np.float32)
    rewards = rng.normal(1.0, 2.0, size=(steps, 2)).astype(np.float32)
    dones = np.zeros((steps, 2), dtype=bool)
    dones[2, 0] = True
    return _FixedEnv(observations, rewards, dones)


def test_obs_normalization_uses_all_observations_seen():
    inner = _fixed()
    env = VecNormalize(inner, normalize_obs=True)
    env.reset()
    for _ in range(6):
        obs, *_ = env.step(np.zeros(2))
    seen = inner.observations.reshape(-1, 2).astype(np.float64)
    np.testing.assert_allclose(env.obs_rms.mean, seen.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(env.obs_rms.var, seen.var(axis=0), rtol=1e-6)
    expected = (inner.observations[-1] - seen.mean(0)) / np.sqrt(seen.var(0) + 1e-8)
    np.testing.assert_allclose(obs, expected, rtol=1e-5)
    assert obs.dtype == np.float32


def test_reward_scaling_by_discounted_return_std():
    inner = _fixed()
    gamma = 0.9
    env = VecNormalize(inner, normalize_obs=False, normalize_reward=True, gamma=gamma)
    env.reset()
    returns, history = np.zeros(2), []
    for t in range(6):
        _, reward, *_ = env.step(np.zeros(2))
        returns = returns * gamma + inner.rewards[t]
        history.append(returns.copy())
        returns[inner.dones[t]] = 0.0  # discounted return restarts after an episode end
        expected = inner.rewards[t] / np.sqrt(np.var(np.concatenate(history)) + 1e-8)
        np.testing.assert_allclose(reward, np.clip(expected, -10, 10), rtol=1e-5)


def test_obs_clipping_and_frozen_statistics():
    inner = _fixed()
    env = VecNormalize(inner, normalize_obs=True, clip_obs=0.5)
    env.reset()
    obs, *_ = env.step(np.zeros(2))
    assert np.all(np.abs(obs) <= 0.5)
    env.training = False
    before = env.state_dict()
    for _ in range(5):
        env.step(np.zeros(2))
    after = env.state_dict()
    torch.testing.assert_close(before["obs_rms"]["mean"], after["obs_rms"]["mean"])
    assert before["obs_rms"]["count"] == after["obs_rms"]["count"] == 4


def test_state_dict_round_trip_through_torch_weights_only():
    env = VecNormalize(_fixed(), normalize_obs=True, normalize_reward=True)
    env.reset()
    for _ in range(4):
        env.step(np.zeros(2))
    buffer = io.BytesIO()
    torch.save(env.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    fresh = VecNormalize(_fixed(seed=1), normalize_obs=True, normalize_reward=True, training=False)
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.obs_rms.mean, env.obs_rms.mean)
    np.testing.assert_array_equal(fresh.obs_rms.var, env.obs_rms.var)
    np.testing.assert_array_equal(fresh.ret_rms.var, env.ret_rms.var)
    assert fresh.obs_rms.count == env.obs_rms.count
    probe = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    np.testing.assert_array_equal(
        fresh.normalize_observation(probe), env.normalize_observation(probe)
    )


def test_load_state_dict_rejects_mismatches():
    env = VecNormalize(_fixed(), normalize_obs=True)
    with pytest.raises(ValueError, match="expects"):
        env.load_state_dict({})
    bad = {"obs_rms": {"mean": torch.zeros(3), "var": torch.ones(3), "count": 1.0}}
    with pytest.raises(ValueError, match="shape"):
        env.load_state_dict(bad)


def test_normalize_obs_needs_a_box_observation_space():
    with pytest.raises(ValueError, match="Box observation space"):
        make_vec_env("FrozenLake-v1", 1, seed=0, normalize_obs=True)


def test_unnormalized_env_has_empty_state():
    with make_vec_env("CartPole-v1", 1, seed=0) as env:
        assert env.state_dict() == {}
        env.load_state_dict({})
        with pytest.raises(ValueError, match="keeps no statistics"):
            env.load_state_dict({"obs_rms": {}})
