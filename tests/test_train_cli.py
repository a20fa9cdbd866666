"""The command line, in-process: exit codes and messages of ``train.main``."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

import agents.trainer as trainer
import train

TINY = ["--timesteps", "64", "--num-envs", "2", "--set", "algo.num_steps=8", "--set",
        "run.eval_episodes=1", "--no-progress", "--no-tensorboard"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> Path:
    logdir = tmp_path_factory.mktemp("runs")
    assert train.main([*TINY, "--logdir", str(logdir), "--run-name", "tiny"]) == 0
    return logdir / "tiny"


def test_unknown_env_id_names_it_and_suggests_close_matches(tmp_path, capsys):
    assert train.main(["--env", "CartPol-v1", "--logdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "'CartPol-v1'" in err and "'CartPole-v1'" in err
    assert not any(tmp_path.iterdir())  # no run directory for a run that never started


def test_unknown_config_key_names_it_and_lists_the_valid_ones(capsys):
    assert train.main(["--set", "kfac.lrr=0.1"]) == 2
    err = capsys.readouterr().err
    assert "'kfac.lrr'" in err and "valid keys" in err and "lr, momentum" in err


def test_bad_config_value_is_an_error(capsys):
    assert train.main(["--set", "kfac.lr=-1"]) == 2
    assert "kfac.lr: invalid value -1" in capsys.readouterr().err


def test_resume_without_a_run_is_a_clear_error(tmp_path, capsys):
    assert train.main(["--resume", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert train.main(["--resume", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["eval"]], ids=["train", "eval"])
def test_help_mentions_every_option(command, capsys):
    parser = train._eval_parser() if command else train._train_parser()
    assert train.main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    options = [s for action in parser._actions for s in action.option_strings]
    assert len(options) > 5
    for option in options:
        assert option in out, option


def test_training_then_evaluating_a_checkpoint_prints_a_return(cartpole_run, capsys):
    assert (cartpole_run / "summary.json").exists()
    assert train.main(["eval", "--checkpoint", str(cartpole_run), "--episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert "CartPole-v1 (acktr, 64 training steps): return" in out and "over 2 episodes" in out


def test_ctrl_c_exits_130_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    def press_ctrl_c(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return update(*args, **kwargs)

    update = trainer.update
    monkeypatch.setattr(trainer, "update", press_ctrl_c)
    assert train.main([*TINY, "--logdir", str(tmp_path), "--run-name", "r"]) == 130
    assert f"--resume {tmp_path / 'r'}" in capsys.readouterr().out
    monkeypatch.undo()
    assert train.main(["--resume", str(tmp_path / "r"), "--no-progress",
                       "--no-tensorboard"]) == 0
    out = capsys.readouterr().out
    assert "resuming at step 16 of 64\n" in out  # batch 2 x 8, stopped after the first update
    assert "not a multiple of the batch" not in out


def test_timesteps_rounded_to_the_batch_is_said_once(tmp_path, capsys):
    argv = [*TINY, "--timesteps", "70", "--logdir", str(tmp_path), "--run-name", "r"]
    assert train.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("run.total_timesteps 70 is not a multiple of the batch (16 = env.num_envs "
                     "x algo.num_steps): training 64 steps (4 updates)") == 1
    assert "done: 64 steps" in out


def test_cartpole_video_has_no_xdg_runtime_dir_noise(cartpole_run, tmp_path):
    """pygame's SDL probes Wayland without a display; libwayland then prints an XDG_RUNTIME_DIR
    error to the process's stderr (C level, so in a child process to capture it)."""
    pytest.importorskip("imageio")
    pytest.importorskip("pygame", reason="CartPole renders with pygame")
    import os
    import subprocess
    import sys

    gif = tmp_path / "cartpole.gif"
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "SDL_VIDEODRIVER")}
    done = subprocess.run(
        [sys.executable, str(Path(train.__file__)), "eval", "--checkpoint", str(cartpole_run),
         "--episodes", "1", "--video", str(gif)], env=env, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stderr
    assert "XDG_RUNTIME_DIR" not in done.stderr + done.stdout
    assert gif.stat().st_size > 0


def test_video_needs_a_gif_or_mp4_file(cartpole_run, tmp_path, capsys):
    args = ["eval", "--checkpoint", str(cartpole_run), "--video", str(tmp_path / "a.avi")]
    assert train.main(args) == 2
    assert ".gif or .mp4" in capsys.readouterr().err


def test_video_without_imageio_says_what_to_install(cartpole_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "imageio", None)
    args = ["eval", "--checkpoint", str(cartpole_run), "--video", str(tmp_path / "a.gif")]
    assert train.main(args) == 2
    assert "pip install imageio" in capsys.readouterr().err


def _gif_frames(path: Path) -> int:
    import imageio.v3 as iio

    return iio.imread(path, index=None).shape[0]


def test_cartpole_video_gif(cartpole_run, tmp_path, capsys):
    pytest.importorskip("imageio")
    pytest.importorskip("pygame", reason="CartPole renders with pygame")
    gif = tmp_path / "cartpole.gif"
    args = ["eval", "--checkpoint", str(cartpole_run), "--episodes", "1", "--video", str(gif)]
    assert train.main(args) == 0
    assert f"video: {gif}" in capsys.readouterr().out
    assert _gif_frames(gif) > 1


def test_cartpole_video_without_pygame_says_what_to_install(cartpole_run, tmp_path, capsys):
    pytest.importorskip("imageio")
    try:
        import pygame  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("pygame is installed")
    args = ["eval", "--checkpoint", str(cartpole_run), "--episodes", "1", "--video",
            str(tmp_path / "cartpole.gif")]
    assert train.main(args) == 2
    assert "pygame" in capsys.readouterr().err


@pytest.mark.medium
def test_mujoco_video_gif(tmp_path, monkeypatch, capsys):
    pytest.importorskip("imageio")
    pytest.importorskip("mujoco")
    monkeypatch.setenv("MUJOCO_GL", "")  # let the CLI pick a headless backend, then undo it
    logdir = tmp_path / "runs"
    args = ["--env", "InvertedPendulum-v5", "--timesteps", "64", "--set", "algo.num_steps=64",
            "--set", "algo.critic_updates=1", "--set", "run.eval_episodes=0", "--no-progress",
            "--no-tensorboard", "--logdir", str(logdir), "--run-name", "ip"]
    assert train.main(args) == 0
    gif = tmp_path / "pendulum.gif"
    rc = train.main(["eval", "--checkpoint", str(logdir / "ip"), "--episodes", "1",
                     "--video", str(gif)])
    out, err = capsys.readouterr()
    if rc == 2 and "cannot render" in err:
        pytest.skip(err)
    assert rc == 0, err
    length = int(out.split("length ")[-1].split(")")[0])
    assert _gif_frames(gif) == length  # every state but the terminal one


def test_compare_help_mentions_every_option(capsys):
    parser = train._compare_parser()
    assert train.main(["compare", "--help"]) == 0
    out = capsys.readouterr().out
    for option in (s for action in parser._actions for s in action.option_strings):
        assert option in out, option
    assert "acktr, a2c, sb3-a2c, trpo" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--algos", "acktr", "ppo"], "unknown algorithm(s) 'ppo'; allowed: acktr, a2c, sb3-a2c, trpo"),
    (["--env", "CartPol-v1"], "'CartPol-v1'"),
    (["--threshold", "Pong=3"], "env 'Pong' is not compared"),
    (["--timesteps", "lots"], "could not parse timesteps 'lots'"),
    (["--eval-points", "0"], "--eval-points must be >= 1, got 0"),
], ids=["algo", "env", "threshold", "timesteps", "eval-points"])
def test_compare_bad_input_is_an_error_before_anything_starts(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compare", "--env", "CartPole-v1", "--out", str(out), *args]
    if "--env" in args:  # the case's own env replaces CartPole-v1
        argv = ["compare", "--out", str(out), *args]
    assert train.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.medium
def test_compare_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compare", "--env", "CartPole-v1", "--algos", "a2c", "sb3-a2c", "--seeds", "1",
            "--timesteps", "256", "--eval-points", "2", "--eval-episodes", "1", "--out", str(out)]
    assert train.main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    summary = (out / "summary.md").read_text()
    assert "python train.py compare --env CartPole-v1 --algos a2c sb3-a2c" in summary
    assert "| a2c | 1 |" in summary and "| sb3-a2c | 1 |" in summary


def test_eval_threads(cartpole_run, capsys):
    import torch

    assert train.main(["eval", "--checkpoint", str(cartpole_run), "--threads", "0"]) == 2
    assert "--threads must be 'auto' or an integer >= 1, got '0'" in capsys.readouterr().err
    args = ["eval", "--checkpoint", str(cartpole_run), "--episodes", "1"]
    assert train.main([*args, "--threads", "2"]) == 0 and torch.get_num_threads() == 2
    assert train.main(args) == 0 and torch.get_num_threads() == 1  # auto: an MLP on the CPU
