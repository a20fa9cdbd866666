"""The training loop: rollouts, updates, logging, checkpoints, final evaluation.

A run directory holds ``config.yaml`` (the resolved config), TensorBoard event files,
``progress.csv``, ``checkpoint.pt`` (every ``run.checkpoint_every`` updates, every
``run.checkpoint_seconds`` of wall-clock time, at the updates ``train(checkpoint_at=...)``
names, at the end, on Ctrl-C / SIGTERM, and of the last completed update when an environment
fails) and, at the end, ``summary.json``. Checkpoints are written atomically and hold no
K-FAC eigenbasis that loading can recompute bit for bit (``acktr.KFAC.state_dict(compact=True)``).

Exact resume: a checkpoint taken between updates holds the model, the optimizers, the torch RNG
streams, the counters, the observation the learner holds and a snapshot of the environments
(``VecEnv.snapshot``: simulator states, env RNGs, time limits, frame stacks, normalization
statistics and accumulators). Resuming from it continues exactly as the uninterrupted run would
have, on the same device (bit-exact on CPU). Env kinds that cannot be snapshot (see
``envs.snapshot``) restart from fresh seeded episodes, with a warning.
"""

from __future__ import annotations

import csv
import os
import signal
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from agents.checkpoint import (
    CHECKPOINT_NAME,
    RESUME_KEYS,
    CheckpointSchedule,
    check_resumable,
    load_checkpoint,
    remove_stale_temporaries,
    restoring,
)
from agents.config import Config, config_to_dict, save_config
from agents.distributed import (
    SINGLE,
    DistContext,
    NullLogger,
    broadcast_object,
    gather_episodes,
    peer_failures,
    rank_checkpoint,
    save_checkpoints,
    seed_rank,
    sync_module,
)
from agents.errors import BadInputError
from agents.evaluate import evaluate, make_env_from_config
from agents.faults import LastGoodState, TrainingFault
from agents.files import csv_number, ends_cleanly, read_csv, write_json
from agents.policies import make_policy
from agents.rollout import collect_rollout, obs_to_tensor
from agents.storage import RolloutStorage
from agents.updates import make_optimizers, metrics_to_floats, update
from envs import SnapshotUnsupported, VecEnv


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

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers and lists, for the checkpoint."""
        return {
            "update": self.update,
            "timesteps": self.timesteps,
            "wall_seconds": self.wall_seconds,
            "episodes": self.episodes,
            "recent_returns": list(self.recent_returns),
            "recent_lengths": list(self.recent_lengths),
        }

    def load_state_dict(self, p: dict[str, Any]) -> None:
        """Restores ``state_dict()`` output."""
        self.update, self.timesteps = int(p["update"]), int(p["timesteps"])
        self.wall_seconds, self.episodes = float(p["wall_seconds"]), int(p["episodes"])
        self.recent_returns.extend(p["recent_returns"])
        self.recent_lengths.extend(p["recent_lengths"])


def read_progress_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and rows of a run's ``progress.csv`` (empty: no header); a malformed one is a
    BadInputError naming it and saying that moving it aside lets the run resume."""
    if path.stat().st_size == 0 or b"\n" not in path.read_bytes()[:65536]:
        return [], []  # empty, or a header cut short by a kill before its first row landed
    try:
        return read_csv(path, "progress log", required=("timesteps",))
    except BadInputError as err:
        raise BadInputError(f"{err} (the run's log; move it aside to resume without it)"
                            ) from None


