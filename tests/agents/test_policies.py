from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from acktr import BroadcastBias
from agents.config import KFACConfig, PolicyConfig
from agents.distributions import Categorical, DiagGaussian
from agents.policies import MLPActorCritic, NatureCNNActorCritic, make_policy

# Small frames keep the tests fast; the architecture test uses the real 84x84.
PIXELS = gym.spaces.Box(0, 255, (4, 44, 44), np.uint8)
VECTOR = gym.spaces.Box(-np.inf, np.inf, (8,), np.float32)
DISCRETE = gym.spaces.Discrete(6)
BOX = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _pixels(batch: int = 2) -> torch.Tensor:
    return torch.randint(0, 256, (batch, *PIXELS.shape), dtype=torch.uint8)


def _assert_orthogonal(layer: nn.Module, gain: float) -> None:
    """Orthogonal init with ``gain``: W W^T = gain^2 I (or W^T W when W is tall), zero bias."""
    w = layer.weight.detach().reshape(layer.weight.shape[0], -1).double()
    gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    expected = gain**2 * torch.eye(gram.shape[0], dtype=torch.float64)
    torch.testing.assert_close(gram, expected, atol=1e-5 * gain**2, rtol=0)
    assert torch.count_nonzero(layer.bias) == 0


def _non_layer_params(model: nn.Module) -> list[str]:
    layer_params = {
        id(p)
        for m in model.modules()
        if isinstance(m, nn.Linear | nn.Conv2d | BroadcastBias)
        for p in m.parameters(recurse=False)
    }
    return [name for name, p in model.named_parameters() if id(p) not in layer_params]


@pytest.mark.parametrize("action_space", [DISCRETE, BOX])
def test_cnn_shapes_and_uint8_input(action_space: gym.Space) -> None:
    policy = make_policy(PIXELS, action_space)
    assert isinstance(policy, NatureCNNActorCritic)
    obs = _pixels(3)
    dist, value = policy(obs)
    assert value.shape == (3,)
    action, log_prob, entropy, value2 = policy.get_action_and_value(obs)
    assert log_prob.shape == entropy.shape == value2.shape == (3,)
    if action_space is DISCRETE:
        assert isinstance(dist, Categorical) and action.shape == (3,)
        assert policy.log_std is None
    else:
        assert isinstance(dist, DiagGaussian) and action.shape == (3, 3)
        assert torch.equal(policy.log_std.detach(), torch.zeros(3))
    torch.testing.assert_close(policy.value(obs), value)
    # Pixels are scaled by 1/255 inside forward: uint8 and the same values as float agree.
    torch.testing.assert_close(policy.value(obs.float()), value)


def test_cnn_architecture_and_init_gains() -> None:
    policy = NatureCNNActorCritic((4, 84, 84), DISCRETE)
    convs = [m for m in policy.trunk if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (32, (8, 8), (4, 4)),
        (64, (4, 4), (2, 2)),
        (64, (3, 3), (1, 1)),
    ]
    fc = [m for m in policy.trunk if isinstance(m, nn.Linear)]
    assert len(fc) == 1 and (fc[0].in_features, fc[0].out_features) == (64 * 7 * 7, 512)
    for layer in [*convs, *fc]:
        _assert_orthogonal(layer, math.sqrt(2))
    _assert_orthogonal(policy.policy_head, 0.01)
    _assert_orthogonal(policy.value_head, 1.0)
    assert _non_layer_params(policy) == []


@pytest.mark.parametrize("action_space", [DISCRETE, BOX])
def test_mlp_shapes_and_separate_networks(action_space: gym.Space) -> None:
    policy = make_policy(VECTOR, action_space, PolicyConfig(hidden_sizes=(32, 16)))
    assert isinstance(policy, MLPActorCritic)
    obs = torch.randn(5, 8)
    action, log_prob, entropy, value = policy.get_action_and_value(obs)
    assert log_prob.shape == entropy.shape == value.shape == (5,)
    widths = [m.out_features for m in policy.actor.modules() if isinstance(m, nn.Linear)]
    assert widths[:2] == [32, 16]
    actor_params = {id(p) for p in policy.actor.parameters()}
    critic_params = {id(p) for p in policy.critic.parameters()}
    assert not actor_params & critic_params
    assert actor_params | critic_params == {id(p) for p in policy.parameters()}
    if action_space is BOX:
        assert action.shape == (5, 3)
        assert policy.log_std is policy.actor.log_std
        assert torch.equal(policy.log_std.detach(), torch.zeros(3))
        assert policy.log_std is policy.actor.log_std_layer.bias
        assert _non_layer_params(policy) == []
    else:
        assert action.shape == (5,) and _non_layer_params(policy) == []
    torch.testing.assert_close(policy.value(obs), value)


