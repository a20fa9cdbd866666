"""stable-baselines3 actor-critic policies prepared for K-FAC.

SB3's ``MlpPolicy``, ``CnnPolicy`` and ``MultiInputPolicy`` with two changes, both invisible to
SB3's own code (rollouts, ``predict``, ``evaluate_policy``, saving):

- a Gaussian policy's state-independent log-std is an :class:`acktr.BroadcastBias`
  (``policy.log_std_layer``; ``policy.log_std`` is its parameter) instead of a bare
  ``nn.Parameter``, so that K-FAC preconditions it with its exact Fisher block rather than the
  noisy diagonal fallback;
- ``activation_fn`` may also be given by name (``"tanh"``, ``"relu"``, ``"elu"``,
  ``"leaky_relu"``), so that hyperparameter files stay plain data.

:class:`SB3Distribution` gives an SB3 distribution the interface of our shared update
(``agents.updates``): ``log_prob``, ``entropy``, ``fisher_sample`` (actions sampled from SB3's
own distribution) and ``kl``. :func:`actor_and_critic` splits a policy into the two networks of
the separate recipe.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from stable_baselines3.common.distributions import (
    CategoricalDistribution,
    DiagGaussianDistribution,
    Distribution,
    MultiCategoricalDistribution,
    kl_divergence,
)
from stable_baselines3.common.policies import (
    ActorCriticCnnPolicy,
    ActorCriticPolicy,
    MultiInputActorCriticPolicy,
)
from torch import Tensor, nn

from acktr import BroadcastBias

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU,
}


def activation_class(activation: str | type[nn.Module]) -> type[nn.Module]:
    """The activation class for a name in :data:`ACTIVATIONS` (a class passes through)."""
    if isinstance(activation, str):
        if activation.lower() not in ACTIVATIONS:
            raise ValueError(
                f"policy_kwargs activation_fn={activation!r} is not known; "
                f"names allowed: {', '.join(ACTIVATIONS)} (or pass an nn.Module class)"
            )
        return ACTIVATIONS[activation.lower()]
    return activation


class SB3Distribution:
    """An SB3 distribution with the interface of ``agents.updates``.

    SB3's policies return one mutable distribution object per policy, overwritten by every
    forward; this wrapper keeps a shallow copy, so that the distribution before a step and the
    one after it (``kl``) are both alive.
    """

    def __init__(self, dist: Distribution) -> None:
        self.dist = copy.copy(dist)

    def log_prob(self, actions: Tensor) -> Tensor:
        """Log-probability per row, shape ``(B,)`` (summed over action dimensions)."""
        return self.dist.log_prob(actions)

    def entropy(self) -> Tensor:
        """Entropy per row, shape ``(B,)``."""
        return self.dist.entropy()

    def fisher_sample(self) -> Tensor:
        """Actions sampled from the distribution (detached), for the K-FAC Fisher pass."""
        with torch.no_grad():
            return self.dist.sample().detach()

    def kl(self, other: SB3Distribution) -> Tensor:
        """``KL(self || other)`` per row, shape ``(B,)``."""
        kl = kl_divergence(self.dist, other.dist)
        per_row = isinstance(self.dist, (CategoricalDistribution, MultiCategoricalDistribution))
        return kl if per_row else kl.reshape(kl.shape[0], -1).sum(dim=1)


class _KFACReadyPolicy:
    """Mixin over an SB3 actor-critic policy; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if "activation_fn" in kwargs:
            kwargs["activation_fn"] = activation_class(kwargs["activation_fn"])
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule: Callable[[float], float]) -> None:
        super()._build(lr_schedule)  # type: ignore[misc]
        self.log_std_layer: BroadcastBias | None = None
        if isinstance(self.action_dist, DiagGaussianDistribution):
            log_std = self._parameters.pop("log_std")
            self.log_std_layer = BroadcastBias(log_std.shape[0])
            with torch.no_grad():
                self.log_std_layer.bias.copy_(log_std)
        # SB3 built an optimizer over the old parameters; the algorithm sets K-FAC here.
        self.optimizer = None

    @property
    def log_std(self) -> nn.Parameter:
        """The Gaussian's state-independent log standard deviation; like SB3's policies, only
        Gaussian policies have the attribute."""
        layer = self.__dict__["_modules"].get("log_std_layer")
        if layer is None:
            raise AttributeError("log_std: only Gaussian (Box action) policies have a log-std")
        return layer.bias

    def _get_action_dist_from_latent(self, latent_pi: Tensor) -> Distribution:
        if self.log_std_layer is None:
            return super()._get_action_dist_from_latent(latent_pi)  # type: ignore[misc]
        mean_actions = self.action_net(latent_pi)
        return self.action_dist.proba_distribution(mean_actions, self.log_std_layer(mean_actions))

    def distribution_and_value(self, obs: Any) -> tuple[SB3Distribution, Tensor]:
        """One forward of both heads: the distribution and the values, shape ``(B,)``."""
        features = self.extract_features(obs)
        if self.share_features_extractor:
            latent_pi, latent_vf = self.mlp_extractor(features)
        else:
            latent_pi = self.mlp_extractor.forward_actor(features[0])
            latent_vf = self.mlp_extractor.forward_critic(features[1])
        dist = SB3Distribution(self._get_action_dist_from_latent(latent_pi))
        return dist, self.value_net(latent_vf).flatten()


