"""Adaptive K-FAC with no tuning against Adam with the best of 3 learning rates, on 4 problems.

For each task, Adam runs ``--iters`` iterations at each learning rate of ``--adam-lrs``; the
lowest final training loss (mean of the last 10 minibatch losses) is the target. K-FAC runs with
no argument but the mode: ``KFAC(model, adaptive=True)`` (adaptive defaults) and
``KFAC(model)`` (the non-adaptive library defaults). A K-FAC run stops when its 10-iteration
moving average reaches the target, or when its own clock passes the best Adam run's.

Every run of a task advances interleaved with the others, ``--chunk`` iterations at a time in
rotation, in one process with one thread (``torch.set_num_threads(1)``), so they share the
machine's load; each run's clock counts only its own iterations, and each keeps its own RNG
state, so its curve equals a standalone run's. The ratio is also estimated as ``iterations x
median chunk time`` (robust to a burst of load from other processes). The load average before
and after each task is printed next to the figures.

Usage::

    python -m benchmarks.kfac_adaptive                      # the 4 tasks, default budgets
    python -m benchmarks.kfac_adaptive --tasks tanh_regression --iters 3000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import warnings
from pathlib import Path

import torch

from acktr.examples.data import load_digits
from acktr.examples.training import TASKS, make_task
from acktr.optimizer import DEFAULT_LR
from benchmarks.kfac_time_to_loss import Runner, make_runner

BUDGETS = {"autoencoder": 800, "cnn": 400, "tanh_regression": 1500, "wide_classifier": 300}
"""Adam's iterations per task (about 5-10 s of one idle CPU thread each)."""

KFAC_VARIANTS = {
    "kfac adaptive (defaults)": {"adaptive": True},
    "kfac (library defaults)": {},
}


def load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def run_task(name: str, iters: int, adam_lrs: list[float], chunk: int, seed: int,
             variants: dict[str, dict]) -> dict:
    """Interleave Adam's sweep and the K-FAC runs of one task; return the figures."""
    task = make_task(name, load_digits(seed=seed))
    adams = [make_runner(task, "adam", lr, seed, None, f"adam lr={lr:g}") for lr in adam_lrs]
    # lr: the library default (adaptive mode takes none)
    kfacs = [make_runner(task, "kfac", DEFAULT_LR, seed, kw, label)
             for label, kw in variants.items()]
    load_before = load()
    while not all(a.done for a in adams) or not all(k.done for k in kfacs):
        for a in adams:
            if not a.done:
                a.advance(min(chunk, iters - len(a.result.losses)))
                a.done = len(a.result.losses) >= iters or a.result.diverged
        finished = [a for a in adams if a.done and not a.result.diverged]
        best = min(finished, key=lambda a: a.result.final_loss()) if finished else None
        clock = max(a.wall for a in adams)
        for k in kfacs:
            if k.done:
                continue
            if best is not None and all(a.done for a in adams):
                k.stop_at = best.result.final_loss()
                if k.result.iters_to_reach(k.stop_at) is not None:
                    k.done = True
                    continue
            if k.wall > clock and all(a.done for a in adams):
                k.done = True  # out of time: its own clock passed Adam's
                continue
            k.advance(chunk)
    best = min(adams, key=lambda a: a.result.final_loss())
    target = best.result.final_loss()
    out = {
        "task": name, "batch_size": task.batch_size, "adam_iters": iters,
        "load_before": load_before, "load_after": load(), "target": target,
        "adam": [_adam_row(a) for a in adams], "best_adam_lr": best.result.lr,
        "adam_time_s": best.wall, "kfac": [],
    }
    for k in kfacs:
        out["kfac"].append(_kfac_row(k, best, target))
    return out


def _adam_row(a: Runner) -> dict:
    r = a.result
    return {"label": r.label, "final_loss": r.final_loss(), "time_s": a.wall,
            "ms_per_iter": a.typical_ms if a.chunk_ms else math.nan}


def _kfac_row(k: Runner, adam: Runner, target: float) -> dict:
    r = k.result
    n = r.iters_to_reach(target)
    row = {"label": r.label, "iters": len(r.losses), "final_loss": r.final_loss(),
           "ms_per_iter": k.typical_ms if k.chunk_ms else math.nan, "reached": n is not None,
           "diverged": r.diverged}
    if n is not None:
        row.update(
            iters_to_target=n,
            time_to_target_s=r.times[n - 1],
            ratio_wall=r.times[n - 1] / adam.wall,
            ratio_robust=(n * k.typical_ms) / (len(adam.result.losses) * adam.typical_ms),
        )
    return row


def format_task(res: dict) -> str:
    lines = [
        f"## {res['task']} (batch {res['batch_size']}, Adam {res['adam_iters']} iterations; "
        f"load average {res['load_before']:.1f} before, {res['load_after']:.1f} after)",
        "",
        "| run | final loss | ms/iter | time (s) | iterations to target | time to target (s) "
        "| ratio to Adam (wall) | ratio (iters x median chunk) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a in res["adam"]:
        lines.append(f"| {a['label']} | {a['final_loss']:.4g} | {a['ms_per_iter']:.1f} | "
                     f"{a['time_s']:.1f} | | | | |")
    for k in res["kfac"]:
        if k["reached"]:
            tail = (f"{k['iters_to_target']} | {k['time_to_target_s']:.1f} | "
                    f"{k['ratio_wall']:.2f} | {k['ratio_robust']:.2f} |")
        else:
            state = "diverged" if k["diverged"] else "not reached"
            tail = f"{state} | | | |"
        lines.append(f"| {k['label']} | {k['final_loss']:.4g} | {k['ms_per_iter']:.1f} | | "
                     + tail)
    lines.append(f"\ntarget (best Adam, lr={res['best_adam_lr']:g}): {res['target']:.4g} in "
                 f"{res['adam_time_s']:.1f} s")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(BUDGETS), choices=TASKS,
                   help="tasks to run; default all four")
    p.add_argument("--iters", type=int, default=None,
                   help="Adam's iterations (default: per task, see BUDGETS)")
    p.add_argument("--adam-lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2],
                   help="Adam's learning rates; default 1e-3 3e-3 1e-2")
    p.add_argument("--chunk", type=int, default=25, help="iterations per turn; default 25")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--adaptive-only", action="store_true",
                   help="skip the non-adaptive library-defaults K-FAC run")
    p.add_argument("--out", default="results/kfac_adaptive.json", help="JSON output path")
    args = p.parse_args()
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", RuntimeWarning)
    variants = dict(KFAC_VARIANTS)
    if args.adaptive_only:
        variants.pop("kfac (library defaults)")
    print(f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} cpus, 1 thread, "
          f"seed {args.seed}")
    results = []
    for name in args.tasks:
        res = run_task(name, args.iters or BUDGETS[name], args.adam_lrs, args.chunk, args.seed,
                       variants)
        results.append(res)
        print(format_task(res), flush=True)
        print()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} cpus",
                               "torch": torch.__version__, "results": results}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
