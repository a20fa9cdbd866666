from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import yaml

from agents.config import (
    Config,
    ConfigError,
    KFACConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    parse_timesteps,
    save_config,
)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_defaults_and_derived_values() -> None:
    cfg = load_config(None, [])
    assert cfg == Config()
    assert cfg.batch_size == cfg.env.num_envs * cfg.algo.num_steps
    assert cfg.num_updates == cfg.run.total_timesteps // cfg.batch_size


def test_kfac_section_matches_the_optimizer_signature() -> None:
    acktr = pytest.importorskip("acktr")
    parameters = inspect.signature(acktr.KFAC).parameters
    for name in dataclasses.asdict(KFACConfig()):
        assert name in parameters, name


def test_kfac_section_maps_onto_the_optimizer_constructor() -> None:
    acktr = pytest.importorskip("acktr")
    torch = pytest.importorskip("torch")
    opt = acktr.KFAC(torch.nn.Linear(2, 2), **dataclasses.asdict(KFACConfig()))
    assert opt.preconditioner.inverse_every == KFACConfig().inverse_every
    critic = Config().critic_kfac
    assert (critic.lr, critic.kl_clip, critic.damping, critic.stat_decay) == (1e-3, 0.3, 0.1, 0.95)


@pytest.mark.parametrize("name", ["atari", "mujoco", "classic"])
def test_shipped_configs_load(name: str) -> None:
    cfg = load_config(CONFIGS / f"{name}.yaml", [])
    assert cfg.num_updates >= 1
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_shipped_config_values() -> None:
    atari = load_config(CONFIGS / "atari.yaml", [])
    assert (atari.env.num_envs, atari.algo.num_steps, atari.kfac.lr) == (16, 20, 0.25)
    assert (atari.kfac.kl_clip, atari.kfac.damping, atari.algo.lr_schedule) == (
        0.001,
        0.01,
        "linear",
    )
    mujoco = load_config(CONFIGS / "mujoco.yaml", [])
    assert mujoco.batch_size == 2500 and mujoco.algo.separate_critic
    assert (mujoco.algo.gae_lambda, mujoco.algo.target_kl, mujoco.algo.critic_updates) == (
        0.97,
        0.002,
        25,
    )
    assert mujoco.kfac.weight_decay == 3e-4 and mujoco.critic_kfac.kl_clip == 0.3
    assert load_config(CONFIGS / "classic.yaml", []).env.env_id == "CartPole-v1"


def test_unknown_section_is_named_with_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, {"enviroment": {"num_envs": 2}}), [])
    message = str(info.value)
    assert "'enviroment'" in message
    for section in ("env", "policy", "kfac", "critic_kfac", "algo", "run"):
        assert section in message


def test_unknown_nested_key_is_named_with_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, {"env": {"num_env": 2}}), [])
    message = str(info.value)
    assert "'env.num_env'" in message and "num_envs" in message and "env_id" in message
    with pytest.raises(ConfigError, match="critic_kfac.lrr"):
        load_config(None, ["critic_kfac.lrr=0.1"])


def test_section_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="env"):
        load_config(_write(tmp_path, {"env": 3}), [])
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_write(tmp_path, "- a\n- b\n"), [])


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, ""), []) == Config()


def test_overrides_are_parsed_as_yaml_and_converted(tmp_path: Path) -> None:
    path = _write(tmp_path, {"env": {"num_envs": 4}, "kfac": {"lr": 0.1}})
    cfg = load_config(
        path,
        [
            "env.num_envs=16",
            "kfac.lr=1e-3",  # a string to YAML; converted to float by the field type
            "policy.hidden_sizes=[128, 128]",
            "env.normalize_obs=true",
            "algo.max_grad_norm=null",
            "run.total_timesteps=2.5M",
            "env.env_id=ALE/Pong-v5",
            "env.num_envs=8",  # the last override wins
        ],
    )
    assert cfg.env.num_envs == 8
    assert cfg.kfac.lr == pytest.approx(1e-3) and isinstance(cfg.kfac.lr, float)
    assert cfg.policy.hidden_sizes == (128, 128)
    assert cfg.env.normalize_obs is True
    assert cfg.algo.max_grad_norm is None
    assert cfg.run.total_timesteps == 2_500_000
    assert cfg.env.env_id == "ALE/Pong-v5"


def test_partial_critic_section_keeps_critic_defaults() -> None:
    cfg = load_config(None, ["critic_kfac.lr=0.002"])
    assert cfg.critic_kfac.lr == 0.002 and cfg.critic_kfac.kl_clip == 0.3
    assert cfg.kfac == KFACConfig()


