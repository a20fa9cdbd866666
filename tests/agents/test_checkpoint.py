"""Checkpoints: save -> load gives the same policy, writes are atomic, errors are clear."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from agents.errors import BadInputError
from agents.policies import make_policy

SPACES = [
    pytest.param(gym.spaces.Box(-1, 1, (5,), np.float32), gym.spaces.Discrete(3), id="mlp"),
    pytest.param(gym.spaces.Box(-1, 1, (5,), np.float32), gym.spaces.Box(-1, 1, (2,)),
                 id="gaussian"),
    pytest.param(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6),
                 id="cnn"),
]


@pytest.mark.parametrize(("obs_space", "action_space"), SPACES)
def test_save_load_gives_the_same_actions_and_values(tmp_path, obs_space, action_space):
    torch.manual_seed(0)
    policy = make_policy(obs_space, action_space)
    with torch.no_grad():
        for p in policy.parameters():  # away from the initialization, so loading matters
            p.add_(0.1 * torch.randn_like(p))
    save_checkpoint({"policy": policy.state_dict(), "step": 7}, tmp_path / CHECKPOINT_NAME)

    torch.manual_seed(1)
    loaded = make_policy(obs_space, action_space)
    state = load_checkpoint(tmp_path, required=("policy",))  # a run directory is accepted too
    loaded.load_state_dict(state["policy"])
    assert state["step"] == 7

    obs = torch.as_tensor(np.stack([obs_space.sample() for _ in range(8)]))
    torch.testing.assert_close(loaded.act(obs, deterministic=True),
                               policy.act(obs, deterministic=True), rtol=0, atol=0)
    torch.testing.assert_close(loaded.value(obs), policy.value(obs), rtol=0, atol=0)


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    for step in range(3):
        save_checkpoint({"step": step}, path)
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]
    assert load_checkpoint(path, required=())["step"] == 2


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint({"step": 1}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]
    assert load_checkpoint(path, required=())["step"] == 1


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*nowhere"):
        load_checkpoint(tmp_path / "nowhere.pt")
    with pytest.raises(FileNotFoundError, match=CHECKPOINT_NAME):
        load_checkpoint(tmp_path)  # a folder without a checkpoint


def test_objects_are_never_unpickled(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    torch.save({"object": object()}, path)  # not written by save_checkpoint's callers
    with pytest.raises(BadInputError, match=r"refused: it holds a pickled Python object"):
        load_checkpoint(path, required=())
