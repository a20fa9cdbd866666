"""Exact curvature matrices of tiny networks, computed independently of the optimizer.

Every matrix here is built from per-example Jacobians (one backward pass per example and output),
never from Kronecker factors, so tests can compare the optimizer's blocks against it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def layer_coordinates(module: nn.Module) -> list[Tensor]:
    """A layer's parameters in the optimizer's block order: ``[W | b]`` flattened row-major."""
    return [module.weight, module.bias] if module.bias is not None else [module.weight]


def _layer_vector(grads: list[Tensor], module: nn.Module) -> Tensor:
    w = grads[0].reshape(module.weight.shape[0], -1)
    if module.bias is not None:
        w = torch.cat([w, grads[1].unsqueeze(1)], dim=1)
    return w.flatten()


def per_example_jacobians(model: nn.Module, layers: list[nn.Module], x: Tensor) -> Tensor:
    """``J[i]``: Jacobian of ``model(x_i)`` (flattened) w.r.t. the layers' ``[W | b]``, shape
    ``(B, K, P)``."""
    params = [p for m in layers for p in layer_coordinates(m)]
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i : i + 1]).reshape(-1)
        jac = []
        for k in range(out.shape[0]):
            grads = torch.autograd.grad(out[k], params, retain_graph=True, allow_unused=True)
            grads = [
                torch.zeros_like(p) if g is None else g
                for g, p in zip(grads, params, strict=True)
            ]
            pieces, j = [], 0
            for m in layers:
                n = 2 if m.bias is not None else 1
                pieces.append(_layer_vector(list(grads[j : j + n]), m))
                j += n
            jac.append(torch.cat(pieces))
        rows.append(torch.stack(jac))
    return torch.stack(rows)


def exact_gauss_newton(model: nn.Module, layers: list[nn.Module], x: Tensor) -> Tensor:
    """The Gauss-Newton matrix of ``0.5 * ||model(x) - y||^2`` (batch mean): ``mean_i J_i^T J_i``,
    which is also the Fisher of a unit-variance Gaussian output."""
    j = per_example_jacobians(model, layers, x)
    return torch.einsum("bkp,bkq->pq", j, j) / x.shape[0]


def exact_categorical_fisher(model: nn.Module, layers: list[nn.Module], x: Tensor) -> Tensor:
    """The Fisher of a softmax output: ``mean_i J_i^T (diag(p_i) - p_i p_i^T) J_i``."""
    j = per_example_jacobians(model, layers, x)
    with torch.no_grad():
        p = torch.softmax(model(x), dim=-1)
    h = torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    return torch.einsum("bkp,bkl,blq->pq", j, h, j) / x.shape[0]


def block_slices(layers: list[nn.Module]) -> list[slice]:
    """Where each layer's coordinates sit in the full matrix."""
    out, start = [], 0
    for m in layers:
        n = m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
        out.append(slice(start, start + n))
        start += n
    return out


class ScaledLinear(nn.Module):
    """``Linear(3, 2)`` times a learned per-output scale: a parameter no Kronecker block claims
    (it goes to the fallback), with a known Fisher ``F_ss = E[fc(x)^2]`` under N(output, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2)
        self.scale = nn.Parameter(torch.tensor([1.5, 0.5]))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x) * self.scale