class RunLogger:
    """TensorBoard scalars and ``progress.csv`` rows (the CSV keeps its first row's columns).

    Args:
        run_dir: the run directory.
        enabled_tensorboard: write TensorBoard event files. Default True.
        resume_after: when resuming from the checkpoint of this many timesteps, drop what was
            logged after it (CSV rows and TensorBoard events), so that a run that crashed after
            its last checkpoint does not log those updates twice. Default None (a new run).
    """

    def __init__(
        self, run_dir: Path, enabled_tensorboard: bool = True, resume_after: int | None = None
    ) -> None:
        self.csv_path = run_dir / "progress.csv"
        self._fields: list[str] | None = None
        if self.csv_path.exists():
            header, rows = read_progress_csv(self.csv_path)
            self._fields = header or None
            if resume_after is not None:
                self._drop_rows_after(rows, resume_after)
        self.writer = None
        if enabled_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = None if resume_after is None else resume_after + 1
                self.writer = SummaryWriter(str(run_dir), purge_step=purge)
            except ImportError:
                warnings.warn(
                    "tensorboard is not installed: no event files (pip install -e '.[rl]')",
                    stacklevel=2,
                )

    def _drop_rows_after(self, rows: list[tuple[int, dict[str, str]]], timesteps: int) -> None:
        kept = [r for line, r in rows
                if csv_number(self.csv_path, line, r, "timesteps", int) <= timesteps]
        if not kept:  # a run started over: the header is written again with the first row
            self.csv_path.unlink()
            self._fields = None
            return
        if len(kept) == len(rows) and ends_cleanly(self.csv_path):
            return  # else: drop what was logged after the checkpoint, or a row cut short
        tmp = self.csv_path.with_name(f".{self.csv_path.name}.tmp")
        with tmp.open("w", newline="") as f:  # then renamed: a kill keeps the old or the new
            w = csv.DictWriter(f, fieldnames=self._fields or [])
            w.writeheader()
            w.writerows(kept)
        os.replace(tmp, self.csv_path)

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


class StopOnCtrlC:
    """Context manager: the first Ctrl-C (or SIGTERM, what ``kill``, schedulers and preempted
    cloud machines send) asks the loop to stop after the current update (see ``requested``); a
    second Ctrl-C raises ``KeyboardInterrupt`` at once.

    Only the main thread receives signals; elsewhere this does nothing and Ctrl-C raises
    ``KeyboardInterrupt`` wherever the loop is.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        print(f"\n{name}: stopping after this update and saving a checkpoint "
              "(press Ctrl-C again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> StopOnCtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._previous_term = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            # None: the previous handler was not installed from Python; fall back to Python's.
            signal.signal(signal.SIGINT, self._previous or signal.default_int_handler)
            signal.signal(signal.SIGTERM, self._previous_term or signal.SIG_DFL)


def _rng_state(device: torch.device) -> dict[str, Any]:
    """Every random stream the agent draws from: torch's CPU generator (network init, CPU
    sampling) and, on CUDA, the device's (action sampling and Fisher samples there). numpy's
    and Python's global generators are not used; env RNGs are in the env snapshot."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _env_snapshot(env: VecEnv, at_boundary: bool) -> tuple[dict[str, Any] | None, str | None]:
    """``(snapshot, None)``, or ``(None, why not)``."""
    if not at_boundary:
        return None, "the run was stopped in the middle of an update (e.g. a second Ctrl-C)"
    try:
        return env.snapshot(), None
    except SnapshotUnsupported as err:
        return None, str(err)


def _checkpoint_state(
    policy, opts, env: VecEnv, obs: torch.Tensor, progress: Progress, cfg: Config,
    device: torch.device, at_boundary: bool = True, final: bool = False,
) -> dict[str, Any]:
    """``final``: the run's last update; its K-FAC eigenbases that lag the factors are left
    out too (a run extended from it recomputes them at its first update)."""
    snapshot, why_not = _env_snapshot(env, at_boundary)
    return {
        "policy": policy.state_dict(),
        "optimizers": opts.state_dict(compact=True, drop_stale=final),
        "env": env.state_dict(),
        "env_snapshot": snapshot,
        "env_snapshot_missing": why_not,
        "obs": obs.detach().cpu() if snapshot is not None else None,
        "progress": progress.state_dict(),
        "rng": _rng_state(device),
        "config": config_to_dict(cfg),
    }


def _restore(ckpt: dict[str, Any], policy, opts, env: VecEnv, progress: Progress,
             device: torch.device) -> None:
    policy.load_state_dict(ckpt["policy"])
    opts.load_state_dict(ckpt["optimizers"])
    env.load_state_dict(ckpt["env"])
    progress.load_state_dict(ckpt["progress"])
    if "rng" in ckpt:
        _set_rng_state(ckpt["rng"], device)
    else:  # checkpoints written before exact resume
        torch.set_rng_state(ckpt["torch_rng"])


