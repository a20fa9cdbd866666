"""Action distributions chosen from a gymnasium action space.

A policy head produces the distribution's parameters; ``make_distribution(action_space)``
says how many it needs and builds the distribution from them:

    spec = make_distribution(env.single_action_space)
    head = nn.Linear(hidden, spec.param_dim)
    dist = spec.build(head(features), log_std)      # log_std only for Box spaces
    action = dist.sample()

Every distribution has the same interface: ``log_prob(actions)``, ``entropy()``, ``sample()``,
``mode()``, ``kl(other)`` and ``fisher_sample()``. ``log_prob`` and ``entropy`` return one value
per batch row (shape ``(B,)``); for a diagonal Gaussian they sum over the action dimensions.
Actions are never clipped here: clipping to the action bounds is the environment's job, and the
log-probability must be that of the unclipped sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import torch
from torch import Tensor

SUPPORTED_SPACES = ("Discrete", "Box (1-D)")

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class Categorical:
    """Categorical distribution over ``n`` actions, parameterized by unnormalized logits.

    Args:
        logits: Unnormalized log-probabilities, shape ``(B, n)``.
    """

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits - logits.logsumexp(dim=-1, keepdim=True)

    @property
    def probs(self) -> Tensor:
        """Action probabilities, shape ``(B, n)``."""
        return self.logits.exp()

    def log_prob(self, actions: Tensor) -> Tensor:
        """Log-probability of integer actions of shape ``(B,)``; returns shape ``(B,)``."""
        index = actions.long().unsqueeze(-1)
        return self.logits.gather(-1, index).squeeze(-1)

    def entropy(self) -> Tensor:
        """Entropy in nats, shape ``(B,)``."""
        return -(self.probs * self.logits).sum(dim=-1)

    def sample(self) -> Tensor:
        """Draw one action per row (int64, shape ``(B,)``); not differentiable.

        Leading batch dimensions of any number are supported, e.g. ``(T, N, n)`` logits.
        """
        with torch.no_grad():
            probs = self.probs
            flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), num_samples=1)
            return flat.reshape(probs.shape[:-1])

    def mode(self) -> Tensor:
        """Most probable action per row (int64, shape ``(B,)``)."""
        return self.logits.argmax(dim=-1)

    def fisher_sample(self) -> Tensor:
        """Actions sampled from this distribution, detached, for the K-FAC Fisher pass.

        The policy Fisher loss is ``-dist.log_prob(dist.fisher_sample()).mean()``: gradients
        under targets drawn from the model, not the empirical actions.
        """
        return self.sample().detach()

    def kl(self, other: Categorical) -> Tensor:
        """KL(self || other) per row, shape ``(B,)``."""
        return (self.probs * (self.logits - other.logits)).sum(dim=-1)


class DiagGaussian:
    """Gaussian with diagonal covariance over a 1-D continuous action vector.

    Args:
        mean: Means, shape ``(B, d)``.
        log_std: Log standard deviations, shape ``(d,)`` (state-independent, owned by the
            policy) or ``(B, d)``; broadcast against ``mean``.
    """

    def __init__(self, mean: Tensor, log_std: Tensor) -> None:
        self.mean = mean
        self.log_std = log_std.expand_as(mean)

    @property
    def std(self) -> Tensor:
        """Standard deviations, shape ``(B, d)``."""
        return self.log_std.exp()

    def log_prob(self, actions: Tensor) -> Tensor:
        """Log-density of actions of shape ``(B, d)``, summed over ``d``; returns ``(B,)``."""
        z = (actions - self.mean) / self.std
        return (-0.5 * z.pow(2) - self.log_std - _LOG_SQRT_2PI).sum(dim=-1)

    def entropy(self) -> Tensor:
        """Differential entropy in nats, summed over action dims; shape ``(B,)``."""
        return (0.5 + _LOG_SQRT_2PI + self.log_std).sum(dim=-1)

    def sample(self) -> Tensor:
        """Draw one action per row (float, shape ``(B, d)``); not differentiable."""
        with torch.no_grad():
            return self.mean + self.std * torch.randn_like(self.mean)

    def mode(self) -> Tensor:
        """The mean, shape ``(B, d)``."""
        return self.mean

    def fisher_sample(self) -> Tensor:
        """Actions sampled from this distribution, detached, for the K-FAC Fisher pass.

        The policy Fisher loss is ``-dist.log_prob(dist.fisher_sample()).mean()``.
        """
        return self.sample().detach()

    def kl(self, other: DiagGaussian) -> Tensor:
        """KL(self || other) per row, summed over action dims; shape ``(B,)``."""
        log_ratio = self.log_std - other.log_std
        mean_term = ((self.mean - other.mean) / other.std).pow(2)
        per_dim = 0.5 * (log_ratio.mul(2.0).exp() + mean_term - 1.0) - log_ratio
        return per_dim.sum(dim=-1)


Distribution = Categorical | DiagGaussian


@dataclass(frozen=True)
class DistributionSpec:
    """What a policy head must output for an action space, and how to build the distribution.

    Attributes:
        kind: ``"categorical"`` for Discrete, ``"diag_gaussian"`` for Box.
        param_dim: Number of outputs of the policy head (logits or means).
        action_shape: Shape of one action (``()`` for Discrete, ``(d,)`` for Box).
        action_dtype: Torch dtype of actions (int64 for Discrete, float32 for Box).
    """

    kind: Literal["categorical", "diag_gaussian"]
    param_dim: int
    action_shape: tuple[int, ...]
    action_dtype: torch.dtype

    @property
    def needs_log_std(self) -> bool:
        """Whether the policy must own a state-independent ``log_std`` parameter."""
        return self.kind == "diag_gaussian"

    def build(self, params: Tensor, log_std: Tensor | None = None) -> Distribution:
        """Build the distribution from the policy head's output.

        Args:
            params: Head output of shape ``(B, param_dim)``.
            log_std: Required for ``diag_gaussian`` (shape ``(d,)``); ignored otherwise.
        """
        if self.kind == "categorical":
            return Categorical(params)
        if log_std is None:
            raise ValueError("a DiagGaussian distribution needs a log_std tensor")
        return DiagGaussian(params, log_std)


def make_distribution(action_space: gym.Space) -> DistributionSpec:
    """Choose the action distribution for ``action_space``.

    Args:
        action_space: A single environment's action space (``envs.single_action_space``).

    Returns:
        A :class:`DistributionSpec`: Categorical for ``Discrete`` (starting at 0), DiagGaussian
        for a 1-D ``Box``.

    Raises:
        ValueError: For any other space (MultiDiscrete, MultiBinary, Dict, Tuple, a Box that is
            not 1-D, a Discrete with ``start != 0``).
    """
    if isinstance(action_space, gym.spaces.Discrete):
        if int(action_space.start) != 0:
            raise ValueError(
                f"Discrete action spaces must start at 0, got start={action_space.start}"
            )
        return DistributionSpec("categorical", int(action_space.n), (), torch.int64)
    if isinstance(action_space, gym.spaces.Box):
        if len(action_space.shape) != 1:
            raise ValueError(
                f"Box action spaces must be 1-D, got shape {action_space.shape}; "
                f"supported action spaces: {', '.join(SUPPORTED_SPACES)}"
            )
        dim = int(action_space.shape[0])
        return DistributionSpec("diag_gaussian", dim, (dim,), torch.float32)
    raise ValueError(
        f"unsupported action space {type(action_space).__name__} ({action_space}); "
        f"supported action spaces: {', '.join(SUPPORTED_SPACES)}"
    )
