"""``make_vec_env``: one entry point for Atari, MuJoCo and other gymnasium environments."""

from __future__ import annotations

from typing import Literal

from envs.atari import AtariOptions, make_atari_vec_env
from envs.gym_envs import Vectorization, make_gym_vec_env
from envs.normalize import VecNormalize
from envs.pixels import PixelOptions, check_pixel_env, select_gl_backend
from envs.registry import resolve_kind
from envs.vec_env import VecEnv, VecEnvSpec


def make_vec_env(
    env_id: str,
    num_envs: int,
    seed: int,
    *,
    kind: Literal["auto", "atari", "mujoco", "gym"] = "auto",
    vectorization: Vectorization = "sync",
    atari: AtariOptions | None = None,
    normalize_obs: bool | None = None,
    normalize_reward: bool = False,
    gamma: float = 0.99,
    training: bool = True,
    render_mode: str | None = None,
    pixels: PixelOptions | None = None,
) -> VecEnv:
    """Builds ``num_envs`` copies of ``env_id`` behind the ``VecEnv`` interface.

    Call ``reset()`` before stepping; see ``envs.vec_env`` for the step conventions
    (same-step autoreset, ``info["final_obs"]``, raw full-game episode statistics).

    Args:
        env_id: A gymnasium id: ale-py (``"ALE/Pong-v5"``, ``"BreakoutNoFrameskip-v4"``),
            MuJoCo (``"HalfCheetah-v5"``) or any other with a Box or Discrete action space.
        num_envs: Number of sub-environments (>= 1).
        seed: Sub-environment ``i`` is seeded with ``seed + i`` on the first ``reset()``.
        kind: ``"auto"`` (default) detects the kind from the id's entry point.
        vectorization: ``"sync"`` (default, one process) or ``"async"`` (a process per env).
            Atari's native backend runs its own C++ threads and ignores this.
        atari: Atari settings; default ``AtariOptions()``. Only for Atari ids.
        normalize_obs: Running observation normalization. Default None: True for MuJoCo,
            False otherwise (Atari pixels are scaled by the policy instead).
        normalize_reward: Scale rewards by the running std of discounted returns. Default False.
        gamma: Discount of those returns. Default 0.99.
        training: Default True. False freezes normalization statistics and turns off Atari's
            episodic life and reward clipping (for evaluation); give such an env the training
            env's statistics with ``eval_env.load_state_dict(train_env.state_dict())``.
        render_mode: ``gym.make``'s render mode; ``"rgb_array"`` lets ``env.render()`` return
            the first sub-environment's frame (Atari then uses the gymnasium backend). Default
            None.
        pixels: Observe a MuJoCo env through rendered frames instead of its state: uint8
            ``(frame_stack * channels, size, size)`` (``envs.pixels``). Default None (state).

    Returns:
        The env; ``env.spec`` is a ``VecEnvSpec`` describing it.

    Raises:
        ValueError: Unknown id (with close matches), unsupported spaces or arguments.
        ImportError: ale-py or mujoco missing for an id that needs it;
            ``envs.pixels.RenderingUnavailable`` when pixels are asked and nothing renders.
        FileNotFoundError: The Atari ROM is not installed.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    if vectorization not in ("sync", "async"):
        raise ValueError(f"vectorization must be 'sync' or 'async', got {vectorization!r}")
    resolved = resolve_kind(env_id, kind)
    if resolved != "atari" and atari is not None:
        raise ValueError(f"AtariOptions were given but {env_id!r} is a {resolved!r} environment")
    if resolved == "atari" and normalize_obs:
        raise ValueError("normalize_obs is not supported for Atari: the policy scales pixels")
    if pixels is not None:
        check_pixel_env(env_id, resolved)
        if normalize_obs:
            raise ValueError("normalize_obs is not supported for pixel observations: the "
                             "policy scales pixels")
        select_gl_backend()  # here, so that async workers inherit MUJOCO_GL
    if normalize_obs is None:
        normalize_obs = resolved == "mujoco" and pixels is None

    if resolved == "atari":
        venv, backend = make_atari_vec_env(
            env_id, num_envs, seed, atari, vectorization=vectorization, training=training,
            render_mode=render_mode,
        )
    else:
        is_mujoco = resolved == "mujoco"
        venv = make_gym_vec_env(
            env_id, num_envs, seed, vectorization, is_mujoco=is_mujoco, render_mode=render_mode,
            pixels=pixels,
        )
        backend = vectorization
    if normalize_obs or normalize_reward:
        try:
            venv = VecNormalize(
                venv,
                normalize_obs=normalize_obs,
                normalize_reward=normalize_reward,
                gamma=gamma,
                training=training,
            )
        except ValueError:
            venv.close()
            raise
    venv.spec = VecEnvSpec(
        env_id=env_id,
        kind=resolved,
        num_envs=num_envs,
        seed=seed,
        backend=backend,
        normalize_obs=normalize_obs,
        normalize_reward=normalize_reward,
        training=training,
        observation="state" if pixels is None else "pixels",
    )
    return venv
