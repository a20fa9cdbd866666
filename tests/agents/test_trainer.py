"""The training loop: determinism, exact resume (CartPole, MuJoCo, Atari), Ctrl-C, learning,
and smoke updates of ACKTR and A2C on Atari and MuJoCo."""

from __future__ import annotations

import csv
import functools
import math
import signal
import time
from pathlib import Path

import pytest
import torch

import agents.trainer as trainer
from agents.checkpoint import CHECKPOINT_NAME
from agents.config import Config, load_config
from agents.evaluate import make_env_from_config
from agents.policies import make_policy
from agents.rollout import collect_rollout, obs_to_tensor
from agents.storage import RolloutStorage
from agents.updates import make_optimizers, update
from envs import SnapshotUnsupported
from envs.gym_adapter import GymnasiumVecEnv
from tests.agents.test_files import strict_loads

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CARTPOLE = ("classic.yaml", "env.num_envs=4", "algo.num_steps=8")
PENDULUM = ("mujoco.yaml", "env.env_id=InvertedPendulum-v5", "algo.num_steps=64",
            "algo.critic_updates=3", "env.normalize_reward=true")
PONG = ("atari.yaml", "env.num_envs=2", "algo.num_steps=5")
# MuJoCo from pixels with tiny frames (the trunk's first conv then 4x4/2).
PIXELS = ("mujoco_pixels.yaml", "env.num_envs=2", "algo.num_steps=5", "env.pixels_size=24",
          "policy.cnn_trunk=auto")
# Wall-clock columns differ between runs; everything else must match exactly.
CLOCK_COLUMNS = ("time/time_elapsed", "time/fps")


pytestmark = pytest.mark.usefixtures("one_thread")


def make_cfg(config: str, *overrides: str, updates: int | None = None) -> Config:
    base = ["run.eval_episodes=0", "run.log_interval=1", "run.device=cpu", *overrides]
    cfg = load_config(CONFIGS / config, base)
    if updates is None:
        return cfg
    return load_config(CONFIGS / config, [*base, f"run.total_timesteps={updates * cfg.batch_size}"])


def run(cfg: Config, run_dir: Path, resume: bool = False) -> dict:
    return trainer.train(cfg, run_dir, resume=resume, progress_bar=False, tensorboard=False)


def stop_at(monkeypatch, k: int, how: str) -> None:
    """Make the k-th update (1-based) press Ctrl-C, abort (a second Ctrl-C) or crash."""
    calls = {"n": 0}
    real = trainer.update

    def patched(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == k:
            if how == "ctrl_c":
                signal.raise_signal(signal.SIGINT)  # what a real Ctrl-C does
            elif how == "abort":
                raise KeyboardInterrupt
            else:
                raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "update", patched)


def params(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / CHECKPOINT_NAME, weights_only=True)["policy"]


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "progress.csv").open(newline="") as f:
        return [{k: v for k, v in r.items() if k not in CLOCK_COLUMNS} for r in csv.DictReader(f)]


def assert_same_run(a: Path, b: Path) -> None:
    pa, pb = params(a), params(b)
    assert pa.keys() == pb.keys()
    for name in pa:
        assert torch.equal(pa[name], pb[name]), name
    assert rows(a) == rows(b)


def interrupted_then_resumed(monkeypatch, cfg: Config, run_dir: Path, k: int) -> dict:
    stop_at(monkeypatch, k, "ctrl_c")
    summary = run(cfg, run_dir)
    assert summary["interrupted"] and summary["updates"] == k
    monkeypatch.undo()
    return run(cfg, run_dir, resume=True)


def test_two_seeded_runs_are_identical(tmp_path):
    cfg = make_cfg(*CARTPOLE, updates=12)
    run(cfg, tmp_path / "a")
    run(cfg, tmp_path / "b")
    assert_same_run(tmp_path / "a", tmp_path / "b")
    assert len(rows(tmp_path / "a")) == 12


