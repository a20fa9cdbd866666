"""Sun & Nielsen (2017), slide 25: RNGD vs SGD vs Adam on a relu MLP, batch 50, L2.

The MLP is 784-80-80-80-10 on MNIST (``--mnist DIR`` with the IDX files) or, by default,
64-80-80-80-10 on scikit-learn's digits (same shape of network). All three optimizers start from
the same weights and see the same minibatches; the L2 term ``weight_decay * ||theta||^2 / 2`` is
the optimizers' ``weight_decay``. RNGD recomputes the inverse relative Fisher every 100
minibatches, as in the slides. Per epoch it records the training error (cross-entropy on the
whole training set) and the validation accuracy (the held-out split: the digits' 20% test split,
or MNIST's 10k test images), and plots both for each optimizer's best learning rate of a
small grid (chosen by the mean validation accuracy of the last 10 epochs).

Usage::

    python benchmarks/rngd_mlp.py           # digits, 100 epochs: docs/img/rngd_mlp_digits.png
    python benchmarks/rngd_mlp.py --mnist ~/data/mnist --epochs 20
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from acktr.examples.data import load_digits, load_mnist
from acktr.rngd import RNGD


def mlp(n_in: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, 80), nn.ReLU(), nn.Linear(80, 80), nn.ReLU(),
        nn.Linear(80, 80), nn.ReLU(), nn.Linear(80, 10),
    )


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    out = model(x)
    return float(F.cross_entropy(out, y)), float((out.argmax(1) == y).double().mean())


def train(name: str, lr: float, init: dict, data, args) -> dict[str, list[float]]:
    model = mlp(data.x_train.shape[1])
    model.load_state_dict(init)
    if name == "rngd":
        opt = RNGD(model, lr=lr, damping=args.rngd_damping, weight_decay=args.l2,
                   inverse_every=100)
    elif name == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=args.l2)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=args.l2)
    gen = torch.Generator().manual_seed(args.seed)
    hist: dict[str, list[float]] = {"train_error": [], "valid_accuracy": [], "seconds": []}
    clock = 0.0
    n = len(data.x_train)
    for _ in range(args.epochs):
        perm = torch.randperm(n, generator=gen)
        start = time.perf_counter()
        for i in range(0, n - args.batch + 1, args.batch):
            idx = perm[i : i + args.batch]
            x, y = data.x_train[idx], data.y_train[idx]
            if name == "rngd":
                with opt.record_stats():
                    out = model(x)
            else:
                out = model(x)
            opt.zero_grad()
            F.cross_entropy(out, y).backward()
            opt.step()
        clock += time.perf_counter() - start
        train_loss, _ = evaluate(model, data.x_train, data.y_train)
        _, valid_acc = evaluate(model, data.x_test, data.y_test)
        hist["train_error"].append(train_loss)
        hist["valid_accuracy"].append(valid_acc)
        hist["seconds"].append(clock)
    return hist


def score(h: dict[str, list[float]]) -> tuple[float, float]:
    """A grid point's score: mean validation accuracy over the last 10 epochs, then the lower
    final training error (a NaN error ranks last)."""
    err = h["train_error"][-1]
    tail = h["valid_accuracy"][-10:]
    return sum(tail) / len(tail), -err if err == err else float("-inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", default=None, help="directory with the MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--l2", type=float, default=1e-4, help="L2 coefficient. Default 1e-4.")
    parser.add_argument("--sgd-lrs", type=float, nargs="+", default=[0.03, 0.1, 0.3, 1.0])
    parser.add_argument("--adam-lrs", type=float, nargs="+", default=[3e-4, 1e-3, 3e-3])
    parser.add_argument("--rngd-lrs", type=float, nargs="+", default=[0.03, 0.1, 0.3])
    parser.add_argument("--rngd-damping", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/img")
    args = parser.parse_args()
    torch.set_num_threads(1)

    raw = load_mnist(args.mnist) if args.mnist else load_digits()
    data = type(raw)(raw.x_train.flatten(1), raw.y_train, raw.x_test.flatten(1), raw.y_test,
                     raw.name)
    torch.manual_seed(args.seed)
    init = mlp(data.x_train.shape[1]).state_dict()
    results, best_lr = {}, {}
    grids = {"sgd": args.sgd_lrs, "adam": args.adam_lrs, "rngd": args.rngd_lrs}
    for name, lrs in grids.items():
        runs = {}
        for lr in lrs:
            h = runs[lr] = train(name, lr, init, data, args)
            print(f"{name} lr {lr:g}: final train error {h['train_error'][-1]:.4f}, valid "
                  f"accuracy {h['valid_accuracy'][-1]:.4f} (best {max(h['valid_accuracy']):.4f}),"
                  f" {h['seconds'][-1]:.1f} s", flush=True)
        best_lr[name] = max(runs, key=lambda lr: score(runs[lr]))
        results[name] = runs[best_lr[name]]
    print("chosen learning rates:", {k: f"{v:g}" for k, v in best_lr.items()})

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_err, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"sgd": "black", "adam": "tab:blue", "rngd": "tab:red"}
    for name, h in results.items():
        epochs = range(1, len(h["train_error"]) + 1)
        label = f"{name.upper()} lr {best_lr[name]:g}"
        ax_err.plot(epochs, h["train_error"], color=colors[name], label=f"{label} (train)")
        ax_acc.plot(epochs, h["valid_accuracy"], color=colors[name], label=f"{label} (valid)")
    ax_err.set_yscale("log")
    ax_err.set_xlabel("epoch")
    ax_err.set_ylabel("training error (cross-entropy)")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation accuracy")
    ax_acc.set_ylim(max(0.0, min(min(h["valid_accuracy"][2:]) for h in results.values()) - 0.01),
                    1.0)
    for ax in (ax_err, ax_acc):
        ax.legend()
    n_in = data.x_train.shape[1]
    fig.suptitle(f"MLP {n_in}-80-80-80-10 relu on {data.name}, batch {args.batch}, "
                 f"L2 {args.l2:g}")
    fig.tight_layout()
    path = Path(args.out) / f"rngd_mlp_{data.name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
