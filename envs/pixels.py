"""MuJoCo envs seen through rendered pixels: low-resolution frames, stacked, uint8 channel-first.

``PixelObservation`` replaces a gymnasium MuJoCo env's state vector by the last
``frame_stack`` rendered frames, concatenated on the channel axis: shape
``(frame_stack * C, size, size)`` uint8 with ``C = 3`` (RGB) or ``1`` (grayscale), oldest frame
first, as Atari's ``(4, 84, 84)`` stacks. On every reset the stack is filled with copies of the
episode's first frame, so no frame of the previous episode survives into the next one.

Rendering is headless: :func:`select_gl_backend` picks MuJoCo's EGL backend, else OSMesa, tried
in a subprocess once per process, and sets ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``) for this
process and the workers it starts; a ``MUJOCO_GL`` the user set is kept (and checked). If no
backend works, :class:`RenderingUnavailable` says what to install.

Frames are a function of the MuJoCo state only, so env snapshots (``envs.env_state``: MuJoCo's
integration state plus the wrapper's frame stack) resume exactly: the camera is set up when the
env is built (not at the first render, where gymnasium would aim it at the first episode's
geometry), and tracking cameras follow a body of the current state.

Speed: with software OpenGL (Mesa's llvmpipe, what EGL runs on a machine without a GPU),
MuJoCo's default 4x multisampling halves Reacher's frame rate, so ``antialias=False`` (the
default) renders one sample per pixel; MuJoCo's 4096x4096 shadow map costs HalfCheetah and
Walker2d 6-7x their frame time (``shadow_size``) (docs/benchmarks.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

import gymnasium as gym
import numpy as np
from gymnasium import spaces

GLBackend = Literal["egl", "osmesa"]
BACKENDS: tuple[GLBackend, ...] = ("egl", "osmesa")
INSTALL_HINT = {
    "egl": "EGL: the Debian/Ubuntu package libegl1 (with Mesa, libegl-mesa0, or a GPU driver)",
    "osmesa": "OSMesa: the Debian/Ubuntu package libosmesa6",
}
# ITU-R BT.601 luma, as OpenCV's and PIL's RGB -> L conversions.
LUMA = np.array([0.299, 0.587, 0.114])

# Cameras for pixel learning where the env's own default view loses the task at low resolution
# (merged into the env's default camera config; the user's settings win). Reacher's default view
# is oblique and far: at 42x42 its arm (a thin capsule) falls between pixel centres without
# antialiasing. Top-down at distance 0.6 the arena's +-0.21 reach fills the frame.
CAMERA_PRESETS: dict[str, dict[str, Any]] = {
    "Reacher": {"distance": 0.6, "elevation": -90.0, "azimuth": 90.0,
                "lookat": np.zeros(3), "trackbodyid": -1},
}


class RenderingUnavailable(ImportError):
    """No headless OpenGL backend works here; the message says what to install."""


@dataclass(frozen=True)
class PixelOptions:
    """How a MuJoCo env is rendered into observations.

    Attributes:
        size: Height and width of the frames in pixels. Default 42.
        grayscale: One luma channel per frame instead of RGB. Default False.
        frame_stack: Number of stacked frames (>= 1). Default 3.
        antialias: Render with MuJoCo's 4x multisampling (about 2x slower on a CPU). Default False.
        shadow_size: Side of MuJoCo's shadow map; None (default) keeps the model's (4096).
            With software OpenGL a 4096 map costs HalfCheetah and Walker2d 6-7x their frame
            time; 512 looks the same at 42x42 (docs/pixels.md). Changes the frames.
        camera: Settings of the default camera (``distance``, ``elevation``, ``azimuth``,
            ``lookat``, ``trackbodyid``), merged over the env's own and :data:`CAMERA_PRESETS`.
            Without a ``trackbodyid`` anywhere, a robot on a free or slide root joint (Ant,
            HalfCheetah, Hopper, ...) is tracked (body 1). Default: none.
    """

    size: int = 42
    grayscale: bool = False
    frame_stack: int = 3
    antialias: bool = False
    shadow_size: int | None = None
    camera: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"pixel frames must be at least 8x8, got size {self.size}")
        if self.frame_stack < 1:
            raise ValueError(f"frame_stack must be >= 1, got {self.frame_stack}")
        if self.shadow_size is not None and self.shadow_size < 1:
            raise ValueError(f"shadow_size must be None or >= 1, got {self.shadow_size}")

    @property
    def channels(self) -> int:
        """Channels of one frame: 1 (grayscale) or 3 (RGB)."""
        return 1 if self.grayscale else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        """Observation shape ``(frame_stack * channels, size, size)``."""
        return (self.frame_stack * self.channels, self.size, self.size)


_PROBE = """
import os, sys
backend = sys.argv[1]
os.environ["MUJOCO_GL"] = backend
os.environ["PYOPENGL_PLATFORM"] = backend
import mujoco
if backend == "egl":
    from mujoco.egl import GLContext
