"""``run.threads``: what ``auto`` picks, and that a run trains with its thread count and
restores the caller's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import agents.threads as threads
import agents.trainer as trainer
from agents.config import ConfigError, load_config
from agents.threads import auto_threads, resolve_threads

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

pytestmark = pytest.mark.usefixtures("one_thread")


def test_auto_is_one_thread_on_the_cpu_and_torch_default_on_cuda():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [auto_threads(cpu, kind) for kind in ("gym", "mujoco", "atari")] == [1, 1, 1]
    assert auto_threads(cuda, "atari") == auto_threads(cuda, "gym") == threads._TORCH_DEFAULT


def test_resolve_threads():
    assert resolve_threads(3, torch.device("cpu"), "gym") == 3
    assert resolve_threads("auto", torch.device("cpu"), "gym") == 1
    for bad in (0, -1, "many", True):
        with pytest.raises(ValueError, match="threads must be 'auto' or an integer >= 1"):
            resolve_threads(bad, torch.device("cpu"), "gym")


def test_config_key_and_its_errors():
    assert load_config(CONFIGS / "classic.yaml", []).run.threads == "auto"
    assert load_config(CONFIGS / "classic.yaml", ["run.threads=2"]).run.threads == 2
    with pytest.raises(ConfigError, match="run.threads: invalid value 0"):
        load_config(CONFIGS / "classic.yaml", ["run.threads=0"])


# Two threads: seconds on a busy machine, where every operation waits for both (see the module).
@pytest.mark.parametrize("setting, expected", [pytest.param("2", 2, marks=pytest.mark.medium),
                                               ("auto", 1)])
def test_a_run_trains_with_its_threads_and_restores_the_callers(tmp_path, monkeypatch, setting,
                                                                  expected):
    seen: list[int] = []

    def update(*args, **kwargs):  # no work: two threads on a busy machine are slow (see module)
        seen.append(torch.get_num_threads())
        return {}

    monkeypatch.setattr(trainer, "update", update)
    torch.set_num_threads(3)
    cfg = load_config(CONFIGS / "classic.yaml", [
        "env.num_envs=2", "algo.num_steps=8", "run.total_timesteps=16", "run.eval_episodes=0",
        "run.device=cpu", f"run.threads={setting}"])
    trainer.train(cfg, tmp_path, progress_bar=False, tensorboard=False)
    assert seen == [expected]
    assert torch.get_num_threads() == 3
