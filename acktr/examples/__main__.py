"""Command line: ``python -m acktr.examples autoencoder|cnn [options]``.

Trains K-FAC, SGD (momentum 0.9) and Adam, each over a small learning-rate sweep on the same
data, seed and minibatches, then writes ``<out>/<task>_<data>.png`` (loss vs iterations and vs
wall-clock), ``.csv`` (every run's curve) and ``.json`` (summary and curves), and prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

import acktr
from acktr.examples.compare import (
    DEFAULT_LRS,
    Sweep,
    format_table,
    plot,
    summary_rows,
    sweep,
    write_curves,
    write_json,
)
from acktr.examples.data import load_digits, load_mnist
from acktr.examples.training import (
    KFAC_EXAMPLE_DEFAULTS,
    TASKS,
    Task,
    make_task,
    parse_kfac_option,
)


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from e
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def machine_description() -> str:
    """CPU model (from /proc/cpuinfo where there is one), core count and platform."""
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model
            )
    except OSError:
        pass
    return f"{model or platform.machine()}, {os.cpu_count()} cpus, {platform.platform()}"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (every option documented in ``--help``)."""
    p = argparse.ArgumentParser(
        prog="python -m acktr.examples",
        description=(
            "Compare K-FAC with SGD (momentum 0.9) and Adam on a supervised task. Each optimizer "
            "is trained once per learning rate on identical data, seed and minibatches; the best "
            "learning rate (lowest mean training loss over the last 10 iterations) is plotted. "
            "Writes <out>/<task>_<data>.png, .csv and .json and prints a summary table."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "task",
        choices=TASKS,
        help="autoencoder: deep tanh autoencoder, logistic cross-entropy (Bernoulli Fisher); "
        "cnn: small CNN classifier, softmax cross-entropy (categorical Fisher)",
    )
    p.add_argument(
        "--mnist",
        metavar="DIR",
        default=None,
        help="directory holding the four MNIST IDX files (train-images-idx3-ubyte[.gz], "
        "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]); "
        "without it the 8x8 scikit-learn digits are used",
    )
    p.add_argument("--iters", type=int, default=500, help="training iterations per run")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the weights, minibatch order and split"
    )
    p.add_argument("--out", default="runs/examples", help="output directory")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="minibatch size (default: 512 for the autoencoder, 256 for the cnn)",
    )
    p.add_argument(
        "--kfac-lrs",
        type=_floats,
        default=DEFAULT_LRS["kfac"],
        help="comma-separated K-FAC learning rates",
    )
    p.add_argument(
        "--sgd-lrs",
        type=_floats,
        default=DEFAULT_LRS["sgd"],
        help="comma-separated SGD learning rates",
    )
    p.add_argument(
        "--adam-lrs",
        type=_floats,
        default=DEFAULT_LRS["adam"],
        help="comma-separated Adam learning rates",
    )
    p.add_argument(
        "--damping",
        type=float,
        default=KFAC_EXAMPLE_DEFAULTS["damping"],
        help="K-FAC damping for the swept K-FAC runs",
    )
    p.add_argument(
        "--kl-clip",
        type=float,
        default=KFAC_EXAMPLE_DEFAULTS["kl_clip"],
        help="K-FAC trust-region bound on each step's approximate KL, for the swept K-FAC runs "
        "(0: no trust region)",
    )
    p.add_argument(
        "--kfac-set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="extra acktr.KFAC keyword for the swept K-FAC runs, e.g. stats_every=5 or "
        "damping_scheme=tikhonov (repeatable)",
    )
    p.add_argument(
        "--kfac-defaults",
        action="store_true",
        help="also run K-FAC once with every hyperparameter at the library default "
        "(acktr.KFAC(model)), as an extra curve 'kfac (library defaults)'",
    )
    p.add_argument(
        "--kfac-adaptive",
        action="store_true",
        help="also run adaptive K-FAC once with its defaults (acktr.KFAC(model, adaptive=True): "
        "no learning rate, momentum or damping), as an extra curve 'kfac adaptive (defaults)'",
    )
    p.add_argument(
        "--optimizers",
        default="kfac,sgd,adam",
        help="comma-separated subset of kfac,sgd,adam to run",
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--quiet", action="store_true", help="print only the final table")
    return p


def run_sweeps(args: argparse.Namespace, task: Task, kfac_set: dict[str, Any]) -> list[Sweep]:
    """Every requested optimizer's learning-rate sweep, then the library-defaults K-FAC run."""
    verbose = not args.quiet
    lrs = {"kfac": args.kfac_lrs, "sgd": args.sgd_lrs, "adam": args.adam_lrs}
    sweeps = []
    for name in args.optimizers:
        kw: dict[str, Any] | None = None
        if name == "kfac":
            kw = {"damping": args.damping, "kl_clip": args.kl_clip or None} | kfac_set
        sweeps.append(sweep(task, name, lrs[name], args.iters, args.seed, kw, verbose=verbose))
    if args.kfac_defaults:
        lr = acktr.optimizer.DEFAULT_LR
        label = "kfac (library defaults)"
        sweeps.append(sweep(task, "kfac", (lr,), args.iters, args.seed, {}, label, verbose))
    if args.kfac_adaptive:
        label = "kfac adaptive (defaults)"
        sweeps.append(sweep(task, "kfac", (1.0,), args.iters, args.seed, {"adaptive": True},
                            label, verbose))
    return sweeps


def run_metadata(
    args: argparse.Namespace,
    argv: list[str] | None,
    task: Task,
    data_name: str,
    kfac_set: dict[str, Any],
) -> dict[str, Any]:
    """What the JSON records about the run: command, machine, settings, load."""
    return {
        "command": "python -m acktr.examples " + shlex.join(sys.argv[1:] if argv is None else argv),
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": machine_description(),
        "task": args.task,
        "data": data_name,
        "batch_size": task.batch_size,
        "iters": args.iters,
        "seed": args.seed,
        "kfac_damping": args.damping,
        "kfac_kl_clip": args.kl_clip or None,
        "kfac_set": kfac_set,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.iters < 10:
        raise SystemExit("--iters must be at least 10 (the final loss averages 10 iterations)")
    args.optimizers = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    unknown = sorted(set(args.optimizers) - set(DEFAULT_LRS))
    if unknown or not args.optimizers:
        raise SystemExit(f"--optimizers: unknown {unknown}; choose from kfac, sgd, adam")
    try:
        kfac_set = dict(parse_kfac_option(item) for item in args.kfac_set)
    except ValueError as e:
        raise SystemExit(f"--kfac-set: {e}") from e
    torch.set_num_threads(args.threads)
    try:
        data = load_mnist(args.mnist) if args.mnist else load_digits(seed=args.seed)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from e
    task = make_task(args.task, data, args.batch_size)
    if not args.quiet:
        print(
            f"{args.task} on {data.name}: {len(task.x)} training examples, batch "
            f"{task.batch_size}, {args.iters} iterations, seed {args.seed}"
        )
    sweeps = run_sweeps(args, task, kfac_set)
    rows = summary_rows(sweeps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{args.task}_{data.name}"
    plot(sweeps, stem.with_suffix(".png"), f"{args.task} on {data.name} (batch {task.batch_size})")
    write_curves(sweeps, stem.with_suffix(".csv"))
    meta = run_metadata(args, argv, task, data.name, kfac_set)
    write_json(sweeps, rows, stem.with_suffix(".json"), meta)
    print(format_table(rows))
    print(f"wrote {stem}.png, .csv, .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