else:
    from mujoco.osmesa import GLContext
ctx = GLContext(8, 8)
ctx.make_current()
ctx.free()
"""

_selected: dict[str, str] = {}


def _probe(backend: str) -> str | None:
    """None if an 8x8 ``backend`` context can be made in a fresh process, else why not."""
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, backend], capture_output=True,
                              text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "timed out"
    if done.returncode == 0:
        return None
    lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {done.returncode}"


def select_gl_backend() -> str:
    """The headless OpenGL backend for MuJoCo, set in ``MUJOCO_GL`` for this process.

    A ``MUJOCO_GL`` already set is kept and checked; otherwise EGL, then OSMesa. The result is
    cached for the process.

    Raises:
        RenderingUnavailable: The user's backend, or neither EGL nor OSMesa, works.
    """
    user = os.environ.get("MUJOCO_GL")
    key = user or ""
    if key in _selected:
        return _selected[key]
    if user:
        why = _probe(user)
        if why is not None:
            hint = INSTALL_HINT.get(user, "one of egl, osmesa")
            raise RenderingUnavailable(
                f"MUJOCO_GL={user!r} cannot render here ({why}); install {hint}, or unset "
                "MUJOCO_GL to try EGL then OSMesa"
            )
        _selected[key] = user
        return user
    reasons = []
    for backend in BACKENDS:
        why = _probe(backend)
        if why is None:
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            _selected[key] = backend
            return backend
        reasons.append(f"{backend}: {why}")
    raise RenderingUnavailable(
        "pixel observations need headless OpenGL rendering and neither MuJoCo backend works "
        f"({'; '.join(reasons)}); install {INSTALL_HINT['egl']}, or {INSTALL_HINT['osmesa']}"
    )


def camera_config(env_id: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The preset for ``env_id`` (:data:`CAMERA_PRESETS`, matched on the id's name before
    ``-v``), with ``overrides`` on top; empty when neither applies."""
    name = env_id.split("/")[-1].split("-v")[0]
    return {**CAMERA_PRESETS.get(name, {}), **(overrides or {})}


