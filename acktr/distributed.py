"""K-FAC across processes (``torch.distributed``): the collectives K-FAC performs.

Data-parallel K-FAC (Ba, Grosse & Martens 2017, REFERENCE section 3) on ``R`` ranks, each with
its own mini-batch of ``B`` examples:

* gradients are averaged over ranks, as in any data-parallel training: a
  ``DistributedDataParallel`` model does it during ``backward()``; otherwise call
  :func:`average_gradients` after the training loss's backward and before ``step()``;
* every statistics step, each layer's fresh ``(A_new, G_new)`` is averaged over ranks in one
  all-reduce (:func:`reduce_statistics`) before the moving averages are updated. With equal
  per-rank batches the average of per-rank means is the mean over the ``R B`` examples, so the
  factors (and with averaged gradients, the step) equal a single process's with batch ``R B``;
* eigendecompositions (or inverses) are spread over ranks: each block has one owner, chosen by
  :func:`assign_owners` to balance the cost ``dim_A^3 + dim_G^3``; owners decompose, then
  :func:`exchange_decompositions` broadcasts each block's result from its owner, so the inverse
  cost per rank falls as ranks are added;
* :func:`check_replicas_in_sync` compares a fingerprint of the parameters across ranks at every
  refresh and raises if they drifted apart (gradients that were not averaged).

Every function is a no-op in a single process (no process group, or a world of size 1).

Which processes: every function takes ``group``, a :data:`GroupSpec`: ``"default"`` (the
default: torch.distributed's default group, whenever one is initialized), a
``torch.distributed.ProcessGroup`` (e.g. from ``dist.new_group``: only its members take part), or
``"local"``: this process alone, never a collective, whatever process group is running (a model
that one rank trains by itself inside a distributed job: an evaluation model, a per-rank
auxiliary model). ``None`` means the default group, as in torch.distributed's own functions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Literal, Union

import torch
import torch.distributed as dist
from torch import Tensor

from acktr.blocks import Decomposition, KroneckerBlock

GroupSpec = Union["dist.ProcessGroup", Literal["default", "local"], None]
"""Which processes K-FAC's collectives span: ``"default"`` (or None) for the default process
group when one is initialized, a ``ProcessGroup``, or ``"local"`` for this process alone."""


def check_group(group: GroupSpec) -> GroupSpec:
    """Validate a :data:`GroupSpec`; return it.

    Raises:
        ValueError: for anything but ``"default"``, ``"local"``, None or a ProcessGroup.
    """
    if group is None or (isinstance(group, str) and group in ("default", "local")):
        return group
    if dist.is_available() and isinstance(group, dist.ProcessGroup):
        return group
    raise ValueError(
        "process_group must be 'default' (the default process group when one is initialized), "
        f"'local' (this process alone) or a torch.distributed.ProcessGroup, got {group!r}"
    )


def _pg(group: GroupSpec) -> dist.ProcessGroup | None:
    """The torch.distributed group argument for ``group`` (None: the default group)."""
    return None if group is None or isinstance(group, str) else group


def is_distributed(group: GroupSpec = "default") -> bool:
    """True when ``group`` spans more than one process: a process group is running, ``group``
    is not ``"local"``, and it has more than one rank."""
    if isinstance(group, str) and group == "local":
        return False
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(_pg(group)) > 1


def _comm_device(like: torch.device, group: GroupSpec = "default") -> torch.device:
    """Where a collective's buffer must live: NCCL needs CUDA tensors, gloo takes either."""
    if dist.get_backend(_pg(group)) == "nccl" and like.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return like


