"""What a run logs, under stable-baselines3's names: TensorBoard scalars and ``progress.csv``.

Dashboards and scripts written for SB3 read our runs: the same tags in TensorBoard and the same
columns in ``progress.csv`` (SB3's CSV columns are its tag names).

- ``time/``: ``total_timesteps`` (env steps, all envs), ``iterations`` (updates),
  ``time_elapsed`` (training seconds, evaluations excluded), ``fps``, ``episodes``.
- ``rollout/``: ``ep_rew_mean``, ``ep_len_mean`` (last 100 training episodes, raw returns),
  ``ep_rew_std``.
- ``train/``: ``policy_loss``, ``value_loss``, ``entropy_loss`` (minus the mean entropy, as
  SB3), ``learning_rate``, ``approx_kl`` (K-FAC's quadratic estimate of the step's KL, the
  quantity its trust region bounds), ``grad_norm``; ours: ``trust_scale`` (the trust region's
  ``nu``), ``damping``, ``effective_lr`` (the effective step size ``lr * nu``),
  ``skipped_steps``, ``kl`` (the measured mean KL between the policies before and after the
  step: separate-critic ACKTR), and the critic's K-FAC as ``critic_<name>``.
- ``eval/``: ``mean_reward``, ``std_reward``, ``mean_ep_length`` (deterministic evaluation).

Runs written before these names (``return_mean``, ``opt/lr``, ... in ``progress.csv`` and in
TensorBoard) still read: :func:`read_progress` and :func:`sb3_name` translate them.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

from agents.errors import BadInputError
from agents.files import csv_number, ends_cleanly, read_csv

PROGRESS_NAME = "progress.csv"
TIMESTEPS = "time/total_timesteps"
ITERATIONS = "time/iterations"
TRAIN_RETURN = "rollout/ep_rew_mean"
EVAL_RETURN = "eval/mean_reward"
EVAL_STD = "eval/std_reward"
EVAL_LENGTH = "eval/mean_ep_length"
EVAL_COLUMNS = (EVAL_RETURN, EVAL_STD, EVAL_LENGTH)

# Names before the SB3 namespaces (progress.csv columns and TensorBoard tags) -> SB3 names.
_OLD_NAMES = {
    "update": ITERATIONS,
    "timesteps": TIMESTEPS,
    "wall_seconds": "time/time_elapsed",
    "fps": "time/fps",
    "episodes": "time/episodes",
    "return_mean": TRAIN_RETURN,
    "return_std": "rollout/ep_rew_std",
    "length_mean": "rollout/ep_len_mean",
    "policy_loss": "train/policy_loss",
    "value_loss": "train/value_loss",
    "entropy": "train/entropy_loss",
    "grad_norm": "train/grad_norm",
    "kl": "train/kl",
    "eval/return_mean": EVAL_RETURN,
}
# Our optimizers' metric names (acktr.KFAC.metrics) -> SB3's where it has one.
_OPTIMIZER_NAMES = {"lr": "learning_rate"}
_NEGATED = {"entropy"}  # SB3's entropy_loss is minus the entropy


def sb3_name(key: str) -> str:
    """The SB3-namespace name of a metric or old column, e.g. ``"opt/lr"`` ->
    ``"train/learning_rate"``, ``"critic_opt/damping"`` -> ``"train/critic_damping"``,
    ``"return_mean"`` -> ``"rollout/ep_rew_mean"``; names already in a namespace pass."""
    if key in _OLD_NAMES:
        return _OLD_NAMES[key]
    for prefix, new in (("opt/", "train/"), ("critic_opt/", "train/critic_")):
        if key.startswith(prefix):
            name = key[len(prefix):]
            return new + _OPTIMIZER_NAMES.get(name, name)
    return key


def sb3_row(row: Mapping[str, float]) -> dict[str, float]:
    """``row`` with SB3 names (:func:`sb3_name`) and SB3's sign conventions (entropy loss)."""
    return {sb3_name(k): -v if k in _NEGATED else v for k, v in row.items()}


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _negate(text: str) -> str:
    return text if text in ("", "nan") else repr(-float(text))


def _raw_rows(path: Path) -> list[dict[str, str]]:
    """The CSV's cells as written, under SB3 names (old names translated)."""
    with path.open(newline="") as f:
        return [{sb3_name(k): _negate(v) if k in _NEGATED else v
                 for k, v in r.items() if k is not None and v is not None}
                for r in csv.DictReader(f)]


def read_progress(path: str | Path) -> list[dict[str, float]]:
    """Rows of a run's ``progress.csv`` (or of the run directory's), as floats under SB3 names,
    whichever names the run was written with; an empty cell is NaN. Missing file: ``[]``."""
    path = Path(path)
    if path.is_dir():
        path = path / PROGRESS_NAME
    if not path.is_file():
        return []
    return [{k: _number(v) for k, v in r.items()} for r in _raw_rows(path)]