@pytest.mark.parametrize("override", ["env.num_envs", "num_envs=3", "env..x=1", "=3"])
def test_malformed_overrides(override: str) -> None:
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, [override])


def test_override_into_a_scalar_is_rejected() -> None:
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"env": {"num_envs": 3}}, ["env.num_envs.x=1"])


def test_overrides_do_not_mutate_input() -> None:
    data = {"env": {"num_envs": 3}}
    apply_overrides(data, ["env.num_envs=5"])
    assert data == {"env": {"num_envs": 3}}


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("env.num_envs=abc", ["env.num_envs", "'abc'", "integer"]),
        ("env.num_envs=2.5", ["env.num_envs", "2.5", "integer"]),
        ("env.normalize_reward=3", ["env.normalize_reward", "3", "bool"]),
        ("env.vectorization=threads", ["env.vectorization", "'threads'", "'sync', 'async'"]),
        ("policy.hidden_sizes=64", ["policy.hidden_sizes", "64", "list"]),
        ("algo.target_kl=abc", ["algo.target_kl", "'abc'", "number or null"]),
        ("kfac.damping_scheme=exact", ["kfac.damping_scheme", "'eigen', 'tikhonov'"]),
        ("run.total_timesteps=lots", ["run.total_timesteps", "'lots'", "10M"]),
        ("env.env_id=3", ["env.env_id", "3", "string"]),
        # Values are data: nothing is evaluated.
        ("env.num_envs=__import__('os').getcwd()", ["env.num_envs", "__import__"]),
    ],
)
def test_bad_values_name_key_value_and_allowed(override: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("env.num_envs=0", ["env.num_envs", ">= 1"]),
        ("algo.gamma=0", ["algo.gamma", "(0, 1]"]),
        ("algo.gamma=1.5", ["algo.gamma", "(0, 1]"]),
        ("algo.gae_lambda=-0.1", ["algo.gae_lambda", "[0, 1]"]),
        ("kfac.momentum=1", ["kfac.momentum", "[0, 1)"]),
        ("critic_kfac.damping=0", ["critic_kfac.damping", "> 0"]),
        ("kfac.inverse_every=0", ["kfac.inverse_every", ">= 1"]),
        ("env.repeat_action_probability=2", ["env.repeat_action_probability"]),
        ("policy.hidden_sizes=[64, 0]", ["policy.hidden_sizes"]),
        ("algo.target_kl=-1", ["algo.target_kl", "> 0"]),
        ("run.total_timesteps=10", ["run.total_timesteps", "batch"]),
        ("kfac.inverse_method=inverse", ["kfac.damping_scheme", "tikhonov"]),
    ],
)
def test_range_and_consistency_checks(override: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    for fragment in fragments:
        assert fragment in str(info.value)


def test_tikhonov_with_explicit_inverses_is_valid() -> None:
    cfg = load_config(None, ["kfac.damping_scheme=tikhonov", "kfac.inverse_method=inverse"])
    assert (cfg.kfac.damping_scheme, cfg.kfac.inverse_method) == ("tikhonov", "inverse")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10M", 10_000_000),
        ("1e6", 1_000_000),
        ("500k", 500_000),
        ("500K", 500_000),
        ("2.5M", 2_500_000),
        ("1.1M", 1_100_000),
        ("1B", 1_000_000_000),
        ("1_000_000", 1_000_000),
        ("1,000", 1_000),
        (" 20000 ", 20_000),
        (1000, 1000),
        (1e6, 1_000_000),
    ],
)
def test_parse_timesteps(value: object, expected: int) -> None:
    assert parse_timesteps(value) == expected


@pytest.mark.parametrize("value", ["abc", "1.5", "-5", "", "M", True, "inf", "1e-3"])
def test_parse_timesteps_rejects(value: object) -> None:
    with pytest.raises(ConfigError, match="timesteps"):
        parse_timesteps(value)


def test_timesteps_from_yaml_file(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "run:\n  total_timesteps: 10M\n"), [])
    assert cfg.run.total_timesteps == 10_000_000


def test_round_trip_through_yaml(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        ["policy.hidden_sizes=[32, 16]", "algo.target_kl=0.002", "env.normalize_obs=false"],
    )
    data = config_to_dict(cfg)
    assert data["policy"]["hidden_sizes"] == [32, 16]
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(data))) == cfg
    path = tmp_path / "resolved.yaml"
    save_config(cfg, path)
    assert load_config(path, []) == cfg
