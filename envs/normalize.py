"""Running observation and reward normalization for vector envs (numpy).

Observations: ``clip((obs - mean) / sqrt(var + eps), -clip_obs, clip_obs)`` with running
per-feature mean/var. Rewards: divided by the running std of the discounted return
``R_t = gamma * R_{t-1} + r_t`` (reset at episode ends), then clipped, as in baselines' and
SB3's ``VecNormalize`` (Engstrom et al. 2020 discuss why this helps PPO/ACKTR-style methods).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from envs.snapshot import check_type
from envs.vec_env import StepResult, VecEnv, VecEnvWrapper


class RunningMeanStd:
    """Mean and (population) variance of a stream of batches, merged exactly.

    Batches are merged with the parallel algorithm of Chan, Golub & LeVeque (1979): for counts
    ``n_a, n_b`` and ``delta = mean_b - mean_a``, ``M2 = M2_a + M2_b + delta^2 n_a n_b / n``.
    Before the first update ``mean = 0, var = 1, count = 0``.

    Args:
        shape: Shape of one sample. Default ``()``.
    """

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = 0.0

    def update(self, batch: np.ndarray) -> None:
        """Adds a batch of samples, shape ``(n, *shape)``."""
        batch = np.asarray(batch, dtype=np.float64)
        if batch.shape[0] == 0:
            return
        self.update_from_moments(batch.mean(axis=0), batch.var(axis=0), batch.shape[0])

    def update_from_moments(self, mean: np.ndarray, var: np.ndarray, count: float) -> None:
        """Merges a batch given its mean, population variance and size."""
        total = self.count + count
        delta = mean - self.mean
        m2 = self.var * self.count + var * count + delta**2 * self.count * count / total
        self.mean = np.asarray(self.mean + delta * count / total)
        self.var = np.asarray(m2 / total)
        self.count = float(total)

    def state_dict(self) -> dict[str, Any]:
        """``{"mean": float64 tensor, "var": float64 tensor, "count": float}``."""
        return {
            "mean": torch.from_numpy(self.mean.copy()),
            "var": torch.from_numpy(self.var.copy()),
            "count": self.count,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores ``state_dict()`` output (tensors, arrays or lists)."""
        mean = np.asarray(state["mean"], dtype=np.float64)
        var = np.asarray(state["var"], dtype=np.float64)
        if mean.shape != self.mean.shape or var.shape != self.var.shape:
            raise ValueError(
                f"statistics of shape {mean.shape}/{var.shape} do not fit shape {self.mean.shape}"
            )
        self.mean, self.var, self.count = mean.copy(), var.copy(), float(state["count"])


