"""K-FAC blocks against exact Fisher / Gauss-Newton matrices on tiny networks (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import acktr
from tests.acktr.exact import block_slices, exact_categorical_fisher, exact_gauss_newton


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


def record_gauss_newton(pre: acktr.KFACPreconditioner, model: nn.Module, x: torch.Tensor) -> None:
    out = model(x)
    with pre.record_stats():
        for loss in acktr.gauss_newton_losses(out):
            loss.backward(retain_graph=True)


pytestmark = pytest.mark.usefixtures("float64")


def test_single_linear_layer_block_equals_exact_gauss_newton():
    model = nn.Linear(4, 3)
    x = torch.randn(32, 4)
    pre = acktr.KFACPreconditioner(model, stat_decay=0.0)
    record_gauss_newton(pre, model, x)
    kfac = pre.blocks["Linear"].to_dense()
    exact = exact_gauss_newton(model, [model], x)
    assert rel_err(kfac, exact) < 1e-6


def test_sampled_gaussian_fisher_converges_to_exact():
    """With sampled targets (the default fisher_loss) the EMA of G tends to the identity."""
    model = nn.Linear(4, 3)
    x = torch.randn(256, 4)
    pre = acktr.KFACPreconditioner(model, stat_decay=0.99)
    for _ in range(300):
        out = model(x)
        with pre.record_stats():
            acktr.fisher_loss(out, "gaussian").backward()
    exact = exact_gauss_newton(model, [model], x)
    assert rel_err(pre.blocks["Linear"].to_dense(), exact) < 0.03


def test_single_softmax_layer_block_matches_fisher_for_constant_probabilities():
    """A softmax layer whose predictive distribution does not depend on x (zero weights): the
    Kronecker factorisation is exact, so sampled statistics must converge to the exact Fisher."""
    model = nn.Linear(3, 4)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.copy_(torch.tensor([0.5, -0.2, 0.1, 0.0]))
    x = torch.randn(512, 3)
    pre = acktr.KFACPreconditioner(model, stat_decay=0.995)
    for _ in range(600):
        out = model(x)
        with pre.record_stats():
            acktr.fisher_loss(out, "categorical").backward()
    exact = exact_categorical_fisher(model, [model], x)
    assert rel_err(pre.blocks["Linear"].to_dense(), exact) < 0.05


def test_deep_linear_network_diagonal_blocks_are_exact():
    """For a deep linear net with Gaussian output, G does not depend on the input, so every
    diagonal block of the Gauss-Newton matrix is exactly A (x) G; only the off-diagonal blocks
    (between layers) are dropped. The sizes of both errors are reported."""
    layers = [nn.Linear(3, 4), nn.Linear(4, 5), nn.Linear(5, 2)]
    model = nn.Sequential(*layers)
    x = torch.randn(40, 3)
    pre = acktr.KFACPreconditioner(model, stat_decay=0.0)
    record_gauss_newton(pre, model, x)
    exact = exact_gauss_newton(model, layers, x)
    blocks = list(pre.blocks.values())
    approx = torch.zeros_like(exact)
    for s, block in zip(block_slices(layers), blocks, strict=False):
        dense = block.to_dense()
        assert rel_err(dense, exact[s, s]) < 1e-8
        approx[s, s] = dense
    off = rel_err(approx, exact)
    print(f"deep linear net: diagonal blocks exact; block-diagonal relative error {off:.3f}")
    assert 0.05 < off < 1.0  # the cross-layer blocks are real and dropped


def test_tanh_network_kronecker_error_is_moderate():
    """With a nonlinearity, a and g are dependent and A (x) G is an approximation; report it."""
    layers = [nn.Linear(3, 6), nn.Linear(6, 2)]
    model = nn.Sequential(layers[0], nn.Tanh(), layers[1])
    x = torch.randn(64, 3)
    pre = acktr.KFACPreconditioner(model, stat_decay=0.0)
    record_gauss_newton(pre, model, x)
    exact = exact_gauss_newton(model, layers, x)
    errs = []
    for s, block in zip(block_slices(layers), pre.blocks.values(), strict=False):
        errs.append(rel_err(block.to_dense(), exact[s, s]))
    print(f"tanh net: per-layer Kronecker relative errors {[round(e, 4) for e in errs]}")
    assert errs[1] < 1e-8  # the last layer's G is input-independent: exact
    assert 1e-4 < errs[0] < 0.5


def test_conv_block_against_exact_gauss_newton_1x1():
    """A 1x1 convolution with a single output position is a dense layer: exact."""
    conv = nn.Conv2d(3, 2, kernel_size=1)
    model = nn.Sequential(conv, nn.Flatten())
    x = torch.randn(16, 3, 1, 1)
    pre = acktr.KFACPreconditioner(model, stat_decay=0.0)
    record_gauss_newton(pre, model, x)
    exact = exact_gauss_newton(model, [conv], x)
    assert rel_err(pre.blocks["0"].to_dense(), exact) < 1e-8


def test_one_by_one_conv_with_many_positions_equals_exact_gauss_newton():
    """KFC's scaling (A sums over positions, G averages over them) is exact for a 1x1 conv
    with independent per-position outputs: F = mean_i sum_t a_it a_it^T (x) I."""
    conv = nn.Conv2d(3, 2, kernel_size=1)
    model = nn.Sequential(conv, nn.Flatten())
    x = torch.randn(6, 3, 3, 2)
    pre = acktr.KFACPreconditioner(model, stat_decay=0.0)
    record_gauss_newton(pre, model, x)
    exact = exact_gauss_newton(model, [conv], x)
    assert rel_err(pre.blocks["0"].to_dense(), exact) < 1e-8


def two_conv_blocks(kernel2: int, act: nn.Module):
    conv1 = nn.Conv2d(2, 3, kernel_size=3, stride=2, padding=1)
    conv2 = nn.Conv2d(3, 2, kernel_size=kernel2, padding=kernel2 // 2)
    model = nn.Sequential(conv1, act, conv2, nn.Flatten())
    x = torch.randn(12, 2, 5, 5)
    pre = acktr.KFACPreconditioner(model, stat_decay=0.0)
    record_gauss_newton(pre, model, x)
    exact = exact_gauss_newton(model, [conv1, conv2], x)
    s1, _ = block_slices([conv1, conv2])
    return pre.blocks["0"].to_dense(), exact[s1, s1]


def test_strided_conv_block_is_exact_when_kfc_assumptions_hold():
    """A strided 3x3 conv under a linear 1x1 conv: derivatives are spatially uncorrelated and
    independent of the activations, so KFC (Omega (x) Gamma) equals the exact block."""
    kfc, exact = two_conv_blocks(1, nn.Identity())
    assert rel_err(kfc, exact) < 1e-8


def test_conv_kfc_error_is_reported_when_derivatives_are_spatially_correlated():
    """Under a 3x3 conv the first layer's derivatives are spatially correlated, which KFC
    ignores; report the error. The trace (total curvature) must stay close."""
    kfc, exact = two_conv_blocks(3, nn.Tanh())
    err, trace_ratio = rel_err(kfc, exact), float(kfc.trace() / exact.trace())
    print(f"conv under 3x3 conv: KFC relative error {err:.3f}, trace ratio {trace_ratio:.3f}")
    assert 0.8 < trace_ratio < 1.25
    assert err < 0.8
