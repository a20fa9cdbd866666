"""Return of a uniformly random policy: the "random" end of a normalized score such as
``(agent - random) / (reference - random)``; or of the all-zero action (``--policy zero``,
Box actions only), what a Gaussian policy's untrained mean does.

Prints, does not assert. Actions uniform in the Box bounds (or over the Discrete actions),
episodes on envs seeded like our evaluation (``seed + 10000 + i``), raw returns.

    python -m benchmarks.random_return --env Reacher-v5 [--episodes 100] [--policy zero]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from envs import make_vec_env


def random_returns(env_id: str, episodes: int, seed: int, num_envs: int = 10,
                   zero: bool = False) -> np.ndarray:
    """Raw returns of ``episodes`` full episodes of uniformly random (or zero) actions."""
    rng = np.random.default_rng(seed)
    returns: list[float] = []
    with make_vec_env(env_id, num_envs, seed=seed + 10_000, normalize_obs=False,
                      training=False) as env:
        env.reset()
        space = env.action_space
        while len(returns) < episodes:
            if zero:
                actions = np.zeros((num_envs, *space.shape))
            elif hasattr(space, "n"):
                actions = rng.integers(0, space.n, size=num_envs)
            else:
                actions = rng.uniform(space.low, space.high, size=(num_envs, *space.shape))
            *_, info = env.step(actions)
            returns.extend(float(r) for r in info["episode_returns"])
    return np.asarray(returns[:episodes])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="gymnasium env id")
    parser.add_argument("--episodes", type=int, default=100, help="number of episodes")
    parser.add_argument("--seed", type=int, default=0, help="seed of actions and envs")
    parser.add_argument("--policy", choices=["uniform", "zero"], default="uniform",
                        help="uniformly random actions, or all-zero actions (Box only)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="MuJoCo.*settotalmass")
    r = random_returns(args.env, args.episodes, args.seed, zero=args.policy == "zero")
    what = "all-zero actions" if args.policy == "zero" else "uniformly random policy"
    print(f"{args.env}: {what}, {len(r)} episodes: return {r.mean():.2f} "
          f"+- {r.std():.2f} (standard error {r.std() / np.sqrt(len(r)):.2f})")


if __name__ == "__main__":
    main()
