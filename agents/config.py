"""Run configuration: nested dataclasses, loaded from YAML plus ``--set section.key=value``.

    cfg = load_config("configs/atari.yaml", ["env.num_envs=8", "run.total_timesteps=10M"])
    optimizer = acktr.KFAC(policy, **dataclasses.asdict(cfg.kfac))

Sections: ``env``, ``policy``, ``kfac`` (the K-FAC optimizer, one-to-one with the
``acktr.KFAC`` constructor), ``critic_kfac`` (the separate critic's K-FAC, MuJoCo recipe),
``algo`` and ``run``. Unknown keys are errors at every level, values are converted and checked
against the field types and ranges, and YAML is read with ``yaml.safe_load`` only (nothing is
ever evaluated as Python).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

import yaml

from agents.errors import BadInputError, MissingInputError
from agents.files import parse_yaml, read_yaml


class ConfigError(BadInputError):
    """A configuration file or override is invalid; the message names the key (and the file,
    when the file holds the bad value)."""


# ---------------------------------------------------------------------------------------------
# Range checks, attached to fields as metadata and applied by ``validate_config``.


def _check(predicate: Callable[[Any], bool], expected: str, **extra: Any) -> dict[str, Any]:
    return {"check": (predicate, expected), **extra}


def _at_least(low: float) -> dict[str, Any]:
    return _check(lambda v: v >= low, f">= {low}")


def _positive() -> dict[str, Any]:
    return _check(lambda v: v > 0, "> 0")


def _unit(low_open: bool = False, high_open: bool = False) -> dict[str, Any]:
    """Interval between 0 and 1 with the given open ends."""

    def inside(v: float) -> bool:
        above = v > 0 if low_open else v >= 0
        below = v < 1 if high_open else v <= 1
        return above and below

    return _check(inside, f"in {'(' if low_open else '['}0, 1{')' if high_open else ']'}")


def parse_timesteps(value: int | float | str) -> int:
    """Parse a human timestep count: ``1000000``, ``1e6``, ``'1e6'``, ``'500k'``, ``'10M'``.

    Suffixes (case-insensitive): ``k`` = 1e3, ``M`` = 1e6, ``G`` or ``B`` = 1e9. Underscores and
    commas are ignored (``'1_000_000'``). The result must be a non-negative whole number.

    Raises:
        ConfigError: If the value cannot be parsed or is not a whole non-negative number.
    """
    if isinstance(value, bool):
        raise ConfigError(f"could not parse timesteps {value!r}: expected a number")
    text = str(value).strip().replace("_", "").replace(",", "")
    multiplier = 1
    suffixes = {"k": 10**3, "m": 10**6, "g": 10**9, "b": 10**9}
    if text and text[-1].lower() in suffixes:
        multiplier = suffixes[text[-1].lower()]
        text = text[:-1]
    try:
        number = Decimal(text) * multiplier
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite() or number < 0 or number != number.to_integral():
        raise ConfigError(
            f"could not parse timesteps {value!r}: expected a whole non-negative number such "
            "as 1000000, '1e6', '500k' or '10M'"
        )
    return int(number)


def _timesteps(default: int, **check: Any) -> Any:
    return field(default=default, metadata={"parse": parse_timesteps, **check})


# ---------------------------------------------------------------------------------------------
# Sections. Each field: a default and a one-line docstring.


@dataclass
class EnvConfig:
    """Environment construction (built by ``envs/``)."""

    env_id: str = "CartPole-v1"
    """Gymnasium id, e.g. ``'CartPole-v1'``, ``'HalfCheetah-v5'``, ``'ALE/Pong-v5'``."""
    num_envs: int = field(default=8, metadata=_at_least(1))
    """Number of parallel environments (N)."""
    vectorization: Literal["sync", "async"] = "sync"
    """Vector env kind: ``'sync'`` (one process) or ``'async'`` (one subprocess per env)."""
    normalize_obs: bool | None = None
    """Running mean/std observation normalization; None: on for vector obs, off for pixels."""
    observation: Literal["state", "pixels"] = "state"
    """``'state'``: the env's own observations; ``'pixels'``: a MuJoCo env seen only through
    rendered frames (``pixels_*`` keys and ``frame_stack``; uint8, channel-first)."""
    pixels_size: int = field(default=42, metadata=_at_least(8))
    """Pixels: height and width of the rendered frames (42 as in the ACKTR paper)."""
    pixels_grayscale: bool = False
    """Pixels: one luma channel per frame instead of RGB."""
    pixels_antialias: bool = False
    """Pixels: MuJoCo's 4x multisampling (2x slower with software OpenGL)."""
    pixels_shadow_size: int | None = field(default=None, metadata=_check(
        lambda v: v is None or v >= 1, "None or >= 1"))
    """Pixels: side of MuJoCo's shadow map; None: the model's (4096), which costs HalfCheetah
    and Walker2d 6-7x their frame time with software OpenGL (512 looks the same at 42x42)."""
    pixels_camera_distance: float | None = field(default=None, metadata=_positive())
    """Pixels: camera distance; None: the env's default (or envs.pixels.CAMERA_PRESETS)."""
    pixels_camera_elevation: float | None = None
    """Pixels: camera elevation in degrees (-90: top-down); None: as for the distance."""
    pixels_camera_azimuth: float | None = None
    """Pixels: camera azimuth in degrees; None: as for the distance."""
    normalize_reward: bool = False
    """Scale rewards by a running std of the discounted return."""
    frame_skip: int = field(default=4, metadata=_at_least(1))
    """Atari: frames per agent step (max-pooled over the last two)."""
    frame_stack: int = field(default=4, metadata=_at_least(1))
    """Atari (grayscale 84x84) and MuJoCo pixels (``observation='pixels'``): number of
    stacked frames."""
    noop_max: int = field(default=30, metadata=_at_least(0))
    """Atari: up to this many no-op actions after reset."""
    episodic_life: bool = True
    """Atari: a lost life ends the training episode (not the game)."""
    clip_rewards: bool = True
    """Atari: train on sign(reward); episode statistics keep raw rewards."""
    repeat_action_probability: float = field(default=0.0, metadata=_unit())
    """Atari: sticky-action probability (0.0 as in the ACKTR paper; ALE v5 uses 0.25)."""
    full_action_space: bool = False
    """Atari: use all 18 actions instead of the game's minimal set."""
    eval_max_frames: int | None = field(default=None, metadata=_check(
        lambda v: v is None or v >= 1, "None or >= 1"))
    """Atari: emulator frames after which an evaluation episode is cut (truncated, its score so
    far counted). None (default): ale-py's 108000 (30 minutes at 60 Hz), as in training; 18000
    is the 5 minutes of Mnih et al. (2015)'s evaluation, which bounds the cost of a greedy
    policy that never serves again (Breakout)."""


