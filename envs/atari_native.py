"""ale-py's native vector env made exactly restorable: seeded games, snapshots by replay.

ale-py's C++ ``AtariVectorEnv`` (0.12) exposes no state cloning: its games, RNGs and frame
stacks live in C++ threads. But a game is a deterministic function of its reset seed and the
actions taken since (sticky actions and no-op starts draw from the game's own seeded RNG). So
:class:`SeededGames` starts *every* game from an explicit seed (game ``k`` of env ``i`` gets
``episode_seed(seed, i, k)``; the first one ``seed + i``, as before) instead of letting ALE's
autoreset continue its RNG stream, and keeps the actions taken in each running game. A
snapshot is those seeds and actions; ``restore`` replays them on a fresh env, which costs one
env step per action of the longest running game (at most 27000 with the default time limit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from envs.gym_adapter import GymnasiumVecEnv
from envs.snapshot import check_type, from_plain
from envs.vec_env import StepResult, VecEnvWrapper

ALE_MAX_SEED = 2**31 - 1


def episode_seed(seed: int, env_index: int, episode: int) -> int:
    """Seed of game ``episode`` (0-based) of sub-environment ``env_index``.

    Game 0 keeps the ``seed + env_index`` convention; later games draw from
    ``SeedSequence([seed, env_index, episode])``, reduced to ALE's positive int range.
    """
    if episode == 0:
        return int(seed + env_index)
    words = np.random.SeedSequence([seed, env_index, episode]).generate_state(1)
    return int(words[0] % ALE_MAX_SEED)


class SeededGames(VecEnvWrapper):
    """Reseeds each ended game of a native Atari ``GymnasiumVecEnv`` and records its actions.

    Args:
        venv: A ``GymnasiumVecEnv`` around ale-py's ``AtariVectorEnv`` (same-step autoreset).
        seed: Base seed; game ``k`` of env ``i`` is seeded with ``episode_seed(seed, i, k)``.
    """

    def __init__(self, venv: GymnasiumVecEnv, seed: int) -> None:
        self.venv = venv
        self.num_envs = venv.num_envs
        self.observation_space = venv.observation_space
        self.action_space = venv.action_space
        self.render_fps = getattr(venv, "render_fps", None)
        self._seed = int(seed)
        self._episodes = np.zeros(self.num_envs, dtype=np.int64)
        self._actions: list[list[int]] = [[] for _ in range(self.num_envs)]
        self._obs: np.ndarray | None = None  # None until the first reset

    def _seeds(self, envs: np.ndarray) -> np.ndarray:
        return np.array([episode_seed(self._seed, i, self._episodes[i]) for i in envs], np.int64)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """See ``VecEnv.reset``: a seed restarts the numbering, None starts each env's next game."""
        if seed is not None:
            self._seed, self._episodes[:] = int(seed), 0
        elif self._obs is not None:
            self._episodes += 1
        self._obs = self.venv.reset(self._seeds(np.arange(self.num_envs)))
        for actions in self._actions:
            actions.clear()
        return self._obs

    def step(self, actions: np.ndarray) -> StepResult:
        """See ``VecEnv.step``; ended games restart from their own seed."""
        actions = np.asarray(actions).astype(np.int64).reshape(self.num_envs)
        obs, reward, terminated, truncated, info = self.venv.step(actions)
        for i, a in enumerate(actions.tolist()):
            self._actions[i].append(a)
        ended = np.flatnonzero(terminated | truncated)
        if len(ended):
            self._episodes[ended] += 1
            fresh, fresh_info = self._reset_games(ended)
            obs[ended] = fresh[ended]
            info["lives"][ended] = fresh_info["lives"][ended]
            for i in ended:
                self._actions[i].clear()
        self._obs = obs
        return obs, reward, terminated, truncated, info

    def _reset_games(self, envs: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        """Resets games ``envs`` from their seeds; rows of the other envs are their current."""
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[envs] = True
        return self.venv.venv.reset(seed=self._seeds(envs), options={"reset_mask": mask})




    def snapshot(self) -> dict[str, Any]:
        """See ``VecEnv.snapshot``: seeds, game counters, the actions of the running games."""
        return {
            "type": "SeededGames",
            "seed": self._seed,
            "started": self._obs is not None,
            "episodes": torch.from_numpy(self._episodes.copy()),
            "actions": [torch.tensor(a, dtype=torch.uint8) for a in self._actions],
            "obs": None if self._obs is None else torch.from_numpy(self._obs.copy()),
            "adapter": self.venv.snapshot(sub_envs=False),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """See ``VecEnv.restore``: replays every running game from its seed.

        Raises:
            ValueError: The snapshot does not fit, or the replay did not reproduce the
                snapshot's observations (e.g. a different ale-py version).
        """
        check_type(state, "SeededGames")
        state = from_plain(state)
        if len(state["actions"]) != self.num_envs:
            raise ValueError(f"snapshot of {len(state['actions'])} games, expected {self.num_envs}")
        self._seed = int(state["seed"])
        self._episodes = np.asarray(state["episodes"], dtype=np.int64).copy()
        self._actions = [np.asarray(a, dtype=np.int64).tolist() for a in state["actions"]]
        if state["started"]:
            self._obs = self._replay()
            if not np.array_equal(self._obs, state["obs"]):
                raise ValueError("replaying the Atari games did not reproduce the snapshot")
        self.venv.restore(state["adapter"])

    def _replay(self) -> np.ndarray:
        """Plays each game's actions from its seed; games start so that all end together."""
        raw = self.venv.venv
        lengths = np.array([len(a) for a in self._actions])
        longest = int(lengths.max())
        starts = longest - lengths  # the step at which each game starts
        obs, _ = raw.reset(seed=self._seeds(np.arange(self.num_envs)))
        for t in range(longest + 1):
            starting = np.flatnonzero((starts == t) & (t > 0))
            if len(starting):
                obs, _ = self._reset_games(starting)
            if t == longest:
                break
            playing = np.flatnonzero(starts <= t)
            actions = np.zeros(self.num_envs, dtype=np.int64)  # NOOP until a game starts
            for i in playing:
                actions[i] = self._actions[i][t - starts[i]]
            obs, _, terminated, truncated, _ = raw.step(actions)
            if (terminated | truncated)[playing].any():
                raise ValueError("a replayed Atari game ended early: the replay diverged")
        return np.asarray(obs, dtype=self.observation_space.dtype)
