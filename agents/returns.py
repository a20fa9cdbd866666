"""Advantages and returns of a rollout: GAE and n-step returns, as pure tensor functions.

Convention (shapes ``(T, N)``: T time steps, N environments; any device, any float dtype):

* ``values[t]`` is ``V(s_t)``, the value of the observation the action at step ``t`` was taken
  in; ``last_value`` (shape ``(N,)``) is ``V(s_T)``, the value of the observation after the
  last step.
* ``terminated[t]`` / ``truncated[t]`` say the episode ended *after* the action at step ``t``
  (gymnasium's flags returned by that ``step``). With autoreset, ``values[t + 1]`` then belongs
  to the next episode and is never used to bootstrap step ``t``.
* The value that step ``t`` bootstraps from is

  - ``0`` if ``terminated[t]`` (a true terminal state has no future; this wins when both flags
    are set),
  - ``final_values[t]`` if ``truncated[t]``: ``V`` of the final observation of the ended
    episode (computed by the rollout from ``info["final_obs"]``; ignored where not truncated),
  - otherwise ``values[t + 1]`` (``last_value`` for ``t = T - 1``).

* The GAE recursion is cut at every episode boundary (terminated or truncated):
  ``delta_t = r_t + gamma * bootstrap_t - V(s_t)`` and
  ``A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}`` (Schulman et al. 2016, eq. 16).
* ``returns = advantages + values`` are the value-function targets (lambda-returns).

With ``lam = 1`` the advantages are the bootstrapped n-step (Monte Carlo within the rollout)
returns minus the values: ``compute_gae(..., lam=1)`` returns exactly
``compute_nstep_returns(...)`` as its second output (the A2C / Atari ACKTR targets).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _bootstrap_values(
    values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    last_value: Tensor,
    final_values: Tensor,
) -> Tensor:
    """Value each step bootstraps from, shape ``(T, N)`` (see the module docstring)."""
    next_values = torch.cat([values[1:], last_value.unsqueeze(0)], dim=0)
    next_values = torch.where(truncated.bool(), final_values, next_values)
    return torch.where(terminated.bool(), torch.zeros_like(next_values), next_values)


def compute_gae(
    rewards: Tensor,
    values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    last_value: Tensor,
    final_values: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalized advantage estimation with separate termination and truncation.

    Args:
        rewards: Rewards ``r_t``, shape ``(T, N)``.
        values: ``V(s_t)``, shape ``(T, N)``.
        terminated: Bool (or 0/1) flags, shape ``(T, N)``: the episode terminated after step t.
        truncated: Bool (or 0/1) flags, shape ``(T, N)``: the episode was truncated (time
            limit) after step t.
        last_value: ``V(s_T)`` of the observation after the last step, shape ``(N,)``.
        final_values: ``V`` of the final observation of an episode truncated at step t, shape
            ``(T, N)``; entries where ``truncated`` is false are ignored.
        gamma: Discount factor in ``(0, 1]``.
        lam: GAE lambda in ``[0, 1]``; ``1`` gives n-step returns, ``0`` one-step TD.

    Returns:
        ``(advantages, returns)``, both of shape ``(T, N)``, ``returns = advantages + values``.
        Computed without gradient tracking.
    """
    with torch.no_grad():
        next_values = _bootstrap_values(values, terminated, truncated, last_value, final_values)
        deltas = rewards + gamma * next_values - values
        # The GAE chain stops at episode boundaries, whichever way the episode ended.
        carry = gamma * lam * (~(terminated.bool() | truncated.bool())).to(values.dtype)
        advantages = torch.zeros_like(values)
        running = torch.zeros_like(last_value)
        for t in reversed(range(rewards.shape[0])):
            running = deltas[t] + carry[t] * running
            advantages[t] = running
        return advantages, advantages + values


def compute_nstep_returns(
    rewards: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    last_value: Tensor,
    final_values: Tensor,
    gamma: float,
) -> Tensor:
    """Discounted returns bootstrapped at the end of the rollout and at truncations.

    ``R_t = r_t + gamma * R_{t+1}`` within an episode, ``R_t = r_t`` at a termination,
    ``R_t = r_t + gamma * final_values[t]`` at a truncation and
    ``R_{T-1} = r_{T-1} + gamma * last_value`` when the rollout ends mid-episode. Equal to the
    returns of :func:`compute_gae` with ``lam = 1``.

    Args:
        rewards: Rewards, shape ``(T, N)``.
        terminated: Termination flags after step t, shape ``(T, N)``.
        truncated: Truncation flags after step t, shape ``(T, N)``.
        last_value: ``V(s_T)``, shape ``(N,)``.
        final_values: ``V(final observation)`` where truncated, shape ``(T, N)``.
        gamma: Discount factor in ``(0, 1]``.

    Returns:
        Returns of shape ``(T, N)``, computed without gradient tracking.
    """
    with torch.no_grad():
        terminated = terminated.bool()
        truncated = truncated.bool()
        returns = torch.zeros_like(rewards)
        running = last_value.to(rewards.dtype)
        for t in reversed(range(rewards.shape[0])):
            running = torch.where(truncated[t], final_values[t], running)
            running = torch.where(terminated[t], torch.zeros_like(running), running)
            running = rewards[t] + gamma * running
            returns[t] = running
        return returns


def standardize(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Shift and scale ``x`` to zero mean and unit standard deviation over all its entries.

    Args:
        x: Any tensor with at least two entries (e.g. the flattened advantages).
        eps: Added to the standard deviation, default ``1e-8``.
    """
    return (x - x.mean()) / (x.std() + eps)
