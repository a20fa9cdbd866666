"""Distributed K-FAC on real processes (2 ranks, gloo, CPU) against single-process runs.

Each multi-process test spawns 2 ranks (``torch.multiprocessing``, spawn start method) that
meet through a file store, run a scenario and save what they saw; the test compares it with the
same scenario run here in one process with the whole batch. Timeouts everywhere: the process
group's (a few seconds) and the join's, so a broken collective fails the test instead of
hanging it.
"""

from __future__ import annotations

import os
import time
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

import acktr
from acktr.blocks import Decomposition, KroneckerBlock, decompose_factors
from acktr.distributed import (
    assign_owners,
    average_gradients,
    check_replicas_in_sync,
    exchange_decompositions,
    is_distributed,
    reduce_statistics,
)
from acktr.layers import helper_for
from tests.spawn import spawn_ranks

WORLD = 2
B = 6  # examples per rank; the single-process reference uses WORLD * B
STEPS = 7
JOIN_TIMEOUT_S = 90
PEER_TIMEOUT_S = 4  # the process group's timeout in the failure tests


# ---------------------------------------------------------------------------- scenarios
def _model() -> nn.Module:
    torch.manual_seed(0)
    # Blocks' decomposition costs dim_A^3 + dim_G^3: 559, 576, 152 -> owners {1: 0, 0: 1, 2: 1}
    return nn.Sequential(
        nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 4), nn.Tanh(), nn.Linear(4, 3)
    ).double()


def _batch(step: int, rank: int, world: int) -> tuple[torch.Tensor, ...]:
    """Step ``step``'s data (inputs, targets, Fisher noise) of ``WORLD * B`` examples; a rank of
    a ``world``-rank run takes its contiguous share."""
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(WORLD * B, 5, generator=g, dtype=torch.float64)
    y = torch.randn(WORLD * B, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(WORLD * B, 3, generator=g, dtype=torch.float64)
    n = WORLD * B // world
    return tuple(t[rank * n : (rank + 1) * n] for t in (x, y, eps))


def _losses(out, y, eps):
    # Deterministic "sampled" Gaussian Fisher loss: the same noise in every run.
    fisher = 0.5 * (out - (out.detach() + eps)).pow(2).sum(-1).mean()
    return fisher, 0.5 * (out - y).pow(2).sum(-1).mean()


def run_scenario(kind: str, rank: int, world: int) -> dict:
    """Train ``_model()`` for ``STEPS`` steps on this rank's share of the data.

    kinds: ``kfac`` / ``kfac_async`` (KFAC with averaged gradients), ``precond`` (the
    preconditioner with torch SGD), ``ddp`` (a DDP model, training backward before the Fisher
    one), ``ddp_fisher_first`` (the order that leaves gradients unaveraged).
    """
    model = _model()
    net = model
    if kind.startswith("ddp") and world > 1:
        net = nn.parallel.DistributedDataParallel(model)
    kw = dict(damping=0.05, stat_decay=0.9, inverse_every=3)
    if kind == "precond":
        pre = acktr.KFACPreconditioner(model, **kw)
        sgd = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.5)
    else:
        opt = acktr.KFAC(model, lr=0.3, momentum=0.5, kl_clip=0.01,
                         async_inverse=kind == "kfac_async", **kw)
        pre = opt.preconditioner
    before = None
    for step in range(STEPS):
        x, y, eps = _batch(step, rank, world)
        out = net(x)
        fisher, loss = _losses(out, y, eps)
        model.zero_grad(set_to_none=True)
        if kind in ("ddp", ):
            loss.backward(retain_graph=True)
            with pre.record_stats():
                fisher.backward()
        else:
            with pre.record_stats():
                fisher.backward(retain_graph=True)
            loss.backward()
        if not kind.startswith("ddp"):
            average_gradients(model.parameters())
        before = [p.detach().clone() for p in model.parameters()]
        if kind == "precond":
            pre.step()
            sgd.step()
        else:
            opt.step()
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "last_update": [p.detach() - b for p, b in zip(model.parameters(), before, strict=True)],
        "A": {n: b.A.clone() for n, b in pre.blocks.items()},
        "G": {n: b.G.clone() for n, b in pre.blocks.items()},
        "eig": {n: [t.clone() for t in b.eig] for n, b in pre.blocks.items()},
        "owned": list(pre._sharding.owned) if pre._sharding is not None else None,
    }


# ---------------------------------------------------------------------------- process harness
def _init(rank: int, store: str, timeout_s: float) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD,
        timeout=timedelta(seconds=timeout_s),
    )


