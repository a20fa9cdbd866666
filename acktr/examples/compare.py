"""Compare K-FAC with SGD (momentum 0.9) and Adam: learning-rate sweeps, plots, curves, a table.

Each optimizer is trained once per learning rate on the same task, seed and minibatches; its
best learning rate is the one with the lowest final training loss (mean of the last 10
iterations; diverged runs never win). K-FAC can also be run once more with the library's
defaults (``acktr.KFAC(model)``, no argument changed) as a separate curve.
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
    "kfac": (0.1, 0.3, 1.0),
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

    The target is the final loss of ``reference``'s best run (if that label is present); a run
    reaches it when its 10-iteration moving average first gets there. ``time_ratio`` is the
    wall-clock to the target divided by the reference's whole wall-clock (``cpu_ratio`` the same
    in CPU seconds).
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
            "cpu_seconds": best.cpu_times[-1] if n else math.nan,
            "ms_per_iter": 1e3 * best.times[-1] / n if n else math.nan,
            "target_loss": target,
            "iters_to_target": None,
            "time_to_target": None,
            "cpu_to_target": None,
            "time_ratio": None,
            "cpu_ratio": None,
        }
        if ref is not None:
            row["iters_to_target"] = best.iters_to_reach(target)
            row["time_to_target"] = t = best.time_to_reach(target)
            row["cpu_to_target"] = c = best.time_to_reach(target, cpu=True)
            row["time_ratio"] = None if t is None else t / ref.times[-1]
            row["cpu_ratio"] = None if c is None else c / ref.cpu_times[-1]
        rows.append(row)
    return rows


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of :func:`summary_rows` ("x ref": time to target / reference's time)."""
    columns = [  # (header, key, format)
        ("optimizer", "optimizer", "s"),
        ("best lr", "best_lr", "g"),
        ("final loss", "final_loss", ".4g"),
        ("ms/iter", "ms_per_iter", ".2f"),
        ("wall s", "seconds", ".2f"),
        ("cpu s", "cpu_seconds", ".2f"),
        ("iters to target", "iters_to_target", "d"),
        ("wall s to target", "time_to_target", ".2f"),
        ("x ref", "time_ratio", ".2f"),
        ("cpu s to target", "cpu_to_target", ".2f"),
        ("x ref (cpu)", "cpu_ratio", ".2f"),
    ]

    def cell(v: Any, spec: str) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v) and spec != ".4g"):
            return "-"
        return format(v, spec)

    table = [[h for h, _, _ in columns]]
    table += [[cell(r[key], spec) for _, key, spec in columns] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in table
    ]
    if rows:
        lines.insert(0, f"target loss (reference's final loss): {rows[0]['target_loss']:.4g}")
    return "\n".join(lines)


def write_curves(sweeps: Sequence[Sweep], path: str | Path) -> None:
    """CSV of every run, one row per iteration.

    Columns: ``optimizer, lr, best, iteration, seconds, cpu_seconds, loss``.
    """
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["optimizer", "lr", "best", "iteration", "seconds", "cpu_seconds", "loss"])
        for s in sweeps:
            best = s.best
            for run in s.runs:
                for i, (t, c, loss) in enumerate(
                    zip(run.times, run.cpu_times, run.losses, strict=True)
                ):
                    w.writerow(
                        [
                            s.label,
                            run.lr,
                            int(run is best),
                            i + 1,
                            f"{t:.6f}",
                            f"{c:.6f}",
                            repr(loss),
                        ]
                    )


def write_json(
    sweeps: Sequence[Sweep], rows: Sequence[dict[str, Any]], path: str | Path, meta: dict[str, Any]
) -> None:
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
    # Diverged runs would stretch the axis to 1e18: show from the best loss to 2x the start.
    finite = [v for s in sweeps for v in s.best.losses if math.isfinite(v) and v > 0]
    starts = [s.best.losses[0] for s in sweeps if s.best.losses]
    for ax, xlabel in ((ax_it, "iteration"), (ax_t, "wall-clock seconds")):
        ax.set_yscale("log")
        if finite and starts:
            ax.set_ylim(min(finite) / 1.5, 2 * max(starts))
        ax.set_xlabel(xlabel)
        ax.set_ylabel("training loss (minibatch)")
        ax.grid(True, which="both", alpha=0.3)
    ax_it.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
