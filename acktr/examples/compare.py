"""Compare K-FAC with SGD (momentum 0.9) and Adam: learning-rate sweeps, plots, curves, a table.

Each optimizer is trained once per learning rate on the same task, seed and minibatches; its
best learning rate is the one with the lowest final training loss (mean of the last 10
iterations; diverged runs never win). K-FAC can also be run a second time with its library
defaults (``acktr.KFAC``'s own damping etc.) as a separate curve.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from acktr.examples.training import RunResult, Task, train

DEFAULT_LRS: dict[str, tuple[float, ...]] = {
    "kfac": (0.03, 0.1, 0.3),
    "sgd": (0.01, 0.03, 0.1, 0.3),
    "adam": (1e-3, 3e-3, 1e-2),
}
"""Learning rates swept for each optimizer by default."""


@dataclass
class Sweep:
    """All runs of one optimizer (one label) and the index of the best one."""

    label: str
    runs: list[RunResult]

    @property
    def best(self) -> RunResult:
        """The run with the lowest final loss (the first run if every run diverged)."""
        return min(self.runs, key=lambda r: r.final_loss())


def sweep(
    task: Task,
    optimizer: str,
    lrs: Sequence[float],
    iters: int,
    seed: int = 0,
    kfac_kwargs: dict[str, Any] | None = None,
    label: str | None = None,
    verbose: bool = False,
) -> Sweep:
    """Train ``optimizer`` once per learning rate in ``lrs``; see :func:`train` for the rest."""
    label = label or optimizer
    runs = []
    for lr in lrs:
        run = train(task, optimizer, lr, iters, seed, kfac_kwargs, label)  # type: ignore[arg-type]
        if verbose:
            state = "diverged" if run.diverged else f"final loss {run.final_loss():.4g}"
            print(f"  {label:<16} lr={lr:<8g} {state}  ({run.times[-1]:.1f} s)", flush=True)
        runs.append(run)
    return Sweep(label, runs)


def summary_rows(sweeps: Sequence[Sweep], reference: str = "adam") -> list[dict[str, Any]]:
    """One row per sweep's best run: final loss, time, and time to reach the reference's loss.

    The target is the final loss of ``reference``'s best run (if that label is present);
    ``time_to_target`` is when a run's 10-iteration moving average first reaches it.
    """
    ref = next((s.best for s in sweeps if s.label == reference), None)
    target = ref.final_loss() if ref is not None else math.nan
    rows = []
    for s in sweeps:
        best = s.best
        n = len(best.times)
        row: dict[str, Any] = {
            "optimizer": s.label,
            "best_lr": best.lr,
            "final_loss": best.final_loss(),
            "iters": n,
            "seconds": best.times[-1] if n else math.nan,
            "ms_per_iter": 1e3 * best.times[-1] / n if n else math.nan,
            "target_loss": target,
            "iters_to_target": best.iters_to_reach(target) if ref is not None else None,
            "time_to_target": best.time_to_reach(target) if ref is not None else None,
        }
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of :func:`summary_rows`."""

    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)

    target = rows[0]["target_loss"] if rows else math.nan
    lines = [
        f"{'optimizer':<16} {'best lr':>8} {'final loss':>11} {'ms/iter':>8} {'seconds':>8} "
        f"{'iters to':>9} {'s to':>7}",
        f"{'':<16} {'':>8} {'':>11} {'':>8} {'':>8} {fmt(target, '>9.4g')} {'target':>7}",
    ]
    for r in rows:
        lines.append(
            f"{r['optimizer']:<16} {r['best_lr']:>8g} {fmt(r['final_loss'], '>11.4g')} "
            f"{fmt(r['ms_per_iter'], '>8.2f')} {fmt(r['seconds'], '>8.2f')} "
            f"{fmt(r['iters_to_target'], '>9d')} {fmt(r['time_to_target'], '>7.2f')}"
        )
    return "\n".join(lines)


def write_curves(sweeps: Sequence[Sweep], path: str | Path) -> None:
    """CSV of every run: ``optimizer, lr, best, iteration, seconds, loss`` (one row per step)."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["optimizer", "lr", "best", "iteration", "seconds", "loss"])
        for s in sweeps:
            best = s.best
            for run in s.runs:
                for i, (t, loss) in enumerate(zip(run.times, run.losses, strict=False)):
                    w.writerow([s.label, run.lr, int(run is best), i + 1, f"{t:.6f}", repr(loss)])


def write_json(sweeps: Sequence[Sweep], rows: Sequence[dict[str, Any]], path: str | Path,
               meta: dict[str, Any]) -> None:
    """JSON with ``meta`` (command, machine, ...), the summary rows and every run's curves."""
    doc = {
        "meta": meta,
        "summary": list(rows),
        "runs": [asdict(r) | {"best": r is s.best} for s in sweeps for r in s.runs],
    }
    Path(path).write_text(json.dumps(doc, indent=1, default=float))


def plot(sweeps: Sequence[Sweep], path: str | Path, title: str = "") -> None:
    """PNG with two panels, best run of each sweep: loss vs iteration and vs wall-clock seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_it, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2))
    for s in sweeps:
        best = s.best
        label = f"{s.label} (lr={best.lr:g})"
        iters = range(1, len(best.losses) + 1)
        ax_it.plot(iters, best.losses, label=label, lw=1.2)
        ax_t.plot(best.times, best.losses, label=label, lw=1.2)
    for ax, xlabel in ((ax_it, "iteration"), (ax_t, "wall-clock seconds")):
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("training loss (minibatch)")
        ax.grid(True, which="both", alpha=0.3)
    ax_it.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