@dataclass
class PolicyConfig:
    """Network architecture (``agents.policies.make_policy``).

    Pixel observations (Atari, MuJoCo pixels) always use a Nature CNN with a shared trunk;
    vector observations use separate actor and critic MLPs.
    """

    hidden_sizes: tuple[int, ...] = field(
        default=(64, 64), metadata=_check(lambda v: all(h >= 1 for h in v), "widths >= 1")
    )
    """Hidden layer widths of the actor and critic MLPs (vector observations)."""
    activation: Literal["tanh", "relu", "elu"] = "tanh"
    """Hidden activation of the MLPs."""
    critic_activation: Literal["tanh", "relu", "elu"] | None = None
    """Hidden activation of the critic MLP alone (None: ``activation``); the original ACKTR's
    MuJoCo value function used ELU."""
    cnn_hidden_size: int = field(default=512, metadata=_at_least(1))
    """Width of the Nature CNN's fully connected layer."""
    cnn_trunk: Literal["auto", "nature", "nature_small"] = "auto"
    """Convolutions of the pixel trunk: ``'nature'`` (8x8/4, 4x4/2, 3x3/1, as on Atari),
    ``'nature_small'`` (first layer 4x4/2: from 42x42 the 7x7 feature map Nature makes from
    84x84, at 4.6x the ACKTR update time); ``'auto'``: ``'nature'`` for frames of 36 pixels or
    more, else ``'nature_small'``."""
    log_std_init: float = 0.0
    """Initial state-independent log standard deviation of Gaussian policies."""
    init: Literal["orthogonal", "normc"] = "orthogonal"
    """MLP initialization: ``'orthogonal'`` (gains sqrt(2) hidden, 0.01 policy output, 1.0
    value output) or ``'normc'``, the original MuJoCo ACKTR's (unit-norm Gaussian rows scaled
    by 1.0 hidden, 0.1 policy output, 1.0 value output). The Nature CNN is always orthogonal."""
    prev_obs: bool = False
    """Vector observations: the actor and critic also see the previous (normalized) observation
    of the episode, zeros at its first step (the original MuJoCo ACKTR's ``prev_ob``;
    ``envs.extra_inputs``). Default False."""
    critic_time_scale: float | None = field(default=None, metadata=_positive())
    """Vector observations: the critic alone also sees the step index within the episode times
    this (0 at each reset); the original MuJoCo ACKTR's value function used 0.1. None (default):
    off."""


