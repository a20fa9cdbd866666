"""Kill real training processes with SIGKILL at random moments and resume each time.

    python -m benchmarks.kill_resume --kills 10 --out results/kill_resume

Runs ``python train.py`` on CartPole-v1 once uninterrupted (the reference), then the same
run (same seed and settings) again, killed with ``kill -9`` at ``--kills`` random moments and
restarted with ``--resume`` after each (a plain start while no run directory exists yet), then
resumed to the end. A fifth of the kills land during a process's start-up (imports, loading
the checkpoint), the others a random number (1 or more) of updates after the point where the
previous process was killed, plus a random fraction of an update's time (so at any phase of an
update: rollout, update, logging, checkpoint write). After every kill it checks what is on disk:

* the checkpoint loads (``torch.load(weights_only=True)``), or there is none yet;
* it lost at most one checkpoint interval: the last update logged in ``progress.csv`` minus the
  checkpoint's update is at most ``--every`` updates;

and at the end that the killed-and-resumed run equals the reference exactly: every parameter
bit for bit and every ``progress.csv`` row (losses, returns, counters; not the wall-clock
columns). Prints one line per kill and a verdict; exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CLOCK_COLUMNS = ("wall_seconds", "fps")


@dataclass
class Kill:
    """What one kill left on disk."""

    at_seconds: float
    logged_update: int  # last update in progress.csv (0: none)
    checkpoint_update: int | None  # None: no checkpoint yet
    temporaries: int  # temporary files of a checkpoint write cut short

    @property
    def lost_updates(self) -> int:
        return self.logged_update - (self.checkpoint_update or 0)


def train_command(run_dir: Path, updates: int, every: int, seed: int) -> list[str]:
    """``train.py`` on CartPole-v1 (4 envs x 8 steps per update), logging every update."""
    if (run_dir / "config.yaml").is_file():
        return [sys.executable, str(ROOT / "train.py"), "--resume", str(run_dir),
                "--no-progress", "--no-tensorboard"]
    sets = [f"run.total_timesteps={updates * 32}", f"run.checkpoint_every={every}",
            "run.log_interval=1", "run.eval_episodes=0", "run.device=cpu",
            "env.num_envs=4", "algo.num_steps=8"]
    return [sys.executable, str(ROOT / "train.py"), "--env", "CartPole-v1", "--seed", str(seed),
            "--logdir", str(run_dir.parent), "--run-name", run_dir.name, "--no-progress",
            "--no-tensorboard", *[a for s in sets for a in ("--set", s)]]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT)}


def run_to_end(run_dir: Path, updates: int, every: int, seed: int) -> float:
    """Run (or resume) to the end; returns the seconds until the first update was logged
    (the start-up: imports, env and network construction)."""
    began, first_row = time.perf_counter(), None
    proc = subprocess.Popen(train_command(run_dir, updates, every, seed), env=_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while proc.poll() is None:
        if first_row is None and last_logged_update(run_dir) > 0:
            first_row = time.perf_counter() - began
        time.sleep(0.05)
    err = proc.stderr.read()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise RuntimeError(f"train.py failed ({proc.returncode}): {err[-2000:]}")
    return first_row if first_row is not None else time.perf_counter() - began


def kill_at(run_dir: Path, updates: int, every: int, seed: int, during_startup: float | None,
            more_updates: int, within_update: float) -> Kill | None:
    """Start (or resume) the run and SIGKILL it: ``during_startup`` seconds after the start
    (imports, checkpoint loading), or else ``within_update`` seconds after it has logged
    ``1 + more_updates`` updates past the one where the previous process was killed (a random
    moment of an update: rollout, update, logging or checkpoint write). None if it finished
    first."""
    target = last_logged_update(run_dir) + 1 + more_updates
    began = time.perf_counter()
    proc = subprocess.Popen(train_command(run_dir, updates, every, seed), env=_env(), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = None if during_startup is None else began + during_startup
    while proc.poll() is None:
        now = time.perf_counter()
        if deadline is None and last_logged_update(run_dir) >= max(target, 1):
            deadline = now + within_update
        if deadline is not None and now >= deadline:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            break
        time.sleep(0.002)
    else:
        return None  # finished before the kill
    ckpt_path = run_dir / "checkpoint.pt"
    ckpt_update = None
    if ckpt_path.is_file():
        ckpt_update = int(torch.load(ckpt_path, weights_only=True)["progress"]["update"])
    return Kill(time.perf_counter() - began, last_logged_update(run_dir), ckpt_update,
                len(list(run_dir.glob(".checkpoint.pt.*.tmp"))) if run_dir.is_dir() else 0)


def last_logged_update(run_dir: Path) -> int:
    """The last complete row's update in progress.csv (0 if none)."""
    path = run_dir / "progress.csv"
    if not path.is_file():
        return 0
    last = 0
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            try:
                last = int(float(row["update"]))
            except (KeyError, TypeError, ValueError):
                break  # a row cut short by the kill
    return last


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "progress.csv").open(newline="") as f:
        return [{k: v for k, v in r.items() if k not in CLOCK_COLUMNS} for r in csv.DictReader(f)]


