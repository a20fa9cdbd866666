"""``python train.py compare``: one command, a fair comparison of ACKTR, A2C and the baselines.

    python train.py compare --env HalfCheetah-v5 --algos acktr a2c sb3-a2c trpo --seeds 3 \\
        --timesteps 1M --out results/halfcheetah --jobs 4

Every algorithm runs on the same env ids, seeds, budget and evaluation protocol:

- our ``acktr`` and ``a2c`` through ``agents.trainer.train`` with the env family's config
  (``configs/atari.yaml``, ``mujoco.yaml`` or ``classic.yaml``, plus ``--set`` overrides);
  ``sb3-a2c``, ``sb3-ppo`` and ``trpo`` through ``agents.baselines`` with rl-zoo3's tuned
  hyperparameters (and ``sb3-acktr``, our ACKTR as an SB3 algorithm, with
  ``configs/zoo/acktr.yml``);
- evaluation at the same grid of ``--eval-points`` timesteps (``g_k = round(k T / P)``), each at
  the first update boundary at or past ``g_k``, by the same function
  (``agents.evaluate.evaluate``: deterministic policy, ``--eval-episodes`` episodes on fresh envs
  seeded ``seed + 10000``, with the run's observation-normalization statistics);
- wall-clock counts training only (environment steps and updates), not evaluation.

Our agents are evaluated during one uninterrupted ``train()`` call (its ``after_update`` hook)
on fresh envs, with a deterministic policy, so evaluating does not change the run: its
parameters, and a learning rate decayed linearly over the run (``algo.lr_schedule: linear``,
ACKTR in the Atari and classic configs), are those of a plain ``train()`` of the same config.
The run lasts until the last evaluation point (the first update boundary at or past ``T``).

Layout of ``--out``: ``runs/<env>/<algo>/seed<N>/`` (``spec.json``, ``log.txt``, ``evals.csv``,
``done.json`` once finished, ``train/`` for our trainer's files), and at the top
``results.csv``, ``curves_<env>.png``, ``summary.md`` and ``compare.json`` (settings and the
commands that ran). Rerunning a command skips the finished runs; an unfinished run of ours
continues exactly from its last evaluation point (the trainer checkpoints at every one), an
unfinished baseline starts over. A finished run made with other settings is an error, not
silently mixed.

Runs longer than a session: ``--data DIR`` (a folder under version control, e.g.
``docs/data/...``) keeps the *light* files of each finished run (:data:`DATA_FILES`: its spec,
evaluations, done marker, log, and our trainer's config, progress.csv and summary; no
checkpoint, no TensorBoard files) in ``DIR/runs/<env>/<algo>/seed<N>/``, copied there as soon as
the run finishes, plus the report (``results.csv``, curves, ``summary.md``, ``compare.json``) of
everything ``DIR`` holds for the command's runs. A later command with the same ``--data`` (on
another machine, with an empty ``--out``) takes those finished runs from ``DIR`` instead of
redoing them; a finished run there with other settings is an error.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.baselines import BASELINE_ALGOS
from agents.compare_report import (
    OPTIONAL_FIELDS,
    RESULT_FIELDS,
    env_slug,
    markdown_table,
    plot_env,
    summarize,
    write_results,
)
from agents.errors import BadInputError
from agents.files import ends_cleanly, read_json, read_yaml, write_json

OUR_ALGOS: tuple[str, ...] = ("acktr", "a2c")
ALGOS: tuple[str, ...] = OUR_ALGOS + BASELINE_ALGOS
# What runs when --algos is not given: ours and the baselines of other libraries (sb3-acktr,
# our own ACKTR inside stable-baselines3, on request).
DEFAULT_ALGOS: tuple[str, ...] = tuple(a for a in ALGOS if a != "sb3-acktr")
REPO = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO / "configs"
FAMILY_CONFIGS = {"atari": "atari.yaml", "mujoco": "mujoco.yaml", "gym": "classic.yaml"}
THRESHOLDS_FILE = CONFIG_DIR / "baselines" / "thresholds.yaml"
DATA_FILES: tuple[str, ...] = ("spec.json", "evals.csv", "log.txt", "train/config.yaml",
                               "train/progress.csv", "train/summary.json", "done.json")
"""What ``--data`` keeps of a finished run (relative to its folder); ``done.json`` last, so a
copy cut short is not taken for a finished run."""


@dataclass(frozen=True)
class RunSpec:
    """One run of the comparison: what ``run_one`` needs, stored as ``spec.json``."""

    algo: str
    env_id: str
    seed: int
    timesteps: int
    grid: tuple[int, ...]
    eval_episodes: int = 10
    device: str | None = None
    threads: int = 1
    overrides: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """``<env>/<algo>/seed<N>``, the run's folder under ``runs/``."""
        return f"{env_slug(self.env_id)}/{self.algo}/seed{self.seed}"

    def comparable(self) -> dict[str, Any]:
        """The settings a finished run must share with a rerun to be reused (all but threads)."""
        d = dataclasses.asdict(self)
        d.pop("threads")
        d["grid"], d["overrides"] = list(self.grid), list(self.overrides)
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> RunSpec:
        return RunSpec(**{**d, "grid": tuple(d["grid"]), "overrides": tuple(d["overrides"])})


