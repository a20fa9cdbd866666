"""Training curves of our trainer's ACKTR and the SB3 class on one statistic, side by side.

    python -m benchmarks.sb3_vs_native --ours runs/<run>/progress.csv \\
        --sb3 logs/acktr/HalfCheetah-v5_1/0.monitor.csv --at 50k 100k 150k

The statistic is the ACKTR paper's: the mean return of the last 100 training episodes finished
by a timestep (stochastic policy, raw rewards). Ours is ``return_mean`` of ``progress.csv`` at
the last update at or before the timestep; SB3's is computed from its Monitor file(s) (one per
env; episodes ordered by their end time, each env's steps counted in its own file, so the
timestep of an episode's end is the steps of all envs by then, assuming they run in lockstep).
For a fair comparison of final performance use ``train.py compare --algos acktr sb3-acktr``,
which evaluates both with the same code; this script reads runs that already exist.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from agents.config import parse_timesteps


def ours_at(progress: Path, steps: int) -> float:
    """``return_mean`` of the last row of ``progress.csv`` at or before ``steps``."""
    rows = [r for r in csv.DictReader(progress.open()) if int(r["timesteps"]) <= steps]
    return float(rows[-1]["return_mean"]) if rows else float("nan")


def sb3_at(monitors: list[Path], steps: int) -> float:
    """Mean return of the last 100 episodes finished by ``steps`` (all envs' steps)."""
    episodes = []  # (end time in the env's own steps, return)
    for path in monitors:
        lines = path.read_text().splitlines()
        if not lines or not lines[0].startswith("#{"):
            raise ValueError(f"{path} is not an SB3 Monitor file (no '#{{...}}' header line)")
        reader = csv.DictReader(lines[1:])
        done = 0
        for row in reader:
            done += int(row["l"])
            episodes.append((done, float(row["r"])))
    per_env = steps // max(len(monitors), 1)
    finished = sorted((end, r) for end, r in episodes if end <= per_env)
    returns = [r for _, r in finished[-100:]]
    return float(np.mean(returns)) if returns else float("nan")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ours", type=Path, required=True, help="our run's progress.csv")
    p.add_argument("--sb3", type=Path, nargs="+", required=True, help="SB3 Monitor csv file(s)")
    p.add_argument("--at", nargs="+", required=True, help="timesteps, e.g. 50k 100k")
    args = p.parse_args(argv)
    for path in [args.ours, *args.sb3]:
        if not path.is_file():
            p.error(f"no such file: {path}")
    grid = [parse_timesteps(t) for t in args.at]
    print("| timesteps | ours (train.py) | SB3 ACKTR (agents.sb3) |")
    print("|---|---|---|")
    try:
        rows = [(t, ours_at(args.ours, t), sb3_at(args.sb3, t)) for t in grid]
    except (ValueError, KeyError) as err:
        p.error(f"could not read the runs: {err}")
    for t, ours, sb3 in rows:
        print(f"| {t} | {ours:.1f} | {sb3:.1f} |")


if __name__ == "__main__":
    main()
