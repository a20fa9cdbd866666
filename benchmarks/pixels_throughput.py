"""MuJoCo from pixels: rendering throughput per env and per core, and where a training update's
time goes (physics, rendering, CNN forward in the rollout, the ACKTR / A2C update).

Prints, does not assert. Times are CPU seconds of this process (``time.process_time``: all its
threads, not the time spent waiting for a core), so on a machine shared with other jobs the
figures are per core of CPU actually received; cases are also interleaved (each round measures
every case once; the median over rounds is reported). One process, one torch thread and
``LP_NUM_THREADS=1`` (Mesa's software rasterizer, unless set).

    python -m benchmarks.pixels_throughput [--seconds 2] [--rounds 3] [--update-rounds 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

os.environ.setdefault("LP_NUM_THREADS", "1")

import torch  # noqa: E402

from benchmarks.env_throughput import env_steps_per_second  # noqa: E402
from envs import PixelOptions, make_vec_env  # noqa: E402
from envs.pixels import select_gl_backend  # noqa: E402

ENVS = ("Reacher-v5", "HalfCheetah-v5", "Walker2d-v5")
RENDER_CASES = {
    "state": None,
    "pixels 42 RGB": PixelOptions(size=42),
    "pixels 42 RGB, 4x antialias": PixelOptions(size=42, antialias=True),
    "pixels 42 RGB, shadow map 512": PixelOptions(size=42, shadow_size=512),
    "pixels 84 RGB": PixelOptions(size=84),
}


def render_table(seconds: float, rounds: int, num_envs: int) -> dict[tuple[str, str], float]:
    """Median env steps per CPU second per (env, case), ``num_envs`` envs in one process."""
    envs = {(e, c): make_vec_env(e, num_envs, seed=0, pixels=p)
            for e in ENVS for c, p in RENDER_CASES.items()}
    samples: dict[tuple[str, str], list[float]] = {k: [] for k in envs}
    try:
        for _ in range(rounds):
            for key, env in envs.items():
                samples[key].append(env_steps_per_second(env, seconds, warmup=5,
                                                         clock=time.process_time))
    finally:
        for env in envs.values():
            env.close()
    return {k: statistics.median(v) for k, v in samples.items()}


class TimedEnv:
    """Forwards to a VecEnv, adding the CPU time spent in ``step`` to ``seconds``."""

    def __init__(self, env) -> None:
        self.env, self.seconds = env, 0.0

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step(self, actions):
        began = time.process_time()
        try:
            return self.env.step(actions)
        finally:
            self.seconds += time.process_time() - began


def update_breakdown(overrides: list[str], updates: int) -> dict[str, float]:
    """Seconds per update of the ``configs/mujoco_pixels.yaml`` agent with ``overrides``:
    env steps (physics + rendering), rollout minus env steps (CNN forward, sampling, storage),
    and the update (forward + backward + optimizer, K-FAC statistics and eigendecompositions
    included, amortized over the run)."""
    from agents.config import load_config
    from agents.evaluate import make_env_from_config
    from agents.policies import make_policy
    from agents.rollout import collect_rollout, obs_to_tensor
    from agents.storage import RolloutStorage
    from agents.updates import make_optimizers, update

    # No cold start: every timed update is preconditioned; with inverse_every=10 and 1 + 10
    # updates, one eigendecomposition refresh falls in the timed window (its amortized cost).
    cfg = load_config("configs/mujoco_pixels.yaml",
                      ["run.device=cpu", "kfac.cold_start_steps=0", *overrides])
    device = torch.device("cpu")
    env = TimedEnv(make_env_from_config(cfg))
    try:
        torch.manual_seed(0)
        policy = make_policy(env.observation_space, env.action_space, cfg.policy)
        opts = make_optimizers(policy, cfg)
        storage = RolloutStorage.from_spaces(cfg.algo.num_steps, env.num_envs,
                                             env.observation_space, env.action_space, device)
        obs = obs_to_tensor(env.reset(seed=0), device)
        rollout = learn = 0.0
        for i in range(updates + 1):  # the first update (cold start, first factors) not timed
            if i == 1:
                env.seconds = rollout = learn = 0.0
            began = time.process_time()
            obs, _, _ = collect_rollout(env, policy, storage, obs, cfg.algo.gamma,
                                        cfg.algo.gae_lambda)
            middle = time.process_time()
            update(policy, opts, storage.flatten(), cfg)
            rollout += middle - began
            learn += time.process_time() - middle
    finally:
        env.close()
    return {"env": env.seconds / updates, "forward": (rollout - env.seconds) / updates,
            "update": learn / updates, "batch": cfg.batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="CPU seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--update-rounds", type=int, default=1,
                        help="interleaved rounds of the update breakdown (median)")
    parser.add_argument("--updates", type=int, default=10, help="timed updates per agent")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="MuJoCo.*settotalmass")
    torch.set_num_threads(1)
    print(f"backend MUJOCO_GL={select_gl_backend()}, LP_NUM_THREADS="
          f"{os.environ['LP_NUM_THREADS']}, torch threads 1, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")

    for num_envs in (1, 8):
        table = render_table(args.seconds, args.rounds, num_envs)
        print(f"\nenv steps per CPU second, {num_envs} env(s) in one process, median of "
              f"{args.rounds} interleaved rounds:")
        print("| env | " + " | ".join(RENDER_CASES) + " |")
        print("|---" * (len(RENDER_CASES) + 1) + "|")
        for e in ENVS:
            cells = [f"{table[e, c]:.0f}" for c in RENDER_CASES]
            print(f"| {e} | " + " | ".join(cells) + " |")

    agents = {
        "ACKTR, nature trunk (42 -> 1x1x64)": ["policy.cnn_trunk=nature"],
        "A2C, nature trunk": ["policy.cnn_trunk=nature", "algo.algo=a2c"],
        "ACKTR, nature_small trunk (42 -> 7x7x64)": ["policy.cnn_trunk=nature_small"],
        "A2C, nature_small trunk": ["policy.cnn_trunk=nature_small", "algo.algo=a2c"],
    }
    results = {name: [] for name in agents}
    for _ in range(args.update_rounds):
        for name, overrides in agents.items():
            results[name].append(update_breakdown(overrides, args.updates))
    print(f"\nReacher-v5 from pixels (configs/mujoco_pixels.yaml: 16 envs x 20 steps = 320 "
          f"steps per update), CPU seconds per update, median of {args.update_rounds} round(s) of "
          f"{args.updates} updates:")
    print("| agent | env step (physics + render) | rollout forward | update | total | steps per "
          "CPU s |")
    print("|---|---|---|---|---|---|")
    for name, rows in results.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ("env", "forward", "update")}
        total = sum(med.values())
        print(f"| {name} | {med['env']:.2f} ({100 * med['env'] / total:.0f}%) | "
              f"{med['forward']:.2f} ({100 * med['forward'] / total:.0f}%) | "
              f"{med['update']:.2f} ({100 * med['update'] / total:.0f}%) | {total:.2f} | "
              f"{rows[0]['batch'] / total:.0f} |")
    print(f"\nload average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