def test_ctrl_c_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    cfg = make_cfg(*CARTPOLE, updates=12)
    run(cfg, tmp_path / "full")
    stop_at(monkeypatch, 5, "ctrl_c")
    summary = run(cfg, tmp_path / "cut")
    assert summary["interrupted"] and summary["updates"] == 5
    assert not (tmp_path / "cut" / "summary.json").exists()
    ckpt = torch.load(tmp_path / "cut" / CHECKPOINT_NAME, weights_only=True)
    assert ckpt["progress"]["update"] == 5 and ckpt["env_snapshot"] is not None
    assert ckpt["obs"].shape == (4, 4)
    monkeypatch.undo()
    summary = run(cfg, tmp_path / "cut", resume=True)
    assert not summary["interrupted"] and summary["updates"] == 12
    assert (tmp_path / "cut" / "summary.json").exists()
    assert_same_run(tmp_path / "full", tmp_path / "cut")


def test_after_update_sees_each_update_after_its_checkpoint_and_is_not_timed(tmp_path):
    cfg = make_cfg(*CARTPOLE, updates=5)
    run(cfg, tmp_path / "plain")
    seen, pause = [], 0.2

    def hook(progress, policy, env):
        ckpt = torch.load(tmp_path / "hooked" / CHECKPOINT_NAME, weights_only=True) \
            if (tmp_path / "hooked" / CHECKPOINT_NAME).exists() else None
        seen.append((progress.update, progress.timesteps,
                     None if ckpt is None else ckpt["progress"]["update"]))
        assert isinstance(env.state_dict(), dict)
        # what an evaluation does (on other envs): deterministic forward passes, no gradients
        policy.act(obs_to_tensor(eval_obs, torch.device("cpu")), deterministic=True)
        time.sleep(pause)

    probe = make_env_from_config(cfg, num_envs=1, seed=0, training=False)
    eval_obs = probe.reset(seed=0)
    probe.close()
    began = time.perf_counter()
    summary = trainer.train(cfg, tmp_path / "hooked", progress_bar=False, tensorboard=False,
                            after_update=hook, checkpoint_at=(2, 4))
    elapsed = time.perf_counter() - began
    b = cfg.batch_size
    assert seen == [(1, b, None), (2, 2 * b, 2), (3, 3 * b, 2), (4, 4 * b, 4), (5, 5 * b, 4)]
    assert summary["wall_seconds"] + 5 * pause <= elapsed
    assert_same_run(tmp_path / "plain", tmp_path / "hooked")


def test_resume_after_a_crash_drops_what_was_logged_after_the_checkpoint(tmp_path, monkeypatch):
    cfg = make_cfg(*CARTPOLE, "run.checkpoint_every=4", updates=10)
    run(cfg, tmp_path / "full")
    stop_at(monkeypatch, 7, "crash")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg, tmp_path / "crashed")
    assert len(rows(tmp_path / "crashed")) == 6  # updates 5 and 6 were logged after update 4
    monkeypatch.undo()
    run(cfg, tmp_path / "crashed", resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "crashed")


def test_resume_after_a_row_cut_short_continues_the_log_cleanly(tmp_path, monkeypatch):
    cfg = make_cfg(*CARTPOLE, "run.checkpoint_every=4", updates=6)
    run(cfg, tmp_path / "full")
    stop_at(monkeypatch, 5, "crash")  # right after the checkpoint of update 4
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg, tmp_path / "cut")
    monkeypatch.undo()
    with (tmp_path / "cut" / "progress.csv").open("a") as f:
        f.write("5,40,0.")  # a kill in the middle of writing a row
    run(cfg, tmp_path / "cut", resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "cut")


def test_a_second_ctrl_c_stops_at_once_and_resumes_from_fresh_episodes(tmp_path, monkeypatch):
    cfg = make_cfg(*CARTPOLE, updates=6)
    stop_at(monkeypatch, 3, "abort")
    summary = run(cfg, tmp_path)
    assert summary["interrupted"] and summary["updates"] == 2
    ckpt = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert ckpt["env_snapshot"] is None and "middle of an update" in ckpt["env_snapshot_missing"]
    monkeypatch.undo()
    with pytest.warns(RuntimeWarning, match="fresh episodes .*middle of an update"):
        summary = run(cfg, tmp_path, resume=True)
    assert summary["updates"] == 6 and not summary["interrupted"]


def test_env_without_snapshots_resumes_with_a_warning(tmp_path, monkeypatch):
    def unsupported(self, sub_envs=True):
        raise SnapshotUnsupported("test env: no snapshots")

    monkeypatch.setattr(GymnasiumVecEnv, "snapshot", unsupported)
    cfg = make_cfg(*CARTPOLE, updates=6)
    stop_at(monkeypatch, 2, "ctrl_c")
    run(cfg, tmp_path)
    monkeypatch.setattr(trainer, "update", update)
    with pytest.warns(RuntimeWarning, match="test env: no snapshots"):
        summary = run(cfg, tmp_path, resume=True)
    assert summary["updates"] == 6


