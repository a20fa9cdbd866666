"""Deterministic evaluation of a policy over full episodes (raw, unclipped returns), and
recording one evaluation episode as a video."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.config import Config
from agents.rollout import obs_to_tensor
from envs import VecEnv, make_vec_env
from envs.atari import AtariOptions
from envs.extra_inputs import ExtraInputs
from envs.pixels import PixelOptions
from envs.registry import resolve_kind


def make_env_from_config(
    cfg: Config,
    *,
    num_envs: int | None = None,
    seed: int | None = None,
    training: bool = True,
    render_mode: str | None = None,
) -> VecEnv:
    """Build the vectorized env the config describes (training or evaluation mode), with the
    extra inputs ``policy.prev_obs`` / ``policy.critic_time_scale`` ask for
    (``envs.extra_inputs.ExtraInputs``, above observation normalization).

    ``num_envs`` and ``seed`` default to the config's; ``render_mode`` (default None) is passed
    to ``gym.make`` (``"rgb_array"`` for videos).
    """
    e = cfg.env
    kind = resolve_kind(e.env_id, "auto")
    atari = None
    if kind == "atari":
        atari = AtariOptions(
            frame_skip=e.frame_skip,
            frame_stack=e.frame_stack,
            noop_max=e.noop_max,
            repeat_action_probability=e.repeat_action_probability,
            full_action_space=e.full_action_space,
            episodic_life=e.episodic_life,
            clip_rewards=e.clip_rewards,
        )
        if not training and e.eval_max_frames is not None:
            atari = dataclasses.replace(atari, max_frames_per_episode=e.eval_max_frames)
    env = make_vec_env(
        e.env_id,
        num_envs if num_envs is not None else e.num_envs,
        cfg.run.seed if seed is None else seed,
        kind=kind,
        vectorization=e.vectorization,
        atari=atari,
        normalize_obs=e.normalize_obs,
        normalize_reward=e.normalize_reward,
        gamma=cfg.algo.gamma,
        training=training,
        render_mode=render_mode,
        pixels=pixel_options(cfg),
    )
    p = cfg.policy
    if p.prev_obs or p.critic_time_scale is not None:
        try:
            env = ExtraInputs(env, prev_obs=p.prev_obs, time_scale=p.critic_time_scale)
        except ValueError as err:
            env.close()
            raise ValueError(f"policy.prev_obs / policy.critic_time_scale on {e.env_id!r}: "
                             f"{err}") from None
    return env


EpisodeFn = Callable[[float, int], None]
"""``on_episode(return, length)``: called as an evaluation episode ends."""


def pixel_options(cfg: Config) -> PixelOptions | None:
    """The config's pixel observation settings (``env.observation='pixels'``), else None."""
    e = cfg.env
    if e.observation != "pixels":
        return None
    camera = {"distance": e.pixels_camera_distance, "elevation": e.pixels_camera_elevation,
              "azimuth": e.pixels_camera_azimuth}
    return PixelOptions(size=e.pixels_size, grayscale=e.pixels_grayscale,
                        frame_stack=e.frame_stack, antialias=e.pixels_antialias,
                        shadow_size=e.pixels_shadow_size,
                        camera={k: v for k, v in camera.items() if v is not None})


