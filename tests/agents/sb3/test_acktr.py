"""agents.sb3.ACKTR against stable-baselines3's own conventions for an on-policy algorithm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import (
    FakeImageEnv,
    IdentityEnv,
    IdentityEnvBox,
    IdentityEnvMultiBinary,
    IdentityEnvMultiDiscrete,
    SimpleMultiObsEnv,
)
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from agents.sb3 import ACKTR

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIGS = Path(__file__).resolve().parents[3] / "configs"

DIM = 4


def tiny(env, **kwargs) -> ACKTR:
    kwargs = {"n_steps": 8, "seed": 0, "device": "cpu", **kwargs}
    return ACKTR("MlpPolicy", env, **kwargs)


@pytest.mark.parametrize("env", [IdentityEnv(DIM), IdentityEnvMultiDiscrete(DIM),
                                 IdentityEnvMultiBinary(DIM), IdentityEnvBox(eps=0.5),
                                 SimpleMultiObsEnv(), FakeImageEnv(screen_height=36,
                                                                   screen_width=36)])
def test_the_test_envs_pass_check_env(env):
    check_env(env, warn=False)


def seeded(env):
    """SB3's identity envs draw their targets from their action space: seed it, so that the
    learning tests below are deterministic."""
    env.action_space.seed(0)
    return env


@pytest.mark.medium
@pytest.mark.parametrize("make_env", [lambda: IdentityEnv(DIM),
                                      lambda: IdentityEnvMultiDiscrete(DIM),
                                      lambda: IdentityEnvMultiBinary(DIM)])
def test_identity_envs_learn_discrete_spaces(make_env):
    # SB3's tests/test_identity.py: reward >= 90 of 100 after learning.
    env = DummyVecEnv([lambda: seeded(make_env())])
    model = ACKTR("MlpPolicy", env, gamma=0.4, seed=3, device="cpu", n_steps=20,
                  kl_clip=0.01).learn(1500)
    evaluate_policy(model, env, n_eval_episodes=20, reward_threshold=90, warn=False)
    obs = env.envs[0].reset()[0]
    assert np.shape(model.predict(obs)[0]) == np.shape(obs)


@pytest.mark.medium
@pytest.mark.parametrize("separate_critic", [False, True])
def test_identity_env_learns_box_actions_with_both_recipes(separate_critic):
    env = seeded(IdentityEnvBox(eps=0.5))
    extra = dict(separate_critic=True, target_kl=0.01, learning_rate=0.1, critic_updates=5,
                 normalize_advantage=True) if separate_critic else dict(kl_clip=0.01)
    model = ACKTR("MlpPolicy", env, gamma=0.1, seed=0, device="cpu", n_steps=64, ent_coef=0.0,
                  **extra).learn(3000)
    evaluate_policy(model, env, n_eval_episodes=20, reward_threshold=90, warn=False)


def test_save_load_round_trip_gives_the_same_predictions_and_training_continues(tmp_path):
    env = IdentityEnvBox(eps=0.5)
    model = tiny(env, separate_critic=True, target_kl=0.01, critic_updates=2).learn(80)
    model.save(tmp_path / "model.zip")
    loaded = ACKTR.load(tmp_path / "model.zip", env=env, device="cpu")
    obs = np.stack([env.observation_space.sample() for _ in range(16)])
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0],
                                  loaded.predict(obs, deterministic=True)[0])
    # K-FAC state (factors, momentum, step counter, adapted step size) came back too.
    assert loaded.policy.optimizer.steps == 10 and loaded.critic_optimizer.steps == 20
    for saved, back in ((model.policy.optimizer, loaded.policy.optimizer),
                        (model.critic_optimizer, loaded.critic_optimizer)):
        assert back.steps == saved.steps
        assert back.param_groups[0]["lr"] == saved.param_groups[0]["lr"]
        blocks = saved.preconditioner.blocks
        for name, block in blocks.items():
            torch.testing.assert_close(loaded_block(back, name).G, block.G, rtol=0, atol=0)
    loaded.learn(80, reset_num_timesteps=False)
    assert loaded.num_timesteps == 160 and loaded.policy.optimizer.steps == 20


def loaded_block(opt, name):
    return opt.preconditioner.blocks[name]


@pytest.mark.parametrize("separate_critic", [False, True])
def test_training_after_a_load_equals_training_on(tmp_path, separate_critic):
    extra = dict(separate_critic=True, target_kl=0.01, critic_updates=2) if separate_critic \
        else {}
    # gymnasium's Pendulum draws from its seeded RNG (SB3's identity envs from an unseeded
    # action space)
    on = tiny("Pendulum-v1", **extra).learn(80)
    on.save(tmp_path / "a.zip")
    loaded = ACKTR.load(tmp_path / "a.zip", env=on.get_env(), device="cpu")
    for model in (on, loaded):  # the same RNG state and a fresh episode for both
        model.set_random_seed(1)
        model._last_obs = None
        model.learn(80, reset_num_timesteps=False)
    expected, got = on.policy.state_dict(), loaded.policy.state_dict()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0)


def test_seeded_cpu_runs_are_deterministic():
    def run():
        model = tiny(make_vec_env("Pendulum-v1", n_envs=2), seed=5)
        return model.learn(320).policy.state_dict()

    first, second = run(), run()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)


def test_callbacks_are_called():
    class Count(BaseCallback):
        def __init__(self):
            super().__init__()
            self.calls = {"start": 0, "step": 0, "rollout_end": 0, "end": 0}

        def _on_training_start(self):
            self.calls["start"] += 1

        def _on_step(self):
            self.calls["step"] += 1
            return True

        def _on_rollout_end(self):
            self.calls["rollout_end"] += 1

        def _on_training_end(self):
            self.calls["end"] += 1

    callback = Count()
    tiny(IdentityEnv(DIM)).learn(80, callback=callback)
    assert callback.calls == {"start": 1, "step": 80, "rollout_end": 10, "end": 1}


def test_logger_has_sb3_keys_and_the_kfac_ones(tmp_path):
    model = tiny(IdentityEnvBox(eps=0.5), separate_critic=True, target_kl=0.01, critic_updates=2)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(16)
    logged = set(model.logger.name_to_value)
    model.logger.dump()
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    for key in ("train/policy_loss", "train/value_loss", "train/entropy_loss",
                "train/explained_variance", "train/learning_rate", "train/std",
                "train/approx_kl", "train/trust_scale", "train/damping", "train/kl"):
        assert key in header or key in logged, key


def test_vec_normalize_and_dict_observations(tmp_path):
    env = VecNormalize(DummyVecEnv([SimpleMultiObsEnv] * 2))
    model = ACKTR("MultiInputPolicy", env, n_steps=4, seed=0, device="cpu").learn(16)
    assert model.num_timesteps == 16 and env.obs_rms["vec"].count > 1
    model.save(tmp_path / "dict.zip")
    loaded = ACKTR.load(tmp_path / "dict.zip", device="cpu")
    obs = env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0],
                                  loaded.predict(obs, deterministic=True)[0])


def test_cnn_policy_shared_joint_and_separate_with_unshared_extractor():
    env = FakeImageEnv(screen_height=36, screen_width=36, discrete=False)
    kw = dict(n_steps=8, seed=0, device="cpu",
              policy_kwargs=dict(features_extractor_kwargs=dict(features_dim=16)))
    joint = ACKTR("CnnPolicy", env, **kw).learn(16)
    assert any(k.startswith("features_extractor.cnn")
               for k in joint.policy.optimizer.assignments())
    with pytest.raises(ValueError, match="share_features_extractor=False"):
        ACKTR("CnnPolicy", env, separate_critic=True, **kw)
    kw["policy_kwargs"]["share_features_extractor"] = False
    ACKTR("CnnPolicy", env, separate_critic=True, critic_updates=2, **kw).learn(16)


def test_evaluate_policy_and_set_env():
    model = tiny(IdentityEnv(DIM)).learn(16)
    model.set_env(DummyVecEnv([lambda: IdentityEnv(DIM)]))
    model.learn(16, reset_num_timesteps=False)
    mean, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=2)
    assert 0 <= mean <= 100


def test_policy_kwargs_net_arch_activation_ortho_init_log_std_init():
    model = tiny(IdentityEnvBox(), policy_kwargs=dict(
        net_arch=dict(pi=[16], vf=[8, 8]), activation_fn="relu", ortho_init=False,
        log_std_init=-0.5))
    policy = model.policy

    def widths(net):
        return [m.out_features for m in net if isinstance(m, torch.nn.Linear)]

    assert widths(policy.mlp_extractor.policy_net) == [16]
    assert widths(policy.mlp_extractor.value_net) == [8, 8]
    assert policy.ortho_init is False
    assert isinstance(policy.mlp_extractor.policy_net[1], torch.nn.ReLU)
    torch.testing.assert_close(policy.log_std.detach(), torch.full((1,), -0.5))
    same = tiny(IdentityEnv(DIM), policy_kwargs=dict(net_arch=[32], activation_fn=torch.nn.ELU))
    assert isinstance(same.policy.mlp_extractor.value_net[1], torch.nn.ELU)


class Trunk(BaseFeaturesExtractor):
    """A shared MLP trunk (SB3 2.x shares layers between actor and critic this way)."""

    def __init__(self, observation_space, features_dim: int = 16):
        super().__init__(observation_space, features_dim)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(get_flattened_obs_dim(observation_space), features_dim),
            torch.nn.Tanh())

    def forward(self, obs):
        return self.net(obs)


def test_shared_trunk_joint_recipe_and_its_error_in_the_separate_one():
    kwargs = dict(policy_kwargs=dict(features_extractor_class=Trunk, net_arch=[]))
    model = tiny(IdentityEnvBox(), **kwargs)
    assert model.policy.optimizer.assignments()["features_extractor.net.0.weight"] == \
        "kronecker:features_extractor.net.0"
    model.learn(16)
    with pytest.raises(ValueError, match="features extractor Trunk is shared"):
        tiny(IdentityEnvBox(), separate_critic=True, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(use_sde=True), "gSDE"),
    (dict(sde_sample_freq=4), "gSDE"),
    (dict(policy_kwargs=dict(squash_output=True)), "squash_output"),
    (dict(policy_kwargs=dict(optimizer_class=torch.optim.Adam)), "optimizer_class"),
    (dict(policy_kwargs=dict(activation_fn="swish")), "swish"),
    (dict(kfac_kwargs=dict(lr=0.1)), "learning_rate"),
    (dict(kfac_kwargs=dict(dampng=0.1)), "dampng"),
    (dict(kfac_kwargs=dict(damping=0.1)), "directly"),
    (dict(critic_kfac_kwargs=dict(klclip=0.1)), "klclip"),
    (dict(target_kl=0.01), "separate_critic=True"),
])
def test_unsupported_options_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(IdentityEnvBox(), **kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("separate_critic", [False, True])
def test_cuda_training_and_a_cpu_load(tmp_path, separate_critic):
    extra = dict(separate_critic=True, target_kl=0.01, critic_updates=2) if separate_critic \
        else {}
    model = tiny(IdentityEnvBox(eps=0.5), device="cuda", **extra).learn(64)
    assert next(model.policy.parameters()).is_cuda
    model.save(tmp_path / "gpu.zip")
    loaded = ACKTR.load(tmp_path / "gpu.zip", device="cpu")
    obs = np.zeros((4, 1), dtype=np.float32)
    np.testing.assert_allclose(model.predict(obs, deterministic=True)[0],
                               loaded.predict(obs, deterministic=True)[0], rtol=1e-5, atol=1e-6)
    loaded.set_env(IdentityEnvBox(eps=0.5))
    loaded.learn(16, reset_num_timesteps=False)


@pytest.mark.parametrize("config, separate", [("classic.yaml", False), ("mujoco.yaml", True)])
def test_the_sb3_class_and_our_trainer_run_the_same_update(monkeypatch, config, separate):
    import gymnasium as gym

    from agents import updates
    from agents.config import load_config
    from agents.policies import make_policy
    from agents.storage import RolloutBatch

    name = "separate_step" if separate else "joint_step"
    real, calls = getattr(updates, name), []

    def spy(*args, **kwargs):
        calls.append(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(updates, name, spy)
    extra = dict(separate_critic=True, target_kl=0.01, critic_updates=2) if separate else {}
    tiny(IdentityEnvBox(), **extra).learn(16)
    assert len(calls) == 2
    cfg = load_config(CONFIGS / config, ["run.device=cpu", "algo.critic_updates=1"])
    box = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    policy = make_policy(box, box, cfg.policy)
    n = 8
    batch = RolloutBatch(obs=torch.randn(n, 1), actions=torch.randn(n, 1),
                         log_probs=torch.zeros(n), values=torch.zeros(n),
                         advantages=torch.randn(n), returns=torch.randn(n))
    updates.update(policy, updates.make_optimizers(policy, cfg), batch, cfg)
    assert len(calls) == 3
