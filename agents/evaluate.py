"""Deterministic evaluation of a policy over full episodes (raw, unclipped returns)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from agents.config import Config
from agents.rollout import obs_to_tensor
from envs import VecEnv, make_vec_env
from envs.atari import AtariOptions
from envs.registry import resolve_kind


def make_env_from_config(
    cfg: Config, *, num_envs: int | None = None, seed: int | None = None, training: bool = True
) -> VecEnv:
    """Build the vectorized env the config describes (training or evaluation mode)."""
    e = cfg.env
    kind = resolve_kind(e.env_id, "auto")
    atari = None
    if kind == "atari":
        atari = AtariOptions(
            frame_skip=e.frame_skip,
            frame_stack=e.frame_stack,
            noop_max=e.noop_max,
            repeat_action_probability=e.repeat_action_probability,
            full_action_space=e.full_action_space,
            episodic_life=e.episodic_life,
            clip_rewards=e.clip_rewards,
        )
    return make_vec_env(
        e.env_id,
        num_envs if num_envs is not None else e.num_envs,
        cfg.run.seed if seed is None else seed,
        kind=kind,
        vectorization=e.vectorization,
        atari=atari,
        normalize_obs=e.normalize_obs,
        normalize_reward=e.normalize_reward,
        gamma=cfg.algo.gamma,
        training=training,
    )


@torch.no_grad()
def run_episodes(
    env: VecEnv,
    policy: nn.Module,
    episodes: int,
    device: torch.device,
    deterministic: bool = True,
    max_steps: int = 1_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``episodes`` episodes on an evaluation env (``training=False``).

    Env ``i`` contributes its first ``ceil``/``floor`` share of the episodes, so short episodes
    are not over-represented. Returns ``(returns, lengths)``.
    """
    n = env.num_envs
    wanted = np.array([episodes // n + (i < episodes % n) for i in range(n)])
    got = np.zeros(n, dtype=int)
    returns: list[float] = []
    lengths: list[int] = []
    obs = obs_to_tensor(env.reset(), device)
    for _ in range(max_steps):
        if (got >= wanted).all():
            break
        action = policy.act(obs, deterministic=deterministic)
        next_obs, _, terminated, truncated, info = env.step(action.cpu().numpy())
        ended = np.flatnonzero(terminated | truncated)
        for i, ret, length in zip(ended, info["episode_returns"], info["episode_lengths"]):
            if got[i] < wanted[i]:
                returns.append(float(ret))
                lengths.append(int(length))
                got[i] += 1
        obs = obs_to_tensor(next_obs, device)
    return np.asarray(returns), np.asarray(lengths)


def evaluate(
    policy: nn.Module,
    cfg: Config,
    episodes: int,
    device: torch.device,
    env_state: dict[str, Any] | None = None,
    seed: int | None = None,
    deterministic: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate on fresh envs in evaluation mode, with the training normalization statistics.

    Args:
        policy: the actor-critic.
        cfg: the run's config (env settings).
        episodes: number of full episodes.
        device: where the policy lives.
        env_state: the training env's ``state_dict()`` (observation normalization).
        seed: env seed; default ``cfg.run.seed + 10_000`` (disjoint from training seeds).
        deterministic: act with the distribution's mode (default) instead of sampling.
    """
    num_envs = max(1, min(episodes, cfg.env.num_envs, 16))
    seed = cfg.run.seed + 10_000 if seed is None else seed
    env = make_env_from_config(cfg, num_envs=num_envs, seed=seed, training=False)
    try:
        if env_state:
            env.load_state_dict(env_state)
        return run_episodes(env, policy, episodes, device, deterministic)
    finally:
        env.close()
