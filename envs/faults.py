"""Environment faults, reported with the index of the sub-environment at fault.

* :class:`EnvStepError`: a sub-environment raised in ``step()`` / ``reset()``, or its worker
  process (``vectorization: async``) died.
* :class:`NonFiniteEnvOutput`: a sub-environment returned NaN or Inf in an observation or a
  reward. Raised before anything downstream (normalization statistics, the learner) sees it.

Both are ``RuntimeError`` subclasses whose message names the env and what happened; the
trainer adds where in the run it was and saves a checkpoint of the last good state.
"""

from __future__ import annotations

import time

import numpy as np


class EnvStepError(RuntimeError):
    """A sub-environment failed (raised, or its worker process died); the message names it."""


class NonFiniteEnvOutput(RuntimeError):
    """A sub-environment returned NaN or Inf; the message names the env index and the value."""


def check_finite(env_id: str, obs: np.ndarray, reward: np.ndarray, step: int) -> None:
    """Raises :class:`NonFiniteEnvOutput` naming the first sub-environment (row) whose reward
    or float observation holds NaN or Inf.

    Args:
        env_id: Named in the message.
        obs: Observations ``(num_envs, ...)``; integer dtypes (pixels) are not checked.
        reward: Rewards ``(num_envs,)``.
        step: The vector env's step count, named in the message.
    """
    bad_reward = ~np.isfinite(reward)
    bad_obs = np.zeros_like(bad_reward)
    if np.issubdtype(obs.dtype, np.floating):
        bad_obs = ~np.isfinite(obs.reshape(len(obs), -1)).all(axis=1)
    if not (bad_reward.any() or bad_obs.any()):
        return
    i = int(np.flatnonzero(bad_reward | bad_obs)[0])
    what = (f"reward {reward[i]}" if bad_reward[i]
            else f"observation with {int((~np.isfinite(obs[i])).sum())} non-finite value(s)")
    raise NonFiniteEnvOutput(
        f"{env_id!r}: env {i} returned a non-finite {what} on step {step} of its vector env"
    )


def dead_workers(venv: object) -> list[str]:
    """``"env i (pid p, exit code c)"`` for each dead worker process of a gymnasium
    ``AsyncVectorEnv`` (empty for other vector envs)."""
    processes = getattr(venv, "processes", None) or []
    for _ in range(20):  # the pipe may report the death before the process is reaped
        if any(not p.is_alive() for p in processes):
            break
        time.sleep(0.05)
    dead = []
    for i, process in enumerate(processes):
        if not process.is_alive():
            dead.append(f"env {i} (pid {process.pid}, exit code {process.exitcode})")
    return dead
