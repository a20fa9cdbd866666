"""Fig. 1 of Bernacchia, Lengyel & Hennequin (2018): exact natural gradient (ExactNGD) vs SGD.

Panels A-C: deep *linear* networks learn a teacher of their own class (square: 16 layers of
width 20; non-square: 20, 30, ..., 100, ..., 30, 20; bottleneck: 200, 80, 34, 20, 10, 5, 2, 5,
..., 80, 200) from 10^4 training examples; inputs ``N(0, Sigma)``, ``Sigma`` with random
orthogonal eigenvectors and eigenvalues ``exp(-5 i / n0)``; outputs with noise ``N(0, 1e-6 I)``.
The test error (mean squared error per output coordinate on 10^3 test examples) is plotted
against examples seen and wall-clock; the minimum achievable is the noise variance 1e-6.
NGD: ``alpha = 1``, batch 1000, K = 1 sampled target, Levenberg-Marquardt damping (eqs. 20-21).
SGD: batch 20, the best learning rate of a grid (by final test error). Both start from the same
weights. Float64.

Panel D: tanh autoencoder with a linear last layer and squared error (the paper's
784-400-200-100-50-100-200-400-784 on MNIST IDX files with ``--mnist DIR``; on scikit-learn's
digits by default, 64-100-50-25-12-25-50-100-64). Float32.

After the runs it prints the goal the theory sets: NGD within 2x of the minimum achievable loss
within 10 passes on A and B, SGD at least 10x above it.

Usage (each figure is written to ``docs/img``)::

    python benchmarks/ngd_linear_networks.py                 # panels A-D, digits for D
    python benchmarks/ngd_linear_networks.py --panels A --passes 10
    python benchmarks/ngd_linear_networks.py --panels D --mnist ~/data/mnist
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from acktr.exact_ngd import ExactNGD
from acktr.examples.data import load_digits, load_mnist
from acktr.losses import fisher_loss

ARCHITECTURES: dict[str, list[int]] = {
    "A": [20] * 17,
    "B": [20, 30, 40, 50, 60, 70, 80, 90, 100, 90, 80, 70, 60, 50, 40, 30, 20],
    "C": [200, 80, 34, 20, 10, 5, 2, 5, 10, 20, 34, 80, 200],
}
TITLES = {"A": "linear (square)", "B": "linear (non-square)", "C": "linear (bottleneck)"}
NOISE = 1e-6


@dataclass
class Curve:
    """Test error against examples seen and training wall-clock (evaluation excluded)."""

    label: str
    examples: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    diverged: bool = False

    def add(self, examples: int, seconds: float, error: float) -> None:
        self.examples.append(examples)
        self.seconds.append(seconds)
        self.errors.append(error)


@dataclass
class Problem:
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    build: Callable[[], nn.Module]
    floor: float  # the minimum achievable test error


def linear_net(widths: list[int]) -> nn.Sequential:
    """A deep linear network without biases, weights ``N(0, 1/fan_in)``."""
    layers = [nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    for layer in layers:
        nn.init.normal_(layer.weight, std=layer.in_features**-0.5)
    return nn.Sequential(*layers)


def teacher_problem(widths: list[int], seed: int, n_train: int = 10_000, n_test: int = 1000):
    """Correlated Gaussian inputs through a random teacher of the same class, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    n0 = widths[0]
    q, _ = torch.linalg.qr(torch.randn(n0, n0, generator=gen, dtype=torch.float64))
    scale = torch.exp(-5.0 * torch.arange(n0, dtype=torch.float64) / n0).sqrt()
    torch.manual_seed(seed + 1)
    teacher = linear_net(widths)
    with torch.no_grad():
        x = (torch.randn(n_train + n_test, n0, generator=gen, dtype=torch.float64) * scale) @ q.T
        y = teacher(x)
        y = y + math.sqrt(NOISE) * torch.randn(y.shape, generator=gen, dtype=torch.float64)
    return Problem(x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                   lambda: linear_net(widths), NOISE)