@dataclass
class KFACConfig:
    """Arguments of ``acktr.KFAC(model, **asdict(cfg))``, one-to-one. Defaults: ACKTR Atari."""

    lr: float = field(default=0.25, metadata=_positive())
    """Learning rate (maximum step size; the paper's eta_max)."""
    momentum: float = field(default=0.9, metadata=_unit(high_open=True))
    """Momentum of the preconditioned update."""
    damping: float = field(default=0.01, metadata=_positive())
    """Damping lambda added to the curvature."""
    weight_decay: float = field(default=0.0, metadata=_at_least(0.0))
    """L2 weight decay coefficient."""
    weight_decay_on: Literal["all", "weights"] = "all"
    """Decay every parameter, or only weights (2+ dims; the original MuJoCo ACKTR)."""
    stat_decay: float = field(default=0.99, metadata=_unit(high_open=True))
    """Exponential moving-average decay of the Kronecker factors."""
    kl_clip: float | None = field(default=0.001, metadata=_positive())
    """Trust region: bound on the predicted KL of a step (delta); None: no trust region."""
    stats_every: int = field(default=1, metadata=_at_least(1))
    """Update the Kronecker factors every this many steps."""
    inverse_every: int = field(default=10, metadata=_at_least(1))
    """Recompute inverses / eigendecompositions every this many steps."""
    damping_scheme: Literal["eigen", "tikhonov"] = "eigen"
    """``'eigen'``: add damping in the eigenbasis; ``'tikhonov'``: factored Tikhonov."""
    inverse_method: Literal["eigen", "inverse"] = "eigen"
    """How factors are inverted: eigendecomposition or explicit damped inverses."""
    cold_start_steps: int = field(default=10, metadata=_at_least(0))
    """Steps of plain momentum SGD while the statistics warm up."""
    cold_start_lr: float | None = field(default=None, metadata=_positive())
    """Step size during the cold start; None: ``lr``."""
    fallback: Literal["diagonal", "identity"] = "diagonal"
    """Preconditioner for parameters no K-FAC block claims (our policies have none: the
    log-std is an acktr.BroadcastBias with its own exact block)."""
    async_inverse: bool = False
    """Overlap eigendecompositions with the next updates (stale by one refresh; deterministic)."""
    stats_batch_size: int | None = field(default=None, metadata=_at_least(1))
    """Examples of each batch used for the curvature statistics (random subset; null: all)."""


def _critic_kfac_default() -> KFACConfig:
    # The original MuJoCo code's value-function optimizer (openai/baselines acktr_cont).
    return KFACConfig(lr=1e-3, kl_clip=0.3, damping=0.1, stat_decay=0.95)