def to_frame(rgb: np.ndarray, grayscale: bool) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> channel-first ``(3, H, W)``, or ``(1, H, W)`` luma rounded."""
    if grayscale:
        return np.rint(rgb @ LUMA).clip(0, 255).astype(np.uint8)[None]
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


class PixelObservation(gym.Wrapper):
    """Replaces a MuJoCo env's observation by a stack of its rendered frames.

    The wrapped env must have been made with ``render_mode="rgb_array"`` and ``width = height =
    options.size`` (:func:`make_pixel_env` does it). Rewards, terminations and the info dict are
    the env's.

    Args:
        env: A gymnasium MuJoCo env.
        options: Frame size, color, stack depth, antialiasing and camera.
        env_id: For the camera preset and messages. Default: the env spec's id.
    """

    snapshot_fields = ("frames",)  # the stack; the rest is a function of the MuJoCo state

    def __init__(self, env: gym.Env, options: PixelOptions, env_id: str | None = None) -> None:
        super().__init__(env)
        from gymnasium.envs.mujoco.mujoco_env import MujocoEnv

        core = env.unwrapped
        if not isinstance(core, MujocoEnv):
            raise ValueError(f"PixelObservation needs a gymnasium MuJoCo env, got {type(core)}")
        if env.render_mode != "rgb_array" or (core.width, core.height) != (options.size,) * 2:
            raise ValueError("make the env with render_mode='rgb_array', width=height=size")
        self.options = options
        self.observation_space = spaces.Box(0, 255, options.shape, np.uint8)
        self.frames = np.zeros(options.shape, np.uint8)
        self._setup_camera(camera_config(env_id or env.spec.id, options.camera))

    def _setup_camera(self, config: dict[str, Any]) -> None:
        """Builds the renderer now, so that its camera does not depend on the first episode."""
        import mujoco

        core = self.env.unwrapped
        core.model.vis.quality.offsamples = 4 if self.options.antialias else 0
        if self.options.shadow_size is not None:
            core.model.vis.quality.shadowsize = self.options.shadow_size
        renderer = core.mujoco_renderer
        renderer.default_cam_config = {**(renderer.default_cam_config or {}), **config}
        core.render()  # creates the GL context and the camera with the merged config
        self._viewer = renderer.viewer
        cam = renderer.viewer.cam
        track = renderer.default_cam_config.get("trackbodyid")
        if track is None and _moving_root(core.model):
            track = 1  # a runner (HalfCheetah's default view has no tracking: it would leave)
        if renderer.camera_id == -1 and track is not None and track > 0:
            # gymnasium renders its default camera as a free one, which ignores trackbodyid.
            # Track the body instead (a render leaves the camera type alone when camera_id is
            # None); the view then depends on the current state only.
            cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
            cam.trackbodyid = int(track)
            renderer.camera_id = None

    def _frame(self) -> np.ndarray:
        # Each env has its own GL context and gymnasium makes it current only when it is
        # created: with several envs in one process (a sync vector env), rendering would draw
        # in the last-created context, which is right only when every env has the same model.
        self._viewer.make_context_current()
        return to_frame(self.env.render(), self.options.grayscale)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Resets the env and fills the stack with its first frame."""
        _, info = self.env.reset(**kwargs)
        self.frames = np.tile(self._frame(), (self.options.frame_stack, 1, 1))
        return self.frames.copy(), info

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        """Steps the env and pushes its new frame (the oldest leaves the stack)."""
        _, reward, terminated, truncated, info = self.env.step(action)
        c = self.options.channels
        self.frames = np.concatenate([self.frames[c:], self._frame()])
        return self.frames.copy(), reward, terminated, truncated, info


def _moving_root(model: Any) -> bool:
    """Whether body 1 hangs on a free or slide joint (a robot that moves through the world)."""
    import mujoco

    moving = (int(mujoco.mjtJoint.mjJNT_FREE), int(mujoco.mjtJoint.mjJNT_SLIDE))
    return model.njnt > 0 and model.jnt_bodyid[0] == 1 and int(model.jnt_type[0]) in moving


def make_pixel_env(env_id: str, options: PixelOptions) -> gym.Env:
    """``gym.make(env_id)`` rendered at ``options.size`` and wrapped in :class:`PixelObservation`.

    Call :func:`select_gl_backend` first in the process that starts the envs (async workers
    inherit its ``MUJOCO_GL``).
    """
    select_gl_backend()
    env = gym.make(env_id, render_mode="rgb_array", width=options.size, height=options.size)
    try:
        return PixelObservation(env, options, env_id)
    except BaseException:
        env.close()
        raise


def check_pixel_env(env_id: str, kind: str) -> None:
    """Raises ValueError unless ``env_id`` (of ``kind``) can be observed through pixels."""
    if kind != "mujoco":
        raise ValueError(
            f"env.observation='pixels' needs a gymnasium MuJoCo env (e.g. 'Reacher-v5', "
            f"'HalfCheetah-v5'); {env_id!r} is a {kind!r} env (Atari envs are pixels already; "
            "use env.observation='state' for the others)"
        )
