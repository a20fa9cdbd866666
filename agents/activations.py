"""Activations for the policies: ``nn.Tanh`` with a faster CPU path for large batches.

On the CPU, ``torch.tanh`` runs at about 2.3 ns per float32 element (torch 2.13, AVX-512),
while ``torch.sigmoid`` runs at about 0.23 ns (``python -m benchmarks.activation_time``; this
module's ``Tanh``: 0.49 ns forward, 1.2 ns forward + backward against ``nn.Tanh``'s 2.7, figures
in docs/benchmarks.md); the separate-critic recipe's 25 critic steps on
a 20000-row batch spend more time in tanh than in the matrix products. ``tanh(x) = 2
sigmoid(2x) - 1`` exactly, and in float32 the two agree to 2e-7 in absolute terms
(``tests/agents/test_activations.py``), well below what a network can resolve.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

SIGMOID_PATH_MIN_ELEMENTS = 4096
"""Below this many elements (per-step forwards of a few rows), ``torch.tanh`` is as fast."""


def _tanh_via_sigmoid(x: Tensor) -> Tensor:
    return torch.sigmoid(x * 2.0).mul_(2.0).sub_(1.0)


class _SigmoidTanh(torch.autograd.Function):
    """``tanh`` forward via the sigmoid; backward ``grad (1 - y^2)`` from the saved output."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        y = _tanh_via_sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


class Tanh(nn.Tanh):
    """``nn.Tanh`` (an instance of it), computed as ``2 sigmoid(2x) - 1`` for CPU tensors of
    at least ``SIGMOID_PATH_MIN_ELEMENTS`` elements; ``torch.tanh`` otherwise (CUDA, small
    inputs). Not in-place; double-backward is not supported on the sigmoid path."""

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type != "cpu" or x.numel() < SIGMOID_PATH_MIN_ELEMENTS:
            return torch.tanh(x)
        if torch.is_grad_enabled() and x.requires_grad:
            return _SigmoidTanh.apply(x)
        return _tanh_via_sigmoid(x)