def eval_grid(timesteps: int, points: int) -> tuple[int, ...]:
    """``round(k T / P)`` for ``k = 1..P``, without duplicates or zeros."""
    if points < 1:
        raise ValueError(f"eval points must be >= 1, got {points}")
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    return tuple(sorted({max(1, round(k * timesteps / points)) for k in range(1, points + 1)}))


def family_config(env_id: str, overrides: Sequence[str] = ()) -> Path:
    """The config file of ``env_id``'s family (as ``train.py``'s default; ``overrides`` with
    ``env.observation=pixels`` pick ``mujoco_pixels.yaml`` for a MuJoCo env)."""
    from agents.config import family_config_name
    from envs.registry import resolve_kind

    return CONFIG_DIR / family_config_name(resolve_kind(env_id, "auto"), tuple(overrides))


def our_config(spec: RunSpec, algo: str | None = None, extra: Sequence[str] = ()):
    """Our ``Config`` for ``spec``: the family config, the spec's env/algo/seed/budget/device,
    then ``spec.overrides``, then ``extra``. ``algo`` overrides the algorithm (baselines use the
    family config for their evaluation envs only)."""
    from agents.config import load_config

    pairs = [f"env.env_id={spec.env_id}", f"algo.algo={algo or spec.algo}",
             f"run.seed={spec.seed}", f"run.total_timesteps={spec.timesteps}",
             f"run.eval_episodes={spec.eval_episodes}"]
    if spec.device is not None:
        pairs.append(f"run.device={spec.device}")
    return load_config(family_config(spec.env_id, spec.overrides),
                       pairs + list(spec.overrides) + list(extra))


# ---------------------------------------------------------------------------------------------
# Checks before anything starts.


def check_algos(algos: Sequence[str]) -> list[str]:
    """The algorithms without duplicates; an unknown name is a ValueError naming the allowed."""
    unknown = [a for a in algos if a not in ALGOS]
    if unknown:
        raise ValueError(f"unknown algorithm(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(ALGOS)}")
    if not algos:
        raise ValueError(f"no algorithm given; allowed: {', '.join(ALGOS)}")
    return list(dict.fromkeys(algos))


def check_env(env_id: str, algos: Sequence[str], probe: RunSpec) -> dict[str, str]:
    """Checks that every algorithm can run ``env_id`` (id known, packages installed, spaces
    supported, baseline hyperparameters valid); returns the hyperparameter source per algo.

    Raises:
        ValueError / ImportError: naming the env, the algorithm and what is allowed.
    """
    import gymnasium as gym

    from agents.baselines import check_spaces, load_baseline_spec, sb3_class
    from agents.distributions import make_distribution
    from agents.evaluate import make_env_from_config
    from envs.registry import resolve_kind

    kind = resolve_kind(env_id, "auto")
    sources = {}
    for algo in algos:
        if algo in OUR_ALGOS:
            cfg = our_config(dataclasses.replace(probe, env_id=env_id, algo=algo))
            try:
                env = make_env_from_config(cfg, num_envs=1, training=False)
                try:
                    make_distribution(env.action_space)
                finally:
                    env.close()
            except ValueError as err:
                raise ValueError(f"{algo} cannot handle {env_id!r}: {err}") from None
            sources[algo] = f"configs/{family_config(env_id, probe.overrides).name}"
        else:
            sb3_class(algo)
            if kind != "atari":  # Atari: image observations, Discrete actions
                env = gym.make(env_id)
                check_spaces(algo, env_id, env.observation_space, env.action_space)
                env.close()
            observation = our_config(dataclasses.replace(probe, env_id=env_id)).env.observation
            sources[algo] = load_baseline_spec(algo, env_id, kind,
                                               observation=observation).source
    return sources


