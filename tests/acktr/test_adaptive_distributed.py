"""Adaptive K-FAC on 2 processes (gloo) equals one process with the whole batch.

Each rank evaluates the closure on its half of the batch; the optimizer averages the gradients,
the curvature products (the quadratic model) and the losses over the group, so ``(alpha, mu)``,
``lambda``, ``gamma`` and the parameters must equal a single process's with both halves. The
Fisher loss's sampled targets are replaced by fixed noise (the same examples get the same noise
in both runs), so the statistics agree too.
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
import acktr.adaptive
from tests.spawn import spawn_ranks

WORLD = 2
B = 8
STEPS = 6


def _data(step: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(50 + step)
    x = torch.randn(WORLD * B, 4, generator=g, dtype=torch.float64)
    y = torch.randn(WORLD * B, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(WORLD * B, 3, generator=g, dtype=torch.float64)
    return x, y, eps


def run(rank: int, world: int) -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    opt = acktr.KFAC(model, adaptive=acktr.AdaptiveSettings(damping_interval=2, gamma_interval=3),
                     inverse_every=2, loss_kind="gaussian")
    noise = {}

    def fixed_fisher_loss(out, kind):  # "sampled" targets from fixed noise
        return 0.5 * (out - (out.detach() + noise["eps"])).pow(2).sum(-1).mean()

    acktr.adaptive.fisher_loss = fixed_fisher_loss
    n = WORLD * B // world
    metrics = []
    for step in range(STEPS):
        x, y, eps = (t[rank * n : (rank + 1) * n] for t in _data(step))
        noise["eps"] = eps
        opt.step(lambda: 0.5 * (model(x) - y).pow(2).sum(-1).mean())  # noqa: B023
        m = opt.metrics()
        metrics.append([m[k] for k in ("alpha", "mu", "lambda", "gamma", "loss")])
    return {"params": [p.detach().clone() for p in model.parameters()],
            "metrics": torch.tensor(metrics, dtype=torch.float64)}


def _worker(rank: int, out_dir: str) -> None:
    out = Path(out_dir)
    try:
        dist.init_process_group("gloo", init_method=f"file://{out / 'store'}", rank=rank,
                                world_size=WORLD, timeout=timedelta(seconds=20))
        torch.save(run(rank, WORLD), out / f"rank{rank}.pt")
        dist.destroy_process_group()
    except BaseException:
        (out / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


@pytest.mark.medium
def test_adaptive_kfac_on_two_ranks_equals_one_process_with_the_whole_batch(tmp_path):
    spawn_ranks(_worker, WORLD, str(tmp_path), join_timeout=90)
    errors = "\n".join(p.read_text() for p in tmp_path.glob("rank*.err"))
    assert not errors, errors
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    saved = acktr.adaptive.fisher_loss
    try:
        single = run(0, 1)
    finally:
        acktr.adaptive.fisher_loss = saved
    for p, q in zip(ranks[0]["params"], ranks[1]["params"], strict=True):
        assert torch.equal(p, q)  # the replicas never drift apart
    assert torch.equal(ranks[0]["metrics"], ranks[1]["metrics"])
    torch.testing.assert_close(ranks[0]["metrics"], single["metrics"], rtol=1e-8, atol=1e-12)
    for p, q in zip(ranks[0]["params"], single["params"], strict=True):
        torch.testing.assert_close(p, q, rtol=1e-8, atol=1e-11)
