"""The learning curve of a run: ``learning_curve.png`` in its directory.

Training return (mean of the last 100 episodes) and, where the run evaluated, the
deterministic evaluation's mean return +- std, against env steps; read from ``progress.csv``
(new or old column names, ``agents.run_log.read_progress``). Drawn with matplotlib's Agg
canvas directly, so no global backend is switched, and written atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

from agents.run_log import EVAL_RETURN, EVAL_STD, TRAIN_RETURN, column, read_progress

CURVE_NAME = "learning_curve.png"


def write_learning_curve(run_dir: str | Path, title: str = "") -> Path:
    """Draw ``run_dir/progress.csv`` into ``run_dir/learning_curve.png`` and return its path.

    Raises:
        ImportError: matplotlib is not installed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    run_dir = Path(run_dir)
    rows = read_progress(run_dir)
    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x, y = column(rows, TRAIN_RETURN)
    ax.plot(x, y, label="training (mean of last 100 episodes)")
    ex, ey = column(rows, EVAL_RETURN)
    if ex:
        std = dict(zip(*column(rows, EVAL_STD), strict=True))
        ax.errorbar(ex, ey, yerr=[std.get(t, 0.0) for t in ex], marker="o", capsize=3,
                    label="evaluation (deterministic, mean +- std)")
    ax.set_xlabel("env steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if x or ex:
        ax.legend()
    fig.tight_layout()
    path = run_dir / CURVE_NAME
    tmp = run_dir / f".{CURVE_NAME}.tmp"
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)
    return path


def try_learning_curve(run_dir: str | Path, title: str = "") -> Path | None:
    """:func:`write_learning_curve`, or a one-line note and None without matplotlib."""
    try:
        return write_learning_curve(run_dir, title)
    except ImportError:
        print("note: no learning_curve.png: matplotlib is not installed "
              "(pip install matplotlib)", flush=True)
        return None
