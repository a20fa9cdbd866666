"""Cost of an adaptive K-FAC iteration against a plain K-FAC iteration, and its amortization.

Per task, these runs advance interleaved (``--chunk`` iterations each in rotation, one thread),
and the median over chunks of the mean time per iteration is compared:

* ``plain``: ``KFAC(model)`` (statistics every step, refresh every 10);
* ``adaptive``: ``KFAC(model, adaptive=True)`` (curvature products, the 2x2 solve and the
  loss after the step, every step);
* ``adaptive, adapt_every=5``: the curvature products and the solve every 5 steps only (the last
  ``(alpha, mu)`` in between; ``lambda``'s LM step stays every ``T1 = 5``);
* ``adaptive, stats_every=5``: the Kronecker statistics (the Fisher backward) every 5 steps.

Usage::

    python -m benchmarks.kfac_adaptive_cost --iters 100
"""

from __future__ import annotations

import argparse
import os
import platform
import warnings

import torch

import acktr
from acktr.examples.data import load_digits
from acktr.examples.training import TASKS, make_task
from acktr.optimizer import DEFAULT_LR
from benchmarks.kfac_time_to_loss import make_runner

VARIANTS = {
    "plain": {},
    "adaptive": {"adaptive": True},
    "adaptive, adapt_every=5": {"adaptive": acktr.AdaptiveSettings(adapt_every=5)},
    "adaptive, stats_every=5": {"adaptive": True, "stats_every": 5},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--iters", type=int, default=100, help="iterations per run; default 100")
    p.add_argument("--chunk", type=int, default=10, help="iterations per turn; default 10")
    args = p.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", RuntimeWarning)
    print(f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cpus, 1 thread")
    print("| task | " + " | ".join(f"{v} (ms/iter)" for v in VARIANTS)
          + " | adaptive / plain | adapt_every=5 / plain | stats_every=5 / plain | load |")
    print("|" + " --- |" * (len(VARIANTS) + 5))
    for name in args.tasks:
        task = make_task(name, load_digits(seed=0))
        runs = {v: make_runner(task, "kfac", DEFAULT_LR, 0, kw, v) for v, kw in VARIANTS.items()}
        load0 = os.getloadavg()[0]
        for _ in range(args.iters // args.chunk):
            for r in runs.values():
                r.advance(args.chunk)
        ms = {v: r.typical_ms for v, r in runs.items()}
        load = (load0 + os.getloadavg()[0]) / 2
        plain = ms["plain"]
        print(f"| {name} | " + " | ".join(f"{ms[v]:.1f}" for v in VARIANTS)
              + f" | {ms['adaptive'] / plain:.2f} | {ms['adaptive, adapt_every=5'] / plain:.2f}"
              f" | {ms['adaptive, stats_every=5'] / plain:.2f} | {load:.1f} |", flush=True)


if __name__ == "__main__":
    main()