def load_thresholds(envs: Sequence[str], given: dict[str, float] | None = None) -> dict[str, float]:
    """Threshold per env: ``given``, else ``configs/baselines/thresholds.yaml``, else gymnasium's
    ``spec.reward_threshold``; envs with none are left out."""
    import gymnasium as gym

    table = read_thresholds(THRESHOLDS_FILE)
    out = {}
    for env in envs:
        if given and env in given:
            out[env] = float(given[env])
        elif env in table:
            out[env] = table[env]
        else:
            try:
                thr = gym.spec(env).reward_threshold
            except gym.error.Error:
                thr = None
            if thr is not None:
                out[env] = float(thr)
    return out


def read_thresholds(path: Path) -> dict[str, float]:
    """``{env id: return threshold}`` from a YAML mapping such as
    ``configs/baselines/thresholds.yaml`` (empty file: none).

    Raises:
        agents.errors.BadInputError: naming the file and the first entry that is not
            ``ENV_ID: NUMBER``.
    """
    table = read_yaml(path, "thresholds", empty={})
    for env, value in table.items():
        if not isinstance(env, str) or isinstance(value, bool) or not isinstance(
                value, int | float):
            raise BadInputError(f"{path}: entry {env!r}: {value!r}; expected ENV_ID: NUMBER, "
                                "e.g. 'HalfCheetah-v5: 1500'")
    return {env: float(value) for env, value in table.items()}


def parse_thresholds(items: Sequence[str], envs: Sequence[str]) -> dict[str, float]:
    """``["ENV=VALUE", ...]`` (or a bare ``VALUE`` for every env) to ``{env: value}``."""
    out: dict[str, float] = {}
    for item in items:
        env, sep, value = item.rpartition("=")
        targets = [env] if sep else list(envs)
        if sep and env not in envs:
            raise ValueError(f"--threshold {item!r}: env {env!r} is not compared; envs: "
                             f"{', '.join(envs)}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--threshold {item!r}: expected ENV=NUMBER or NUMBER") from None
        out.update(dict.fromkeys(targets, number))
    return out


# ---------------------------------------------------------------------------------------------
# One run (in a worker process).

PointFn = Callable[..., None]
"""``on_point(timesteps, eval_mean, eval_std, wall_seconds, train_return=nan)``."""


def segment_updates(grid: Sequence[int], batch: int) -> list[int]:
    """Update counts at which our agents are evaluated: the first update boundary at or past
    each grid point, ``ceil(g / batch)``, without duplicates."""
    return sorted({max(1, math.ceil(g / batch)) for g in grid})


def train_ours(spec: RunSpec, run_dir: Path, on_point: PointFn,
               evaluated: Sequence[int] = ()) -> dict[str, Any]:
    """Train our ``acktr``/``a2c`` in one ``train()`` call, evaluating at the evaluation points
    (:func:`segment_updates`) from its ``after_update`` hook as the trainer's final evaluation
    does (the last point is that final evaluation); wall-clock excludes the evaluations.

    The trainer checkpoints at every evaluation point (and nowhere else), so a run stopped
    part-way continues exactly from its last evaluation point in ``run_dir/train``;
    ``evaluated`` lists the timesteps already evaluated, and a checkpoint whose evaluation is
    missing is evaluated first.
    """
    from agents.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from agents.evaluate import evaluate
    from agents.trainer import mean_or_nan, resolve_device, train

    base = our_config(spec)
    updates = segment_updates(spec.grid, base.batch_size)
    # The run ends at the last evaluation point: a linear lr decays over exactly these updates.
    cfg = our_config(spec, extra=["run.checkpoint_every=0", f"run.threads={spec.threads}",
                                  f"run.total_timesteps={updates[-1] * base.batch_size}"])
    device = resolve_device(cfg.run.device)
    train_dir = run_dir / "train"
    ckpt = None
    if (train_dir / CHECKPOINT_NAME).is_file():
        ckpt = load_checkpoint(train_dir / CHECKPOINT_NAME)
    reached = int(ckpt["progress"]["timesteps"]) if ckpt is not None else 0
    last = updates[-1] * cfg.batch_size
    if last in evaluated and reached == last and (train_dir / "summary.json").is_file():
        summary = read_summary(train_dir / "summary.json")  # finished before
    else:
        if ckpt is not None and reached in {u * cfg.batch_size for u in updates[:-1]} and (
                reached not in evaluated):  # stopped while evaluating at this point
            mean, std = _evaluate_checkpoint(cfg, ckpt, spec.eval_episodes, device)
            on_point(reached, mean, std, float(ckpt["progress"]["wall_seconds"]),
                     mean_or_nan(ckpt["progress"]["recent_returns"]))
        del ckpt
        points = set(updates[:-1])  # the last one is the trainer's final evaluation

        def after_update(progress, policy, env) -> None:
            if progress.update in points:
                returns, _ = evaluate(policy, cfg, spec.eval_episodes, device, env.state_dict())
                on_point(progress.timesteps, float(returns.mean()), float(returns.std()),
                         progress.wall_seconds, mean_or_nan(progress.recent_returns))

        summary = train(cfg, train_dir, resume=reached > 0, progress_bar=False,
                        tensorboard=False, after_update=after_update, checkpoint_at=updates)
        if summary["interrupted"]:
            raise KeyboardInterrupt
        on_point(int(summary["timesteps"]), summary["final_return_mean"],
                 summary["final_return_std"], summary["wall_seconds"],
                 float(summary.get("train_return_mean", float("nan"))))
    return {"timesteps": summary["timesteps"], "wall_seconds": summary["wall_seconds"],
            "fps": summary["fps"], "updates": summary["updates"], "device": summary["device"],
            "batch_size": cfg.batch_size,
            "source": f"configs/{family_config(spec.env_id, spec.overrides).name}",
            "notes": []}


