"""Training throughput of ACKTR, A2C, SB3 A2C and TRPO, measured side by side in one process.

    python -m benchmarks.throughput --env ALE/Pong-v5 --num-envs 16 --rounds 5
    python -m benchmarks.throughput --env HalfCheetah-v5 --num-envs 8 --rounds 5
    python -m benchmarks.throughput --env HalfCheetah-v5 --algos acktr sb3-acktr sb3-a2c

``sb3-acktr`` is our ACKTR as a stable-baselines3 algorithm (``agents.sb3``) with
``configs/zoo/acktr.yml``'s settings, run like the other baselines.

Each algorithm is built once with its compare settings (our family config; rl-zoo3's
hyperparameters for the baselines) and ``--num-envs`` training envs, then trained in short
timed chunks (at least ``--chunk-steps`` env steps and one update each), the algorithms taking
turns, ``--rounds`` times after one untimed warm-up chunk each; the order rotates every round so
machine load affects all alike. Reported per algorithm, as medians over rounds:

- fps: env steps per second of training (rollouts + updates; each stack with its own envs:
  ale-py's native vector env for ours on Atari, SB3's DummyVecEnv + AtariWrapper for SB3);
- s/iteration: seconds per rollout + update;
- s/update: seconds of the update alone (ours: ``agents.updates.update``; SB3: ``train()``,
  timed from the end of a rollout to the start of the next);

then fps ratios to our A2C and to SB3's A2C. Batch sizes differ (ours: num_envs x num_steps of
the family config; SB3 A2C: n_envs x 5), so compare fps, not time per update, across stacks.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch

from agents.baselines import (
    BASELINE_ALGOS,
    load_baseline_spec,
    make_sb3_env,
    make_sb3_model,
    spec_from_entry,
)
from agents.compare import ALGOS, DEFAULT_ALGOS, OUR_ALGOS, RunSpec, our_config
from agents.policies import make_policy
from agents.rollout import collect_rollout, obs_to_tensor
from agents.storage import RolloutStorage
from agents.trainer import resolve_device
from agents.updates import make_optimizers, update
from envs.registry import resolve_kind


@dataclass
class Chunk:
    """One timed chunk: env steps, seconds, iterations and seconds spent in updates."""

    steps: int
    seconds: float
    iterations: int
    update_seconds: float


class OurRunner:
    """Our ACKTR or A2C, stepped with the trainer's own pieces (rollout, then update)."""

    def __init__(self, algo: str, env_id: str, num_envs: int, device: str | None,
                 overrides: list[str]) -> None:
        spec = RunSpec(algo, env_id, 0, 10**9, (10**9,), 1, device)
        self.cfg = our_config(spec, extra=[f"env.num_envs={num_envs}", *overrides])
        from agents.evaluate import make_env_from_config

        self.device = resolve_device(self.cfg.run.device)
        torch.manual_seed(0)
        self.env = make_env_from_config(self.cfg, training=True)
        self.policy = make_policy(self.env.observation_space, self.env.action_space,
                                  self.cfg.policy).to(self.device)
        self.opts = make_optimizers(self.policy, self.cfg)
        self.storage = RolloutStorage.from_spaces(
            self.cfg.algo.num_steps, self.env.num_envs, self.env.observation_space,
            self.env.action_space, self.device)
        self.obs = obs_to_tensor(self.env.reset(seed=0), self.device)
        self.batch = self.cfg.batch_size

    def chunk(self, min_steps: int) -> Chunk:
        steps, iters, upd = 0, 0, 0.0
        began = time.perf_counter()
        while steps < min_steps or iters == 0:
            self.obs, _, _ = collect_rollout(self.env, self.policy, self.storage, self.obs,
                                             self.cfg.algo.gamma, self.cfg.algo.gae_lambda,
                                             threads=self.cfg.run.rollout_threads)
            t = time.perf_counter()
            update(self.policy, self.opts, self.storage.flatten(), self.cfg)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            upd += time.perf_counter() - t
            steps, iters = steps + self.batch, iters + 1
        return Chunk(steps, time.perf_counter() - began, iters, upd)

    def close(self) -> None:
        self.env.close()


@dataclass
class _Timer:
    update_seconds: float = 0.0
    iterations: int = 0
    marks: list[float] = field(default_factory=list)


