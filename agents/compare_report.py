"""What ``train.py compare`` reports: ``results.csv``, learning-curve PNGs and ``summary.md``.

All numbers come from the evaluation rows (one per algo, env, seed and evaluation point):

- final return: per seed, the mean deterministic return at the last evaluation point; reported
  as the mean and (population) std over seeds;
- area under the curve (AUC): per seed, the learning curve (linear between evaluation points)
  on the common grid ``g_1 < ... < g_P`` averaged over it,
  ``AUC = (1 / (g_P - g_1)) * integral_{g_1}^{g_P} R(t) dt`` (trapezoid rule; ``R(g_1)`` for a
  one-point grid), i.e. the average return over training, in return units;
- timesteps to threshold: per seed, the first evaluation point whose mean return is >= the
  threshold; reported as the median over the seeds that reached it, with how many did;
- wall-clock (training only, evaluation excluded) and fps = timesteps / wall-clock, mean over
  seeds;
- where the rows carry it, the training return at the end: per seed, the mean return of the last
  100 training episodes at the last evaluation point (stochastic policy, full episodes, raw
  rewards: the statistic of the ACKTR paper's Atari table); mean and std over seeds.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agents.files import csv_number, read_csv

ALGO_ORDER = ("acktr", "a2c", "sb3-a2c", "trpo")
RESULT_FIELDS = ("algo", "env", "seed", "timesteps", "eval_return_mean", "eval_return_std",
                 "wall_seconds")
OPTIONAL_FIELDS = ("train_return_mean",)
"""Written when known, NaN when absent (files from before the column): the mean return of the
last 100 training episodes finished by that point (full games, raw rewards, stochastic policy;
the statistic of the ACKTR paper's Atari table)."""


@dataclass(frozen=True)
class Curve:
    """One seed's evaluations, in timestep order."""

    timesteps: np.ndarray
    returns: np.ndarray
    wall_seconds: np.ndarray


@dataclass
class AlgoSummary:
    """Summary of one algorithm on one env over its finished seeds (see the module docstring)."""

    env: str
    algo: str
    seeds: int
    final_mean: float
    final_std: float
    auc_mean: float
    auc_std: float
    threshold: float | None
    threshold_median: float | None
    threshold_reached: int
    wall_seconds: float
    fps: float
    timesteps: float
    train_final_mean: float = float("nan")
    train_final_std: float = float("nan")


def _final_training_returns(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list]:
    """``{(env, algo): [per seed, train_return_mean at its last point]}``, finite values only."""
    last: dict[tuple[str, str, int], tuple[int, float]] = {}
    for r in rows:
        key = (r["env"], r["algo"], int(r["seed"]))
        t = int(r["timesteps"])
        if key not in last or t > last[key][0]:
            last[key] = (t, float(r.get("train_return_mean", float("nan"))))
    out: dict[tuple[str, str], list] = defaultdict(list)
    for (env, algo, _), (_, value) in last.items():
        if math.isfinite(value):
            out[(env, algo)].append(value)
    return out


def write_results(rows: Iterable[dict[str, Any]], path: Path) -> None:
    """Write rows (dicts with :data:`RESULT_FIELDS`) to ``path`` as CSV, sorted by env, algo,
    seed, timesteps."""
    ordered = sorted(rows, key=lambda r: (r["env"], r["algo"], int(r["seed"]), int(r["timesteps"])))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=RESULT_FIELDS + OPTIONAL_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(ordered)


def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``results.csv`` (or a run's ``evals.csv``) with numbers converted.

    Raises:
        agents.errors.BadInputError: naming the file (and line and column): missing, not CSV
            text, a missing column (listing the expected ones), a value that is not a number.
    """
    path = Path(path)
    _, rows = read_csv(path, "results", required=RESULT_FIELDS)
    return [_typed(path, line, r) for line, r in rows]


def _typed(path: Path, line: int, r: dict[str, Any]) -> dict[str, Any]:
    def number(column: str, kind: type = float) -> Any:
        return csv_number(path, line, r, column, kind)

    return {"algo": r["algo"], "env": r["env"], "seed": number("seed", int),
            "timesteps": number("timesteps", int),
            "eval_return_mean": number("eval_return_mean"),
            "eval_return_std": number("eval_return_std"),
            "wall_seconds": number("wall_seconds"),
            # absent (or empty) in files from before the column
            "train_return_mean": number("train_return_mean") if r.get("train_return_mean")
            else float("nan")}


def curves(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[int, Curve]]:
    """``{(env, algo): {seed: Curve}}`` from result rows."""
    grouped: dict[tuple[str, str], dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        grouped[(r["env"], r["algo"])][int(r["seed"])].append(
            (int(r["timesteps"]), float(r["eval_return_mean"]), float(r["wall_seconds"])))
    out: dict[tuple[str, str], dict[int, Curve]] = {}
    for key, by_seed in grouped.items():
        out[key] = {}
        for seed, points in by_seed.items():
            t, y, w = (np.asarray(v, dtype=np.float64) for v in zip(*sorted(points), strict=True))
            out[key][seed] = Curve(t, y, w)
    return out


def area_under_curve(timesteps: Sequence[float], returns: Sequence[float],
                     grid: Sequence[float]) -> float:
    """Average return over ``[grid[0], grid[-1]]`` of the piecewise-linear curve through
    ``(timesteps, returns)`` (``np.interp``: constant beyond its ends), by the trapezoid rule
    on ``grid``; ``R(grid[0])`` when the grid has one point."""
    g = np.asarray(grid, dtype=np.float64)
    y = np.interp(g, np.asarray(timesteps, dtype=np.float64), np.asarray(returns, np.float64))
    if len(g) == 1 or g[-1] == g[0]:
        return float(y[0])
    return float(np.sum((y[1:] + y[:-1]) * np.diff(g)) / 2.0 / (g[-1] - g[0]))


def timesteps_to_threshold(timesteps: Sequence[float], returns: Sequence[float],
                           threshold: float) -> float | None:
    """The first evaluation timestep whose return is >= ``threshold``; None if none is."""
    for t, y in zip(timesteps, returns, strict=True):
        if y >= threshold:
            return float(t)
    return None


def summarize(
    rows: Iterable[dict[str, Any]], grid: Sequence[float],
    thresholds: dict[str, float] | None = None,
) -> list[AlgoSummary]:
    """One :class:`AlgoSummary` per (env, algo), in env order of appearance, algorithms in
    :data:`ALGO_ORDER` (others after them, alphabetically).

    Args:
        rows: result rows.
        grid: the common evaluation grid (timesteps) the AUC is taken over.
        thresholds: return threshold per env id (envs without one get None).
    """
    thresholds = thresholds or {}
    rows = list(rows)
    training = _final_training_returns(rows)
    out = []
    for (env, algo), by_seed in curves(rows).items():
        train = training.get((env, algo), [])
        finals = [c.returns[-1] for c in by_seed.values()]
        aucs = [area_under_curve(c.timesteps, c.returns, grid) for c in by_seed.values()]
        thr = thresholds.get(env)
        reached = [] if thr is None else [
            t for c in by_seed.values()
            if (t := timesteps_to_threshold(c.timesteps, c.returns, thr)) is not None]
        walls = [c.wall_seconds[-1] for c in by_seed.values()]
        steps = [c.timesteps[-1] for c in by_seed.values()]
        out.append(AlgoSummary(
            env=env, algo=algo, seeds=len(by_seed),
            final_mean=float(np.mean(finals)), final_std=float(np.std(finals)),
            auc_mean=float(np.mean(aucs)), auc_std=float(np.std(aucs)),
            threshold=thr, threshold_median=float(np.median(reached)) if reached else None,
            threshold_reached=len(reached),
            wall_seconds=float(np.mean(walls)),
            fps=float(np.mean([s / max(w, 1e-9) for s, w in zip(steps, walls, strict=True)])),
            timesteps=float(np.mean(steps)),
            train_final_mean=float(np.mean(train)) if train else float("nan"),
            train_final_std=float(np.std(train)) if train else float("nan"),
        ))
    envs = list(dict.fromkeys(s.env for s in out))
    rank = {a: i for i, a in enumerate(ALGO_ORDER)}
    return sorted(out, key=lambda s: (envs.index(s.env), rank.get(s.algo, len(rank)), s.algo))


def _steps(t: float) -> str:
    if t >= 1e6:
        return f"{t / 1e6:.2f}M"
    if t >= 1e3:
        return f"{t / 1e3:.1f}k"
    return f"{t:.0f}"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "n/a"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def markdown_table(summaries: Sequence[AlgoSummary], sources: dict[str, str] | None = None,
                   paper: dict[tuple[str, str], str] | None = None) -> str:
    """A markdown table of one env's summaries (columns as in the module docstring).

    Args:
        summaries: rows for one env.
        sources: hyperparameter source per algo (a last column when given).
        paper: ``{(env, algo): text}``, a "paper" column when given.
    """
    thr = next((s.threshold for s in summaries if s.threshold is not None), None)
    head = ["algo", "seeds", "final return (mean +- std over seeds)", "AUC (mean return)",
            "steps to " + (f">= {thr:g}" if thr is not None else "threshold"),
            "wall-clock", "fps"]
    with_training = any(math.isfinite(s.train_final_mean) for s in summaries)
    if with_training:
        head.insert(3, "training return, last 100 episodes")
    if paper is not None:
        head.append("paper")
    if sources:
        head.append("hyperparameters")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summaries:
        if s.threshold is None:
            reach = "n/a"
        elif s.threshold_median is None:
            reach = f"not reached (0/{s.seeds})"
        else:
            reach = f"{_steps(s.threshold_median)} ({s.threshold_reached}/{s.seeds})"
        cells = [s.algo, str(s.seeds), f"{s.final_mean:.1f} +- {s.final_std:.1f}",
                 f"{s.auc_mean:.1f} +- {s.auc_std:.1f}", reach, _duration(s.wall_seconds),
                 f"{s.fps:.0f}"]
        if with_training:
            cells.insert(3, f"{s.train_final_mean:.1f} +- {s.train_final_std:.1f}"
                         if math.isfinite(s.train_final_mean) else "n/a")
        if paper is not None:
            cells.append(paper.get((s.env, s.algo), ""))
        if sources:
            cells.append(sources.get(s.algo, ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_env(by_algo: dict[str, dict[int, Curve]], env: str, path: Path) -> None:
    """Two panels for one env: evaluation return vs timesteps and vs wall-clock seconds; per
    algorithm the mean over seeds with a band of +- one std (points aligned by evaluation index;
    the x of the wall-clock panel is the mean over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for algo, by_seed in by_algo.items():
        n = min(len(c.timesteps) for c in by_seed.values())
        y = np.stack([c.returns[:n] for c in by_seed.values()])
        t = np.mean([c.timesteps[:n] for c in by_seed.values()], axis=0)
        w = np.mean([c.wall_seconds[:n] for c in by_seed.values()], axis=0)
        mean, std = y.mean(axis=0), y.std(axis=0)
        for ax, x in zip(axes, (t, w), strict=True):
            (line,) = ax.plot(x, mean, marker=".", label=f"{algo} ({len(by_seed)} seeds)")
            ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=line.get_color())
    axes[0].set_xlabel("timesteps")
    axes[1].set_xlabel("wall-clock seconds (training, evaluation excluded)")
    axes[0].set_ylabel("deterministic evaluation return")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(env)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def env_slug(env_id: str) -> str:
    """File-name-safe env id (``ALE/Pong-v5`` -> ``ALE-Pong-v5``)."""
    return "".join(c if c.isalnum() or c in ".-_" else "-" for c in env_id)
