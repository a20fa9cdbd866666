"""ACKTR / A2C on several processes: ``torchrun --nproc-per-node N train.py ...``.

Data parallel (REFERENCE section 3): every rank runs ``env.num_envs / N`` of the run's
environments, computes the loss on its own rollout and averages gradients (and K-FAC's curvature
statistics, :mod:`acktr.distributed`) with the others, so the update is the one a single
process would take on the whole batch of ``env.num_envs * algo.num_steps`` transitions.

* **Seeds.** Environment ``i`` of the run (rank ``i // local_envs``) is seeded with
  ``run.seed + i``, as in one process: a 2-rank run steps the same environments as a 1-rank
  run with the same ``env.num_envs``. Torch's generator (action sampling, Fisher samples) is
  seeded with ``run.seed + rank * RANK_SEED_OFFSET`` after the network is built (networks are
  built from ``run.seed`` on every rank and then broadcast from rank 0).
* **Rank 0** writes the run directory: config, logs (episode returns gathered from every rank
  each update; losses are rank 0's), ``checkpoint.pt`` (model, optimizers, counters and its
  own environments), the evaluation and ``summary.json``. Rank ``r > 0`` writes only
  ``checkpoint.rank<r>.pt``: its environments' snapshot, observation, normalization statistics
  and RNG streams, so ``--resume`` continues every rank exactly.
* **Errors.** Configurations are compared across ranks (a hash of the resolved config); a
  world size that does not divide ``env.num_envs``, a backend that is not available, or
  different configs are errors on every rank. The process group has a timeout
  (``ACKTR_DIST_TIMEOUT_S``, default 300 s): a rank that dies or stops answering makes the
  others fail with a clear error instead of hanging.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn

from agents.checkpoint import CHECKPOINT_NAME, save_checkpoint
from agents.config import Config, config_to_dict
from agents.returns import standardize

RANK_SEED_OFFSET = 1_000_003
"""Rank ``r``'s torch generator is seeded with ``run.seed + r * RANK_SEED_OFFSET``."""
DEFAULT_TIMEOUT_S = 300.0
"""Process-group timeout when ``ACKTR_DIST_TIMEOUT_S`` is not set."""
TIMEOUT_VARIABLE = "ACKTR_DIST_TIMEOUT_S"
BACKEND_VARIABLE = "ACKTR_DIST_BACKEND"
# What a rank other than 0 keeps in its own checkpoint file (the rest is in checkpoint.pt).
RANK_KEYS = ("env", "env_snapshot", "env_snapshot_missing", "obs", "rng", "progress")


