"""RBM experiment: SGD vs the centering trick vs FANG on the same PCD gradient.

Trains binary RBMs on binarized scikit-learn digits (offline; 64 visible units) or on MNIST IDX
files the user provides (784 visible, 500 hidden as in the FANG slides), sweeping a small grid of
learning rates per optimizer with the same seed, initialization, minibatches and chain start.
Records test log-likelihood vs iterations and vs training wall-clock (exact ``log Z`` when a layer
has at most 20 units, otherwise AIS with a bootstrap interval), picks each optimizer's learning
rate by final validation log-likelihood, measures the cost per iteration (also at the slides'
784 x 500 size on random data), and compares FANG's and centering's approximations of the exact
Fisher on the small model (KL divergences). Writes a PNG per dataset and a markdown report.

    python -m acktr.rbm.experiment                       # digits, 16 and 100 hidden units
    python -m acktr.rbm.experiment --mnist DIR --hidden 500 --iters 20000
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from acktr.rbm.ais import ais_log_partition
from acktr.rbm.exact import MAX_ENUMERATED_UNITS, exact_log_partition, exact_statistics, gaussian_kl
from acktr.rbm.fisher import GraphicalFisher
from acktr.rbm.model import RBM, data_log_odds
from acktr.rbm.optimizers import FANG, SGD, Centered
from acktr.rbm.pcd import PersistentChains, likelihood_gradient

OPTIMIZERS = {"sgd": SGD, "centered": Centered, "fang": FANG}
DEFAULT_LRS = {
    "sgd": (0.03, 0.1, 0.3, 1.0),
    "centered": (0.03, 0.1, 0.3, 1.0),
    "fang": (0.01, 0.03, 0.1, 0.3),
}
"""Learning rates swept per optimizer (FANG's are in units of the moments, see its docstring)."""


@dataclass
class Config:
    """Settings shared by every run of one experiment (defaults: the digits experiment)."""

    iters: int = 3000
    batch_size: int = 100
    n_chains: int = 100
    gibbs_steps: int = 1
    n_evals: int = 10
    ais_chains: int = 100
    ais_betas: int = 1000
    ais_betas_final: int = 3000
    seed: int = 0
    lr_decay: str = "linear"
    fang_damping: float = 0.1

    def schedule(self, lr: float):
        """``lr`` constant, or decayed linearly to 0 at the last iteration."""
        if self.lr_decay == "none":
            return lr
        return lambda step: lr * (1.0 - step / self.iters)

    def make_optimizer(self, method: str, rbm: RBM, lr: float):
        kwargs = {"damping": self.fang_damping} if method == "fang" else {}
        return OPTIMIZERS[method](rbm, lr=self.schedule(lr), **kwargs)


@dataclass
class Run:
    """One optimizer at one learning rate: evaluations along training."""

    method: str
    lr: float
    iterations: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    test_ll: list[float] = field(default_factory=list)
    test_lower: list[float] = field(default_factory=list)
    test_upper: list[float] = field(default_factory=list)
    valid_ll: list[float] = field(default_factory=list)
    train_seconds: float = 0.0
    diverged: bool = False
    model: RBM | None = field(default=None, repr=False)

    @property
    def final_valid(self) -> float:
        return -math.inf if self.diverged or not self.valid_ll else self.valid_ll[-1]

    @property
    def ms_per_iter(self) -> float:
        return 1e3 * self.train_seconds / max(self.iterations[-1], 1)


@dataclass
class Split:
    train: Tensor
    valid: Tensor
    test: Tensor
    name: str


def load_binary(mnist_dir: str | None, valid_fraction: float = 0.2, seed: int = 0) -> Split:
    """Binarized (pixel > 0.5) digits, or MNIST from ``mnist_dir``; validation out of train."""
    from acktr.examples.data import load_digits, load_mnist

    ds = load_mnist(mnist_dir) if mnist_dir else load_digits(seed=seed)
    train = (ds.x_train.reshape(len(ds.x_train), -1) > 0.5).float()
    test = (ds.x_test.reshape(len(ds.x_test), -1) > 0.5).float()
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    n_valid = int(round(valid_fraction * len(train)))
    return Split(train[perm[n_valid:]], train[perm[:n_valid]], test, ds.name)


def evaluate(rbm: RBM, split: Split, cfg: Config, final: bool, gen: torch.Generator):
    """``(test LL, lower, upper, valid LL)``: exact when a layer has <= 20 units, else AIS."""
    neg_f_test = float(-rbm.free_energy(split.test).double().mean())
    neg_f_valid = float(-rbm.free_energy(split.valid).double().mean())
    if min(rbm.n_visible, rbm.n_hidden) <= MAX_ENUMERATED_UNITS:
        log_z = lower = upper = exact_log_partition(rbm)
    else:
        betas = cfg.ais_betas_final if final else cfg.ais_betas
        est = ais_log_partition(rbm, cfg.ais_chains, betas, split.train, generator=gen)
        log_z, (lower, upper) = est.log_z, est.interval
    return neg_f_test - log_z, neg_f_test - upper, neg_f_test - lower, neg_f_valid - log_z


def eval_points(iters: int, n: int) -> list[int]:
    """0 and ``n`` roughly geometric points up to ``iters``."""
    points = {0, iters}
    for k in range(n):
        points.add(
            int(round(math.exp(math.log(50) + (math.log(iters) - math.log(50)) * k / (n - 1))))
        )
    return sorted(p for p in points if p <= iters)


def initial_state(split: Split, n_hidden: int, cfg: Config) -> tuple[RBM, PersistentChains]:
    """The seeded start every run shares: weights N(0, 0.01^2), visible biases at the data's
    log-odds (Hinton's guide), chains started from training images."""
    gen = torch.Generator().manual_seed(cfg.seed)
    n_visible = split.train.shape[1]
    rbm = RBM(n_visible, n_hidden, generator=gen)
    with torch.no_grad():
        rbm.a.copy_(data_log_odds(split.train))
    init = split.train[torch.randint(0, len(split.train), (cfg.n_chains,), generator=gen)]
    chains = PersistentChains(n_visible, cfg.n_chains, cfg.gibbs_steps, init=init, generator=gen)
    return rbm, chains


def train_run(method: str, lr: float, split: Split, n_hidden: int, cfg: Config) -> Run:
    """Train one RBM; same seed -> same initialization, minibatches and chain start for all."""
    rbm, chains = initial_state(split, n_hidden, cfg)
    opt = cfg.make_optimizer(method, rbm, lr)
    eval_gen = torch.Generator().manual_seed(cfg.seed + 1)
    batches = torch.Generator().manual_seed(cfg.seed + 2)
    run = Run(method, lr)
    points = eval_points(cfg.iters, cfg.n_evals)
    for it in range(cfg.iters + 1):
        if it in points:
            lls = evaluate(rbm, split, cfg, final=it == cfg.iters, gen=eval_gen)
            run.iterations.append(it)
            run.seconds.append(run.train_seconds)
            for name, value in zip(
                ("test_ll", "test_lower", "test_upper", "valid_ll"), lls, strict=True
            ):
                getattr(run, name).append(value)
            if not all(math.isfinite(x) for x in lls):
                run.diverged = True
                break
        if it == cfg.iters:
            break
        idx = torch.randint(0, len(split.train), (cfg.batch_size,), generator=batches)
        start = time.perf_counter()
        opt.step(likelihood_gradient(rbm, split.train[idx], chains))
        run.train_seconds += time.perf_counter() - start
    run.model = rbm
    return run


def time_per_iteration(
    n_visible: int, n_hidden: int, cfg: Config, rounds: int = 5, iters: int = 40
) -> dict[str, float]:
    """Median milliseconds per training iteration of each optimizer on random binary data.

    Rounds interleave the optimizers so that load from other jobs affects all of them alike;
    FANG's accumulation and refits run on their own schedule within the timed iterations
    (``iters`` a multiple of ``stats_every``; a refit every 100 iterations, so rounds of 40 hold
    the refit at iteration 0 and then one in two or three of them).
    """
    gen = torch.Generator().manual_seed(cfg.seed)
    data = torch.bernoulli(torch.full((1000, n_visible), 0.13), generator=gen)
    setups = {}
    for method in OPTIMIZERS:
        rbm = RBM(n_visible, n_hidden, generator=torch.Generator().manual_seed(0))
        chains = PersistentChains(n_visible, cfg.n_chains, cfg.gibbs_steps, generator=gen)
        setups[method] = (rbm, chains, cfg.make_optimizer(method, rbm, 1e-3))
    times: dict[str, list[float]] = {m: [] for m in OPTIMIZERS}
    for _ in range(rounds):
        for method, (rbm, chains, opt) in setups.items():
            start = time.perf_counter()
            for _ in range(iters):
                idx = torch.randint(0, len(data), (cfg.batch_size,), generator=gen)
                opt.step(likelihood_gradient(rbm, data[idx], chains))
            times[method].append(1e3 * (time.perf_counter() - start) / iters)
    return {m: statistics.median(t) for m, t in times.items()}


def fisher_kl(rbm: RBM) -> dict[str, tuple[float, float]]:
    """KL divergences between ``N(0, G)`` and approximations, both directions, exact ``G``.

    Returns ``{name: (KL(N(0,G) || N(0,G~)), KL(N(0,G~) || N(0,G)))}``; the first equals
    ``KL(N(0, G~^-1) || N(0, G^-1))``, the comparison of the inverse Fishers. Approximations:
    FANG fitted to the exact moments; the centering trick's (offsets at the exact means) and the
    identity, both at their best scalar multiple (a learning rate absorbs it); centering's
    regression weights with fitted variances; and the diagonal.
    """
    mean, cov = exact_statistics(rbm)
    n_v, n_u = rbm.n_visible, rbm.n_visible + rbm.n_hidden
    mean_u = mean[:n_u]
    fang = GraphicalFisher.fit(mean_u, cov[:n_u, :n_u] + torch.outer(mean_u, mean_u), n_v)
    second_u = cov[:n_u, :n_u] + torch.outer(mean_u, mean_u)
    centering_model = GraphicalFisher.centering(mean[:n_v], mean[n_v:n_u])
    centering = centering_model.covariance()
    centering_fitted = centering_model.with_fitted_variances(mean_u, second_u).covariance()
    eye = torch.eye(len(cov), dtype=cov.dtype)

    def best_scale(approx: Tensor) -> Tensor:
        # argmin_c KL(N(0,G) || N(0, c A)) = tr(A^-1 G) / D
        return approx * float(torch.linalg.solve(approx, cov).diagonal().sum()) / len(cov)

    approximations = {
        "identity (SGD), best scale": best_scale(eye),
        "diagonal": torch.diag(cov.diagonal()),
        "centering, best scale": best_scale(centering),
        "centering weights, fitted variances": centering_fitted,
        "FANG": fang.covariance(),
    }
    return {k: (gaussian_kl(cov, a), gaussian_kl(a, cov)) for k, a in approximations.items()}


def best_runs(runs: Sequence[Run]) -> dict[str, Run]:
    """Each method's run with the best final validation log-likelihood."""
    best: dict[str, Run] = {}
    for run in runs:
        if run.method not in best or run.final_valid > best[run.method].final_valid:
            best[run.method] = run
    return best


def plot(results: dict[int, list[Run]], title: str, path: Path) -> None:
    """Best run per method: test LL vs iterations and vs training seconds, one row per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 2, figsize=(11, 4 * len(results)), squeeze=False)
    colors = {"sgd": "tab:blue", "centered": "tab:orange", "fang": "tab:green"}
    for row, (n_hidden, runs) in zip(axes, results.items(), strict=True):
        for method, run in best_runs(runs).items():
            label = f"{method} (lr {run.lr:g})"
            for ax, x in zip(row, (run.iterations, run.seconds), strict=True):
                ax.plot(x, run.test_ll, "o-", ms=3, color=colors[method], label=label)
                ax.fill_between(x, run.test_lower, run.test_upper, color=colors[method], alpha=0.25)
        lls = [v for run in best_runs(runs).values() for v in run.test_ll[1:]]
        for ax, xlabel in zip(row, ("iteration", "training seconds"), strict=True):
            ax.set_xlabel(xlabel)
            ax.set_ylabel("test log-likelihood (nats)")
            ax.set_title(f"{title}, {n_hidden} hidden")
            if lls:
                ax.set_ylim(min(lls) - 1, max(lls) + 0.5)
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt_ll(run: Run, k: int = -1) -> str:
    if run.diverged:
        return "diverged"
    if run.test_lower[k] == run.test_upper[k]:
        return f"{run.test_ll[k]:.2f}"
    return f"{run.test_ll[k]:.2f} [{run.test_lower[k]:.2f}, {run.test_upper[k]:.2f}]"


def markdown(
    split: Split,
    results: dict[int, list[Run]],
    cfg: Config,
    timing: dict[str, float] | None,
    timing_size: tuple[int, int],
    kl: dict[str, tuple[float, float]] | None,
    command: str,
) -> str:
    """The report: per model a table of every run, then the cost and KL tables."""
    lines = [f"Command: `{command}`", ""]
    lines.append(
        f"Data: {split.name}, binarized at 0.5; {len(split.train)} train / {len(split.valid)} "
        f"validation / {len(split.test)} test. {cfg.iters} iterations, batch {cfg.batch_size}, "
        f"PCD with {cfg.n_chains} chains x {cfg.gibbs_steps} Gibbs sweep(s), no momentum, "
        f"learning rate decay: {cfg.lr_decay}, FANG damping {cfg.fang_damping:g} (refit every "
        f"100 iterations, statistics every 10), seed {cfg.seed}. Learning rate chosen per "
        "optimizer by final validation log-likelihood (*)."
    )
    for n_hidden, runs in results.items():
        exact = min(split.train.shape[1], n_hidden) <= MAX_ENUMERATED_UNITS
        how = (
            "exact log Z"
            if exact
            else (
                f"AIS log Z, {cfg.ais_chains} chains, {cfg.ais_betas_final} betas (final) / "
                f"{cfg.ais_betas} (along the way), 95% bootstrap interval"
            )
        )
        mid = len(runs[0].iterations) // 2
        lines += [
            "",
            f"**{split.train.shape[1]} x {n_hidden}** (test log-likelihood in nats, {how})",
            "",
            f"| optimizer | lr | test LL @ {runs[0].iterations[mid]} | test LL @ {cfg.iters} "
            "| valid LL | ms / iteration |",
            "|---|---|---|---|---|---|",
        ]
        best = best_runs(runs)
        for run in runs:
            star = " (*)" if best[run.method] is run else ""
            mid_ll = _fmt_ll(run, mid) if len(run.test_ll) > mid else "diverged"
            lines.append(
                f"| {run.method}{star} | {run.lr:g} | {mid_ll} | {_fmt_ll(run)} "
                f"| {run.final_valid:.2f} | {run.ms_per_iter:.2f} |"
            )
    if timing:
        base = timing["sgd"]
        nv, nh = timing_size
        lines += [
            "",
            f"**Cost per iteration at {nv} x {nh}** (random binary data, batch {cfg.batch_size}, "
            f"{cfg.n_chains} chains, median of 5 interleaved rounds of 40 iterations, "
            "1 thread)",
            "",
            "| optimizer | ms / iteration | relative to SGD |",
            "|---|---|---|",
        ]
        lines += [f"| {m} | {t:.2f} | {t / base:.2f} |" for m, t in timing.items()]
    if kl:
        lines += [
            "",
            "**Approximations of the exact Fisher G** (final model of the best SGD run, "
            f"{split.train.shape[1]} x {min(results)}), KL divergences in nats",
            "",
            "| approximation G~ | KL(N(0,G) ‖ N(0,G~)) = KL(N(0,G~⁻¹) ‖ N(0,G⁻¹)) "
            "| KL(N(0,G~) ‖ N(0,G)) |",
            "|---|---|---|",
        ]
        lines += [f"| {k} | {a:.1f} | {b:.1f} |" for k, (a, b) in kl.items()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mnist", metavar="DIR", help="MNIST IDX directory (default: digits)")
    parser.add_argument("--hidden", type=int, nargs="+", help="hidden sizes (digits: 16 100)")
    parser.add_argument("--iters", type=int, default=Config.iters)
    parser.add_argument("--batch-size", type=int, default=Config.batch_size)
    parser.add_argument("--chains", type=int, default=Config.n_chains)
    parser.add_argument("--gibbs-steps", type=int, default=Config.gibbs_steps)
    parser.add_argument("--evals", type=int, default=Config.n_evals)
    parser.add_argument("--ais-chains", type=int, default=Config.ais_chains)
    parser.add_argument("--ais-betas", type=int, default=Config.ais_betas)
    parser.add_argument("--ais-betas-final", type=int, default=Config.ais_betas_final)
    parser.add_argument("--seed", type=int, default=Config.seed)
    parser.add_argument("--lr-decay", choices=("linear", "none"), default=Config.lr_decay)
    parser.add_argument("--fang-damping", type=float, default=Config.fang_damping)
    for method, lrs in DEFAULT_LRS.items():
        parser.add_argument(f"--{method}-lrs", type=float, nargs="+", default=list(lrs))
    parser.add_argument(
        "--timing-size", type=int, nargs=2, default=[784, 500], metavar=("NV", "NH")
    )
    parser.add_argument("--no-timing", action="store_true", help="skip the cost benchmark")
    parser.add_argument("--no-kl", action="store_true", help="skip the exact-Fisher KL table")
    parser.add_argument(
        "--out",
        default="docs",
        help="writes OUT/img/rbm_<data><tag>.png, OUT/rbm_<data><tag>_results.md",
    )
    parser.add_argument("--tag", default="", help="suffix of the output file names")
    parser.add_argument("--threads", type=int, default=1)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    for name in ("iters", "batch_size", "chains", "gibbs_steps", "evals", "ais_chains", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.evals < 2 or args.ais_betas < 2 or args.ais_betas_final < 2:
        parser.error("--evals, --ais-betas and --ais-betas-final must be >= 2")
    torch.set_num_threads(args.threads)
    cfg = Config(
        args.iters,
        args.batch_size,
        args.chains,
        args.gibbs_steps,
        args.evals,
        args.ais_chains,
        args.ais_betas,
        args.ais_betas_final,
        args.seed,
        args.lr_decay,
        args.fang_damping,
    )
    split = load_binary(args.mnist, seed=args.seed)
    hidden = args.hidden or ([500] if args.mnist else [16, 100])
    lrs = {m: getattr(args, f"{m}_lrs") for m in DEFAULT_LRS}
    results: dict[int, list[Run]] = {}
    for n_hidden in hidden:
        results[n_hidden] = []
        for method in OPTIMIZERS:
            for lr in lrs[method]:
                run = train_run(method, lr, split, n_hidden, cfg)
                results[n_hidden].append(run)
                state = "diverged" if run.diverged else f"test LL {_fmt_ll(run)}"
                print(
                    f"{n_hidden:>4} hidden  {method:<9} lr={lr:<6g} {state}  "
                    f"({run.train_seconds:.1f} s training)",
                    flush=True,
                )
    timing = None if args.no_timing else time_per_iteration(*args.timing_size, cfg)
    kl = None
    small = min(hidden)
    if not args.no_kl and small <= MAX_ENUMERATED_UNITS:
        sgd = best_runs(results[small]).get("sgd")
        if sgd is not None:
            kl = fisher_kl(sgd.model)
    out = Path(args.out)
    png = out / "img" / f"rbm_{split.name}{args.tag}.png"
    plot(results, split.name, png)
    command = "OMP_NUM_THREADS=1 python -m acktr.rbm.experiment" + (
        " " + " ".join(argv) if argv else ""
    )
    report = markdown(split, results, cfg, timing, tuple(args.timing_size), kl, command)
    report += f"\nPlot: `{png}`\n"
    (out / f"rbm_{split.name}{args.tag}_results.md").write_text(report)
    print(report)
    return report


if __name__ == "__main__":
    main()
