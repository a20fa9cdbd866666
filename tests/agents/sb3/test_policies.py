"""agents.sb3.policies: the K-FAC-ready SB3 policies and the Fisher pass they give K-FAC."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3.common.envs import IdentityEnv, IdentityEnvBox

from agents.sb3 import ACKTR
from agents.sb3.policies import SB3Distribution
from agents.updates import policy_fisher_loss

pytestmark = pytest.mark.usefixtures("one_thread")

BATCH = 4000


class ObsEnv(gym.Env):
    """Random 3-D observations, a 2-D Box action; only the spaces matter here."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def fisher_pass(model: ACKTR, obs: torch.Tensor, actions: torch.Tensor | None = None):
    """One joint Fisher pass (the shared update's) with stat_decay=0, so that the factors are
    exactly this batch's statistics; ``actions`` replaces the sample if given."""
    opt = model.policy.optimizer
    dist, values = model.policy.distribution_and_value(obs)
    if actions is not None:
        dist.fisher_sample = lambda: actions
    import acktr

    with opt.record_stats():
        (policy_fisher_loss(dist) + acktr.fisher_loss(values, "gaussian")).backward()
    return dist, opt.preconditioner.blocks


def test_log_std_is_a_broadcast_bias_with_its_exact_fisher_block():
    torch.manual_seed(0)
    model = ACKTR("MlpPolicy", ObsEnv(), stat_decay=0.0, device="cpu",
                  policy_kwargs=dict(log_std_init=-0.3))
    assert model.policy.optimizer.assignments()["log_std_layer.bias"] == \
        "kronecker:log_std_layer"
    assert "log_std" not in dict(model.policy.named_parameters())
    obs = torch.randn(256, 3)
    actions = torch.randn(256, 2)
    dist, blocks = fisher_pass(model, obs, actions)
    # d log N(a; mu, e^s) / ds = z^2 - 1 per dimension; the block is E[g g^T] over the rows.
    normal = dist.dist.distribution
    g = ((actions - normal.mean.detach()) / normal.stddev.detach()).pow(2) - 1
    torch.testing.assert_close(blocks["log_std_layer"].G, g.T @ g / len(g), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(blocks["log_std_layer"].A, torch.ones(1, 1))


def test_fisher_samples_come_from_the_policy_distribution_and_value_is_gauss_newton():
    torch.manual_seed(0)
    model = ACKTR("MlpPolicy", ObsEnv(), stat_decay=0.0, device="cpu",
                  policy_kwargs=dict(log_std_init=0.5))
    obs = torch.randn(BATCH, 3)
    _, blocks = fisher_pass(model, obs)
    # Sampled from the model: E[(z^2 - 1)^2] = 2 (the exact Fisher of a Gaussian's log-std),
    # and the value head's output gradient (v - y), y ~ N(v, 1), has second moment 1.
    torch.testing.assert_close(blocks["log_std_layer"].G, 2 * torch.eye(2), atol=0.2, rtol=0)
    torch.testing.assert_close(blocks["value_net"].G, torch.ones(1, 1), atol=0.1, rtol=0)


def test_categorical_fisher_sample_follows_sb3s_probabilities():
    torch.manual_seed(0)
    model = ACKTR("MlpPolicy", IdentityEnv(3), device="cpu")
    obs = torch.ones(BATCH)  # Discrete observations: SB3 one-hot encodes them
    dist, _ = model.policy.distribution_and_value(obs)
    counts = torch.bincount(dist.fisher_sample(), minlength=3).float() / BATCH
    torch.testing.assert_close(counts, dist.dist.distribution.probs[0].detach(), atol=0.03,
                               rtol=0)


def test_sb3_distribution_survives_the_next_forward_and_its_kl():
    model = ACKTR("MlpPolicy", IdentityEnvBox(), device="cpu")
    obs = torch.randn(8, 1)
    before = SB3Distribution(model.policy.get_distribution(obs))
    with torch.no_grad():
        model.policy.log_std_layer.bias.add_(0.5)
    after = SB3Distribution(model.policy.get_distribution(obs))
    # SB3 reuses one distribution object per policy; ours kept the old parameters.
    assert not torch.equal(before.dist.distribution.stddev, after.dist.distribution.stddev)
    # KL of two Gaussians with equal means and stds s, s e^0.5: log(s2/s1) + s1^2/(2 s2^2) - 1/2
    expected = 0.5 + 0.5 * np.exp(-1.0) - 0.5
    torch.testing.assert_close(before.kl(after), torch.full((8,), expected), rtol=1e-5,
                               atol=1e-6)
    torch.testing.assert_close(before.kl(before), torch.zeros(8))
