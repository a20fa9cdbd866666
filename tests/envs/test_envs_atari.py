"""Atari: native and gymnasium backends, seeding, episodic-life bookkeeping."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("ale_py")

from envs import AtariOptions, make_vec_env, resolve_kind  # noqa: E402
from envs.atari import (  # noqa: E402
    EpisodicLifeClipReward,
    gymnasium_backend_available,
    native_backend_available,
)
from envs.episodes import EpisodeStats, EpisodeTracker  # noqa: E402

BACKENDS = [
    pytest.param(
        "native",
        marks=pytest.mark.skipif(
            not native_backend_available(), reason="ale-py without same-step AtariVectorEnv"
        ),
    ),
    pytest.param(
        "gymnasium",
        marks=pytest.mark.skipif(not gymnasium_backend_available(), reason="needs opencv"),
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
def test_pong_shapes_and_dtypes(backend):
    options = AtariOptions(backend=backend)
    with make_vec_env("ALE/Pong-v5", 2, seed=0, atari=options) as env:
        assert env.spec.kind == "atari" and not env.spec.normalize_obs
        assert env.spec.backend == ("ale_native" if backend == "native" else "sync")
        assert env.observation_space.shape == (4, 84, 84) and env.action_space.n == 6
        obs = env.reset()
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        obs, reward, terminated, truncated, info = env.step(np.array([0, 1]))
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        assert reward.dtype == np.float32 and terminated.dtype == bool
        assert info["final_obs"].shape == obs.shape and info["lives"].shape == (2,)


def _pong_trajectory(seed: int, backend: str, steps: int = 40) -> list[np.ndarray]:
    actions = np.random.default_rng(0).integers(0, 6, size=(steps, 2))
    with make_vec_env("ALE/Pong-v5", 2, seed=seed, atari=AtariOptions(backend=backend)) as env:
        out = [env.reset()]
        for a in actions:
            obs, reward, *_ = env.step(a)
            out += [obs, reward]
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_seeding_is_reproducible(backend):
    first, second = _pong_trajectory(5, backend), _pong_trajectory(5, backend)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    # Different seeds give different no-op starts, hence (almost surely) different frames.
    other = _pong_trajectory(6, backend)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_kind_detection_and_atari_argument_errors():
    assert resolve_kind("ALE/Breakout-v5") == "atari"
    assert resolve_kind("BreakoutNoFrameskip-v4") == "atari"
    with pytest.raises(ValueError, match="AtariOptions were given"):
        make_vec_env("CartPole-v1", 1, seed=0, atari=AtariOptions())
    with pytest.raises(ValueError, match="normalize_obs"):
        make_vec_env("ALE/Pong-v5", 1, seed=0, normalize_obs=True)


class _ScriptedAtari:
    """A stand-in VecEnv (1 env) replaying rewards, game overs and lives, with real bookkeeping."""

    def __init__(self, rewards, game_over, lives):
        self.num_envs = 1
        self.observation_space = self.action_space = None
        self.rewards, self.game_over, self.lives = rewards, game_over, lives
        self.tracker = EpisodeTracker(1)
        self.t = 0

    def reset(self, seed=None):
        self.t = 0
        return np.zeros((1, 1))

    def step(self, actions):
        r = np.array([self.rewards[self.t]], dtype=np.float64)
        over = np.array([self.game_over[self.t]])
        finished = self.tracker.update(r, over)
        info = {
            "final_obs": np.zeros((1, 1)),
            "episode_returns": finished.returns,
            "episode_lengths": finished.lengths,
            "lives": np.array([self.lives[self.t]], dtype=np.int32),
        }
        self.t += 1
        return np.zeros((1, 1)), r.astype(np.float32), over, np.array([False]), info

    def pop_episode_stats(self) -> EpisodeStats:
        return self.tracker.pop()

    def close(self):
        pass


def test_episodic_life_terminates_on_life_loss_and_reports_full_game():
    # 3 lives; lives drop at steps 2 and 4, the game ends at step 6 and restarts with 3 lives.
    rewards = [4, 0, 2, 0, -3, 1, 5]
    lives = [3, 2, 2, 1, 1, 3, 3]  # a game over reports the next game's lives
    game_over = [False, False, False, False, False, True, False]
    inner = _ScriptedAtari(rewards, game_over, lives)
    env = EpisodicLifeClipReward(inner, episodic_life=True, clip_rewards=True)
    env.reset()
    terminated, clipped = [], []
    for _ in rewards:
        _, reward, term, _, info = env.step(np.zeros(1))
        terminated.append(bool(term[0]))
        clipped.append(float(reward[0]))
    assert terminated == [False, True, False, True, False, True, False]
    assert clipped == [1, 0, 1, 0, -1, 1, 1]
    stats = env.pop_episode_stats()
    np.testing.assert_array_equal(stats.returns, [4.0])  # raw, whole game: 4 + 2 - 3 + 1
    np.testing.assert_array_equal(stats.lengths, [6])


def test_life_at_zero_is_not_a_life_loss():
    inner = _ScriptedAtari([0, 0, 0], [False, False, True], [1, 0, 3])
    env = EpisodicLifeClipReward(inner, episodic_life=True, clip_rewards=False)
    env.reset()
    terms = [bool(env.step(np.zeros(1))[2][0]) for _ in range(3)]
    assert terms == [False, False, True]


@pytest.mark.parametrize("backend", BACKENDS)
def test_breakout_training_vs_evaluation_on_the_same_game(backend):
    """Same seed and actions: training adds life-loss terminations and clips rewards, while
    both report the same raw full-game return."""
    options = AtariOptions(backend=backend)
    train = make_vec_env("ALE/Breakout-v5", 1, seed=1, atari=options)
    evaluate = make_vec_env("ALE/Breakout-v5", 1, seed=1, atari=options, training=False)
    train.reset(), evaluate.reset()
    rng = np.random.default_rng(0)
    life_ends, raw = 0, 0.0
    for _ in range(5000):
        action = rng.integers(0, 4, size=1)
        _, r_train, term_train, _, _ = train.step(action)
        _, r_eval, term_eval, trunc_eval, info = evaluate.step(action)
        assert r_train[0] == np.sign(r_eval[0])
        raw += float(r_eval[0])
        if term_train[0] and not term_eval[0]:
            life_ends += 1
        if term_eval[0] or trunc_eval[0]:
            break
    assert term_eval[0], "a random Breakout game should end within 5000 steps"
    assert life_ends == 4  # 5 lives: 4 life losses, then the game over
    for stats in (train.pop_episode_stats(), evaluate.pop_episode_stats()):
        np.testing.assert_array_equal(stats.returns, [raw])
    train.close(), evaluate.close()


def test_missing_ale_py_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # makes `import ale_py` fail
    with pytest.raises(ImportError, match=r'pip install -e "\.\[rl\]"'):
        make_vec_env("ALE/Pong-v5", 1, seed=0)


def test_missing_rom_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("ale_py.roms.get_rom_path", lambda game: None)
    with pytest.raises(FileNotFoundError, match="ROM 'pong'"):
        make_vec_env("ALE/Pong-v5", 1, seed=0)


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="backend"):
        make_vec_env("ALE/Pong-v5", 1, seed=0, atari=AtariOptions(backend="jax"))  # type: ignore[arg-type]


def test_gymnasium_backend_without_opencv_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match="opencv"):
        make_vec_env("ALE/Pong-v5", 1, seed=0, atari=AtariOptions(backend="gymnasium"))


@pytest.mark.skipif(not gymnasium_backend_available(), reason="needs opencv")
def test_auto_backend_falls_back_with_a_warning(monkeypatch):
    monkeypatch.setattr("envs.atari.native_backend_available", lambda: False)
    with pytest.warns(UserWarning, match="falling back"):
        env = make_vec_env("ALE/Pong-v5", 1, seed=0)
    with env:
        assert env.spec.backend == "sync"
        assert env.reset(seed=np.int64(3)).shape == (1, 4, 84, 84)  # numpy seeds are accepted
