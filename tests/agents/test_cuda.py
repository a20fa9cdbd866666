"""The agent on CUDA: rollouts and updates stay on the device, and a run trained on the GPU
loads on a CPU-only machine with the same actions. Skipped without CUDA."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

import agents.trainer as trainer
from agents.checkpoint import CHECKPOINT_NAME, load_checkpoint
from agents.config import load_config
from agents.evaluate import make_env_from_config
from agents.policies import make_policy
from agents.rollout import collect_rollout, obs_to_tensor
from agents.storage import RolloutStorage
from agents.updates import make_optimizers, update

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CUDA = torch.device("cuda")
SMOKE = [
    pytest.param(("atari.yaml", "env.num_envs=2", "algo.num_steps=5"), id="pong"),
    pytest.param(("mujoco.yaml", "algo.num_steps=32", "algo.critic_updates=2"), id="halfcheetah"),
    pytest.param(("classic.yaml", "env.num_envs=4", "algo.num_steps=8"), id="cartpole"),
]


@pytest.mark.parametrize("algo", ["acktr", "a2c"])
@pytest.mark.parametrize("config", SMOKE)
def test_updates_on_cuda_keep_everything_on_the_device(config, algo):
    pytest.importorskip("ale_py" if "atari" in config[0] else "mujoco")
    cfg = load_config(CONFIGS / config[0], ["run.eval_episodes=0", *config[1:],
                                            f"algo.algo={algo}"])
    torch.manual_seed(0)
    env = make_env_from_config(cfg)
    try:
        policy = make_policy(env.observation_space, env.action_space, cfg.policy).to(CUDA)
        opts = make_optimizers(policy, cfg)
        storage = RolloutStorage.from_spaces(cfg.algo.num_steps, env.num_envs,
                                             env.observation_space, env.action_space, CUDA)
        obs = obs_to_tensor(env.reset(seed=0), CUDA)
        for _ in range(3):
            obs, _, _ = collect_rollout(env, policy, storage, obs, cfg.algo.gamma,
                                        cfg.algo.gae_lambda)
            batch = storage.flatten()
            assert all(getattr(batch, f.name).is_cuda for f in dataclasses.fields(batch))
            metrics = update(policy, opts, batch, cfg)
    finally:
        env.close()
    assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
    assert all(p.is_cuda and torch.isfinite(p).all() for p in policy.parameters())


def test_a_cuda_run_resumes_and_its_checkpoint_loads_on_cpu(tmp_path):
    cfg = load_config(CONFIGS / "classic.yaml", [
        "run.eval_episodes=2", "run.device=cuda", "env.num_envs=4", "algo.num_steps=8",
        "run.total_timesteps=256"])
    summary = trainer.train(cfg, tmp_path, progress_bar=False, tensorboard=False)
    assert math.isfinite(summary["final_return_mean"])
    ckpt = load_checkpoint(tmp_path / CHECKPOINT_NAME, map_location="cpu")
    env = make_env_from_config(cfg)
    try:
        cpu_policy = make_policy(env.observation_space, env.action_space, cfg.policy)
        cpu_policy.load_state_dict(ckpt["policy"])
        gpu_policy = make_policy(env.observation_space, env.action_space, cfg.policy).to(CUDA)
        gpu_policy.load_state_dict(ckpt["policy"])
        obs = obs_to_tensor(env.reset(seed=3), torch.device("cpu"))
    finally:
        env.close()
    with torch.no_grad():
        a_cpu = cpu_policy.act(obs, deterministic=True)
        a_gpu = gpu_policy.act(obs.to(CUDA), deterministic=True).cpu()
    torch.testing.assert_close(a_cpu, a_gpu)