def test_mujoco_separate_critic_resumes_exactly(tmp_path, monkeypatch):
    pytest.importorskip("mujoco")
    cfg = make_cfg(*PENDULUM, updates=8)
    run(cfg, tmp_path / "full")
    interrupted_then_resumed(monkeypatch, cfg, tmp_path / "cut", 3)
    assert_same_run(tmp_path / "full", tmp_path / "cut")


@pytest.mark.medium
def test_atari_pong_resumes_exactly(tmp_path, monkeypatch):
    pytest.importorskip("ale_py")
    cfg = make_cfg(*PONG, updates=6)
    run(cfg, tmp_path / "full")
    interrupted_then_resumed(monkeypatch, cfg, tmp_path / "cut", 3)
    assert_same_run(tmp_path / "full", tmp_path / "cut")


@pytest.mark.medium
def test_mujoco_from_pixels_resumes_exactly(tmp_path, monkeypatch):
    pytest.importorskip("mujoco")
    cfg = make_cfg(*PIXELS, updates=6)
    assert cfg.env.observation == "pixels" and cfg.algo.algo == "acktr"
    run(cfg, tmp_path / "full")
    interrupted_then_resumed(monkeypatch, cfg, tmp_path / "cut", 3)
    assert_same_run(tmp_path / "full", tmp_path / "cut")


@pytest.mark.medium
def test_acktr_learns_cartpole(tmp_path):
    """Seed 1, 60k steps: mean training return 415 when measured (a random policy: ~22)."""
    cfg = make_cfg("classic.yaml", "run.total_timesteps=60k", "run.seed=1", "run.log_interval=50")
    summary = run(cfg, tmp_path)
    assert summary["train_return_mean"] > 150


SMOKE = [
    pytest.param(PONG, "acktr", id="pong-acktr"),
    pytest.param(PONG, "a2c", id="pong-a2c"),
    pytest.param(("mujoco.yaml", "algo.num_steps=32", "algo.critic_updates=2"), "acktr",
                 id="halfcheetah-acktr"),
    pytest.param(("mujoco.yaml", "algo.num_steps=32"), "a2c", id="halfcheetah-a2c"),
    pytest.param(PIXELS, "acktr", id="reacher-pixels-acktr"),
    pytest.param(PIXELS, "a2c", id="reacher-pixels-a2c"),
]


@pytest.mark.parametrize(("config", "algo"), SMOKE)
def test_two_updates_give_finite_metrics_and_move_every_parameter(config, algo):
    pytest.importorskip("ale_py" if "atari" in config[0] else "mujoco")
    cfg = make_cfg(*config, f"algo.algo={algo}")
    torch.manual_seed(0)
    env = make_env_from_config(cfg)
    try:
        policy = make_policy(env.observation_space, env.action_space, cfg.policy)
        opts = make_optimizers(policy, cfg)
        storage = RolloutStorage.from_spaces(cfg.algo.num_steps, env.num_envs,
                                             env.observation_space, env.action_space, "cpu")
        before = {k: v.clone() for k, v in policy.state_dict().items()}
        obs = obs_to_tensor(env.reset(seed=0), torch.device("cpu"))
        for _ in range(2):
            obs, _, _ = collect_rollout(env, policy, storage, obs, cfg.algo.gamma,
                                        cfg.algo.gae_lambda)
            metrics = update(policy, opts, storage.flatten(), cfg)
    finally:
        env.close()
    assert metrics and all(math.isfinite(v) for v in metrics.values()), metrics
    unchanged = [k for k, v in policy.state_dict().items() if torch.equal(v, before[k])]
    assert not unchanged