def _evaluate_checkpoint(cfg, ckpt: dict[str, Any], episodes: int,
                         device) -> tuple[float, float]:
    """The evaluation ``train_ours`` makes at a checkpoint's update, from the checkpoint (its
    policy and normalization statistics)."""
    from agents.evaluate import evaluate, make_env_from_config
    from agents.policies import make_policy

    probe = make_env_from_config(cfg, num_envs=1, training=False)
    try:
        policy = make_policy(probe.observation_space, probe.action_space, cfg.policy)
    finally:
        probe.close()
    policy.to(device).load_state_dict(ckpt["policy"])
    returns, _ = evaluate(policy, cfg, episodes, device, ckpt["env"])
    return float(returns.mean()), float(returns.std())


def train_sb3(spec: RunSpec, on_point: PointFn) -> dict[str, Any]:
    """Train a baseline, evaluating with our evaluator on our family config's envs."""
    import torch

    from agents.baselines import load_baseline_spec, train_baseline
    from agents.evaluate import evaluate
    from agents.trainer import resolve_device
    from envs.registry import resolve_kind

    kind = resolve_kind(spec.env_id, "auto")
    cfg = our_config(spec, algo="a2c")
    bspec = load_baseline_spec(spec.algo, spec.env_id, kind, observation=cfg.env.observation)
    eval_cfg = dataclasses.replace(  # the baseline's own inputs: none of our extra inputs
        cfg, env=dataclasses.replace(cfg.env, normalize_obs=bspec.normalize_obs,
                                     normalize_reward=False),
        policy=dataclasses.replace(cfg.policy, prev_obs=False, critic_time_scale=None))
    device = str(resolve_device(cfg.run.device))

    def evaluate_fn(adapter, env_state):
        returns, _ = evaluate(adapter, eval_cfg, spec.eval_episodes, torch.device("cpu"),
                              env_state or None)
        return float(returns.mean()), float(returns.std())

    out = train_baseline(bspec, kind, spec.seed, spec.timesteps, spec.grid, evaluate_fn,
                         on_point, cfg.env, device)
    default_steps = {"sb3-a2c": 5, "trpo": 2048, "sb3-ppo": 2048, "sb3-acktr": 20}[spec.algo]
    return {**out, "device": device, "batch_size": bspec.n_envs * bspec.algo_kwargs.get(
        "n_steps", default_steps), "hyperparameters": bspec.to_dict(),
        "source": bspec.source, "notes": []}


