"""MuJoCo (gymnasium v5) vector envs: shapes, default normalization, seeding."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("mujoco")

from envs import make_vec_env, resolve_kind  # noqa: E402

ENV_ID = "HalfCheetah-v5"
# MuJoCo 4 deprecates an attribute gymnasium's half_cheetah.xml uses; nothing to act on here.
pytestmark = pytest.mark.filterwarnings("ignore:MuJoCo.*settotalmass:RuntimeWarning")


def test_kind_and_default_normalization():
    assert resolve_kind(ENV_ID) == "mujoco"
    with make_vec_env(ENV_ID, 2, seed=0) as env:
        assert env.spec.kind == "mujoco" and env.spec.normalize_obs
        assert env.observation_space.shape == (17,) and env.action_space.shape == (6,)
        obs = env.reset()
        assert obs.shape == (2, 17) and obs.dtype == np.float32
        obs, reward, terminated, truncated, info = env.step(np.zeros((2, 6), np.float32))
        assert obs.shape == (2, 17) and obs.dtype == np.float32
        assert reward.shape == (2,) and reward.dtype == np.float32
        assert info["final_obs"].shape == (2, 17)
        assert set(env.state_dict()) == {"obs_rms"}


def _trajectory(seed: int, normalize_obs: bool) -> list[np.ndarray]:
    actions = np.random.default_rng(0).uniform(-1.5, 1.5, size=(30, 2, 6))
    with make_vec_env(ENV_ID, 2, seed=seed, normalize_obs=normalize_obs) as env:
        out = [env.reset()]
        for a in actions:
            obs, reward, *_ = env.step(a)
            out += [obs, reward]
    return out


@pytest.mark.parametrize("normalize_obs", [False, True])
def test_seeding_is_reproducible(normalize_obs):
    first, second = _trajectory(3, normalize_obs), _trajectory(3, normalize_obs)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], _trajectory(4, normalize_obs)[0])


def test_time_limit_truncates_with_final_obs():
    with make_vec_env(ENV_ID, 1, seed=0, normalize_obs=False) as env:
        env.reset()
        for t in range(1, 1001):
            obs, _, terminated, truncated, info = env.step(np.zeros((1, 6)))
            assert not terminated[0]
            assert truncated[0] == (t == 1000)
        assert not np.array_equal(info["final_obs"], obs)
        stats = env.pop_episode_stats()
        np.testing.assert_array_equal(stats.lengths, [1000])


def test_missing_mujoco_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mujoco", None)  # makes `import mujoco` fail
    with pytest.raises(ImportError, match=r"needs the mujoco package: pip install"):
        make_vec_env(ENV_ID, 1, seed=0)
