"""Preallocated rollout buffer on a device, CleanRL-style.

Layout: every tensor has leading shape ``(T, N)`` = ``(num_steps, num_envs)``; row ``t`` holds
what was seen and done at step ``t``:

========================  =======================  =========================================
field                     shape                    meaning
========================  =======================  =========================================
``obs``                   ``(T, N, *obs_shape)``   observation the action was taken in; the
                                                   env's dtype is kept (uint8 pixels stay
                                                   uint8 on the device)
``actions``               ``(T, N, *act_shape)``   int64 for Discrete, float32 for Box
``log_probs``             ``(T, N)``               log pi(a_t | s_t) at collection time
``values``                ``(T, N)``               V(s_t) at collection time
``rewards``               ``(T, N)``               r_t returned by the step
``terminated``            ``(T, N)`` bool          episode terminated after step t
``truncated``             ``(T, N)`` bool          episode truncated after step t
``final_values``          ``(T, N)``               V(final obs) where truncated, else 0
``advantages``/``returns`` ``(T, N)``              filled by :meth:`RolloutStorage.compute_returns`
========================  =======================  =========================================

The observation after the last step is not stored: the collector keeps it (it is the first
observation of the next rollout) and passes its value as ``last_value``. See
:mod:`agents.returns` for the termination / truncation convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from agents.distributions import make_distribution
from agents.returns import compute_gae

ArrayLike = Tensor | np.ndarray | float | bool


@dataclass(frozen=True)
class RolloutBatch:
    """A rollout flattened to ``B = T * N`` rows (views of the storage, not copies)."""

    obs: Tensor
    actions: Tensor
    log_probs: Tensor
    values: Tensor
    advantages: Tensor
    returns: Tensor

    def __len__(self) -> int:
        return self.values.shape[0]


class RolloutStorage:
    """Fixed-size ``(num_steps, num_envs)`` buffer filled one step at a time.

    Args:
        num_steps: Steps per environment per rollout (T).
        num_envs: Number of parallel environments (N).
        obs_shape: Shape of one observation.
        action_shape: Shape of one action (``()`` for Discrete).
        obs_dtype: Torch dtype of observations, default float32 (use uint8 for pixels).
        action_dtype: Torch dtype of actions, default int64.
        device: Where the tensors live, default CPU.
        value_dtype: Dtype of rewards, values, log-probs and returns, default float32.
    """

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...] = (),
        obs_dtype: torch.dtype = torch.float32,
        action_dtype: torch.dtype = torch.int64,
        device: torch.device | str = "cpu",
        value_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.num_steps = num_steps
        self.num_envs = num_envs
        self.device = torch.device(device)
        steps = (num_steps, num_envs)

        def zeros(*shape: int, dtype: torch.dtype = value_dtype) -> Tensor:
            return torch.zeros(shape, dtype=dtype, device=self.device)

        self.obs = zeros(*steps, *obs_shape, dtype=obs_dtype)
        self.actions = zeros(*steps, *action_shape, dtype=action_dtype)
        self.log_probs = zeros(*steps)
        self.values = zeros(*steps)
        self.rewards = zeros(*steps)
        self.terminated = zeros(*steps, dtype=torch.bool)
        self.truncated = zeros(*steps, dtype=torch.bool)
        self.final_values = zeros(*steps)
        self.advantages = zeros(*steps)
        self.returns = zeros(*steps)
        self.step = 0

    @classmethod
    def from_spaces(
        cls,
        num_steps: int,
        num_envs: int,
        observation_space: gym.spaces.Box,
        action_space: gym.Space,
        device: torch.device | str = "cpu",
    ) -> RolloutStorage:
        """Build a storage for a single env's observation and action spaces.

        The observation dtype follows the space (uint8 stays uint8; float64 becomes float32,
        the dtype of the networks); the action shape and dtype follow
        :func:`agents.distributions.make_distribution`.
        """
        obs_dtype = torch.from_numpy(np.zeros((), dtype=observation_space.dtype)).dtype
        if obs_dtype.is_floating_point:
            obs_dtype = torch.float32
        spec = make_distribution(action_space)
        return cls(
            num_steps,
            num_envs,
            tuple(observation_space.shape),
            spec.action_shape,
            obs_dtype=obs_dtype,
            action_dtype=spec.action_dtype,
            device=device,
        )

    @property
    def full(self) -> bool:
        """Whether all ``num_steps`` rows have been inserted since the last :meth:`reset`."""
        return self.step == self.num_steps

    def reset(self) -> None:
        """Start a new rollout (rows are overwritten, not cleared)."""
        self.step = 0

    def insert(
        self,
        obs: ArrayLike,
        actions: ArrayLike,
        log_probs: ArrayLike | None,
        values: ArrayLike | None,
        rewards: ArrayLike,
        terminated: ArrayLike,
        truncated: ArrayLike,
        final_values: ArrayLike = 0.0,
    ) -> None:
        """Write one step for all environments (tensors or numpy arrays, leading dim N).

        Values are copied into the preallocated row, converting device and dtype.
        ``final_values`` is ``V(final observation)`` for truncated envs; 0 elsewhere. A field
        given as None is left as it is, for the caller to fill in later (a rollout that computes
        values and log-probs in one batched pass after its last step).
        """
        if self.full:
            raise RuntimeError(f"storage is full ({self.num_steps} steps); call reset() first")
        t = self.step
        row = (
            (self.obs, obs),
            (self.actions, actions),
            (self.log_probs, log_probs),
            (self.values, values),
            (self.rewards, rewards),
            (self.terminated, terminated),
            (self.truncated, truncated),
            (self.final_values, final_values),
        )
        for buffer, value in row:
            if value is not None:
                buffer[t].copy_(torch.as_tensor(value).detach())
        self.step += 1

    def compute_returns(self, last_value: Tensor, gamma: float, gae_lambda: float) -> None:
        """Fill ``advantages`` and ``returns`` with :func:`agents.returns.compute_gae`.

        Args:
            last_value: ``V`` of the observation after the last step, shape ``(N,)``.
            gamma: Discount factor.
            gae_lambda: GAE lambda (1.0 = n-step returns).
        """
        self._check_full()
        advantages, returns = compute_gae(
            self.rewards,
            self.values,
            self.terminated,
            self.truncated,
            last_value.to(self.values),
            self.final_values,
            gamma,
            gae_lambda,
        )
        self.advantages.copy_(advantages)
        self.returns.copy_(returns)

    def flatten(self) -> RolloutBatch:
        """View the full rollout as ``T * N`` rows for the update (time-major order)."""
        self._check_full()
        n = self.num_steps * self.num_envs
        return RolloutBatch(
            obs=self.obs.reshape(n, *self.obs.shape[2:]),
            actions=self.actions.reshape(n, *self.actions.shape[2:]),
            log_probs=self.log_probs.reshape(n),
            values=self.values.reshape(n),
            advantages=self.advantages.reshape(n),
            returns=self.returns.reshape(n),
        )

    def _check_full(self) -> None:
        if not self.full:
            raise RuntimeError(f"rollout incomplete: {self.step} of {self.num_steps} steps")