@torch.no_grad()
def run_episodes(
    env: VecEnv,
    policy: nn.Module,
    episodes: int,
    device: torch.device,
    deterministic: bool = True,
    max_steps: int = 1_000_000,
    on_episode: EpisodeFn | None = None,
    on_step: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``episodes`` episodes on an evaluation env (``training=False``).

    Env ``i`` contributes its first ``ceil``/``floor`` share of the episodes, so short episodes
    are not over-represented. ``on_episode(return, length)`` (default None) is called as each
    counted episode ends, and ``on_step(env_steps)`` (default None) after every vector step,
    e.g. to show progress. Returns ``(returns, lengths)``.
    """
    n = env.num_envs
    wanted = np.array([episodes // n + (i < episodes % n) for i in range(n)])
    got = np.zeros(n, dtype=int)
    returns: list[float] = []
    lengths: list[int] = []
    obs = obs_to_tensor(env.reset(), device)
    for step in range(max_steps):
        if (got >= wanted).all():
            break
        action = policy.act(obs, deterministic=deterministic)
        next_obs, _, terminated, truncated, info = env.step(action.cpu().numpy())
        ended = np.flatnonzero(terminated | truncated)
        finished = zip(ended, info["episode_returns"], info["episode_lengths"], strict=False)
        for i, ret, length in finished:
            if got[i] < wanted[i]:
                returns.append(float(ret))
                lengths.append(int(length))
                got[i] += 1
                if on_episode is not None:
                    on_episode(float(ret), int(length))
        if on_step is not None:
            on_step((step + 1) * n)
        obs = obs_to_tensor(next_obs, device)
    return np.asarray(returns), np.asarray(lengths)


def evaluate(
    policy: nn.Module,
    cfg: Config,
    episodes: int,
    device: torch.device,
    env_state: dict[str, Any] | None = None,
    seed: int | None = None,
    deterministic: bool = True,
    on_episode: EpisodeFn | None = None,
    on_step: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate on fresh envs in evaluation mode, with the training normalization statistics.

    Args:
        policy: the actor-critic.
        cfg: the run's config (env settings).
        episodes: number of full episodes.
        device: where the policy lives.
        env_state: the training env's ``state_dict()`` (observation normalization).
        seed: env seed; default ``cfg.run.seed + 10_000`` (disjoint from training seeds).
        deterministic: act with the distribution's mode (default) instead of sampling.
        on_episode: called with ``(return, length)`` as each episode ends. Default None.
        on_step: called with the env steps so far after every vector step. Default None.
    """
    num_envs = max(1, min(episodes, cfg.env.num_envs, 16))
    seed = cfg.run.seed + 10_000 if seed is None else seed
    env = make_env_from_config(cfg, num_envs=num_envs, seed=seed, training=False)
    try:
        if env_state:
            env.load_state_dict(env_state)
        return run_episodes(env, policy, episodes, device, deterministic, on_episode=on_episode,
                            on_step=on_step)
    finally:
        env.close()


VIDEO_FORMATS = (".gif", ".mp4")


def check_video_writer(path: str | Path) -> None:
    """Raises ValueError / ImportError (naming what to install) if ``path``'s format (``.gif``
    or ``.mp4``) cannot be written here."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_FORMATS:
        raise ValueError(f"video file {path} must end in .gif or .mp4")
    try:
        import imageio  # noqa: F401
    except ImportError as err:
        raise ImportError("writing videos needs imageio: pip install imageio") from err
    if path.suffix.lower() == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "writing MP4 needs imageio's ffmpeg plugin: pip install imageio-ffmpeg "
                "(or write a .gif)"
            ) from err


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".gif":
        imageio.mimsave(path, frames, duration=1000.0 / fps, loop=0)
    else:
        imageio.mimsave(path, frames, fps=fps, macro_block_size=1)


def _gl_backend_works(backend: str) -> bool:
    # In a child process: a failed attempt can leave PyOpenGL bound to the wrong platform.
    probe = "import mujoco.{0} as m; c = m.GLContext(16, 16); c.make_current(); c.free()"
    env = {**os.environ, "MUJOCO_GL": backend}
    env.pop("PYOPENGL_PLATFORM", None)
    try:
        done = subprocess.run([sys.executable, "-c", probe.format(backend)], env=env,
                              capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextlib.contextmanager
def headless_display() -> Iterator[None]:
    """Without a display (no ``DISPLAY`` nor ``WAYLAND_DISPLAY``), keep renderers from probing
    for one: SDL (pygame, which classic-control envs render with) would try Wayland, whose
    client library prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment."
    although off-screen rendering works. Sets ``SDL_VIDEODRIVER=dummy`` unless the user set it,
    for the duration of the block. With a display this does nothing."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or (
            "SDL_VIDEODRIVER" in os.environ):
        yield
        return
    os.environ["SDL_VIDEODRIVER"] = "dummy"
    try:
        yield
    finally:
        os.environ.pop("SDL_VIDEODRIVER", None)


