"""Command line: ``python -m acktr.examples autoencoder|cnn [options]``.

Trains K-FAC, SGD (momentum 0.9) and Adam, each over a small learning-rate sweep on the same
data, seed and minibatches, then writes ``<out>/<task>_<data>.png`` (loss vs iterations and vs
wall-clock), ``.csv`` (every run's curve) and ``.json`` (summary and curves), and prints a table.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import torch

from acktr.examples.compare import (
    DEFAULT_LRS,
    format_table,
    plot,
    summary_rows,
    sweep,
    write_curves,
    write_json,
)
from acktr.examples.data import load_digits, load_mnist
from acktr.examples.training import KFAC_EXAMPLE_DEFAULTS, TASKS, make_task


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from e
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


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
    p.add_argument("--kfac-lrs", type=_floats, default=DEFAULT_LRS["kfac"],
                   help="comma-separated K-FAC learning rates")
    p.add_argument("--sgd-lrs", type=_floats, default=DEFAULT_LRS["sgd"],
                   help="comma-separated SGD learning rates")
    p.add_argument("--adam-lrs", type=_floats, default=DEFAULT_LRS["adam"],
                   help="comma-separated Adam learning rates")
    p.add_argument(
        "--damping",
        type=float,
        default=KFAC_EXAMPLE_DEFAULTS["damping"],
        help="K-FAC damping for the swept K-FAC runs",
    )
    p.add_argument(
        "--kfac-defaults",
        action="store_true",
        help="also run K-FAC with the library's default hyperparameters (acktr.KFAC(model)), "
        "as an extra curve 'kfac (defaults)'",
    )
    p.add_argument(
        "--optimizers",
        default="kfac,sgd,adam",
        help="comma-separated subset of kfac,sgd,adam to run",
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--quiet", action="store_true", help="print only the final table")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.iters < 10:
        raise SystemExit("--iters must be at least 10 (the final loss averages 10 iterations)")
    chosen = [o.strip() for o in args.optimizers.split(",") if o.strip()]
    unknown = sorted(set(chosen) - set(DEFAULT_LRS))
    if unknown or not chosen:
        raise SystemExit(f"--optimizers: unknown {unknown}; choose from kfac, sgd, adam")
    torch.set_num_threads(args.threads)
    try:
        data = load_mnist(args.mnist) if args.mnist else load_digits(seed=args.seed)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from e
    task = make_task(args.task, data, args.batch_size)
    verbose = not args.quiet
    if verbose:
        print(f"{args.task} on {data.name}: {len(task.x)} training examples, batch "
              f"{task.batch_size}, {args.iters} iterations, seed {args.seed}")
    lrs = {"kfac": args.kfac_lrs, "sgd": args.sgd_lrs, "adam": args.adam_lrs}
    sweeps = []
    for name in chosen:
        kw: dict[str, Any] | None = {"damping": args.damping} if name == "kfac" else None
        sweeps.append(sweep(task, name, lrs[name], args.iters, args.seed, kw, verbose=verbose))
    if args.kfac_defaults:
        sweeps.append(sweep(task, "kfac", args.kfac_lrs, args.iters, args.seed, {},
                            label="kfac (defaults)", verbose=verbose))
    rows = summary_rows(sweeps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"{args.task}_{data.name}"
    meta = {
        "command": "python -m acktr.examples " + shlex.join(sys.argv[1:] if argv is None else argv),
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": f"{platform.machine()} {platform.processor() or platform.platform()}",
        "task": args.task,
        "data": data.name,
        "batch_size": task.batch_size,
        "iters": args.iters,
        "seed": args.seed,
        "kfac_damping": args.damping,
    }
    plot(sweeps, stem.with_suffix(".png"), f"{args.task} on {data.name} (batch {task.batch_size})")
    write_curves(sweeps, stem.with_suffix(".csv"))
    write_json(sweeps, rows, stem.with_suffix(".json"), meta)
    print(format_table(rows))
    print(f"wrote {stem}.png, .csv, .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
