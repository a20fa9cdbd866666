"""Training fps against torch's CPU thread count: what ``run.threads: auto`` is chosen from.

Runs ``python train.py`` (default family configs, short budgets, no evaluation) for each case
and thread count, interleaved round by round (the order reversed every other round) so that
other work on the machine hits every setting alike, and prints the median training fps (from
``summary.json``: env steps over training seconds), each setting's ratio to the best, the
load average around each run and what ``auto`` picks.

    python -m benchmarks.threads [--rounds 3] [--threads 1 2] [--cases cartpole halfcheetah pong]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from agents.threads import auto_threads
from envs.registry import resolve_kind

ROOT = Path(__file__).resolve().parent.parent
CASES = {  # name: (env id, budget in env steps: a few updates of the family config's batch)
    "cartpole": ("CartPole-v1", "10k"),
    "halfcheetah": ("HalfCheetah-v5", "5000"),
    "pong": ("ALE/Pong-v5", "1920"),
}


def train_fps(env_id: str, timesteps: str, threads: int, logdir: Path) -> float:
    """Training fps of one ``train.py`` run with ``threads`` torch threads."""
    name = f"{env_id.replace('/', '-')}_t{threads}"
    cmd = [sys.executable, str(ROOT / "train.py"), "--env", env_id, "--timesteps", timesteps,
           "--threads", str(threads), "--device", "cpu", "--eval-episodes", "0",
           "--no-progress", "--no-tensorboard", "--logdir", str(logdir), "--run-name", name]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    subprocess.run(cmd, check=True, capture_output=True, env=env, cwd=ROOT)
    summary = json.loads((logdir / name / "summary.json").read_text())
    return float(summary["fps"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    args = p.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, torch's default "
          f"threads {torch.get_num_threads()}")
    fps: dict[tuple[str, int], list[float]] = {}
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = [(c, t) for c in args.cases for t in args.threads]
            for case, threads in order if r % 2 == 0 else order[::-1]:
                before = os.getloadavg()[0]
                value = train_fps(*CASES[case], threads, Path(tmp) / f"r{r}")
                after = os.getloadavg()[0]
                loads += [before, after]
                fps.setdefault((case, threads), []).append(value)
                print(f"round {r}: {case:12s} threads={threads}: {value:8.0f} fps "
                      f"(load average {before:.2f} -> {after:.2f})", flush=True)
    print(f"\nload average (1 min) around the runs: {min(loads):.2f} to {max(loads):.2f}")
    print(f"{'case':12s} " + " ".join(f"{f'{t} thr fps':>12s}" for t in args.threads)
          + "  ratio to best    auto")
    for case in args.cases:
        med = {t: statistics.median(fps[(case, t)]) for t in args.threads}
        best = max(med.values())
        auto = auto_threads(torch.device("cpu"), resolve_kind(CASES[case][0], "auto"))
        print(f"{case:12s} " + " ".join(f"{med[t]:12.0f}" for t in args.threads) + "  "
              + " ".join(f"{med[t] / best:.2f}" for t in args.threads) + f"   {auto}")


if __name__ == "__main__":
    main()