def reduce_statistics(stats: list[Tensor], group: GroupSpec = "default") -> list[Tensor]:
    """Average freshly computed curvature statistics over the ranks of ``group`` (no-op in one
    process, or for ``"local"``).

    Called once per statistics step, before the factors' moving averages are updated, with every
    layer's new statistics; they are flattened into one buffer so the reduction is a single
    collective. Gradients themselves are averaged by the usual data-parallel machinery (DDP, or
    :func:`average_gradients`).
    """
    if not stats or not is_distributed(group):
        return stats
    flat = torch.cat([s.reshape(-1) for s in stats])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=_pg(group))
    flat /= dist.get_world_size(_pg(group))
    out, offset = [], 0
    for s in stats:
        out.append(flat[offset : offset + s.numel()].view_as(s))
        offset += s.numel()
    return out


def average_gradients(params: Iterable[Tensor], group: GroupSpec = "default") -> None:
    """Average ``.grad`` over the ranks of ``group`` in place, in one all-reduce per dtype (no-op
    in one process, or for ``group="local"``).

    What ``DistributedDataParallel`` does during ``backward()``, for models that are not wrapped
    in it: call it after the training loss's backward and before the optimizer's ``step()``
    (and before gradient clipping, so every rank clips the same gradient). Parameters without a
    gradient are skipped; every rank must have gradients for the same parameters.
    """
    if not is_distributed(group):
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    by_dtype: dict[tuple[torch.dtype, torch.device], list[Tensor]] = {}
    for g in grads:
        by_dtype.setdefault((g.dtype, g.device), []).append(g)
    world = dist.get_world_size(_pg(group))
    for same in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in same])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=_pg(group))
        flat /= world
        offset = 0
        for g in same:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def decomposition_cost(block: KroneckerBlock) -> float:
    """The cost of refreshing a block, in flops up to a constant: ``dim_A^3 + dim_G^3``."""
    return float(block.dim_a) ** 3 + float(block.dim_g) ** 3


def assign_owners(costs: Mapping[str, float], world_size: int) -> dict[str, int]:
    """Give each block an owner rank, balancing the total cost per rank.

    Greedy longest-processing-time rule: blocks in decreasing cost (ties by name, so every rank
    computes the same assignment) each go to the rank with the least cost so far (ties: the
    lowest rank). Its makespan is at most ``4/3`` of the optimum (Graham 1969).

    Raises:
        ValueError: if ``world_size < 1``.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    load = [0.0] * world_size
    owners: dict[str, int] = {}
    for name in sorted(costs, key=lambda n: (-costs[n], n)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owners[name] = rank
        load[rank] += costs[name]
    return owners


class DecompositionSharding:
    """Which rank refreshes which block, and the exchange of the results.

    Built once per preconditioner from its blocks (whose shapes never change); all ranks of
    ``group`` build the same one. ``owned`` lists the blocks this rank decomposes; ranks are
    ranks within ``group``.
    """

    def __init__(self, blocks: Mapping[str, KroneckerBlock], group: GroupSpec = "default") -> None:
        self.group = group
        self.world_size = dist.get_world_size(_pg(group))
        self.rank = dist.get_rank(_pg(group))
        self.blocks = dict(blocks)
        self.owners = assign_owners(
            {n: decomposition_cost(b) for n, b in blocks.items()}, self.world_size
        )
        self.owned = [n for n in blocks if self.owners[n] == self.rank]

    def exchange(
        self, results: Mapping[str, Decomposition | None], method: str
    ) -> dict[str, Decomposition | None]:
        """Every block's decomposition, each broadcast from its owner (a collective); see
        :func:`exchange_decompositions`."""
        return exchange_decompositions(results, self.blocks, self.owners, method, self.group)


def update_sharding(
    current: DecompositionSharding | None, blocks: Mapping[str, KroneckerBlock],
    group: GroupSpec = "default",
) -> DecompositionSharding | None:
    """The sharding to use now: None in one process (or ``"local"``), else ``current`` (built
    anew if the process group changed since)."""
    if not is_distributed(group):
        return None
    if current is None or current.world_size != dist.get_world_size(_pg(group)):
        return DecompositionSharding(blocks, group)
    return current


def _layout(block: KroneckerBlock, method: str) -> list[tuple[int, ...]]:
    """Shapes of a decomposition's tensors, in the flat-buffer order: pi, flag, then eig/inv."""
    a, g = block.dim_a, block.dim_g
    body = [(a,), (a, a), (g,), (g, g)] if method == "eigen" else [(a, a), (g, g)]
    return [(), (), *body]