def _resume_env(ckpt: dict[str, Any], env: VecEnv, cfg: Config, progress: Progress,
                device: torch.device, seed: int) -> torch.Tensor:
    """Continues the checkpoint's episodes, or starts fresh seeded ones with a warning."""
    snapshot = ckpt.get("env_snapshot")
    why_not = ckpt.get("env_snapshot_missing") or "the checkpoint holds no environment snapshot"
    if snapshot is not None:
        try:
            env.restore(snapshot)
            return ckpt["obs"].to(device)
        except (SnapshotUnsupported, ValueError) as err:
            why_not = f"restoring the environment snapshot failed: {err}"
            env.load_state_dict(ckpt["env"])
    env_seed = seed + 7919 * progress.update  # fresh episodes, reproducibly seeded
    warnings.warn(
        f"resuming {cfg.env.env_id} from fresh episodes (env seed {env_seed}) because {why_not}; "
        "the run continues but will not match an uninterrupted one",
        RuntimeWarning,
        stacklevel=3,
    )
    return obs_to_tensor(env.reset(seed=env_seed), device)


def _env_fault(err: Exception, cfg: Config, progress: Progress, run_dir: Path,
               dist: DistContext, saved_update: int,
               last_good: Callable[[str], dict[str, Any]]) -> TrainingFault:
    """The error to stop on when the envs failed during the rollout after update
    ``progress.update``; first saves that update's checkpoint unless it is on disk already."""
    first, last = progress.timesteps + 1, progress.timesteps + cfg.batch_size
    what = f"{type(err).__name__}: {err}"
    where = (f"during the rollout of update {progress.update + 1} (env steps {first}-{last} "
             f"of the run)")
    if saved_update == progress.update:
        saved = f"the checkpoint of update {progress.update} in {run_dir} is the last good state"
    elif dist.enabled:  # the other ranks would wait for this one at the checkpoint's barrier
        saved = f"the last checkpoint in {run_dir} stands (none is written in a multi-process run)"
    else:
        try:
            save_checkpoints(last_good(f"the environments failed ({what})"), run_dir, dist)
            saved = (f"saved a checkpoint of the last good state (update {progress.update}) in "
                     f"{run_dir}; resuming it restarts the environments from fresh episodes")
        except Exception as save_err:  # noqa: BLE001 - report both
            saved = f"saving a checkpoint of the last good state failed too ({save_err})"
    return TrainingFault(f"the environments failed {where}: {what}; {saved}. Continue with "
                         f"`python train.py --resume {run_dir}`")


def mean_or_nan(xs) -> float:
    """Mean of ``xs`` (e.g. the recent episode returns), NaN when empty."""
    return float(np.mean(xs)) if len(xs) else float("nan")


def _log_row(progress: Progress, metrics: dict[str, float]) -> dict[str, float]:
    return {
        "update": progress.update,
        "timesteps": progress.timesteps,
        "wall_seconds": progress.wall_seconds,
        "fps": progress.timesteps / max(progress.wall_seconds, 1e-9),
        "return_mean": mean_or_nan(progress.recent_returns),
        "return_std": float(np.std(progress.recent_returns))
        if progress.recent_returns
        else float("nan"),
        "length_mean": mean_or_nan(progress.recent_lengths),
        "episodes": progress.episodes,
        **metrics,
    }


def train(
    cfg: Config,
    run_dir: str | Path,
    *,
    resume: bool = False,
    progress_bar: bool = True,
    tensorboard: bool = True,
    dist: DistContext = SINGLE,
    after_update: Callable[[Progress, nn.Module, VecEnv], None] | None = None,
    checkpoint_at: Collection[int] = (),
) -> dict[str, Any]:
    """Train the agent ``cfg`` describes, writing everything into ``run_dir``.

    Args:
        cfg: the resolved configuration.
        run_dir: the run directory (created if needed).
        resume: continue from ``run_dir/checkpoint.pt``: model, optimizers, normalization
            statistics, counters, RNG streams and, where the env kind supports snapshots, the
            environments themselves (exactly as an uninterrupted run). Otherwise environments
            restart from fresh episodes seeded from the seed and the update index, with a
            warning. Default False.
        progress_bar: show a tqdm bar with fps and the recent return. Default True.
        tensorboard: write TensorBoard event files. Default True.
        dist: this process's place in a multi-process run (``agents.distributed.setup``):
            it runs ``env.num_envs / world_size`` envs, gradients and curvature statistics are
            averaged over ranks, and only rank 0 writes logs, ``checkpoint.pt``, the
            evaluation and ``summary.json`` (see ``agents.distributed``). Default: one process.
        after_update: called after every update (after its checkpoint, if one is due) with the
            counters, the policy and the training env (``env.state_dict()`` holds the
            normalization statistics), e.g. to evaluate part-way (``agents.compare`` does). Its
            time is not counted in ``wall_seconds``. It must leave the policy, the env and the
            RNG streams as they were for the run to stay the uninterrupted one (evaluating on
            fresh envs with a deterministic policy, as ``agents.evaluate.evaluate``, does). It
            is called on every rank of a multi-process run with that rank's envs (``compare``
            runs single-process). Default None.
        checkpoint_at: update counts after which a checkpoint is also saved (besides every
            ``run.checkpoint_every``), e.g. those where ``after_update`` evaluates, so that a
            resumed run continues from there. Default: none.

    Returns:
        The summary also written to ``summary.json``. Ctrl-C finishes the current update,
        saves a checkpoint and returns with ``interrupted: True`` (no evaluation, no
        ``summary.json``); a second Ctrl-C stops at once (the checkpoint then holds no env
        snapshot: resuming it starts fresh episodes).
    """
    run_dir = Path(run_dir)
    device = dist.place(resolve_device(cfg.run.device))
    torch.manual_seed(cfg.run.seed)
    ckpt = _read_resume_checkpoint(run_dir, cfg, dist) if resume else None
    seed = dist.env_seed(cfg)
    env = make_env_from_config(cfg, num_envs=dist.local_envs(cfg), seed=seed, training=True)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with peer_failures(dist):
            return _train(cfg, run_dir, env, device, ckpt, progress_bar, tensorboard, dist,
                          after_update, frozenset(checkpoint_at), restart=resume and ckpt is None)
    finally:
        _close_quietly(env)