class SB3Runner:
    """A baseline (SB3 A2C or TRPO) trained by successive ``learn`` calls."""

    def __init__(self, algo: str, env_id: str, num_envs: int, device: str | None,
                 overrides: list[str]) -> None:
        from stable_baselines3.common.callbacks import BaseCallback

        kind = resolve_kind(env_id, "auto")
        spec = load_baseline_spec(algo, env_id, kind)
        entry = {**spec.algo_kwargs, "n_envs": num_envs, "policy": spec.policy,
                 "normalize": {"obs": spec.normalize_obs, "reward": spec.normalize_reward},
                 "learning_rate_schedule": spec.learning_rate_schedule,
                 "policy_kwargs": spec.policy_kwargs}
        for item in overrides:
            key, _, value = item.partition("=")
            entry[key] = _number(value)
        self.spec = spec_from_entry(algo, env_id, kind, entry, spec.source)
        family = our_config(RunSpec("a2c", env_id, 0, 10**9, (10**9,), 1, device))
        env_cfg, dev = family.env, str(resolve_device(family.run.device))
        self.venv = make_sb3_env(self.spec, kind, 0, env_cfg)
        self.model = make_sb3_model(self.spec, self.venv, 0, dev, 10**9)
        self.batch = num_envs * int(self.model.n_steps)
        timer = self.timer = _Timer()

        class UpdateTimer(BaseCallback):
            """Update time = from the end of a rollout to the start of the next (or the end)."""

            def _on_rollout_end(self) -> None:
                timer.marks.append(time.perf_counter())

            def _on_rollout_start(self) -> None:
                self._close()

            def _on_training_end(self) -> None:
                self._close()

            def _close(self) -> None:
                if timer.marks:
                    timer.update_seconds += time.perf_counter() - timer.marks.pop()
                    timer.iterations += 1

            def _on_step(self) -> bool:
                return True

        self.callback = UpdateTimer()

    def chunk(self, min_steps: int) -> Chunk:
        want = max(self.batch, -(-min_steps // self.batch) * self.batch)
        self.timer.update_seconds, self.timer.iterations = 0.0, 0
        before = self.model.num_timesteps
        began = time.perf_counter()
        self.model.learn(total_timesteps=want, callback=self.callback,
                         reset_num_timesteps=False, progress_bar=False)
        seconds = time.perf_counter() - began
        return Chunk(self.model.num_timesteps - before, seconds, self.timer.iterations,
                     self.timer.update_seconds)

    def close(self) -> None:
        self.venv.close()


def _number(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def measure(runners: dict[str, object], rounds: int, chunk_steps: int,
            log=print) -> dict[str, list[Chunk]]:
    """Warm-up chunk each, then ``rounds`` rounds of one chunk each, order rotating."""
    names = list(runners)
    for name in names:
        runners[name].chunk(chunk_steps)
    results: dict[str, list[Chunk]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            c = runners[name].chunk(chunk_steps)
            results[name].append(c)
            log(f"round {r + 1}/{rounds} {name}: {c.steps / c.seconds:.0f} steps/s, "
                f"{c.seconds / c.iterations:.3f} s/iteration, "
                f"{c.update_seconds / c.iterations:.3f} s/update")
    return results


def report(results: dict[str, list[Chunk]], batches: dict[str, int]) -> str:
    """Markdown table of medians and fps ratios."""
    fps = {n: statistics.median(c.steps / c.seconds for c in cs) for n, cs in results.items()}
    refs = ("acktr", "a2c", "sb3-a2c")
    lines = ["| algo | batch | fps | s/iteration | s/update | fps / our acktr | fps / our a2c "
             "| fps / sb3-a2c |", "|---|---|---|---|---|---|---|---|"]
    for n, cs in results.items():
        it = statistics.median(c.seconds / c.iterations for c in cs)
        up = statistics.median(c.update_seconds / c.iterations for c in cs)
        ratio = [f"{fps[n] / fps[ref]:.2f}x" if ref in fps else "n/a"
                 for ref in refs]
        lines.append(f"| {n} | {batches[n]} | {fps[n]:.0f} | {it:.3f} | {up:.4f} | "
                     f"{' | '.join(ratio)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--env", default="HalfCheetah-v5", help="gymnasium env id")
    p.add_argument("--num-envs", type=int, default=8, help="training envs of every algorithm")
    p.add_argument("--algos", nargs="+", default=list(DEFAULT_ALGOS), choices=ALGOS)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="device of every algorithm (default: the family config's run.device)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (medians reported)")
    p.add_argument("--chunk-steps", type=int, default=5000,
                   help="env steps per timed chunk (at least one update)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    p.add_argument("--set", dest="ours", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for our algorithms, e.g. algo.num_steps=320")
    p.add_argument("--sb3-set", dest="sb3", action="append", default=[],
                   metavar="ALGO.KEY=VALUE",
                   help="hyperparameter override for one baseline, e.g. trpo.n_steps=128")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.num_envs < 1 or args.chunk_steps < 1:
        p.error("--rounds, --num-envs and --chunk-steps must be >= 1")
    bad = [item for item in args.sb3 if item.split(".", 1)[0] not in BASELINE_ALGOS]
    if bad:
        p.error(f"--sb3-set {bad[0]!r}: expected BASELINE.KEY=VALUE with BASELINE one of "
                f"{', '.join(BASELINE_ALGOS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    runners = {}
    for algo in args.algos:
        cls = OurRunner if algo in OUR_ALGOS else SB3Runner
        overrides = args.ours if algo in OUR_ALGOS else [
            item.split(".", 1)[1] for item in args.sb3 if item.split(".", 1)[0] == algo]
        runners[algo] = cls(algo, args.env, args.num_envs, args.device, overrides)
    batches = {n: r.batch for n, r in runners.items()}
    print(f"{args.env}, {args.num_envs} envs, torch threads {torch.get_num_threads()}, "
          f"batches {batches}")
    try:
        results = measure(runners, args.rounds, args.chunk_steps)
    finally:
        for r in runners.values():
            r.close()
    print()
    command = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    print(f"Medians over {args.rounds} rounds (command: python -m benchmarks.throughput "
          f"{command})")
    print(report(results, batches))


if __name__ == "__main__":
    main()
