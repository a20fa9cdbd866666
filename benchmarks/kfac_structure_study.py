"""Block-diagonal vs block-tridiagonal K-FAC: how well each approximates the Fisher and its
inverse, and what that does to training (Martens & Grosse 2015, sections 4.2-4.3; the lecture's
"exact / block tridiagonal / block diagonal" figure).

Part 1, approximation quality (float64). A tanh MLP 16-16-16-16-10 classifies scikit-learn's
digits average-pooled to 4x4 (16 standardized inputs); it is first partially trained (Adam,
full batch) so that the Fisher is not the one at initialisation. On ``--examples`` training images:

* the exact Fisher ``F`` of the softmax output, ``mean_i J_i^T (diag(p_i) - p_i p_i^T) J_i``,
  from per-example Jacobians (``tests/acktr/exact.py``, independent of the optimizer);
* the Kronecker factors with the exact expectation over the model's predictive distribution
  (one backward pass per class, weighted by ``sqrt(K p_ic)``; no sampling noise);
* block-diagonal K-FAC ``F_bd = diag(A_{i-1,i-1} (x) G_{i,i})`` and block-tridiagonal K-FAC
  ``F_tri``, the matrix that agrees with the Kronecker-factored ``F~`` on the diagonal and first
  off-diagonal blocks and whose inverse is block-tridiagonal (section 4.3).

It prints the relative Frobenius errors ``||F_approx - F|| / ||F||`` and, for several damping
values ``lambda`` (factored Tikhonov damping of the diagonal factors, the way the optimizer damps
both structures), the errors of the damped inverses against two references: ``(F + lambda
I)^-1``, and ``(F + D)^-1`` where ``D`` is exactly the damping the approximations add to their
diagonal blocks (so that only the structure differs); plus the cosine between the exact and
approximate natural gradients of the training loss. It draws the matrices (absolute values,
dark = large) like the lecture's figure: ``docs/img/kfac_structure_matrices.png``.

Part 2, training: the digits autoencoder of ``acktr.examples`` (64-128-64-32-8-32-64-128-64,
batch 512) with ``acktr.KFAC(structure=...)``, both structures with the same damping scheme
(factored Tikhonov), damping, trust region and learning rate, plus the default block-diagonal
K-FAC (eigenvalue damping) for reference. Runs are interleaved step by step so that they share
the machine's load; loss vs iterations and vs wall-clock: ``docs/img/kfac_structure_training.png``.

Usage (about 2-3 minutes on 2 cores)::

    OMP_NUM_THREADS=1 python benchmarks/kfac_structure_study.py
    OMP_NUM_THREADS=1 python benchmarks/kfac_structure_study.py --part quality --examples 500
    OMP_NUM_THREADS=1 python benchmarks/kfac_structure_study.py --part training --iters 300
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.acktr.exact when run as a script

import acktr  # noqa: E402
from acktr.chain import (  # noqa: E402
    apply_chain_inverse,
    chain_inverse,
    chain_inverse_to_dense,
    damped_factors,
)
from acktr.examples.data import load_digits  # noqa: E402
from acktr.examples.training import (  # noqa: E402
    KFAC_EXAMPLE_DEFAULTS,
    batches,
    iterate,
    make_task,
    train_step,
)
from acktr.tridiagonal import TridiagonalKFACPreconditioner  # noqa: E402
from tests.acktr.exact import exact_categorical_fisher  # noqa: E402

WIDTHS = (16, 16, 16, 16, 10)
DAMPINGS = (1e-4, 1e-3, 1e-2, 1e-1)


# ---------------------------------------------------------------------- part 1: the matrices
def pooled_digits(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` digits average-pooled to 4x4, flattened and standardized (float64)."""
    data = load_digits(seed=seed)
    x = F.avg_pool2d(data.x_train[:n].double(), 2).flatten(1)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-3)
    return x, data.y_train[:n]


def build_mlp(widths: tuple[int, ...]) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=False)):
        mods.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            mods.append(nn.Tanh())
    return nn.Sequential(*mods).double()


