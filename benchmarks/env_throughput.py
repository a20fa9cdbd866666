"""Environment throughput: steps/s of the vector envs the agents use (random actions).

Prints, does not assert. Env steps count every sub-environment (one vector step of 16 envs is
16 env steps; for Atari an env step is 4 emulator frames).

    python -m benchmarks.env_throughput [--seconds 5]     (from the repository root)
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import numpy as np

from envs import AtariOptions, VecEnv, make_vec_env


def random_actions(env: VecEnv, rng: np.random.Generator) -> np.ndarray:
    """One random action per sub-environment."""
    space = env.action_space
    if hasattr(space, "n"):
        return rng.integers(0, space.n, size=env.num_envs)
    return rng.uniform(space.low, space.high, size=(env.num_envs, *space.shape))


def env_steps_per_second(env: VecEnv, seconds: float, warmup: int = 20,
                         clock: Callable[[], float] = time.perf_counter) -> float:
    """Steps ``env`` with random actions for about ``seconds`` of ``clock`` (default wall-clock;
    ``time.process_time`` counts the CPU this process got); returns env steps per second."""
    rng = np.random.default_rng(0)
    env.reset()
    for _ in range(warmup):
        env.step(random_actions(env, rng))
    steps, start = 0, clock()
    while clock() - start < seconds:
        env.step(random_actions(env, rng))
        steps += 1
    return steps * env.num_envs / (clock() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="MuJoCo.*settotalmass")  # MuJoCo 4 vs gymnasium XML

    results: dict[str, float] = {}
    cases = [
        ("Pong native, 16 envs", "ALE/Pong-v5", 16, "sync", AtariOptions(backend="native")),
        (
            "Pong gymnasium sync, 16 envs",
            "ALE/Pong-v5",
            16,
            "sync",
            AtariOptions(backend="gymnasium"),
        ),
        ("HalfCheetah-v5 sync, 8 envs", "HalfCheetah-v5", 8, "sync", None),
        ("HalfCheetah-v5 async, 8 envs", "HalfCheetah-v5", 8, "async", None),
    ]
    for name, env_id, num_envs, vectorization, atari in cases:
        with make_vec_env(
            env_id, num_envs, seed=0, vectorization=vectorization, atari=atari
        ) as env:
            results[name] = env_steps_per_second(env, args.seconds)
        print(f"{name:32s} {results[name]:10.0f} env steps/s", flush=True)

    native, fallback = results["Pong native, 16 envs"], results["Pong gymnasium sync, 16 envs"]
    sync, async_ = results["HalfCheetah-v5 sync, 8 envs"], results["HalfCheetah-v5 async, 8 envs"]
    print(f"Pong native / gymnasium sync: {native / fallback:.2f}x")
    print(f"HalfCheetah async / sync: {async_ / sync:.2f}x")


if __name__ == "__main__":
    main()