def _read_resume_checkpoint(run_dir: Path, cfg: Config, dist: DistContext
                            ) -> dict[str, Any] | None:
    """The checkpoint to resume from, after removing what killed writes left; None (with a
    message) when the run was stopped before its first checkpoint."""
    mine = run_dir / CHECKPOINT_NAME
    if dist.rank > 0:
        from agents.distributed import rank_checkpoint_path

        mine = rank_checkpoint_path(run_dir, dist.rank)
    for stale in remove_stale_temporaries(mine):
        print(f"removed {stale}: an incomplete checkpoint left by a write that was interrupted "
              "(the previous checkpoint is complete and is used)", file=sys.stderr)
    if not (run_dir / CHECKPOINT_NAME).is_file():
        if dist.is_main:
            print(f"{run_dir} holds no checkpoint yet (the run stopped before its first one): "
                  "starting it from the beginning", file=sys.stderr)
        return None
    ckpt = load_checkpoint(run_dir / CHECKPOINT_NAME, required=RESUME_KEYS)
    check_resumable(ckpt, cfg, run_dir / CHECKPOINT_NAME)
    return rank_checkpoint(ckpt, run_dir, dist)


def _close_quietly(env: VecEnv) -> None:
    """Close the envs; if that fails while an error is already on its way (a dead worker
    process), keep that error rather than the close's."""
    if sys.exc_info()[1] is None:
        env.close()
        return
    try:
        env.close()
    except Exception as err:  # noqa: BLE001 - the original error matters more
        warnings.warn(f"closing the environments failed too: {type(err).__name__}: {err}",
                      RuntimeWarning, stacklevel=2)


