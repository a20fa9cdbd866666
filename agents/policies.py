"""Actor-critic networks: a shared Nature-CNN for pixels and separate MLPs for vectors.

Both classes have the same API (CleanRL style):

* ``forward(obs) -> (dist, value)``
* ``get_action_and_value(obs, action=None) -> (action, log_prob, entropy, value)``: samples an
  action when ``action`` is None, otherwise evaluates the given one.
* ``value(obs) -> value`` and ``act(obs, deterministic=False) -> action`` (no gradients).

Values have shape ``(B,)``. Every weight layer is a plain ``nn.Linear`` or ``nn.Conv2d`` (K-FAC
registers layers by type); a Gaussian policy's state-independent log-std is an
:class:`acktr.BroadcastBias` (``log_std_layer``), so K-FAC gives it its exact Fisher block from
per-example gradients rather than the noisy diagonal fallback; ``policy.log_std`` is its
parameter. Activations are never in-place, so hooks on layer outputs see unmodified tensors.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from acktr import BroadcastBias
from agents.activations import Tanh
from agents.config import PolicyConfig
from agents.distributions import Distribution, DistributionSpec, make_distribution

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": Tanh, "relu": nn.ReLU, "elu": nn.ELU}

# CleanRL / baselines orthogonal-init gains: hidden layers, policy output, value output.
HIDDEN_GAIN = math.sqrt(2.0)
POLICY_GAIN = 0.01
VALUE_GAIN = 1.0


# The original MuJoCo ACKTR's gains (baselines' normc_initializer): hidden, policy, value.
NORMC_GAINS = (1.0, 0.1, 1.0)


def orthogonal_init(layer: nn.Linear | nn.Conv2d, gain: float) -> nn.Linear | nn.Conv2d:
    """Orthogonal weights with ``gain``, zero bias; returns the layer."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def normc_init(layer: nn.Linear, gain: float) -> nn.Linear:
    """openai/baselines' ``normc_initializer``: Gaussian weights, each unit's incoming weight
    vector rescaled to norm ``gain``; zero bias. Returns the layer."""
    with torch.no_grad():
        w = torch.randn_like(layer.weight)
        layer.weight.copy_(w * gain / w.norm(dim=1, keepdim=True))
    nn.init.zeros_(layer.bias)
    return layer


INITS = {"orthogonal": orthogonal_init, "normc": normc_init}


def mlp(
    in_dim: int,
    hidden_sizes: tuple[int, ...],
    out_dim: int,
    activation: str = "tanh",
    out_gain: float = 1.0,
    init: str = "orthogonal",
    hidden_gain: float = HIDDEN_GAIN,
) -> nn.Sequential:
    """Linear layers with ``activation`` between them, initialized by ``init``.

    Args:
        in_dim: Input features.
        hidden_sizes: Widths of the hidden layers (may be empty: a single linear layer).
        out_dim: Output features.
        activation: ``"tanh"`` or ``"relu"``, default ``"tanh"``.
        out_gain: Gain of the output layer, default 1.0.
        init: ``"orthogonal"`` (default) or ``"normc"`` (:func:`normc_init`).
        hidden_gain: Gain of the hidden layers, default sqrt(2).
    """
    layer_init = INITS[init]
    layers: list[nn.Module] = []
    sizes = (in_dim, *hidden_sizes)
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [
            layer_init(nn.Linear(fan_in, fan_out), hidden_gain),
            ACTIVATIONS[activation](),
        ]
    layers.append(layer_init(nn.Linear(sizes[-1], out_dim), out_gain))
    return nn.Sequential(*layers)


def make_log_std_layer(spec: DistributionSpec, init: float) -> BroadcastBias | None:
    """The state-independent log-std of a Box action distribution (None for Discrete)."""
    return BroadcastBias(spec.param_dim, init) if spec.needs_log_std else None


def _build(spec: DistributionSpec, params: Tensor, log_std_layer: BroadcastBias | None):
    return spec.build(params, None if log_std_layer is None else log_std_layer(params))


def _rename_old_log_std(state_dict: dict, prefix: str, *args: object) -> None:
    """Load pre-hook: checkpoints written before the log-std became a ``BroadcastBias`` hold it
    as ``<prefix>log_std``; it is now ``<prefix>log_std_layer.bias``."""
    old = prefix + "log_std"
    if old in state_dict:
        state_dict[prefix + "log_std_layer.bias"] = state_dict.pop(old)


