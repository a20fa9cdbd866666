"""The RBM tools on CUDA: same numbers as on the CPU for the deterministic parts."""

from __future__ import annotations

import copy

import pytest
import torch

from acktr.rbm import (
    FANG,
    SGD,
    Centered,
    PersistentChains,
    Statistics,
    ais_log_partition,
    exact_log_partition,
    likelihood_gradient,
)
from tests.acktr.rbm.helpers import random_rbm

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def _stats(rbm, device):
    gen = torch.Generator().manual_seed(0)
    data = torch.bernoulli(torch.full((8, rbm.n_visible), 0.4), generator=gen).double().to(device)
    model = torch.bernoulli(torch.full((8, rbm.n_visible), 0.6), generator=gen).double().to(device)
    return Statistics(data, rbm.hidden_prob(data), model, rbm.hidden_prob(model))


@pytest.mark.parametrize("opt_cls", [SGD, Centered, FANG])
def test_steps_on_cuda_match_cpu(opt_cls):
    cpu = random_rbm(6, 4)
    gpu = copy.deepcopy(cpu).cuda()
    opt_c, opt_g = opt_cls(cpu, lr=0.05), opt_cls(gpu, lr=0.05)
    for _ in range(3):
        opt_c.step(_stats(cpu, "cpu"))
        opt_g.step(_stats(gpu, "cuda"))
    for a, b in zip(cpu.parameters(), gpu.parameters(), strict=True):
        assert b.device.type == "cuda"
        torch.testing.assert_close(a, b.cpu())


def test_pcd_training_and_ais_on_cuda():
    rbm = random_rbm(10, 6).cuda()
    gen = torch.Generator(device="cuda").manual_seed(0)
    chains = PersistentChains(10, n_chains=20, generator=gen)
    opt = FANG(rbm, lr=0.01)
    data = torch.bernoulli(torch.full((50, 10), 0.3, device="cuda"), generator=gen).double()
    for _ in range(20):
        opt.step(likelihood_gradient(rbm, data[:10], chains))
    assert chains.v.device.type == "cuda" and torch.isfinite(rbm.W).all()
    result = ais_log_partition(rbm, 100, 500, data, generator=gen)
    assert result.lower <= exact_log_partition(rbm) <= result.upper