def same_run(a: Path, b: Path) -> list[str]:
    """Differences between two finished runs (empty: identical)."""
    pa = torch.load(a / "checkpoint.pt", weights_only=True)
    pb = torch.load(b / "checkpoint.pt", weights_only=True)
    problems = [f"parameter {k} differs" for k in pa["policy"]
                if not torch.equal(pa["policy"][k], pb["policy"][k])]
    if pa["progress"]["update"] != pb["progress"]["update"]:
        problems.append(f"updates {pa['progress']['update']} != {pb['progress']['update']}")
    ra, rb = rows(a), rows(b)
    if ra != rb:
        bad = next((i for i, (x, y) in enumerate(zip(ra, rb, strict=False)) if x != y),
                   min(len(ra), len(rb)))
        problems.append(f"progress.csv differs from row {bad + 1} ({len(ra)} vs {len(rb)} rows)")
    return problems


def kill_and_resume(out: Path, kills: int, updates: int, every: int, seed: int = 0,
                    schedule_seed: int = 0, startup_share: float = 0.2, log=print) -> bool:
    """The whole experiment (see the module docstring); returns True if every check passed.

    Args:
        startup_share: the share of kills (chosen at random among them) at a uniform moment
            of a process's start-up (the reference run's start-up time); the others after
            0 to 1.4 * updates / kills new updates plus a uniform fraction of the reference's
            time per update. Default 0.2.
    """
    ref, cut = out / "reference", out / "killed"
    began = time.perf_counter()
    startup = run_to_end(ref, updates, every, seed)
    duration = time.perf_counter() - began
    per_update = (duration - startup) / updates
    most = max(1, round(1.4 * updates / kills))  # ~70 % of the run is trained over the kills
    in_startup = set(random.Random(schedule_seed).sample(range(kills),
                                                         round(startup_share * kills)))
    log(f"reference: {updates} updates of 32 steps in {duration:.1f} s ({startup:.1f} s of "
        f"start-up, {per_update * 1000:.0f} ms per update); checkpoint every {every} updates; "
        f"kills: {len(in_startup)} during start-up, the others after 1-{most + 1} new updates plus "
        f"0-1 update's time")
    rng, ok, done = random.Random(schedule_seed + 1), True, 0
    while done < kills:
        startup_kill = done in in_startup
        kill = kill_at(cut, updates, every, seed,
                       rng.uniform(0.1, startup) if startup_kill else None,
                       rng.randint(0, most), rng.uniform(0.0, per_update))
        if kill is None:
            log(f"the run finished before kill {done + 1}: starting it over")
            for p in sorted(cut.iterdir()):
                p.unlink()
            continue
        done += 1
        fine = kill.lost_updates <= every
        ok &= fine
        where = ("before its first checkpoint" if kill.checkpoint_update is None
                 else f"checkpoint at update {kill.checkpoint_update}")
        log(f"kill {done:2d} {'in start-up ' if startup_kill else 'in training'} at "
            f"{kill.at_seconds:5.2f} s: logged up to update {kill.logged_update}, {where}, lost "
            f"{kill.lost_updates} update(s) (limit {every}), {kill.temporaries} temporary "
            f"file(s) left: {'ok' if fine else 'FAILED'}")
    run_to_end(cut, updates, every, seed)
    problems = same_run(ref, cut)
    ok &= not problems
    log("resumed run vs uninterrupted run: " + ("identical (every parameter bit for bit, every "
        "progress.csv row)" if not problems else "; ".join(problems)))
    log(f"verdict: {'PASS' if ok else 'FAIL'} ({kills} kills)")
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--kills", type=int, default=10, help="number of SIGKILLs")
    p.add_argument("--updates", type=int, default=400, help="updates of the run (32 steps each)")
    p.add_argument("--every", type=int, default=5, help="run.checkpoint_every (updates)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--schedule-seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--startup-share", type=float, default=0.2,
                   help="share of the kills drawn during a process's start-up")
    p.add_argument("--out", type=Path, required=True, help="folder for the two runs (emptied)")
    args = p.parse_args(argv)
    for sub in ("reference", "killed"):
        d = args.out / sub
        if d.is_dir():
            for f in d.iterdir():
                f.unlink()
    return 0 if kill_and_resume(args.out, args.kills, args.updates, args.every, args.seed,
                                args.schedule_seed, args.startup_share) else 1


if __name__ == "__main__":
    sys.exit(main())
