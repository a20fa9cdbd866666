"""Wall-clock K-FAC needs to reach the training loss Adam reaches in a fixed budget.

Adam (its best learning rate from ``python -m acktr.examples autoencoder``) is trained for
``--iters`` iterations on the digits deep autoencoder; its final loss (mean of the last 10
iterations) is the target. K-FAC (the examples' settings, and optionally the library defaults)
runs until its 10-iteration moving average reaches the target, or for ``--iters`` iterations.

All runs advance interleaved, ``--chunk`` iterations at a time in rotation, in one process, so
they see the same machine load; each run's clock counts only its own iterations. Every run
keeps its own random-number state across chunks, so the curves equal standalone runs'. Besides
the measured clocks, the ratio is also estimated as ``iterations x median chunk time`` (a
chunk of 50 spans 5 K-FAC refreshes), which a burst of load from other processes cannot skew.

Usage::

    python benchmarks/kfac_time_to_loss.py --iters 3000 --adam-lr 3e-3 --kfac-lr 0.1
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from acktr.examples.data import load_digits
from acktr.examples.training import (
    KFAC_EXAMPLE_DEFAULTS,
    RunResult,
    iterate,
    make_task,
    parse_kfac_option,
)


@dataclass
class Runner:
    """A run advanced in chunks, with its own RNG state and clocks."""

    result: RunResult
    steps: Iterator[float]
    rng: torch.Tensor
    wall: float = 0.0
    cpu: float = 0.0
    done: bool = False
    stop_at: float | None = None
    chunk_ms: list[float] = field(default_factory=list)  # mean ms/iteration of each full chunk

    def advance(self, n: int) -> None:
        saved = torch.random.get_rng_state()
        torch.random.set_rng_state(self.rng)
        start, count = self.wall, len(self.result.losses)
        for _ in range(n):
            wall, cpu = time.perf_counter(), time.process_time()
            loss = next(self.steps)
            self.wall += time.perf_counter() - wall
            self.cpu += time.process_time() - cpu
            r = self.result
            r.losses.append(loss)
            r.times.append(self.wall)
            r.cpu_times.append(self.cpu)
            if not math.isfinite(loss):
                r.diverged = self.done = True
                break
            if self.stop_at is not None and r.iters_to_reach(self.stop_at) is not None:
                self.done = True
                break
        if len(self.result.losses) - count == n:
            self.chunk_ms.append(1e3 * (self.wall - start) / n)
        self.rng = torch.random.get_rng_state()
        torch.random.set_rng_state(saved)

    @property
    def typical_ms(self) -> float:
        """Median over chunks of the mean iteration time: robust to load spikes."""
        return statistics.median(self.chunk_ms)


def make_runner(task, optimizer, lr, seed, kfac_kwargs, label) -> Runner:
    torch.manual_seed(seed)
    steps = iterate(task, optimizer, lr, seed, kfac_kwargs)
    return Runner(RunResult(optimizer, lr, label), steps, torch.random.get_rng_state())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=3000, help="Adam's budget; default 3000")
    p.add_argument("--adam-lr", type=float, default=3e-3, help="default 3e-3")
    p.add_argument("--kfac-lr", type=float, default=0.1, help="default 0.1")
    p.add_argument("--batch-size", type=int, default=512, help="default 512")
    p.add_argument("--chunk", type=int, default=50, help="iterations per turn; default 50")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads; default 2")
    p.add_argument(
        "--kfac-set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="extra acktr.KFAC keyword for the K-FAC run (repeatable), e.g. stats_every=5",
    )
    p.add_argument(
        "--library-defaults",
        action="store_true",
        help="also run acktr.KFAC(model) with every hyperparameter at its default",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)
    task = make_task("autoencoder", load_digits(seed=args.seed), args.batch_size)
    adam = make_runner(task, "adam", args.adam_lr, args.seed, None, "adam")
    kw = KFAC_EXAMPLE_DEFAULTS | dict(parse_kfac_option(item) for item in args.kfac_set)
    kfacs = [make_runner(task, "kfac", args.kfac_lr, args.seed, kw, f"kfac {kw}")]
    if args.library_defaults:
        kfacs.append(make_runner(task, "kfac", 0.1, args.seed, {}, "kfac (library defaults)"))
    # Phase 1: Adam's budget, with K-FAC interleaved (it stops at the target once known).
    while len(adam.result.losses) < args.iters:
        for r in [adam] + [k for k in kfacs if not k.done]:
            n = min(args.chunk, args.iters - len(adam.result.losses)) if r is adam else args.chunk
            r.advance(n)
            if len(r.result.losses) >= args.iters:
                r.done = True
    target = adam.result.final_loss()
    # Phase 2: any K-FAC run that has not reached the target continues to the same budget.
    for k in kfacs:
        k.stop_at = target
        hit = k.result.iters_to_reach(target)
        if hit is None and not k.result.diverged and len(k.result.losses) < args.iters:
            k.done = False
            k.advance(args.iters - len(k.result.losses))

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"digits autoencoder, batch {task.batch_size}, seed {args.seed}, {args.threads} threads, "
        f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cpus, "
        f"load average {load:.1f}"
    )
    a = adam.result
    print(
        f"adam lr={args.adam_lr:g}: {len(a.losses)} iterations, final loss {target:.4f}, "
        f"{a.times[-1]:.2f} s wall, {a.cpu_times[-1]:.2f} s cpu, "
        f"{1e3 * a.times[-1] / len(a.losses):.2f} ms/iter (median chunk {adam.typical_ms:.2f})"
    )
    for k in kfacs:
        r = k.result
        n = r.iters_to_reach(target)
        per_iter = 1e3 * r.times[-1] / len(r.losses)
        if n is None:
            state = "diverged" if r.diverged else f"final loss {r.final_loss():.4f}"
            print(f"{r.label} lr={r.lr:g}: did not reach {target:.4f} ({state})")
            continue
        wall, cpu = r.times[n - 1], r.cpu_times[n - 1]
        robust = (n * k.typical_ms) / (len(a.losses) * adam.typical_ms)
        print(
            f"{r.label} lr={r.lr:g}: reached {target:.4f} after {n} iterations, "
            f"{wall:.2f} s wall, {cpu:.2f} s cpu, {per_iter:.2f} ms/iter (median chunk "
            f"{k.typical_ms:.2f}); ratio to adam: {wall / a.times[-1]:.2f} wall-clock, "
            f"{cpu / a.cpu_times[-1]:.2f} cpu, {n / len(a.losses):.3f} iterations, "
            f"{robust:.2f} iterations x median chunk time"
        )


if __name__ == "__main__":
    main()