@dataclass
class AlgoConfig:
    """The learning algorithm and its loss."""

    algo: Literal["acktr", "a2c"] = "acktr"
    """``'acktr'`` (K-FAC natural gradient) or ``'a2c'`` (RMSprop baseline)."""
    num_steps: int = field(default=20, metadata=_at_least(1))
    """Steps per environment per rollout (T)."""
    gamma: float = field(default=0.99, metadata=_unit(low_open=True))
    """Discount factor."""
    gae_lambda: float = field(default=1.0, metadata=_unit())
    """GAE lambda; 1.0 gives n-step returns (the Atari setting)."""
    ent_coef: float = field(default=0.01, metadata=_at_least(0.0))
    """Entropy bonus coefficient."""
    vf_coef: float = field(default=0.5, metadata=_at_least(0.0))
    """Value loss coefficient (joint loss of a shared network)."""
    lr_schedule: Literal["constant", "linear"] = "constant"
    """Learning rate schedule; ``'linear'`` decays to 0 at the last update."""
    normalize_advantages: bool = False
    """Standardize advantages over each batch."""
    max_grad_norm: float | None = field(default=0.5, metadata=_positive())
    """Global gradient-norm clip (A2C; the public ACKTR code also clips at 0.5); None: off."""
    rmsprop_lr: float = field(default=7e-4, metadata=_positive())
    """A2C: RMSprop learning rate."""
    rmsprop_alpha: float = field(default=0.99, metadata=_unit(high_open=True))
    """A2C: RMSprop smoothing constant."""
    rmsprop_eps: float = field(default=1e-5, metadata=_positive())
    """A2C: RMSprop epsilon."""
    separate_critic: bool = False
    """Train the critic with its own K-FAC (``critic_kfac``) and ``critic_updates`` steps."""
    target_kl: float | None = field(default=None, metadata=_positive())
    """Adapt the policy lr toward this KL per update (/1.5 above 2x, x1.5 below 1/2); None: off."""
    critic_updates: int = field(default=25, metadata=_at_least(1))
    """Separate critic: K-FAC steps on each batch."""


@dataclass
class RunConfig:
    """Run length, seeding, device and bookkeeping."""

    total_timesteps: int = _timesteps(1_000_000, **_at_least(1))
    """Environment steps over all envs; accepts '10M', '500k', '1e6'."""
    seed: int = field(default=0, metadata=_at_least(0))
    """Seed for torch, numpy and the environments."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Torch device; ``'auto'`` picks CUDA when available."""
    logdir: str = "runs"
    """Directory for logs, the resolved config and checkpoints."""
    checkpoint_every: int = field(default=1000, metadata=_at_least(0))
    """Save a checkpoint every this many updates (0: not by updates). Default 1000."""
    checkpoint_seconds: float = field(default=600.0, metadata=_at_least(0.0))
    """Also save one once this many seconds of wall-clock time have passed since the last
    (0: not by time). Default 600: a kill loses at most about 10 minutes, whatever the env and
    the machine's speed. A checkpoint is also saved at the end and on Ctrl-C / SIGTERM."""
    eval_episodes: int = field(default=10, metadata=_at_least(0))
    """Deterministic evaluation episodes, at the end of training and at every ``eval_every``
    (0: no evaluation)."""
    eval_every: int = _timesteps(0, **_at_least(0))
    """Evaluate every this many env steps during training (at the first update boundary past
    each multiple), log to ``eval/`` and keep the best model in ``best.pt``; accepts '50k'.
    0 (the default): only at the end."""
    log_interval: int = field(default=10, metadata=_at_least(1))
    """Log metrics every this many updates."""
    threads: int | Literal["auto"] = field(default="auto", metadata=_check(
        lambda v: v == "auto" or v >= 1, "'auto' or an integer >= 1"))
    """torch's CPU threads for the run; ``'auto'`` (the default): 1 on the CPU, torch's default
    (one per core) on CUDA (measured: ``agents.threads``)."""
    rollout_threads: int | None = field(default=None, metadata=_at_least(1))
    """torch intra-op threads while collecting rollouts, restored for the update; None (the
    default) leaves torch's setting. 1 suits small MLPs on the CPU: a forward of a few rows
    per step only loses to thread overhead, while the update's large products use them all."""


