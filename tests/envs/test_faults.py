"""Env faults are named: which env, what, at which step; a dead worker does not hang close()."""

from __future__ import annotations

import numpy as np
import pytest

from envs import make_vec_env
from envs.faults import EnvStepError, NonFiniteEnvOutput, check_finite
from tests.faulty_env import register_faulty


def step_until_error(env, steps: int = 20) -> None:
    env.reset()
    for _ in range(steps):
        env.step(np.zeros(env.num_envs, dtype=np.int64))


@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_an_env_raising_in_step_is_named(vectorization):
    env = make_vec_env(register_faulty("raise", at_step=3, seed=1), 3, 0,
                       vectorization=vectorization)
    try:
        with pytest.raises(EnvStepError, match=r"env 1 raised ValueError in step\(\): simulated"):
            step_until_error(env)
    finally:
        env.close()


@pytest.mark.parametrize(("fault", "message"), [
    ("nan_reward", r"env 2 returned a non-finite reward nan on step 4 "),
    ("inf_obs", r"env 2 returned a non-finite observation with 1 non-finite value\(s\) on step 4 "),
])
@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_nan_or_inf_from_an_env_is_named_before_normalization_sees_it(fault, message,
                                                                      vectorization):
    env = make_vec_env(register_faulty(fault, at_step=4, seed=2), 3, 0,
                       vectorization=vectorization, normalize_obs=True, normalize_reward=True)
    try:
        env.reset()
        for _ in range(3):
            env.step(np.zeros(3, dtype=np.int64))
        stats = env.state_dict()
        with pytest.raises(NonFiniteEnvOutput, match=message):
            env.step(np.zeros(3, dtype=np.int64))
        after = env.state_dict()  # the statistics never saw the NaN/Inf
        assert all(np.isfinite(np.asarray(v["mean"])).all() for v in after.values())
        assert after["obs_rms"]["count"] == stats["obs_rms"]["count"]
    finally:
        env.close()


def test_a_dead_async_worker_is_named_and_close_does_not_fail():
    env = make_vec_env(register_faulty("die", at_step=2, seed=1), 2, 0, vectorization="async")
    with pytest.raises(EnvStepError, match=r"worker process died \(dead: env 1 \(pid \d+, exit "
                                           r"code -9\)\)"):
        step_until_error(env, 10)
    env.close()


def test_check_finite_ignores_pixels_and_finite_values():
    check_finite("x", np.full((2, 3), 255, np.uint8), np.zeros(2), 1)
    with pytest.raises(NonFiniteEnvOutput, match="env 1 returned a non-finite reward -inf"):
        check_finite("x", np.zeros((2, 3), np.float32), np.array([0.0, -np.inf]), 7)
