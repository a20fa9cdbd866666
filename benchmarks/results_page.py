"""Markdown for docs/results.md from one or more ``train.py compare`` output folders.

    python -m benchmarks.results_page results/mujoco results/atari --images docs/img \\
        --paper > docs/results.md

Per output folder: the commands that produced it (its ``compare.json``), then per env the
summary table (final return, AUC, steps to threshold, wall-clock, fps; definitions in
``agents/compare_report.py``) and its learning curves, copied into ``--images`` and linked
relative to ``--page`` (the markdown file's folder). ``--paper`` adds a column with the ACKTR
paper's Atari numbers (REFERENCE section 2, Table 1: mean of the last 100 training episodes,
ACKTR and A2C after 50M timesteps, TRPO after 10M), which are not the same protocol as ours
(deterministic evaluation episodes at our budget): shown beside, never mixed in.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from agents.compare import load_thresholds
from agents.compare_report import env_slug, markdown_table, read_results, summarize

# Wu et al. 2017, Table 1 (REFERENCE section 2); Q*bert's ACKTR figure is marked recalled there.
PAPER_ATARI = {
    "BeamRider": {"acktr": 13581.4, "a2c": 8148.1, "trpo": 670.0},
    "Breakout": {"acktr": 735.7, "a2c": 581.6, "trpo": 14.7},
    "Pong": {"acktr": 20.9, "a2c": 19.9, "trpo": -1.2},
    "Qbert": {"acktr": 21500.3, "a2c": 15967.4, "trpo": 971.8},
    "Seaquest": {"acktr": 1776.0, "a2c": 1754.0, "trpo": 810.4},
    "SpaceInvaders": {"acktr": 19723.0, "a2c": 1757.2, "trpo": 465.1},
}
PAPER_BUDGET = {"acktr": "50M", "a2c": "50M", "trpo": "10M"}


def game_name(env_id: str) -> str:
    """``ALE/Pong-v5`` / ``PongNoFrameskip-v4`` -> ``Pong``."""
    name = env_id.split("/")[-1].split("-v")[0]
    return name.replace("NoFrameskip", "")


def paper_cells(env_id: str, algos: list[str]) -> dict[tuple[str, str], str]:
    """``{(env, algo): "20.9 (50M)"}`` for the paper's Atari games; sb3-a2c gets the A2C
    figure (the same algorithm), MuJoCo envs nothing (the paper's Table 2 reports the best 10
    episodes of the 3 best of 8 seeds, not comparable)."""
    table = PAPER_ATARI.get(game_name(env_id))
    out = {}
    for algo in algos:
        paper_algo = "a2c" if algo == "sb3-a2c" else algo
        if table and paper_algo in table:
            out[(env_id, algo)] = f"{table[paper_algo]:g} ({PAPER_BUDGET[paper_algo]})"
    return out


def _runs(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("runs/*/*/*/done.json"))]


def section(folder: Path, images: Path | None, page_dir: Path, paper: bool) -> str:
    """The markdown of one compare output folder."""
    rows = read_results(folder / "results.csv")
    done = _runs(folder)
    if not done:
        raise ValueError(f"{folder}: no finished runs (runs/*/*/*/done.json)")
    grid = done[0]["spec"]["grid"]
    envs = list(dict.fromkeys(r["env"] for r in rows))
    summaries = summarize(rows, grid, load_thresholds(envs))
    commands = json.loads((folder / "compare.json").read_text())["commands"]
    lines = ["Produced by:", "", "```bash", *commands, "```", ""]
    for env in envs:
        sources = {d["spec"]["algo"]: d.get("source", "") for d in done
                   if d["spec"]["env_id"] == env}
        env_rows = [s for s in summaries if s.env == env]
        cells = (paper_cells(env, [s.algo for s in env_rows]) or None) if paper else None
        lines += [f"### {env}", "", markdown_table(env_rows, sources, cells)]
        png = folder / f"curves_{env_slug(env)}.png"
        if png.is_file():
            target = png
            if images is not None:
                images.mkdir(parents=True, exist_ok=True)
                target = images / f"compare_{folder.name}_{env_slug(env)}.png"
                shutil.copyfile(png, target)
            lines += [f"![{env}]({Path(os.path.relpath(target, page_dir)).as_posix()})", ""]
        notes = sorted({n for d in done if d["spec"]["env_id"] == env for n in d.get("notes", [])})
        lines += [f"Note: {n}." for n in notes] + ([""] if notes else [])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path, help="train.py compare --out folders")
    p.add_argument("--images", type=Path, help="copy the curve PNGs here (e.g. docs/img)")
    p.add_argument("--page", type=Path, default=Path("docs/results.md"),
                   help="where the markdown will live (image links are relative to it)")
    p.add_argument("--paper", action="store_true", help="add the ACKTR paper's Atari numbers")
    args = p.parse_args(argv)
    parts = [section(f, args.images, args.page.parent, args.paper) for f in args.folders]
    sys.stdout.write("\n".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
