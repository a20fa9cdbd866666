"""The ranks of a multi-process test: spawning them, and joining them with one deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch.multiprocessing as mp


def spawn_ranks(
    target: Callable[..., None], world: int, *args: object, join_timeout: float | None = None
) -> list:
    """Start ``target(rank, *args)`` for ``rank`` in ``range(world)``, each in a spawned process
    (``target`` must be importable: a module-level function); with ``join_timeout``, join them."""
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=(r, *args)) for r in range(world)]
    for p in procs:
        p.start()
    if join_timeout is not None:
        join_ranks(procs, join_timeout)
    return procs


def join_ranks(procs: list, timeout: float) -> None:
    """Join every process within ``timeout`` seconds in all; kill the rest and fail (a hang)."""
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0.1))
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.kill()
    assert not alive, f"{len(alive)} rank(s) still running after {timeout}s: hang"
