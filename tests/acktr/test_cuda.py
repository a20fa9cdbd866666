"""K-FAC on CUDA matches CPU for convolutional layers, both damping schemes and async
inverses, and its state_dict moves between devices. Skipped without CUDA."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import acktr

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 3))


def _steps(model: nn.Module, opt: acktr.KFAC, device: str, n: int = 4) -> None:
    for k in range(n):
        g = torch.Generator().manual_seed(k)
        x = torch.randn(16, 2, 8, 8, generator=g, dtype=torch.float64).to(device)
        y = torch.randint(0, 3, (16,), generator=g).to(device)
        out = model(x)
        with opt.record_stats():
            acktr.fisher_loss(out, "categorical", targets=y).backward(retain_graph=True)
        opt.zero_grad()
        nn.functional.cross_entropy(out, y).backward()
        opt.step()


@pytest.mark.parametrize("kwargs", [
    {}, {"damping_scheme": "tikhonov"}, {"async_inverse": True, "inverse_every": 2},
    {"kl_clip": 1e-3},
], ids=lambda kw: ",".join(kw) or "default")
def test_cnn_steps_on_cuda_match_cpu(kwargs):
    torch.manual_seed(0)
    cpu = _cnn().double()
    gpu = copy.deepcopy(cpu).cuda()
    try:
        opt_c, opt_g = acktr.KFAC(cpu, **kwargs), acktr.KFAC(gpu, **kwargs)
    except TypeError as e:  # an option this optimizer does not take
        pytest.skip(str(e))
    torch.manual_seed(1)
    _steps(cpu, opt_c, "cpu")
    torch.manual_seed(1)
    _steps(gpu, opt_g, "cuda")
    for a, b in zip(cpu.parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-6, atol=1e-8)


def test_state_dict_saved_on_cuda_loads_on_cpu():
    torch.manual_seed(0)
    gpu = _cnn().double().cuda()
    opt_g = acktr.KFAC(gpu)
    _steps(gpu, opt_g, "cuda", n=2)
    cpu = copy.deepcopy(gpu).cpu()
    opt_c = acktr.KFAC(cpu)
    state = {k: v for k, v in opt_g.state_dict().items()}
    opt_c.load_state_dict(state)
    torch.manual_seed(5)
    _steps(cpu, opt_c, "cpu", n=1)
    torch.manual_seed(5)
    _steps(gpu, opt_g, "cuda", n=1)
    for a, b in zip(cpu.parameters(), gpu.parameters(), strict=True):
        torch.testing.assert_close(a, b.cpu(), rtol=1e-6, atol=1e-8)
