"""The original MuJoCo ACKTR's extra inputs: previous observation and scaled time step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs import make_vec_env
from envs.extra_inputs import ExtraInputs


def _counter(counter_id, num_envs=2, **kw):
    # CounterEnv observes [episode, t]; no normalization, so values are exact
    return ExtraInputs(make_vec_env(counter_id, num_envs, seed=0, normalize_obs=False), **kw)


def test_time_step_is_scaled_and_reset_at_truncations_and_terminations(counter_id,
                                                                       counter_limit):
    env = _counter(counter_id, time_scale=0.1)
    assert env.observation_space.shape == (3,)  # [episode, t, t * scale]
    obs = env.reset()
    assert obs.shape == (2, 3) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[:, 2], [0.0, 0.0])
    for t in range(1, counter_limit):  # env 1 terminates at step 2 (action 1), env 0 runs on
        obs, _, term, trunc, info = env.step(np.array([0, int(t == 2)]))
        np.testing.assert_allclose(obs[:, 2], obs[:, 1] * 0.1, rtol=1e-6)  # t * 0.1
    assert term.tolist() == [False, True]
    np.testing.assert_allclose(info["final_obs"][1], [0, 2, 0.2], rtol=1e-6)  # its last step
    np.testing.assert_array_equal(obs[1], [1, 0, 0])  # the next episode starts at 0
    obs, _, term, trunc, info = env.step(np.array([0, 0]))  # env 0: truncated at the limit
    assert trunc.tolist() == [True, False]
    np.testing.assert_allclose(info["final_obs"][0], [0, 3, 0.3], rtol=1e-6)
    np.testing.assert_allclose(obs, [[1, 0, 0], [1, 1, 0.1]], rtol=1e-6)
    env.close()


def test_previous_observation_is_zero_at_an_episodes_first_step(counter_id, counter_limit):
    env = _counter(counter_id, prev_obs=True, time_scale=0.5)
    assert env.observation_space.shape == (5,)  # [obs, prev obs, t * scale]
    obs = env.reset()
    np.testing.assert_array_equal(obs, [[0, 0, 0, 0, 0]] * 2)
    obs, *_ = env.step(np.array([0, 0]))
    np.testing.assert_array_equal(obs, [[0, 1, 0, 0, 0.5]] * 2)
    obs, _, term, _, info = env.step(np.array([0, 1]))
    np.testing.assert_array_equal(obs[0], [0, 2, 0, 1, 1.0])
    np.testing.assert_array_equal(info["final_obs"][1], [0, 2, 0, 1, 1.0])  # ended at t = 2
    np.testing.assert_array_equal(info["final_obs"][0], obs[0])  # rows going on: obs itself
    np.testing.assert_array_equal(obs[1], [1, 0, 0, 0, 0])  # new episode: zeros, t = 0
    env.close()


def test_snapshot_restores_the_counters_and_statistics_pass_through():
    pytest.importorskip("mujoco")

    def make():
        return ExtraInputs(make_vec_env("InvertedPendulum-v5", 2, seed=0), prev_obs=True,
                           time_scale=0.1)

    actions = np.random.default_rng(0).uniform(-3, 3, (40, 2, 1)).astype(np.float32)
    env = make()
    env.reset()
    for a in actions[:7]:
        env.step(a)
    state = env.snapshot()
    torch.save(state, "/dev/null")  # plain data
    first = [env.step(a)[0] for a in actions[7:]]
    twin = make()
    twin.restore(state)
    again = [twin.step(a)[0] for a in actions[7:]]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    assert max(o[:, -1].max() for o in first) > 0.7  # time steps went on from the snapshot
    assert set(env.state_dict()) == {"obs_rms"}  # the normalizer's, for evaluation envs
    twin.load_state_dict(env.state_dict())
    env.close()
    twin.close()


def test_bad_settings_are_clear_errors(counter_id):
    base = make_vec_env(counter_id, 1, seed=0, normalize_obs=False)
    with pytest.raises(ValueError, match="needs prev_obs=True or a time_scale"):
        ExtraInputs(base)
    with pytest.raises(ValueError, match="time_scale must be > 0, got -1"):
        ExtraInputs(base, time_scale=-1)
    base.close()
