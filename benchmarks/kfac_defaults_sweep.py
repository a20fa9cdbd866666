"""Which K-FAC defaults train the supervised examples without tuning: a damping x kl_clip x lr grid.

For each task (digits autoencoder, digits CNN) prints the final training loss (mean of the last
10 iterations; ``inf``: diverged) of K-FAC over a grid of ``damping`` x ``kl_clip`` (rows) and
learning rates (columns), next to SGD (momentum 0.9) and Adam over their learning-rate sweeps,
all from the same seed, initial weights and minibatches. Every other K-FAC hyperparameter is the
library default. ``--seeds`` repeats the grid for several seeds.

Usage::

    python benchmarks/kfac_defaults_sweep.py
    python benchmarks/kfac_defaults_sweep.py --seeds 1 2 --damping 1e-2 --kl-clip 1e-2 none
"""

from __future__ import annotations

import argparse
import warnings

import torch

from acktr.examples.compare import DEFAULT_LRS
from acktr.examples.data import load_digits
from acktr.examples.training import make_task, train

ITERS = {"autoencoder": 500, "cnn": 100}


def _kl(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(ITERS), help="default: autoencoder cnn")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="default: 0")
    p.add_argument(
        "--damping",
        nargs="+",
        type=float,
        default=[1e-3, 1e-2, 1e-1],
        help="default: 1e-3 1e-2 1e-1",
    )
    p.add_argument(
        "--kl-clip",
        nargs="+",
        type=_kl,
        default=[None, 1e-3, 1e-2, 1e-1],
        help="'none' for no trust region; default: none 1e-3 1e-2 1e-1",
    )
    p.add_argument(
        "--lrs",
        nargs="+",
        type=float,
        default=[0.1, 0.3, 1.0],
        help="K-FAC learning rates; default: 0.1 0.3 1",
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads; default 2")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore", RuntimeWarning)

    for name in args.tasks:
        iters = ITERS[name]
        for seed in args.seeds:
            task = make_task(name, load_digits(seed=seed))
            print(
                f"\n{name}, {iters} iterations, batch {task.batch_size}, seed {seed}: "
                "final training loss"
            )
            for opt in ("sgd", "adam"):
                cells = [
                    f"lr={lr:g}: {train(task, opt, lr, iters, seed).final_loss():.4g}"
                    for lr in DEFAULT_LRS[opt]
                ]
                print(f"  {opt:<28} " + "  ".join(cells), flush=True)
            for kl in args.kl_clip:
                for damping in args.damping:
                    kw = {"damping": damping, "kl_clip": kl}
                    cells = [
                        f"lr={lr:g}: {train(task, 'kfac', lr, iters, seed, kw).final_loss():.4g}"
                        for lr in args.lrs
                    ]
                    label = f"kfac damping={damping:g} kl={kl}"
                    print(f"  {label:<28} " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
