"""K-FAC's compact state dict: lossless, smaller, and a resumed run is bit-identical."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from torch import nn

import acktr
from acktr.blocks import pack_symmetric, unpack_symmetric


def test_pack_symmetric_round_trips_exactly_and_leaves_other_tensors_alone():
    x = torch.randn(50, 7)
    sym = 0.5 * (x.T @ x + (x.T @ x).T)  # exactly symmetric, as the factors are kept
    packed = pack_symmetric(sym)
    assert isinstance(packed, dict) and packed["symmetric_tril"].numel() == 7 * 8 // 2
    assert torch.equal(unpack_symmetric(packed), sym)
    skew = sym.clone()
    skew[0, 1] += 1e-3
    assert pack_symmetric(skew) is skew  # not exactly symmetric: stored whole
    assert unpack_symmetric(skew) is skew


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))


def _kfac(model: nn.Module, **kw) -> acktr.KFAC:
    return acktr.KFAC(model, lr=0.05, damping=0.01, inverse_every=3, **kw)


def _step(model: nn.Module, opt: acktr.KFAC, k: int, shape=(16, 2, 6, 6)) -> None:
    g = torch.Generator().manual_seed(100 + k)
    torch.manual_seed(k)  # the Fisher targets are sampled from the global generator
    x = torch.randn(*shape, generator=g)
    y = torch.randint(0, 5, (16,), generator=g)
    out = model(x)
    if opt.stats_due:
        with opt.record_stats():
            acktr.fisher_loss(out, "categorical").backward(retain_graph=True)
    opt.zero_grad()
    nn.functional.cross_entropy(out, y).backward()
    opt.step()


def _nbytes(state) -> int:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.tell()


@pytest.mark.parametrize("steps", range(1, 8))
def test_compact_state_resumes_bit_identically_at_every_phase_of_the_refresh_cycle(steps):
    """inverse_every=3: after 1, 4, 7 steps the eigenbases are those of the current factors
    (recomputed on load); after 3, 6 the next step refreshes (dropped); after 2, 5 neither
    (stored in full)."""
    model = _model()
    opt = _kfac(model)
    for k in range(steps):
        _step(model, opt, k)
    recomputable = opt.preconditioner.decompositions_recomputable()
    assert recomputable == (steps % 3 != 2)
    compact, full = opt.state_dict(compact=True), opt.state_dict()
    if recomputable:
        assert _nbytes(compact) < _nbytes(full)
        assert all("eig" not in b or b["eig"] == "recompute"
                   for b in compact["kfac"]["blocks"].values())
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": compact}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    resumed = _model(seed=1)
    resumed.load_state_dict(saved["model"])
    opt2 = _kfac(resumed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # recomputed eigenvalues must match: no warning
        opt2.load_state_dict(saved["opt"])
    for k in range(steps, steps + 5):
        _step(model, opt, k)
        _step(resumed, opt2, k)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_recomputation_that_differs_is_reported():
    model = _model()
    opt = _kfac(model)
    _step(model, opt, 0)  # refreshed at step 0: recomputable
    state = opt.state_dict(compact=True)
    block = next(iter(state["kfac"]["blocks"].values()))
    block["eigenvalues"][0] = block["eigenvalues"][0] * (1 + 1e-6)
    opt2 = _kfac(_model())
    with pytest.warns(RuntimeWarning, match="not bit-identical"):
        opt2.load_state_dict(state)


def test_block_tridiagonal_keeps_the_full_state():
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5))
    opt = acktr.KFAC(model, structure="block_tridiagonal", inverse_every=3)
    _step(model, opt, 0, shape=(16, 4))
    assert not opt.preconditioner.decompositions_recomputable()
    state = opt.state_dict(compact=True)
    opt2 = acktr.KFAC(model, structure="block_tridiagonal", inverse_every=3)
    opt2.load_state_dict(state)
    assert opt2.state_dict()["kfac"]["tridiagonal"]["inverse"] is not None


def test_async_inverse_keeps_the_full_state():
    model = _model()
    opt = _kfac(model, async_inverse=True)
    for k in range(4):
        _step(model, opt, k)
    assert not opt.preconditioner.decompositions_recomputable()
    state = opt.state_dict(compact=True)
    assert all(isinstance(b.get("eig"), list) for b in state["kfac"]["blocks"].values())


@pytest.mark.medium
def test_atari_network_checkpoint_is_at_most_40_mb_and_resumes_exactly():
    """The Nature CNN of configs/atari.yaml (6 actions): policy + compact optimizer state
    <= 40 MB (full state: ~90 MB), and the next step after loading is bit-identical."""
    import gymnasium as gym
    import numpy as np

    from agents.config import load_config
    from agents.policies import make_policy
    from agents.updates import make_optimizers
    from tests.agents.test_trainer import CONFIGS

    cfg = load_config(CONFIGS / "atari.yaml", ["kfac.cold_start_steps=0"])
    obs_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)

    def build(seed):
        torch.manual_seed(seed)
        policy = make_policy(obs_space, gym.spaces.Discrete(6), cfg.policy)
        return policy, make_optimizers(policy, cfg)

    def step(policy, opts, k):
        g = torch.Generator().manual_seed(k)
        torch.manual_seed(k)
        obs = torch.randint(0, 256, (32, 4, 84, 84), generator=g, dtype=torch.uint8)
        dist, value = policy(obs)
        opt = opts.main
        with opt.record_stats():
            (acktr.fisher_loss(dist.logits, "categorical")
             + acktr.fisher_loss(value, "gaussian")).backward(retain_graph=True)
        opt.zero_grad()
        (value.pow(2).mean() - dist.entropy().mean()).backward()
        opt.step()

    policy, opts = build(0)
    step(policy, opts, 0)  # refreshes the eigenbases: the biggest state
    assert opts.compact_ready()
    compact = _nbytes({"policy": policy.state_dict(), "opt": opts.state_dict(compact=True)})
    full = _nbytes({"policy": policy.state_dict(), "opt": opts.state_dict()})
    assert compact <= 40e6 < full
    buf = io.BytesIO()
    torch.save({"policy": policy.state_dict(), "opt": opts.state_dict(compact=True)}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    policy2, opts2 = build(1)
    policy2.load_state_dict(saved["policy"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opts2.load_state_dict(saved["opt"])
    step(policy, opts, 1)
    step(policy2, opts2, 1)
    for a, b in zip(policy.parameters(), policy2.parameters(), strict=True):
        assert torch.equal(a, b)
