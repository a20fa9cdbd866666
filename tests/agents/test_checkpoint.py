"""Checkpoints: save -> load gives the same policy, writes are atomic, errors are clear."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
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
    state = load_checkpoint(tmp_path)  # a run directory is accepted too
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
    assert load_checkpoint(path)["step"] == 2


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
    assert load_checkpoint(path)["step"] == 1


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*nowhere"):
        load_checkpoint(tmp_path / "nowhere.pt")
    with pytest.raises(FileNotFoundError, match=CHECKPOINT_NAME):
        load_checkpoint(tmp_path)  # a folder without a checkpoint


def test_objects_are_never_unpickled(tmp_path):
    path = tmp_path / CHECKPOINT_NAME
    torch.save({"object": object()}, path)  # not written by save_checkpoint's callers
    with pytest.raises(Exception, match="weights_only"):
        load_checkpoint(path)


def test_disk_full_keeps_the_previous_checkpoint_and_names_the_file(tmp_path, monkeypatch):
    import errno

    from agents.checkpoint import CheckpointWriteError

    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint({"step": 1}, path)

    def full(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointWriteError, match=f"could not write checkpoint {path}: the disk "
                       "is full .*previous checkpoint there is intact") as info:
        save_checkpoint({"step": 2}, path)
    assert info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]
    assert load_checkpoint(path)["step"] == 1


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path):
    from agents.checkpoint import remove_stale_temporaries

    path = tmp_path / CHECKPOINT_NAME
    save_checkpoint({"step": 1}, path)
    (tmp_path / f".{CHECKPOINT_NAME}.abc123.tmp").write_bytes(b"PK\x03\x04 cut short")
    (tmp_path / ".other.pt.x.tmp").write_bytes(b"")  # another file's: left alone
    assert [p.name for p in remove_stale_temporaries(path)] == [f".{CHECKPOINT_NAME}.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.x.tmp", CHECKPOINT_NAME]
    assert remove_stale_temporaries(tmp_path / "missing" / CHECKPOINT_NAME) == []


def test_schedule_saves_by_updates_by_time_and_waits_for_a_compact_state():
    from agents.checkpoint import CheckpointSchedule

    s = CheckpointSchedule(every_updates=5, every_seconds=600.0, at=frozenset({7}), slack=0.1,
                           last_save=0.0)
    assert s.due(5, ready=False, now=1.0) and s.due(7, now=1.0) and not s.due(6, now=1.0)
    assert not s.due(6, ready=True, now=599.0)
    assert s.due(6, ready=True, now=600.0)
    assert not s.due(6, ready=False, now=600.0)  # waits for a compact state ...
    assert s.due(6, ready=False, now=660.0)  # ... but no longer than 10 % of the interval
    s.saved(now=660.0)
    assert not s.due(6, ready=True, now=1000.0) and s.due(6, ready=True, now=1260.0)
    off = CheckpointSchedule(every_updates=0, every_seconds=0.0, last_save=0.0)
    assert not off.due(1000, now=1e9)