def _train(
    cfg: Config, run_dir: Path, env: VecEnv, device: torch.device, ckpt: dict[str, Any] | None,
    progress_bar: bool, tensorboard: bool, dist: DistContext,
    after_update: Callable[[Progress, nn.Module, VecEnv], None] | None = None,
    checkpoint_at: Collection[int] = (),
    restart: bool = False,
) -> dict[str, Any]:
    policy = make_policy(env.observation_space, env.action_space, cfg.policy).to(device)
    sync_module(policy, dist)
    seed_rank(cfg, dist)
    opts = make_optimizers(policy, cfg)
    progress = Progress()
    seed = dist.env_seed(cfg)
    if ckpt is not None:
        with restoring(run_dir / CHECKPOINT_NAME):  # state that does not fit: a clear error
            _restore(ckpt, policy, opts, env, progress, device)
            obs = _resume_env(ckpt, env, cfg, progress, device, seed)
            if tuple(obs.shape) != (env.num_envs, *env.observation_space.shape):
                raise ValueError(f"saved observations of shape {tuple(obs.shape)}, the envs "
                                 f"give {(env.num_envs, *env.observation_space.shape)}")
    else:
        obs = obs_to_tensor(env.reset(seed=seed), device)
    if dist.is_main:
        save_config(cfg, run_dir / "config.yaml")
    storage = RolloutStorage.from_spaces(
        cfg.algo.num_steps, env.num_envs, env.observation_space, env.action_space, device
    )
    logged_until = progress.timesteps if ckpt is not None or restart else None
    logger = RunLogger(run_dir, tensorboard, logged_until) if dist.is_main else NullLogger()
    bar = tqdm(
        total=cfg.num_updates * cfg.batch_size,
        initial=progress.timesteps,
        unit="step",
        disable=not progress_bar or not dist.is_main,
        dynamic_ncols=True,
    )
    interrupted, at_boundary, stop_now = False, True, False
    start, start_wall = time.perf_counter(), progress.wall_seconds
    schedule = CheckpointSchedule(cfg.run.checkpoint_every, cfg.run.checkpoint_seconds,
                                  frozenset(checkpoint_at))
    last_good = LastGoodState(device)
    saved_update = progress.update if ckpt is not None else -1

    def checkpoint() -> None:
        nonlocal saved_update
        final = progress.update == cfg.num_updates
        state = _checkpoint_state(policy, opts, env, obs, progress, cfg, device, at_boundary,
                                  final)
        save_checkpoints(state, run_dir, dist)
        schedule.saved()
        saved_update = progress.update

    try:
        with StopOnCtrlC() as stop:
            # stop_now: a Ctrl-C on any rank, agreed on by all of them after each update
            while progress.update < cfg.num_updates and not stop_now:
                at_boundary = False
                last_good.capture(env)
                try:
                    obs, ep_returns, ep_lengths = collect_rollout(
                        env, policy, storage, obs, cfg.algo.gamma, cfg.algo.gae_lambda,
                        threads=cfg.run.rollout_threads,
                    )
                except Exception as err:
                    raise _env_fault(err, cfg, progress, run_dir, dist, saved_update,
                                     lambda why: last_good.checkpoint_state(_checkpoint_state(
                                         policy, opts, env, obs, progress, cfg, device, False),  # noqa: B023 - called at once
                                         why)) from err
                metrics = update(policy, opts, storage.flatten(), cfg)
                ep_returns, ep_lengths, stop_now = gather_episodes(
                    ep_returns, ep_lengths, stop.requested, dist
                )
                progress.update += 1
                progress.timesteps += cfg.batch_size
                progress.episodes += len(ep_returns)
                progress.recent_returns.extend(ep_returns)
                progress.recent_lengths.extend(ep_lengths)
                progress.wall_seconds = start_wall + time.perf_counter() - start
                at_boundary = True
                bar.update(cfg.batch_size)
                rate = bar.format_dict.get("rate") or 0.0
                recent = mean_or_nan(progress.recent_returns)
                bar.set_postfix(fps=f"{rate:.0f}", ret=f"{recent:.1f}")
                if progress.update % cfg.run.log_interval == 0 or (
                    progress.update == cfg.num_updates
                ):
                    logger.log(progress.timesteps, _log_row(progress, metrics_to_floats(metrics)))
                due = schedule.due(progress.update, opts.compact_ready())
                if dist.enabled and cfg.run.checkpoint_seconds:  # rank 0's clock decides
                    due = broadcast_object(due, dist)
                if due:
                    checkpoint()
                if after_update is not None:
                    paused = time.perf_counter()
                    after_update(progress, policy, env)
                    start += time.perf_counter() - paused  # not training time
            interrupted = stop.requested or stop_now
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        logger.close()
        raise
    finally:
        bar.close()
    if saved_update != progress.update:  # else the one on disk is this update's, with its envs
        checkpoint()
    summary: dict[str, Any] = {
        "algo": cfg.algo.algo,
        "env": cfg.env.env_id,
        "seed": cfg.run.seed,
        "timesteps": progress.timesteps,
        "updates": progress.update,
        "wall_seconds": progress.wall_seconds,
        "fps": progress.timesteps / max(progress.wall_seconds, 1e-9),
        "train_return_mean": mean_or_nan(progress.recent_returns),
        "device": str(device),
        "interrupted": interrupted,
    }
    if dist.enabled:
        summary["world_size"] = dist.world_size
    if not dist.is_main:
        return summary
    if not interrupted and cfg.run.eval_episodes > 0:
        returns, lengths = evaluate(policy, cfg, cfg.run.eval_episodes, device, env.state_dict())
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
        write_json(run_dir / "summary.json", summary)  # strict JSON: NaN -> null
    return summary