def column(rows: Iterable[Mapping[str, float]], name: str) -> tuple[list[int], list[float]]:
    """``(timesteps, values)`` of the rows where ``name`` is a finite number."""
    xs, ys = [], []
    for r in rows:
        value = r.get(name, math.nan)
        if math.isfinite(value) and math.isfinite(r.get(TIMESTEPS, math.nan)):
            xs.append(int(r[TIMESTEPS]))
            ys.append(value)
    return xs, ys


class RunLogger:
    """TensorBoard scalars and ``progress.csv`` rows, under SB3's names.

    Rows may hold different columns (training rows, evaluation rows): the CSV's header is the
    union of what was logged, and a row with a new column rewrites the file with it (as SB3's
    CSV writer does); cells a row lacks stay empty. A ``progress.csv`` written with the old
    column names is rewritten with the new ones when a resumed run logs to it.

    Args:
        run_dir: the run directory.
        enabled_tensorboard: write TensorBoard event files. Default True.
        resume_after: when resuming from the checkpoint of this many timesteps, drop what was
            logged after it (CSV rows and TensorBoard events), so that a run that crashed after
            its last checkpoint does not log those updates twice. Default None (a new run).
        columns: columns to put in the header from the start (e.g. the evaluation's), so that
            the file is not rewritten when they first appear. Default none.
    """

    def __init__(
        self, run_dir: Path, enabled_tensorboard: bool = True, resume_after: int | None = None,
        columns: Iterable[str] = (),
    ) -> None:
        self.csv_path = Path(run_dir) / PROGRESS_NAME
        self._fields: list[str] = []
        self._extra = list(columns)
        if self.csv_path.exists():
            self._reopen(resume_after)
        self.writer = None
        if enabled_tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = None if resume_after is None else resume_after + 1
                self.writer = SummaryWriter(str(run_dir), purge_step=purge)
            except ImportError:
                warnings.warn(
                    "tensorboard is not installed: no event files (pip install -e '.[rl]')",
                    stacklevel=2,
                )

    def _reopen(self, resume_after: int | None) -> None:
        """Take up an existing ``progress.csv``: old column names translated; on resume, rows
        logged after the checkpoint and a row cut short by a kill dropped. A file that is not a
        progress log (another program's CSV, a non-number where a step count belongs) is a
        BadInputError naming it."""
        if self.csv_path.stat().st_size == 0 or b"\n" not in self.csv_path.read_bytes()[:65536]:
            self.csv_path.unlink()  # empty, or a header cut short before its first row landed
            return
        header, rows = read_csv(self.csv_path, "progress log")
        fields = [sb3_name(k) for k in header]
        hint = "(the run's log; move it aside to resume without it)"
        if TIMESTEPS not in fields:
            raise BadInputError(f"{self.csv_path}: not a progress log: no {TIMESTEPS} (or "
                                f"timesteps) column {hint}")
        steps_column = header[fields.index(TIMESTEPS)]
        try:
            steps = [csv_number(self.csv_path, line, r, steps_column, int) for line, r in rows]
        except BadInputError as err:
            raise BadInputError(f"{err} {hint}") from None
        translated = [{sb3_name(k): _negate(v) if k in _NEGATED else v for k, v in r.items()}
                      for _, r in rows]
        kept = translated if resume_after is None else [
            r for r, n in zip(translated, steps, strict=True) if n <= resume_after]
        if resume_after is not None and not kept:
            self.csv_path.unlink()  # a run started over: the header comes with the first row
            return
        if fields != header or len(kept) != len(rows) or not ends_cleanly(self.csv_path):
            self._rewrite(fields, kept)
        self._fields = fields

    def _rewrite(self, fields: list[str], rows: list[dict[str, str]]) -> None:
        tmp = self.csv_path.with_name(f".{self.csv_path.name}.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.csv_path)

    def log(self, step: int, row: Mapping[str, float]) -> None:
        """Write ``row`` (SB3 names, :func:`sb3_row`) at ``step`` env steps."""
        if self.writer is not None:
            for key, value in row.items():
                if key not in (ITERATIONS, TIMESTEPS) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
        new = [k for k in [*row, *self._extra] if k not in self._fields]
        if new:
            old = _raw_rows(self.csv_path) if self._fields else []
            self._fields += new
            self._rewrite(self._fields, old)
        with self.csv_path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._fields, restval="")
            w.writerow({k: _cell(v) for k, v in row.items()})

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _cell(value: float) -> float | int | str:
    return "" if isinstance(value, float) and math.isnan(value) else value