def resumable(spec: RunSpec, run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a stopped run of ours with these settings that can continue
    (its trainer checkpoint and evaluations so far); baselines always start over."""
    try:
        before = RunSpec.from_dict(read_json(run_dir / "spec.json", "run spec"))
    except (BadInputError, TypeError, KeyError):
        return False
    return (spec.algo in OUR_ALGOS and before.comparable() == spec.comparable()
            and (run_dir / "train" / "checkpoint.pt").is_file()
            and (run_dir / "evals.csv").is_file())


def run_one(spec: RunSpec, run_dir: Path) -> dict[str, Any]:
    """Run ``spec`` in ``run_dir``: ``evals.csv`` row by row, then ``done.json`` (the
    finished-run marker). Continues a stopped run of ours (see :func:`resumable`), else starts
    from scratch. Returns the ``done.json`` content."""
    import torch

    from agents.compare_report import read_results

    torch.set_num_threads(spec.threads)
    run_dir.mkdir(parents=True, exist_ok=True)
    evals = run_dir / "evals.csv"
    evaluated: list[int] = []
    if resumable(spec, run_dir):
        rows = read_results(evals)
        if not ends_cleanly(evals):  # a row cut short by a kill: rewrite without it
            write_results(rows, evals.with_name("evals.csv.tmp"))
            os.replace(evals.with_name("evals.csv.tmp"), evals)
        evaluated = [r["timesteps"] for r in rows]
        print(f"{spec.key}: continuing after {max(evaluated, default=0)} steps", flush=True)
    else:
        with evals.open("w", newline="") as f:
            csv.DictWriter(f, fieldnames=RESULT_FIELDS + OPTIONAL_FIELDS).writeheader()
    write_json(run_dir / "spec.json", dataclasses.asdict(spec))

    def on_point(t: int, mean: float, std: float, wall: float,
                 train_return: float = float("nan")) -> None:
        row = {"algo": spec.algo, "env": spec.env_id, "seed": spec.seed, "timesteps": t,
               "eval_return_mean": mean, "eval_return_std": std, "wall_seconds": wall,
               "train_return_mean": train_return}
        with evals.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=RESULT_FIELDS + OPTIONAL_FIELDS).writerow(row)
        print(f"{spec.key}: {t} steps, eval {mean:.2f} +- {std:.2f}, {wall:.1f} s", flush=True)

    if spec.algo in OUR_ALGOS:
        result = train_ours(spec, run_dir, on_point, evaluated)
    else:
        result = train_sb3(spec, on_point)
    done = {"spec": spec.comparable(), **result}
    write_json(run_dir / "done.json", done)
    return done


def worker_main(argv: Sequence[str]) -> int:
    """``python -m agents.compare worker RUN_DIR``: run the ``spec.json`` there."""
    if len(argv) != 2 or argv[0] != "worker":
        print("usage: python -m agents.compare worker RUN_DIR", file=sys.stderr)
        return 2
    run_dir = Path(argv[1])
    try:
        spec = RunSpec.from_dict(read_json(run_dir / "spec.json", "run spec"))
        run_one(spec, run_dir)
    except BadInputError as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{spec.key}: interrupted", file=sys.stderr)
        return 130
    return 0


# ---------------------------------------------------------------------------------------------
# Orchestration.


@dataclass
class Outcome:
    """How one run ended: ``"done"``, ``"skipped"`` (finished before) or ``"failed"``."""

    spec: RunSpec
    status: str
    detail: str = ""


def run_status(spec: RunSpec, run_dir: Path) -> str:
    """``"done"`` (a finished run with these settings), ``"todo"``; a finished run with other
    settings is a ValueError naming what differs."""
    done = run_dir / "done.json"
    if not done.exists():
        return "todo"
    before = read_done(done).get("spec", {})
    now = spec.comparable()
    diff = [k for k in now if before.get(k) != now[k]]
    if diff:
        details = ", ".join(f"{k}: {before.get(k)!r} then, {now[k]!r} now" for k in diff)
        raise ValueError(f"{run_dir} holds a finished run with other settings ({details}); "
                         "use another --out or the same settings")
    return "done"


def _prepare(run_dir: Path, spec: RunSpec) -> bool:
    """Keep a stopped run that can continue (True), else empty the folder (only one compare
    made) and write the spec (False)."""
    if resumable(spec, run_dir):
        return True
    if run_dir.exists():
        if any(run_dir.iterdir()) and not (run_dir / "spec.json").is_file():
            raise ValueError(f"{run_dir} exists and is not a compare run folder; remove it or "
                             "use another --out")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    write_json(run_dir / "spec.json", dataclasses.asdict(spec))
    return False


def export_run(run_dir: Path, data_run_dir: Path) -> list[str]:
    """Copy the :data:`DATA_FILES` of the finished run in ``run_dir`` to ``data_run_dir``
    (replacing what was there; ``done.json`` last, through a temporary name). Returns the
    relative paths copied."""
    if not (run_dir / "done.json").is_file():
        raise ValueError(f"{run_dir} holds no finished run (no done.json)")
    if data_run_dir.exists():
        shutil.rmtree(data_run_dir)
    copied = []
    for name in DATA_FILES:
        src = run_dir / name
        if src.is_file():
            dst = data_run_dir / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
            copied.append(name)
    return copied


def import_finished(specs: Sequence[RunSpec], out: Path, data: Path,
                    log: Callable[[str], None] = print) -> list[str]:
    """Take the runs of ``specs`` that ``data`` holds finished (with these settings) and
    ``out`` does not: their files are copied into ``out`` (replacing an unfinished run there),
    so they count as finished; runs finished in ``out`` but missing from ``data`` are copied
    there. Returns the keys taken from ``data``.

    Raises:
        ValueError: ``data`` holds a finished run of one of ``specs`` with other settings.
    """
    taken, given = [], []
    for spec in specs:
        src, dst = data / "runs" / spec.key, out / "runs" / spec.key
        in_data, in_out = run_status(spec, src) == "done", run_status(spec, dst) == "done"
        if in_data and not in_out:
            export_run(src, dst)
            taken.append(spec.key)
        elif in_out and not in_data:  # finished while no --data was given, or copy cut short
            export_run(dst, src)
            given.append(spec.key)
    if taken:
        log(f"took {len(taken)} finished run(s) from {data}")
    if given:
        log(f"copied {len(given)} finished run(s) missing there to {data}")
    return taken


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def execute(specs: Sequence[RunSpec], out: Path, jobs: int,
            log: Callable[[str], None] = print, data: Path | None = None) -> list[Outcome]:
    """Run the unfinished ``specs`` in up to ``jobs`` worker processes at once (each with
    ``OMP_NUM_THREADS`` = its threads); a failing run is reported, the others go on. With
    ``data``, each run's :data:`DATA_FILES` are copied there as soon as it finishes."""
    outcomes: list[Outcome] = []
    pending = []
    for spec in specs:
        if run_status(spec, out / "runs" / spec.key) == "done":
            outcomes.append(Outcome(spec, "skipped", "finished before"))
        else:
            pending.append(spec)
    if outcomes:
        log(f"skipping {len(outcomes)} finished run(s); {len(pending)} to run")
    running: dict[subprocess.Popen, tuple[RunSpec, Any, float]] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                spec = pending.pop(0)
                run_dir = out / "runs" / spec.key
                continuing = _prepare(run_dir, spec)
                env = {**os.environ, "OMP_NUM_THREADS": str(spec.threads),
                       "MKL_NUM_THREADS": str(spec.threads),
                       "PYTHONPATH": os.pathsep.join(
                           p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
                logf = (run_dir / "log.txt").open("a" if continuing else "w")
                proc = subprocess.Popen(
                    [sys.executable, "-m", "agents.compare", "worker", str(run_dir)],
                    stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=REPO)
                running[proc] = (spec, logf, time.perf_counter())
                log(f"{'continuing' if continuing else 'started'} {spec.key}")
            time.sleep(0.1)
            for proc in [p for p in running if p.poll() is not None]:
                spec, logf, began = running.pop(proc)
                logf.close()
                run_dir = out / "runs" / spec.key
                took = time.perf_counter() - began
                if proc.returncode == 0 and (run_dir / "done.json").is_file():
                    outcomes.append(Outcome(spec, "done", f"{took:.0f} s"))
                    log(f"finished {spec.key} ({took:.0f} s)")
                    if data is not None:
                        export_run(run_dir, data / "runs" / spec.key)
                else:
                    detail = (f"exit code {proc.returncode}; log {run_dir / 'log.txt'}:\n"
                              f"{_tail(run_dir / 'log.txt')}")
                    outcomes.append(Outcome(spec, "failed", detail))
                    log(f"FAILED {spec.key}: {detail}")
    except KeyboardInterrupt:
        for proc in running:
            proc.terminate()
        for proc, (_spec, logf, _began) in running.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            logf.close()
        raise
    return outcomes


def plan(envs: Sequence[str], algos: Sequence[str], seeds: Sequence[int], timesteps: int,
         eval_points: int, eval_episodes: int, device: str | None, threads: int,
         overrides: Sequence[str]) -> list[RunSpec]:
    """Every (env, algo, seed) run, env-major."""
    grid = eval_grid(timesteps, eval_points)
    return [RunSpec(algo, env, seed, timesteps, grid, eval_episodes, device, threads,
                    tuple(overrides))
            for env in envs for algo in algos for seed in seeds]


@dataclass
class CompareSettings:
    """What ``train.py compare`` was asked (defaults as its flags)."""

    envs: list[str]
    out: Path
    algos: list[str] = field(default_factory=lambda: list(ALGOS))
    seeds: int = 3
    first_seed: int = 0
    timesteps: int = 1_000_000
    jobs: int = 1
    threads: int = 1
    device: str | None = None
    eval_episodes: int = 10
    eval_points: int = 10
    thresholds: dict[str, float] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    command: str = ""
    data: Path | None = None


def validate(s: CompareSettings) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Everything checkable before a run starts; returns the algorithms and, per env, the
    hyperparameter source per algorithm."""
    from agents.trainer import resolve_device

    algos = check_algos(s.algos)
    for name, value, low in (("--seeds", s.seeds, 1), ("--jobs", s.jobs, 1),
                             ("--threads", s.threads, 1), ("--eval-episodes", s.eval_episodes, 1),
                             ("--eval-points", s.eval_points, 1), ("--timesteps", s.timesteps, 1),
                             ("--first-seed", s.first_seed, 0)):
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    if not s.envs:
        raise ValueError("no env given (--env ENV [ENV ...])")
    if s.out.exists() and not s.out.is_dir():
        raise BadInputError(f"--out {s.out}: exists and is not a folder; pass a new or "
                            "earlier compare output folder")
    if s.device is not None:
        resolve_device(s.device)
    probe = RunSpec("acktr", s.envs[0], s.first_seed, s.timesteps, (s.timesteps,),
                    s.eval_episodes, s.device, s.threads, tuple(s.overrides))
    sources = {env: check_env(env, algos, probe) for env in dict.fromkeys(s.envs)}
    return algos, sources


def run_compare(s: CompareSettings, log: Callable[[str], None] = print) -> int:
    """Validate, run what is unfinished, then write ``results.csv``, the curves and
    ``summary.md``. Returns 0 when every run finished, 1 when some failed."""
    algos, sources = validate(s)
    envs = list(dict.fromkeys(s.envs))
    seeds = list(range(s.first_seed, s.first_seed + s.seeds))
    specs = plan(envs, algos, seeds, s.timesteps, s.eval_points, s.eval_episodes, s.device,
                 s.threads, s.overrides)
    for spec in specs:  # conflicts with finished runs: an error before anything starts
        run_status(spec, s.out / "runs" / spec.key)
        if s.data is not None:
            run_status(spec, s.data / "runs" / spec.key)
    thresholds = load_thresholds(envs, s.thresholds)  # a bad file fails before any run
    s.out.mkdir(parents=True, exist_ok=True)
    _record_command(s.out, s.command)
    if s.data is not None:
        s.data.mkdir(parents=True, exist_ok=True)
        _record_command(s.data, s.command)
        import_finished(specs, s.out, s.data, log)
    outcomes = execute(specs, s.out, s.jobs, log, s.data)
    write_report(s.out, specs, sources, thresholds, outcomes)
    if s.data is not None:
        held = data_specs(s.data, specs)
        write_report(s.data, held, sources, load_thresholds(
            list(dict.fromkeys(sp.env_id for sp in held)), s.thresholds), outcomes)
    failed = [o for o in outcomes if o.status == "failed"]
    log(f"wrote {s.out / 'results.csv'} and {s.out / 'summary.md'}"
        + (f" (and the same in {s.data})" if s.data is not None else ""))
    if failed:
        log(f"{len(failed)} run(s) failed: {', '.join(o.spec.key for o in failed)} "
            "(details in summary.md; rerun the same command to retry them)")
        return 1
    return 0


def data_specs(data: Path, specs: Sequence[RunSpec]) -> list[RunSpec]:
    """``specs`` and every other finished run in ``data`` with the same protocol (budget,
    evaluation grid and episodes) as ``specs[0]``: what ``data``'s report covers, so that
    commands on other envs or algorithms sharing one ``--data`` folder all stay in it."""
    if not specs:
        return []
    protocol = {k: specs[0].comparable()[k] for k in ("timesteps", "grid", "eval_episodes")}
    keys = {sp.key for sp in specs}
    extra = []
    for done in sorted((data / "runs").glob("*/*/*/done.json")):
        try:
            spec = RunSpec.from_dict(read_json(done.parent / "spec.json", "run spec"))
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if spec.key not in keys and all(spec.comparable()[k] == v for k, v in protocol.items()):
            extra.append(spec)
            keys.add(spec.key)
    return list(specs) + extra


def _record_command(folder: Path, command: str) -> None:
    path = folder / "compare.json"
    record = read_record(path)
    record["commands"].append(command)
    write_json(path, record)


def read_record(path: Path) -> dict[str, Any]:
    """A compare folder's ``compare.json`` (none yet: no commands).

    Raises:
        agents.errors.BadInputError: naming the file when it is not such a record.
    """
    if not path.exists():
        return {"commands": []}
    record = read_json(path, "compare record")
    if not isinstance(record.get("commands"), list) or not all(
            isinstance(c, str) for c in record["commands"]):
        raise BadInputError(f"{path}: not a compare record: 'commands' must be a list of "
                            "strings (the commands that wrote this folder); use another --out")
    return record


def read_done(path: Path) -> dict[str, Any]:
    """A finished run's ``done.json``; its ``spec`` must be a mapping.

    Raises:
        agents.errors.BadInputError: naming the file, with what to do.
    """
    advice = f"remove {path.parent} to rerun that run"
    try:
        done = read_json(path, "finished-run record")
    except BadInputError as err:
        raise BadInputError(f"{err}; {advice}") from None
    if not isinstance(done.get("spec"), dict):
        raise BadInputError(f"{path}: not a finished-run record: no 'spec' mapping; {advice}")
    return done


def read_summary(path: Path) -> dict[str, Any]:
    """A run's ``summary.json`` with ``null`` (written for NaN) read back as NaN.

    Raises:
        agents.errors.BadInputError: naming the file when it is not a JSON object.
    """
    return {k: float("nan") if v is None else v
            for k, v in read_json(path, "run summary").items()}


def collect_rows(specs: Sequence[RunSpec], out: Path) -> tuple[list[dict], dict[str, dict]]:
    """Evaluation rows and ``done.json`` records of the finished runs among ``specs``."""
    from agents.compare_report import read_results

    rows, done = [], {}
    for spec in specs:
        run_dir = out / "runs" / spec.key
        if (run_dir / "done.json").is_file():
            rows += _with_final_training_return(read_results(run_dir / "evals.csv"), run_dir)
            done[spec.key] = read_done(run_dir / "done.json")
    return rows, done


def _with_final_training_return(rows: list[dict], run_dir: Path) -> list[dict]:
    """Our runs whose ``evals.csv`` predates the ``train_return_mean`` column: the last row
    takes it from the trainer's ``summary.json`` (same timesteps), the others stay NaN."""
    summary_path = run_dir / "train" / "summary.json"
    if not rows or math.isfinite(rows[-1]["train_return_mean"]) or not summary_path.is_file():
        return rows
    summary = read_summary(summary_path)
    if summary.get("timesteps", -1) == rows[-1]["timesteps"]:
        value = summary.get("train_return_mean", float("nan"))
        rows[-1]["train_return_mean"] = float(value) if isinstance(value, int | float) \
            else float("nan")
    return rows


def write_report(out: Path, specs: Sequence[RunSpec], sources: dict[str, dict[str, str]],
                 thresholds: dict[str, float], outcomes: Sequence[Outcome]) -> None:
    """``results.csv``, ``curves_<env>.png`` per env and ``summary.md`` from the finished runs."""
    from agents.compare_report import curves

    rows, done = collect_rows(specs, out)
    write_results(rows, out / "results.csv")
    grid = specs[0].grid if specs else ()
    summaries = summarize(rows, grid, thresholds)
    by_env = curves(rows)
    lines = ["# Comparison", "", "Commands (in `compare.json`):", ""]
    record = read_record(out / "compare.json")
    lines += [f"    {c}" for c in record["commands"]] + [""]
    if specs:
        sp = specs[0]
        lines += [f"Budget {sp.timesteps} timesteps; evaluation at {len(sp.grid)} points "
                  f"({', '.join(str(g) for g in sp.grid)}), each {sp.eval_episodes} "
                  "deterministic episodes on fresh envs seeded seed + 10000 "
                  "(agents.evaluate.evaluate for every algorithm). Wall-clock excludes "
                  "evaluation; fps = timesteps / wall-clock. See agents/compare_report.py for "
                  "the definitions of AUC and steps to threshold.", ""]
    for env in dict.fromkeys(s.env_id for s in specs):
        env_rows = [x for x in summaries if x.env == env]
        lines += [f"## {env}", ""]
        if env_rows:
            lines += [markdown_table(env_rows, sources.get(env)),
                      f"![{env}](curves_{env_slug(env)}.png)", ""]
            plot_env({a: c for (e, a), c in by_env.items() if e == env}, env,
                     out / f"curves_{env_slug(env)}.png")
        else:
            lines += ["No finished runs.", ""]
        notes = sorted({n for k, d in done.items() if k.startswith(env_slug(env) + "/")
                        for n in d.get("notes", [])})
        lines += [f"Note: {n}." for n in notes] + ([""] if notes else [])
    failed = [o for o in outcomes if o.status == "failed"]
    missing = [sp.key for sp in specs if sp.key not in done]
    if failed or missing:
        lines += ["## Unfinished runs", ""]
        lines += [f"- `{o.spec.key}`: failed, {o.detail.splitlines()[0]}" for o in failed]
        failed_keys = {o.spec.key for o in failed}
        lines += [f"- `{k}`: not finished" for k in missing if k not in failed_keys]
        lines.append("")
    (out / "summary.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
