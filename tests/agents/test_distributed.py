"""ACKTR on several processes: torchrun runs of train.py, exact resume, consensus Ctrl-C, config
checks and failures (2 ranks, gloo, CPU). Every process start has a timeout."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import agents.trainer as trainer
from agents.config import load_config
from agents.distributed import (
    DistContext,
    DistributedError,
    check_same_config,
    choose_backend,
    init_from_env,
    local_env_count,
    rank_checkpoint_path,
    standardize_over_ranks,
)
from agents.returns import standardize
from tests.spawn import spawn_ranks

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
WORLD = 2
TIMEOUT_S = 120
CARTPOLE = ["env.num_envs=4", "algo.num_steps=8", "run.eval_episodes=0", "run.log_interval=1",
            "run.device=cpu", "run.total_timesteps=320"]  # 10 updates of 4 x 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={WORLD}",
           f"--master-port={_free_port()}", str(ROOT / "train.py"), *args]
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "ACKTR_DIST_TIMEOUT_S": "30", **env}
    return subprocess.run(cmd, cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def _rows(run_dir: Path) -> list[dict]:
    with (run_dir / "progress.csv").open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r.pop("time/time_elapsed"), r.pop("time/fps")
    return rows


# ---------------------------------------------------------------------------- torchrun
@pytest.mark.medium
def test_torchrun_cartpole_writes_one_run_dir_and_resumes(tmp_path):
    sets = [a for kv in CARTPOLE for a in ("--set", kv)]
    args = ["--env", "CartPole-v1", "--logdir", str(tmp_path), "--run-name", "r", "--no-progress",
            *sets, "--set", "run.checkpoint_every=5"]
    first = _torchrun(args, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("run directory:") == 1  # rank 0 speaks
    run_dir = tmp_path / "r"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]
    names = {p.name for p in run_dir.iterdir()}
    assert {"config.yaml", "progress.csv", "checkpoint.pt", "checkpoint.rank1.pt",
            "summary.json"} <= names
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["world_size"] == 2 and ckpt["progress"]["update"] == 10
    assert ckpt["progress"]["timesteps"] == 320  # the sum over ranks: 2 x (2 envs x 8 steps)
    mine = torch.load(rank_checkpoint_path(run_dir, 1), weights_only=True)
    assert mine["progress"]["update"] == 10 and mine["env_snapshot"] is not None
    assert [int(r["time/iterations"]) for r in _rows(run_dir)] == list(range(1, 11))

    resumed = _torchrun(["--resume", str(run_dir), "--timesteps", "480", "--no-progress"],
                        tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" not in resumed.stderr  # both ranks restored their env snapshots
    rows = _rows(run_dir)
    assert [int(r["time/iterations"]) for r in rows] == list(range(1, 16))
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["progress"]["update"] == 15


@pytest.mark.medium
def test_torchrun_bad_world_size_and_backend_are_errors_on_every_rank(tmp_path):
    bad = _torchrun(["--num-envs", "3", "--logdir", str(tmp_path), "--no-progress"], tmp_path)
    assert bad.returncode != 0
    msg = "env.num_envs=3 is not divisible by the world size 2"
    assert (bad.stdout + bad.stderr).count(msg) == WORLD, bad.stderr[-3000:]
    nccl = _torchrun(["--logdir", str(tmp_path), "--no-progress", "--timesteps", "256"], tmp_path,
                     ACKTR_DIST_BACKEND="nccl")
    assert nccl.returncode != 0
    assert (nccl.stdout + nccl.stderr).count("backend 'nccl' is not available") == WORLD
    assert not list(tmp_path.glob("*/checkpoint.pt"))


# ---------------------------------------------------------------------------- spawned ranks
def _worker(rank: int, out: str, job: str) -> None:
    out_dir = Path(out)
    try:
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{out_dir / 'store'}", rank=rank,
                                world_size=WORLD, timeout=timedelta(seconds=8))
        ctx = DistContext(rank, WORLD, rank, "gloo", 8)
        JOBS[job](rank, out_dir, ctx)
        dist.destroy_process_group()
    except BaseException as e:
        (out_dir / f"rank{rank}.err").write_text(f"{type(e).__name__}: {e}\n"
                                                 + traceback.format_exc())


def _train(ctx: DistContext, run_dir: Path, resume: bool = False, *extra: str) -> dict:
    cfg = load_config(CONFIGS / "classic.yaml", [*CARTPOLE, *extra])
    return trainer.train(cfg, run_dir, resume=resume, progress_bar=False, tensorboard=False,
                         dist=ctx)


ASYNC = "kfac.async_inverse=true"  # the in-flight decomposition is part of the checkpoint


def _job_resume(rank: int, out: Path, ctx: DistContext) -> None:
    _train(ctx, out / "full", False, ASYNC)
    real = trainer.update
    calls = {"n": 0}

    def ctrl_c_on_rank_1(*args, **kwargs):  # Ctrl-C reaches rank 1 only, during update 4
        calls["n"] += 1
        if rank == 1 and calls["n"] == 4:
            signal.raise_signal(signal.SIGINT)
        return real(*args, **kwargs)

    trainer.update = ctrl_c_on_rank_1
    summary = _train(ctx, out / "split", False, ASYNC)
    trainer.update = real
    (out / f"stopped{rank}.txt").write_text(f"{summary['interrupted']} {summary['updates']}")
    _train(ctx, out / "split", True, ASYNC)


def _job_config(rank: int, out: Path, ctx: DistContext) -> None:
    cfg = load_config(CONFIGS / "classic.yaml", [*CARTPOLE, f"kfac.damping={0.01 * (1 + rank)}"])
    try:
        check_same_config(cfg, ctx)
    except ValueError as e:
        (out / f"rank{rank}.txt").write_text(str(e))


def _job_crash(rank: int, out: Path, ctx: DistContext) -> None:
    real = trainer.update

    def crash_on_rank_1(*args, **kwargs):
        if rank == 1 and trainer.update.calls == 3:
            raise SystemExit(3)
        trainer.update.calls += 1
        return real(*args, **kwargs)

    crash_on_rank_1.calls = 0
    trainer.update = crash_on_rank_1
    start = time.monotonic()
    try:
        _train(ctx, out / "crash")
    except DistributedError as e:
        (out / f"rank{rank}.txt").write_text(f"{time.monotonic() - start:.1f} {e}")


JOBS = {"resume": _job_resume, "config": _job_config, "crash": _job_crash}


def _spawn(tmp_path: Path, job: str) -> None:
    spawn_ranks(_worker, WORLD, str(tmp_path), job, join_timeout=TIMEOUT_S)


@pytest.mark.medium
def test_ctrl_c_on_one_rank_stops_all_and_resume_is_exact(tmp_path):
    _spawn(tmp_path, "resume")
    errors = [p.read_text() for p in tmp_path.glob("rank*.err")]
    assert not errors, errors
    # both ranks stop after the same update (4), though only rank 1 saw the Ctrl-C
    assert [(tmp_path / f"stopped{r}.txt").read_text() for r in range(WORLD)] == ["True 4"] * 2
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    split = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    assert full["progress"]["update"] == split["progress"]["update"] == 10
    for name, p in full["policy"].items():
        assert torch.equal(p, split["policy"][name]), name
    assert _rows(tmp_path / "full") == _rows(tmp_path / "split")


@pytest.mark.medium
def test_different_configs_are_an_error_on_every_rank(tmp_path):
    _spawn(tmp_path, "config")
    for r in range(WORLD):
        text = (tmp_path / f"rank{r}.txt").read_text()
        assert f"rank {r} of 2: the resolved config differs across ranks" in text
        assert "ranks [1] differ from rank 0 in kfac.damping" in text


@pytest.mark.medium
def test_a_crashed_rank_is_a_clear_error_on_the_other(tmp_path):
    _spawn(tmp_path, "crash")
    seconds, _, text = (tmp_path / "rank0.txt").read_text().partition(" ")
    assert text.startswith("rank 0 of 2: lost contact with the other ranks")
    assert float(seconds) < 60


# ---------------------------------------------------------------------------- in-process
def test_world_size_must_divide_the_env_count():
    assert local_env_count(8, 2) == 4
    with pytest.raises(ValueError, match=r"env.num_envs=7 is not divisible by the world size 2.*"
                       r"--num-envs 6 or 8"):
        local_env_count(7, 2)


def test_backend_choice_and_errors():
    assert choose_backend("auto", torch.device("cpu")) == "gloo"
    assert choose_backend("gloo", torch.device("cpu")) == "gloo"
    with pytest.raises(ValueError, match="must be 'auto', 'gloo' or 'nccl', got 'mpi'"):
        choose_backend("mpi", torch.device("cpu"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="backend 'nccl' is not available"):
            choose_backend("nccl", torch.device("cpu"))


def test_init_from_env_single_process_and_malformed_variables():
    assert not init_from_env(torch.device("cpu"), {}).enabled
    assert not init_from_env(torch.device("cpu"), {"WORLD_SIZE": "1"}).enabled
    with pytest.raises(ValueError, match="RANK is not set but WORLD_SIZE=2"):
        init_from_env(torch.device("cpu"), {"WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="LOCAL_RANK='x' is not an integer"):
        init_from_env(torch.device("cpu"), {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "x"})
    with pytest.raises(ValueError, match="ACKTR_DIST_TIMEOUT_S must be > 0"):
        init_from_env(torch.device("cpu"), {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0",
                                            "ACKTR_DIST_TIMEOUT_S": "0"})


def test_rank_seeds_and_envs():
    cfg = load_config(CONFIGS / "classic.yaml", ["env.num_envs=8", "run.seed=3"])
    ranks = [DistContext(r, 4, r, "gloo") for r in range(4)]
    assert [c.local_envs(cfg) for c in ranks] == [2] * 4
    assert [c.env_seed(cfg) for c in ranks] == [3, 5, 7, 9]  # env i of the run: seed + i
    assert DistContext().env_seed(cfg) == 3


def test_single_process_standardize_is_the_usual_one():
    x = torch.randn(50, dtype=torch.float64)
    assert torch.equal(standardize_over_ranks(x), standardize(x))