def categorical_fisher_losses(logits: Tensor) -> list[Tensor]:
    """Losses giving the *exact* categorical Fisher statistics: one per class ``c``,
    ``mean_i sqrt(K p_ic) CE(logits_i, c)``. A statistics context averages ``G`` over its ``K``
    passes, so ``G = mean_i sum_c p_ic g_ic g_ic^T``: the expectation over ``y ~ p(y|x)``."""
    b, k = logits.shape
    with torch.no_grad():
        w = (k * torch.softmax(logits, -1)).sqrt()
    out = []
    for c in range(k):
        target = torch.full((b,), c, dtype=torch.long)
        out.append((w[:, c] * F.cross_entropy(logits, target, reduction="none")).mean())
    return out


def relative(a: Tensor, b: Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def cosine(a: Tensor, b: Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


class Curvature:
    """The exact Fisher, the Kronecker factors (exact expectations) and the training-loss
    gradient of the MLP after ``pretrain_steps`` full-batch Adam steps."""

    def __init__(self, examples: int, pretrain_steps: int, seed: int) -> None:
        torch.manual_seed(seed)
        x, y = pooled_digits(examples, seed)
        model = build_mlp(WIDTHS)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(pretrain_steps):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        self.steps, self.n = pretrain_steps, len(x)
        self.loss = float(F.cross_entropy(model(x), y).detach())
        layers = [m for m in model if isinstance(m, nn.Linear)]
        start = time.perf_counter()
        self.exact = exact_categorical_fisher(model, layers, x)
        self.seconds = time.perf_counter() - start
        self.pre = pre = TridiagonalKFACPreconditioner(model, stat_decay=0.0)
        logits = model(x)
        with pre.record_stats():
            for loss in categorical_fisher_losses(logits):
                loss.backward(retain_graph=True)
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        self.grad = torch.cat([b.helper.grad_matrix().flatten() for b in pre.chain])
        self.shapes = [(b.dim_g, b.dim_a) for b in pre.chain]
        sizes = [g * a for g, a in self.shapes]
        self.starts = [sum(sizes[:k]) for k in range(len(sizes) + 1)]
        self.sl = [slice(self.starts[k], self.starts[k + 1]) for k in range(len(sizes))]

    def band_mask(self, width: int) -> Tensor:
        """1 on the blocks at most ``width`` apart, 0 elsewhere."""
        mask = torch.zeros_like(self.exact)
        for i, si in enumerate(self.sl):
            for j, sj in enumerate(self.sl):
                if abs(i - j) <= width:
                    mask[si, sj] = 1.0
        return mask

    def damped(self, lam: float) -> dict[str, Tensor]:
        """Damped inverses of both structures, and ``D``: the damping they add to F~'s diagonal
        blocks (factored Tikhonov, section 6.3)."""
        pre = self.pre
        a, g = [b.A for b in pre.chain], [b.G for b in pre.chain]
        inv = chain_inverse(a, g, pre.cross_a, pre.cross_g, lam)
        tri_inv = chain_inverse_to_dense(inv, self.shapes)
        bd_inv, damp = torch.zeros_like(self.exact), torch.zeros_like(self.exact)
        for k, (ak, gk) in enumerate(zip(a, g, strict=True)):
            ad, gd = damped_factors(ak, gk, lam)
            bd_inv[self.sl[k], self.sl[k]] = torch.kron(torch.linalg.inv(gd), torch.linalg.inv(ad))
            damp[self.sl[k], self.sl[k]] = torch.kron(gd, ad) - torch.kron(gk, ak)
        return {"block-diagonal": bd_inv, "block-tridiagonal": tri_inv, "D": damp}


STRUCTURE_NAMES = ("block-diagonal", "block-tridiagonal")


def quality(examples: int, states: list[int], seed: int, out: Path) -> list[tuple]:
    """Print the error tables for the MLP after each number of Adam steps in ``states`` and draw
    the matrices for the last one. Returns the inverse-error rows."""
    print(f"\nPart 1: tanh MLP {'-'.join(map(str, WIDTHS))} on {examples} digits (4x4), softmax"
          " output, exact categorical Fisher vs K-FAC from exact expectations")
    print("\n| Adam steps (train loss) | structure | F | diagonal blocks of F | band of F "
          "(blocks <= 1 apart) |")
    print("|---|---|---|---|---|")
    curvatures, rows = [], []
    for steps in states:
        c = Curvature(examples, steps, seed)
        curvatures.append(c)
        approx = undamped_approximations(c.pre, c.sl)
        for name in STRUCTURE_NAMES:
            errs = [relative(approx[name] * m, c.exact * m)
                    for m in (torch.ones_like(c.exact), c.band_mask(0), c.band_mask(1))]
            print(f"| {steps} ({c.loss:.3f}) | {name} | " + " | ".join(f"{e:.3f}" for e in errs)
                  + " |")
    print("\nDamped inverses (factored Tikhonov damping lambda of the diagonal factors, D = what "
          "it adds to F~): relative error against (F + lambda I)^-1 and against (F + D)^-1 (same "
          "damping, so only the structure differs); cosine between the natural gradients "
          "(F + D)^-1 g and the approximation's, g the training-loss gradient.")
    print("\n| Adam steps | lambda | structure | vs (F + lambda I)^-1 | vs (F + D)^-1 | cosine |")
    print("|---|---|---|---|---|---|")
    for c in curvatures:
        eye = torch.eye(len(c.exact))
        for lam in DAMPINGS:
            approx = c.damped(lam)
            ref_plain = torch.linalg.inv(c.exact + lam * eye)
            ref_same = torch.linalg.inv(c.exact + approx["D"])
            for name in STRUCTURE_NAMES:
                inv = approx[name]
                row = (c.steps, lam, name, relative(inv, ref_plain), relative(inv, ref_same),
                       cosine(inv @ c.grad, ref_same @ c.grad))
                rows.append(row)
                print(f"| {c.steps} | {lam:g} | {name} | {row[3]:.3f} | {row[4]:.3f} | "
                      f"{row[5]:.3f} |")
    c = curvatures[-1]
    lam = 1e-3
    approx, undamped = c.damped(lam), undamped_approximations(c.pre, c.sl)
    draw_matrices(
        [c.exact, undamped["block-tridiagonal"], undamped["block-diagonal"]],
        [torch.linalg.inv(c.exact + approx["D"]), approx["block-tridiagonal"],
         approx["block-diagonal"]],
        c, lam, out / "kfac_structure_matrices.png",
    )
    print(f"(exact Fishers: {', '.join(f'{x.seconds:.1f}' for x in curvatures)} s)")
    return rows


def undamped_approximations(pre: TridiagonalKFACPreconditioner, sl: list[slice]) -> dict:
    """Undamped F_bd and F_tri. F_tri is built as the completion of the band (section 4.3):
    ``F_tri_{i,j} = F~_{i,i+1} F~_{i+1,i+1}^-1 F_tri_{i+1,j}`` for ``j > i + 1``, which needs
    only the inner diagonal blocks to be invertible (the softmax layer's ``G`` is singular:
    ``G 1 = 0``, so ``F_tri^-1`` does not exist without damping)."""
    n = len(pre.chain)
    f = [[None] * n for _ in range(n)]
    for k, b in enumerate(pre.chain):
        f[k][k] = torch.kron(b.G, b.A)
    for k in range(n - 1):
        f[k][k + 1] = torch.kron(pre.cross_g[k], pre.cross_a[k])
        f[k + 1][k] = f[k][k + 1].T
    for gap in range(2, n):
        for i in range(n - gap):
            j = i + gap
            f[i][j] = f[i][i + 1] @ torch.linalg.solve(f[i + 1][i + 1], f[i + 1][j])
            f[j][i] = f[i][j].T
    tri = torch.cat([torch.cat(row, 1) for row in f], 0)
    bd = torch.zeros_like(tri)
    for k in range(n):
        bd[sl[k], sl[k]] = f[k][k]
    return {"block-diagonal": bd, "block-tridiagonal": tri}


def draw_matrices(top: list[Tensor], bottom: list[Tensor], c: Curvature, lam: float,
                  path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = ["exact", "block-tridiagonal K-FAC", "block-diagonal K-FAC"]
    fig, axes = plt.subplots(2, 3, figsize=(13, 9.6))
    rows = [(top, "F"), (bottom, f"damped inverse, lambda={lam:g}")]
    for r, (row, label) in enumerate(rows):
        # One scale per row, set by the exact matrix: |entries| clipped at its 99th percentile.
        vmax = float(torch.quantile(row[0].abs().flatten()[::7], 0.99))
        for col, m in enumerate(row):
            ax = axes[r, col]
            ax.imshow(m.abs().numpy(), cmap="Greys", vmin=0, vmax=vmax)
            for s in c.starts[1:-1]:
                ax.axhline(s - 0.5, color="tab:red", lw=0.4)
                ax.axvline(s - 0.5, color="tab:red", lw=0.4)
            ax.set_title(f"{titles[col]}: {label}" if col else f"exact: {label}", fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"|entries| of the Fisher of a tanh MLP {'-'.join(map(str, WIDTHS))} after "
                 f"{c.steps} Adam steps, and of its damped inverse (red lines: layers)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nwrote {path}")


# ---------------------------------------------------------------------- part 2: training
TRUST = dict(KFAC_EXAMPLE_DEFAULTS)  # damping 1e-2, kl_clip 1e-2: the examples' settings
PLAIN = {"damping": 0.1, "kl_clip": None}  # the library defaults: no trust region
CONFIGS: dict[str, dict] = {
    "block-diagonal, trust region": {**TRUST, "damping_scheme": "tikhonov"},
    "block-tridiagonal, trust region": {**TRUST, "structure": "block_tridiagonal"},
    "block-diagonal, no trust region": {**PLAIN, "damping_scheme": "tikhonov"},
    "block-tridiagonal, no trust region": {**PLAIN, "structure": "block_tridiagonal"},
    "block-diagonal eigen damping, trust region (examples' default)": TRUST,
}
"""The runs of part 2: both structures with factored Tikhonov damping, in two settings, and the
examples' default K-FAC (eigenvalue damping, block-diagonal only) for reference."""


def training(iters: int, seeds: list[int], lr: float, out: Path) -> dict[str, list]:
    task = make_task("autoencoder", load_digits())
    curves: dict[str, list[tuple[list[float], list[float]]]] = {k: [] for k in CONFIGS}
    for seed in seeds:
        runs = {k: iterate(task, "kfac", lr, seed, kw) for k, kw in CONFIGS.items()}
        losses: dict[str, list[float]] = {k: [] for k in CONFIGS}
        clock = {k: [0.0] for k in CONFIGS}
        for _ in range(iters):
            for k, run in runs.items():  # interleaved: every run sees the same machine load
                t = time.perf_counter()
                losses[k].append(next(run))
                clock[k].append(clock[k][-1] + time.perf_counter() - t)
        for k in CONFIGS:
            curves[k].append((losses[k], clock[k][1:]))
    print(f"\nPart 2: digits autoencoder (batch {task.batch_size}), K-FAC lr {lr}, {iters} "
          f"iterations, seeds {seeds}; trust region: damping {TRUST['damping']}, kl_clip "
          f"{TRUST['kl_clip']}; no trust region: damping {PLAIN['damping']}")
    marks = [m for m in (100, 300) if m < iters]
    print("\n| run | " + " | ".join(f"loss at it. {m}" for m in marks)
          + " | final loss (last 10 it.) | ms per iteration |")
    print("|---|" + "---|" * (len(marks) + 2))
    for k, runs in curves.items():
        cells = [", ".join(f"{sum(ls[m - 10:m]) / 10:.2f}" for ls, _ in runs) for m in marks]
        cells.append(", ".join(f"{sum(ls[-10:]) / 10:.2f}" for ls, _ in runs))
        cells.append(", ".join(f"{1e3 * ts[-1] / len(ts):.1f}" for _, ts in runs))
        print(f"| {k} | " + " | ".join(cells) + " |")
    print("(each cell: one value per seed; losses are 10-iteration means of the minibatch loss)")
    draw_training(curves, out / "kfac_structure_training.png")
    chain_activity(min(100, iters), lr, seeds[0])
    return curves


def chain_activity(iters: int, lr: float, seed: int) -> None:
    """How much the chain changes the step: train the block-tridiagonal run (trust-region
    setting) for ``iters`` iterations, then print the largest ``s_G s_A`` per link (1 - the
    divisor of appendix B's inverse; 0 would make it block-diagonal) and the cosine between its
    preconditioned gradient and the block-diagonal one with the same damped factors."""
    task = make_task("autoencoder", load_digits())
    torch.manual_seed(seed)
    model = task.build_model()
    opt = acktr.KFAC(model, lr=lr, **CONFIGS["block-tridiagonal, trust region"])
    order = batches(len(task.x), task.batch_size, seed)
    for _ in range(iters):
        idx = next(order)
        train_step(task, model, opt, task.x[idx], task.y[idx])
    pre: TridiagonalKFACPreconditioner = opt.preconditioner  # type: ignore[assignment]
    model.zero_grad()
    task.loss(model(task.x[idx]), task.x[idx], task.y[idx]).backward()
    grads = [b.helper.grad_matrix().double() for b in pre.chain]
    inv = pre.inverse.to(dtype=torch.float64)  # type: ignore[union-attr]
    tri = torch.cat([d.flatten() for d in apply_chain_inverse(inv, grads)])
    diag = []
    for block, g in zip(pre.chain, grads, strict=True):
        a, gg = damped_factors(block.A.double(), block.G.double(), inv.damping)
        diag.append(torch.linalg.solve(gg, g) @ torch.linalg.inv(a))
    bd = torch.cat([d.flatten() for d in diag])
    links = ", ".join(f"{float((1 - d).max()):.2f}" for d in inv.denom[:-1])
    print(f"\nchain after {iters} iterations (seed {seed}): max s_G s_A per link {links}; "
          f"cosine(block-tridiagonal step, block-diagonal step) {cosine(tri, bd):.3f}, norm ratio "
          f"{float(tri.norm() / bd.norm()):.3f}")


def draw_training(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for k, runs in curves.items():
        color = "tab:gray" if "eigen" in k else "tab:red" if "tridiagonal" in k else "tab:blue"
        style = "--" if "no trust" in k else "-"
        for i, (losses, times) in enumerate(runs):
            smooth = [sum(losses[max(0, j - 9): j + 1]) / len(losses[max(0, j - 9): j + 1])
                      for j in range(len(losses))]
            label = k if i == 0 else None
            axes[0].plot(range(1, len(smooth) + 1), smooth, color=color, ls=style, lw=1,
                         label=label)
            axes[1].plot(times, smooth, color=color, ls=style, lw=1, label=label)
    axes[0].set_xlabel("iteration")
    axes[1].set_xlabel("wall-clock seconds (runs interleaved, 1 thread)")
    axes[0].set_ylabel("training loss (10-iteration moving average)")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_ylim(top=40)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.suptitle("digits autoencoder: block-diagonal vs block-tridiagonal K-FAC (a line per seed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"\nwrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("quality", "training", "both"), default="both")
    parser.add_argument("--examples", type=int, default=1000, help="digits for the Fisher")
    parser.add_argument("--states", type=int, nargs="+", default=[0, 60],
                        help="Adam steps before measuring the Fisher (the figure: the last)")
    parser.add_argument("--iters", type=int, default=600, help="autoencoder iterations")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--lr", type=float, default=0.1, help="K-FAC learning rate (part 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    if args.part in ("quality", "both"):
        quality(args.examples, args.states, args.seeds[0], args.out)
    if args.part in ("training", "both"):
        training(args.iters, args.seeds, args.lr, args.out)
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