def choose_mujoco_gl() -> str | None:
    """Picks a headless OpenGL backend for MuJoCo rendering: ``MUJOCO_GL`` if set, the
    display's (GLFW) if ``DISPLAY`` is set, else the first of EGL and OSMesa that works here,
    which is then set in ``MUJOCO_GL``. Returns the choice (None: GLFW on the display).

    Raises:
        ImportError: headless, and neither EGL nor OSMesa can create a context.
    """
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    if os.environ.get("DISPLAY"):
        return None
    for backend in ("egl", "osmesa"):
        if _gl_backend_works(backend):
            os.environ["MUJOCO_GL"] = backend
            return backend
    raise ImportError(
        "MuJoCo cannot render without a display here: neither EGL nor OSMesa could create an "
        "OpenGL context. Install one (e.g. apt-get install libegl1 or libosmesa6) or set "
        "MUJOCO_GL to a backend that works"
    )


@torch.no_grad()
def record_video(
    policy: nn.Module,
    cfg: Config,
    path: str | Path,
    device: torch.device,
    env_state: dict[str, Any] | None = None,
    seed: int | None = None,
    deterministic: bool = True,
    max_steps: int = 108_000,
) -> tuple[float, int]:
    """Record one evaluation episode (one env, built like the evaluation env) to a GIF or MP4.

    Args:
        policy: the actor-critic.
        cfg: the run's config (env settings).
        path: ``.gif`` (imageio with Pillow) or ``.mp4`` (needs ``imageio-ffmpeg``).
        device: where the policy lives.
        env_state: the training env's ``state_dict()`` (observation normalization).
        seed: env seed; default ``cfg.run.seed + 10_000`` as for :func:`evaluate`.
        deterministic: act with the distribution's mode (default) instead of sampling.
        max_steps: stop after this many steps if the episode has not ended. Default 108000.

    Returns:
        ``(return, length)`` of the recorded episode (raw return), or ``(nan, max_steps)`` if
        it was cut at ``max_steps``. The video shows every state but the terminal one.

    Raises:
        ImportError: imageio (or, for MP4, imageio-ffmpeg) is missing, the env's renderer
            needs a package that is missing (e.g. pygame for classic control), or MuJoCo
            cannot render on this machine (no EGL or OSMesa).
    """
    path = Path(path)
    check_video_writer(path)
    kind = resolve_kind(cfg.env.env_id, "auto")
    if kind == "mujoco":
        choose_mujoco_gl()
    seed = cfg.run.seed + 10_000 if seed is None else seed
    with headless_display():
        total, length, frames, fps = _record_episode(policy, cfg, device, env_state, seed,
                                                     deterministic, max_steps)
    if kind == "atari":
        fps = 60.0 / cfg.env.frame_skip
    _write_video(path, frames, fps)
    return total, length


def _record_episode(
    policy: nn.Module, cfg: Config, device: torch.device, env_state: dict[str, Any] | None,
    seed: int, deterministic: bool, max_steps: int,
) -> tuple[float, int, list[np.ndarray], float]:
    """``(return, length, frames, the env's frame rate)`` of one episode (see record_video)."""
    env = make_env_from_config(cfg, num_envs=1, seed=seed, training=False,
                               render_mode="rgb_array")
    try:
        if env_state:
            env.load_state_dict(env_state)
        fps = float(env.render_fps or 30)
        obs = obs_to_tensor(env.reset(), device)
        frames = [_render(env, cfg.env.env_id)]
        for _ in range(max_steps):
            action = policy.act(obs, deterministic=deterministic)
            next_obs, _, terminated, truncated, info = env.step(action.cpu().numpy())
            if terminated[0] or truncated[0]:
                total, length = float(info["episode_returns"][0]), int(info["episode_lengths"][0])
                break
            frames.append(_render(env, cfg.env.env_id))
            obs = obs_to_tensor(next_obs, device)
        else:
            total, length = float("nan"), max_steps
    finally:
        env.close()
    return total, length, frames, fps


def _render(env: VecEnv, env_id: str) -> np.ndarray:
    try:
        return env.render()
    except gym.error.DependencyNotInstalled as err:
        raise ImportError(f"rendering {env_id!r} needs a missing package: {err}") from err
