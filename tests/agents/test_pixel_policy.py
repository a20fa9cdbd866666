"""The Gaussian CNN policy for MuJoCo from pixels: trunks, the log-std's Fisher block, the joint
Fisher pass over the shared trunk."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import acktr
from agents.config import PolicyConfig
from agents.distributions import DiagGaussian
from agents.policies import NatureCNNActorCritic, make_policy, resolve_cnn_trunk
from agents.updates import policy_fisher_loss

ACTIONS = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def _space(size: int, channels: int = 9) -> gym.spaces.Box:
    return gym.spaces.Box(0, 255, (channels, size, size), np.uint8)


def _frames(batch: int, size: int, channels: int = 9) -> torch.Tensor:
    return torch.randint(0, 256, (batch, channels, size, size), dtype=torch.uint8)


def _feature_map(policy: NatureCNNActorCritic) -> int:
    return next(m for m in policy.trunk if isinstance(m, nn.Linear)).in_features


@pytest.mark.parametrize(("size", "trunk", "resolved", "flat"), [
    (42, "auto", "nature", 64),               # 42 -> 9 -> 3 -> 1
    (42, "nature_small", "nature_small", 3136),  # 42 -> 20 -> 9 -> 7, Nature's map at 84
    (84, "auto", "nature", 3136),
    (24, "auto", "nature_small", 256),         # below Nature's 36: 24 -> 11 -> 4 -> 2
])
def test_trunks_and_their_feature_maps(size, trunk, resolved, flat):
    assert resolve_cnn_trunk(trunk, (9, size, size)) == resolved
    torch.manual_seed(0)
    policy = make_policy(_space(size), ACTIONS, PolicyConfig(cnn_trunk=trunk))
    assert isinstance(policy, NatureCNNActorCritic) and _feature_map(policy) == flat
    dist, value = policy(_frames(3, size))
    assert isinstance(dist, DiagGaussian) and dist.mean.shape == (3, 2) and value.shape == (3,)
    # the log-std is state independent: one vector, a BroadcastBias, 0 at init
    assert isinstance(policy.log_std_layer, acktr.BroadcastBias)
    assert torch.equal(dist.log_std, torch.zeros(3, 2))


def test_unknown_trunk_is_an_error():
    with pytest.raises(ValueError, match="cnn_trunk must be 'auto' or one of"):
        resolve_cnn_trunk("resnet", (9, 42, 42))
    with pytest.raises(ValueError, match="'nature' needs frames of at least 36x36, got 24x24"):
        resolve_cnn_trunk("nature", (9, 24, 24))


@pytest.mark.medium
def test_log_std_fisher_block_is_the_closed_form():
    """Per example, d(-log N(a; mu, e^s)) / ds_j = 1 - z_j^2 with z = (a - mu) / e^s, so the
    block K-FAC keeps is ``G = mean_i (1 - z_i^2)(1 - z_i^2)^T`` (``A = [1]``), whose expectation
    under actions sampled from the policy is the exact Fisher block ``2 I``."""
    torch.manual_seed(0)
    space = _space(24, 1)  # the block does not depend on the trunk: tiny frames, fast
    policy = make_policy(space, ACTIONS, PolicyConfig(log_std_init=-0.5))
    opt = acktr.KFAC(policy)
    assert opt.assignments()["log_std_layer.bias"] == "kronecker:log_std_layer"
    n = 256
    dist, _ = policy(_frames(n, 24, 1))
    z = torch.randn(n, 2)
    actions = (dist.mean + dist.std * z).detach()
    with opt.record_stats():
        (-dist.log_prob(actions).mean()).backward()
    block = opt.preconditioner.blocks["log_std_layer"]
    torch.testing.assert_close(block.A, torch.ones(1, 1))
    g = 1 - z.double() ** 2
    torch.testing.assert_close(block.G.double(), g.T @ g / n, rtol=1e-4, atol=1e-5)
    # With the policy's own samples (the Fisher pass ACKTR runs): the closed form 2 I, up to
    # Monte-Carlo error (std of a diagonal entry sqrt(60 / n) = 0.17, off-diagonal 0.044).
    opt = acktr.KFAC(policy)
    n = 2048
    dist, _ = policy(_frames(n, 24, 1))
    with opt.record_stats():
        policy_fisher_loss(dist).backward()
    G = opt.preconditioner.blocks["log_std_layer"].G
    torch.testing.assert_close(G, 2 * torch.eye(2), atol=0.5, rtol=0)
    assert abs(G[0, 1]) < 0.15


def test_joint_fisher_pass_records_every_layer_of_the_shared_trunk_once():
    """One backward of policy Fisher loss + Gauss-Newton value loss reaches every conv and
    linear layer of the trunk and both heads, and the log-std block."""
    torch.manual_seed(0)
    policy = make_policy(_space(36, 3), ACTIONS)
    opt = acktr.KFAC(policy)
    kinds = opt.assignments()
    assert all(v.startswith("kronecker:") for v in kinds.values()), kinds  # no fallback
    dist, values = policy(_frames(16, 36, 3))
    with opt.record_stats():
        (policy_fisher_loss(dist) + acktr.fisher_loss(values, "gaussian")).backward()
    blocks = opt.preconditioner.blocks
    names = {name for name, m in policy.named_modules()
             if isinstance(m, nn.Conv2d | nn.Linear | acktr.BroadcastBias)}
    assert set(blocks) == names and all(b.recorded for b in blocks.values())
    # the value head's G is the Gauss-Newton factor of a unit-variance Gaussian output
    assert blocks["value_head"].G.shape == (1, 1) and blocks["value_head"].G.item() > 0