def exchange_decompositions(
    results: Mapping[str, Decomposition | None],
    blocks: Mapping[str, KroneckerBlock],
    owners: Mapping[str, int],
    method: str,
    group: GroupSpec = "default",
) -> dict[str, Decomposition | None]:
    """Broadcast each block's decomposition from its owner: one broadcast per owner rank
    (ranks within ``group``).

    ``results`` holds this rank's results for the blocks it owns; an owned block missing from
    it (or None: no statistics yet) is None on every rank. Results for blocks owned by other
    ranks are ignored. Each owner packs ``(pi, flag, d_A, Q_A, d_G, Q_G)`` (or ``(pi, flag,
    A_inv, G_inv)``) of all its blocks into one flat buffer in the blocks' dtype and broadcasts
    it; receivers unpack it. A failed refresh travels as its flag and, after one more
    collective that happens only when some flag is set (every rank sees the same flags), its
    message. The result of a block is bitwise the same on every rank.
    """
    pg = _pg(group)
    world = dist.get_world_size(pg)
    rank = dist.get_rank(pg)
    out: dict[str, Decomposition | None] = {}
    failed: dict[str, int] = {}
    for owner in range(world):
        names = [n for n in blocks if owners[n] == owner]
        if not names:
            continue
        dtype, device = blocks[names[0]].dtype, blocks[names[0]].device
        sizes = [[math.prod(s) for s in _layout(blocks[n], method)] for n in names]
        if owner == rank:
            parts = []
            for n in names:
                parts.extend(_pack(results.get(n), blocks[n], method))
            buf = torch.cat([p.reshape(-1).to(dtype=dtype, device=device) for p in parts])
        else:
            buf = torch.empty(sum(map(sum, sizes)), dtype=dtype, device=device)
        comm = buf.to(_comm_device(device, group))
        src = owner if pg is None else dist.get_global_rank(pg, owner)
        dist.broadcast(comm, src=src, group=pg)
        buf = comm.to(device)
        offset = 0
        for n, sz in zip(names, sizes, strict=True):
            chunk = buf[offset : offset + sum(sz)]
            offset += sum(sz)
            result = _unpack(chunk, blocks[n], method, sz)
            out[n] = result
            if result is not None and result.error is not None:
                failed[n] = owner
    if failed:
        messages = _failure_messages(results, failed, rank, group)
        for n in failed:
            out[n].error = messages[n]  # type: ignore[union-attr]
    return out


_OK, _FAILED, _MISSING = 0.0, 1.0, 2.0


def _pack(d: Decomposition | None, block: KroneckerBlock, method: str) -> list[Tensor]:
    if d is None or d.error is not None:  # placeholders of the right sizes; ignored
        flag = _MISSING if d is None else _FAILED
        pi = torch.ones(()) if d is None else d.pi
        return [pi, torch.tensor(flag), *(torch.zeros(s) for s in _layout(block, method)[2:])]
    body = d.eig if method == "eigen" else d.inv
    return [d.pi, torch.tensor(_OK), *body]  # type: ignore[misc]


def _unpack(
    chunk: Tensor, block: KroneckerBlock, method: str, sizes: list[int]
) -> Decomposition | None:
    shapes = _layout(block, method)
    parts, offset = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        parts.append(chunk[offset : offset + size].reshape(shape).clone())
        offset += size
    pi, flag, *body = parts
    if float(flag) == _MISSING:
        return None
    if float(flag) == _FAILED:
        return Decomposition(pi, error="failed")
    if method == "eigen":
        return Decomposition(pi, eig=tuple(body))  # type: ignore[arg-type]
    return Decomposition(pi, inv=tuple(body))  # type: ignore[arg-type]


