"""Atari (ale-py): the native threaded vector env, a gymnasium fallback, training transforms.

Preprocessing follows the ACKTR paper (Wu et al. 2017, which follows Mnih et al. 2015): frame
skip 4 with max-pooling of the last two frames, grayscale 84x84, a stack of 4, up to 30 no-op
actions on reset, no sticky actions, minimal action set; for training only, a life loss ends
the (learner's) episode and rewards are clipped to their sign. Observations are uint8
``(num_envs, 4, 84, 84)``.

Episodic life is done here, not by ale-py: ale-py's ``episodic_life=True`` restarts the whole
game on a life loss, so later lives would never be played and full-game scores could not be
reported. Instead the game runs on, and a drop in ``info["lives"]`` is reported as
``terminated`` (Mnih et al. 2015's convention). Unlike baselines' ``FireResetEnv``, FIRE is
pressed only after a full game reset, not after each life loss; the agent learns to serve.

Both backends snapshot exactly (``VecEnv.snapshot``): the native one starts every game from its
own seed and replays the running games (``envs.atari_native``), the gymnasium one clones the ALE
state with its RNG (``envs.env_state``).
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from envs.atari_native import SeededGames
from envs.gym_adapter import GymnasiumVecEnv
from envs.gym_envs import Vectorization, vectorize
from envs.registry import RL_EXTRA_HINT, lookup_spec
from envs.snapshot import SnapshotWrapper, check_type
from envs.vec_env import StepResult, VecEnv, VecEnvWrapper


@dataclass(frozen=True)
class AtariOptions:
    """Atari preprocessing and backend settings (defaults: ACKTR paper / Mnih et al. 2015).

    Attributes:
        backend: ``"native"`` (ale-py's threaded C++ ``AtariVectorEnv``), ``"gymnasium"``
            (gymnasium vector env of ``AtariPreprocessing`` + ``FrameStackObservation``) or
            ``"auto"`` (default: native when this ale-py has it, else gymnasium with a warning).
        frame_skip: Emulator frames per agent step; the last two are max-pooled. Default 4.
        frame_stack: Number of stacked frames in an observation. Default 4.
        screen_size: Height and width of the grayscale frames. Default 84.
        noop_max: Up to this many no-op actions after a reset. Default 30.
        repeat_action_probability: Sticky-action probability; 0.0 (default) as in the paper.
        full_action_space: Use all 18 actions instead of the game's minimal set. Default False.
        fire_reset: Press FIRE after a reset in games that need it to start. Default True.
        episodic_life: In training, report a life loss as ``terminated``. Default True.
        clip_rewards: In training, clip rewards to {-1, 0, 1} (reported returns stay raw).
            Default True.
        max_frames_per_episode: Emulator frames before truncation; 108000 (default) is 30
            minutes at 60 Hz, i.e. 27000 agent steps.
        num_threads: Worker threads of the native backend; 0 (default) lets ale-py choose.
    """

    backend: Literal["auto", "native", "gymnasium"] = "auto"
    frame_skip: int = 4
    frame_stack: int = 4
    screen_size: int = 84
    noop_max: int = 30
    repeat_action_probability: float = 0.0
    full_action_space: bool = False
    fire_reset: bool = True
    episodic_life: bool = True
    clip_rewards: bool = True
    max_frames_per_episode: int = 108_000
    num_threads: int = 0


def _import_ale():
    try:
        import ale_py
    except ImportError as err:
        raise ImportError(f"Atari environments need ale-py: {RL_EXTRA_HINT}") from err
    gym.register_envs(ale_py)
    return ale_py


def _game_name(env_id: str) -> str:
    """The snake_case ROM name (``"pong"``) of an ale-py id, checking the ROM is installed."""
    ale_py = _import_ale()
    spec = lookup_spec(env_id)
    game = spec.kwargs.get("game")
    if game is None:
        raise ValueError(f"{env_id!r} is not an ale-py Atari environment (no 'game' in its spec)")
    from ale_py import roms

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ale-py warns before returning None
        rom_path = roms.get_rom_path(game)
    if rom_path is None:
        raise FileNotFoundError(
            f"The ROM {game!r} for {env_id!r} is not installed in ale-py {ale_py.__version__} "
            f"(ale-py >= 0.9 ships its ROMs; reinstall it: {RL_EXTRA_HINT})"
        )
    return game


def native_backend_available() -> bool:
    """True when ale-py's ``AtariVectorEnv`` has same-step autoreset (0.12 has; 0.11 has not)."""
    try:
        from ale_py.vector_env import AtariVectorEnv
    except ImportError:
        return False
    return "autoreset_mode" in inspect.signature(AtariVectorEnv.__init__).parameters


def _make_native(game: str, num_envs: int, options: AtariOptions) -> gym.vector.VectorEnv:
    from ale_py.vector_env import AtariVectorEnv

    # Clipping and episodic life stay off here: EpisodicLifeClipReward does them so that
    # the reported returns are raw full-game scores.
    return AtariVectorEnv(
        game,
        num_envs,
        num_threads=options.num_threads,
        max_num_frames_per_episode=options.max_frames_per_episode,
        repeat_action_probability=options.repeat_action_probability,
        full_action_space=options.full_action_space,
        autoreset_mode=AutoresetMode.SAME_STEP,
        img_height=options.screen_size,
        img_width=options.screen_size,
        grayscale=True,
        stack_num=options.frame_stack,
        frameskip=options.frame_skip,
        maxpool=True,
        noop_max=options.noop_max,
        episodic_life=False,
        life_loss_info=False,
        reward_clipping=False,
        use_fire_reset=options.fire_reset,
    )


def gymnasium_backend_available() -> bool:
    """True when OpenCV, which ``AtariPreprocessing`` resizes frames with, is installed."""
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


class FireOnReset(gym.Wrapper):
    """Presses FIRE once after each reset (games such as Breakout wait for it to start).

    Args:
        env: An Atari env whose action meanings include ``"FIRE"``.
    """

    snapshot_fields = ()  # stateless between steps (see ``envs.env_state``)

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._fire = env.unwrapped.get_action_meanings().index("FIRE")

    def reset(self, **kwargs: Any):
        """Resets, then steps FIRE; resets again (unseeded) if that ended the episode."""
        self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self.env.step(self._fire)
        if terminated or truncated:
            obs, info = self.env.reset()
        return obs, info


def make_single_atari_env(
    env_id: str, options: AtariOptions, render_mode: str | None = None
) -> gym.Env:
    """One preprocessed Atari env for the gymnasium backend (picklable via ``partial``), in a
    ``SnapshotWrapper``; ``render_mode`` (default None) is passed to ``gym.make``."""
    _import_ale()
    env = gym.make(
        env_id,
        render_mode=render_mode,
        frameskip=1,
        repeat_action_probability=options.repeat_action_probability,
        full_action_space=options.full_action_space,
        max_num_frames_per_episode=options.max_frames_per_episode,
    )
    env = gym.wrappers.AtariPreprocessing(
        env,
        noop_max=options.noop_max,
        frame_skip=options.frame_skip,
        screen_size=options.screen_size,
        terminal_on_life_loss=False,
        grayscale_obs=True,
    )
    if options.fire_reset and "FIRE" in env.unwrapped.get_action_meanings():
        env = FireOnReset(env)
    return SnapshotWrapper(gym.wrappers.FrameStackObservation(env, options.frame_stack))


class EpisodicLifeClipReward(VecEnvWrapper):
    """Training transforms on an Atari ``VecEnv``: life loss -> terminated, reward -> sign.

    The wrapped env's episode statistics are untouched (raw rewards, full games). A life loss
    is a drop in ``info["lives"]`` to a value above 0 on a step where the game did not end
    (some games show 0 lives for a few frames before the game over). The game runs on, so
    for those envs ``obs`` and ``final_obs`` are the same frame stack. Lives are first read on
    the step after a ``reset()`` (no game can lose a life on its first step after the no-op
    and FIRE start).

    Args:
        venv: An Atari env whose step info has ``"lives"``.
        episodic_life: Report life losses as ``terminated``.
        clip_rewards: Return ``sign(reward)``.
    """

    def __init__(self, venv: VecEnv, episodic_life: bool, clip_rewards: bool) -> None:
        self.venv = venv
        self.episodic_life = episodic_life
        self.clip_rewards = clip_rewards
        self.num_envs = venv.num_envs
        self.observation_space = venv.observation_space
        self.action_space = venv.action_space
        self.render_fps = getattr(venv, "render_fps", None)
        self._lives: np.ndarray | None = None

    def reset(self, seed: int | None = None) -> np.ndarray:
        """See ``VecEnv.reset``; lives are known again after the first step."""
        self._lives = None
        return self.venv.reset(seed)

    def step(self, actions: np.ndarray) -> StepResult:
        """See ``VecEnv.step``."""
        obs, reward, terminated, truncated, info = self.venv.step(actions)
        lives = info["lives"]
        if self.episodic_life and self._lives is not None:
            life_lost = (lives < self._lives) & (lives > 0) & ~(terminated | truncated)
            terminated = terminated | life_lost
        self._lives = lives
        if self.clip_rewards:
            reward = np.sign(reward).astype(np.float32)
        return obs, reward, terminated, truncated, info




    def snapshot(self) -> dict[str, Any]:
        """See ``VecEnv.snapshot``: the wrapped env's and the last lives seen."""
        lives = None if self._lives is None else torch.from_numpy(np.array(self._lives))
        return {"type": "EpisodicLifeClipReward", "inner": self.venv.snapshot(), "lives": lives}

    def restore(self, state: dict[str, Any]) -> None:
        """See ``VecEnv.restore``."""
        check_type(state, "EpisodicLifeClipReward")
        self.venv.restore(state["inner"])
        lives = state["lives"]
        self._lives = None if lives is None else np.asarray(lives, dtype=np.int32).copy()


def make_atari_vec_env(
    env_id: str,
    num_envs: int,
    seed: int,
    options: AtariOptions | None = None,
    *,
    vectorization: Vectorization = "sync",
    training: bool = True,
    render_mode: str | None = None,
) -> tuple[VecEnv, Literal["ale_native", "sync", "async"]]:
    """Builds a vectorized Atari env.

    Args:
        env_id: An ale-py id, e.g. ``"ALE/Pong-v5"`` or ``"PongNoFrameskip-v4"``; its own
            frameskip and sticky-action settings are replaced by ``options``.
        num_envs: Number of games.
        seed: Game ``i`` is seeded with ``seed + i`` on the first reset.
        options: Preprocessing and backend; defaults to ``AtariOptions()``.
        vectorization: ``"sync"`` (default) or ``"async"``, for the gymnasium backend only.
        training: Apply ``options.episodic_life`` and ``options.clip_rewards``. Default True.
        render_mode: ``gym.make``'s render mode (e.g. ``"rgb_array"`` for videos); needs the
            gymnasium backend, which ``backend="auto"`` then picks. Default None.

    Returns:
        The env and the backend used (``"ale_native"``, ``"sync"`` or ``"async"``).
    """
    options = options or AtariOptions()
    game = _game_name(env_id)
    backend = options.backend
    if render_mode is not None and backend == "native":
        raise ValueError("ale-py's native vector env cannot render; use backend='gymnasium'")
    if backend == "auto" and render_mode is not None:
        backend = "gymnasium"
    if backend == "auto":
        backend = "native" if native_backend_available() else "gymnasium"
        if backend == "gymnasium":
            warnings.warn(
                "this ale-py has no AtariVectorEnv with same-step autoreset (ale-py >= 0.12 "
                "has); falling back to gymnasium's slower vector env",
                stacklevel=2,
            )
    if backend == "native":
        if not native_backend_available():
            raise ImportError(
                "AtariOptions.backend='native' needs an ale-py whose AtariVectorEnv has "
                f"same-step autoreset (ale-py >= 0.12): {RL_EXTRA_HINT}"
            )
        native = GymnasiumVecEnv(_make_native(game, num_envs, options), env_id, seed)
        venv = SeededGames(native, seed)
        used = "ale_native"
    elif backend == "gymnasium":
        if not gymnasium_backend_available():
            raise ImportError(
                "The gymnasium Atari backend needs OpenCV for AtariPreprocessing: "
                "pip install opencv-python-headless"
            )
        env_fn = partial(make_single_atari_env, env_id, options, render_mode)
        venv = GymnasiumVecEnv(vectorize([env_fn] * num_envs, vectorization), env_id, seed)
        used = vectorization
    else:
        raise ValueError(
            f"AtariOptions.backend must be 'auto', 'native' or 'gymnasium', got {backend!r}"
        )
    if training and (options.episodic_life or options.clip_rewards):
        venv = EpisodicLifeClipReward(venv, options.episodic_life, options.clip_rewards)
    return venv, used