def autoencoder_problem(mnist: str | None) -> Problem:
    data = load_mnist(mnist) if mnist else load_digits()
    widths = [784, 400, 200, 100, 50] if mnist else [64, 100, 50, 25, 12]
    sizes = widths + widths[-2::-1]

    def build() -> nn.Module:
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            mods.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                mods.append(nn.Tanh())
        return nn.Sequential(*mods).float()

    x_train, x_test = data.x_train.flatten(1), data.x_test.flatten(1)
    return Problem(x_train, x_train, x_test, x_test, build, float("nan"))


def squared_error(out: Tensor, y: Tensor) -> Tensor:
    """The training loss: ``0.5 * ||out - y||^2`` summed over outputs, batch mean (eq. 6 with
    unit variance; the Fisher loss is ``fisher_loss(out, "gaussian")``)."""
    return 0.5 * ((out - y) ** 2).sum(1).mean()


@torch.no_grad()
def test_error(model: nn.Module, p: Problem) -> float:
    """Mean squared error per output coordinate on the test set."""
    return float(((model(p.x_test) - p.y_test) ** 2).mean())


def train(
    p: Problem, init: dict, optimizer: str, lr: float, batch: int, passes: float,
    eval_every: int, seed: int, damping: float = 1e-3,
) -> Curve:
    """One run from the weights ``init``; evaluates every ``eval_every`` examples."""
    model = p.build()
    model.load_state_dict(init)
    label = f"NGD (batch {batch})" if optimizer == "ngd" else f"SGD lr {lr:g} (batch {batch})"
    curve = Curve(label)
    opt = ExactNGD(model, lr=lr, damping=damping) if optimizer == "ngd" else torch.optim.SGD(
        model.parameters(), lr=lr
    )
    gen = torch.Generator().manual_seed(seed)
    n = len(p.x_train)
    total = int(passes * n)
    seen, clock, next_eval = 0, 0.0, 0
    perm = torch.randperm(n, generator=gen)
    pos = 0
    while True:
        if seen >= next_eval:
            err = test_error(model, p)
            curve.add(seen, clock, err)
            if not math.isfinite(err) or err > 1e6:
                curve.diverged = True
                break
            next_eval += eval_every
        if seen >= total:
            break
        if pos + batch > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        idx = perm[pos : pos + batch]
        pos += batch
        x, y = p.x_train[idx], p.y_train[idx]
        start = time.perf_counter()
        out = model(x)
        if optimizer == "ngd":
            with opt.record_stats():
                fisher_loss(out, "gaussian").backward(retain_graph=True)
        opt.zero_grad()
        loss = squared_error(out, y)
        loss.backward()
        if optimizer == "ngd":
            opt.step(lambda x=x, y=y: squared_error(model(x), y), loss=loss)
        else:
            opt.step()
        clock += time.perf_counter() - start
        seen += batch
    return curve


def run_panel(name: str, p: Problem, args: argparse.Namespace) -> dict[str, object]:
    torch.manual_seed(args.seed + 100)
    init = p.build().state_dict()
    is_d = name == "D"
    ngd_batch = args.ngd_batch or (250 if is_d and not args.mnist else 1000)
    passes = args.passes_d if is_d else args.passes
    eval_every = max(1000, ngd_batch) if not is_d else ngd_batch
    ngd = train(p, init, "ngd", 1.0, ngd_batch, passes, eval_every, args.seed,
                damping=args.ngd_damping)
    print(f"[{name}] {ngd.label}: final test error {ngd.errors[-1]:.3g} "
          f"({ngd.seconds[-1]:.1f} s)", flush=True)
    sgd_runs = []
    for lr in args.sgd_lrs:
        run = train(p, init, "sgd", lr, 20, passes, eval_every, args.seed)
        status = "diverged" if run.diverged else f"final {run.errors[-1]:.3g}"
        print(f"[{name}] {run.label}: {status} ({run.seconds[-1]:.1f} s)", flush=True)
        sgd_runs.append(run)
    finite = [r for r in sgd_runs if not r.diverged]
    best = min(finite, key=lambda r: r.errors[-1]) if finite else sgd_runs[0]
    return {"ngd": ngd, "sgd": best, "sgd_all": sgd_runs, "floor": p.floor,
            "n_train": len(p.x_train)}


