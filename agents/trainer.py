"""The training loop: rollouts, updates, logging, checkpoints, final evaluation.

A run directory holds ``config.yaml`` (the resolved config), TensorBoard event files,
``progress.csv``, ``checkpoint.pt`` (every ``run.checkpoint_every`` updates, at the end, and on
Ctrl-C) and, at the end, ``summary.json``.
"""

from __future__ import annotations

import csv
import json
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from agents.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from agents.config import Config, config_to_dict, save_config
from agents.evaluate import evaluate, make_env_from_config
from agents.policies import make_policy
from agents.rollout import collect_rollout, obs_to_tensor
from agents.storage import RolloutStorage
from agents.updates import make_optimizers, update


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available; use auto or cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be one of 'auto', 'cpu', 'cuda', got {name!r}")
    return torch.device(name)


@dataclass
class Progress:
    """Counters that a checkpoint carries."""

    update: int = 0
    timesteps: int = 0
    wall_seconds: float = 0.0
    episodes: int = 0
    recent_returns: deque = field(default_factory=lambda: deque(maxlen=100))
    recent_lengths: deque = field(default_factory=lambda: deque(maxlen=100))


class RunLogger:
    """TensorBoard scalars and ``progress.csv`` rows (the CSV keeps its first row's columns)."""

    def __init__(self, run_dir: Path, enabled_tensorboard: bool = True) -> None:
        self.csv_path = run_dir / "progress.csv"
        self._fields: list[str] | None = None
        if self.csv_path.exists():
            with self.csv_path.open() as f:
                header = f.readline().strip()
            self._fields = header.split(",") if header else None
        self.writer = None
        if enabled_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir))
            except ImportError:
                warnings.warn(
                    "tensorboard is not installed: no event files (pip install -e '.[rl]')",
                    stacklevel=2,
                )

    def log(self, step: int, row: dict[str, float]) -> None:
        if self.writer is not None:
            for key, value in row.items():
                if key not in ("update", "timesteps") and np.isfinite(value):
                    self.writer.add_scalar(key, value, step)
        new = self._fields is None
        if new:
            self._fields = list(row)
        with self.csv_path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _checkpoint_state(policy, opts, env, progress: Progress, cfg: Config) -> dict[str, Any]:
    return {
        "policy": policy.state_dict(),
        "optimizers": opts.state_dict(),
        "env": env.state_dict(),
        "progress": {
            "update": progress.update,
            "timesteps": progress.timesteps,
            "wall_seconds": progress.wall_seconds,
            "episodes": progress.episodes,
            "recent_returns": list(progress.recent_returns),
            "recent_lengths": list(progress.recent_lengths),
        },
        "torch_rng": torch.get_rng_state(),
        "config": config_to_dict(cfg),
    }


def _restore(ckpt: dict[str, Any], policy, opts, env, progress: Progress) -> None:
    policy.load_state_dict(ckpt["policy"])
    opts.load_state_dict(ckpt["optimizers"])
    env.load_state_dict(ckpt["env"])
    p = ckpt["progress"]
    progress.update, progress.timesteps = int(p["update"]), int(p["timesteps"])
    progress.wall_seconds, progress.episodes = float(p["wall_seconds"]), int(p["episodes"])
    progress.recent_returns.extend(p["recent_returns"])
    progress.recent_lengths.extend(p["recent_lengths"])
    torch.set_rng_state(ckpt["torch_rng"])


def _mean(xs) -> float:
    return float(np.mean(xs)) if len(xs) else float("nan")


