"""Size of an Atari ACKTR checkpoint, full K-FAC state vs compact, and exact resume from it.

    python -m benchmarks.checkpoint_size --timesteps 5k --out results/checkpoint_size

Trains ACKTR on Pong with configs/atari.yaml (16 envs x 20 steps) for ``--timesteps`` and
checkpoints after update 11 (the first refresh of the eigenbases is at update 11, after the 10
cold-start updates: the largest optimizer state) and at the end. For each checkpoint it prints
the file size in the compact form the trainer writes and in the full form of
``opts.state_dict()`` (every eigenbasis stored), split into policy, optimizer and environment
snapshot, and the time to write each (``save_checkpoint``: write, fsync, rename).

``--check-resume`` then crashes a second run right after the checkpoint of update 11, resumes
it (the eigenbases are recomputed from the stored factors) and checks that its final parameters
equal the uninterrupted run's bit for bit.
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import time
from pathlib import Path

import torch

import agents.trainer as trainer
from agents.checkpoint import CHECKPOINT_NAME, save_checkpoint
from agents.config import load_config

ROOT = Path(__file__).resolve().parents[1]
MB = 1e6


def nbytes(obj) -> int:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.tell()


def timed_save(state, folder: Path) -> float:
    began = time.perf_counter()
    save_checkpoint(state, folder / "probe.pt")
    return time.perf_counter() - began


def measure(cfg, run_dir: Path, scratch: Path, log=print) -> None:
    """Train, printing the size of each checkpoint the trainer writes in both forms."""
    real = trainer._checkpoint_state

    def checkpoint_state(policy, opts, env, obs, progress, cfg_, device, at_boundary=True,
                         final=False):
        state = real(policy, opts, env, obs, progress, cfg_, device, at_boundary, final)
        full = {**state, "optimizers": opts.state_dict()}
        parts = {k: nbytes(state[k]) for k in ("policy", "optimizers", "env_snapshot")}
        log(f"update {progress.update}{' (final)' if final else ''}: compact "
            f"{nbytes(state) / MB:.1f} MB (policy {parts['policy'] / MB:.1f}, optimizer "
            f"{parts['optimizers'] / MB:.1f}, env snapshot {parts['env_snapshot'] / MB:.1f}), "
            f"write {timed_save(state, scratch):.2f} s; full {nbytes(full) / MB:.1f} MB "
            f"(optimizer {nbytes(full['optimizers']) / MB:.1f}), write "
            f"{timed_save(full, scratch):.2f} s")
        return state

    trainer._checkpoint_state = checkpoint_state
    try:
        trainer.train(cfg, run_dir, progress_bar=False, tensorboard=False, checkpoint_at=(11,))
    finally:
        trainer._checkpoint_state = real
    log(f"file on disk at the end: {(run_dir / CHECKPOINT_NAME).stat().st_size / MB:.1f} MB")


class _Crash(RuntimeError):
    pass


def check_resume(cfg, out: Path, log=print) -> bool:
    """A run crashed right after update 11's checkpoint and resumed equals one never stopped."""
    def crash_after_11(progress, policy, env):
        if progress.update == 11:
            raise _Crash("simulated crash after the checkpoint of update 11")

    try:
        trainer.train(cfg, out / "crashed", progress_bar=False, tensorboard=False,
                      checkpoint_at=(11,), after_update=crash_after_11)
    except _Crash:
        pass
    trainer.train(cfg, out / "crashed", resume=True, progress_bar=False, tensorboard=False)
    a = torch.load(out / "full" / CHECKPOINT_NAME, weights_only=True)["policy"]
    b = torch.load(out / "crashed" / CHECKPOINT_NAME, weights_only=True)["policy"]
    same = all(torch.equal(a[k], b[k]) for k in a)
    log(f"resumed from update 11 (eigenbases recomputed on load) vs uninterrupted, final "
        f"parameters: {'identical bit for bit' if same else 'DIFFERENT'}")
    return same


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", default="ALE/Pong-v5", help="Atari env id")
    p.add_argument("--timesteps", default="5k", help="run length (>= 12 updates of 320)")
    p.add_argument("--check-resume", action="store_true", help="also check exact resume")
    p.add_argument("--out", type=Path, required=True, help="folder for the runs (emptied)")
    args = p.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    (args.out / "scratch").mkdir(parents=True)
    cfg = load_config(ROOT / "configs" / "atari.yaml", [
        f"env.env_id={args.env}", f"run.total_timesteps={args.timesteps}", "run.device=cpu",
        "run.eval_episodes=0", "run.log_interval=1"])
    log = print
    log(f"{args.env}, {cfg.env.num_envs} envs x {cfg.algo.num_steps} steps, "
        f"{cfg.num_updates} updates, torch threads {torch.get_num_threads()}")
    measure(cfg, args.out / "full", args.out / "scratch", log)
    ok = check_resume(cfg, args.out, log) if args.check_resume else True
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
