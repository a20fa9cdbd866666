"""Evaluation envs: the Atari evaluation frame cap (``env.eval_max_frames``)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ale_py")

from agents.config import ConfigError, load_config  # noqa: E402
from agents.evaluate import make_env_from_config  # noqa: E402


def _first_truncation(env, limit: int) -> int | None:
    """Steps NOOP (action 0) up to ``limit`` times; the step at which env 0 was first
    truncated, or None."""
    env.reset()
    for t in range(1, limit + 1):
        _, _, _, truncated, _ = env.step(np.zeros(env.num_envs, dtype=np.int64))
        if truncated[0]:
            return t
    return None


def test_eval_max_frames_cuts_evaluation_episodes_only() -> None:
    # Breakout with NOOP: FIRE serves once after the reset, the first ball is lost and the game
    # then waits for FIRE forever, so only the frame cap can end the episode.
    cfg = load_config(None, ["env.env_id=ALE/Breakout-v5", "env.num_envs=1",
                             "env.eval_max_frames=400"])
    with make_env_from_config(cfg, training=False) as env:
        assert _first_truncation(env, 200) == 400 // cfg.env.frame_skip
    with make_env_from_config(cfg, training=True) as env:  # training keeps ale-py's cap
        assert _first_truncation(env, 200) is None


def test_eval_max_frames_rejects_nonpositive() -> None:
    with pytest.raises(ConfigError, match="eval_max_frames"):
        load_config(None, ["env.eval_max_frames=0"])
