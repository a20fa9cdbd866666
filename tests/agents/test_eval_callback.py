"""Evaluation during training: when it runs, what it logs (progress.csv, TensorBoard under
SB3's tags), best.pt, its progress display, that it neither changes the run nor counts in fps,
and the learning curve PNG."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import agents.eval_callback as eval_callback
import agents.trainer as trainer
import train
from agents.checkpoint import CHECKPOINT_NAME
from agents.config import load_config
from agents.eval_callback import BEST_NAME, Evaluator
from agents.plots import CURVE_NAME
from agents.run_log import EVAL_RETURN, TIMESTEPS, TRAIN_RETURN, column, read_progress

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.usefixtures("one_thread")


def cartpole(*overrides: str, updates: int = 8):
    """CartPole with a 32-step batch (4 envs x 8 steps), ``updates`` updates."""
    return load_config(CONFIGS / "classic.yaml", [
        "env.num_envs=4", "algo.num_steps=8", f"run.total_timesteps={32 * updates}",
        "run.log_interval=2", "run.eval_episodes=2", "run.device=cpu", "run.threads=1",
        *overrides])


def run(cfg, run_dir: Path, resume: bool = False, **kwargs) -> dict:
    return trainer.train(cfg, run_dir, resume=resume, progress_bar=False, tensorboard=False,
                         **kwargs)


def fake_returns(monkeypatch, means: list[float]) -> list[int]:
    """Make the evaluator's evaluations return ``means`` in turn (2 episodes each, lengths
    equal to the returns); returns the list of steps at which they ran."""
    calls: list[int] = []

    def evaluate(policy, cfg, episodes, device, env_state, on_episode=None, on_step=None):
        mean = means[len(calls)]
        calls.append(len(calls))
        returns = np.array([mean - 1.0, mean + 1.0])
        for r in returns:
            on_episode(float(r), int(r))
        return returns, returns.copy()

    monkeypatch.setattr(eval_callback, "evaluate", evaluate)
    return calls


def test_due_at_the_first_update_past_each_multiple_and_never_at_the_last():
    cfg = cartpole("run.eval_every=50", updates=8)  # batch 32: updates end at 32, 64, ... 256
    ev = Evaluator(cfg, Path("."), torch.device("cpu"), logger=None)
    due = [t for t in range(32, 257, 32) if ev.due(t)]
    assert due == [64, 128, 160, 224]  # past 50, 100, 150, 200; 250 -> the final evaluation
    assert not any(Evaluator(cartpole(), Path("."), torch.device("cpu"), None).due(t)
                   for t in range(32, 257, 32))


def test_evaluations_go_to_progress_csv_and_best_pt_keeps_the_first_best(tmp_path, monkeypatch):
    fake_returns(monkeypatch, [1.0, 3.0, 2.0, 3.0])  # at 64, 128, 192 and the final, 256
    cfg = cartpole("run.eval_every=64")
    summary = run(cfg, tmp_path)
    rows = read_progress(tmp_path)
    assert column(rows, EVAL_RETURN) == ([64, 128, 192, 256], [1.0, 3.0, 2.0, 3.0])
    assert column(rows, TRAIN_RETURN)[0] == [64, 128, 192, 256]  # training rows unchanged
    eval_rows = [r for r in rows if np.isfinite(r.get(EVAL_RETURN, np.nan))]
    assert [r["eval/std_reward"] for r in eval_rows] == [1.0] * 4
    assert [r["eval/mean_ep_length"] for r in eval_rows] == [1.0, 3.0, 2.0, 3.0]
    assert [r["time/iterations"] for r in eval_rows] == [2, 4, 6, 8]
    best = torch.load(tmp_path / BEST_NAME, weights_only=True)
    assert best["eval"]["mean_reward"] == 3.0 and best["eval"]["timesteps"] == 128
    assert best["progress"]["timesteps"] == 128 and best["config"]["env"]["env_id"] == "CartPole-v1"
    assert (summary["best_return_mean"], summary["best_timesteps"]) == (3.0, 128)
    assert summary["final_return_mean"] == 3.0 and summary["best_model"] == BEST_NAME


@pytest.mark.medium
def test_best_pt_is_the_policy_at_its_step(tmp_path, monkeypatch):
    fake_returns(monkeypatch, [5.0, 1.0, 1.0, 1.0, 1.0])  # best at the first evaluation (64)
    constant = "algo.lr_schedule=constant"  # so that the first updates do not depend on the length
    run(cartpole("run.eval_every=64", constant), tmp_path / "eval")
    run(cartpole(constant, updates=2), tmp_path / "two_updates")  # the same, stopped at 64
    best = torch.load(tmp_path / "eval" / BEST_NAME, weights_only=True)["policy"]
    at_64 = torch.load(tmp_path / "two_updates" / CHECKPOINT_NAME, weights_only=True)["policy"]
    assert all(torch.equal(best[k], at_64[k]) for k in at_64)


@pytest.mark.medium
def test_evaluating_does_not_change_the_run(tmp_path):
    run(cartpole("run.eval_every=32"), tmp_path / "eval")  # after every update
    run(cartpole(), tmp_path / "plain")
    a = torch.load(tmp_path / "eval" / CHECKPOINT_NAME, weights_only=True)
    b = torch.load(tmp_path / "plain" / CHECKPOINT_NAME, weights_only=True)
    assert all(torch.equal(a["policy"][k], b["policy"][k]) for k in a["policy"])
    assert a["progress"]["recent_returns"] == b["progress"]["recent_returns"]


@pytest.mark.medium
def test_evaluation_time_is_not_training_time(tmp_path, monkeypatch):
    real, pause = eval_callback.evaluate, 0.5

    def slow(*args, **kwargs):
        time.sleep(pause)
        return real(*args, **kwargs)

    monkeypatch.setattr(eval_callback, "evaluate", slow)
    start = time.perf_counter()
    summary = run(cartpole("run.eval_every=64", updates=6), tmp_path)  # at 64, 128; final 192
    elapsed = time.perf_counter() - start
    assert summary["wall_seconds"] <= elapsed - 3 * pause
    rows = read_progress(tmp_path)
    last = [r for r in rows if np.isfinite(r.get("time/fps", np.nan))][-1]
    assert last["time/fps"] == pytest.approx(192 / last["time/time_elapsed"])
    assert last["time/time_elapsed"] <= summary["wall_seconds"]


def test_a_resumed_run_keeps_the_best_so_far_and_ignores_a_later_one(tmp_path, monkeypatch):
    fake_returns(monkeypatch, [1.0, 3.0, 2.0, 3.0])
    run(cartpole("run.eval_every=64"), tmp_path)
    cfg = SimpleNamespace(run=SimpleNamespace(eval_every=64, eval_episodes=2))
    kept = Evaluator(cfg, tmp_path, torch.device("cpu"), None, resumed_at=160)
    assert kept.best.mean_reward == 3.0 and kept.best.timesteps == 128
    assert Evaluator(cfg, tmp_path, torch.device("cpu"), None, resumed_at=96).best is None
    (tmp_path / BEST_NAME).write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning, match="ignoring unreadable"):
        assert Evaluator(cfg, tmp_path, torch.device("cpu"), None, resumed_at=160).best is None


def test_evaluation_shows_progress_and_a_line_per_evaluation(tmp_path, capsys, monkeypatch):
    class EveryRedraw(eval_callback.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, mininterval=0, **kwargs)

    monkeypatch.setattr(eval_callback, "tqdm", EveryRedraw)
    trainer.train(cartpole("run.eval_every=128", "run.eval_episodes=3"), tmp_path,
                  progress_bar=True, tensorboard=False)
    out, err = capsys.readouterr()
    assert "evaluating at 128 steps" in err and "3/3" in err and "final evaluation" in err
    assert "env steps" in err  # shown while the episodes run
    line = [s for s in out.splitlines() if s.startswith("eval at 128 steps: return")]
    assert len(line) == 1 and "over 3 episodes" in line[0] and "new best" in line[0]


def test_tensorboard_tags_are_sb3_names(tmp_path):
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator")
    trainer.train(cartpole("run.eval_every=128"), tmp_path, progress_bar=False,
                  tensorboard=True)
    acc = event_accumulator.EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    sb3 = {"rollout/ep_rew_mean", "rollout/ep_len_mean", "train/policy_loss", "train/value_loss",
           "train/entropy_loss", "train/approx_kl", "train/learning_rate", "time/fps",
           "eval/mean_reward", "eval/mean_ep_length"}
    ours = {"train/trust_scale", "train/damping", "train/effective_lr"}
    assert sb3 | ours <= tags
    assert not {"return_mean", "opt/lr", "eval/return_mean", "entropy"} & tags
    assert [e.step for e in acc.Scalars("eval/mean_reward")] == [128, 256]
    csv_rows = read_progress(tmp_path)
    assert [e.value for e in acc.Scalars("train/entropy_loss")] == pytest.approx(
        column(csv_rows, "train/entropy_loss")[1])
    assert all(e.value < 0 for e in acc.Scalars("train/entropy_loss"))


@pytest.mark.medium
def test_learning_curve_png_is_written_and_rewritten_after_a_resume(tmp_path, monkeypatch):
    cfg = cartpole("run.eval_every=64", updates=6)
    calls = {"n": 0}
    real = trainer.update

    def ctrl_c_at_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            import signal
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "update", ctrl_c_at_third)
    summary = run(cfg, tmp_path)
    assert summary["interrupted"]
    png = tmp_path / CURVE_NAME
    first = png.read_bytes()
    assert first.startswith(PNG_SIGNATURE)
    monkeypatch.undo()
    summary = run(cfg, tmp_path, resume=True)
    assert summary["learning_curve"] == CURVE_NAME
    second = png.read_bytes()
    assert second.startswith(PNG_SIGNATURE) and second != first
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[2] in (3, 4)
    assert column(read_progress(tmp_path), TIMESTEPS)[0][-1] == 192


def test_without_matplotlib_a_one_line_note(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    summary = run(cartpole(updates=2), tmp_path)
    assert "learning_curve" not in summary and not (tmp_path / CURVE_NAME).exists()
    notes = [s for s in capsys.readouterr().out.splitlines() if "matplotlib" in s]
    assert notes == ["note: no learning_curve.png: matplotlib is not installed "
                     "(pip install matplotlib)"]


@pytest.mark.medium
def test_cli_eval_every_then_eval_of_best_pt(tmp_path, capsys):
    argv = ["--timesteps", "300", "--num-envs", "4", "--set", "algo.num_steps=8",
            "--eval-every", "100", "--eval-episodes", "2", "--threads", "1", "--no-progress",
            "--no-tensorboard", "--logdir", str(tmp_path), "--run-name", "r"]
    assert train.main(argv) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "r"
    assert out.count("is not a multiple of the batch") == 1
    assert "final evaluation: 2 episodes\n" in out  # no bar (--no-progress): a line
    assert "training 288 steps (9 updates)" in out
    assert f"best model: {run_dir / BEST_NAME}" in out
    assert f"learning curve: {run_dir / CURVE_NAME}" in out
    assert column(read_progress(run_dir), EVAL_RETURN)[0] == [128, 224, 288]
    best = torch.load(run_dir / BEST_NAME, weights_only=True)
    for args in (["--checkpoint", str(run_dir / BEST_NAME)], ["--checkpoint", str(run_dir),
                                                              "--best"]):
        assert train.main(["eval", *args, "--episodes", "2"]) == 0
        out = capsys.readouterr().out
        assert f"(acktr, {best['progress']['timesteps']} training steps)" in out
        assert f"evaluation return {best['eval']['mean_reward']:.2f} when it was kept" in out
    assert train.main(["eval", "--checkpoint", str(run_dir / BEST_NAME), "--best"]) == 2
    assert "--best needs a run directory" in capsys.readouterr().err


def test_eval_every_needs_episodes_and_accepts_suffixes():
    from agents.config import ConfigError

    assert cartpole("run.eval_every=50k").run.eval_every == 50_000
    with pytest.raises(ConfigError, match="run.eval_every: evaluating every 100 steps needs "
                                          "run.eval_episodes >= 1"):
        cartpole("run.eval_every=100", "run.eval_episodes=0")
