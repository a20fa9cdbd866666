"""Faults during training: an env that raises, returns NaN/Inf or loses its worker process stops
the run with one clear error, after a checkpoint of the last good state; a full disk leaves the
previous checkpoint intact. Through the library (``train``) and the command line."""

from __future__ import annotations

import errno

import pytest
import torch

import agents.checkpoint as checkpoint_module
import agents.trainer as trainer
import train
from agents.checkpoint import CHECKPOINT_NAME, CheckpointWriteError, load_checkpoint
from agents.faults import TrainingFault
from tests.agents.test_trainer import CONFIGS, make_cfg, run
from tests.faulty_env import register_faulty

pytestmark = pytest.mark.usefixtures("one_thread")

# 4 envs x 8 steps per update; env 1 (seed 1) fails on its 44th step: in update 6.
FAULTY = ("classic.yaml", "env.num_envs=4", "algo.num_steps=8", "run.checkpoint_every=4")


def faulty_cfg(fault: str, *extra: str, updates: int = 10):
    env_id = register_faulty(fault, at_step=44, seed=1)
    return make_cfg(*FAULTY, f"env.env_id={env_id}", *extra, updates=updates)


@pytest.mark.parametrize(("fault", "what"), [
    ("raise", r"EnvStepError: env 1 raised ValueError in step\(\): simulated physics failure"),
    ("nan_reward", r"NonFiniteEnvOutput: 'FaultyCartPole-v0': env 1 returned a non-finite "
                   r"reward nan on step 44 "),
    ("inf_obs", r"env 1 returned a non-finite observation"),
])
def test_env_fault_stops_with_a_clear_error_after_a_checkpoint_of_the_last_good_update(
        tmp_path, fault, what):
    cfg = faulty_cfg(fault)
    with pytest.raises(TrainingFault, match=what) as info:
        run(cfg, tmp_path / "cut")
    message = str(info.value)
    assert "during the rollout of update 6 (env steps 161-192 of the run)" in message
    assert "saved a checkpoint of the last good state (update 5)" in message
    assert f"--resume {tmp_path / 'cut'}" in message
    ckpt = load_checkpoint(tmp_path / "cut")
    assert ckpt["progress"]["update"] == 5 and ckpt["env_snapshot"] is None
    assert "the environments failed" in ckpt["env_snapshot_missing"]

    # the last good state is the uninterrupted run's state after update 5
    clean = make_cfg(*FAULTY, f"env.env_id={register_faulty('none', 0)}", updates=10)
    good = {}

    def keep_update_5(progress, policy, env):
        if progress.update == 5:
            good.update(policy={k: v.clone() for k, v in policy.state_dict().items()},
                        rng=torch.get_rng_state())

    trainer.train(clean, tmp_path / "clean", progress_bar=False, tensorboard=False,
                  after_update=keep_update_5)
    for name, value in good["policy"].items():
        assert torch.equal(ckpt["policy"][name], value), name
    assert torch.equal(ckpt["rng"]["torch"], good["rng"])

    # the env fixed, the run resumes from it (fresh episodes, with the warning) and finishes
    with pytest.warns(RuntimeWarning, match="fresh episodes .*the environments failed"):
        summary = run(clean, tmp_path / "cut", resume=True)
    assert summary["updates"] == 10 and not summary["interrupted"]


def test_a_fault_right_after_a_checkpoint_keeps_that_exact_checkpoint(tmp_path):
    env_id = register_faulty("raise", at_step=36, seed=1)  # update 5, right after update 4's
    cfg = make_cfg(*FAULTY, f"env.env_id={env_id}", updates=10)
    with pytest.raises(TrainingFault, match="the checkpoint of update 4 .* is the last good"):
        run(cfg, tmp_path)
    ckpt = load_checkpoint(tmp_path)  # update 4's periodic checkpoint, not rewritten
    assert ckpt["progress"]["update"] == 4
    assert "the environments failed" not in ckpt["env_snapshot_missing"]


def test_a_dead_async_worker_stops_training_with_a_clear_error_and_a_checkpoint(tmp_path):
    cfg = faulty_cfg("die", "env.vectorization=async")
    with pytest.raises(TrainingFault, match=r"worker process died \(dead: env 1 \(pid \d+, "
                                            r"exit code -9\)\).*last good state \(update 5\)"):
        run(cfg, tmp_path)
    assert load_checkpoint(tmp_path)["progress"]["update"] == 5


def test_the_command_line_prints_one_line_and_exits_1(tmp_path, capsys):
    env_id = register_faulty("nan_reward", at_step=44, seed=1)
    code = train.main(["--config", str(CONFIGS / "classic.yaml"), "--env", env_id,
                       "--num-envs", "4", "--timesteps", "320", "--logdir", str(tmp_path),
                       "--run-name", "r", "--no-progress", "--no-tensorboard",
                       "--set", "algo.num_steps=8", "--set", "run.eval_episodes=0"])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "env 1 returned a non-finite reward nan" in lines[0]
    assert "Traceback" not in err


def test_disk_full_during_a_checkpoint_keeps_the_previous_one_and_says_so(tmp_path, monkeypatch,
                                                                           capsys):
    real_save, calls = torch.save, {"n": 0}

    def save_then_fill_the_disk(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 2:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_then_fill_the_disk)
    code = train.main(["--env", "CartPole-v1", "--num-envs", "4", "--timesteps", "320",
                       "--logdir", str(tmp_path), "--run-name", "r", "--no-progress",
                       "--no-tensorboard", "--set", "algo.num_steps=8",
                       "--set", "run.checkpoint_every=4", "--set", "run.eval_episodes=0"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert (f"could not write checkpoint {tmp_path / 'r' / CHECKPOINT_NAME}: the disk is full "
            "(no space left on device); the previous checkpoint there is intact") in err
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "r")["progress"]["update"] == 4
    assert sorted(p.name for p in (tmp_path / "r").glob(".*.tmp")) == []


def test_disk_full_is_a_checkpoint_write_error_for_the_library(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter "
                           "failed writing file data/0: file write failed")

    monkeypatch.setattr(checkpoint_module.torch, "save", full)
    with pytest.raises(CheckpointWriteError, match="could not write checkpoint .*no previous"):
        trainer.train(make_cfg(*FAULTY, updates=2), tmp_path, progress_bar=False,
                      tensorboard=False)
