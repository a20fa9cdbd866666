"""agents.zoo: rl-zoo3's own train and enjoy with ACKTR registered (a smoke run, as in CI)."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("rl_zoo3")

from agents import zoo  # noqa: E402


def test_train_acktr_gets_our_hyperparameter_file_unless_one_is_given():
    args = zoo.zoo_arguments("train", ["--algo", "acktr", "--env", "CartPole-v1"])
    assert args[-2:] == ["--conf-file", str(zoo.HYPERPARAMS)]
    given = ["--algo=acktr", "-conf", "mine.yml"]
    assert zoo.zoo_arguments("train", given) == given
    assert zoo.zoo_arguments("train", ["--algo", "a2c"]) == ["--algo", "a2c"]
    assert zoo.zoo_arguments("enjoy", ["--algo", "acktr"]) == ["--algo", "acktr"]


def test_unknown_command_is_a_one_line_error():
    with pytest.raises(SystemExit, match="unknown command 'trian'"):
        zoo.main(["trian"])


@pytest.mark.medium
def test_zoo_train_then_enjoy_a_few_hundred_steps(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", list(sys.argv))  # rl-zoo3 parses sys.argv
    logs = str(tmp_path / "logs")
    zoo.main(["train", "--algo", "acktr", "--env", "CartPole-v1", "-n", "256", "-f", logs,
              "--eval-freq", "-1", "--seed", "0"])
    assert (tmp_path / "logs" / "acktr" / "CartPole-v1_1" / "CartPole-v1.zip").is_file()
    zoo.main(["enjoy", "--algo", "acktr", "--env", "CartPole-v1", "-f", logs, "-n", "200",
              "--no-render", "--deterministic"])
    assert "Mean reward" in capsys.readouterr().out


def test_every_zoo_entry_is_a_valid_acktr_configuration():
    import inspect

    import yaml

    from agents.config import KFACConfig
    from agents.sb3 import ACKTR
    from agents.sb3.acktr import kfac_config

    entries = yaml.safe_load(zoo.HYPERPARAMS.read_text())
    zoo_only = {"n_timesteps", "policy", "n_envs", "normalize", "env_wrapper", "frame_stack"}
    accepted = set(inspect.signature(ACKTR).parameters) | zoo_only
    for name, entry in entries.items():
        assert set(entry) <= accepted, (name, set(entry) - accepted)
        kfac_config(KFACConfig(), 1.0, entry.get("kfac_kwargs"), "kfac_kwargs")
        kfac_config(KFACConfig(), 1.0, entry.get("critic_kfac_kwargs"), "critic_kfac_kwargs")
    mujoco = entries["HalfCheetah-v5"]
    assert mujoco["separate_critic"] and mujoco["target_kl"] == 0.002
    assert entries["Hopper-v5"] == mujoco
    atari = entries["atari"]
    assert atari["kl_clip"] == 0.001 and atari["n_steps"] == 20 and atari["n_envs"] == 32


def test_optuna_sampler_gives_an_acktr_configuration():
    import optuna
    from stable_baselines3.common.envs import IdentityEnv

    from agents.sb3 import ACKTR

    zoo.register()
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_SAMPLER

    trial = optuna.trial.FixedTrial({
        "n_steps": 20, "one_minus_gamma": 0.01, "one_minus_gae_lambda": 0.05,
        "learning_rate": 0.25, "kl_clip": 0.001, "damping": 0.01, "ent_coef": 0.01,
        "max_grad_norm": 0.5, "net_arch": "small", "activation_fn": "tanh"})
    params = HYPERPARAMS_SAMPLER["acktr"](trial, 2, 1, {})
    model = ACKTR("MlpPolicy", IdentityEnv(2), device="cpu", **params)
    assert model.gamma == pytest.approx(0.99) and model.kfac_kwargs["kl_clip"] == 0.001
