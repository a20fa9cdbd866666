"""MuJoCo from pixels in the config, the command line and the SB3 baselines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents.config import family_config_name, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_the_pixels_config_is_chosen_by_the_override_for_mujoco_only():
    pixels = ["env.observation=pixels"]
    assert family_config_name("mujoco", pixels) == "mujoco_pixels.yaml"
    assert family_config_name("mujoco", []) == "mujoco.yaml"
    assert family_config_name("mujoco", pixels + ["env.observation=state"]) == "mujoco.yaml"
    assert family_config_name("atari", pixels) == "atari.yaml"  # its own error comes later
    assert family_config_name("gym", ["kfac.lr=0.1"]) == "classic.yaml"


def test_pixels_config_settings():
    cfg = load_config(CONFIGS / "mujoco_pixels.yaml")
    e = cfg.env
    assert (e.observation, e.pixels_size, e.frame_stack, e.pixels_grayscale) == (
        "pixels", 42, 3, False)
    assert e.normalize_obs is False and e.normalize_reward is True
    assert not cfg.algo.separate_critic and cfg.algo.algo == "acktr"
    assert cfg.batch_size == 320 and cfg.kfac.kl_clip == 0.001
    with pytest.raises(ValueError, match="env.observation: invalid value 'rgb'"):
        load_config(CONFIGS / "mujoco_pixels.yaml", ["env.observation=rgb"])
    with pytest.raises(ValueError, match="env.pixels_size: invalid value 4"):
        load_config(CONFIGS / "mujoco_pixels.yaml", ["env.pixels_size=4"])


def test_cli_pixels_of_a_non_mujoco_env_is_a_one_line_error(tmp_path, capsys):
    import train

    code = train.main(["--env", "CartPole-v1", "--set", "env.observation=pixels",
                       "--logdir", str(tmp_path), "--no-progress", "--no-tensorboard"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "needs a gymnasium MuJoCo env" in err and "'CartPole-v1'" in err


def test_baselines_look_up_the_pixels_entry():
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("sb3_contrib")
    from agents.baselines import load_baseline_spec, spec_from_entry

    a2c = load_baseline_spec("sb3-a2c", "Reacher-v5", "mujoco", observation="pixels")
    assert a2c.policy == "CnnPolicy" and a2c.n_envs == 16 and "atari settings" in a2c.source
    assert not a2c.normalize_obs and a2c.normalize_reward
    state = load_baseline_spec("sb3-a2c", "Reacher-v5", "mujoco")
    assert state.policy == "MlpPolicy"
    trpo = load_baseline_spec("trpo", "Reacher-v5", "mujoco", observation="pixels")
    assert trpo.policy == "CnnPolicy" and trpo.source.startswith("untuned")
    with pytest.raises(ValueError, match="pixel observations need policy CnnPolicy and no obs"):
        spec_from_entry("sb3-a2c", "Reacher-v5", "mujoco", {"normalize": True}, "t",
                        observation="pixels")


@pytest.mark.medium
def test_sb3_sees_the_same_frames_as_our_agents():
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("mujoco")
    from agents.baselines import make_sb3_pixel_env, sb3_pixel_options
    from agents.evaluate import make_env_from_config
    from envs import RenderingUnavailable

    cfg = load_config(CONFIGS / "mujoco_pixels.yaml", ["env.pixels_size=16", "env.num_envs=2"])
    try:
        ours = make_env_from_config(cfg, seed=7)
    except RenderingUnavailable as err:
        pytest.skip(str(err))
    theirs = make_sb3_pixel_env("Reacher-v5", 2, 7, sb3_pixel_options(cfg.env))
    try:
        assert theirs.observation_space == ours.observation_space
        a, b = ours.reset(), theirs.reset()
        np.testing.assert_array_equal(a, b)
        for action in np.random.default_rng(0).uniform(-1, 1, size=(5, 2, 2)):
            np.testing.assert_array_equal(ours.step(action)[0], theirs.step(action)[0])
    finally:
        ours.close()
        theirs.close()


@pytest.mark.medium
def test_compare_takes_pixel_envs_for_ours_and_the_baselines(tmp_path):
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("sb3_contrib")
    pytest.importorskip("mujoco")
    from agents import compare
    from envs import RenderingUnavailable

    def settings(env: str) -> compare.CompareSettings:
        return compare.CompareSettings(envs=[env], out=tmp_path / "out",
                                       algos=["acktr", "a2c", "sb3-a2c", "trpo"],
                                       overrides=["env.observation=pixels"])

    try:
        algos, sources = compare.validate(settings("Reacher-v5"))
    except RenderingUnavailable as err:
        pytest.skip(str(err))
    got = sources["Reacher-v5"]
    assert got["acktr"] == got["a2c"] == "configs/mujoco_pixels.yaml"
    assert "atari settings" in got["sb3-a2c"] and got["trpo"].startswith("untuned")
    with pytest.raises(ValueError, match="acktr cannot handle 'CartPole-v1'.*needs a gymnasium "
                       "MuJoCo env"):
        compare.validate(settings("CartPole-v1"))
    assert not (tmp_path / "out").exists()
