"""Environment builders: Atari (ale-py), MuJoCo and other gymnasium envs, normalization.

``make_vec_env`` is the entry point; ``envs.vec_env`` documents the step conventions.
"""

from __future__ import annotations

from envs.atari import AtariOptions
from envs.episodes import EpisodeStats
from envs.make import make_vec_env
from envs.normalize import RunningMeanStd, VecNormalize
from envs.pixels import PixelOptions, RenderingUnavailable
from envs.registry import resolve_kind
from envs.snapshot import SnapshotUnsupported
from envs.vec_env import EnvKind, VecEnv, VecEnvSpec

__all__ = [
    "AtariOptions",
    "EnvKind",
    "EpisodeStats",
    "PixelOptions",
    "RenderingUnavailable",
    "RunningMeanStd",
    "SnapshotUnsupported",
    "VecEnv",
    "VecEnvSpec",
    "VecNormalize",
    "make_vec_env",
    "resolve_kind",
]