def test_original_extra_inputs_train_and_resume_exactly(tmp_path, monkeypatch):
    # openai/baselines old_acktr_cont: [obs, prev obs] for both networks, t / 10 for the critic
    pytest.importorskip("mujoco")
    cfg = make_cfg(*PENDULUM, "policy.prev_obs=true", "policy.critic_time_scale=0.1", updates=6)
    run(cfg, tmp_path / "full")
    p = params(tmp_path / "full")
    assert p["actor.net.0.weight"].shape[1] == 8 and p["critic.0.weight"].shape[1] == 9
    interrupted_then_resumed(monkeypatch, cfg, tmp_path / "cut", 3)
    assert_same_run(tmp_path / "full", tmp_path / "cut")
    logged = rows(tmp_path / "full")[-1]
    assert float(logged["target_kl"]) == cfg.algo.target_kl and float(logged["train/kl"]) > 0


def test_summary_json_is_strict_json_with_null_for_nan(tmp_path):
    # One 8-step rollout of one CartPole env: no episode ends, so the training return is NaN.
    summary = run(make_cfg(*CARTPOLE, "env.num_envs=1", updates=1), tmp_path / "r")
    assert math.isnan(summary["train_return_mean"])
    written = strict_loads((tmp_path / "r" / "summary.json").read_text())
    assert written["train_return_mean"] is None
    assert written["timesteps"] == summary["timesteps"] == 8
def test_defaults_checkpoint_by_time_and_updates_in_the_library_and_every_config():
    assert Config().run.checkpoint_seconds == 600 and Config().run.checkpoint_every > 0
    for name in ("classic.yaml", "mujoco.yaml", "atari.yaml"):
        cfg = load_config(CONFIGS / name)
        assert cfg.run.checkpoint_seconds == 600 and cfg.run.checkpoint_every > 0, name


def test_a_wall_clock_checkpoint_waits_for_a_compact_optimizer_state(tmp_path, monkeypatch):
    """checkpoint_seconds tiny: a checkpoint is due after every update, but K-FAC's state is
    compact only after updates 1, 10, 11, 20 ... (inverse_every=10, cold start 10)."""
    cfg = make_cfg(*CARTPOLE, "run.checkpoint_every=0", "run.checkpoint_seconds=1e-9",
                   updates=14)
    saved = []
    real = trainer.save_checkpoints
    monkeypatch.setattr(trainer, "save_checkpoints",
                        lambda state, *a: (saved.append(state["progress"]["update"]),
                                           real(state, *a)))
    patient = functools.partial(trainer.CheckpointSchedule, slack=1e12)  # waits for ever
    monkeypatch.setattr(trainer, "CheckpointSchedule", patient)
    run(cfg, tmp_path)
    assert saved[:-1] == [u for u in range(1, 14) if u <= 11 or u % 10 in (0, 1)]
    assert saved[-1] == 14  # the end


def test_resume_removes_what_a_killed_write_left_and_a_cut_csv_row(tmp_path, monkeypatch, capsys):
    cfg = make_cfg(*CARTPOLE, "run.checkpoint_every=4", updates=10)
    run(cfg, tmp_path / "full")
    stop_at(monkeypatch, 7, "crash")  # killed after update 6: checkpoint of update 4
    with pytest.raises(RuntimeError):
        run(cfg, tmp_path / "cut")
    monkeypatch.undo()
    cut = tmp_path / "cut"
    (cut / f".{CHECKPOINT_NAME}.x1y2.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")
    with (cut / "progress.csv").open("a") as f:
        f.write("7,224,0.5")  # a row cut short by the kill
    run(cfg, cut, resume=True)
    assert "removed" in capsys.readouterr().err
    assert not list(cut.glob(".*.tmp"))
    assert_same_run(tmp_path / "full", cut)


def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_over(tmp_path, capsys):
    cfg = make_cfg(*CARTPOLE, updates=6)
    run(cfg, tmp_path / "full")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "progress.csv").write_text("update,timesteps,wall_seconds\n1,32,0.1\n2,6")
    summary = run(cfg, tmp_path / "cut", resume=True)
    assert "holds no checkpoint yet" in capsys.readouterr().err
    assert summary["updates"] == 6
    assert_same_run(tmp_path / "full", tmp_path / "cut")


def test_sigterm_saves_a_checkpoint_like_ctrl_c(tmp_path, monkeypatch):
    cfg = make_cfg(*CARTPOLE, updates=8)
    calls, real = {"n": 0}, trainer.update

    def terminate_at_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            signal.raise_signal(signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "update", terminate_at_3)
    summary = run(cfg, tmp_path)
    assert summary["interrupted"] and summary["updates"] == 3
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["progress"]["update"] == 3