def report_goal(name: str, res: dict[str, object]) -> None:
    ngd: Curve = res["ngd"]  # type: ignore[assignment]
    sgd: Curve = res["sgd"]  # type: ignore[assignment]
    floor: float = res["floor"]  # type: ignore[assignment]
    n: int = res["n_train"]  # type: ignore[assignment]
    within = [e / n for e, err in zip(ngd.examples, ngd.errors, strict=True) if err <= 2 * floor]
    first = f"{within[0]:.1f} passes" if within else "not reached"
    print(
        f"[{name}] min achievable {floor:.3g}; NGD final {ngd.errors[-1]:.3g} "
        f"({ngd.errors[-1] / floor:.2f}x), within 2x after {first}; best SGD ({sgd.label}) "
        f"final {sgd.errors[-1]:.3g} ({sgd.errors[-1] / floor:.1f}x)"
    )


def plot(results: dict[str, dict[str, object]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(2, len(names), figsize=(max(4 * len(names), 7), 6.5), squeeze=False)
    for col, name in enumerate(names):
        res = results[name]
        for key, color in (("sgd", "black"), ("ngd", "tab:red")):
            c: Curve = res[key]  # type: ignore[assignment]
            errs = torch.tensor(c.errors)
            ys = errs.log10() if name != "D" else errs
            axes[0, col].plot([e / 1000 for e in c.examples], ys, color=color, label=c.label)
            axes[1, col].plot(c.seconds, ys, color=color, label=c.label)
        floor = res["floor"]
        for row in range(2):
            ax = axes[row, col]
            if name != "D":
                ax.axhline(math.log10(floor), color="gray", ls="--", label="min. achievable")
            ax.set_ylabel("log10(test error)" if name != "D" else "test error (MSE/pixel)")
            ax.set_xlabel("training examples (x10^3)" if row == 0 else "wall-clock time [s]")
        axes[0, col].set_title(f"{name}: {TITLES.get(name, 'tanh autoencoder')}")
        axes[0, col].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--panels", nargs="+", default=["A", "B", "C", "D"],
                        choices=["A", "B", "C", "D"])
    parser.add_argument("--passes", type=float, default=10.0,
                        help="passes over the 10^4 training examples (A-C). Default 10.")
    parser.add_argument("--passes-d", type=float, default=60.0,
                        help="passes over the training set for panel D. Default 60.")
    parser.add_argument("--sgd-lrs", type=float, nargs="+",
                        default=[0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32])
    parser.add_argument("--ngd-batch", type=int, default=None,
                        help="NGD batch (default 1000; 250 for panel D on digits)")
    parser.add_argument("--ngd-damping", type=float, default=1e-3,
                        help="initial damping lambda of eq. 20. Default 1e-3.")
    parser.add_argument("--mnist", default=None, help="directory with the MNIST IDX files (D)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/img")
    args = parser.parse_args()
    torch.set_num_threads(1)

    linear = [p for p in args.panels if p in ARCHITECTURES]
    results: dict[str, dict[str, object]] = {}
    torch.set_default_dtype(torch.float64)
    for name in linear:
        results[name] = run_panel(name, teacher_problem(ARCHITECTURES[name], args.seed), args)
    torch.set_default_dtype(torch.float32)
    for name in linear:
        report_goal(name, results[name])
    if linear:
        plot(results, Path(args.out) / "ngd_linear_networks.png",
             "Exact NGD vs SGD on deep linear networks (Bernacchia et al. 2018, Fig. 1 A-C)")
    if "D" in args.panels:
        res = {"D": run_panel("D", autoencoder_problem(args.mnist), args)}
        data = "mnist" if args.mnist else "digits"
        for key in ("ngd", "sgd"):
            c: Curve = res["D"][key]  # type: ignore[assignment]
            print(f"[D] {c.label}: test error {c.errors[-1]:.4g} after {c.examples[-1]} "
                  f"examples, {c.seconds[-1]:.1f} s")
        plot(res, Path(args.out) / f"ngd_autoencoder_{data}.png",
             f"Exact NGD vs SGD, tanh autoencoder on {data} (Fig. 1 D)")


if __name__ == "__main__":
    main()