def _failure_messages(
    results: Mapping[str, Decomposition | None], failed: Mapping[str, int], rank: int,
    group: GroupSpec = "default",
) -> dict[str, str]:
    """The error messages of failed refreshes, from their owners (all ranks call this)."""
    mine = {n: results[n].error for n in failed if failed[n] == rank}  # type: ignore[union-attr]
    gathered: list[dict | None] = [None] * dist.get_world_size(_pg(group))
    dist.all_gather_object(gathered, mine, group=_pg(group))
    messages: dict[str, str] = {}
    for owner, part in enumerate(gathered):
        for n, msg in (part or {}).items():
            messages[n] = f"on rank {owner}: {msg}"
    return messages


def _fingerprint(params: list[Tensor]) -> Tensor:
    """Two float64 numbers that differ between replicas whose parameters differ: the sum and a
    position-weighted sum (so that swapped values are caught too)."""
    total = torch.zeros((), dtype=torch.float64, device=params[0].device)
    weighted = torch.zeros_like(total)
    for i, p in enumerate(params):
        x = p.detach().to(torch.float64).reshape(-1)
        total = total + x.sum()
        w = torch.arange(1, x.numel() + 1, dtype=torch.float64, device=x.device) / x.numel()
        weighted = weighted + (i + 1) * (w * x).sum()
    return torch.stack([total, weighted])


def check_replicas_in_sync(
    params: Iterable[Tensor], step: int, rtol: float = 1e-6, group: GroupSpec = "default"
) -> None:
    """Raise on every rank if the parameters differ across the ranks of ``group`` (no-op in one
    process, or for ``"local"``).

    A cheap check (one all-reduce of 4 numbers) that data-parallel replicas did not drift
    apart, which happens when gradients are not averaged (neither DDP nor
    :func:`average_gradients`). K-FAC runs it at every refresh.

    Raises:
        RuntimeError: on every rank, naming the step, when the fingerprints differ by more than
            ``rtol`` (relative; default 1e-6).
    """
    if not is_distributed(group):
        return
    params = [p for p in params]
    if not params:
        return
    f = _fingerprint(params)
    both = torch.cat([f, -f]).to(_comm_device(f.device, group))
    dist.all_reduce(both, op=dist.ReduceOp.MAX, group=_pg(group))
    high, low = both[:2], -both[2:]
    spread = float((high - low).abs().max())
    scale = float(torch.maximum(high.abs(), low.abs()).max()) or 1.0
    if spread > rtol * scale:
        raise RuntimeError(
            f"K-FAC step {step}: the parameters differ across the {dist.get_world_size(_pg(group))}"
            " ranks "
            f"(relative spread {spread / scale:.3g}): gradients were not averaged. Wrap the model "
            "in torch.nn.parallel.DistributedDataParallel, or call "
            "acktr.distributed.average_gradients(model.parameters()) after backward()"
        )


def group_mean(values: list[float] | list[Tensor], group: GroupSpec = "default") -> list:
    """The mean over the ranks of ``group`` of each value (floats, or tensors of any shape), in
    one all-reduce; the values themselves in one process (or for ``"local"``)."""
    if not values or not is_distributed(group):
        return list(values)
    tensors = [v if isinstance(v, Tensor) else torch.tensor(float(v), dtype=torch.float64)
               for v in values]
    like = tensors[0]
    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
    flat = flat.to(_comm_device(like.device, group))
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=_pg(group))
    flat = flat.to(like.device) / dist.get_world_size(_pg(group))
    out, offset = [], 0
    for v, t in zip(values, tensors, strict=True):
        chunk = flat[offset : offset + t.numel()].view_as(t)
        offset += t.numel()
        out.append(float(chunk) if not isinstance(v, Tensor) else chunk.to(t.dtype))
    return out
