"""Bayesian-NN regression: Bayes by Backprop vs noisy Adam (NG_FFG) vs noisy K-FAC (NG_MVG).

The protocol of Zhang et al. (2018), section 5.2 (after Hernandez-Lobato & Adams 2015): random
90/10 train/test splits, inputs and targets standardized with the training split's statistics,
one hidden layer of 50 ReLU units, a Gaussian likelihood with a learned precision (Gamma(6, 6)
prior), and per split the test RMSE of the predictive mean and the test log-likelihood of the
Monte Carlo predictive (``--test-samples`` posterior samples, default 1000), both in the target's
original units. Prints mean
+- standard error over splits in the paper's layout (rows: datasets; columns: BBB / NG_FFG /
NG_MVG for each metric) and writes it as markdown (``--out``).

Datasets: scikit-learn's diabetes (ships with scikit-learn); California housing only if it is
already in the scikit-learn data cache (it needs a download; skipped otherwise, with a note); any
CSV with a header row via ``--csv PATH --target COLUMN`` (repeatable; non-numeric columns and rows
with missing values are rejected with an error).

Every method gets the same splits, epochs, batch size, prior, KL weight and noise model; the
step size of each is chosen by ``--sweep``: for each method and each step size of
``--sweep-lrs`` (default 1e-3 3e-3 1e-2 3e-2), train on 80% of the training split of the first
``--sweep-splits`` splits and score the log-likelihood on the other 20% (the test parts are not
used); the best step size per method is printed. ``DEFAULT_LRS`` holds the result of that sweep
on diabetes (command in docs/natural_gradient.md).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bnn_regression.py --workers 2      # about 6 minutes
    OMP_NUM_THREADS=1 python benchmarks/bnn_regression.py --sweep --workers 2
    python benchmarks/bnn_regression.py --csv concrete.csv --target strength --splits 20
"""

from __future__ import annotations

import argparse
import csv
import math
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from acktr.noisy.regression import METHODS, FitConfig, evaluate, fit

LABELS = {"bbb": "BBB", "noisy_adam": "NG_FFG (NoisyAdam)", "noisy_kfac": "NG_MVG (NoisyKFAC)"}
# Best validation log-likelihood of `--sweep` on diabetes (see docs/natural_gradient.md).
DEFAULT_LRS = {"bbb": 1e-3, "noisy_adam": 3e-3, "noisy_kfac": 3e-3}

Dataset = tuple[np.ndarray, np.ndarray]


# ---------------------------------------------------------------------- data
def load_diabetes() -> Dataset:
    from sklearn.datasets import load_diabetes as load

    d = load()
    return d.data.astype(np.float64), d.target.astype(np.float64)


def load_california() -> Dataset | None:
    """California housing if cached locally (no download), else None."""
    from sklearn.datasets import fetch_california_housing

    try:
        d = fetch_california_housing(download_if_missing=False)
    except OSError:
        return None
    return d.data.astype(np.float64), d.target.astype(np.float64)


def load_csv(path: str, target: str) -> Dataset:
    """A numeric CSV with a header; ``target`` names the target column (the rest are inputs)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 3:
        raise ValueError(f"{path}: need a header row and at least 2 data rows, got {len(rows)}")
    header = [h.strip() for h in rows[0]]
    if target not in header:
        raise ValueError(f"{path}: no column {target!r}; columns are {header}")
    try:
        data = np.array([[float(v) for v in r] for r in rows[1:] if r], dtype=np.float64)
    except ValueError as e:
        raise ValueError(f"{path}: every value must be numeric ({e})") from e
    if not np.isfinite(data).all():
        raise ValueError(f"{path}: missing or non-finite values")
    j = header.index(target)
    return np.delete(data, j, axis=1), data[:, j]


def split(x: np.ndarray, y: np.ndarray, seed: int, train_frac: float = 0.9):
    """A random train/test split, standardized with the training part's mean and std."""
    perm = np.random.default_rng(seed).permutation(len(x))
    n_train = int(round(train_frac * len(x)))
    tr, te = perm[:n_train], perm[n_train:]
    xm, xs = x[tr].mean(0), x[tr].std(0)
    xs[xs == 0] = 1.0
    ym, ys = y[tr].mean(), y[tr].std()
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return (t((x[tr] - xm) / xs), t((y[tr] - ym) / ys), t((x[te] - xm) / xs),
            t((y[te] - ym) / ys), float(ys))


# ---------------------------------------------------------------------- runs
def run_one(job: tuple) -> dict[str, float]:
    """Train one method on one split and evaluate it (a process-pool job)."""
    x, y, seed, train_frac, cfg, n_samples = job
    torch.set_num_threads(1)
    xtr, ytr, xte, yte, ys = split(x, y, seed, train_frac)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        model, opt, _ = fit(xtr, ytr, cfg, seed=seed)
    return evaluate(model, opt, xte, yte, y_scale=ys, n_samples=n_samples)


def run_jobs(jobs: list[tuple], workers: int) -> list[dict[str, float]]:
    if workers <= 1:
        return [run_one(j) for j in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(run_one, jobs))


