"""Screening of ACKTR's MuJoCo recipe, one change at a time (issue 14, "What moves ACKTR").

    python -m benchmarks.acktr_mujoco_screen run --protocol ip --candidates base target_kl_0.01
    python -m benchmarks.acktr_mujoco_screen run --protocol dev --candidates base normalize_reward
    python -m benchmarks.acktr_mujoco_screen report          # the table, from docs/data
    python -m benchmarks.acktr_mujoco_screen report --write docs/results.md   # ... into the page
    python -m benchmarks.acktr_mujoco_screen list            # candidates and protocols
    python -m benchmarks.acktr_mujoco_screen status          # finished / unfinished runs

Each candidate is ``configs/mujoco.yaml`` plus ``--set`` overrides (:data:`CANDIDATES`; ``base``
has none), run by ``train.py compare`` (acktr only) on a protocol's development envs and seeds
(:data:`PROTOCOLS`), ``--jobs`` compare commands at once (each ``--jobs 1``, nice 10, one
thread). Runs go to ``results/screen/<protocol>/<candidate>``; each finished run's light files
(evaluations, progress.csv, summary) are copied to ``docs/data/acktr_screen/<protocol>/
<candidate>`` as it finishes (``compare --data``), so a later session continues from there
and finished runs are never redone.

``report`` prints, per protocol and env, each candidate's final return and AUC (mean +- std
over seeds, :mod:`agents.compare_report`'s definitions), their change against ``base``, the
seeds finished and, for InvertedPendulum, the first evaluation at 1000 per seed.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = Path("results/screen")
DATA = Path("docs/data/acktr_screen")
# Evaluations of a check run stopped before its end (copied by hand from its evals.csv).
PARTIAL = "partial_evals.csv"
# The 1M-step runs of configs/mujoco.yaml whose first 300k steps are protocol dev's base.
BASE_FROM = {"dev": Path("docs/data/compare_mujoco/results.csv"),
             "check": Path("docs/data/compare_mujoco/results.csv")}


@dataclass(frozen=True)
class Protocol:
    """Envs, seeds and budget of a screening run."""

    envs: tuple[str, ...]
    timesteps: str
    eval_points: int
    seeds: int = 3
    note: str = ""


PROTOCOLS: dict[str, Protocol] = {
    # The goal: 1000 within 50k steps. Evaluated every 5k steps up to 60k.
    "ip": Protocol(("InvertedPendulum-v5",), "60k", 12,
                   note="evaluation every 5k steps; the goal is 1000 by 50k"),
    # HalfCheetah, Hopper, Walker2d for 300k steps, evaluated every 100k: the 1M curves of
    # docs/data/compare_mujoco already order ACKTR and TRPO by 300k (TRPO is past 1000 on
    # Hopper and Walker2d at 200k, ACKTR at 300k / 500k). Same evaluation points as those 1M
    # runs, whose first 300k are the same runs (constant step-size schedule, evaluation does
    # not change a run): `base` is taken from them (BASE_FROM), checked by rerunning a seed.
    # Walker2d first: the env where ACKTR trails TRPO most (compare runs env-major).
    "dev": Protocol(("Walker2d-v5", "Hopper-v5", "HalfCheetah-v5"), "300k", 3,
                    note="300k-step screening, evaluated at 100k, 200k, 300k; the ordering of "
                    "the 1M curves is visible by then"),
    # One seed of dev's base rerun: its evaluations must equal the 1M runs' at 100k-300k.
    "check": Protocol(("Hopper-v5",), "300k", 3, seeds=1,
                      note="check that dev's base equals the first 300k of the 1M runs"),
}

CANDIDATES: dict[str, tuple[str, ...]] = {
    "base": (),
    # trust region and step size
    "target_kl_0.01": ("algo.target_kl=0.01",),
    "target_kl_0.006": ("algo.target_kl=0.006",),
    "kl_clip_0.05": ("kfac.kl_clip=0.05",),
    "no_momentum": ("kfac.momentum=0.0",),
    # batch
    "steps_1000": ("algo.num_steps=1000",),
    "steps_500": ("algo.num_steps=500",),
    "envs_4x625": ("env.num_envs=4", "algo.num_steps=625"),
    # critic fit
    "critic_updates_50": ("algo.critic_updates=50",),
    "critic_lr_0.01": ("critic_kfac.lr=0.01",),
    "critic_tanh": ("policy.critic_activation=tanh",),
    # returns and normalization
    "gae_0.95": ("algo.gae_lambda=0.95",),
    "no_adv_norm": ("algo.normalize_advantages=false",),
    "normalize_reward": ("env.normalize_reward=true",),
    # exploration
    "log_std_-0.5": ("policy.log_std_init=-0.5",),
    "ent_0.001": ("algo.ent_coef=0.001",),
    # initialization
    "normc_init": ("policy.init=normc",),
    # policy K-FAC
    "damping_0.001": ("kfac.damping=0.001",),
    "stat_decay_0.95": ("kfac.stat_decay=0.95",),
    "inverse_every_1": ("kfac.inverse_every=1",),
    # the original code's extra inputs (openai/baselines old_acktr_cont)
    "time_input": ("policy.critic_time_scale=0.1",),
    "time_input_fraction": ("policy.critic_time_scale=0.001",),
    "prev_obs": ("policy.prev_obs=true",),
    # combinations of the single changes that helped on their own
    "steps_1000_kl_0.01": ("algo.num_steps=1000", "algo.target_kl=0.01"),
    "steps_1000_log_std_-0.5": ("algo.num_steps=1000", "policy.log_std_init=-0.5"),
}


def compare_command(protocol: str, candidate: str) -> list[str]:
    """The ``train.py compare`` command of one (protocol, candidate)."""
    p = PROTOCOLS[protocol]
    cmd = ["python", "train.py", "compare", "--env", *p.envs, "--algos", "acktr",
           "--seeds", str(p.seeds), "--timesteps", p.timesteps, "--eval-points",
           str(p.eval_points), "--jobs", "1", "--threads", "1", "--device", "cpu",
           "--out", str(OUT / protocol / candidate), "--data", str(DATA / protocol / candidate)]
    for override in CANDIDATES[candidate]:
        cmd += ["--set", override]
    return cmd


def run(protocol: str, candidates: list[str], jobs: int) -> int:
    """Run the candidates' compare commands, ``jobs`` at once, niced; returns 1 if any failed."""
    queue = [compare_command(*c.split(":", 1)) if ":" in c else compare_command(protocol, c)
             for c in candidates]
    running: list[tuple[subprocess.Popen, str]] = []
    failed = 0
    (REPO / OUT).mkdir(parents=True, exist_ok=True)
    while queue or running:
        while queue and len(running) < jobs:
            cmd = queue.pop(0)
            name = cmd[cmd.index("--out") + 1]
            (REPO / name).parent.mkdir(parents=True, exist_ok=True)
            log = (REPO / f"{name}.log").open("a")
            print(f"{time.strftime('%H:%M:%S')} start: {shlex.join(cmd)}", flush=True)
            proc = subprocess.Popen(["nice", "-n", "10", sys.executable, *cmd[1:]], cwd=REPO,
                                    stdout=log, stderr=subprocess.STDOUT,
                                    env={**_env(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
            running.append((proc, name))
        time.sleep(2)
        for proc, name in [r for r in running if r[0].poll() is not None]:
            running.remove((proc, name))
            failed += proc.returncode != 0
            print(f"{time.strftime('%H:%M:%S')} end ({proc.returncode}): {name}", flush=True)
    return int(failed > 0)


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def report(data: Path = DATA) -> str:
    """Markdown tables of every candidate in ``data`` against ``base``."""
    import numpy as np

    from agents.compare_report import area_under_curve, read_results
    from agents.config import parse_timesteps

    lines = []
    for protocol, p in PROTOCOLS.items():
        root = REPO / data / protocol
        reference = REPO / BASE_FROM[protocol] if protocol in BASE_FROM else None
        if reference is not None and not reference.is_file():
            reference = None
        if not root.is_dir() and reference is None:
            continue
        grid = None
        by_candidate: dict[str, list[dict]] = {}
        for done in sorted(root.glob("*/runs/*/*/*/done.json")):  # finished runs only
            candidate = done.relative_to(root).parts[0]
            by_candidate.setdefault(candidate, []).extend(
                read_results(done.parent / "evals.csv"))
        lines += [f"### Protocol `{protocol}`: {', '.join(p.envs)}, {p.timesteps} steps, "
                  f"{p.note}", ""]
        if reference is not None:
            limit = parse_timesteps(p.timesteps)
            first = [r for r in read_results(reference)
                     if r["algo"] == "acktr" and r["timesteps"] <= limit]
            if protocol == "check":
                rerun, partial = by_candidate.get("base", []), root / "base" / PARTIAL
                if not rerun and partial.is_file():
                    rerun = read_results(partial)
                    lines += [f"(The check run was stopped after its first point to free the "
                              f"core; its evaluations so far: `{partial.relative_to(REPO)}`.)", ""]
                lines += [_check_line(rerun, first), ""]
                continue
            # TRPO's runs beside them, for reference (the gap to close)
            by_candidate["(trpo)"] = [r for r in read_results(reference)
                                      if r["algo"] == "trpo" and r["timesteps"] <= limit * 1.01]
            if "base" not in by_candidate:
                by_candidate["base"] = first
                lines += [f"`base`: the first {p.timesteps} steps of the 1M-step ACKTR runs in "
                          f"{BASE_FROM[protocol].parent}.", ""]
        for env in p.envs:
            stats = {}
            for cand, rows in by_candidate.items():
                seeds = sorted({r["seed"] for r in rows if r["env"] == env})
                if not seeds:
                    continue
                finals, aucs, at_goal = [], [], []
                for seed in seeds:
                    curve = sorted((r["timesteps"], r["eval_return_mean"]) for r in rows
                                   if r["env"] == env and r["seed"] == seed)
                    steps = [t for t, _ in curve]
                    grid = grid or steps
                    finals.append(curve[-1][1])
                    aucs.append(area_under_curve(steps, [v for _, v in curve], steps))
                    at_goal.append(next((t for t, v in curve if v >= 1000), None))
                stats[cand] = (seeds, np.array(finals), np.array(aucs), at_goal)
            if not stats:
                continue
            lines += [f"{env}:", "",
                      "| candidate | overrides | seeds | final | AUC | final vs base | "
                      "AUC vs base | training (medians over updates) |"
                      + (" first eval >= 1000 (per seed) |" if
                         env.startswith("InvertedPendulum") else ""),
                      "|---|---|---|---|---|---|---|---|" + ("---|" if env.startswith(
                          "InvertedPendulum") else "")]
            base = stats.get("base")
            order = ["base"] + sorted(c for c in stats if c != "base")
            for cand in [c for c in order if c in stats]:
                seeds, finals, aucs, at_goal = stats[cand]
                d_final = d_auc = ""
                if base is not None and cand != "base":
                    d_final = f"{finals.mean() - base[1].mean():+.0f}"
                    d_auc = f"{aucs.mean() - base[2].mean():+.0f}"
                overrides = ("rl-zoo3 TRPO, same 1M runs" if cand == "(trpo)" else
                             " ".join(f"`{o}`" for o in CANDIDATES.get(cand, ("?",))) or "-")
                row = (f"| {cand} | {overrides} | {','.join(map(str, seeds))} | "
                       f"{finals.mean():.0f} +- {finals.std():.0f} | "
                       f"{aucs.mean():.0f} +- {aucs.std():.0f} | {d_final} | {d_auc} | "
                       f"{training_diagnostics(root / cand, env)} |")
                if env.startswith("InvertedPendulum"):
                    row += " " + ", ".join(f"{t // 1000}k" if t else "-" for t in at_goal) + " |"
                lines.append(row)
            lines.append("")
    return "\n".join(lines)


def training_diagnostics(candidate_dir: Path, env: str) -> str:
    """From the finished runs' ``progress.csv``: the achieved KL of the policy step against
    its target, how often K-FAC's trust region (``kfac.kl_clip``) shrank the step, the final
    policy's entropy (nats) and the critic's explained variance after its fit; medians over
    every update of every seed (the entropy: over seeds, at the last update). Empty without
    progress files."""
    import math

    import numpy as np

    from agents.run_log import read_progress

    ratio, clipped, ev = [], [], []
    stds = []
    for done in sorted(candidate_dir.glob(f"runs/{env.replace('/', '_')}/*/*/done.json")):
        path = done.parent / "train" / "progress.csv"
        if not path.is_file():
            continue
        rows = read_progress(path)  # SB3 names, whichever names the run was written with
        for r in rows:
            if math.isfinite(r.get("target_kl", math.nan)):
                ratio.append(r["train/kl"] / r["target_kl"])
            trust = r.get("train/trust_scale", math.nan)
            clipped.append(math.isfinite(trust) and trust < 1.0)
            if math.isfinite(r.get("value_ev_after", math.nan)):
                ev.append(r["value_ev_after"])
        if rows and math.isfinite(rows[-1].get("train/entropy_loss", math.nan)):
            stds.append(-rows[-1]["train/entropy_loss"])  # the policy's entropy, last update
    parts = []
    if ratio:
        parts.append(f"KL/target {np.median(ratio):.2f}")
    if clipped:
        parts.append(f"trust-clipped {100 * np.mean(clipped):.0f}%")
    if ev:
        parts.append(f"critic EV {np.median([e for e in ev if math.isfinite(e)]):.2f}")
    if stds:
        parts.append(f"final entropy {np.median(stds):.2f}")
    return ", ".join(parts)


def _check_line(rerun: list[dict], first: list[dict]) -> str:
    """Whether the rerun's evaluations equal the 1M runs' at the same points."""
    if not rerun:
        return "Check not finished yet."
    pairs = []
    for r in rerun:
        same = [f for f in first if (f["env"], f["seed"], f["timesteps"]) ==
                (r["env"], r["seed"], r["timesteps"])]
        pairs.append((r, same[0] if same else None))
    equal = all(f is not None and f["eval_return_mean"] == r["eval_return_mean"]
                for r, f in pairs)
    shown = ", ".join(f"{r['timesteps'] // 1000}k: {r['eval_return_mean']:.2f} vs "
                      + (f"{f['eval_return_mean']:.2f}" if f else "missing") for r, f in pairs)
    env, seed = rerun[0]["env"], rerun[0]["seed"]
    return (f"{env} seed {seed} rerun against the 1M run ({shown}): "
            + ("identical evaluations, so the 1M runs' first 300k are `base`." if equal else
               "DIFFERENT evaluations: `base` must be rerun, not taken from the 1M runs."))


def status(out: Path = OUT, data: Path = DATA) -> str:
    """Per (protocol, candidate) under ``out``: runs finished, finished runs not yet in
    ``data`` (a compare killed between the two), and runs begun but not finished."""
    lines = []
    for cand_dir in sorted((REPO / out).glob("*/*/")):
        if not (cand_dir / "runs").is_dir():
            continue
        protocol, candidate = cand_dir.parts[-2:]
        finished, begun, missing = [], [], []
        for spec in sorted(cand_dir.glob("runs/*/*/*/spec.json")):
            run_dir = spec.parent
            key = "/".join(run_dir.parts[-3:])
            if (run_dir / "done.json").is_file():
                finished.append(key)
                if not (REPO / data / protocol / candidate / "runs" / key / "done.json").is_file():
                    missing.append(key)
            else:
                begun.append(key)
        lines.append(f"{protocol}/{candidate}: {len(finished)} finished"
                     + (f", NOT in {data}: {', '.join(missing)}" if missing else "")
                     + (f"; unfinished: {', '.join(begun)}" if begun else ""))
    return "\n".join(lines)


BEGIN, END = "<!-- acktr_mujoco_screen:begin -->", "<!-- acktr_mujoco_screen:end -->"


def write_section(path: Path, text: str) -> None:
    """Replace the text between :data:`BEGIN` and :data:`END` in ``path`` by ``text``."""
    doc = path.read_text()
    if BEGIN not in doc or END not in doc:
        raise ValueError(f"{path} has no {BEGIN} ... {END} section to replace")
    head, rest = doc.split(BEGIN, 1)
    path.write_text(head + BEGIN + "\n" + text.rstrip() + "\n" + END + rest.split(END, 1)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run candidates on a protocol")
    r.add_argument("--protocol", choices=sorted(PROTOCOLS), required=True)
    r.add_argument("--candidates", nargs="+", required=True, metavar="NAME",
                   help=f"from: {', '.join(CANDIDATES)}; PROTOCOL:NAME runs NAME on another "
                   "protocol than --protocol")
    r.add_argument("--jobs", type=int, default=2, help="compare commands at once")
    rep = sub.add_parser("report", help="print the tables from docs/data/acktr_screen")
    rep.add_argument("--write", type=Path, metavar="MD",
                     help="also put them between the screen markers of this file "
                     "(docs/results.md)")
    sub.add_parser("list", help="print the candidates and protocols")
    sub.add_parser("status", help="finished / unfinished runs under results/screen")
    args = parser.parse_args(argv)
    if args.command == "run":
        unknown = [c for c in args.candidates if c.split(":")[-1] not in CANDIDATES
                   or c.split(":")[0] not in (*PROTOCOLS, c)]
        if unknown:
            parser.error(f"unknown candidate(s) {', '.join(unknown)}; from: "
                         f"{', '.join(CANDIDATES)}")
        return run(args.protocol, args.candidates, args.jobs)
    if args.command == "status":
        print(status())
        return 0
    if args.command == "report":
        text = report()
        print(text)
        if args.write:
            write_section(args.write, text)
        return 0
    for name, overrides in CANDIDATES.items():
        print(f"{name}: {' '.join(overrides) or '(configs/mujoco.yaml)'}")
    for name, p in PROTOCOLS.items():
        print(f"protocol {name}: {', '.join(p.envs)}, {p.timesteps}, {p.seeds} seeds, {p.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
