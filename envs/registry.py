"""Looking up environment ids: which kind they are, what they need installed, clear errors.

ale-py's environments are registered with gymnasium here (``gym.register_envs(ale_py)``) when
ale-py is installed, so ``"ALE/Pong-v5"`` and ``"PongNoFrameskip-v4"`` resolve.
"""

from __future__ import annotations

import difflib
from typing import Literal

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from envs.vec_env import EnvKind

RL_EXTRA_HINT = 'pip install -e ".[rl]"'
ALE_ENTRY_POINT = "ale_py.env:AtariEnv"
MUJOCO_ENTRY_PREFIX = "gymnasium.envs.mujoco"


def ale_available() -> bool:
    """True when ale-py can be imported (its envs are then registered with gymnasium)."""
    try:
        import ale_py
    except ImportError:
        return False
    gym.register_envs(ale_py)
    return True


def _looks_like_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/") or "NoFrameskip" in env_id


def _entry_point_name(spec: EnvSpec) -> str:
    entry = spec.entry_point
    if isinstance(entry, str):
        return entry
    return f"{getattr(entry, '__module__', '')}:{getattr(entry, '__qualname__', '')}"


def close_matches(env_id: str, limit: int = 5) -> list[str]:
    """Registered ids that look like ``env_id`` (case-insensitive difflib ratio >= 0.6)."""
    by_lower = {name.lower(): name for name in gym.registry}
    found = difflib.get_close_matches(env_id.lower(), list(by_lower), n=limit, cutoff=0.6)
    return [by_lower[name] for name in found]


def lookup_spec(env_id: str) -> EnvSpec:
    """The gymnasium spec of ``env_id``.

    Raises:
        ImportError: ``env_id`` is an Atari id and ale-py is not installed.
        ValueError: ``env_id`` is not registered; the message lists close matches.
    """
    has_ale = ale_available()
    if _looks_like_atari(env_id) and not has_ale:
        raise ImportError(f"{env_id!r} is an Atari environment and needs ale-py: {RL_EXTRA_HINT}")
    try:
        return gym.spec(env_id)
    except gym.error.Error as err:
        matches = close_matches(env_id)
        hint = f" Did you mean {', '.join(repr(m) for m in matches)}?" if matches else ""
        if not has_ale:
            hint += f" (Atari ids need ale-py: {RL_EXTRA_HINT}.)"
        raise ValueError(f"Unknown environment id {env_id!r}.{hint}") from err


def detect_kind(spec: EnvSpec) -> EnvKind:
    """``"atari"`` for ale-py image envs, ``"mujoco"`` for gymnasium's MuJoCo envs, else ``"gym"``.

    RAM-observation Atari ids (``obs_type="ram"``) count as ``"gym"``: they are plain vectors.
    """
    entry = _entry_point_name(spec)
    if entry == ALE_ENTRY_POINT:
        return "gym" if spec.kwargs.get("obs_type", "rgb") == "ram" else "atari"
    if entry.startswith(MUJOCO_ENTRY_PREFIX):
        return "mujoco"
    return "gym"


def require_mujoco(env_id: str) -> None:
    """Raises ImportError naming what to install when the ``mujoco`` package is missing."""
    try:
        import mujoco  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f"{env_id!r} is a MuJoCo environment and needs the mujoco package: "
            f'pip install "gymnasium[mujoco]" (or {RL_EXTRA_HINT})'
        ) from err


def resolve_kind(env_id: str, kind: Literal["auto", "atari", "mujoco", "gym"] = "auto") -> EnvKind:
    """Checks ``env_id`` exists and its dependencies are installed, and returns its kind.

    Args:
        env_id: A gymnasium id (``"module:Name-v0"`` imports ``module`` first).
        kind: ``"auto"`` (default) decides from the id's entry point; an explicit kind is
            checked against it where it matters (``"atari"`` needs an ale-py image env).

    Raises:
        ValueError: Unknown id (with close matches), unknown kind, or ``kind="atari"`` for an id
            that is not an ale-py image environment.
        ImportError: ale-py or mujoco missing for an id that needs it.
    """
    if kind not in ("auto", "atari", "mujoco", "gym"):
        raise ValueError(f"kind must be 'auto', 'atari', 'mujoco' or 'gym', got {kind!r}")
    detected = detect_kind(lookup_spec(env_id))
    if detected == "mujoco":
        require_mujoco(env_id)
    if kind == "auto":
        return detected
    if kind == "atari" and detected != "atari":
        raise ValueError(
            f"kind='atari' needs an ale-py image environment (e.g. 'ALE/Pong-v5'); {env_id!r} "
            f"is detected as {detected!r}"
        )
    return kind