def test_mlp_init_gains() -> None:
    policy = MLPActorCritic(8, BOX)
    actor_layers = [m for m in policy.actor.net if isinstance(m, nn.Linear)]
    critic_layers = [m for m in policy.critic if isinstance(m, nn.Linear)]
    for layer in actor_layers[:-1] + critic_layers[:-1]:
        _assert_orthogonal(layer, math.sqrt(2))
    _assert_orthogonal(actor_layers[-1], 0.01)
    _assert_orthogonal(critic_layers[-1], 1.0)
    assert all(isinstance(m, nn.Tanh) for m in policy.critic if not isinstance(m, nn.Linear))


def test_evaluating_given_actions_and_act() -> None:
    policy = MLPActorCritic(8, BOX)
    obs = torch.randn(4, 8)
    given = torch.randn(4, 3)
    action, log_prob, _, _ = policy.get_action_and_value(obs, given)
    dist, _ = policy(obs)
    assert action is given
    torch.testing.assert_close(log_prob, dist.log_prob(given))
    deterministic = policy.act(obs, deterministic=True)
    assert not deterministic.requires_grad
    torch.testing.assert_close(deterministic, dist.mode().detach())
    assert policy.act(obs).shape == (4, 3)


@pytest.mark.parametrize(("obs_space", "batch"), [(PIXELS, _pixels), (VECTOR, None)])
def test_gradients_reach_every_parameter(obs_space: gym.Space, batch) -> None:
    policy = make_policy(obs_space, BOX)
    obs = batch(2) if batch else torch.randn(2, 8)
    _, log_prob, entropy, value = policy.get_action_and_value(obs)
    (log_prob.mean() + entropy.mean() + value.pow(2).mean()).backward()
    missing = [n for n, p in policy.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


@pytest.mark.parametrize(("obs_space", "action_space"), [(PIXELS, DISCRETE), (VECTOR, BOX)])
def test_kfac_gives_every_layer_a_kronecker_block(obs_space: gym.Space, action_space) -> None:
    acktr = pytest.importorskip("acktr")
    policy = make_policy(obs_space, action_space)
    optimizer = acktr.KFAC(policy, **dataclasses.asdict(KFACConfig()))
    assignments = optimizer.assignments()
    assert all(a.startswith("kronecker:") for a in assignments.values()), assignments
    obs = _pixels(4) if obs_space is PIXELS else torch.randn(4, 8)
    dist, value = policy(obs)
    with optimizer.record_stats():
        (-dist.log_prob(dist.fisher_sample()).mean() + value.pow(2).mean()).backward()


@pytest.mark.parametrize("obs_space", [PIXELS, VECTOR])
def test_checkpoints_with_the_old_log_std_key_still_load(obs_space: gym.Space) -> None:
    """Before the log-std became a BroadcastBias it was the parameter ``log_std``."""
    policy = make_policy(obs_space, BOX)
    state = policy.state_dict()
    new_key = next(k for k in state if k.endswith("log_std_layer.bias"))
    old = dict(state)
    old[new_key.replace("log_std_layer.bias", "log_std")] = old.pop(new_key).fill_(-0.7)
    fresh = make_policy(obs_space, BOX)
    fresh.load_state_dict(old)
    assert torch.equal(fresh.log_std.detach(), torch.full((3,), -0.7))


def test_no_inplace_activations() -> None:
    for policy in (make_policy(PIXELS, DISCRETE), make_policy(VECTOR, BOX)):
        assert not any(getattr(m, "inplace", False) for m in policy.modules())


def test_relu_activation_option() -> None:
    policy = make_policy(VECTOR, DISCRETE, PolicyConfig(activation="relu"))
    assert any(isinstance(m, nn.ReLU) for m in policy.actor.modules())


@pytest.mark.parametrize(
    ("space", "name"),
    [
        (gym.spaces.Discrete(16), "Discrete"),
        (gym.spaces.Dict({"x": VECTOR}), "Dict"),
        (gym.spaces.Box(0, 255, (84, 84), np.uint8), "Box"),
        (gym.spaces.Box(0.0, 1.0, (3, 8, 8), np.float32), "Box"),
        (gym.spaces.MultiBinary(3), "MultiBinary"),
    ],
)
def test_make_policy_rejects_unsupported_observation_spaces(space: gym.Space, name: str) -> None:
    with pytest.raises(ValueError, match=name) as info:
        make_policy(space, DISCRETE)
    assert "1-D Box" in str(info.value)


def test_make_policy_rejects_unsupported_action_space() -> None:
    with pytest.raises(ValueError, match="MultiDiscrete"):
        make_policy(VECTOR, gym.spaces.MultiDiscrete([2, 2]))


def test_distribution_alone_matches_forward() -> None:
    mlp_policy = make_policy(VECTOR, BOX)
    cnn_policy = make_policy(PIXELS, DISCRETE)
    assert mlp_policy.separate_value and not cnn_policy.separate_value
    for policy, obs in ((mlp_policy, torch.randn(4, 8)), (cnn_policy, _pixels(4))):
        dist, _ = policy(obs)
        alone = policy.distribution(obs)
        action = dist.sample()
        torch.testing.assert_close(alone.log_prob(action), dist.log_prob(action))


def test_critic_activation_option() -> None:
    policy = make_policy(VECTOR, BOX, PolicyConfig(critic_activation="elu"))
    critic_acts = [m for m in policy.critic if not isinstance(m, nn.Linear)]
    actor_acts = [m for m in policy.actor.net if not isinstance(m, nn.Linear)]
    assert critic_acts and all(isinstance(m, nn.ELU) for m in critic_acts)
    assert actor_acts and all(isinstance(m, nn.Tanh) for m in actor_acts)
    with pytest.raises(ValueError, match="'gelu'"):
        MLPActorCritic(8, BOX, critic_activation="gelu")


def test_the_time_step_column_reaches_the_critic_alone() -> None:
    obs_space = gym.spaces.Box(-np.inf, np.inf, (5,), np.float32)  # 4 features + time step
    policy = make_policy(obs_space, gym.spaces.Box(-1, 1, (2,)),
                         PolicyConfig(critic_time_scale=0.1))
    assert policy.actor_inputs == 4 and policy.actor.net[0].in_features == 4
    assert policy.critic[0].in_features == 5
    obs = torch.randn(3, 5)
    later = obs.clone()
    later[:, 4] += 50.0
    (d1, v1), (d2, v2) = policy(obs), policy(later)
    assert torch.equal(d1.mean, d2.mean) and torch.equal(policy.distribution(obs).mean, d1.mean)
    assert not torch.allclose(v1, v2)
    with pytest.raises(ValueError, match=r"critic_only_inputs must be in \[0, 5\), got 5"):
        MLPActorCritic(5, gym.spaces.Discrete(2), critic_only_inputs=5)


def test_normc_init_is_the_original_mujoco_acktrs() -> None:
    torch.manual_seed(0)
    policy = make_policy(gym.spaces.Box(-1, 1, (6,)), gym.spaces.Box(-1, 1, (2,)),
                         PolicyConfig(init="normc"))
    for net, gains in ((policy.actor.net, (1.0, 1.0, 0.1)), (policy.critic, (1.0, 1.0, 1.0))):
        linears = [m for m in net if isinstance(m, nn.Linear)]
        for layer, gain in zip(linears, gains, strict=True):
            norms = layer.weight.norm(dim=1)  # each unit's incoming weights
            torch.testing.assert_close(norms, torch.full_like(norms, gain))
            assert torch.all(layer.bias == 0)
    with pytest.raises(ValueError, match="init must be one of"):
        MLPActorCritic(3, gym.spaces.Discrete(2), init="xavier")