def _worker(rank: int, out_dir: str, job: str, arg: str) -> None:
    out = Path(out_dir)
    try:
        _init(rank, str(out / "store"), PEER_TIMEOUT_S if job == "peer_fails" else 20)
        if job == "scenarios":
            results = {k: run_scenario(k, rank, WORLD) for k in arg.split(",")}
            torch.save(results, out / f"rank{rank}.pt")
        elif job == "expect_error":
            try:
                run_scenario(arg, rank, WORLD)
                (out / f"rank{rank}.txt").write_text("no error")
            except RuntimeError as e:
                (out / f"rank{rank}.txt").write_text(f"RuntimeError: {e}")
        elif job == "peer_fails":
            _peer_fails(rank, out, arg)
        dist.destroy_process_group()
    except BaseException:
        (out / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def _peer_fails(rank: int, out: Path, how: str) -> None:
    """Rank 1 dies (``exit``) or stops answering (``hang``) after one step; rank 0 goes on."""
    model = _model()
    opt = acktr.KFAC(model, lr=0.1, inverse_every=1)
    for step in range(3):
        if rank == 1 and step == 1:
            if how == "exit":
                raise SystemExit(3)
            time.sleep(60)
        x, y, eps = _batch(step, rank, WORLD)
        fisher, loss = _losses(model(x), y, eps)
        start = time.monotonic()
        try:
            with opt.record_stats():
                fisher.backward(retain_graph=True)
            loss.backward()
            average_gradients(model.parameters())
            opt.step()
        except (RuntimeError, dist.DistBackendError) as e:
            (out / f"rank{rank}.txt").write_text(
                f"step {step} failed after {time.monotonic() - start:.1f}s: {e}"
            )
            # exit at once: tearing down a process group with a timed-out collective in it may
            # abort (SIGABRT) in gloo's destructors, which would hide the exit status
            os._exit(5)


def _spawn(tmp_path: Path, job: str, arg: str, join: bool = True):
    timeout = JOIN_TIMEOUT_S if join else None
    return spawn_ranks(_worker, WORLD, str(tmp_path), job, arg, join_timeout=timeout)


def _errors(tmp_path: Path) -> str:
    return "\n".join(p.read_text() for p in sorted(tmp_path.glob("rank*.err")))


# ---------------------------------------------------------------------------- multi-process tests
@pytest.fixture(scope="module")
def scenario_runs(tmp_path_factory):
    """One 2-rank run of every scenario (process start-up is the cost), and the references."""
    tmp = tmp_path_factory.mktemp("kfac_dist")
    kinds = ["kfac", "kfac_async", "precond", "ddp"]
    _spawn(tmp, "scenarios", ",".join(kinds))
    assert not _errors(tmp), _errors(tmp)
    ranks = [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    single = {k: run_scenario(k, 0, 1) for k in kinds}
    return ranks, single


@pytest.mark.medium
@pytest.mark.parametrize("kind", ["kfac", "kfac_async", "precond", "ddp"])
def test_replicas_identical_and_equal_to_single_process(scenario_runs, kind):
    ranks, single = scenario_runs
    r0, r1, ref = ranks[0][kind], ranks[1][kind], single[kind]
    for p0, p1 in zip(r0["params"], r1["params"], strict=True):
        assert torch.equal(p0, p1)  # bitwise: the ranks never drift apart
    for name in ref["A"]:  # 2 ranks x B examples = 1 process x 2B examples
        torch.testing.assert_close(r0["A"][name], ref["A"][name], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(r0["G"][name], ref["G"][name], rtol=1e-12, atol=1e-12)
    for u, v in zip(r0["last_update"], ref["last_update"], strict=True):
        assert v.abs().max() > 1e-4  # a real step
        torch.testing.assert_close(u, v, rtol=1e-8, atol=1e-10)
    for p, q in zip(r0["params"], ref["params"], strict=True):
        torch.testing.assert_close(p, q, rtol=1e-8, atol=1e-10)


@pytest.mark.medium
def test_decompositions_spread_over_ranks_and_match(scenario_runs):
    ranks, single = scenario_runs
    owned = [ranks[r]["kfac"]["owned"] for r in range(WORLD)]
    # cost-balanced: the largest block alone on rank 0, the two others on rank 1
    assert owned == [["2"], ["0", "4"]]
    ref = single["kfac"]
    for name in ref["eig"]:
        for r in range(WORLD):  # each rank holds every block's eigenbasis, the owner's
            assert all(torch.equal(a, b) for a, b in
                       zip(ranks[r]["kfac"]["eig"][name], ranks[0]["kfac"]["eig"][name],
                           strict=True))
        d_a, q_a, d_g, q_g = ranks[1]["kfac"]["eig"][name]
        e_a, _, e_g, _ = ref["eig"][name]
        torch.testing.assert_close(d_a, e_a, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(d_g, e_g, rtol=1e-9, atol=1e-12)
        # the eigenbasis reconstructs the factors (as they were at the last refresh, step 6)
        a = ranks[1]["kfac"]["A"][name]
        torch.testing.assert_close(q_a @ torch.diag(d_a) @ q_a.T, a, rtol=1e-9, atol=1e-10)


@pytest.mark.medium
def test_unaveraged_gradients_are_a_clear_error_on_every_rank(tmp_path):
    # DDP averages during the *first* backward after a forward: with the Fisher backward first,
    # the training gradients stay local; the replicas drift and the next refresh says so.
    _spawn(tmp_path, "expect_error", "ddp_fisher_first")
    assert not _errors(tmp_path), _errors(tmp_path)
    for r in range(WORLD):
        text = (tmp_path / f"rank{r}.txt").read_text()
        assert "differ across the 2 ranks" in text and "gradients were not averaged" in text


@pytest.mark.medium
@pytest.mark.parametrize("how", ["exit", "hang"])
def test_a_failed_rank_makes_the_other_fail_instead_of_hanging(tmp_path, how):
    start = time.monotonic()
    procs = _spawn(tmp_path, "peer_fails", how, join=False)
    procs[0].join(JOIN_TIMEOUT_S)
    elapsed = time.monotonic() - start
    procs[1].kill()
    procs[1].join(10)
    assert not procs[0].is_alive(), "rank 0 hung after its peer failed"
    assert procs[0].exitcode == 5
    text = (tmp_path / "rank0.txt").read_text()
    assert text.startswith("step 1 failed")
    if how == "hang":  # the process group's timeout ended it, not the test's
        assert elapsed < PEER_TIMEOUT_S + 20


# ---------------------------------------------------------------------------- in-process tests
def test_assign_owners_balances_cost_largest_first():
    costs = {"a": 10.0, "b": 9.0, "c": 5.0, "d": 4.0, "e": 1.0}
    owners = assign_owners(costs, 2)
    assert owners == {"a": 0, "b": 1, "c": 1, "d": 0, "e": 0}  # loads 10|9, 10|14, 14|14, tie
    loads = [sum(c for n, c in costs.items() if owners[n] == r) for r in range(2)]
    assert loads == [15.0, 14.0]
    assert assign_owners(costs, 1) == dict.fromkeys(costs, 0)
    assert sorted(assign_owners(costs, 8).values()) == [0, 1, 2, 3, 4]  # one each, 3 idle
    assert assign_owners({"x": 1.0, "y": 1.0}, 2) == {"x": 0, "y": 1}  # ties by name
    with pytest.raises(ValueError, match="world_size must be >= 1, got 0"):
        assign_owners(costs, 0)


def test_single_process_is_a_no_op():
    assert not is_distributed()
    p = nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    average_gradients([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    check_replicas_in_sync([p], step=0)
    stats = [torch.ones(2, 2)]
    assert reduce_statistics(stats) is stats


@pytest.fixture
def world_of_one(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1, timeout=timedelta(seconds=10))
    yield
    dist.destroy_process_group()


@pytest.mark.parametrize("method", ["eigen", "inverse"])
def test_exchange_round_trips_results_failures_and_missing(world_of_one, method):
    layers = {"p": nn.Linear(3, 2).double(), "q": nn.Linear(2, 4).double(),
              "r": nn.Linear(2, 2).double()}
    blocks = {n: KroneckerBlock(n, helper_for(m)) for n, m in layers.items()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, blocks["p"].dim_a, generator=g, dtype=torch.float64)
    y = torch.randn(10, blocks["p"].dim_g, generator=g, dtype=torch.float64)
    good = decompose_factors(x.T @ x, y.T @ y, 0.1, method)
    bad = Decomposition(torch.ones((), dtype=torch.float64), error="eigh did not converge")
    got = exchange_decompositions({"p": good, "q": bad}, blocks, {"p": 0, "q": 0, "r": 0},
                                  method)
    assert got["r"] is None
    assert got["q"].error == "on rank 0: eigh did not converge"
    assert got["p"].error is None
    want = good.eig if method == "eigen" else good.inv
    have = got["p"].eig if method == "eigen" else got["p"].inv
    assert all(torch.equal(a, b) for a, b in zip(have, want, strict=True))
    assert torch.equal(got["p"].pi, good.pi)
