"""K-FAC's ``process_group``: a rank-local model inside a running distributed job, and sub-groups.

Real processes (2 ranks, gloo, file store), as in ``test_distributed.py``. Each rank trains
models that the other rank never sees (``process_group="local"``), for a different number of
steps: with collectives this would hang or mix the ranks' statistics; a rank-local K-FAC must
instead equal the same run in a single process without any process group.
"""

from __future__ import annotations

import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

import acktr
from acktr.distributed import check_group, is_distributed
from tests.spawn import spawn_ranks

WORLD = 2
B = 6
JOIN_TIMEOUT_S = 90


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


def _batch(step: int, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(1000 * seed + step)
    x = torch.randn(B, 5, generator=g, dtype=torch.float64)
    y = torch.randn(B, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(B, 3, generator=g, dtype=torch.float64)
    return x, y, eps


def train_local(kind: str, seed: int, steps: int, group) -> dict:
    """Train ``_model()`` on data only this process sees, with K-FAC on ``group``."""
    model = _model()
    kw = dict(damping=0.05, stat_decay=0.9, inverse_every=3, process_group=group)
    if kind == "precond":
        pre = acktr.KFACPreconditioner(model, **kw)
        sgd = torch.optim.SGD(model.parameters(), lr=0.3)
    else:
        opt = acktr.KFAC(model, lr=0.3, momentum=0.5, async_inverse=kind == "kfac_async", **kw)
        pre = opt.preconditioner
    for step in range(steps):
        x, y, eps = _batch(step, seed)
        out = model(x)
        with pre.record_stats():
            (0.5 * (out - (out.detach() + eps)).pow(2).sum(-1).mean()).backward(retain_graph=True)
        model.zero_grad()
        (0.5 * (out - y).pow(2).sum(-1).mean()).backward()
        if kind == "precond":
            pre.step()
            sgd.step()
        else:
            opt.step()
    return {"params": [p.detach().clone() for p in model.parameters()],
            "A": {n: b.A.clone() for n, b in pre.blocks.items()}}


def _worker(rank: int, out_dir: str) -> None:
    out = Path(out_dir)
    try:
        dist.init_process_group("gloo", init_method=f"file://{out / 'store'}", rank=rank,
                                world_size=WORLD, timeout=timedelta(seconds=20))
        whole = dist.new_group([0, 1])
        results = {
            # each rank alone, with its own data and a different number of steps
            k: train_local(k, seed=rank, steps=5 + 2 * rank, group="local")
            for k in ("kfac", "kfac_async", "precond")
        }
        results["distributed_flag"] = torch.tensor(
            [is_distributed(), is_distributed("local"), is_distributed(whole)])
        # a sub-group object spanning both ranks behaves as the default group
        results["subgroup"] = train_local("kfac", seed=7, steps=4, group=whole)
        results["default"] = train_local("kfac", seed=7, steps=4, group="default")
        torch.save(results, out / f"rank{rank}.pt")
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:
        (out / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


@pytest.mark.medium
def test_rank_local_kfac_inside_a_running_group_equals_a_single_process_run(tmp_path):
    spawn_ranks(_worker, WORLD, str(tmp_path), join_timeout=JOIN_TIMEOUT_S)
    errors = "\n".join(p.read_text() for p in tmp_path.glob("rank*.err"))
    assert not errors, errors
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    assert not dist.is_initialized()
    for rank, got in enumerate(ranks):
        assert got["distributed_flag"].tolist() == [True, False, True]
        for kind in ("kfac", "kfac_async", "precond"):
            ref = train_local(kind, seed=rank, steps=5 + 2 * rank, group="default")
            for p, q in zip(got[kind]["params"], ref["params"], strict=True):
                assert torch.equal(p, q), (rank, kind)  # bitwise: nothing crossed processes
            for name in ref["A"]:
                assert torch.equal(got[kind]["A"][name], ref["A"][name])
    # the explicit group spanning both ranks = the default group (same data on both ranks)
    for rank in range(WORLD):
        for p, q in zip(ranks[rank]["subgroup"]["params"], ranks[rank]["default"]["params"],
                        strict=True):
            torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bad", ["world", 0, "LOCAL"])
def test_invalid_process_group_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="process_group must be 'default'.*'local'.*ProcessGroup"):
        acktr.KFAC(_model(), process_group=bad)
    with pytest.raises(ValueError, match="process_group must be"):
        acktr.KFACPreconditioner(_model(), process_group=bad)


def test_group_specs_without_a_process_group():
    for spec in ("default", "local", None):
        assert check_group(spec) == spec
        assert not is_distributed(spec)