def mean_se(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else 0.0


def table(results: dict[str, dict[str, list[dict[str, float]]]], methods: list[str]) -> str:
    """Markdown in the paper's layout: one row per dataset, RMSE then log-likelihood columns."""
    head = ["Dataset"] + [f"RMSE {LABELS[m]}" for m in methods]
    head += [f"Test LL {LABELS[m]}" for m in methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, per_method in results.items():
        cells = [name]
        for metric in ("rmse", "loglik"):
            stats = {m: mean_se([r[metric] for r in per_method[m]]) for m in methods}
            best = (min if metric == "rmse" else max)(stats, key=lambda m: stats[m][0])
            for m in methods:
                mu, se = stats[m]
                cell = f"{mu:.3f} ± {se:.3f}"
                cells.append(f"**{cell}**" if m == best else cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def config(args: argparse.Namespace, method: str, lr: float) -> FitConfig:
    return FitConfig(
        method=method,  # type: ignore[arg-type]
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=lr,
        kl_weight=args.kl_weight,
        prior_var=args.prior_var,
    )


def sweep(datasets: dict[str, Callable[[], Dataset]], args: argparse.Namespace) -> None:
    """Validation log-likelihood of every method x step size (80/20 of the training split)."""
    for name, load in datasets.items():
        x, y = load()
        print(f"\n## sweep on {name}: validation log-likelihood (mean ± se over "
              f"{args.sweep_splits} splits)")
        for method in args.methods:
            scores = {}
            for lr in args.sweep_lrs:
                # 80% of the 90% training part: train_frac 0.72 of the data, validation the rest
                # of the training part (the test part of split s is never touched).
                jobs = []
                for s in range(args.sweep_splits):
                    xtr, ytr = _train_part(x, y, s)
                    jobs.append((xtr, ytr, 1000 + s, 0.8, config(args, method, lr),
                             args.test_samples))
                res = run_jobs(jobs, args.workers)
                scores[lr] = mean_se([r["loglik"] for r in res])
                print(f"{LABELS[method]:>20} lr={lr:g}: LL {scores[lr][0]:.3f} ± "
                      f"{scores[lr][1]:.3f}, RMSE {np.mean([r['rmse'] for r in res]):.3f}",
                      flush=True)
            best = max(scores, key=lambda k: scores[k][0])
            print(f"{LABELS[method]:>20} best lr: {best:g}")


def _train_part(x: np.ndarray, y: np.ndarray, seed: int) -> Dataset:
    perm = np.random.default_rng(seed).permutation(len(x))
    tr = perm[: int(round(0.9 * len(x)))]
    return x[tr], y[tr]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--splits", type=int, default=10, help="random 90/10 splits (default 10)")
    p.add_argument("--epochs", type=int, default=200, help="default 200")
    p.add_argument("--batch-size", type=int, default=10, help="default 10 (the paper's)")
    p.add_argument("--kl-weight", type=float, default=1.0, help="lambda (default 1)")
    p.add_argument("--prior-var", type=float, default=1.0, help="eta (default 1)")
    p.add_argument("--test-samples", type=int, default=1000,
                   help="posterior samples of the Monte Carlo predictive (default 1000)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--lrs", nargs="+", type=float, default=None,
                   help="one step size per method (default: DEFAULT_LRS)")
    p.add_argument("--csv", action="append", default=[], help="a numeric CSV with a header")
    p.add_argument("--target", action="append", default=[], help="target column of each --csv")
    p.add_argument("--no-diabetes", action="store_true", help="skip diabetes")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--out", default="runs/bnn_regression.md", help="markdown table path")
    p.add_argument("--sweep", action="store_true", help="choose step sizes on validation data")
    p.add_argument("--sweep-lrs", nargs="+", type=float, default=[1e-3, 3e-3, 1e-2, 3e-2])
    p.add_argument("--sweep-splits", type=int, default=3)
    args = p.parse_args()
    if len(args.csv) != len(args.target):
        p.error("give one --target per --csv")
    if args.lrs is not None and len(args.lrs) != len(args.methods):
        p.error("give one --lrs value per method")

    datasets: dict[str, Callable[[], Dataset]] = {}
    if not args.no_diabetes:
        datasets["diabetes"] = load_diabetes
    cal = load_california()
    if cal is None:
        print("California housing: not in the scikit-learn cache (needs a download); skipped")
    else:
        datasets["california"] = lambda: cal  # type: ignore[assignment,return-value]
    for path, target in zip(args.csv, args.target, strict=True):
        data = load_csv(path, target)
        datasets[Path(path).stem] = lambda d=data: d  # type: ignore[misc]
    if not datasets:
        p.error("no dataset: drop --no-diabetes or give --csv")

    if args.sweep:
        sweep(datasets, args)
        return
    lrs = dict(zip(args.methods, args.lrs, strict=True)) if args.lrs else DEFAULT_LRS
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for name, load in datasets.items():
        x, y = load()
        results[name] = {}
        for method in args.methods:
            t0 = time.perf_counter()
            jobs = [(x, y, s, 0.9, config(args, method, lrs[method]), args.test_samples)
                    for s in range(args.splits)]
            results[name][method] = run_jobs(jobs, args.workers)
            rm = mean_se([r["rmse"] for r in results[name][method]])
            ll = mean_se([r["loglik"] for r in results[name][method]])
            print(f"{name} {LABELS[method]}: RMSE {rm[0]:.3f} ± {rm[1]:.3f}, LL {ll[0]:.3f} ± "
                  f"{ll[1]:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    md = table(results, args.methods)
    settings = (f"{args.splits} random 90/10 splits, {args.epochs} epochs, batch {args.batch_size},"
                f" lambda {args.kl_weight:g}, eta {args.prior_var:g},"
                f" {args.test_samples} test samples, step sizes "
                + ", ".join(f"{LABELS[m]} {lrs[m]:g}" for m in args.methods))
    print("\n" + md + "\n\n" + settings)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md + "\n\n" + settings + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
