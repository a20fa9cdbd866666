"""SB3 names for what a run logs; old runs (old progress.csv columns) still read."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from agents.run_log import RunLogger, read_progress, sb3_name, sb3_row

OLD_RUN = Path(__file__).resolve().parents[2] / "docs" / "data" / "pong_acktr_s0"


@pytest.mark.parametrize("old, new", [
    ("return_mean", "rollout/ep_rew_mean"),
    ("length_mean", "rollout/ep_len_mean"),
    ("policy_loss", "train/policy_loss"),
    ("value_loss", "train/value_loss"),
    ("entropy", "train/entropy_loss"),
    ("opt/approx_kl", "train/approx_kl"),
    ("opt/lr", "train/learning_rate"),
    ("fps", "time/fps"),
    ("timesteps", "time/total_timesteps"),
    ("eval/return_mean", "eval/mean_reward"),
    ("opt/trust_scale", "train/trust_scale"),
    ("opt/damping", "train/damping"),
    ("opt/effective_lr", "train/effective_lr"),
    ("critic_opt/lr", "train/critic_learning_rate"),
    ("critic_opt/damping", "train/critic_damping"),
    ("eval/mean_reward", "eval/mean_reward"),
])
def test_sb3_names(old, new):
    assert sb3_name(old) == new


def test_entropy_loss_is_minus_the_entropy_as_in_sb3():
    assert sb3_row({"entropy": 0.5, "policy_loss": 0.25}) == {
        "train/entropy_loss": -0.5, "train/policy_loss": 0.25}


def test_an_old_run_reads_under_the_new_names():
    with (OLD_RUN / "progress.csv").open(newline="") as f:
        raw = list(csv.DictReader(f))
    assert "return_mean" in raw[0]  # written before the SB3 names
    rows = read_progress(OLD_RUN)
    assert len(rows) == len(raw)
    last, raw_last = rows[-1], raw[-1]
    assert last["time/total_timesteps"] == float(raw_last["timesteps"])
    assert last["rollout/ep_rew_mean"] == float(raw_last["return_mean"])
    assert last["train/entropy_loss"] == -float(raw_last["entropy"])
    assert last["train/learning_rate"] == float(raw_last["opt/lr"])
    assert math.isnan(rows[0]["rollout/ep_rew_mean"])  # "nan" before the first episode


def test_rows_with_new_columns_widen_the_header_and_leave_empty_cells(tmp_path):
    log = RunLogger(tmp_path, enabled_tensorboard=False)
    log.log(10, {"time/total_timesteps": 10, "rollout/ep_rew_mean": 1.5})
    log.log(10, {"time/total_timesteps": 10, "eval/mean_reward": 7.0})
    log.log(20, {"time/total_timesteps": 20, "rollout/ep_rew_mean": float("nan")})
    log.close()
    with (tmp_path / "progress.csv").open(newline="") as f:
        raw = list(csv.DictReader(f))
    assert list(raw[0]) == ["time/total_timesteps", "rollout/ep_rew_mean", "eval/mean_reward"]
    assert raw == [
        {"time/total_timesteps": "10", "rollout/ep_rew_mean": "1.5", "eval/mean_reward": ""},
        {"time/total_timesteps": "10", "rollout/ep_rew_mean": "", "eval/mean_reward": "7.0"},
        {"time/total_timesteps": "20", "rollout/ep_rew_mean": "", "eval/mean_reward": ""},
    ]


def test_resuming_an_old_run_renames_its_columns_and_drops_rows_after_the_checkpoint(tmp_path):
    (tmp_path / "progress.csv").write_text(
        "update,timesteps,return_mean,entropy\n1,8,2.0,0.5\n2,16,3.0,0.25\n3,24,4.0,0.125\n")
    log = RunLogger(tmp_path, enabled_tensorboard=False, resume_after=16)
    log.log(24, sb3_row({"update": 3, "timesteps": 24, "return_mean": 5.0, "entropy": 0.1}))
    log.close()
    with (tmp_path / "progress.csv").open(newline="") as f:
        raw = list(csv.DictReader(f))
    assert list(raw[0]) == ["time/iterations", "time/total_timesteps", "rollout/ep_rew_mean",
                            "train/entropy_loss"]
    assert [r["time/total_timesteps"] for r in raw] == ["8", "16", "24"]
    assert [r["train/entropy_loss"] for r in raw] == ["-0.5", "-0.25", "-0.1"]
    assert raw[-1]["rollout/ep_rew_mean"] == "5.0"