@dataclass
class Config:
    """The whole run configuration."""

    env: EnvConfig = field(default_factory=EnvConfig)
    """Environment construction."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Network architecture."""
    kfac: KFACConfig = field(default_factory=KFACConfig)
    """K-FAC for the whole model, or for the actor when ``algo.separate_critic``."""
    critic_kfac: KFACConfig = field(default_factory=_critic_kfac_default)
    """K-FAC for the critic when ``algo.separate_critic`` (lr 1e-3, kl_clip 0.3, ...)."""
    algo: AlgoConfig = field(default_factory=AlgoConfig)
    """Algorithm and loss."""
    run: RunConfig = field(default_factory=RunConfig)
    """Run length and bookkeeping."""

    @property
    def batch_size(self) -> int:
        """Transitions per update: ``num_envs * num_steps``."""
        return self.env.num_envs * self.algo.num_steps

    @property
    def num_updates(self) -> int:
        """Updates in the run: ``total_timesteps // batch_size``."""
        return self.run.total_timesteps // self.batch_size


# ---------------------------------------------------------------------------------------------
# Building dataclasses from plain data.


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return {bool: "a bool", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _bad(key: str, value: Any, tp: Any) -> ConfigError:
    return ConfigError(f"{key}: invalid value {value!r}; expected {_describe(tp)}")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the field type ``tp`` or raise a ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value in typing.get_args(tp) and isinstance(value, str):
            return value
        raise _bad(key, value, tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, key)
            except ConfigError:
                pass
        raise _bad(key, value, tp)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _bad(key, value, tp)
        return tuple(_convert(v, typing.get_args(tp)[0], key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        # PyYAML reads '1e6' as a string: accept any whole number, however written.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise _bad(key, value, tp) from None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        # PyYAML reads '1e-3' (no dot) as a string.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise _bad(key, value, tp) from None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a field type this module does not handle
        raise TypeError(f"{key}: unsupported field type {tp!r}")
    raise _bad(key, value, tp)


def _merge(base: Any, data: Any, prefix: str) -> Any:
    """Return a copy of dataclass ``base`` with the entries of ``data`` converted and set."""
    section = prefix.rstrip(".") or "the top level"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{section}: expected a mapping of keys, got {data!r}")
    names = [f.name for f in fields(base)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(f'{prefix}{k}') for k in unknown)} in {section}; "
            f"valid keys: {', '.join(names)}"
        )
    hints = typing.get_type_hints(type(base))
    changes = {}
    for f in fields(base):
        if f.name not in data:
            continue
        key, value = f"{prefix}{f.name}", data[f.name]
        if dataclasses.is_dataclass(hints[f.name]):
            changes[f.name] = _merge(getattr(base, f.name), value, f"{key}.")
            continue
        if "parse" in f.metadata:
            try:
                value = f.metadata["parse"](value)
            except ConfigError as err:
                raise ConfigError(f"{key}: {err}") from None
        changes[f.name] = _convert(value, hints[f.name], key)
    return dataclasses.replace(base, **changes)


def _validate_ranges(obj: Any, prefix: str) -> None:
    for f in fields(obj):
        value, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _validate_ranges(value, f"{key}.")
        elif "check" in f.metadata and value is not None:
            predicate, expected = f.metadata["check"]
            if not predicate(value):
                raise ConfigError(f"{key}: invalid value {value!r}; expected {expected}")


def validate_config(cfg: Config) -> None:
    """Check value ranges and consistency between fields.

    Raises:
        ConfigError: Naming the first offending key.
    """
    _validate_ranges(cfg, "")
    for name in ("kfac", "critic_kfac"):
        kfac = getattr(cfg, name)
        if kfac.damping_scheme == "eigen" and kfac.inverse_method != "eigen":
            raise ConfigError(
                f"{name}.damping_scheme: 'eigen' damping needs {name}.inverse_method='eigen' "
                f"(got {kfac.inverse_method!r}); use damping_scheme='tikhonov' with 'inverse'"
            )
    if cfg.run.eval_every and not cfg.run.eval_episodes:
        raise ConfigError(
            f"run.eval_every: evaluating every {cfg.run.eval_every} steps needs "
            "run.eval_episodes >= 1 (got 0); set both, or run.eval_every=0"
        )
    if cfg.run.total_timesteps < cfg.batch_size:
        raise ConfigError(
            f"run.total_timesteps: invalid value {cfg.run.total_timesteps}; expected at least "
            f"one batch (env.num_envs * algo.num_steps = {cfg.batch_size})"
        )


def config_from_dict(data: Mapping[str, Any] | None) -> Config:
    """Build and validate a :class:`Config` from nested plain data (missing keys: defaults)."""
    cfg = _merge(Config(), data or {}, "")
    validate_config(cfg)
    return cfg


def apply_overrides(data: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``'section.key=value'`` overrides to nested plain data; returns a new dict.

    Each value is parsed as YAML plain data (:func:`agents.files.parse_yaml`: ``8`` -> int,
    ``1e-3`` -> str then converted by the field type, ``[64, 64]`` -> list, ``null`` -> None);
    nothing is evaluated.

    Raises:
        ConfigError: For an override without ``=`` or with an empty key part.
    """
    result = _deep_copy(data)
    for item in overrides:
        path, sep, text = item.partition("=")
        parts = path.strip().split(".")
        if not sep or len(parts) < 2 or not all(parts):
            raise ConfigError(
                f"invalid override {item!r}; expected 'section.key=value', e.g. 'env.num_envs=8'"
            )
        try:
            value = parse_yaml(text, f"invalid override {item!r}")
        except BadInputError as err:
            raise ConfigError(str(err)) from None
        node = result
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(f"invalid override {item!r}: {where!r} is not a section")
        node[parts[-1]] = value
    return result


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults), apply overrides, build and validate.

    Args:
        path: YAML file; None: defaults only.
        overrides: ``'section.key=value'`` strings (the command line's ``--set``), applied in
            order after the file; default none.

    Raises:
        ConfigError: Unknown keys (named, with the valid ones listed), values of the wrong type
            or out of range, malformed overrides (an error the file alone causes names it); a
            file that is unreadable, not YAML, or holds a Python tag, a duplicate key or
            something other than a mapping of sections (see :func:`agents.files.read_yaml`).
        agents.errors.MissingInputError: There is no file at ``path``.
    """
    data: Any = {}
    if path is not None:
        sections = ", ".join(f.name for f in fields(Config))
        try:
            data = read_yaml(path, "config", empty={},
                             shape=f"a mapping of sections ({sections})")
        except MissingInputError:
            raise
        except BadInputError as err:
            raise ConfigError(str(err)) from None
    try:
        return config_from_dict(apply_overrides(data, overrides or []))
    except ConfigError as err:
        if path is not None and _file_alone_fails(data, str(err)):
            raise ConfigError(f"{path}: {err}") from None
        raise


def _file_alone_fails(data: Any, message: str) -> bool:
    """Whether the file's data without overrides fails with the same message (then the error
    is the file's, and is reported with its name)."""
    try:
        config_from_dict(data)
    except ConfigError as err:
        return str(err) == message
    return False


FAMILY_CONFIGS = {"atari": "atari.yaml", "mujoco": "mujoco.yaml", "gym": "classic.yaml"}
PIXELS_CONFIG = "mujoco_pixels.yaml"


def family_config_name(kind: str, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """The file in ``configs/`` for an env family (``envs.registry.resolve_kind``):
    ``mujoco_pixels.yaml`` for a MuJoCo env whose ``overrides`` ask for
    ``env.observation=pixels`` (the last such override wins), else ``FAMILY_CONFIGS[kind]``."""
    observation = apply_overrides({}, list(overrides)).get("env", {}).get("observation")
    if kind == "mujoco" and observation == "pixels":
        return PIXELS_CONFIG
    return FAMILY_CONFIGS[kind]


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Nested plain data (lists, not tuples) that ``yaml.safe_dump`` can write."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(cfg))


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (readable back with :func:`load_config`)."""
    # Atomic (a temporary file renamed over the target): a kill leaves the old file or the new.
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
