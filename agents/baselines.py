"""Baseline runners: stable-baselines3's A2C (``sb3-a2c``) and PPO (``sb3-ppo``), sb3-contrib's
TRPO (``trpo``), and our ACKTR as a stable-baselines3 algorithm (``sb3-acktr``,
:mod:`agents.sb3`, with the rl-zoo3 hyperparameters of ``configs/zoo/acktr.yml``).

Hyperparameters come from ``configs/baselines/`` (``sb3-a2c.yaml``, ``trpo.yaml``,
``ppo.yaml``: rl-zoo3's tuned values as plain data). Fairness with our agents (``agents.compare``):

- evaluation goes through our :func:`agents.evaluate.evaluate`: the same evaluation envs
  (built from our family config), seeds, episode count and deterministic policy; the SB3 policy
  is wrapped by :class:`SB3PolicyAdapter` so that our evaluator can call it;
- SB3's ``VecNormalize`` observation statistics are handed to our normalizer
  (:func:`normalization_state`), with the same formula ``clip((o - mean) / sqrt(var + eps),
  -10, 10)`` on both sides;
- SB3's training envs use the same env settings (Atari: frame skip, noop resets, sticky
  actions, action set, episodic life, reward clipping from our family config) and seeds
  (env ``i`` seeded ``seed + i``);
- evaluation points are taken at the first update boundary at or past each grid point
  (:class:`GridEvalCallback`), and wall-clock excludes evaluation time, as for our agents.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from agents.errors import BadInputError
from agents.files import read_yaml

BaselineAlgo = Literal["sb3-a2c", "trpo", "sb3-ppo", "sb3-acktr"]
BASELINE_ALGOS: tuple[str, ...] = ("sb3-a2c", "trpo", "sb3-ppo", "sb3-acktr")
# rl-zoo3's hyperparameter file of each baseline (provenance in its file of configs/baselines).
ZOO_FILES = {"sb3-a2c": "a2c.yml", "trpo": "trpo.yml", "sb3-ppo": "ppo.yml"}
# Each baseline's file in configs/baselines (the issue named PPO's ppo.yaml).
CONFIG_FILES = {"sb3-a2c": "sb3-a2c.yaml", "trpo": "trpo.yaml", "sb3-ppo": "ppo.yaml"}
# SB3's own learning rate of each baseline (the start of a linear schedule without one given).
DEFAULT_LR = {"sb3-a2c": 7e-4, "trpo": 1e-3, "sb3-ppo": 3e-4, "sb3-acktr": 0.25}
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "baselines"
ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "leaky_relu": nn.LeakyReLU}
OPTIMIZERS = ("adam", "rmsprop", "rmsprop_tf_like")
# What an entry may hold besides the algorithm's own constructor arguments.
ENTRY_KEYS = ("zoo_entry", "source", "policy", "n_envs", "normalize", "learning_rate_schedule",
              "clip_range_schedule", "policy_kwargs")
POLICY_KWARGS = ("net_arch", "activation_fn", "log_std_init", "ortho_init", "optimizer",
                 "optimizer_kwargs", "full_std", "squash_output")
# Action spaces SB3's on-policy algorithms (A2C, PPO, TRPO) accept.
SB3_ACTION_SPACES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete,
                     gym.spaces.MultiBinary)


@dataclass
class BaselineSpec:
    """One baseline's settings for one env, resolved from its file in ``configs/baselines``.

    Attributes:
        algo: ``"sb3-a2c"``, ``"trpo"`` or ``"sb3-ppo"``.
        env_id: the gymnasium id.
        source: where the values come from, e.g. ``"rl-zoo3 a2c.yml: HalfCheetah-v4"`` or
            ``"untuned (SB3 defaults)"``.
        policy: ``"MlpPolicy"`` or ``"CnnPolicy"``.
        n_envs: parallel training envs.
        normalize_obs: VecNormalize on observations.
        normalize_reward: VecNormalize on rewards.
        algo_kwargs: constructor arguments of the SB3 class (plain data).
        learning_rate_schedule: ``"constant"`` or ``"linear"`` (to 0 over the run).
        clip_range_schedule: PPO's clip range, ``"constant"`` or ``"linear"`` (to 0).
        policy_kwargs: plain-data policy settings (see :func:`sb3_policy_kwargs`).
    """

    algo: str
    env_id: str
    source: str
    policy: str = "MlpPolicy"
    n_envs: int = 1
    normalize_obs: bool = False
    normalize_reward: bool = False
    algo_kwargs: dict[str, Any] = field(default_factory=dict)
    learning_rate_schedule: Literal["constant", "linear"] = "constant"
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    clip_range_schedule: Literal["constant", "linear"] = "constant"

    @property
    def gamma(self) -> float:
        """Discount (the algorithm's, also used by reward normalization)."""
        return float(self.algo_kwargs.get("gamma", 0.99))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for run records)."""
        return dataclasses.asdict(self)


def sb3_class(algo: str) -> type:
    """The SB3 algorithm class of ``algo`` (imports stable-baselines3 / sb3-contrib).

    Raises:
        ValueError: ``algo`` is not a baseline.
        ImportError: the package is missing, naming the extra to install.
    """
    check_baseline_algo(algo)
    try:
        if algo == "sb3-acktr":
            from agents.sb3 import ACKTR

            return ACKTR
        if algo == "sb3-a2c":
            from stable_baselines3 import A2C

            return A2C
        if algo == "sb3-ppo":
            from stable_baselines3 import PPO

            return PPO
        from sb3_contrib import TRPO

        return TRPO
    except ImportError as err:
        raise ImportError(
            f"{algo!r} needs stable-baselines3 and sb3-contrib: pip install -e \".[baselines]\""
        ) from err


def check_baseline_algo(algo: str) -> None:
    """Raises ValueError naming ``algo`` and the baselines when it is not one of them."""
    if algo not in BASELINE_ALGOS:
        raise ValueError(f"unknown baseline {algo!r}; baselines: {', '.join(BASELINE_ALGOS)}")


def _config_path(algo: str, config_dir: Path | None) -> Path:
    return (config_dir or CONFIG_DIR) / CONFIG_FILES[algo]


def _check_keys(where: str, data: dict[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise BadInputError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                         f"valid keys: {', '.join(sorted(allowed))}")


def load_baseline_spec(
    algo: str, env_id: str, kind: str, config_dir: Path | None = None,
    observation: str = "state",
) -> BaselineSpec:
    """Resolve ``algo``'s hyperparameters for ``env_id`` from its YAML file.

    Lookup order: for a MuJoCo env seen through pixels (``observation == "pixels"``) the
    ``pixels`` entry; else ``envs[env_id]``, then the ``atari`` entry for Atari image envs
    (``kind == "atari"``); else SB3's defaults (``source`` says "untuned"; an entry without a
    zoo entry may name its own ``source``). Every key is checked: an unknown key, or one the
    SB3 class does not take, is an error naming it and the valid ones.

    Args:
        algo: ``"sb3-a2c"`` or ``"trpo"``.
        env_id: gymnasium id.
        kind: env family, ``"atari"``, ``"mujoco"`` or ``"gym"`` (``envs.registry.resolve_kind``).
        config_dir: folder of the YAML files; default ``configs/baselines``.
        observation: ``"state"`` (default) or ``"pixels"`` (our ``env.observation``).
    """
    check_baseline_algo(algo)
    if algo == "sb3-acktr":
        return _sb3_acktr_spec(env_id, kind)
    path = _config_path(algo, config_dir)
    data = read_yaml(path, "baseline config", empty={})
    _check_keys(str(path), data, ("atari", "envs", "pixels"))
    if observation == "pixels":
        entry = data.get("pixels") or {}
        if not isinstance(entry, dict):
            raise BadInputError(f"{path}: the pixels entry must be a mapping of "
                                f"hyperparameters, got {type(entry).__name__} {entry!r:.40}")
        source = str(entry.get("source", "untuned (SB3 defaults, CnnPolicy)"))
        return spec_from_entry(algo, env_id, kind, dict(entry), source,
                               where=f"{path}: pixels", observation="pixels")
    envs = data.get("envs") or {}
    if not isinstance(envs, dict):
        raise BadInputError(f"{path}: 'envs' must be a mapping of env ids to entries, got "
                            f"{type(envs).__name__}")
    zoo_file = ZOO_FILES[algo]
    entry: dict[str, Any] | None = envs.get(env_id)
    if entry is None and kind == "atari":
        entry = data.get("atari")
    if entry is not None and not isinstance(entry, dict):
        raise BadInputError(f"{path}: the entry of {env_id} must be a mapping of "
                            f"hyperparameters, got {type(entry).__name__} {entry!r:.40}")
    if entry is None:
        entry, source = {}, "untuned (SB3 defaults; no rl-zoo3 entry)"
    else:
        entry = dict(entry)
        zoo = entry.get("zoo_entry")
        source = (f"rl-zoo3 {zoo_file}: {zoo}" if zoo else str(entry["source"])
                  if entry.get("source") else "untuned (SB3 defaults; no rl-zoo3 entry)")
    return spec_from_entry(algo, env_id, kind, entry, source, where=f"{path}: {env_id}")


def _sb3_acktr_spec(env_id: str, kind: str) -> BaselineSpec:
    """``sb3-acktr``'s spec from ``configs/zoo/acktr.yml`` (the one copy of its rl-zoo3
    hyperparameters), translated to this module's entry format: ``lin_X`` -> ``X`` with a linear
    schedule, ``normalize: {norm_obs, norm_reward}`` -> ``{obs, reward}``; the zoo's own keys
    (``n_timesteps``, ``env_wrapper``, ``frame_stack``) are dropped, as compare builds the envs
    and sets the budget."""
    from agents.zoo import HYPERPARAMS

    data = read_yaml(HYPERPARAMS, "rl-zoo3 hyperparameter file")
    name = env_id if env_id in data else "atari" if kind == "atari" else "default"
    entry = {k: v for k, v in data[name].items()
             if k not in ("n_timesteps", "env_wrapper", "frame_stack")}
    if isinstance(entry.get("learning_rate"), str):
        entry["learning_rate"] = float(entry["learning_rate"].split("_", 1)[1])
        entry["learning_rate_schedule"] = "linear"
    normalize = entry.get("normalize")
    if isinstance(normalize, dict):
        entry["normalize"] = {"obs": normalize.get("norm_obs", True),
                              "reward": normalize.get("norm_reward", True)}
    source = f"configs/zoo/acktr.yml: {name}"
    return spec_from_entry("sb3-acktr", env_id, kind, entry, source, where=source)


def spec_from_entry(
    algo: str, env_id: str, kind: str, entry: dict[str, Any], source: str, where: str = "entry",
    observation: str = "state",
) -> BaselineSpec:
    """Build a :class:`BaselineSpec` from one YAML entry (see :func:`load_baseline_spec`);
    image observations (Atari, ``observation == "pixels"``) default to ``CnnPolicy``."""
    valid = set(inspect.signature(sb3_class(algo).__init__).parameters) - {
        "self", "policy", "env", "policy_kwargs", "seed", "device", "verbose",
        "tensorboard_log", "_init_setup_model", "rollout_buffer_class", "rollout_buffer_kwargs",
    }
    _check_keys(where, entry, [*ENTRY_KEYS, *sorted(valid)])
    policy_kwargs = entry.get("policy_kwargs") or {}
    if not isinstance(policy_kwargs, dict):
        raise BadInputError(f"{where}: policy_kwargs must be a mapping, got {policy_kwargs!r:.40}")
    policy_kwargs = dict(policy_kwargs)
    _check_keys(f"{where}: policy_kwargs", policy_kwargs, POLICY_KWARGS)
    normalize = entry.get("normalize", False)
    if isinstance(normalize, dict):
        _check_keys(f"{where}: normalize", normalize, ("obs", "reward"))
        norm_obs = bool(normalize.get("obs", True))
        norm_reward = bool(normalize.get("reward", True))
    elif isinstance(normalize, bool):
        norm_obs = norm_reward = normalize
    else:
        raise BadInputError(f"{where}: normalize must be true, false or "
                            f"{{obs: .., reward: ..}}, got {normalize!r}")
    schedules = {}
    for name in ("learning_rate_schedule", "clip_range_schedule"):
        schedules[name] = entry.get(name, "constant")
        if schedules[name] not in ("constant", "linear"):
            raise BadInputError(f"{where}: {name} must be 'constant' or 'linear', "
                                f"got {schedules[name]!r}")
    if schedules["clip_range_schedule"] != "constant" and "clip_range" not in valid:
        raise BadInputError(f"{where}: clip_range_schedule is for PPO; {algo} has no "
                            "clip_range")
    images = kind == "atari" or observation == "pixels"
    default_policy = "CnnPolicy" if images else "MlpPolicy"
    policy = entry.get("policy", default_policy)
    if policy not in ("MlpPolicy", "CnnPolicy"):
        raise BadInputError(f"{where}: policy must be 'MlpPolicy' or 'CnnPolicy', got {policy!r}")
    if observation == "pixels" and (norm_obs or policy != "CnnPolicy"):
        raise BadInputError(f"{where}: pixel observations need policy CnnPolicy and no "
                            "observation normalization (SB3 scales images by 1/255)")
    n_envs = entry.get("n_envs", 1)
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
        raise BadInputError(f"{where}: n_envs must be a whole number >= 1, got {n_envs!r}")
    sb3_policy_kwargs(policy_kwargs, where)  # validates names
    return BaselineSpec(
        algo=algo, env_id=env_id, source=source, policy=policy, n_envs=n_envs,
        normalize_obs=norm_obs, normalize_reward=norm_reward,
        algo_kwargs={k: v for k, v in entry.items() if k in valid},
        learning_rate_schedule=schedules["learning_rate_schedule"], policy_kwargs=policy_kwargs,
        clip_range_schedule=schedules["clip_range_schedule"],
    )


def sb3_policy_kwargs(data: dict[str, Any], where: str = "policy_kwargs") -> dict[str, Any]:
    """Turn plain-data policy settings into SB3's ``policy_kwargs``: ``activation_fn`` names
    (tanh, relu, elu, leaky_relu) become ``nn`` classes, ``optimizer`` names (adam, rmsprop,
    rmsprop_tf_like) become ``optimizer_class``; the rest passes through."""
    out = {k: v for k, v in data.items() if k not in ("activation_fn", "optimizer")}
    if "activation_fn" in data:
        name = data["activation_fn"]
        if not isinstance(name, str) or name not in ACTIVATIONS:
            raise BadInputError(f"{where}: activation_fn {name!r}; allowed: "
                                f"{', '.join(ACTIVATIONS)}")
        out["activation_fn"] = ACTIVATIONS[name]
    if "optimizer" in data:
        name = data["optimizer"]
        if not isinstance(name, str) or name not in OPTIMIZERS:
            raise BadInputError(f"{where}: optimizer {name!r}; allowed: {', '.join(OPTIMIZERS)}")
        if name == "rmsprop_tf_like":
            from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

            out["optimizer_class"] = RMSpropTFLike
        else:
            classes = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}
            out["optimizer_class"] = classes[name]
    if isinstance(out.get("net_arch"), dict):
        out["net_arch"] = {k: list(v) for k, v in out["net_arch"].items()}
    return out


def check_spaces(algo: str, env_id: str, observation_space: gym.Space,
                 action_space: gym.Space) -> None:
    """Raises ValueError when SB3's on-policy algorithms cannot handle the env's spaces."""
    if not isinstance(action_space, SB3_ACTION_SPACES):
        allowed = ", ".join(s.__name__ for s in SB3_ACTION_SPACES)
        raise ValueError(f"{algo} cannot handle {env_id!r}: action space {action_space} is not "
                         f"one of {allowed}")
    if not isinstance(observation_space, gym.spaces.Box | gym.spaces.Discrete):
        raise ValueError(f"{algo} cannot handle {env_id!r} here: observation space "
                         f"{observation_space} (compare supports Box and Discrete observations)")


def sb3_pixel_options(env_cfg: Any) -> Any:
    """Our ``envs.pixels.PixelOptions`` from an ``agents.config.EnvConfig`` (as our agents)."""
    from agents.config import Config
    from agents.evaluate import pixel_options

    return pixel_options(Config(env=env_cfg))


def make_sb3_pixel_env(env_id: str, n_envs: int, seed: int, options: Any) -> Any:
    """SB3 ``DummyVecEnv`` of ``n_envs`` MuJoCo envs seen through pixels, the same frames as our
    agents see: each is ``envs.pixels.make_pixel_env`` (same size, color, stack, camera,
    antialiasing; uint8 ``(stack * C, H, W)``, channel-first, which SB3's ``CnnPolicy`` takes
    as is), Monitor-wrapped and seeded ``seed + i`` by SB3. Any SB3 algorithm can train on it.

    Args:
        env_id: A gymnasium MuJoCo id.
        n_envs: Number of envs.
        seed: Base seed.
        options: ``envs.pixels.PixelOptions``.
    """
    from functools import partial

    from stable_baselines3.common.env_util import make_vec_env

    from envs.pixels import check_pixel_env, make_pixel_env, select_gl_backend
    from envs.registry import resolve_kind

    check_pixel_env(env_id, resolve_kind(env_id, "auto"))
    select_gl_backend()
    return make_vec_env(partial(make_pixel_env, env_id, options), n_envs=n_envs, seed=seed)


def make_sb3_env(spec: BaselineSpec, kind: str, seed: int, env_cfg: Any) -> Any:
    """SB3's training VecEnv for ``spec``: ``n_envs`` envs seeded ``seed + i`` (Monitor-wrapped
    by SB3), Atari with SB3's ``AtariWrapper`` set from our ``env_cfg`` (``agents.config.
    EnvConfig``), ``VecFrameStack`` and channel-first images, MuJoCo from pixels
    (``env_cfg.observation == "pixels"``) through :func:`make_sb3_pixel_env`, then
    ``VecNormalize`` when asked (clip 10, epsilon 1e-8, the algorithm's gamma)."""
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize, VecTransposeImage

    if getattr(env_cfg, "observation", "state") == "pixels":
        venv = make_sb3_pixel_env(spec.env_id, spec.n_envs, seed, sb3_pixel_options(env_cfg))
    elif kind == "atari":
        from envs.registry import ale_available

        ale_available()  # registers ALE/ ids with gymnasium
        venv = make_atari_env(
            spec.env_id, n_envs=spec.n_envs, seed=seed,
            env_kwargs={"frameskip": 1,  # AtariWrapper skips frames (max-pooling the last two)
                        "repeat_action_probability": env_cfg.repeat_action_probability,
                        "full_action_space": env_cfg.full_action_space},
            wrapper_kwargs={"noop_max": env_cfg.noop_max, "frame_skip": env_cfg.frame_skip,
                            "terminal_on_life_loss": env_cfg.episodic_life,
                            "clip_reward": env_cfg.clip_rewards},
        )
        venv = VecTransposeImage(VecFrameStack(venv, n_stack=env_cfg.frame_stack))
    else:
        venv = make_vec_env(spec.env_id, n_envs=spec.n_envs, seed=seed)
    if spec.normalize_obs or spec.normalize_reward:
        venv = VecNormalize(venv, norm_obs=spec.normalize_obs, norm_reward=spec.normalize_reward,
                            gamma=spec.gamma, clip_obs=10.0, epsilon=1e-8)
    return venv


def make_sb3_model(spec: BaselineSpec, venv: Any, seed: int, device: str,
                   total_timesteps: int) -> Any:
    """The SB3 model (A2C, PPO or TRPO) for ``spec`` on ``venv``; ``total_timesteps`` only
    matters for linear schedules (SB3 decays them over the ``learn`` call)."""
    kwargs = dict(spec.algo_kwargs)
    if spec.learning_rate_schedule == "linear":
        lr0 = float(kwargs.get("learning_rate", DEFAULT_LR[spec.algo]))
        kwargs["learning_rate"] = _LinearSchedule(lr0)
    if spec.clip_range_schedule == "linear":
        kwargs["clip_range"] = _LinearSchedule(float(kwargs.get("clip_range", 0.2)))
    return sb3_class(spec.algo)(
        spec.policy, venv, policy_kwargs=sb3_policy_kwargs(spec.policy_kwargs) or None,
        seed=seed, device=device, verbose=0, **kwargs,
    )


@dataclass(frozen=True)
class _LinearSchedule:
    """SB3 schedule ``lr(progress_remaining) = progress_remaining * initial`` (1 -> 0)."""

    initial: float

    def __call__(self, progress_remaining: float) -> float:
        return progress_remaining * self.initial


class SB3PolicyAdapter(nn.Module):
    """Lets our evaluator (``agents.evaluate.run_episodes``) drive an SB3 policy.

    ``act(obs, deterministic)`` takes our observation tensor (already normalized by our
    ``VecNormalize`` with the SB3 statistics handed over) and returns actions as a tensor, through
    SB3's own ``predict`` (which clips Box actions to the action space, as SB3's evaluation does;
    our envs clip too). Pixel observations are channel-first in both.
    """

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    @torch.no_grad()
    def act(self, obs: Tensor, deterministic: bool = False) -> Tensor:
        """Actions for a batch of observations (the mode when ``deterministic``)."""
        actions, _ = self.policy.predict(obs.cpu().numpy(), deterministic=deterministic)
        return torch.as_tensor(np.asarray(actions))


def normalization_state(venv: Any) -> dict[str, Any]:
    """Our ``VecNormalize.state_dict()`` format (``{"obs_rms": {mean, var, count}}``) holding the
    observation statistics of SB3's ``VecNormalize`` in ``venv``'s wrapper chain, or ``{}`` when
    it normalizes no observations.

    Raises:
        ValueError: SB3's normalizer uses another clip or epsilon than ours (10, 1e-8), so the
            statistics would not mean the same thing.
    """
    from stable_baselines3.common.vec_env import unwrap_vec_normalize

    norm = unwrap_vec_normalize(venv)
    if norm is None or not norm.norm_obs:
        return {}
    if norm.clip_obs != 10.0 or norm.epsilon != 1e-8:
        raise ValueError(f"SB3 VecNormalize with clip_obs={norm.clip_obs}, epsilon={norm.epsilon}"
                         "; our evaluation normalizer uses clip_obs=10, epsilon=1e-8")
    rms = norm.obs_rms
    return {"obs_rms": {"mean": torch.from_numpy(np.array(rms.mean, dtype=np.float64)),
                        "var": torch.from_numpy(np.array(rms.var, dtype=np.float64)),
                        "count": float(rms.count)}}


EvalFn = Callable[[nn.Module, dict[str, Any]], tuple[float, float]]
PointFn = Callable[..., None]
"""``on_point(timesteps, eval_mean, eval_std, wall_seconds, train_return)``."""


def grid_eval_callback(grid: Sequence[int], evaluate_fn: EvalFn, on_point: PointFn) -> Any:
    """An SB3 callback that evaluates at the first update boundary at or past each grid point.

    Args:
        grid: increasing timesteps.
        evaluate_fn: ``(adapter, env_state) -> (return_mean, return_std)``.
        on_point: called ``(timesteps, return_mean, return_std, train_wall_seconds,
            train_return)`` per evaluation; ``train_wall_seconds`` counts from the start of
            ``learn`` and excludes evaluation time; ``train_return`` is the mean return of the
            last 100 training episodes (SB3's ``ep_info_buffer``: Monitor's full episodes, raw
            rewards), NaN before the first.

    Evaluations happen at the start of a rollout (after the previous update) and at the end of
    training; several grid points passed in one update give one evaluation.
    """
    from stable_baselines3.common.callbacks import BaseCallback

    class GridEvalCallback(BaseCallback):
        def __init__(self) -> None:
            super().__init__(verbose=0)
            self.next_index = 0
            self.last_timesteps = -1
            self.start = 0.0
            self.eval_seconds = 0.0

        def _on_training_start(self) -> None:
            self.start = time.perf_counter()

        def _on_rollout_start(self) -> None:
            self._maybe_evaluate(final=False)

        def _on_step(self) -> bool:
            return True

        def _on_training_end(self) -> None:
            self._maybe_evaluate(final=True)

        def _maybe_evaluate(self, final: bool) -> None:
            t = self.num_timesteps
            due = self.next_index < len(grid) and t >= grid[self.next_index]
            if not (due or (final and t != self.last_timesteps)) or t == 0:
                return
            while self.next_index < len(grid) and t >= grid[self.next_index]:
                self.next_index += 1
            wall = time.perf_counter() - self.start - self.eval_seconds
            began = time.perf_counter()
            adapter = SB3PolicyAdapter(self.model.policy)
            mean, std = evaluate_fn(adapter, normalization_state(self.model.get_env()))
            self.eval_seconds += time.perf_counter() - began
            self.last_timesteps = t
            episodes = [float(info["r"]) for info in self.model.ep_info_buffer or ()]
            on_point(t, mean, std, wall, float(np.mean(episodes)) if episodes else float("nan"))

    return GridEvalCallback()


def train_baseline(
    spec: BaselineSpec,
    kind: str,
    seed: int,
    total_timesteps: int,
    grid: Sequence[int],
    evaluate_fn: EvalFn,
    on_point: PointFn,
    env_cfg: Any,
    device: str = "cpu",
) -> dict[str, Any]:
    """Train a baseline for ``total_timesteps`` (SB3 runs whole rollouts, so it may end up to one
    batch past it), evaluating at ``grid`` through ``evaluate_fn``.

    Returns:
        ``{"timesteps", "wall_seconds", "fps", "updates"}`` (wall-clock without evaluation).
    """
    torch.manual_seed(seed)
    venv = make_sb3_env(spec, kind, seed, env_cfg)
    try:
        model = make_sb3_model(spec, venv, seed, device, total_timesteps)
        points: list[float] = []

        def record(t: int, mean: float, std: float, wall: float, train_return: float) -> None:
            points.append(wall)
            on_point(t, mean, std, wall, train_return)

        callback = grid_eval_callback(grid, evaluate_fn, record)
        model.learn(total_timesteps=total_timesteps, callback=callback, progress_bar=False)
        timesteps = int(model.num_timesteps)
        wall = points[-1] if points else float("nan")
        batch = spec.n_envs * int(getattr(model, "n_steps", 1))
        return {"timesteps": timesteps, "wall_seconds": wall,
                "fps": timesteps / max(wall, 1e-9), "updates": timesteps // batch}
    finally:
        venv.close()
