"""Plot training curves (mean return of the last 100 episodes vs timesteps) of run directories,
written with the current column names or the ones before (``agents.run_log.read_progress``).

    python -m benchmarks.plot_runs runs/a runs/b ... --out docs/img/curve.png --title "..."
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from agents.run_log import TRAIN_RETURN, column, read_progress  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run directories (with progress.csv)")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--title", default="", help="figure title")
    args = p.parse_args(argv)
    fig, ax = plt.subplots(figsize=(7, 4))
    for run in args.runs:
        x, y = column(read_progress(run), TRAIN_RETURN)
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
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