class DistributedError(RuntimeError):
    """A rank lost contact with the others (one failed, or stopped answering in time)."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job. The default is a single process.

    Attributes:
        rank: this process's rank (0 ... world_size - 1). Default 0.
        world_size: number of processes. Default 1.
        local_rank: rank on this machine (selects the GPU). Default 0.
        backend: ``"gloo"`` or ``"nccl"``; None for a single process.
        timeout_s: the process group's timeout in seconds.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def enabled(self) -> bool:
        """True with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the one that logs, evaluates and writes the run directory."""
        return self.rank == 0

    def local_envs(self, cfg: Config) -> int:
        """Environments this rank runs: ``env.num_envs / world_size`` (checked to divide)."""
        return local_env_count(cfg.env.num_envs, self.world_size)

    def env_seed(self, cfg: Config) -> int:
        """Seed of this rank's first environment: ``run.seed + rank * local_envs``."""
        return cfg.run.seed + self.rank * self.local_envs(cfg)

    def place(self, device: torch.device) -> torch.device:
        """A CUDA device becomes this rank's GPU, ``cuda:LOCAL_RANK``; CPU stays CPU."""
        if device.type == "cuda" and self.enabled:
            return torch.device("cuda", self.local_rank)
        return device

    def describe(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


SINGLE = DistContext()


def local_env_count(num_envs: int, world_size: int) -> int:
    """``num_envs / world_size``.

    Raises:
        ValueError: if ``world_size`` does not divide ``num_envs``, naming both and the env
            counts that would work.
    """
    if num_envs % world_size:
        options = sorted({world_size * k for k in (num_envs // world_size, num_envs // world_size
                                                     + 1) if k >= 1})
        raise ValueError(
            f"env.num_envs={num_envs} is not divisible by the world size {world_size}: every "
            f"rank runs env.num_envs / world_size environments; use e.g. --num-envs "
            f"{' or '.join(map(str, options))}, or --nproc-per-node that divides {num_envs}"
        )
    return num_envs // world_size


# ---------------------------------------------------------------------------- setup
def _int_var(environ: Mapping[str, str], name: str) -> int:
    value = environ.get(name)
    if value is None:
        raise ValueError(
            f"{name} is not set but WORLD_SIZE={environ.get('WORLD_SIZE')} is: launch several "
            "processes with torchrun (it sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, "
            "MASTER_PORT), e.g. `torchrun --nproc-per-node 2 train.py ...`"
        )
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not an integer") from None


def choose_backend(requested: str, device: torch.device) -> str:
    """``"auto"``: NCCL for CUDA devices, gloo for CPU; check the choice is usable.

    Raises:
        ValueError: unknown name, or a backend this torch build or machine cannot run (NCCL
            without CUDA or on a CPU device; torch without distributed support).
    """
    if not dist.is_available():
        raise ValueError("this torch build has no torch.distributed support; run one process")
    if requested not in ("auto", "gloo", "nccl"):
        raise ValueError(f"distributed backend must be 'auto', 'gloo' or 'nccl', got "
                         f"{requested!r} (from {BACKEND_VARIABLE})")
    backend = requested if requested != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl":
        if not dist.is_nccl_available() or not torch.cuda.is_available():
            raise ValueError(
                "distributed backend 'nccl' is not available (it needs a CUDA build of torch "
                "and GPUs); use gloo (--device cpu, or ACKTR_DIST_BACKEND=gloo)"
            )
        if device.type != "cuda":
            raise ValueError("distributed backend 'nccl' needs --device cuda (or auto on a GPU "
                             "machine); use gloo for CPU runs")
    elif not dist.is_gloo_available():
        raise ValueError("distributed backend 'gloo' is not available in this torch build")
    return backend


def init_from_env(
    device: torch.device, environ: Mapping[str, str] | None = None
) -> DistContext:
    """Join the process group torchrun describes in the environment, or stay single.

    Reads ``WORLD_SIZE`` (absent or 1: a single process, nothing initialized), ``RANK``,
    ``LOCAL_RANK`` (and, through ``env://``, ``MASTER_ADDR`` / ``MASTER_PORT``), the backend
    from ``ACKTR_DIST_BACKEND`` (default ``auto``: NCCL on CUDA, gloo on CPU) and the timeout
    from ``ACKTR_DIST_TIMEOUT_S`` (default 300 s). On CUDA, selects GPU ``LOCAL_RANK``.

    Raises:
        ValueError: malformed variables, an unavailable backend, too few GPUs.
    """
    environ = os.environ if environ is None else environ
    world = int(environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SINGLE
    rank, local_rank = _int_var(environ, "RANK"), _int_var(environ, "LOCAL_RANK")
    timeout = float(environ.get(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_S))
    if timeout <= 0:
        raise ValueError(f"{TIMEOUT_VARIABLE} must be > 0 seconds, got {timeout}")
    backend = choose_backend(environ.get(BACKEND_VARIABLE, "auto"), device)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local_rank} needs GPU {local_rank} but this machine has "
                f"{torch.cuda.device_count()}: one rank per GPU (--nproc-per-node <= GPUs)"
            )
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout), rank=rank,
                            world_size=world)
    return DistContext(rank, world, local_rank, backend, timeout)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (if this process joined one)."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def config_digest(cfg: Config) -> str:
    """sha256 of the resolved config (sorted YAML): equal configs, equal digests."""
    text = yaml.safe_dump(config_to_dict(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def check_same_config(cfg: Config, ctx: DistContext) -> None:
    """Raise on every rank unless every rank resolved the same config (a collective).

    Raises:
        ValueError: naming the ranks whose config differs from rank 0's and the keys.
    """
    if not ctx.enabled:
        return
    digest = bytes.fromhex(config_digest(cfg))
    mine = torch.tensor(list(digest), dtype=torch.int64, device=_comm_device(ctx))
    gathered = [torch.empty_like(mine) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, mine)
    bad = [r for r, g in enumerate(gathered) if not torch.equal(g, gathered[0])]
    if not bad:
        return
    configs: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(configs, _flatten(config_to_dict(cfg)))
    keys = sorted({k for r in bad for k in configs[0].keys() | configs[r].keys()
                   if configs[0].get(k) != configs[r].get(k)})
    raise ValueError(
        f"{ctx.describe()}: the resolved config differs across ranks (ranks {bad} differ from "
        f"rank 0 in {', '.join(keys)}); launch every rank with the same command and config"
    )


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def setup(cfg: Config, device: torch.device) -> DistContext:
    """:func:`init_from_env`, then the checks every rank must pass: same config everywhere and
    a world size that divides ``env.num_envs`` (errors on every rank)."""
    ctx = init_from_env(device)
    try:
        check_same_config(cfg, ctx)
        ctx.local_envs(cfg)
    except BaseException:
        shutdown(ctx)
        raise
    return ctx


# ---------------------------------------------------------------------------- collectives
def _comm_device(ctx: DistContext) -> torch.device:
    return torch.device("cuda", ctx.local_rank) if ctx.backend == "nccl" else torch.device("cpu")


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (a picklable object, e.g. the run directory)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sync_module(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers to every rank (replicas start identical)."""
    if not ctx.enabled:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def seed_rank(cfg: Config, ctx: DistContext) -> None:
    """Seed this rank's torch generators with ``run.seed + rank * RANK_SEED_OFFSET`` (rank 0
    keeps the stream a single process has)."""
    if ctx.rank > 0:
        torch.manual_seed(cfg.run.seed + ctx.rank * RANK_SEED_OFFSET)


def gather_episodes(
    returns: list[float], lengths: list[int], stop: bool, ctx: DistContext
) -> tuple[list[float], list[int], bool]:
    """Every rank's finished episodes (in rank order) and whether any rank wants to stop,
    so all ranks log the same episodes and stop after the same update (one collective)."""
    if not ctx.enabled:
        return returns, lengths, stop
    parts: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(parts, (returns, lengths, stop))
    all_returns = [x for r, _, _ in parts for x in r]
    all_lengths = [x for _, n, _ in parts for x in n]
    return all_returns, all_lengths, any(s for _, _, s in parts)


def mean_over_ranks(value: float) -> float:
    """The average of a float over ranks (e.g. the policy's KL for the step-size rule)."""
    if not _enabled():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_default_comm_device())
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def standardize_over_ranks(x: Tensor, eps: float = 1e-8) -> Tensor:
    """``(x - mean) / (std + eps)`` with the mean and (unbiased) std of the entries of ``x``
    on every rank together: what a single process computes on the whole batch."""
    if not _enabled():
        return standardize(x, eps)
    xd = x.detach().double()
    moments = torch.stack([xd.sum(), (xd * xd).sum(), torch.tensor(float(x.numel()),
                                                                     device=x.device)])
    comm = moments.to(_default_comm_device())
    dist.all_reduce(comm)
    total, total_sq, n = comm.to(x.device).unbind()
    mean = total / n
    var = (total_sq - n * mean * mean) / (n - 1)
    return (x - mean.to(x.dtype)) / (var.clamp_min(0).sqrt().to(x.dtype) + eps)


def _enabled() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _default_comm_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# ---------------------------------------------------------------------------- checkpoints
def rank_checkpoint_path(run_dir: Path, rank: int) -> Path:
    """Rank ``r > 0``'s own checkpoint file: ``checkpoint.rank<r>.pt``."""
    return Path(run_dir) / f"checkpoint.rank{rank}.pt"


def save_checkpoints(state: dict[str, Any], run_dir: Path, ctx: DistContext) -> None:
    """Rank 0 writes ``checkpoint.pt``; every other rank its environments and RNG streams.

    The other ranks write first and rank 0 only after a barrier, so a ``checkpoint.pt`` is
    never newer than the rank files (they carry the update index, checked on resume); a
    second barrier makes every rank return only once ``checkpoint.pt`` is written.
    """
    if not ctx.enabled:
        save_checkpoint(state, run_dir / CHECKPOINT_NAME)
        return
    if not ctx.is_main:
        save_checkpoint({k: state[k] for k in RANK_KEYS}, rank_checkpoint_path(run_dir, ctx.rank))
    dist.barrier()
    if ctx.is_main:
        save_checkpoint({**state, "world_size": ctx.world_size}, run_dir / CHECKPOINT_NAME)
    dist.barrier()


def rank_checkpoint(ckpt: dict[str, Any], run_dir: Path, ctx: DistContext) -> dict[str, Any]:
    """The checkpoint this rank resumes from: rank 0's ``checkpoint.pt`` with, on rank ``r > 0``,
    its own environments, observation and RNG streams from its rank file.

    A rank file that is missing or from another update leaves the rank without an env
    snapshot: it resumes from fresh seeded episodes, with a warning (see the trainer).

    Raises:
        ValueError: on every rank, if the checkpoint was written by a different world size.
    """
    written_by = int(ckpt.get("world_size", 1))
    if written_by != ctx.world_size:
        raise ValueError(
            f"the checkpoint in {run_dir} was written by a {written_by}-process run; resume "
            f"with the same number of processes (torchrun --nproc-per-node {written_by}), not "
            f"{ctx.world_size}"
        )
    if ctx.is_main:
        return ckpt
    from agents.checkpoint import load_checkpoint

    path = rank_checkpoint_path(run_dir, ctx.rank)
    update = ckpt["progress"]["update"]
    why = None
    if not path.is_file():
        why = f"{path.name} is missing"
    else:
        mine = load_checkpoint(path, required=RANK_KEYS)
        if mine["progress"]["update"] != update:
            why = (f"{path.name} is from update {mine['progress']['update']}, checkpoint.pt "
                   f"from update {update}")
    if why is not None:
        warnings.warn(f"{ctx.describe()}: {why}", RuntimeWarning, stacklevel=2)
        return {**ckpt, "env_snapshot": None, "obs": None,
                "env_snapshot_missing": f"{ctx.describe()} has no env state ({why})"}
    return {**ckpt, **{k: mine[k] for k in RANK_KEYS if k != "progress"}}


# ---------------------------------------------------------------------------- failures
def _is_communication_error(err: BaseException) -> bool:
    if isinstance(err, getattr(dist, "DistError", ())):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(
        s in text for s in ("gloo", "Gloo", "NCCL", "Connection closed", "Timed out",
                            "Connection reset", "Broken pipe")
    )


@contextmanager
def peer_failures(ctx: DistContext) -> Iterator[None]:
    """Turn a failed collective into a :class:`DistributedError` saying what happened."""
    try:
        yield
    except RuntimeError as err:
        if not ctx.enabled or not _is_communication_error(err):
            raise
        raise DistributedError(
            f"{ctx.describe()}: lost contact with the other ranks: one of them failed (see its "
            f"error) or did not answer within the process-group timeout of {ctx.timeout_s:g} s "
            f"({TIMEOUT_VARIABLE}). Original error: {str(err).splitlines()[0][:300]}"
        ) from err


class NullLogger:
    """What ranks other than 0 log with: nothing."""

    writer = None

    def log(self, step: int, row: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass
