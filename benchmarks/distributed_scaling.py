"""Scaling with the number of processes (torchrun, gloo on CPU): prints, does not assert.

Two measurements, each for every rank count in ``--ranks``:

* ``agent``: ``torchrun --nproc-per-node N train.py`` with a fixed total number of envs (each
  rank runs ``num_envs / N``) and a fixed budget; updates/s and env steps/s from the run's
  ``summary.json`` (training loop only, start-up excluded). The batch per update is the same
  for every N, so ideal scaling is N times the updates/s.
* ``kfac``: the K-FAC eigendecomposition refresh of an MLP (``--width`` x ``--layers``):
  seconds per refresh on each rank, where every rank decomposes only the blocks it owns and
  the results are broadcast (``acktr.distributed``). Ideal: 1/N of the 1-rank time.

Every rank is one process with one thread (``OMP_NUM_THREADS=1``); ranks beyond the machine's
cores share cores and cannot speed anything up.

    python -m benchmarks.distributed_scaling --ranks 1 2          (from the repository root)
    python -m benchmarks.distributed_scaling agent --env CartPole-v1 --num-envs 8 --timesteps 40k
    python -m benchmarks.distributed_scaling kfac --width 512 --layers 4
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(n: int, args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={n}",
           f"--master-port={_free_port()}", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return out


def agent(ranks: list[int], env: str, algo: str, num_envs: int, timesteps: str,
          overrides: list[str]) -> None:
    print(f"agent: {algo} on {env}, {num_envs} envs in total, {timesteps} steps, "
          f"overrides {overrides or 'none'}")
    print(f"{'ranks':>5} {'envs/rank':>9} {'updates/s':>10} {'env steps/s':>12} {'speedup':>8}")
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        for n in ranks:
            sets = [a for kv in overrides for a in ("--set", kv)]
            _torchrun(n, [str(ROOT / "train.py"), "--env", env, "--algo", algo, "--num-envs",
                          str(num_envs), "--timesteps", timesteps, "--device", "cpu",
                          "--logdir", tmp, "--run-name", f"n{n}", "--no-progress",
                          "--no-tensorboard", "--set", "run.eval_episodes=0", *sets])
            s = json.loads((Path(tmp) / f"n{n}" / "summary.json").read_text())
            ups = s["updates"] / s["wall_seconds"]
            base = base or ups
            print(f"{n:>5} {num_envs // n:>9} {ups:>10.1f} {s['fps']:>12.0f} "
                  f"{ups / base:>7.2f}x")


def kfac(ranks: list[int], width: int, layers: int, repeats: int) -> None:
    print(f"kfac: refresh of a {layers}-layer MLP of width {width} (float32), "
          f"{repeats} refreshes")
    print(f"{'ranks':>5} {'blocks/rank':>11} {'s/refresh':>10} {'speedup':>8}")
    base = None
    for n in ranks:
        out = _torchrun(n, ["-m", "benchmarks.distributed_scaling", "_kfac_worker",
                            "--width", str(width), "--layers", str(layers),
                            "--repeats", str(repeats)])
        res = json.loads(out.stdout.strip().splitlines()[-1])
        base = base or res["seconds"]
        print(f"{n:>5} {res['blocks']:>11} {res['seconds']:>10.4f} {base / res['seconds']:>7.2f}x")


def _kfac_worker(width: int, layers: int, repeats: int) -> None:
    import torch
    import torch.distributed as dist
    from torch import nn

    import acktr

    torch.set_num_threads(1)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(layers) for m in (nn.Linear(width, width),
                                                               nn.Tanh())])
    pre = acktr.KFACPreconditioner(model)
    x = torch.randn(256, width)
    out = model(x)
    with pre.record_stats():
        acktr.fisher_loss(out, "gaussian").backward()
    pre.refresh()  # warm-up (and the ownership)
    times = []
    for _ in range(repeats):
        if dist.is_initialized():
            dist.barrier()
        start = time.perf_counter()
        pre.refresh()
        times.append(time.perf_counter() - start)
    times_t = torch.tensor(times)
    if dist.is_initialized():  # the slowest rank sets the pace
        dist.all_reduce(times_t, op=dist.ReduceOp.MAX)
    owned = len(pre._sharding.owned) if pre._sharding is not None else len(pre.blocks)
    if not dist.is_initialized() or dist.get_rank() == 0:
        print(json.dumps({"seconds": float(times_t.median()), "blocks": owned}))
    if dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("what", nargs="?", default="both", choices=["both", "agent", "kfac",
                                                                "_kfac_worker"])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="process counts")
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--algo", default="acktr", choices=["acktr", "a2c"])
    p.add_argument("--num-envs", type=int, default=8, help="envs in total (divided over ranks)")
    p.add_argument("--timesteps", default="40k")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the agent runs (repeatable)")
    p.add_argument("--width", type=int, default=512, help="kfac: MLP width")
    p.add_argument("--layers", type=int, default=4, help="kfac: number of Linear layers")
    p.add_argument("--repeats", type=int, default=5, help="kfac: timed refreshes")
    a = p.parse_args(argv)
    if a.what == "_kfac_worker":
        _kfac_worker(a.width, a.layers, a.repeats)
        return
    print(f"machine: {os.cpu_count()} CPU cores; one thread per rank")
    if a.what in ("both", "agent"):
        agent(a.ranks, a.env, a.algo, a.num_envs, a.timesteps, a.overrides)
    if a.what in ("both", "kfac"):
        kfac(a.ranks, a.width, a.layers, a.repeats)


if __name__ == "__main__":
    main()
