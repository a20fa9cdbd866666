"""benchmarks/acktr_mujoco_screen.py: commands, the report's numbers, the page section."""

from __future__ import annotations

import json

import pytest

from agents.compare_report import write_results
from benchmarks import acktr_mujoco_screen as screen


def test_each_candidate_is_one_compare_command_with_its_overrides():
    cmd = screen.compare_command("ip", "steps_1000")
    assert cmd[:3] == ["python", "train.py", "compare"]
    assert cmd[cmd.index("--set") + 1] == "algo.num_steps=1000" and cmd.count("--set") == 1
    assert cmd[cmd.index("--out") + 1] == "results/screen/ip/steps_1000"
    assert cmd[cmd.index("--data") + 1] == "docs/data/acktr_screen/ip/steps_1000"
    assert "--set" not in screen.compare_command("dev", "base")
    for overrides in screen.CANDIDATES.values():  # every switch is a valid config key
        from agents.config import load_config

        load_config(screen.REPO / "configs" / "mujoco.yaml", list(overrides))


def _run(root, candidate, seed, curve):
    run_dir = root / "ip" / candidate / "runs" / "InvertedPendulum-v5" / "acktr" / f"seed{seed}"
    run_dir.mkdir(parents=True)
    write_results([{"algo": "acktr", "env": "InvertedPendulum-v5", "seed": seed, "timesteps": t,
                    "eval_return_mean": v, "eval_return_std": 0.0, "wall_seconds": 1.0}
                   for t, v in curve], run_dir / "evals.csv")
    (run_dir / "done.json").write_text(json.dumps({}))


def test_report_gives_final_auc_their_change_and_the_first_step_at_1000(tmp_path, monkeypatch):
    monkeypatch.setattr(screen, "REPO", tmp_path)
    for seed in (0, 1):
        _run(tmp_path / "d", "base", seed, [(5000, 0.0), (10000, 100.0)])
        _run(tmp_path / "d", "steps_1000", seed, [(5000, 1000.0), (10000, 1000.0)])
    text = screen.report(tmp_path / "d")
    assert "| base | - | 0,1 | 100 +- 0 | 50 +- 0 |  |  |  | -, - |" in text
    assert ("| steps_1000 | `algo.num_steps=1000` | 0,1 | 1000 +- 0 | 1000 +- 0 | +900 | +950 "
            "|  | 5k, 5k |") in text
    page = tmp_path / "page.md"
    page.write_text(f"a\n{screen.BEGIN}\nold\n{screen.END}\nb\n")
    screen.write_section(page, "new")
    assert page.read_text() == f"a\n{screen.BEGIN}\nnew\n{screen.END}\nb\n"
    with pytest.raises(ValueError, match="no .* section"):
        screen.write_section(tmp_path / "d" / "ip" / "base" / "runs" / "InvertedPendulum-v5" /
                             "acktr" / "seed0" / "evals.csv", "x")


def test_training_diagnostics_from_progress_files(tmp_path):
    _run(tmp_path, "base", 0, [(5000, 1.0)])
    train = tmp_path / "ip" / "base" / "runs" / "InvertedPendulum-v5" / "acktr" / "seed0" / "train"
    train.mkdir()
    (train / "progress.csv").write_text(
        "update,kl,target_kl,opt/trust_scale,value_ev_after,entropy\n"
        "1,0.001,0.002,1.0,0.5,1.4\n2,0.004,0.002,0.5,0.7,1.3\n3,0.002,0.002,1.0,0.9,1.2\n")
    assert screen.training_diagnostics(tmp_path / "ip" / "base", "InvertedPendulum-v5") == (
        "KL/target 1.00, trust-clipped 33%, critic EV 0.70, final entropy 1.20")
