"""Env snapshots: step, snapshot, step on; a fresh env restored from the snapshot steps the same."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
import torch

from envs import AtariOptions, SnapshotUnsupported, VecEnv, make_vec_env
from envs.atari import gymnasium_backend_available, native_backend_available
from envs.atari_native import episode_seed

Actions = Callable[[np.random.Generator, int], np.ndarray]


def _discrete(n: int) -> Actions:
    return lambda rng, num_envs: rng.integers(0, n, size=num_envs)


def _box(dim: int) -> Actions:
    return lambda rng, num_envs: rng.normal(size=(num_envs, dim))


def _run(env: VecEnv, actions: list[np.ndarray]) -> list[tuple]:
    out = []
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, terminated, truncated, info["final_obs"],
                    info["episode_returns"], info["episode_lengths"], info.get("lives")))
    return out


def _through_checkpoint(snapshot: dict) -> dict:
    """What ``torch.load(weights_only=True)`` gives back: the snapshot must be plain data."""
    buffer = io.BytesIO()
    torch.save(snapshot, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _check_plain(value) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _check_plain(v)
    elif isinstance(value, list):
        for v in value:
            _check_plain(v)
    else:
        assert value is None or isinstance(value, torch.Tensor | bool | int | float | str), value


def _assert_same(expected: list[tuple], got: list[tuple]) -> None:
    for step, (a, b) in enumerate(zip(expected, got, strict=True)):
        for x, y in zip(a, b, strict=True):
            if x is None:
                assert y is None
            else:
                np.testing.assert_array_equal(x, y, err_msg=f"step {step}")


def _episodes_ended(results: list[tuple]) -> int:
    return sum(len(r[5]) for r in results)


def _check_round_trip(make: Callable[[], VecEnv], act: Actions, before: int, after: int,
                      min_episodes: int = 1) -> None:
    rng = np.random.default_rng(0)
    env = make()
    actions = [act(rng, env.num_envs) for _ in range(before + after)]
    env.reset()
    _run(env, actions[:before])
    snapshot = env.snapshot()
    _check_plain(snapshot)
    snapshot = _through_checkpoint(snapshot)
    expected = _run(env, actions[before:])
    env.close()
    assert _episodes_ended(expected) >= min_episodes, "the test should cross an episode end"
    with make() as fresh:
        fresh.restore(snapshot)
        _assert_same(expected, _run(fresh, actions[before:]))


def test_cartpole_sync_with_normalization():
    def make():
        return make_vec_env("CartPole-v1", 3, seed=1, normalize_obs=True, normalize_reward=True)

    _check_round_trip(make, _discrete(2), 40, 80, min_episodes=3)


def test_cartpole_async():
    def make():
        return make_vec_env("CartPole-v1", 2, seed=2, vectorization="async")

    _check_round_trip(make, _discrete(2), 30, 60)


def test_other_classic_control_envs():
    def make():
        return make_vec_env("Acrobot-v1", 2, seed=3)

    _check_round_trip(make, _discrete(3), 20, 20, min_episodes=0)

    def make_pendulum():
        return make_vec_env("Pendulum-v1", 2, seed=3)

    _check_round_trip(make_pendulum, _box(1), 20, 20, min_episodes=0)


def test_mujoco_inverted_pendulum_across_terminations():
    pytest.importorskip("mujoco")

    def make():
        return make_vec_env("InvertedPendulum-v5", 2, seed=4, normalize_reward=True)

    _check_round_trip(make, _box(1), 10, 60, min_episodes=2)


def test_mujoco_half_cheetah_with_normalized_observations():
    pytest.importorskip("mujoco")

    def make():
        return make_vec_env("HalfCheetah-v5", 2, seed=5)

    _check_round_trip(make, _box(6), 20, 30, min_episodes=0)


@pytest.mark.skipif(not native_backend_available(), reason="ale-py without AtariVectorEnv")
def test_atari_native_replays_games_of_different_lengths():
    """Random Breakout games end at different times, so the replay starts them at different
    steps; training mode adds the life-loss bookkeeping to the snapshot."""
    pytest.importorskip("ale_py")

    def make():
        return make_vec_env("ALE/Breakout-v5", 2, seed=6, atari=AtariOptions(backend="native"))

    _check_round_trip(make, _discrete(4), 250, 250, min_episodes=1)


@pytest.mark.skipif(not gymnasium_backend_available(), reason="needs opencv")
def test_atari_gymnasium_backend_clones_ale_states():
    pytest.importorskip("ale_py")
    options = AtariOptions(backend="gymnasium", max_frames_per_episode=200)

    def make():
        return make_vec_env("ALE/Pong-v5", 2, seed=7, atari=options, training=False)

    _check_round_trip(make, _discrete(6), 30, 40, min_episodes=2)


@pytest.mark.skipif(not native_backend_available(), reason="ale-py without AtariVectorEnv")
def test_atari_native_games_are_seeded_per_episode():
    pytest.importorskip("ale_py")
    assert episode_seed(10, 3, 0) == 13  # the first game keeps seed + i
    seeds = {episode_seed(10, i, k) for i in range(4) for k in range(1, 50)}
    assert len(seeds) == 4 * 49 and all(0 <= s < 2**31 - 1 for s in seeds)


def test_unknown_env_is_unsupported_by_name(counter_id):
    with make_vec_env(counter_id, 2, seed=0) as env:
        env.reset()
        with pytest.raises(SnapshotUnsupported, match="CounterEnv"):
            env.snapshot()


def test_restoring_into_a_differently_built_env_is_an_error():
    with make_vec_env("CartPole-v1", 2, seed=0, normalize_obs=True) as env:
        env.reset()
        snapshot = env.snapshot()
    with make_vec_env("CartPole-v1", 2, seed=0) as plain, pytest.raises(ValueError, match="fit"):
        plain.restore(snapshot)
    with make_vec_env("CartPole-v1", 3, seed=0, normalize_obs=True) as wider:
        with pytest.raises(ValueError, match="3"):
            wider.restore(snapshot)
