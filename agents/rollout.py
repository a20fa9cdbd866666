"""Collecting a rollout: one batched forward pass for all envs per step, storage on the device."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn

from agents.storage import RolloutStorage
from envs import VecEnv


def obs_to_tensor(obs: np.ndarray, device: torch.device) -> Tensor:
    """Move a batch of observations to the device, keeping uint8 pixels as uint8."""
    return torch.as_tensor(obs, device=device)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads (None: unchanged), then restore them."""
    before = torch.get_num_threads()
    if threads is None or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def collect_rollout(
    env: VecEnv,
    policy: nn.Module,
    storage: RolloutStorage,
    obs: Tensor,
    gamma: float,
    gae_lambda: float,
    threads: int | None = None,
) -> tuple[Tensor, list[float], list[int]]:
    """Fill ``storage`` with ``storage.num_steps`` steps of every env, then its returns.

    Per step: one forward pass for all envs, one device-to-host copy of the actions, one
    host-to-device copy of what the envs returned. Truncated episodes bootstrap from the value
    of their final observation (``info["final_obs"]``); terminated ones from 0. A policy whose
    value network shares nothing with the actor (``policy.separate_value``) runs only the actor
    and a sample per step; the values and log-probabilities of the whole rollout then come from
    one batched pass after the last step (the same numbers, since the policy does not change
    during a rollout; one call instead of ``num_steps``).

    Args:
        threads: torch intra-op threads while collecting (restored afterwards); None, the
            default, leaves them as they are. Per-step forwards of a few rows of a small MLP
            only lose to thread overhead, while the update's large products gain from threads.

    Returns:
        ``(next_obs, episode_returns, episode_lengths)``: the observation to continue from, and
        the raw full-game returns and lengths of the episodes that ended during the rollout.
    """
    with torch_threads(threads):
        obs, returns, lengths = _fill(env, policy, storage, obs)
        storage.compute_returns(policy.value(obs), gamma, gae_lambda)
    return obs, returns, lengths


def _fill(
    env: VecEnv, policy: nn.Module, storage: RolloutStorage, obs: Tensor
) -> tuple[Tensor, list[float], list[int]]:
    """Steps every env ``storage.num_steps`` times from ``obs``, filling every row of
    ``storage`` but the returns; see :func:`collect_rollout`."""
    device = obs.device
    batched = getattr(policy, "separate_value", False)
    storage.reset()
    returns: list[float] = []
    lengths: list[int] = []
    for _ in range(storage.num_steps):
        if batched:  # values and log-probs filled in after the loop
            dist, value, log_prob = policy.distribution(obs), None, None
            action = dist.sample()
        else:
            dist, value = policy(obs)
            action = dist.sample()
            log_prob = dist.log_prob(action)
        next_obs, reward, terminated, truncated, info = env.step(action.cpu().numpy())
        final_values: Tensor | float = 0.0
        if truncated.any():
            idx = np.flatnonzero(truncated)
            final_obs = obs_to_tensor(info["final_obs"][idx], device)
            final_values = torch.zeros(storage.num_envs, device=device)
            final_values[torch.as_tensor(idx, device=device)] = policy.value(final_obs)
        storage.insert(
            obs,
            action,
            log_prob,
            value,
            torch.as_tensor(reward, device=device),
            torch.as_tensor(terminated, device=device),
            torch.as_tensor(truncated, device=device),
            final_values,
        )
        returns.extend(float(r) for r in info["episode_returns"])
        lengths.extend(int(n) for n in info["episode_lengths"])
        obs = obs_to_tensor(next_obs, device)
    if batched:
        all_obs = storage.obs.flatten(0, 1)
        storage.values.copy_(policy.value(all_obs).view_as(storage.values))
        log_probs = policy.distribution(all_obs).log_prob(storage.actions.flatten(0, 1))
        storage.log_probs.copy_(log_probs.view_as(storage.log_probs))
    return obs, returns, lengths