class ACKTRPolicy(_KFACReadyPolicy, ActorCriticPolicy):
    """SB3's ``MlpPolicy`` for ACKTR (see the module docstring)."""


class ACKTRCnnPolicy(_KFACReadyPolicy, ActorCriticCnnPolicy):
    """SB3's ``CnnPolicy`` (Nature CNN) for ACKTR (see the module docstring)."""


class ACKTRMultiInputPolicy(_KFACReadyPolicy, MultiInputActorCriticPolicy):
    """SB3's ``MultiInputPolicy`` (Dict observations) for ACKTR (see the module docstring)."""


class PolicyPart(nn.Module):
    """Some of a policy's modules (shared with it, not copied) and the forward that uses them,
    so that an optimizer built on the part owns exactly its parameters."""

    def __init__(self, modules: Sequence[nn.Module], forward: Callable[[Any], Any]) -> None:
        super().__init__()
        self.parts = nn.ModuleList(modules)
        self._forward = forward

    def forward(self, obs: Any) -> Any:
        return self._forward(obs)


def actor_and_critic(policy: _KFACReadyPolicy) -> tuple[PolicyPart, PolicyPart]:
    """The policy's actor (``obs -> SB3Distribution``) and critic (``obs -> values (B, 1)``)
    as separate modules, for the separate recipe.

    Raises:
        ValueError: if the two share a trained module (a features extractor with parameters,
            e.g. the Nature CNN, shared by default: pass ``share_features_extractor=False``).
    """
    actor_modules = [policy.pi_features_extractor, policy.mlp_extractor.policy_net,
                     policy.action_net]
    if policy.log_std_layer is not None:
        actor_modules.append(policy.log_std_layer)
    critic_modules = [policy.vf_features_extractor, policy.mlp_extractor.value_net,
                      policy.value_net]
    actor = PolicyPart(actor_modules, lambda obs: SB3Distribution(policy.get_distribution(obs)))
    critic = PolicyPart(critic_modules, policy.predict_values)
    actor_ids = {id(p) for p in actor.parameters()}
    if any(id(p) in actor_ids for p in critic.parameters()):
        raise ValueError(
            "separate_critic=True needs an actor and a critic that share no parameters, but the "
            f"features extractor {type(policy.features_extractor).__name__} is shared; pass "
            "policy_kwargs=dict(share_features_extractor=False) or use separate_critic=False"
        )
    owned = actor_ids | {id(p) for p in critic.parameters()}
    missing = [name for name, p in policy.named_parameters() if id(p) not in owned]
    if missing:
        raise ValueError(f"separate_critic=True: parameters in neither actor nor critic: {missing}")
    return actor, critic
