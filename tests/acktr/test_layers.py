"""Layer helpers: rows of activations and gradients, the registry, KFC for convolutions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import acktr
from acktr.layers import Conv2dHelper, LinearHelper, helper_for


def explicit_patches(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """Unfold by explicit loops (independent of F.unfold): rows (B*Ho*Wo, C*kh*kw)."""
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    dh, dw = conv.dilation
    ph, pw = conv.padding
    xp = torch.nn.functional.pad(x, (pw, pw, ph, ph))
    b, c, h, w = xp.shape
    ho = (h - dh * (kh - 1) - 1) // sh + 1
    wo = (w - dw * (kw - 1) - 1) // sw + 1
    rows = []
    for i in range(b):
        for oy in range(ho):
            for ox in range(wo):
                patch = xp[i, :, oy * sh : oy * sh + dh * (kh - 1) + 1 : dh,
                           ox * sw : ox * sw + dw * (kw - 1) + 1 : dw]
                rows.append(patch.reshape(-1))
    return torch.stack(rows)


@pytest.mark.parametrize(
    "kernel,stride,padding,dilation",
    [(3, 1, 0, 1), (3, 2, 1, 1), ((2, 3), (2, 1), (1, 0), 1), (3, 1, 2, 2), (1, 1, 0, 1)],
)
def test_conv_rows_match_explicit_patches(kernel, stride, padding, dilation):
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, kernel, stride=stride, padding=padding, dilation=dilation)
    x = torch.randn(2, 2, 7, 6)
    rows, batch = Conv2dHelper(conv).input_rows(x)
    assert batch == 2
    torch.testing.assert_close(rows, explicit_patches(x, conv))
    # The unfolded rows times the weight reproduce the convolution: column order is right.
    out = conv(x)
    manual = rows @ conv.weight.reshape(3, -1).T + conv.bias
    grad_rows = Conv2dHelper(conv).grad_rows(out)
    torch.testing.assert_close(manual, grad_rows, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding_mode", ["reflect", "circular"])
def test_conv_rows_with_padding_modes_and_same(padding_mode):
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding="same", padding_mode=padding_mode)
    x = torch.randn(2, 2, 5, 5)
    rows, _ = Conv2dHelper(conv).input_rows(x)
    manual = rows @ conv.weight.reshape(3, -1).T + conv.bias
    torch.testing.assert_close(manual, Conv2dHelper(conv).grad_rows(conv(x)), atol=1e-5, rtol=1e-5)


def test_one_by_one_conv_block_equals_linear_block_at_every_position():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 1)
    lin = nn.Linear(3, 4)
    with torch.no_grad():
        lin.weight.copy_(conv.weight.reshape(4, 3))
        lin.bias.copy_(conv.bias)
    x = torch.randn(8, 3, 5, 5)
    pre_c = acktr.KFACPreconditioner(conv, stat_decay=0.0)
    pre_l = acktr.KFACPreconditioner(lin, stat_decay=0.0)
    noise = torch.randn(8, 4, 5, 5)  # the same sampled targets for both layouts
    out_c = conv(x)
    with pre_c.record_stats():
        acktr.fisher_loss(out_c, "gaussian", targets=out_c.detach() + noise).backward()
    out_l = lin(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, H, W, C): pixels are positions
    with pre_l.record_stats():
        acktr.fisher_loss(out_l, "gaussian", targets=out_l.detach() + noise).backward()
    bc, bl = pre_c.blocks["Conv2d"], pre_l.blocks["Linear"]
    torch.testing.assert_close(bc.A, bl.A)
    torch.testing.assert_close(bc.G, bl.G)
    # KFC scaling (Grosse & Martens 2016): A sums over the 25 positions, G averages over them.
    rows = x.permute(0, 2, 3, 1).reshape(-1, 3)
    torch.testing.assert_close(bc.A[:3, :3], rows.T @ rows / 8)


def test_grouped_conv_is_a_clear_error():
    with pytest.raises(ValueError, match="groups=2"):
        acktr.KFACPreconditioner(nn.Conv2d(4, 4, 3, groups=2))


def test_grouped_conv_can_be_excluded_to_the_fallback():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2))
    pre = acktr.KFACPreconditioner(model, exclude=["0"])
    assert pre.assignments() == {
        "0.weight": "diagonal",
        "0.bias": "diagonal",
        "2.weight": "kronecker:2",
        "2.bias": "kronecker:2",
    }


def test_registry_uses_isinstance_and_accepts_new_layers():
    class MyLinear(nn.Linear):
        pass

    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(3, 3))

        def forward(self, x):
            return x @ self.weight.T

    assert isinstance(helper_for(MyLinear(2, 2)), LinearHelper)
    assert helper_for(Scale()) is None
    acktr.register_layer(Scale, LinearHelper)
    try:
        assert isinstance(helper_for(Scale()), LinearHelper)
        pre = acktr.KFACPreconditioner(Scale())
        assert pre.assignments() == {"weight": "kronecker:Scale"}
    finally:
        from acktr.layers import _REGISTRY

        _REGISTRY.pop(Scale)
    with pytest.raises(TypeError, match="nn.Module subclass"):
        acktr.register_layer(int, LinearHelper)  # type: ignore[arg-type]


class GaussianHead(nn.Module):
    """Mean from a Linear layer, state-independent log-std from a BroadcastBias."""

    def __init__(self) -> None:
        super().__init__()
        self.mean = nn.Linear(2, 3)
        self.log_std = acktr.BroadcastBias(3, init=-0.5)

    def forward(self, x: torch.Tensor) -> torch.distributions.Normal:
        mean = self.mean(x)
        return torch.distributions.Normal(mean, self.log_std(mean).exp())


def test_broadcast_bias_shapes_and_bad_size():
    layer = acktr.BroadcastBias(3, init=0.25)
    assert layer(torch.zeros(5, 7)).shape == (5, 3)
    assert layer(torch.zeros(4, 6, 7)).shape == (4, 6, 3)
    assert torch.equal(layer.bias.detach(), torch.full((3,), 0.25))
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="size must be a positive integer"):
            acktr.BroadcastBias(bad)  # type: ignore[arg-type]


def test_broadcast_bias_block_is_the_exact_fisher_block_of_the_vector():
    """A = [1] and G = mean over examples of g g^T, g the per-example gradient of the sampled
    Fisher loss: the exact (sampled) Fisher block, computed independently per example."""
    torch.manual_seed(0)
    model = GaussianHead().double()
    pre = acktr.KFACPreconditioner(model, stat_decay=0.0)
    assert pre.assignments() == {
        "mean.weight": "kronecker:mean",
        "mean.bias": "kronecker:mean",
        "log_std.bias": "kronecker:log_std",
    }
    x = torch.randn(64, 2, dtype=torch.float64)
    dist = model(x)
    sample = dist.sample()
    with pre.record_stats():
        (-dist.log_prob(sample).sum(-1).mean()).backward()
    block = pre.blocks["log_std"]
    per_example = []
    for i in range(64):
        d = model(x[i : i + 1])
        (g,) = torch.autograd.grad(-d.log_prob(sample[i : i + 1]).sum(), model.log_std.bias)
        per_example.append(g)
    g = torch.stack(per_example)
    torch.testing.assert_close(block.A, torch.ones(1, 1, dtype=torch.float64))
    torch.testing.assert_close(block.G, g.T @ g / 64, rtol=1e-10, atol=1e-12)


def test_broadcast_bias_fisher_converges_to_the_gaussian_log_std_fisher():
    """For N(mu, sigma^2) the Fisher of log sigma is 2 per coordinate, 0 off the diagonal; the
    block estimates it from every example, not from one squared batch-mean gradient."""
    torch.manual_seed(1)
    model = GaussianHead().double()
    pre = acktr.KFACPreconditioner(model, stat_decay=0.0)
    dist = model(torch.randn(20000, 2, dtype=torch.float64))
    with pre.record_stats():
        (-dist.log_prob(dist.sample()).sum(-1).mean()).backward()
    G = pre.blocks["log_std"].G
    assert (G - 2 * torch.eye(3, dtype=torch.float64)).abs().max() < 0.1


def test_broadcast_bias_preconditioning_is_a_damped_solve_with_its_fisher():
    torch.manual_seed(2)
    model = GaussianHead().double()
    pre = acktr.KFACPreconditioner(model, damping=0.05, stat_decay=0.0)
    x = torch.randn(32, 2, dtype=torch.float64)
    dist = model(x)
    with pre.record_stats():
        (-dist.log_prob(dist.sample()).sum(-1).mean()).backward()
    model.zero_grad()
    loss = (model(x).mean ** 2).sum() + model.log_std.bias.pow(3).sum()
    loss.backward()
    grad = model.log_std.bias.grad.clone()
    pre.step()
    G = pre.blocks["log_std"].G
    expected = torch.linalg.solve(G + 0.05 * torch.eye(3, dtype=torch.float64), grad)
    torch.testing.assert_close(model.log_std.bias.grad, expected, rtol=1e-8, atol=1e-10)
