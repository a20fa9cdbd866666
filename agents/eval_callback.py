"""Evaluation during training, as stable-baselines3's ``EvalCallback``: every
``run.eval_every`` env steps and at the end, ``run.eval_episodes`` deterministic episodes on
separate envs with a frozen copy of the run's normalization statistics; results logged under
``eval/`` (TensorBoard and ``progress.csv``) and the best model kept in ``best.pt``.

``best.pt`` holds what ``train.py eval`` needs (policy, normalization statistics, config,
counters) and the evaluation that made it best; it is written atomically, only when an
evaluation's mean return beats every earlier one (ties keep the earlier model).
"""

from __future__ import annotations

import math
import pickle
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from agents.checkpoint import load_checkpoint, save_checkpoint
from agents.config import Config, config_to_dict
from agents.evaluate import evaluate
from agents.run_log import EVAL_LENGTH, EVAL_RETURN, EVAL_STD, ITERATIONS, TIMESTEPS
from envs import VecEnv

BEST_NAME = "best.pt"


@dataclass
class EvalResult:
    """One evaluation: ``mean_reward`` +- ``std_reward`` over ``episodes`` episodes of mean
    length ``mean_ep_length``, after ``timesteps`` training steps, taking ``seconds``."""

    timesteps: int
    mean_reward: float
    std_reward: float
    mean_ep_length: float
    episodes: int
    seconds: float
    new_best: bool = False


class Evaluator:
    """Evaluates a training run and keeps its best model (see the module docstring).

    Args:
        cfg: the run's config (``run.eval_every``, ``run.eval_episodes``, env settings).
        run_dir: where ``best.pt`` goes.
        device: where the policy lives.
        logger: a ``RunLogger`` (or ``NullLogger``) for the ``eval/`` rows.
        show_progress: a tqdm bar over the episodes of each evaluation. Default True.
        resumed_at: the timesteps of the checkpoint a resumed run starts from; a ``best.pt``
            written after it (by the run that crashed) is not a bar to beat. Default None.
    """

    def __init__(self, cfg: Config, run_dir: Path, device: torch.device, logger: Any,
                 show_progress: bool = True, resumed_at: int | None = None) -> None:
        self.cfg, self.device, self.logger = cfg, device, logger
        self.best_path = Path(run_dir) / BEST_NAME
        self.show_progress = show_progress
        self.best: EvalResult | None = None
        if resumed_at is not None:
            self.best = _previous_best(self.best_path, resumed_at)

    def due(self, timesteps: int) -> bool:
        """Whether the update that just brought the run to ``timesteps`` crossed a multiple of
        ``run.eval_every`` (not at the last update: the final evaluation follows it)."""
        every, batch = self.cfg.run.eval_every, self.cfg.batch_size
        if not every or not self.cfg.run.eval_episodes:
            return False
        if timesteps >= self.cfg.num_updates * batch:
            return False
        return timesteps // every > (timesteps - batch) // every

    def evaluate(self, progress: Any, policy: nn.Module, env: VecEnv,
                 final: bool = False) -> EvalResult:
        """Evaluate ``policy`` now (``progress``: the trainer's counters; ``env``: the training
        env, whose normalization statistics are copied), log it, keep it if best."""
        episodes = self.cfg.run.eval_episodes
        label = "final evaluation" if final else f"evaluating at {progress.timesteps} steps"
        if not self.show_progress and final:
            print(f"final evaluation: {episodes} episodes", flush=True)
        bar = tqdm(total=episodes, desc=label, unit="episode", leave=False,
                   disable=not self.show_progress, dynamic_ncols=True)
        done: list[float] = []

        def on_episode(ret: float, length: int) -> None:
            done.append(ret)
            bar.update(1)

        def on_step(steps: int) -> None:
            # Parallel episodes tend to end together: show the steps meanwhile.
            ret = f", ret={np.mean(done):.1f}" if done else ""
            bar.set_postfix_str(f"{steps} env steps{ret}", refresh=False)
            bar.update(0)  # redraws at most every tqdm.mininterval

        start = time.perf_counter()
        try:
            returns, lengths = evaluate(policy, self.cfg, episodes, self.device,
                                        env.state_dict(), on_episode=on_episode,
                                        on_step=on_step if self.show_progress else None)
        finally:
            bar.close()
        result = EvalResult(progress.timesteps, float(returns.mean()), float(returns.std()),
                            float(lengths.mean()), int(len(returns)),
                            time.perf_counter() - start)
        self.logger.log(progress.timesteps, {
            ITERATIONS: progress.update, TIMESTEPS: progress.timesteps,
            EVAL_RETURN: result.mean_reward, EVAL_STD: result.std_reward,
            EVAL_LENGTH: result.mean_ep_length,
        })
        if self.best is None or result.mean_reward > self.best.mean_reward:
            result.new_best = True
            self.best = result
            self._save_best(result, progress, policy, env)
        if not final:
            tqdm.write(f"eval at {result.timesteps} steps: return {result.mean_reward:.2f} +- "
                       f"{result.std_reward:.2f} over {result.episodes} episodes "
                       f"({result.seconds:.1f} s)" + (", new best" if result.new_best else ""))
        return result

    def _save_best(self, result: EvalResult, progress: Any, policy: nn.Module,
                   env: VecEnv) -> None:
        save_checkpoint({
            "policy": policy.state_dict(),
            "env": env.state_dict(),
            "config": config_to_dict(self.cfg),
            "progress": progress.state_dict(),
            "eval": asdict(result),
        }, self.best_path)


def _previous_best(path: Path, resumed_at: int) -> EvalResult | None:
    """The evaluation recorded in an earlier ``best.pt`` of this run, if it is readable and
    from at most ``resumed_at`` steps (a later one belongs to the part of the run that is
    replayed, and is overwritten by its first evaluation)."""
    if not path.is_file():
        return None
    try:
        result = EvalResult(**load_checkpoint(path)["eval"])
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, EOFError,
            pickle.UnpicklingError) as err:
        warnings.warn(f"ignoring unreadable {path} ({err}); the next evaluation replaces it",
                      RuntimeWarning, stacklevel=3)
        return None
    if result.timesteps > resumed_at or not math.isfinite(result.mean_reward):
        return None
    return result
