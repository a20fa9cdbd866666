"""Where curvature statistics meet across processes: the one reduction K-FAC performs."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a ``torch.distributed`` process group with more than one rank is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def reduce_statistics(stats: list[Tensor]) -> list[Tensor]:
    """Average freshly computed curvature statistics over all ranks (no-op in one process).

    Called once per statistics step, before the factors' moving averages are updated, with every
    layer's new statistics; they are flattened into one buffer so the reduction is a single
    collective. Gradients themselves are averaged by the usual data-parallel machinery (DDP).
    """
    if not stats or not is_distributed():
        return stats
    flat = torch.cat([s.reshape(-1) for s in stats])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    out, offset = [], 0
    for s in stats:
        out.append(flat[offset : offset + s.numel()].view_as(s))
        offset += s.numel()
    return out
