"""agents.activations.Tanh: the same function and gradient as torch.tanh."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agents.activations import SIGMOID_PATH_MIN_ELEMENTS, Tanh


@pytest.mark.parametrize("rows", [2, 4 * SIGMOID_PATH_MIN_ELEMENTS // 64])
def test_values_and_gradients_match_torch_tanh(rows: int) -> None:
    x = (torch.randn(rows, 64, generator=torch.Generator().manual_seed(0)) * 4).requires_grad_()
    grad_out = torch.randn(rows, 64, generator=torch.Generator().manual_seed(1))
    y = Tanh()(x)
    (got,) = torch.autograd.grad(y, x, grad_out)
    reference = x.detach().double().tanh()
    assert (y.detach().double() - reference).abs().max() < 3e-7
    expected = grad_out.double() * (1 - reference**2)
    assert (got.double() - expected).abs().max() < 1e-6 * max(1.0, grad_out.abs().max().item())
    with torch.no_grad():
        assert (Tanh()(x).double() - reference).abs().max() < 3e-7


def test_is_an_nn_tanh_and_never_writes_its_input() -> None:
    layer = Tanh()
    assert isinstance(layer, nn.Tanh)
    x = torch.randn(SIGMOID_PATH_MIN_ELEMENTS)
    before = x.clone()
    layer(x)
    assert torch.equal(x, before)


def test_saturates_to_plus_minus_one() -> None:
    x = torch.tensor([-1e4, -30.0, 30.0, 1e4]).repeat(SIGMOID_PATH_MIN_ELEMENTS)
    y = Tanh()(x)
    assert torch.isfinite(y).all() and y.abs().max() <= 1.0
    torch.testing.assert_close(y, x.sign())
