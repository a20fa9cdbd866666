"""ACKTR update time vs A2C update time on the same batch, measured side by side (interleaved).

    python -m benchmarks.update_time --env atari --batch 320 --repeats 30

Builds the Atari (Nature CNN, shared trunk) or MuJoCo (64-64 MLP) actor-critic, one random
batch, and times `agents.updates.update` for ACKTR and A2C alternately, so machine load affects
both alike. Prints the median times and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
import yaml

from agents.config import Config
from agents.policies import make_policy
from agents.storage import RolloutBatch
from agents.updates import make_optimizers, update


def make_batch(obs_space: gym.Space, act_space: gym.Space, n: int, device) -> RolloutBatch:
    rng = np.random.default_rng(0)
    if obs_space.dtype == np.uint8:
        obs = torch.as_tensor(rng.integers(0, 255, (n, *obs_space.shape), dtype=np.uint8))
    else:
        obs = torch.as_tensor(rng.standard_normal((n, *obs_space.shape)), dtype=torch.float32)
    actions = torch.as_tensor(np.stack([act_space.sample() for _ in range(n)]))
    zeros = torch.zeros(n)
    return RolloutBatch(obs.to(device), actions.to(device), zeros.to(device), zeros.to(device),
                        torch.randn(n, device=device), torch.randn(n, device=device))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", choices=["atari", "mujoco"], default="atari")
    p.add_argument("--batch", type=int, default=320, help="transitions per update (16 x 20)")
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--set", dest="kfac", action="append", default=[],
                   help="K-FAC override key=value (e.g. async_inverse=true)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.env == "atari":
        obs_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        act_space = gym.spaces.Discrete(6)
    else:
        obs_space = gym.spaces.Box(-np.inf, np.inf, (17,), np.float32)
        act_space = gym.spaces.Box(-1, 1, (6,), np.float32)
    runs = {}
    for algo in ("acktr", "a2c"):
        cfg = Config()
        cfg.algo.algo = algo
        cfg.kfac.cold_start_steps = 0
        for kv in args.kfac:
            key, value = kv.split("=", 1)
            setattr(cfg.kfac, key, yaml.safe_load(value))
        torch.manual_seed(0)
        policy = make_policy(obs_space, act_space, cfg.policy).to(device)
        runs[algo] = (policy, make_optimizers(policy, cfg), cfg)
    batch = make_batch(obs_space, act_space, args.batch, device)
    times: dict[str, list[float]] = {a: [] for a in runs}
    for i in range(args.repeats + 3):
        for algo, (policy, opts, cfg) in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            update(policy, opts, batch, cfg)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 3:  # warm-up
                times[algo].append(time.perf_counter() - t)
    med = {a: statistics.median(v) for a, v in times.items()}
    mean = {a: statistics.fmean(v) for a, v in times.items()}
    print(f"env={args.env} batch={args.batch} device={device} threads={torch.get_num_threads()} "
          f"kfac overrides={args.kfac or 'none'}")
    for a in runs:
        print(f"{a:6s} median {med[a] * 1e3:8.1f} ms   mean {mean[a] * 1e3:8.1f} ms")
    print(f"ACKTR / A2C update time: median {med['acktr'] / med['a2c']:.2f}x, "
          f"mean {mean['acktr'] / mean['a2c']:.2f}x (mean includes eigendecompositions)")


if __name__ == "__main__":
    main()
