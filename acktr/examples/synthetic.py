"""Two synthetic supervised problems unlike the digits examples: deeper, wider, worse-conditioned.

* ``tanh_regression``: a deep tanh MLP (5 hidden layers of 64) regresses a random tanh teacher of
  *whitened* inputs, while the inputs it sees have covariance condition number 1e4 (standard
  deviations from 1 to 0.01 along a random rotation, plus an offset of 1). Squared error
  (Gaussian Fisher). The kind of problem of issue 17 where K-FAC's defaults never reached Adam.
* ``wide_classifier``: a wide ReLU MLP (2 hidden layers of 256) classifies 10 classes given by a
  random tanh teacher's argmax, on inputs with covariance condition number 100. Softmax
  cross-entropy (categorical Fisher).

Both are seeded and need no download.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def ill_conditioned_inputs(
    n: int, dim: int, log10_std_range: float, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """``(x, z)``: standard normal ``z`` and ``x = z diag(s) Q^T + 1`` with ``s`` log-spaced from
    1 down to ``10^-log10_std_range`` and ``Q`` a random rotation."""
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen))
    scales = torch.logspace(0, -log10_std_range, dim)
    z = torch.randn(n, dim, generator=gen)
    return (z * scales) @ q.T + 1.0, z


def teacher(z: Tensor, out: int, hidden: int, gen: torch.Generator) -> Tensor:
    """A random one-hidden-layer tanh network of ``z`` (its weights from ``gen``)."""
    d = z.shape[1]
    w1 = torch.randn(d, hidden, generator=gen) * (2.0 / d) ** 0.5
    w2 = torch.randn(hidden, out, generator=gen) / hidden**0.5
    return torch.tanh(z @ w1) @ w2


def mlp(sizes: Sequence[int], activation: type[nn.Module]) -> nn.Sequential:
    """Dense layers with ``activation`` between them, Glorot-uniform weights (gain for tanh or
    ReLU) and zero biases."""
    layers: list[nn.Module] = []
    gain = nn.init.calculate_gain("tanh" if activation is nn.Tanh else "relu")
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        lin = nn.Linear(a, b)
        nn.init.xavier_uniform_(lin.weight, gain=gain)
        nn.init.zeros_(lin.bias)
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def tanh_regression_data(n: int = 4096, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Inputs ``(n, 16)`` (condition number 1e4) and targets ``(n, 4)`` (teacher + 0.01 noise)."""
    gen = torch.Generator().manual_seed(1000 + seed)
    x, z = ill_conditioned_inputs(n, 16, 2.0, gen)
    y = teacher(z, 4, 32, gen)
    return x, y + 0.01 * torch.randn(y.shape, generator=gen)


def wide_classifier_data(n: int = 8192, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Inputs ``(n, 32)`` (condition number 100) and labels in ``0..9`` (a teacher's argmax)."""
    gen = torch.Generator().manual_seed(2000 + seed)
    x, z = ill_conditioned_inputs(n, 32, 1.0, gen)
    return x, teacher(z, 10, 64, gen).argmax(1)


def deep_tanh_mlp() -> nn.Module:
    """16-64-64-64-64-64-4, tanh."""
    return mlp((16, 64, 64, 64, 64, 64, 4), nn.Tanh)


def wide_relu_mlp() -> nn.Module:
    """32-256-256-10, ReLU."""
    return mlp((32, 256, 256, 10), nn.ReLU)


def squared_error(out: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """``0.5 ||out - y||^2`` summed over outputs, mean over the batch (Gaussian Fisher)."""
    return 0.5 * (out - y).pow(2).sum(-1).mean()


def cross_entropy(out: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """Softmax cross-entropy, mean over the batch (categorical Fisher)."""
    return F.cross_entropy(out, y)
