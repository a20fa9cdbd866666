"""Gymnasium (non-Atari, non-MuJoCo) envs: shapes, seeding, autoreset convention, errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs import VecEnvSpec, make_vec_env, resolve_kind


def test_cartpole_shapes_and_dtypes():
    with make_vec_env("CartPole-v1", 3, seed=0) as env:
        obs = env.reset()
        assert obs.shape == (3, 4) and obs.dtype == np.float32
        assert isinstance(env.action_space, gym.spaces.Discrete)
        assert env.observation_space.shape == (4,)
        obs, reward, terminated, truncated, info = env.step(np.zeros(3, dtype=np.int64))
        assert obs.shape == (3, 4) and obs.dtype == np.float32
        assert reward.shape == (3,) and reward.dtype == np.float32
        assert terminated.dtype == bool and truncated.dtype == bool
        assert info["final_obs"].shape == obs.shape and info["final_obs"].dtype == obs.dtype
        assert info["episode_returns"].shape == (0,)
        assert env.spec == VecEnvSpec("CartPole-v1", "gym", 3, 0, "sync", False, False, True)


def _rollout(env_id: str, seed: int, steps: int = 60) -> list[np.ndarray]:
    actions = np.random.default_rng(123).integers(0, 2, size=(steps, 2))
    with make_vec_env(env_id, 2, seed=seed) as env:
        out = [env.reset()]
        for a in actions:
            obs, reward, terminated, truncated, info = env.step(a)
            out += [obs, reward, terminated, truncated, info["final_obs"]]
    return out


def test_cartpole_seeding_is_reproducible():
    first, second, other = (
        _rollout("CartPole-v1", 7),
        _rollout("CartPole-v1", 7),
        _rollout("CartPole-v1", 8),
    )
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


def test_env_i_is_seeded_with_seed_plus_i():
    with make_vec_env("CartPole-v1", 3, seed=10) as env:
        obs = env.reset()
    for i in range(3):
        single, _ = gym.make("CartPole-v1").reset(seed=10 + i)
        np.testing.assert_array_equal(obs[i], single)


def test_truncation_final_obs_and_episode_stats(counter_id, counter_limit):
    with make_vec_env(counter_id, 2, seed=0) as env:
        obs = env.reset()
        np.testing.assert_array_equal(obs, [[0, 0], [0, 0]])
        # env 1 terminates on its 2nd step (action 1); env 0 runs into the time limit.
        for t in range(1, counter_limit + 1):
            action = np.array([0, 1 if t == 2 else 0])
            obs, reward, terminated, truncated, info = env.step(action)
            if t == 2:
                np.testing.assert_array_equal(terminated, [False, True])
                np.testing.assert_array_equal(info["final_obs"][1], [0, 2])
                np.testing.assert_array_equal(obs[1], [1, 0])  # first obs of the next episode
                np.testing.assert_array_equal(info["final_obs"][0], obs[0])  # not ended: = obs
                np.testing.assert_array_equal(info["episode_lengths"], [2])
        np.testing.assert_array_equal(truncated, [True, False])
        np.testing.assert_array_equal(terminated, [False, False])
        np.testing.assert_array_equal(info["final_obs"], [[0, counter_limit], [1, 1]])
        np.testing.assert_array_equal(obs, [[1, 0], [1, 1]])
        np.testing.assert_array_equal(info["episode_returns"], [float(counter_limit)])
        stats = env.pop_episode_stats()
        np.testing.assert_array_equal(stats.returns, [2.0, counter_limit])
        np.testing.assert_array_equal(stats.lengths, [2, counter_limit])
        assert len(env.pop_episode_stats()) == 0


def test_async_matches_sync(counter_id):
    actions = np.random.default_rng(0).integers(0, 2, size=(10, 2))
    results = {}
    for mode in ("sync", "async"):
        with make_vec_env(counter_id, 2, seed=0, vectorization=mode) as env:
            steps = [env.reset()]
            for a in actions:
                obs, _, terminated, truncated, info = env.step(a)
                steps += [obs, terminated, truncated, info["final_obs"]]
            results[mode] = steps
    for a, b in zip(results["sync"], results["async"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_unknown_id_suggests_close_matches():
    with pytest.raises(ValueError, match=r"Unknown environment id 'CartPol-v1'.*'CartPole-v1'"):
        make_vec_env("CartPol-v1", 1, seed=0)


def test_unsupported_action_space_is_named(multidiscrete_id):
    with pytest.raises(ValueError, match=r"MultiDiscrete.*only Box \(continuous\) and Discrete"):
        make_vec_env(multidiscrete_id, 1, seed=0)


def test_argument_errors(counter_id):
    with pytest.raises(ValueError, match="kind='atari'"):
        make_vec_env("CartPole-v1", 1, seed=0, kind="atari")
    with pytest.raises(ValueError, match="kind must be"):
        resolve_kind("CartPole-v1", "bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_envs"):
        make_vec_env(counter_id, 0, seed=0)
    with pytest.raises(ValueError, match="vectorization"):
        make_vec_env(counter_id, 1, seed=0, vectorization="threads")  # type: ignore[arg-type]


def test_kind_detection():
    assert resolve_kind("CartPole-v1") == "gym"
    assert resolve_kind("Pendulum-v1") == "gym"


def test_box_actions_are_clipped_and_obs_normalization_is_optional():
    with make_vec_env("Pendulum-v1", 2, seed=0, normalize_obs=True) as env:
        assert env.spec.normalize_obs
        env.reset()
        obs, *_ = env.step(np.array([[100.0], [-100.0]]))  # out of [-2, 2]: clipped, no error
        assert obs.dtype == np.float32 and np.all(np.abs(obs) <= 10.0)
    with make_vec_env("Pendulum-v1", 2, seed=0) as env:
        assert not env.spec.normalize_obs


def test_explicit_reset_seed_overrides_the_build_seed():
    with make_vec_env("CartPole-v1", 2, seed=0) as a, make_vec_env("CartPole-v1", 2, seed=5) as b:
        np.testing.assert_array_equal(a.reset(seed=5), b.reset())
        a.reset(), b.reset()  # later unseeded resets continue the RNG streams
        np.testing.assert_array_equal(a.reset(), b.reset())


@pytest.mark.parametrize("env_id", ["CartPole-v1", "counter"])
def test_lean_sync_vector_env_steps_like_gymnasiums(env_id, counter_id):
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    from envs.gym_envs import SameStepSyncVectorEnv

    env_id = counter_id if env_id == "counter" else env_id
    fns = [lambda: gym.make(env_id)] * 3
    ours = SameStepSyncVectorEnv(fns)
    theirs = SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    np.testing.assert_array_equal(ours.reset(seed=3)[0], theirs.reset(seed=3)[0])
    actions = np.random.default_rng(0).integers(0, 2, size=(200, 3))
    ended_steps = 0
    for a in actions:
        *mine, info = ours.step(a)
        *ref, ref_info = theirs.step(a)
        for x, y in zip(mine, ref, strict=True):
            np.testing.assert_array_equal(x, y)
        ended = mine[2] | mine[3]
        assert ("final_obs" in info) == bool(ended.any())
        for i in np.flatnonzero(ended):
            np.testing.assert_array_equal(info["final_obs"][i], ref_info["final_obs"][i])
        ended_steps += int(ended.any())
    assert ended_steps >= 5  # terminations (CartPole) or truncations (counter) were exercised
    ours.close()
    theirs.close()
