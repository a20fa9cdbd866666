"""Checkpoints: save -> load gives the same policy, writes are atomic, errors are clear."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.checkpoint import (
    CHECKPOINT_NAME,
    RESUME_KEYS,
    check_checkpoint,
    check_resumable,
    checkpoint_config,
    checkpoint_file,
    load_checkpoint,
    load_into,
    save_checkpoint,
)
from agents.config import config_to_dict
from agents.errors import BadInputError
from agents.policies import make_policy
from tests.bad_inputs import EVAL_CASES, MARKER

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


# --- bad checkpoints (tests/bad_inputs.py): one-line errors naming the file ----------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run directory with a checkpoint of the shape the trainer writes (CartPole policy,
    classic config, normalization statistics), made without training."""
    from agents.config import load_config, save_config
    from agents.evaluate import make_env_from_config
    from agents.trainer import Progress

    folder = tmp_path_factory.mktemp("run")
    cfg = load_config(Path(__file__).resolve().parents[2] / "configs" / "classic.yaml")
    env = make_env_from_config(cfg, num_envs=1, training=False)
    policy = make_policy(env.observation_space, env.action_space, cfg.policy)
    state = {"policy": policy.state_dict(), "optimizers": {}, "env": env.state_dict(),
             "env_snapshot": None, "env_snapshot_missing": "made by a test", "obs": None,
             "progress": Progress().state_dict(), "rng": {}, "config": config_to_dict(cfg)}
    env.close()
    save_checkpoint(state, folder / CHECKPOINT_NAME)
    save_config(cfg, folder / "config.yaml")
    return folder


def _read_like_eval(path: Path) -> None:
    """What ``train.py eval`` reads from a checkpoint, through the library."""
    from agents.evaluate import make_env_from_config

    path = checkpoint_file(path)
    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt, path)
    env = make_env_from_config(cfg, num_envs=1, training=False)
    try:
        load_into(ckpt, path, make_policy(env.observation_space, env.action_space, cfg.policy),
                  env)
    finally:
        env.close()


def test_the_test_run_reads(run):
    _read_like_eval(run)


@pytest.mark.parametrize("case", EVAL_CASES, ids=[c.id for c in EVAL_CASES])
def test_bad_checkpoints_raise_a_clear_error_naming_the_file(case, run, tmp_path):
    argv, named = case.build(tmp_path, run)
    with pytest.raises(BadInputError) as info:
        _read_like_eval(Path(argv[argv.index("--checkpoint") + 1]))
    message = str(info.value)
    assert "\n" not in message and named in message and case.fragment in message, message
    assert not (tmp_path / MARKER).exists()  # the pickled os.system never ran
    if case.id == "eval-missing":
        assert isinstance(info.value, FileNotFoundError)


def test_any_corruption_is_read_or_a_clear_error(run, tmp_path):
    """Random truncations, byte flips and overwrites of a real checkpoint: each loads or is a
    BadInputError naming the file; never another exception."""
    data = (run / CHECKPOINT_NAME).read_bytes()
    rng = np.random.default_rng(0)
    path = tmp_path / CHECKPOINT_NAME
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(150):
        bad = bytearray(data)
        if i % 3 == 0:
            bad = bad[: rng.integers(len(bad))]
        elif i % 3 == 1:
            for pos in rng.integers(len(bad), size=rng.integers(1, 6)):
                bad[pos] = rng.integers(256)
        else:
            pos = int(rng.integers(len(bad)))
            bad[pos: pos + int(rng.integers(1, 60))] = rng.bytes(int(rng.integers(0, 60)))
        path.write_bytes(bytes(bad))
        try:
            load_checkpoint(path, required=())
            outcomes["loaded"] += 1
        except BadInputError as err:
            assert str(path) in str(err) and "\n" not in str(err)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 50  # most corruptions are caught


@pytest.mark.parametrize(("version", "message"), [
    (2, "format 2 was written by a newer version"), ("1", "format_version '1' is not a format"),
    (0, "format_version 0 is not a format"), (True, "format_version True is not a format")])
def test_format_version(version, message, tmp_path):
    with pytest.raises(BadInputError, match=message):
        check_checkpoint({"format_version": version, "policy": {}}, tmp_path / "c.pt", ())
    check_checkpoint({"format_version": 1, "policy": {}}, tmp_path / "c.pt", ("policy",))


def test_resuming_with_other_settings_names_them(run):
    from agents.config import load_config

    ckpt = load_checkpoint(run, required=RESUME_KEYS)
    cfg = load_config(run / "config.yaml", ["run.total_timesteps=2M", "kfac.lr=0.5"])
    check_resumable(ckpt, cfg, run / CHECKPOINT_NAME)  # budget and step sizes may change
    cfg = load_config(run / "config.yaml", ["env.num_envs=3", "policy.activation=relu"])
    with pytest.raises(BadInputError, match=r"policy.activation 'tanh' there, 'relu' now; "
                                            r"env.num_envs \d+ there, 3 now"):
        check_resumable(ckpt, cfg, run / CHECKPOINT_NAME)


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
    assert load_checkpoint(path, required=())["step"] == 1


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