def train(
    cfg: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress_bar: bool = True,
    tensorboard: bool = True,
) -> dict[str, Any]:
    """Train the agent ``cfg`` describes, writing everything into ``run_dir``.

    Args:
        cfg: the resolved configuration.
        run_dir: the run directory (created if needed).
        resume: continue from ``run_dir/checkpoint.pt`` (model, optimizers, normalization
            statistics, counters, RNG). Environments restart from fresh episodes, seeded from
            the seed and the update index.
        progress_bar: show a tqdm bar with fps and the recent return. Default True.
        tensorboard: write TensorBoard event files. Default True.

    Returns:
        The summary also written to ``summary.json`` (``interrupted: True`` after Ctrl-C, in
        which case a checkpoint is saved and no evaluation runs).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.run.device)
    torch.manual_seed(cfg.run.seed)
    env = make_env_from_config(cfg, training=True)
    policy = make_policy(env.observation_space, env.action_space, cfg.policy).to(device)
    opts = make_optimizers(policy, cfg)
    progress = Progress()
    env_seed = cfg.run.seed
    if resume:
        _restore(load_checkpoint(run_dir / CHECKPOINT_NAME), policy, opts, env, progress)
        env_seed = cfg.run.seed + 7919 * progress.update  # fresh episodes, reproducibly seeded
    save_config(cfg, run_dir / "config.yaml")
    storage = RolloutStorage.from_spaces(
        cfg.algo.num_steps, env.num_envs, env.observation_space, env.action_space, device
    )
    logger = RunLogger(run_dir, tensorboard)
    obs = obs_to_tensor(env.reset(seed=env_seed), device)
    bar = tqdm(
        total=cfg.num_updates * cfg.batch_size,
        initial=progress.timesteps,
        unit="step",
        disable=not progress_bar,
        dynamic_ncols=True,
    )
    interrupted = False
    start, start_wall = time.perf_counter(), progress.wall_seconds
    try:
        while progress.update < cfg.num_updates:
            obs, ep_returns, ep_lengths = collect_rollout(
                env, policy, storage, obs, cfg.algo.gamma, cfg.algo.gae_lambda
            )
            log_now = (progress.update + 1) % cfg.run.log_interval == 0
            metrics = update(policy, opts, storage.flatten(), cfg)
            progress.update += 1
            progress.timesteps += cfg.batch_size
            progress.episodes += len(ep_returns)
            progress.recent_returns.extend(ep_returns)
            progress.recent_lengths.extend(ep_lengths)
            progress.wall_seconds = start_wall + time.perf_counter() - start
            bar.update(cfg.batch_size)
            rate = bar.format_dict.get("rate") or 0.0
            bar.set_postfix(fps=f"{rate:.0f}", ret=f"{_mean(progress.recent_returns):.1f}")
            if log_now or progress.update == cfg.num_updates:
                row = {
                    "update": progress.update,
                    "timesteps": progress.timesteps,
                    "wall_seconds": progress.wall_seconds,
                    "fps": progress.timesteps / max(progress.wall_seconds, 1e-9),
                    "return_mean": _mean(progress.recent_returns),
                    "return_std": float(np.std(progress.recent_returns))
                    if progress.recent_returns
                    else float("nan"),
                    "length_mean": _mean(progress.recent_lengths),
                    "episodes": progress.episodes,
                    **metrics,
                }
                logger.log(progress.timesteps, row)
            every = cfg.run.checkpoint_every
            if every and progress.update % every == 0:
                save_checkpoint(_checkpoint_state(policy, opts, env, progress, cfg),
                                run_dir / CHECKPOINT_NAME)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
    save_checkpoint(_checkpoint_state(policy, opts, env, progress, cfg), run_dir / CHECKPOINT_NAME)
    env_state = env.state_dict()
    env.close()
    summary: dict[str, Any] = {
        "algo": cfg.algo.algo,
        "env": cfg.env.env_id,
        "seed": cfg.run.seed,
        "timesteps": progress.timesteps,
        "updates": progress.update,
        "wall_seconds": progress.wall_seconds,
        "fps": progress.timesteps / max(progress.wall_seconds, 1e-9),
        "train_return_mean": _mean(progress.recent_returns),
        "device": str(device),
        "interrupted": interrupted,
    }
    if not interrupted and cfg.run.eval_episodes > 0:
        returns, lengths = evaluate(policy, cfg, cfg.run.eval_episodes, device, env_state)
        summary.update(
            final_return_mean=float(returns.mean()),
            final_return_std=float(returns.std()),
            final_length_mean=float(lengths.mean()),
            eval_episodes=int(len(returns)),
        )
        if logger.writer is not None:
            logger.writer.add_scalar("eval/return_mean", summary["final_return_mean"],
                                     progress.timesteps)
    logger.close()
    if not interrupted:
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
