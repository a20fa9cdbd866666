"""MuJoCo through pixels: frames, stacking, seeding, snapshots, backend choice, clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco")

import envs.pixels as pixels  # noqa: E402
from envs import PixelOptions, RenderingUnavailable, make_vec_env  # noqa: E402
from envs.pixels import LUMA, make_pixel_env, select_gl_backend, to_frame  # noqa: E402

ENV_ID = "Reacher-v5"  # 50-step episodes, 2-D actions
SMALL = PixelOptions(size=16, frame_stack=3)


@pytest.fixture(scope="module")
def backend() -> str:
    """The headless backend, or a skip where this machine renders nothing."""
    try:
        return select_gl_backend()
    except RenderingUnavailable as err:
        pytest.skip(str(err))


def _actions(steps: int, num_envs: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, size=(steps, num_envs, 2))


def test_observations_are_stacked_uint8_frames_channel_first(backend):
    with make_vec_env(ENV_ID, 2, seed=0, pixels=SMALL) as env:
        assert env.spec.observation == "pixels" and not env.spec.normalize_obs
        space = env.observation_space
        assert space.shape == (9, 16, 16) and space.dtype == np.uint8
        assert (space.low == 0).all() and (space.high == 255).all()
        obs = env.reset()
        assert obs.shape == (2, 9, 16, 16) and obs.dtype == np.uint8
        assert obs.std() > 5  # an image, not a constant
        # after a reset every frame of the stack is the first frame
        np.testing.assert_array_equal(obs[:, 0:3], obs[:, 6:9])
        previous = obs
        for a in _actions(3, 2):
            obs, reward, _, _, info = env.step(a)
            assert obs.dtype == np.uint8 and reward.dtype == np.float32
            np.testing.assert_array_equal(obs[:, 0:6], previous[:, 3:9])  # oldest frame left
            previous = obs
        assert info["final_obs"].dtype == np.uint8 and info["final_obs"].shape == obs.shape


def test_grayscale_is_the_luma_of_the_rgb_frame(backend):
    rgb = np.random.default_rng(0).integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    gray = to_frame(rgb, grayscale=True)
    assert gray.shape == (1, 4, 5) and gray.dtype == np.uint8
    expected = np.rint(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114)
    np.testing.assert_array_equal(gray[0], expected.astype(np.uint8))
    np.testing.assert_array_equal(to_frame(rgb, grayscale=False), rgb.transpose(2, 0, 1))
    with make_vec_env(ENV_ID, 1, seed=0, pixels=PixelOptions(size=16, grayscale=True,
                                                             frame_stack=4)) as env:
        assert env.reset().shape == (1, 4, 16, 16)
    assert np.isclose(LUMA.sum(), 1.0)


def test_stack_restarts_at_an_episode_boundary_without_old_frames(backend):
    with make_vec_env(ENV_ID, 1, seed=3, pixels=SMALL) as env:
        env.reset()
        for t, a in enumerate(_actions(50, 1), start=1):
            obs, _, terminated, truncated, info = env.step(a)
            assert not terminated[0] and truncated[0] == (t == 50)
            if t == 49:
                before = obs
        final = info["final_obs"][0]
        # the ended episode's last stack: its last three frames, moving on from step 49
        np.testing.assert_array_equal(final[0:6], before[0, 3:9])
        assert not np.array_equal(final[0:3], final[6:9])
        # the new episode's stack: its first frame three times, none of the old frames
        first = obs[0, 0:3]
        np.testing.assert_array_equal(obs[0, 3:6], first)
        np.testing.assert_array_equal(obs[0, 6:9], first)
        for k in range(3):
            assert not np.array_equal(first, final[3 * k:3 * k + 3])


def _trajectory(seed: int, steps: int = 12) -> list[np.ndarray]:
    with make_vec_env(ENV_ID, 2, seed=seed, pixels=SMALL) as env:
        out = [env.reset()]
        for a in _actions(steps, 2):
            obs, reward, *_ = env.step(a)
            out += [obs, reward]
    return out


def test_seeded_runs_are_identical_and_seeds_differ(backend):
    first, second = _trajectory(5), _trajectory(5)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], _trajectory(6, steps=0)[0])


def test_the_frame_follows_the_mujoco_state(backend):
    import mujoco

    env = make_pixel_env(ENV_ID, PixelOptions(size=24, frame_stack=1))
    try:
        env.reset(seed=0)
        core = env.unwrapped
        before = env.render().copy()
        qpos = core.data.qpos.copy()
        core.data.qpos[0] += 1.0  # swing the arm's shoulder by a radian
        mujoco.mj_forward(core.model, core.data)
        moved = env.render().copy()
        changed = np.any(moved != before, axis=-1).sum()
        assert changed >= 10, f"only {changed} pixels changed"
        core.data.qpos[:] = qpos
        mujoco.mj_forward(core.model, core.data)
        np.testing.assert_array_equal(env.render(), before)  # a function of the state only
    finally:
        env.close()


def _through_checkpoint(snapshot: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(snapshot, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_snapshot_restores_physics_and_frame_stack_exactly(backend):
    actions = _actions(60, 2, seed=1)  # crosses the 50-step episode end
    with make_vec_env(ENV_ID, 2, seed=0, pixels=SMALL) as env:
        env.reset()
        for a in actions[:7]:
            env.step(a)
        snapshot = _through_checkpoint(env.snapshot())
        expected = [env.step(a) for a in actions[7:]]
    with make_vec_env(ENV_ID, 2, seed=99, pixels=SMALL) as fresh:
        fresh.restore(snapshot)
        for a, (obs, reward, terminated, truncated, info) in zip(actions[7:], expected,
                                                                 strict=True):
            o, r, te, tr, inf = fresh.step(a)
            np.testing.assert_array_equal(o, obs)
            np.testing.assert_array_equal(r, reward)
            np.testing.assert_array_equal(te | tr, terminated | truncated)
            np.testing.assert_array_equal(inf["final_obs"], info["final_obs"])


@pytest.mark.filterwarnings("ignore:MuJoCo.*settotalmass:RuntimeWarning")
def test_a_tracking_camera_follows_a_runner(backend):
    import mujoco

    env = make_pixel_env("HalfCheetah-v5", SMALL)
    try:
        env.reset(seed=0)
        core = env.unwrapped
        cam = core.mujoco_renderer.viewer.cam
        assert cam.type == mujoco.mjtCamera.mjCAMERA_TRACKING and cam.trackbodyid == 1
        core.data.qpos[0] += 50.0  # 50 m forward: out of a fixed camera's view
        mujoco.mj_forward(core.model, core.data)
        env.render()
        assert abs(cam.lookat[0] - core.data.subtree_com[1, 0]) < 1e-6
    finally:
        env.close()


def test_pixels_of_a_non_mujoco_env_is_a_clear_error():
    with pytest.raises(ValueError, match=r"needs a gymnasium MuJoCo env.*'CartPole-v1' is a 'gym'"):
        make_vec_env("CartPole-v1", 1, seed=0, pixels=SMALL)
    with pytest.raises(ValueError, match="normalize_obs is not supported for pixel"):
        make_vec_env(ENV_ID, 1, seed=0, pixels=SMALL, normalize_obs=True)
    with pytest.raises(ValueError, match="frame_stack must be >= 1"):
        PixelOptions(frame_stack=0)


def _unset(monkeypatch, name: str) -> None:
    monkeypatch.setenv(name, "")  # so that undoing restores whatever was there, even nothing
    monkeypatch.delenv(name)


def test_no_backend_is_a_clear_error_naming_what_to_install(monkeypatch):
    _unset(monkeypatch, "MUJOCO_GL")
    monkeypatch.setattr(pixels, "_selected", {})
    monkeypatch.setattr(pixels, "_probe", lambda backend: f"no lib{backend}")
    with pytest.raises(RenderingUnavailable, match=r"egl: no libegl; osmesa: no libosmesa.*"
                       r"libegl1.*libosmesa6"):
        select_gl_backend()
    with pytest.raises(ImportError):  # train.py prints ImportErrors as one-line errors
        make_vec_env(ENV_ID, 1, seed=0, pixels=SMALL)


def test_a_backend_the_user_set_is_kept_or_reported(monkeypatch):
    monkeypatch.setattr(pixels, "_selected", {})
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    tried = []
    monkeypatch.setattr(pixels, "_probe", lambda backend: tried.append(backend))
    assert select_gl_backend() == "osmesa" and tried == ["osmesa"]
    monkeypatch.setattr(pixels, "_selected", {})
    monkeypatch.setattr(pixels, "_probe", lambda backend: "libOSMesa.so: cannot open")
    with pytest.raises(RenderingUnavailable, match="MUJOCO_GL='osmesa' cannot render.*libosmesa6"):
        select_gl_backend()
    assert pixels.os.environ["MUJOCO_GL"] == "osmesa"  # never overridden


def test_egl_then_osmesa_order_and_the_choice_is_exported(monkeypatch):
    _unset(monkeypatch, "MUJOCO_GL")
    _unset(monkeypatch, "PYOPENGL_PLATFORM")
    monkeypatch.setattr(pixels, "_selected", {})
    tried = []

    def probe(backend):
        tried.append(backend)
        return "no EGL display" if backend == "egl" else None

    monkeypatch.setattr(pixels, "_probe", probe)
    assert select_gl_backend() == "osmesa" and tried == ["egl", "osmesa"]
    assert pixels.os.environ["MUJOCO_GL"] == "osmesa"
    assert pixels.os.environ["PYOPENGL_PLATFORM"] == "osmesa"


@pytest.mark.filterwarnings("ignore:MuJoCo.*settotalmass:RuntimeWarning")
def test_envs_of_different_models_in_one_process_render_their_own_frames(backend):
    options = PixelOptions(size=16, frame_stack=1, shadow_size=512)
    reacher = make_pixel_env(ENV_ID, options)
    try:
        alone, _ = reacher.reset(seed=0)
        cheetah = make_pixel_env("HalfCheetah-v5", options)  # its GL context is now current
        try:
            cheetah_frame, _ = cheetah.reset(seed=0)
            again, _ = reacher.reset(seed=0)
            np.testing.assert_array_equal(again, alone)
            assert not np.array_equal(cheetah_frame, alone)
        finally:
            cheetah.close()
    finally:
        reacher.close()
