"""Plot training curves (mean return of the last 100 episodes vs timesteps) of run directories.

    python -m benchmarks.plot_runs runs/a runs/b ... --out docs/img/curve.png --title "..."
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories (with progress.csv)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--title", default="", help="figure title")
    args = p.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4))
    for run in args.runs:
        rows = list(csv.DictReader((run / "progress.csv").open()))
        x = [int(r["timesteps"]) for r in rows]
        y = [float(r["return_mean"]) for r in rows]
        label = run.name
        summary = run / "summary.json"
        if summary.exists():
            s = json.loads(summary.read_text())
            if "final_return_mean" in s:
                label += f" (eval {s['final_return_mean']:.0f})"
        ax.plot(x, y, label=label)
    ax.set_xlabel("timesteps")
    ax.set_ylabel("training return (mean of last 100 episodes)")
    ax.set_title(args.title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