class VecNormalize(VecEnvWrapper):
    """Normalizes observations and/or rewards of a ``VecEnv`` by running statistics.

    ``info["final_obs"]`` is normalized with the same statistics as ``obs`` (it does not update
    them). Episode statistics stay raw. With ``training=False`` the statistics are frozen (for
    evaluation); the attribute can be switched at any time.

    Args:
        venv: The env to wrap; closed by ``close()``.
        normalize_obs: Normalize observations (needs a ``Box`` observation space). Default True.
        normalize_reward: Scale rewards by the running std of discounted returns. Default False.
        gamma: Discount of those returns. Default 0.99.
        clip_obs: Bound on normalized observations. Default 10.0.
        clip_reward: Bound on scaled rewards. Default 10.0.
        epsilon: Added to variances before the square root. Default 1e-8.
        training: Update statistics on each ``reset``/``step``. Default True.
    """

    def __init__(
        self,
        venv: VecEnv,
        *,
        normalize_obs: bool = True,
        normalize_reward: bool = False,
        gamma: float = 0.99,
        clip_obs: float = 10.0,
        clip_reward: float = 10.0,
        epsilon: float = 1e-8,
        training: bool = True,
    ) -> None:
        space = venv.observation_space
        if normalize_obs and not isinstance(space, spaces.Box):
            raise ValueError(
                f"observation normalization needs a Box observation space, not {space}"
            )
        self.venv = venv
        self.num_envs = venv.num_envs
        self.action_space = venv.action_space
        self.render_fps = getattr(venv, "render_fps", None)
        self.observation_space = space
        if normalize_obs:
            self.observation_space = spaces.Box(-clip_obs, clip_obs, space.shape, np.float32)
        self.normalize_obs = normalize_obs
        self.normalize_reward = normalize_reward
        self.gamma = gamma
        self.clip_obs = clip_obs
        self.clip_reward = clip_reward
        self.epsilon = epsilon
        self.training = training
        self.obs_rms = RunningMeanStd(space.shape) if normalize_obs else None
        self.ret_rms = RunningMeanStd(()) if normalize_reward else None
        self._returns = np.zeros(self.num_envs, dtype=np.float64)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """See ``VecEnv.reset``; the first observations update the statistics when training."""
        obs = self.venv.reset(seed)
        self._returns[:] = 0.0
        if self.training and self.obs_rms is not None:
            self.obs_rms.update(obs)
        return self.normalize_observation(obs)

    def step(self, actions: np.ndarray) -> StepResult:
        """See ``VecEnv.step``."""
        obs, reward, terminated, truncated, info = self.venv.step(actions)
        if self.training and self.obs_rms is not None:
            self.obs_rms.update(obs)
        episode_over = terminated | truncated
        obs = self.normalize_observation(obs)
        # final_obs equals obs in the rows of episodes that go on (VecEnv's convention)
        info["final_obs"] = (self.normalize_observation(info["final_obs"])
                             if episode_over.any() else obs.copy())
        reward = self._scale_reward(reward, episode_over)
        return obs, reward, terminated, truncated, info

    def normalize_observation(self, obs: np.ndarray) -> np.ndarray:
        """Applies the current observation statistics (identity when they are off)."""
        if self.obs_rms is None:
            return obs
        scaled = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)

    def _scale_reward(self, reward: np.ndarray, episode_over: np.ndarray) -> np.ndarray:
        if self.ret_rms is None:
            return reward
        self._returns = self._returns * self.gamma + reward
        if self.training:
            self.ret_rms.update(self._returns)
        self._returns[episode_over] = 0.0
        scaled = reward / np.sqrt(self.ret_rms.var + self.epsilon)
        return np.clip(scaled, -self.clip_reward, self.clip_reward).astype(np.float32)




    def snapshot(self) -> dict[str, Any]:
        """See ``VecEnv.snapshot``: the wrapped env's, the statistics and the discounted-return
        accumulator of reward normalization."""
        return {
            "type": "VecNormalize",
            "inner": self.venv.snapshot(),
            "statistics": self.state_dict(),
            "returns": torch.from_numpy(self._returns.copy()),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """See ``VecEnv.restore``."""
        check_type(state, "VecNormalize")
        returns = np.asarray(state["returns"], dtype=np.float64)
        if returns.shape != self._returns.shape:
            raise ValueError(f"return accumulator of shape {returns.shape}, expected "
                             f"{self._returns.shape}")
        self.venv.restore(state["inner"])
        self.load_state_dict(state["statistics"])
        self._returns = returns.copy()

    def state_dict(self) -> dict[str, Any]:
        """``{"obs_rms": {...}, "ret_rms": {...}}`` (each only when enabled); see
        ``RunningMeanStd.state_dict``. Safe for ``torch.load(weights_only=True)``."""
        state: dict[str, Any] = {}
        if self.obs_rms is not None:
            state["obs_rms"] = self.obs_rms.state_dict()
        if self.ret_rms is not None:
            state["ret_rms"] = self.ret_rms.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores ``state_dict()`` output; the enabled statistics must match exactly."""
        expected = set(self.state_dict())
        if set(state) != expected:
            raise ValueError(
                f"normalization state has keys {sorted(state)}, this env expects {sorted(expected)}"
            )
        if self.obs_rms is not None:
            self.obs_rms.load_state_dict(state["obs_rms"])
        if self.ret_rms is not None:
            self.ret_rms.load_state_dict(state["ret_rms"])
