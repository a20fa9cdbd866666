"""Baseline runners: rl-zoo3 hyperparameters as data, the hand-over of SB3's normalization
statistics to our evaluator, the policy adapter, evaluation at the grid."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

from stable_baselines3 import A2C  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.vec_env import VecNormalize  # noqa: E402

from agents.baselines import (  # noqa: E402
    SB3PolicyAdapter,
    check_spaces,
    grid_eval_callback,
    load_baseline_spec,
    make_sb3_model,
    normalization_state,
    sb3_policy_kwargs,
    spec_from_entry,
)
from agents.config import Config, EnvConfig  # noqa: E402
from agents.errors import BadInputError  # noqa: E402
from agents.evaluate import evaluate, make_env_from_config, run_episodes  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mujoco_v5_ids_use_the_zoos_v4_and_v3_entries():
    a2c = load_baseline_spec("sb3-a2c", "HalfCheetah-v5", "mujoco")
    assert a2c.source == "rl-zoo3 a2c.yml: HalfCheetah-v4"
    assert (a2c.normalize_obs, a2c.normalize_reward, a2c.n_envs) == (True, True, 1)
    assert a2c.algo_kwargs == {}  # the zoo's mujoco-defaults: SB3's defaults plus normalize
    trpo = load_baseline_spec("trpo", "HalfCheetah-v5", "mujoco")
    assert trpo.source == "rl-zoo3 trpo.yml: HalfCheetah-v3"
    assert trpo.n_envs == 2 and trpo.algo_kwargs["target_kl"] == 0.04
    assert trpo.algo_kwargs["n_steps"] == 1024 and trpo.algo_kwargs["cg_max_steps"] == 25
    hopper = load_baseline_spec("trpo", "Hopper-v5", "mujoco")
    assert hopper.source == "rl-zoo3 trpo.yml: Hopper-v3"
    assert hopper.algo_kwargs["target_kl"] == 0.01


def test_atari_entry_and_untuned_envs():
    pong = load_baseline_spec("sb3-a2c", "ALE/Pong-v5", "atari")
    assert (pong.policy, pong.n_envs, pong.source) == ("CnnPolicy", 16, "rl-zoo3 a2c.yml: atari")
    kwargs = sb3_policy_kwargs(pong.policy_kwargs)
    assert kwargs["optimizer_class"].__name__ == "RMSpropTFLike"
    assert kwargs["optimizer_kwargs"] == {"eps": 1e-5}
    untuned = load_baseline_spec("trpo", "InvertedPendulum-v5", "mujoco")
    assert untuned.source.startswith("untuned") and untuned.algo_kwargs == {}
    # TRPO on Atari: baselines' trpo_mpi settings, a batch that fits in memory, its own source
    trpo = load_baseline_spec("trpo", "ALE/Breakout-v5", "atari")
    assert trpo.source.startswith("openai/baselines trpo_mpi/run_atari.py")
    assert trpo.n_envs * trpo.algo_kwargs["n_steps"] == 8192
    assert trpo.algo_kwargs["target_kl"] == 0.001 and trpo.algo_kwargs["gamma"] == 0.98


def test_linear_learning_rate_is_sb3_schedule():
    spec = load_baseline_spec("sb3-a2c", "Pendulum-v1", "gym")
    assert spec.learning_rate_schedule == "linear" and spec.algo_kwargs["learning_rate"] == 7e-4
    venv = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
    model = make_sb3_model(spec, venv, 0, "cpu", 1000)
    assert model.lr_schedule(1.0) == pytest.approx(7e-4)
    assert model.lr_schedule(0.25) == pytest.approx(7e-4 / 4)
    venv.close()


def test_bad_entries_name_the_key_and_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown key\(s\) 'n_stepz'.*valid keys:.*n_steps"):
        spec_from_entry("sb3-a2c", "X", "gym", {"n_stepz": 5}, "test")
    with pytest.raises(ValueError, match="'target_kl'"):  # a TRPO argument, not an A2C one
        spec_from_entry("sb3-a2c", "X", "gym", {"target_kl": 0.01}, "test")
    with pytest.raises(ValueError, match="activation_fn 'swish'; allowed: tanh, relu"):
        spec_from_entry("trpo", "X", "gym", {"policy_kwargs": {"activation_fn": "swish"}}, "t")
    with pytest.raises(ValueError, match="normalize must be"):
        spec_from_entry("trpo", "X", "gym", {"normalize": "yes"}, "t")
    with pytest.raises(ValueError, match="unknown baseline 'ppo'; baselines: sb3-a2c, trpo"):
        load_baseline_spec("ppo", "CartPole-v1", "gym")


@pytest.mark.parametrize(("text", "message"), [
    ("envs: [1, 2\n", "not valid YAML"),
    ("envs:\n  CartPole-v1: !!python/object/apply:os.system [id]\n", "is not allowed"),
    ("- a\n", "holds a mapping of keys at the top level; got list"),
    ("envs: [CartPole-v1]\n", "'envs' must be a mapping of env ids to entries, got list"),
    ("envs:\n  CartPole-v1: 7\n", "the entry of CartPole-v1 must be a mapping"),
    ("envs:\n  CartPole-v1: {n_envs: many}\n", "n_envs must be a whole number >= 1, got 'many'"),
    ("envs:\n  CartPole-v1: {policy_kwargs: [1]}\n", "policy_kwargs must be a mapping"),
    ("envs:\n  CartPole-v1: {policy_kwargs: {activation_fn: [relu]}}\n",
     "activation_fn \\['relu'\\]; allowed"),
    ("envz: {}\n", "unknown key\\(s\\) 'envz'"),
])
def test_bad_baseline_config_files_name_the_file(text, message, tmp_path):
    (tmp_path / "sb3-a2c.yaml").write_text(text)
    with pytest.raises(BadInputError, match=message) as info:
        load_baseline_spec("sb3-a2c", "CartPole-v1", "gym", config_dir=tmp_path)
    assert str(tmp_path / "sb3-a2c.yaml") in str(info.value)


def test_a_missing_baseline_config_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="sb3-a2c.yaml: no such baseline config file"):
        load_baseline_spec("sb3-a2c", "CartPole-v1", "gym", config_dir=tmp_path)


def test_policy_kwargs_become_sb3_objects():
    kwargs = sb3_policy_kwargs({"activation_fn": "relu", "net_arch": {"pi": (8,), "vf": (4,)},
                                "log_std_init": -2.0, "ortho_init": False})
    assert kwargs == {"activation_fn": torch.nn.ReLU, "net_arch": {"pi": [8], "vf": [4]},
                      "log_std_init": -2.0, "ortho_init": False}


def test_spaces_sb3_cannot_handle_are_errors():
    import gymnasium as gym

    box = gym.spaces.Box(-1, 1, (2,))
    check_spaces("trpo", "E", box, gym.spaces.MultiDiscrete([2, 2]))  # fine for SB3
    with pytest.raises(ValueError, match="trpo cannot handle 'E': action space"):
        check_spaces("trpo", "E", box, gym.spaces.Tuple((box, box)))


def test_normalization_statistics_are_handed_over_exactly():
    """Our evaluation normalizer, given SB3's statistics, normalizes like SB3's VecNormalize."""
    venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0), gamma=0.99)
    venv.reset()
    rng = np.random.default_rng(0)
    for _ in range(50):
        venv.step(rng.uniform(-2, 2, (2, 1)).astype(np.float32))
    state = normalization_state(venv)
    assert state["obs_rms"]["count"] == venv.obs_rms.count
    cfg = Config(env=EnvConfig(env_id="Pendulum-v1", num_envs=1, normalize_obs=True))
    ours = make_env_from_config(cfg, num_envs=1, training=False)
    ours.load_state_dict(state)
    obs = rng.normal(0, 3, (5, 3))  # includes values clipped at +-10 after scaling
    np.testing.assert_allclose(ours.normalize_observation(obs), venv.normalize_obs(obs),
                               rtol=1e-6, atol=1e-6)
    ours.close()
    venv.close()
    plain = make_vec_env("Pendulum-v1", n_envs=1, seed=0)
    assert normalization_state(plain) == {}
    plain.close()


def test_our_evaluator_drives_the_sb3_policy_deterministically():
    venv = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = A2C("MlpPolicy", venv, seed=0, device="cpu")
    adapter = SB3PolicyAdapter(model.policy)
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(adapter.act(torch.as_tensor(obs), deterministic=True).numpy(),
                                  expected)
    cfg = Config(env=EnvConfig(env_id="CartPole-v1", num_envs=2, normalize_obs=False))
    returns, lengths = evaluate(adapter, cfg, 3, torch.device("cpu"))
    again, _ = evaluate(adapter, cfg, 3, torch.device("cpu"))
    assert len(returns) == 3 and np.array_equal(returns, again)  # deterministic, seeded
    env = make_env_from_config(cfg, num_envs=1, seed=10_000, training=False)
    single, _ = run_episodes(env, adapter, 1, torch.device("cpu"))
    env.close()
    assert single[0] == returns[0]  # env 0 of the evaluation, seeded seed + 10000 as ours
    venv.close()


def test_grid_callback_evaluates_after_updates_past_each_point_without_counting_eval_time():
    venv = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = A2C("MlpPolicy", venv, n_steps=8, seed=0, device="cpu")  # 16 steps per update
    points, seen = [], []

    def evaluate_fn(adapter, env_state):
        seen.append(model.num_timesteps)
        time.sleep(0.05)
        return 1.0, 0.5

    callback = grid_eval_callback((30, 64, 100), evaluate_fn,
                                  lambda t, m, s, w, r: points.append((t, m, s, w, r)))
    began = time.perf_counter()
    model.learn(total_timesteps=100, callback=callback)
    total = time.perf_counter() - began
    # first update boundaries at or past 30, 64; training ends at 112 (>= 100)
    assert [p[0] for p in points] == [32, 64, 112] == seen
    assert all(p[1:3] == (1.0, 0.5) for p in points)
    walls = [p[3] for p in points]
    assert walls == sorted(walls) and walls[-1] < total - 0.1  # 3 x 0.05 s of eval excluded
    # the training return: Monitor's last (up to 100) full episodes when the point was taken
    finished = [info["r"] for info in model.ep_info_buffer]
    assert finished and points[-1][4] == pytest.approx(np.mean(finished))
    venv.close()