class _ActorCriticAPI(nn.Module):
    """The shared sampling / evaluation API; subclasses define ``forward`` and ``value``."""

    separate_value: bool = False
    """True when the value network shares nothing with the policy, so that values can be
    computed apart from actions (the rollout then batches values and log-probabilities after
    its last step)."""

    def distribution(self, obs: Tensor) -> Distribution:
        """The action distribution alone (subclasses with a separate critic skip the value)."""
        return self(obs)[0]

    def forward(self, obs: Tensor) -> tuple[Distribution, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def value(self, obs: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def get_action_and_value(
        self, obs: Tensor, action: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Sample (``action=None``) or evaluate actions.

        Returns:
            ``(action, log_prob, entropy, value)``; all but ``action`` have shape ``(B,)``.
        """
        dist, value = self(obs)
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), value

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Action for ``obs`` without gradients: the mode if ``deterministic`` else a sample."""
        dist, _ = self(obs)
        return dist.mode() if deterministic else dist.sample()


# First convolution (kernel, stride) of each trunk; the other two are 64 4x4/2 and 64 3x3/1.
# "nature" on 42x42 frames: 42 -> 9 -> 3 -> 1, a 1x1x64 map (the third convolution covers the
# whole 3x3 map). "nature_small" halves Nature's 8x8/4 for frames of half Atari's size:
# 42 -> 20 -> 9 -> 7 is the 7x7x64 map Nature's trunk makes from 84x84, but its 3136-wide
# linear layer makes K-FAC's factors 3137x3137 (4.6x the update time on our CPU,
# docs/benchmarks.md).
CNN_TRUNKS: dict[str, tuple[int, int]] = {"nature": (8, 4), "nature_small": (4, 2)}
NATURE_MIN_FRAME = 36
"""Smallest frame side the Nature trunk accepts (36 -> 8 -> 3 -> 1)."""


def resolve_cnn_trunk(name: str, obs_shape: tuple[int, ...]) -> str:
    """``'auto'`` -> ``'nature'`` when both sides of ``(C, H, W)`` are at least 36, else
    ``'nature_small'`` (down to 20x20); other names are checked and returned."""
    if name == "auto":
        return "nature" if min(obs_shape[1:]) >= NATURE_MIN_FRAME else "nature_small"
    if name not in CNN_TRUNKS:
        raise ValueError(f"cnn_trunk must be 'auto' or one of {sorted(CNN_TRUNKS)}, got {name!r}")
    if name == "nature" and min(obs_shape[1:]) < NATURE_MIN_FRAME:
        raise ValueError(
            f"cnn_trunk 'nature' needs frames of at least {NATURE_MIN_FRAME}x{NATURE_MIN_FRAME}, "
            f"got {obs_shape[1]}x{obs_shape[2]}; use 'nature_small' or 'auto'"
        )
    return name


class NatureCNNActorCritic(_ActorCriticAPI):
    """Nature-DQN trunk (Mnih et al. 2015) shared by a policy head and a value head.

    Trunk: conv 32 8x8 stride 4 (``trunk='nature_small'``: 4x4 stride 2, see ``CNN_TRUNKS``),
    conv 64 4x4 stride 2, conv 64 3x3 stride 1, linear 512, ReLU after each. A Box action
    space gets a diagonal Gaussian whose state-independent log-std is an
    ``acktr.BroadcastBias``. Observations are channel-first ``(C, H, W)`` pixels in
    ``[0, 255]`` (uint8, scaled by 1/255 inside ``forward``). Init: orthogonal, gain sqrt(2)
    for the trunk, 0.01 for the policy head, 1.0 for the value head.

    Args:
        obs_shape: ``(C, H, W)`` of one observation (e.g. ``(4, 84, 84)``).
        action_space: Discrete or 1-D Box action space.
        hidden_size: Width of the trunk's linear layer, default 512.
        log_std_init: Initial ``log_std`` for Box actions, default 0.0.
        trunk: ``"nature"`` (default) or ``"nature_small"`` (see ``CNN_TRUNKS``).
    """

    def __init__(
        self,
        obs_shape: tuple[int, int, int],
        action_space: gym.Space,
        hidden_size: int = 512,
        log_std_init: float = 0.0,
        trunk: str = "nature",
    ) -> None:
        super().__init__()
        self.spec: DistributionSpec = make_distribution(action_space)
        channels = obs_shape[0]
        kernel, stride = CNN_TRUNKS[resolve_cnn_trunk(trunk, obs_shape)]
        convs = nn.Sequential(
            orthogonal_init(nn.Conv2d(channels, 32, kernel, stride=stride), HIDDEN_GAIN),
            nn.ReLU(),
            orthogonal_init(nn.Conv2d(32, 64, 4, stride=2), HIDDEN_GAIN),
            nn.ReLU(),
            orthogonal_init(nn.Conv2d(64, 64, 3, stride=1), HIDDEN_GAIN),
            nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat_size = convs(torch.zeros(1, *obs_shape)).shape[1]
        self.trunk = nn.Sequential(
            *convs,
            orthogonal_init(nn.Linear(flat_size, hidden_size), HIDDEN_GAIN),
            nn.ReLU(),
        )
        self.policy_head = orthogonal_init(nn.Linear(hidden_size, self.spec.param_dim), POLICY_GAIN)
        self.value_head = orthogonal_init(nn.Linear(hidden_size, 1), VALUE_GAIN)
        self.log_std_layer = make_log_std_layer(self.spec, log_std_init)
        self._register_load_state_dict_pre_hook(_rename_old_log_std)

    @property
    def log_std(self) -> nn.Parameter | None:
        """The state-independent log standard deviation (None for Discrete)."""
        return None if self.log_std_layer is None else self.log_std_layer.bias

    def _features(self, obs: Tensor) -> Tensor:
        return self.trunk(obs.float() / 255.0)

    def forward(self, obs: Tensor) -> tuple[Distribution, Tensor]:
        """Distribution and value for a batch ``(B, C, H, W)`` of pixel observations."""
        features = self._features(obs)
        dist = _build(self.spec, self.policy_head(features), self.log_std_layer)
        return dist, self.value_head(features).squeeze(-1)

    def value(self, obs: Tensor) -> Tensor:
        """``V(obs)``, shape ``(B,)``."""
        return self.value_head(self._features(obs)).squeeze(-1)


class Actor(nn.Module):
    """Policy network: an MLP to the distribution's parameters, plus a log-std for Box.

    The log-std lives here (not on the actor-critic) so that an optimizer built on
    ``policy.actor`` owns every policy parameter.
    """

    def __init__(
        self,
        obs_dim: int,
        spec: DistributionSpec,
        hidden_sizes: tuple[int, ...],
        activation: str,
        log_std_init: float,
        init: str = "orthogonal",
    ) -> None:
        super().__init__()
        self.spec = spec
        if init == "normc":
            self.net = mlp(obs_dim, hidden_sizes, spec.param_dim, activation, NORMC_GAINS[1],
                           "normc", NORMC_GAINS[0])
        else:
            self.net = mlp(obs_dim, hidden_sizes, spec.param_dim, activation, POLICY_GAIN)
        self.log_std_layer = make_log_std_layer(spec, log_std_init)
        self._register_load_state_dict_pre_hook(_rename_old_log_std)

    @property
    def log_std(self) -> nn.Parameter | None:
        """The state-independent log standard deviation (None for Discrete)."""
        return None if self.log_std_layer is None else self.log_std_layer.bias

    def forward(self, obs: Tensor) -> Distribution:
        return _build(self.spec, self.net(obs), self.log_std_layer)


class MLPActorCritic(_ActorCriticAPI):
    """Separate actor and critic MLPs for vector observations (the MuJoCo ACKTR setup).

    Build one optimizer per network with ``policy.actor`` and ``policy.critic``. Init:
    orthogonal, gain sqrt(2) for hidden layers, 0.01 for the policy output, 1.0 for the value
    output. The last ``critic_only_inputs`` observation columns go to the critic alone (the
    time step of ``envs.extra_inputs``).

    Args:
        obs_dim: Length of one observation vector.
        action_space: Discrete or 1-D Box action space.
        hidden_sizes: Hidden widths of both networks, default ``(64, 64)``.
        activation: ``"tanh"``, ``"relu"`` or ``"elu"``, default ``"tanh"``.
        log_std_init: Initial ``log_std`` for Box actions, default 0.0.
        critic_activation: The critic's activation if different, default None (``activation``).
        critic_only_inputs: Trailing observation columns the actor does not see, default 0.
        init: ``"orthogonal"`` (default; gains above) or ``"normc"``: the original MuJoCo
            ACKTR's initializer (:func:`normc_init`, gains 1.0 hidden, 0.1 policy output, 1.0
            value output).
    """

    def __init__(
        self,
        obs_dim: int,
        action_space: gym.Space,
        hidden_sizes: tuple[int, ...] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
        critic_activation: str | None = None,
        critic_only_inputs: int = 0,
        init: str = "orthogonal",
    ) -> None:
        super().__init__()
        if not 0 <= critic_only_inputs < obs_dim:
            raise ValueError(f"critic_only_inputs must be in [0, {obs_dim}), got "
                             f"{critic_only_inputs}")
        self.actor_inputs = obs_dim - critic_only_inputs
        critic_activation = critic_activation or activation
        for name in (activation, critic_activation):
            if name not in ACTIVATIONS:
                raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
        self.spec: DistributionSpec = make_distribution(action_space)
        if init not in INITS:
            raise ValueError(f"init must be one of {sorted(INITS)}, got {init!r}")
        self.actor = Actor(self.actor_inputs, self.spec, tuple(hidden_sizes), activation,
                           log_std_init, init)
        if init == "normc":
            self.critic = mlp(obs_dim, tuple(hidden_sizes), 1, critic_activation, NORMC_GAINS[2],
                              "normc", NORMC_GAINS[0])
        else:
            self.critic = mlp(obs_dim, tuple(hidden_sizes), 1, critic_activation, VALUE_GAIN)

    @property
    def log_std(self) -> nn.Parameter | None:
        """The actor's state-independent log standard deviation (None for Discrete)."""
        return self.actor.log_std

    separate_value = True

    def forward(self, obs: Tensor) -> tuple[Distribution, Tensor]:
        """Distribution and value for a batch ``(B, obs_dim)`` of observations."""
        obs = obs.float()
        return self.actor(obs[..., :self.actor_inputs]), self.critic(obs).squeeze(-1)

    def distribution(self, obs: Tensor) -> Distribution:
        """The actor's distribution for ``obs``, without running the critic."""
        return self.actor(obs.float()[..., :self.actor_inputs])

    def value(self, obs: Tensor) -> Tensor:
        """``V(obs)``, shape ``(B,)``."""
        return self.critic(obs.float()).squeeze(-1)


def is_image_space(space: gym.Space) -> bool:
    """Whether ``space`` is a 3-D uint8 ``Box`` (channel-first pixels)."""
    return isinstance(space, gym.spaces.Box) and len(space.shape) == 3 and space.dtype == np.uint8


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    config: PolicyConfig | None = None,
) -> NatureCNNActorCritic | MLPActorCritic:
    """Build the actor-critic for a single env's spaces.

    Args:
        observation_space: 3-D uint8 ``Box`` ``(C, H, W)`` -> :class:`NatureCNNActorCritic`
            (``config.cnn_trunk``: ``'auto'`` fits the first convolution to the frame size);
            1-D ``Box`` -> :class:`MLPActorCritic`.
        action_space: Discrete or 1-D Box.
        config: Network sizes (:class:`agents.config.PolicyConfig`); default ``PolicyConfig()``.

    Raises:
        ValueError: For any other observation space (Discrete, Dict, 2-D or float images...),
            or an unsupported action space.
    """
    config = config or PolicyConfig()
    if is_image_space(observation_space):
        shape = tuple(int(d) for d in observation_space.shape)
        return NatureCNNActorCritic(
            shape, action_space, config.cnn_hidden_size, config.log_std_init,
            resolve_cnn_trunk(config.cnn_trunk, shape),
        )
    if isinstance(observation_space, gym.spaces.Box) and len(observation_space.shape) == 1:
        return MLPActorCritic(
            int(observation_space.shape[0]),
            action_space,
            config.hidden_sizes,
            config.activation,
            config.log_std_init,
            config.critic_activation,
            critic_only_inputs=int(config.critic_time_scale is not None),
            init=config.init,
        )
    raise ValueError(
        f"unsupported observation space {type(observation_space).__name__} "
        f"({observation_space}); supported: 3-D uint8 Box (C, H, W) images -> Nature CNN, "
        "1-D Box vectors -> MLP"
    )
